"""A batching Kafka producer: many records per request, partitioned like Kafka's default.

Why not ``producer.send()`` per record: each call schedules asyncio work and
tops out near 40–90 k records/s here, while ``create_batch``/``send_batch``
(one batch per partition) reaches 150–300 k/s. Keys are partitioned with
Kafka's murmur2 default partitioner, so records land where a Java or kcat
producer would put them (co-partitioning of readings and heartbeats holds).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner

log = logging.getLogger(__name__)

Headers = list[tuple[str, bytes]]
KeyValue = tuple[bytes | None, bytes] | tuple[bytes | None, bytes, Headers]


class BatchProducer:
    """Owns one :class:`AIOKafkaProducer` and sends lists of (key, value) pairs as partition batches."""

    def __init__(
        self,
        bootstrap: str,
        *,
        linger_ms: int = 0,
        max_batch_size: int = 1024 * 1024,
        acks: str = "all",
        **kwargs: Any,
    ):
        """``acks``: ``"all"`` (idempotent: no duplicates from the producer's own retries), ``"1"`` or ``"0"``."""
        self._producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap,
            linger_ms=linger_ms,
            max_batch_size=max_batch_size,
            max_request_size=16 * 1024 * 1024,
            acks="all" if acks == "all" else int(acks),
            enable_idempotence=acks == "all",  # Kafka's idempotent producer requires acks=all
            **kwargs,
        )
        self._partitioner = DefaultPartitioner()
        self._partitions: dict[str, list[int]] = {}
        self._round_robin = 0
        self._partition_cache: dict[int, dict[bytes, int]] = {}

    @property
    def client(self) -> AIOKafkaProducer:
        return self._producer

    async def start(self) -> None:
        await self._producer.start()

    async def stop(self) -> None:
        await self._producer.stop()

    async def partitions_for(self, topic: str) -> list[int]:
        if topic not in self._partitions:
            self._partitions[topic] = sorted(await self._producer.partitions_for(topic))
        return self._partitions[topic]

    def partition_of(self, key: bytes | None, partitions: Sequence[int]) -> int:
        if key is None:
            self._round_robin += 1
            return partitions[self._round_robin % len(partitions)]
        # murmur2 in pure Python costs ~2.7 µs a key; keys (meter and customer ids) repeat, so cache
        cache = self._partition_cache.get(len(partitions))
        if cache is None or len(cache) > 2_000_000:
            cache = self._partition_cache[len(partitions)] = {}
        p = cache.get(key)
        if p is None:
            p = cache[key] = int(self._partitioner(key, list(partitions), list(partitions)))
        return p

    async def send_many(self, topic: str, records: Iterable[KeyValue], *, wait: bool = True) -> int:
        """Send every record; with ``wait`` return only once the broker acknowledged all of them."""
        partitions = await self.partitions_for(topic)
        batches: dict[int, Any] = {}
        pending: list[asyncio.Future[Any]] = []
        count = 0
        for record in records:
            key, value = record[0], record[1]
            headers: Headers = record[2] if len(record) == 3 else []
            p = self.partition_of(key, partitions)
            batch = batches.get(p)
            if batch is None:
                batch = batches[p] = self._producer.create_batch()
            if batch.append(key=key, value=value, timestamp=None, headers=headers) is None:
                pending.append(await self._producer.send_batch(batch, topic, partition=p))
                batch = batches[p] = self._producer.create_batch()
                if batch.append(key=key, value=value, timestamp=None, headers=headers) is None:
                    raise ValueError(f"a record of {len(value)} bytes does not fit in one batch for {topic}")
            count += 1
        for p, batch in batches.items():
            if batch.record_count():
                pending.append(await self._producer.send_batch(batch, topic, partition=p))
        if wait and pending:
            await asyncio.gather(*pending)
        return count
