"""Shared helpers for the benchmarks: a reachable broker, topics, medians."""

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
