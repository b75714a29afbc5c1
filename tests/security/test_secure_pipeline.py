"""The simulator and a worker through SASL/SCRAM Kafka and a password-protected Redis; no secret in any log.

One fleet (50 meters, one day) is produced by ``meterseg simulate`` over a
SASL listener (SCRAM, plain or over TLS); a ``meterseg worker`` configured the
same way consumes it into the password-protected Redis. A worker without the Redis password stops with
an error saying what to fix.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import redis

from tests.integration.harness import free_port, running_worker, settings_env, simulate, wait_for
from tests.security.conftest import Protocol, SecureStack

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("protocol", ["SASL_PLAINTEXT", "SASL_SSL"])
def test_simulator_and_worker_through_sasl_and_redis_password(
    secure_stack: SecureStack, tmp_path: Path, protocol: Protocol
) -> None:
    unique = uuid.uuid4().hex[:8]
    settings = secure_stack.settings(unique, protocol)
    env = secure_stack.security_env(protocol)
    summary = simulate(settings, tmp_path, "--meters", "50", "--days", "1", "--seed", "5", "--no-ops", **env)
    produced = summary["messages"]
    expected = produced[settings.topics.readings] + produced[settings.topics.heartbeats]
    assert expected > 50 * 90  # 96 readings and 96 heartbeats per meter-day, less the faults

    with running_worker(settings, tmp_path, **env) as worker:
        wait_for(lambda: worker.health().get("totals", {}).get("messages", 0) >= expected, 90, "all readings")
        health = worker.health()
        assert health["meters_known"] == 50
        assert any(p.startswith(f"{settings.topics.readings}[") for p in health["partitions"])
        assert health["totals"]["accepted"] > 0
        log_text = worker.log_path.read_text(errors="replace")
    # the worker wrote its state into the password-protected Redis
    client = redis.Redis.from_url(secure_stack.redis.url)
    try:
        assert any(True for _ in client.scan_iter(match=f"{settings.app_id}:*", count=1000))
    finally:
        client.close()
    log_text += worker.log_path.read_text(errors="replace")  # including shutdown
    assert f"Authenticated as {secure_stack.kafka_user} via SCRAM-SHA-512" in log_text
    assert secure_stack.kafka_password not in log_text
    assert secure_stack.redis_password not in log_text


def test_worker_without_redis_password_fails_clearly(secure_stack: SecureStack, tmp_path: Path) -> None:
    unique = uuid.uuid4().hex[:8]
    settings = secure_stack.settings(unique, redis_url=secure_stack.redis_url_no_auth)
    log_path = tmp_path / "worker.log"
    web, metrics = free_port(), free_port()
    with log_path.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "meterseg.cli", "worker", "--web-port", str(web), "--metrics-port", str(metrics)],
            env=settings_env(settings, **secure_stack.security_env()),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            if "refused this worker's credentials" in log_path.read_text(errors="replace"):
                break
            time.sleep(0.5)
        text = log_path.read_text(errors="replace")
        assert "RedisAuthError" in text and "METERSEG_REDIS_URL" in text, text[-3000:]
        assert f"redis://127.0.0.1:{secure_stack.redis.port}/0" in text  # which server refused
        assert secure_stack.kafka_password not in text
        proc.wait(timeout=30)  # the worker does not hang on: it stops
        assert proc.returncode != 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
