"""Shared helpers for the benchmarks: a reachable broker, topics, medians."""

from __future__ import annotations

import asyncio
import statistics
import uuid
from collections.abc import Sequence

from meterseg.settings import Settings
from meterseg.stack import LocalStack


def ensure_broker(settings: Settings) -> str:
    """The bootstrap address of a broker that answers; starts the local stack (Kafka, Redis) if needed."""
    stack = LocalStack.from_settings(settings, with_prometheus=False)
    if settings.kafka_bootstrap == stack.kafka.bootstrap and not stack.kafka.healthy():
        print(f"starting the local stack in {settings.stack.state_dir} ...", flush=True)
        stack.up()
    if not stack.redis.healthy() and settings.redis_url.startswith(stack.redis.url.rsplit("/", 1)[0]):
        stack.redis.up()
    return settings.kafka_bootstrap


async def create_topic(bootstrap: str, name: str, partitions: int) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
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

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
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
