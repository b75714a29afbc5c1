"""Production-safe defaults that take effect; topics that break co-partitioning are refused (issue 16, finding 2).

The test stack is a single broker: the default replication factor 3 is capped there with a warning naming
the setting, and the tests themselves run with the development values (``tests/conftest.py`` ``DEV_ENV``).
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from meterseg.settings import Settings, StackSettings
from stream.topics import ensure_topics
from tests.conftest import DEV_ENV
from tests.integration.harness import free_port, settings_env


@pytest.fixture
def production_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in DEV_ENV:
        monkeypatch.delenv(name, raising=False)


def test_defaults_are_production_values(production_env: None) -> None:
    s = Settings()
    assert (s.topic_replication_factor, s.topic_min_insync_replicas, s.producer_acks) == (3, 2, "all")
    assert s.web_bind == "0.0.0.0"  # a container's port mapping reaches it; the token guards it
    assert 0 < s.redis_socket_timeout_s <= 60 and 0 < s.redis_connect_timeout_s <= 10


def test_settings_reach_the_clients(tmp_path: Path) -> None:
    from stream.app import create_app
    from stream.clients.producer import BatchProducer
    from stream.clients.redis_client import sync_redis

    s = Settings(web_bind="0.0.0.0", redis_socket_timeout_s=7.5, redis_connect_timeout_s=2.5,
                 stack=StackSettings(state_dir=tmp_path))  # fmt: skip
    assert create_app(s).conf.web_bind == "0.0.0.0"
    client = sync_redis(s)
    try:
        kwargs = client.connection_pool.connection_kwargs
        assert (kwargs["socket_timeout"], kwargs["socket_connect_timeout"]) == (7.5, 2.5)
    finally:
        client.close()

    async def acks(value: str) -> tuple[int, bool]:
        producer = BatchProducer("127.0.0.1:1", acks=value).client
        return producer._sender._acks, producer._txn_manager is not None

    assert asyncio.run(acks("all")) == (-1, True)  # every in-sync replica, idempotent
    assert asyncio.run(acks("1")) == (1, False)


async def _topic_facts(bootstrap: str, topic: str) -> tuple[int, str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics([topic])
        replicas = len(described[0]["partitions"][0]["replicas"])
        configs = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
        entries = {e[0]: e[1] for e in configs[0].resources[0][4]}
        return replicas, entries["min.insync.replicas"]
    finally:
        await admin.close()


@pytest.mark.integration
def test_default_replication_is_capped_on_one_broker_with_a_warning(
    isolated_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    s = isolated_settings.model_copy(update={"topic_replication_factor": 3, "topic_min_insync_replicas": 2})
    with caplog.at_level(logging.WARNING, logger="stream.topics"):
        created = asyncio.run(ensure_topics(s))
    assert s.topics.readings in created
    assert "METERSEG_TOPIC_REPLICATION_FACTOR=3 but the cluster has 1 broker" in caplog.text
    assert asyncio.run(_topic_facts(s.kafka_bootstrap, s.topics.readings)) == (1, "1")


@pytest.mark.integration
def test_explicit_min_insync_replicas_is_set_on_created_topics(isolated_settings: Settings) -> None:
    s = isolated_settings.model_copy(update={"topic_replication_factor": 1, "topic_min_insync_replicas": 1})
    asyncio.run(ensure_topics(s))
    assert asyncio.run(_topic_facts(s.kafka_bootstrap, s.topics.purchases)) == (1, "1")


async def _create(bootstrap: str, topics: dict[str, int]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(t, n, 1) for t, n in topics.items()])
        for _ in range(100):  # until the broker's metadata lists them, as for topics that existed before a start
            if set(topics) <= set(await admin.list_topics()):
                break
            await asyncio.sleep(0.1)
    finally:
        await admin.close()


@pytest.mark.integration
def test_worker_refuses_topics_that_break_copartitioning(isolated_settings: Settings, tmp_path: Path) -> None:
    from stream.topics import TopicLayoutError

    s = isolated_settings
    asyncio.run(_create(s.kafka_bootstrap, {s.topics.readings: s.partitions, s.topics.heartbeats: 2}))
    with pytest.raises(TopicLayoutError) as caught:
        asyncio.run(ensure_topics(s))
    message = str(caught.value)
    assert f"{s.topics.heartbeats} has 2 partitions" in message and f"{s.topics.readings} {s.partitions}" in message
    assert f"METERSEG_PARTITIONS={s.partitions}" in message
    done = subprocess.run(
        [sys.executable, "-m", "meterseg.cli", "worker", "--web-port", str(free_port()),
         "--metrics-port", str(free_port())],
        env=settings_env(s), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-2000:]
    assert f"{s.topics.heartbeats} has 2 partitions" in done.stderr
