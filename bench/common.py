"""Shared helpers for the benchmarks: a reachable broker, topics, medians and percentiles, reading a topic back."""

from __future__ import annotations

import asyncio
import statistics
import uuid
from collections.abc import Sequence
from typing import Any

from meterseg.settings import Settings
from meterseg.stack import LocalStack
from stream.clients.security import kafka_client_options


def kafka_options(settings: Settings | None = None) -> dict[str, Any]:
    """aiokafka authentication / encryption options (SASL, TLS) of ``settings``, by default the environment's.

    Every Kafka client of the benchmarks takes them, so a benchmark runs against a secured broker
    with the same ``METERSEG_KAFKA_SECURITY__*`` variables as the worker.
    """
    return kafka_client_options(settings if settings is not None else Settings())


def ensure_broker(settings: Settings) -> str:
    """The bootstrap address of a broker that answers; starts the local stack (Kafka, Redis) if needed."""
    stack = LocalStack.from_settings(settings, with_prometheus=False)
    ours = {stack.kafka.bootstrap, stack.kafka.sasl_bootstrap, stack.kafka.ssl_bootstrap}
    if settings.kafka_bootstrap in ours and not stack.kafka.healthy():
        print(f"starting the local stack in {settings.stack.state_dir} ...", flush=True)
        stack.up()
    if not stack.redis.healthy() and settings.redis_url.startswith(stack.redis.url.rsplit("/", 1)[0]):
        stack.redis.up()
    return settings.kafka_bootstrap


async def create_topic(bootstrap: str, name: str, partitions: int) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **kafka_options())
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])
    finally:
        await admin.close()
    await asyncio.sleep(0.5)


async def delete_topics(bootstrap: str, names: list[str]) -> None:
    """Remove the benchmark's own topics (they would pile up on a shared broker)."""
    if not names:
        return
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **kafka_options())
    await admin.start()
    try:
        await admin.delete_topics(names)
    finally:
        await admin.close()


def fresh_topic(prefix: str) -> str:
    return f"bench.{prefix}.{uuid.uuid4().hex[:8]}"


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def fmt_rate(value: float) -> str:
    return f"{value:,.0f}/s"


def percentile(values: Sequence[float], q: float) -> float:
    """The value at rank ``round(q * (n - 1))`` of the sorted values (nearest rank, no interpolation); NaN if none."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def read_records(settings: Settings, topic: str, since_ms: int | None = None) -> list[tuple[int, bytes]]:
    """(Kafka timestamp ms, value) of every record of ``topic`` up to its end offsets at the call; with
    ``since_ms``, only from the first record stamped at or after it (``offsets_for_times``)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from stream.clients.consumer import stop_consumer

    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=None, enable_auto_commit=False,
                                **kafka_options(settings))  # fmt: skip
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        starts = await consumer.beginning_offsets(tps)
        if since_ms is not None:
            found = await consumer.offsets_for_times(dict.fromkeys(tps, since_ms))
            starts = {tp: ends[tp] if found.get(tp) is None else found[tp].offset for tp in tps}
        left = {tp: ends[tp] for tp in tps if starts[tp] < ends[tp]}
        for tp in left:
            consumer.seek(tp, starts[tp])
        out: list[tuple[int, bytes]] = []
        while left:
            got = await consumer.getmany(*left, timeout_ms=1000, max_records=5000)
            for tp, msgs in got.items():
                out.extend((m.timestamp, m.value) for m in msgs if m.offset < left[tp] and m.value is not None)
            for tp in [tp for tp, end in left.items() if await consumer.position(tp) >= end]:
                del left[tp]
        return out
    finally:
        await stop_consumer(consumer)
