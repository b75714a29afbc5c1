"""A batch consumer: aiokafka ``getmany`` in a consumer group, handed to a partition-aware handler.

Why not a Faust agent for the hot topics: a Faust stream handles every event
as its own asyncio step and tops out at 5–7 k events/s on these machines,
while ``getmany`` returns thousands of records per call. The handler gets
whole per-partition record lists and processes them with vectorised code.

Delivery: offsets are never auto-committed. The handler checkpoints its state
together with the offsets it reflects (see ``stream/state``) and returns the
offsets to commit; on assignment it says where to resume. Processing is thus
effectively-once for state and at-least-once for emitted records, which carry
deterministic ids so downstream consumers can drop repeats.

Liveness: :attr:`last_poll` and :attr:`last_progress` expose whether the loop
is alive, and :attr:`failing_since` whether its batches keep failing although
it polls (nothing checkpointed since the first failure), so a consumer that
stops silently (a known Faust failure mode) is visible on ``/health`` and in
metrics instead of going unnoticed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.coordinator.assignors.range import RangePartitionAssignor

from processors.config_change import ConfigChangeError

log = logging.getLogger(__name__)

Records = Mapping[TopicPartition, list[ConsumerRecord[bytes, bytes]]]


class BatchHandler(Protocol):
    """What a :class:`BatchConsumer` drives."""

    async def on_assigned(self, partitions: set[TopicPartition]) -> dict[TopicPartition, int]:
        """Load state for new partitions; return where to resume (next offset) per partition, if known."""
        ...

    async def on_revoked(self, partitions: set[TopicPartition]) -> dict[TopicPartition, int]:
        """Checkpoint and drop state of partitions leaving this worker; return offsets to commit."""
        ...

    async def handle(self, records: Records) -> dict[TopicPartition, int]:
        """Process one poll's records; return offsets (next to read) that are now safe to commit."""
        ...


class _Listener(ConsumerRebalanceListener):
    def __init__(self, owner: BatchConsumer):
        self.owner = owner

    async def on_partitions_revoked(self, revoked: Sequence[TopicPartition]) -> None:
        if revoked:
            await self.owner._revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: Sequence[TopicPartition]) -> None:
        if assigned:
            await self.owner._assigned(set(assigned))


class BatchConsumer:
    """Runs ``getmany`` for ``topics`` in group ``group_id`` and feeds ``handler``."""

    def __init__(
        self,
        bootstrap: str,
        group_id: str,
        topics: Sequence[str],
        handler: BatchHandler,
        *,
        max_records: int = 20_000,
        poll_timeout_ms: int = 100,
        session_timeout_ms: int = 10_000,
        heartbeat_interval_ms: int = 3_000,
        max_poll_interval_ms: int = 60_000,
        **kwargs: Any,
    ):
        self.topics = list(topics)
        self.handler = handler
        self.max_records = max_records
        self.poll_timeout_ms = poll_timeout_ms
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=session_timeout_ms,
            heartbeat_interval_ms=heartbeat_interval_ms,
            max_poll_interval_ms=max_poll_interval_ms,
            fetch_max_bytes=64 * 1024 * 1024,
            max_partition_fetch_bytes=16 * 1024 * 1024,
            # range assignment gives each member the same partition numbers of every topic, so a
            # meter's readings and heartbeats (co-partitioned by meter id) meet in one worker
            partition_assignment_strategy=(RangePartitionAssignor,),
            **kwargs,
        )
        self.last_poll = time.monotonic()
        self.last_progress = time.monotonic()
        self.records_total = 0
        self.rebalances = 0
        #: monotonic time of the first failed batch since the handler last returned offsets (= checkpointed)
        self.failing_since: float | None = None
        self.failures = 0
        self.last_error = ""
        #: a partition's checkpoint refused the current settings (ConfigChangeError): why, with what to do.
        #: The worker is then stalled (``/health``) until an operator sets the setting back or starts afresh.
        self.refused: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._lock = asyncio.Lock()
        if hasattr(handler, "highwater"):  # a handler that aligns co-partitioned topics reads the watermarks
            handler.highwater = self.consumer.highwater

    async def start(self) -> None:
        await self.consumer.start()
        self.consumer.subscribe(self.topics, listener=_Listener(self))
        self._task = asyncio.create_task(self._run(), name=f"batch-consumer:{','.join(self.topics)}")

    async def stop(self) -> None:
        self._stopping = True
        if self._task is not None:
            await asyncio.wait([self._task], timeout=30)
        # revoke explicitly so the handler checkpoints before leaving the group
        assigned = set(self.consumer.assignment())
        if assigned:
            await self._revoked(assigned)
        await stop_consumer(self.consumer)

    @property
    def assignment(self) -> set[TopicPartition]:
        return set(self.consumer.assignment())

    async def lag(self) -> dict[TopicPartition, int]:
        """Records behind the high watermark per assigned partition (as of the last fetch)."""
        out = {}
        for tp in self.consumer.assignment():
            high = self.consumer.highwater(tp)
            if high is None:
                continue
            try:
                position = await asyncio.wait_for(self.consumer.position(tp), timeout=1.0)
            except Exception:
                continue
            out[tp] = max(0, high - position)
        return out

    async def _assigned(self, partitions: set[TopicPartition]) -> None:
        self.rebalances += 1
        async with self._lock:
            try:
                resume = await self.handler.on_assigned(partitions)
            except ConfigChangeError as exc:
                # the partitions' state cannot follow a changed setting: serving the others would leave these
                # unprocessed, so the worker reports itself stalled with the reason until it is fixed
                self.refused = str(exc)
                raise
        for tp, offset in resume.items():
            if tp in partitions:
                self.consumer.seek(tp, offset)
        log.info("assigned %s", _fmt(partitions))

    async def _revoked(self, partitions: set[TopicPartition]) -> None:
        async with self._lock:
            offsets = await self.handler.on_revoked(partitions)
        await self._commit(offsets)
        log.info("revoked %s", _fmt(partitions))

    async def _commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        owned = {tp: off for tp, off in offsets.items() if tp in self.consumer.assignment()}
        if not owned:
            return
        try:
            await self.consumer.commit(owned)
        except Exception as exc:  # commit is advisory: state checkpoints hold the truth
            log.warning("offset commit failed (state checkpoints still hold): %s", exc)

    async def _run(self) -> None:
        while not self._stopping:
            try:
                records = await self.consumer.getmany(timeout_ms=self.poll_timeout_ms, max_records=self.max_records)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.error("poll failed, retrying in 1 s: %s", exc)
                await asyncio.sleep(1.0)
                continue
            self.last_poll = time.monotonic()
            if not records:
                continue
            async with self._lock:
                # drop records of partitions revoked while we waited for the lock
                owned = self.consumer.assignment()
                records = {tp: recs for tp, recs in records.items() if tp in owned}
                if not records:
                    continue
                try:
                    offsets = await self.handler.handle(records)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    # an agent never dies on input: the handler dead-letters bad records itself, so an
                    # exception here is a bug or an outage (e.g. Redis down). Re-read from the last
                    # checkpoint instead of skipping data.
                    log.exception("batch handler failed; re-reading from the last checkpoint in 1 s")
                    self.failures += 1
                    self.last_error = type(exc).__name__
                    if self.failing_since is None:
                        self.failing_since = time.monotonic()
                    await self._rewind(set(records))
                    await asyncio.sleep(1.0)
                    continue
            self.records_total += sum(len(r) for r in records.values())
            self.last_progress = time.monotonic()
            self._sync_paused()
            if offsets:  # a checkpoint was written: progress that a failure can no longer undo
                self.failing_since = None
            await self._commit(offsets)

    async def run_exclusive(self, what: str, step: Callable[[], Awaitable[None]]) -> bool:
        """Run a timer step of the handler between batches (never inside one); True if it succeeded.

        A step that fails (Redis or Kafka unavailable) may have changed partition state without
        publishing what the change caused (a closed window, an alert); the partitions are then
        restored from their checkpoints, exactly as after a failed batch, and the step runs again
        at the next tick.
        """
        async with self._lock:
            try:
                await step()
                self._sync_paused()
                return True
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("%s failed (%s: %s); restoring the partitions from their checkpoints", what,
                            type(exc).__name__, exc)  # fmt: skip
                await self._rewind(set(self.consumer.assignment()))
                return False

    def _sync_paused(self) -> None:
        """Pause the partitions the handler holds messages of (``held_partitions``), resume the others.

        A handler that holds back the topic that runs ahead (see
        :meth:`processors.ingest.PartitionIngest.process`) would otherwise keep
        fetching it into memory while it waits for the other topic.
        """
        held = getattr(self.handler, "held_partitions", None)
        if held is None:
            return
        owned = self.consumer.assignment()
        wanted = {tp for tp in held() if tp in owned}
        paused = self.consumer.paused()
        if wanted - paused:
            self.consumer.pause(*(wanted - paused))
        if paused - wanted:
            self.consumer.resume(*(paused - wanted))

    async def _rewind(self, failed: set[TopicPartition]) -> None:
        """Throw away the in-memory state of the failed partitions and resume from their checkpoint.

        The failed batch may have been applied in part, and everything since the last checkpoint
        is in memory: re-reading from the checkpoint's offsets *with* that state would count it
        twice. So the handler drops those partitions (every topic of them) and restores them
        from the checkpoint, retried while the store is unavailable (e.g. Redis is down).
        """
        numbers = {tp.partition for tp in failed}
        partitions = {tp for tp in self.consumer.assignment() if tp.partition in numbers}
        discard = getattr(self.handler, "discard", None)
        if discard is not None:
            discard(partitions)
        while True:
            try:
                resume = await self.handler.on_assigned(partitions)
                break
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("cannot restore %s from its checkpoint yet (%s); retrying in 1 s", _fmt(partitions), exc)
                await asyncio.sleep(1.0)
        for tp in partitions:
            if tp in resume:
                self.consumer.seek(tp, resume[tp])
            else:
                committed = await self.consumer.committed(tp)
                if committed is not None:
                    self.consumer.seek(tp, committed)
                else:
                    await self.consumer.seek_to_beginning(tp)
        self._sync_paused()


def _fmt(partitions: set[TopicPartition]) -> str:
    return ", ".join(f"{tp.topic}[{tp.partition}]" for tp in sorted(partitions))


async def stop_consumer(consumer: AIOKafkaConsumer) -> None:
    """Stop a consumer, absorbing aiokafka 0.14's CancelledError from its internal reset task.

    ``AIOKafkaConsumer.stop()`` cancels and then awaits the coordinator's
    ``_reset_committed_task``; for consumers without a group that await
    re-raises the task's own cancellation. The consumer is stopped all the same.
    """
    try:
        await consumer.stop()
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise  # we are being cancelled ourselves: propagate
