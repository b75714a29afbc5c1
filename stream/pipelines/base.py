"""What every partitioned pipeline shares: per-partition state, checkpoints and resume offsets.

A pipeline keeps one processor per owned partition (the same partition number
of each of its co-partitioned input topics). On assignment it restores the
processor from its Redis checkpoint and resumes at the offsets the checkpoint
reflects; every ``checkpoint_interval_s`` (and on revocation) it saves state
and offsets atomically, and only those offsets are committed to Kafka.

Rebalances move only what moves. Kafka's eager protocol revokes every
partition of a worker before it assigns the new set, so a revoked partition is
checkpointed (another worker may take it) but its processor is *parked*, with
the id of the checkpoint generation it wrote. When the partition comes back in
the same rebalance and its checkpoint is still that generation (nobody else
processed and checkpointed it meanwhile), the parked processor is taken back
as it is, and reading resumes where it stopped: no read, no decode, no rebuild
of state that never left (``meterseg_partitions_kept_total``). A partition
whose checkpoint changed hands is restored from it; parked processors not
assigned again are dropped.

A checkpoint *writes* only the chunks of the state that changed
(:mod:`stream.state.checkpoints`), but it still snapshots and hashes the
partition's whole state, which grows with the meters and customers of the
partition (~320 MB of ingest state for 250 000 meters). A partition is
therefore checkpointed every ``checkpoint_interval_s``, or, when that is
shorter, every :data:`CHECKPOINT_SPACING` times what the last checkpoints of
all the pipeline's partitions took together: a pipeline spends at most about
1/(1 + CHECKPOINT_SPACING) of its time checkpointing, at the price of a longer
replay after a crash when its state is big (small states keep
``checkpoint_interval_s``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from aiokafka import TopicPartition

from processors.columns import RawMessage
from stream import metrics as m
from stream.clients.consumer import Records
from stream.state.checkpoints import CheckpointFenced, CheckpointStore

log = logging.getLogger(__name__)

#: checkpoints taking longer are logged with their costs (snapshot, encode, write) and size
SLOW_CHECKPOINT_S = 1.0
#: a partition's next checkpoint waits at least this many times what the pipeline's last checkpoints took
CHECKPOINT_SPACING = 10.0

P = TypeVar("P")


@dataclass
class PartitionState(Generic[P]):
    processor: P
    offsets: dict[str, int] = field(default_factory=dict)  # topic -> next offset reflected in processor
    checkpointed: dict[str, int] = field(default_factory=dict)
    last_checkpoint: float = field(default_factory=time.monotonic)
    checkpoint_s: float = 0.0  # what the last checkpoint took (snapshot and save)


class PartitionedHandler(Generic[P]):
    """Base of the pipelines' :class:`~stream.clients.consumer.BatchHandler` implementations."""

    pipeline = "pipeline"

    def __init__(self, checkpoints: CheckpointStore, checkpoint_interval_s: float):
        self.checkpoints = checkpoints
        self.checkpoint_interval_s = checkpoint_interval_s
        self.partitions: dict[int, PartitionState[P]] = {}
        self.parked: dict[int, tuple[PartitionState[P], str]] = {}
        """Revoked partitions kept in memory until the next assignment, with the checkpoint generation they wrote."""
        self.before_batch: Callable[[], Awaitable[None]] | None = None

    # -- to implement ---------------------------------------------------------------------------
    def new_processor(self, partition: int) -> P:
        raise NotImplementedError

    def restore_processor(self, partition: int, state: Any) -> P:
        raise NotImplementedError

    def snapshot(self, processor: P) -> Any:
        raise NotImplementedError

    def resume_processor(self, partition: int, processor: P) -> P:
        """A parked processor taken back after a rebalance: refresh what it shares with the worker (hook)."""
        return processor

    async def process(self, batches: dict[int, dict[str, list[RawMessage]]]) -> None:
        """Process each owned partition's messages by topic and publish the outputs."""
        raise NotImplementedError

    # -- rebalance --------------------------------------------------------------------------------
    async def on_assigned(self, partitions: set[TopicPartition]) -> dict[TopicPartition, int]:
        resume: dict[TopicPartition, int] = {}
        numbers = sorted({tp.partition for tp in partitions})
        parked, self.parked = self.parked, {}  # parked processors not assigned again are dropped here
        for p in numbers:
            if p in self.partitions:
                continue
            started = time.perf_counter()
            kept = parked.pop(p, None)
            if kept is not None and await self.checkpoints.generation(self.pipeline, p) == kept[1]:
                part = kept[0]
                part.processor = self.resume_processor(p, part.processor)
                self.partitions[p] = part
                resume.update({TopicPartition(topic, p): offset for topic, offset in part.offsets.items()})
                m.PARTITIONS_KEPT.labels(self.pipeline).inc()
                log.info("%s partition %d: kept in memory across the rebalance, resuming at %s", self.pipeline, p,
                         part.offsets)  # fmt: skip
                continue
            state, offsets = await self.checkpoints.load(self.pipeline, p)
            if state is not None:
                processor = self.restore_processor(p, state)
                log.info("%s partition %d: restored state at offsets %s", self.pipeline, p, offsets)
            else:
                processor = self.new_processor(p)
            self.partitions[p] = PartitionState(processor, dict(offsets), dict(offsets))
            resume.update({TopicPartition(topic, p): offset for topic, offset in offsets.items()})
            m.RECOVERY_SECONDS.labels(self.pipeline).observe(time.perf_counter() - started)
        m.REBALANCES.inc()
        return resume

    def discard(self, partitions: set[TopicPartition]) -> None:
        """Forget the in-memory state of these partitions (a failed batch: restore from the checkpoint)."""
        for p in {tp.partition for tp in partitions}:
            self.parked.pop(p, None)
            if self.partitions.pop(p, None) is not None:
                log.warning("%s partition %d: in-memory state dropped; restoring from the checkpoint", self.pipeline, p)

    async def on_revoked(self, partitions: set[TopicPartition]) -> dict[TopicPartition, int]:
        out: dict[TopicPartition, int] = {}
        for p in sorted({tp.partition for tp in partitions}):
            part = self.partitions.pop(p, None)
            if part is None:
                continue
            try:
                await self._checkpoint(p, part)
            except CheckpointFenced as exc:
                self._lost(p, exc)
                continue
            out.update({TopicPartition(t, p): o for t, o in part.checkpointed.items()})
            stats = getattr(self.checkpoints, "last_save", None)
            if stats is not None and stats.generation:
                self.parked[p] = (part, stats.generation)
        return out

    # -- processing -------------------------------------------------------------------------------
    async def handle(self, records: Records) -> dict[TopicPartition, int]:
        if self.before_batch is not None:
            await self.before_batch()
        batches: dict[int, dict[str, list[RawMessage]]] = {}
        for tp, recs in records.items():
            if tp.partition not in self.partitions or not recs:
                continue
            msgs = [RawMessage(r.value or b"", tp.topic, tp.partition, r.offset, r.timestamp) for r in recs]
            batches.setdefault(tp.partition, {}).setdefault(tp.topic, []).extend(msgs)
            m.EVENTS_CONSUMED.labels(tp.topic).inc(len(recs))
        if batches:
            started = time.perf_counter()
            await self.process(batches)
            m.BATCH_SECONDS.labels(self.pipeline).observe(time.perf_counter() - started)
            for p, by_topic in batches.items():
                for topic, msgs in by_topic.items():
                    self.partitions[p].offsets[topic] = msgs[-1].offset + 1
        return await self._maybe_checkpoint()

    async def _maybe_checkpoint(self, force: bool = False) -> dict[TopicPartition, int]:
        now = time.monotonic()
        committed: dict[TopicPartition, int] = {}
        spacing = max(self.checkpoint_interval_s, CHECKPOINT_SPACING * self.checkpoint_cost())
        for p, part in list(self.partitions.items()):
            if force or now - part.last_checkpoint >= spacing:
                try:
                    await self._checkpoint(p, part)
                except CheckpointFenced as exc:
                    del self.partitions[p]  # its records are ignored until the group takes it from this worker
                    self._lost(p, exc)
                    continue
                committed.update({TopicPartition(t, p): o for t, o in part.checkpointed.items()})
        return committed

    def _lost(self, p: int, exc: CheckpointFenced) -> None:
        log.warning("%s partition %d: another worker checkpointed it since this one did (%s); this worker's state "
                    "of it since its last checkpoint is dropped, the owner's checkpoint stands", self.pipeline, p,
                    exc)  # fmt: skip

    def checkpoint_cost(self) -> float:
        """Seconds the last checkpoint of every owned partition took, together."""
        return sum(part.checkpoint_s for part in self.partitions.values())

    async def _checkpoint(self, p: int, part: PartitionState[P]) -> None:
        started = time.perf_counter()
        state = [self.snapshot(part.processor)]
        snapshot_s = time.perf_counter() - started
        offsets = self.checkpoint_offsets(part)
        # the store holds the only reference to the snapshot: freed once encoded, not kept through the write
        await self.checkpoints.save(self.pipeline, p, state.pop(), offsets)
        took = time.perf_counter() - started
        part.checkpointed = offsets
        part.last_checkpoint = time.monotonic()
        part.checkpoint_s = took
        m.CHECKPOINTS.labels(self.pipeline).inc()
        stats = getattr(self.checkpoints, "last_save", None)
        if stats is not None:
            m.CHECKPOINT_BYTES.labels(self.pipeline, "state").inc(stats.bytes)
            m.CHECKPOINT_BYTES.labels(self.pipeline, "written").inc(stats.written)
        if took >= SLOW_CHECKPOINT_S and stats is not None:
            log.info("checkpoint %s[%d]: %.1f MB in %d chunks, %.1f MB of them new, snapshot %.2f s, "
                     "chunking %.2f s, write %.2f s", self.pipeline, p, stats.bytes / 1e6, stats.parts,
                     stats.written / 1e6, snapshot_s, stats.encode_s, stats.write_s)  # fmt: skip

    def checkpoint_offsets(self, part: PartitionState[P]) -> dict[str, int]:
        """The offsets a checkpoint of ``part`` reflects: the next to read, or earlier for messages held back."""
        return dict(part.offsets)

    async def checkpoint_all(self) -> dict[TopicPartition, int]:
        return await self._maybe_checkpoint(force=True)
