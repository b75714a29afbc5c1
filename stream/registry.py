"""Follows the compacted ``meter.registry`` topic into an in-memory :class:`MeterRegistry`.

Every worker reads the whole registry (all partitions, no consumer group):
the fleet is needed to reject unknown meters, to know regions for regional
totals and which meters may export. ``catch_up()`` reads to the end before
ingestion starts, so a reading is never dead-lettered as "unknown meter" just
because the worker had not read the registry yet.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from pydantic import ValidationError

from processors.columns import MeterRegistry
from stream.clients.consumer import stop_consumer
from stream.schemas import MeterInfo

log = logging.getLogger(__name__)


class RegistryFollower:
    """Keeps ``registry`` up to date with the registry topic."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        registry: MeterRegistry | None = None,
        on_invalid: Callable[[bytes, str, int, int], None] | None = None,
        **client_options: Any,
    ):
        """``client_options`` go to the aiokafka consumer (security: :func:`stream.clients.security.kafka_client_options`)."""
        self.topic = topic
        self.registry = registry if registry is not None else MeterRegistry()
        self.on_invalid = on_invalid
        self.invalid = 0
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            # the broker holds an empty fetch up to fetch_max_wait_ms; sync() runs before every ingest
            # batch, so a long wait would stall ingestion (measured: 0.8 s per batch at the 500 ms default)
            fetch_max_wait_ms=10,
            **client_options,
        )
        # end offsets come from a client that never fetches, so the lookup never queues behind a fetch
        self._offsets = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False, **client_options
        )
        self._task: asyncio.Task[None] | None = None
        self._partitions: list[TopicPartition] = []
        self._sync_lock = asyncio.Lock()

    async def start(self) -> None:
        await self.consumer.start()
        await self._offsets.start()
        parts = self.consumer.partitions_for_topic(self.topic)
        if not parts:
            await self.consumer._client.force_metadata_update()
            parts = self.consumer.partitions_for_topic(self.topic) or {0}
        self._partitions = [TopicPartition(self.topic, p) for p in sorted(parts)]
        self.consumer.assign(self._partitions)
        await self.consumer.seek_to_beginning(*self._partitions)

    async def sync(self, timeout_s: float = 30.0) -> None:
        """Read registrations published up to now (called before each ingest batch).

        A simulator or head-end registers meters just before their first
        readings; without this, a worker that polls the readings first would
        dead-letter them as unknown meters.
        """
        async with self._sync_lock:
            await self._read_to_end(timeout_s)

    async def catch_up(self, timeout_s: float = 120.0) -> int:
        """Read until the end offsets seen now; return the number of meters known."""
        await self._read_to_end(timeout_s)
        log.info("meter registry loaded: %d meters from %s", len(self.registry), self.topic)
        return len(self.registry)

    async def _read_to_end(self, timeout_s: float) -> None:
        ends = await self._offsets.end_offsets(self._partitions)

        async def behind() -> bool:
            for tp, end in ends.items():
                if await self.consumer.position(tp) < end:
                    return True
            return False

        async def _read() -> None:
            while await behind():
                await self._poll()

        await asyncio.wait_for(_read(), timeout=timeout_s)

    def follow(self) -> None:
        """Keep applying registrations in the background."""
        self._task = asyncio.create_task(self._follow(), name="registry-follower")

    async def _follow(self) -> None:
        while True:
            try:
                async with self._sync_lock:
                    await self._poll(timeout_ms=100)
                await asyncio.sleep(0.4)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("registry poll failed, retrying: %s", exc)
                await asyncio.sleep(1)

    async def _poll(self, timeout_ms: int = 200) -> None:
        batch = await self.consumer.getmany(timeout_ms=timeout_ms, max_records=50_000)
        for tp, records in batch.items():
            for rec in records:
                error = apply_registration(self.registry, rec.value)
                if error is not None:
                    self.invalid += 1
                    if self.on_invalid is not None:
                        self.on_invalid(rec.value or b"", error, tp.partition, rec.offset)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await stop_consumer(self.consumer)
        await stop_consumer(self._offsets)


def apply_registration(registry: MeterRegistry, value: bytes | None) -> str | None:
    """Apply one ``meter.registry`` record; the reason it is invalid, or ``None`` (applied, or a tombstone).

    A tombstone (``None``) is ignored: meters are never forgotten mid-run.

    Examples:
        >>> reg = MeterRegistry()
        >>> apply_registration(reg, b'{"meter_id": "M1", "customer_id": "C1", "region": "N", "tariff": "prepaid",'
        ...                         b' "installed_on": "2025-01-01T00:00:00Z"}'), len(reg)
        (None, 1)
        >>> print(apply_registration(reg, b'{"meter_id": "M1", "tariff": "free"}'))
        customer_id: Field required; region: Field required; tariff: Input should be 'prepaid' or 'postpaid'; installed_on: Field required
    """
    if value is None:
        return None
    try:
        registry.upsert(MeterInfo.model_validate_json(value))
    except ValidationError as exc:
        return "; ".join(
            f"{'.'.join(str(x) for x in e['loc']) or 'payload'}: {e['msg']}" for e in exc.errors(include_url=False)[:5]
        )
    return None
