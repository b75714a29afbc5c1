"""Where produced events go: Kafka, JSON-Lines files, or nowhere (benchmarks).

Producers hand a sink whole lists of ``(key, value)`` for one topic
partition; the partition is chosen by the caller with Kafka's own murmur2
rule (:mod:`simulators.partition`), which is what lets :class:`KafkaSink`
fill record batches directly (``create_batch``/``send_batch``) instead of
paying aiokafka's per-message ``send()`` overhead.

:class:`FileSink` writes one ``<topic>.jsonl`` per topic, one message value
per line, in production order: the files are byte-identical for equal seeds,
which is how determinism is tested. (A malformed-JSON fault is written as the
broken line it is; it never contains a newline.)

Examples:
    >>> import asyncio, tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> async def demo() -> dict[str, int]:
    ...     async with FileSink(d) as sink:
    ...         await sink.send("t", 0, [(b"k", b'{"a":1}'), (b"k", b'{"a":2}')])
    ...     return dict(sink.counts)
    >>> asyncio.run(demo())
    {'t': 2}
    >>> (d / "t.jsonl").read_bytes()
    b'{"a":1}\\n{"a":2}\\n'
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

log = logging.getLogger(__name__)

Message = tuple[bytes | None, bytes]


class Sink:
    """Base sink: counts messages per topic; subclasses deliver them."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.bytes = 0

    async def start(self) -> None:
        """Open connections or files."""

    async def send(self, topic: str, partition: int, messages: Sequence[Message]) -> None:
        """Queue messages for one topic partition (may wait for back-pressure)."""
        self.counts[topic] += len(messages)

    async def flush(self) -> None:
        """Wait until everything queued so far is delivered."""

    async def stop(self) -> None:
        """Flush and release resources."""
        await self.flush()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()


class NullSink(Sink):
    """Discards messages but counts them and their bytes (benchmarks, dry runs)."""

    async def send(self, topic: str, partition: int, messages: Sequence[Message]) -> None:
        self.counts[topic] += len(messages)
        self.bytes += sum(len(v) for _, v in messages)


class FileSink(Sink):
    """JSON Lines, one file per topic (``<dir>/<topic>.jsonl``), values only, in production order."""

    def __init__(self, directory: Path | str, *, append: bool = False) -> None:
        super().__init__()
        self.directory = Path(directory)
        self.append = append
        self._files: dict[str, IO[bytes]] = {}

    async def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)

    def path(self, topic: str) -> Path:
        if "/" in topic or topic.startswith("."):
            raise ValueError(f"topic name {topic!r} cannot be used as a file name")
        return self.directory / f"{topic}.jsonl"

    async def send(self, topic: str, partition: int, messages: Sequence[Message]) -> None:
        if not messages:
            return
        f = self._files.get(topic)
        if f is None:
            f = self._files[topic] = open(self.path(topic), "ab" if self.append else "wb",  # noqa: SIM115
                                          buffering=1 << 20)
        values = [v for _, v in messages]
        f.write(b"\n".join(values))
        f.write(b"\n")
        self.counts[topic] += len(messages)
        self.bytes += sum(map(len, values))

    async def flush(self) -> None:
        for f in self._files.values():
            f.flush()

    async def stop(self) -> None:
        for f in self._files.values():
            f.close()
        self._files.clear()


class KafkaSink(Sink):
    """Batched aiokafka producer: fills one record batch per partition and sends it with ``send_batch``.

    Topics missing on the broker are created with ``partitions`` partitions
    (the registry topic compacted); an existing topic with another partition
    count is refused, since our partitioning would then disagree with the
    engine's.
    """

    def __init__(
        self,
        bootstrap: str,
        partitions: int,
        *,
        compacted: Sequence[str] = (),
        batch_bytes: int = 1 << 19,
        max_inflight: int = 32,
        acks: int | str = 1,
        client_id: str = "meterseg-simulator",
        client_options: dict[str, Any] | None = None,
        replication_factor: int = 1,
        min_insync_replicas: int = 1,
    ) -> None:
        """``client_options``: extra aiokafka keyword arguments for the producer and admin client (SASL, TLS);
        ``replication_factor`` / ``min_insync_replicas``: of the topics it creates (capped at the brokers)."""
        super().__init__()
        self.client_options = dict(client_options or {})
        self.bootstrap = bootstrap
        self.partitions = partitions
        self.compacted = set(compacted)
        self.replication = (replication_factor, min_insync_replicas)
        self.batch_bytes = batch_bytes
        self.max_inflight = max_inflight
        self.acks = acks
        self.client_id = client_id
        self._producer: Any = None
        self._inflight: list[asyncio.Future[Any]] = []
        self._checked: set[str] = set()

    async def start(self) -> None:
        from aiokafka import AIOKafkaProducer

        self._producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap,
            client_id=self.client_id,
            acks=self.acks,
            max_batch_size=self.batch_bytes,
            max_request_size=max(self.batch_bytes * 2, 1 << 20),
            linger_ms=5,
            request_timeout_ms=60_000,
            **self.client_options,
        )
        try:
            await self._producer.start()
        except Exception as exc:
            await self._producer.stop()
            raise ConnectionError(f"cannot reach Kafka at {self.bootstrap}: {exc} "
                                  "(is the broker up? `meterseg stack up`, or set METERSEG_KAFKA_BOOTSTRAP)") from exc

    async def ensure_topics(self, topics: Sequence[str]) -> None:
        """Create missing topics and check the partition count of existing ones."""
        from aiokafka.admin import AIOKafkaAdminClient, NewTopic
        from aiokafka.errors import TopicAlreadyExistsError

        from stream.topics import replication_plan

        admin = AIOKafkaAdminClient(
            bootstrap_servers=self.bootstrap, client_id=self.client_id + "-admin", **self.client_options
        )
        await admin.start()
        try:
            existing = set(await admin.list_topics())
            missing = sorted(set(topics) - existing)
            rf, isr = await replication_plan(admin, *self.replication) if missing else (1, 1)
            new = [
                NewTopic(t, self.partitions, rf, topic_configs={
                    "min.insync.replicas": str(isr), **({"cleanup.policy": "compact"} if t in self.compacted else {})})
                for t in missing
            ]
            if new:
                with contextlib.suppress(TopicAlreadyExistsError):
                    await admin.create_topics(new)
                log.info("created topics %s with %d partitions", [t.name for t in new], self.partitions)
                # fresh partitions answer NotLeaderForPartition for a moment even once metadata names a leader
                await asyncio.sleep(1.0)
        finally:
            await admin.close()
        for t in topics:
            await self._check(t)

    async def _check(self, topic: str) -> None:
        if topic in self._checked:
            return
        parts = None
        for _ in range(50):
            parts = await self._producer.partitions_for(topic)
            if parts:
                break
            await asyncio.sleep(0.1)
        if not parts or len(parts) != self.partitions:
            raise RuntimeError(
                f"topic {topic!r} has {len(parts or ())} partitions but settings say {self.partitions}; "
                "set METERSEG_PARTITIONS to match or recreate the topic")
        await self._await_leaders(topic, sorted(parts))
        self._checked.add(topic)

    async def _await_leaders(self, topic: str, partitions: list[int]) -> None:
        """A just-created topic answers NotLeaderForPartition for a moment; wait for its leaders (max ~5 s)."""
        from aiokafka.structs import TopicPartition

        client = self._producer.client
        for _ in range(50):
            leaders = [client.cluster.leader_for_partition(TopicPartition(topic, p)) for p in partitions]
            if all(leader is not None and leader >= 0 for leader in leaders):
                return
            await client.force_metadata_update()
            await asyncio.sleep(0.1)
        log.warning("topic %s: partition leaders not known after 5 s; sending anyway (aiokafka retries)", topic)

    async def send(self, topic: str, partition: int, messages: Sequence[Message]) -> None:
        if not messages:
            return
        await self._check(topic)
        producer = self._producer
        batch = producer.create_batch()
        for key, value in messages:
            if batch.append(key=key, value=value, timestamp=None) is None:
                await self._submit(batch, topic, partition)
                batch = producer.create_batch()
                if batch.append(key=key, value=value, timestamp=None) is None:
                    raise ValueError(f"message of {len(value)} bytes does not fit a batch of {self.batch_bytes} "
                                     "bytes; use smaller envelopes (--envelope)")
        await self._submit(batch, topic, partition)
        self.counts[topic] += len(messages)
        self.bytes += sum(len(v) for _, v in messages)

    async def _submit(self, batch: Any, topic: str, partition: int) -> None:
        if batch.record_count() == 0:
            return
        fut = await self._producer.send_batch(batch, topic, partition=partition)
        self._inflight.append(fut)
        if len(self._inflight) >= self.max_inflight:
            half = len(self._inflight) // 2
            done, self._inflight = self._inflight[:half], self._inflight[half:]
            await asyncio.gather(*done)

    async def flush(self) -> None:
        if self._inflight:
            pending, self._inflight = self._inflight, []
            await asyncio.gather(*pending)

    async def stop(self) -> None:
        if self._producer is None:
            return
        try:
            await self.flush()
        finally:
            await self._producer.stop()
            self._producer = None
