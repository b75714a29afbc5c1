"""The local stack launcher: idempotent up, down stops only its own processes, data survives restarts.

Runs a second, private stack (own ports and state directory) so it never
disturbs the session stack other tests use. Skipped where a Docker engine
serves the tests (the launcher is this machine's path).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import pytest
import redis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from meterseg.settings import Settings, StackSettings
from meterseg.stack import LocalStack
from meterseg.stack.ports import free_port
from meterseg.stack.process import port_open
from stream.clients.consumer import stop_consumer
from tests.conftest import Services

pytestmark = pytest.mark.integration

#: private ports (not the fixed 39092 & co., which another private stack on the machine may hold)
PORTS = {name: free_port() for name in ("kafka_port", "kafka_controller_port", "redis_port", "prometheus_port")}


@pytest.fixture
def private_stack(tmp_path: Path, services: Services) -> LocalStack:
    if services.via != "local":
        pytest.skip("the local launcher is exercised where no Docker engine answers")
    settings = Settings(stack=StackSettings(state_dir=tmp_path / "state", kafka_heap="384m", **PORTS))
    stack = LocalStack.from_settings(settings, with_prometheus=True, appendonly=True)
    yield stack
    stack.down()


async def _produce_and_commit(bootstrap: str, topic: str, group: str) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for i in range(10):
            await producer.send_and_wait(topic, f"m{i}".encode(), partition=0)
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        await consumer.commit({tp: 7})
    finally:
        await stop_consumer(consumer)


async def _committed(bootstrap: str, topic: str, group: str) -> tuple[int | None, int]:
    """Committed offset and end offset; retried while a restarted broker still loads its offsets topic."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        committed = None
        for _ in range(60):
            committed = await consumer.committed(tp)
            if committed is not None:
                break
            await asyncio.sleep(0.5)
        end = (await consumer.end_offsets([tp]))[tp]
        return committed, end
    finally:
        await stop_consumer(consumer)


def test_up_is_idempotent_down_stops_only_ours_and_state_survives(private_stack: LocalStack) -> None:
    stack = private_stack
    started = time.monotonic()
    first = stack.up(timeout_s=120)
    cold = time.monotonic() - started
    assert set(first.values()) == {"started"}
    second = stack.up(timeout_s=30)
    assert set(second.values()) == {"already running"}
    assert all(healthy for _, healthy in stack.status().values())
    pids = {name: pid for name, (pid, _) in stack.status().items()}

    client = redis.Redis.from_url(stack.redis.url)
    client.set("meterseg:test:key", "kept")
    client.close()
    asyncio.run(_produce_and_commit(stack.kafka.bootstrap, "stack.test", "stack-test-group"))

    stopped = stack.down()
    assert all(stopped.values())
    for pid in pids.values():
        assert pid is not None
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert not port_open(PORTS["kafka_port"]) and not port_open(PORTS["redis_port"])
    assert stack.status() == {"kafka": (None, False), "redis": (None, False), "prometheus": (None, False)}

    started = time.monotonic()
    stack.up(timeout_s=120)
    warm = time.monotonic() - started
    client = redis.Redis.from_url(stack.redis.url)
    assert client.get("meterseg:test:key") == b"kept"
    client.close()
    assert asyncio.run(_committed(stack.kafka.bootstrap, "stack.test", "stack-test-group")) == (7, 10)
    print(f"private stack: first up {cold:.1f} s (jars cached), up after down {warm:.1f} s")
    assert warm < 60


def test_killed_broker_recovers_with_topics_and_offsets(private_stack: LocalStack) -> None:
    stack = private_stack
    stack.up(timeout_s=120)
    asyncio.run(_produce_and_commit(stack.kafka.bootstrap, "crash.test", "crash-group"))
    pid = stack.kafka.process.read_pid()
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    for _ in range(50):
        if stack.kafka.process.read_pid() is None:
            break
        time.sleep(0.1)
    assert stack.status()["kafka"] == (None, False)
    outcome = stack.up(timeout_s=120)
    assert outcome["kafka"] == "started" and outcome["redis"] == "already running"
    assert asyncio.run(_committed(stack.kafka.bootstrap, "crash.test", "crash-group")) == (7, 10)
