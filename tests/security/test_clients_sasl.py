"""The Kafka clients outside the engine connect like the engine: the example consumer and the benchmarks over SASL.

``examples/segment_changes_consumer.py`` and the benchmarks take bootstrap and
SASL / TLS from ``METERSEG_KAFKA_*`` (``stream.clients.security``); run as
their users run them (subprocesses with the variables) against the private
SCRAM-SHA-512 broker, with no PLAINTEXT address anywhere in their environment.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from stream.clients.security import kafka_client_options
from tests.conftest import REPO
from tests.integration.harness import settings_env
from tests.security.conftest import Protocol, SecureStack

pytestmark = pytest.mark.integration


def _change(customer: str, segment: str, action: str = "entered") -> bytes:
    return json.dumps({"customer_id": customer, "family": "rfm", "segment_id": segment, "action": action}).encode()


@pytest.mark.parametrize("protocol", ["SASL_PLAINTEXT", "SASL_SSL"])
def test_example_consumer_reads_segment_changes_over_sasl(secure_stack: SecureStack, protocol: Protocol) -> None:
    settings = secure_stack.settings(uuid.uuid4().hex[:8], protocol)
    topic = settings.topics.segment_changes

    async def produce() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, **kafka_client_options(settings))
        await producer.start()
        try:
            for key, value in [("C1", _change("C1", "loyal")), ("C2", _change("C2", "loyal")),
                               ("C1", _change("C1", "champions"))]:  # fmt: skip
                await producer.send_and_wait(topic, value, key=key.encode())
        finally:
            await producer.stop()

    asyncio.run(produce())
    done = subprocess.run(
        [sys.executable, str(REPO / "examples" / "segment_changes_consumer.py")],
        env=settings_env(settings, **secure_stack.security_env(protocol)),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "rfm:champions\t1" in done.stdout and "rfm:loyal\t1" in done.stdout, done.stdout
    assert "3 changes applied" in done.stdout
    assert secure_stack.kafka_password not in done.stdout + done.stderr


def test_baseline_benchmark_runs_over_sasl_ssl(secure_stack: SecureStack, tmp_path: Path) -> None:
    """``bench.baseline`` (its producers, consumer and the shared topic helpers of ``bench.common``)."""
    settings = secure_stack.settings(uuid.uuid4().hex[:8], "SASL_SSL")
    done = subprocess.run(
        [sys.executable, "-m", "bench.baseline", "--messages", "3000", "--runs", "1"],
        env=settings_env(settings, **secure_stack.security_env("SASL_SSL")),
        capture_output=True,
        text=True,
        timeout=180,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "median consumer getmany" in done.stdout, done.stdout
    assert secure_stack.kafka_password not in done.stdout + done.stderr
