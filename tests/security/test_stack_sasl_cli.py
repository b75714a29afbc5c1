"""``meterseg stack up --sasl --tls``: the operator's path to a local SCRAM-SHA-512 broker, end to end.

Runs the real CLI on a private stack (free ports, state in pytest's tmp):
``stack up --sasl --tls`` formats the broker with the SCRAM user of
``METERSEG_KAFKA_SECURITY__*`` and prints the client variables (never the
password); ``meterseg simulate`` produces over SASL_SSL with them and
``meterseg worker`` consumes over SASL_PLAINTEXT. Then the stack restarts
with another password: the storage predates it, so ``up`` updates the user
on the running broker; the old password is refused from then on. ``up
--sasl`` against a broker running without that listener says what to do.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaConnectionError

from meterseg.settings import KafkaSecurity, Settings, TopicNames
from stream.clients.security import kafka_client_options
from tests.conftest import local_test_settings
from tests.integration.harness import free_port, running_worker, simulate, wait_for

pytestmark = pytest.mark.integration


class StackCli:
    """``meterseg stack`` with the private stack's environment."""

    def __init__(self, state: Path, user: str, password: str) -> None:
        self.ports = {name: free_port() for name in ("KAFKA_PORT", "KAFKA_CONTROLLER_PORT", "KAFKA_SASL_PORT",
                                                       "KAFKA_SSL_PORT", "REDIS_PORT")}  # fmt: skip
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("METERSEG_")},
            "METERSEG_STACK__STATE_DIR": str(state),
            "METERSEG_STACK__CACHE_DIR": str(local_test_settings().stack.cache_dir),
            "METERSEG_STACK__KAFKA_HEAP": "384m",
            **{f"METERSEG_STACK__{k}": str(v) for k, v in self.ports.items()},
            "METERSEG_KAFKA_SECURITY__USERNAME": user,
            "METERSEG_KAFKA_SECURITY__PASSWORD": password,
        }

    def run(self, *args: str, timeout_s: float = 150) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "meterseg.cli", "stack", *args, "--no-prometheus"],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )

    def exported(self, stdout: str) -> dict[str, str]:
        """The ``export NAME=value`` lines ``stack up`` printed."""
        out = {}
        for line in stdout.splitlines():
            name, sep, value = line.strip().removeprefix("export ").partition("=")
            if line.strip().startswith("export ") and sep:
                out[name] = value.split("#", 1)[0].strip().strip("'")
        return out


@pytest.fixture
def stack_cli(tmp_path: Path) -> Iterator[StackCli]:
    cli = StackCli(tmp_path / "state", "meterseg-op", f"pw1-{secrets.token_hex(8)}")
    try:
        yield cli
    finally:
        cli.run("down", timeout_s=60)


def _connects(bootstrap: str, security: KafkaSecurity) -> bool:
    settings = Settings(kafka_bootstrap=bootstrap, kafka_security=security)

    async def go() -> bool:
        admin = AIOKafkaAdminClient(
            bootstrap_servers=bootstrap, request_timeout_ms=5000, **kafka_client_options(settings)
        )
        try:
            await asyncio.wait_for(admin.start(), timeout=20)
            await admin.list_topics()
            return True
        except KafkaConnectionError:
            return False
        finally:
            await admin.close()

    return asyncio.run(go())


def test_stack_up_sasl_runs_simulator_and_worker_then_rotates_the_password(stack_cli: StackCli, tmp_path: Path) -> None:
    user, first_password = (
        stack_cli.env["METERSEG_KAFKA_SECURITY__USERNAME"],
        stack_cli.env["METERSEG_KAFKA_SECURITY__PASSWORD"],
    )
    up = stack_cli.run("up", "--sasl", "--tls")
    assert up.returncode == 0, up.stdout + up.stderr
    assert first_password not in up.stdout + up.stderr
    sasl = f"127.0.0.1:{stack_cli.ports['KAFKA_SASL_PORT']}"
    tls = f"127.0.0.1:{stack_cli.ports['KAFKA_SSL_PORT']}"
    assert f"sasl_plaintext={sasl}" in up.stdout and f"sasl_ssl={tls}" in up.stdout, up.stdout
    client_env = stack_cli.exported(up.stdout)
    assert client_env["METERSEG_KAFKA_BOOTSTRAP"] == tls
    assert client_env["METERSEG_KAFKA_SECURITY__PROTOCOL"] == "SASL_SSL"
    assert client_env["METERSEG_KAFKA_SECURITY__USERNAME"] == user
    assert client_env.pop("METERSEG_KAFKA_SECURITY__PASSWORD") == "..."  # a placeholder, never the secret
    assert Path(client_env["METERSEG_KAFKA_SECURITY__SSL_CAFILE"]).is_file()

    # the simulator over SASL_SSL with exactly the printed variables (plus the password), the worker over SASL_PLAINTEXT
    unique = uuid.uuid4().hex[:8]
    settings = Settings(
        app_id=f"stack-sasl-{unique}",
        kafka_bootstrap=tls,
        redis_url=f"redis://127.0.0.1:{stack_cli.ports['REDIS_PORT']}/0",
        topics=TopicNames(**{k: f"{v}.{unique}" for k, v in TopicNames().model_dump().items()}),
        stack=local_test_settings().stack.model_copy(update={"state_dir": tmp_path / "state"}),
    )
    secret = {"METERSEG_KAFKA_SECURITY__PASSWORD": first_password}
    summary = simulate(settings, tmp_path, "--meters", "20", "--days", "1", "--seed", "9", "--no-ops",
                       **client_env, **secret)  # fmt: skip
    expected = summary["messages"][settings.topics.readings] + summary["messages"][settings.topics.heartbeats]
    worker_env = {**client_env, **secret, "METERSEG_KAFKA_BOOTSTRAP": sasl,
                  "METERSEG_KAFKA_SECURITY__PROTOCOL": "SASL_PLAINTEXT"}  # fmt: skip
    worker_env.pop("METERSEG_KAFKA_SECURITY__SSL_CAFILE")
    with running_worker(settings.model_copy(update={"kafka_bootstrap": sasl}), tmp_path, **worker_env) as worker:
        wait_for(lambda: worker.health().get("totals", {}).get("messages", 0) >= expected, 90, "every reading")
        assert worker.health()["meters_known"] == 20
    log_text = worker.log_path.read_text(errors="replace")
    assert f"Authenticated as {user} via SCRAM-SHA-512" in log_text
    assert first_password not in log_text

    # `up --sasl` is refused (with the way out) while the broker runs without a listener it asks for
    down = stack_cli.run("down")
    assert down.returncode == 0, down.stderr
    plain = stack_cli.run("up")
    assert plain.returncode == 0, plain.stdout + plain.stderr
    refused = stack_cli.run("up", "--sasl")
    assert refused.returncode == 1 and "runs without the SASL_PLAINTEXT listener" in refused.stderr, refused.stderr
    assert stack_cli.run("down").returncode == 0

    # a new password on existing storage: `up` updates the SCRAM user on the running broker
    second_password = f"pw2-{secrets.token_hex(8)}"
    stack_cli.env["METERSEG_KAFKA_SECURITY__PASSWORD"] = second_password
    again = stack_cli.run("up", "--sasl")
    assert again.returncode == 0, again.stdout + again.stderr
    assert second_password not in again.stdout + again.stderr
    assert not list((tmp_path / "state" / "kafka").glob("scram-user*")), "the credentials file must not stay"
    assert _connects(sasl, KafkaSecurity(protocol="SASL_PLAINTEXT", username=user, password=second_password))
    assert not _connects(sasl, KafkaSecurity(protocol="SASL_PLAINTEXT", username=user, password=first_password))
