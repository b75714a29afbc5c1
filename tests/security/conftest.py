"""A private secured stack for the security tests: Kafka with SCRAM-SHA-512 listeners, Redis with a password.

Kafka listens with PLAINTEXT (unused here), SASL_PLAINTEXT and SASL_SSL (TLS
with a CA made for this stack, :attr:`KafkaNode.tls_ca_file`).

Own free ports and a state directory in pytest's tmp, so the session stack
other tests use is never touched. Passwords are random per run, which lets
the tests search logs for them.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pytest

from meterseg.settings import KafkaSecurity, Settings, TopicNames
from meterseg.stack import KafkaNode, RedisNode
from tests.conftest import local_test_settings
from tests.integration.harness import free_port

Protocol = Literal["SASL_PLAINTEXT", "SASL_SSL"]


@dataclass(frozen=True)
class SecureStack:
    """Addresses and secrets of the private secured stack."""

    kafka: KafkaNode
    redis: RedisNode
    kafka_user: str
    kafka_password: str
    redis_password: str

    @property
    def sasl_bootstrap(self) -> str:
        assert self.kafka.sasl_bootstrap is not None
        return self.kafka.sasl_bootstrap

    def bootstrap(self, protocol: Protocol = "SASL_PLAINTEXT") -> str:
        found = self.kafka.sasl_bootstrap if protocol == "SASL_PLAINTEXT" else self.kafka.ssl_bootstrap
        assert found is not None
        return found

    @property
    def redis_url_no_auth(self) -> str:
        return f"redis://127.0.0.1:{self.redis.port}/0"

    def security(self, protocol: Protocol = "SASL_PLAINTEXT", password: str | None = None) -> KafkaSecurity:
        return KafkaSecurity(
            protocol=protocol,
            sasl_mechanism="SCRAM-SHA-512",
            username=self.kafka_user,
            password=password if password is not None else self.kafka_password,
            ssl_cafile=self.kafka.tls_ca_file if protocol == "SASL_SSL" else None,
        )

    def security_env(self, protocol: Protocol = "SASL_PLAINTEXT") -> dict[str, str]:
        """``METERSEG_KAFKA_SECURITY__*`` variables of a SASL client of this stack."""
        env = {
            "METERSEG_KAFKA_SECURITY__PROTOCOL": protocol,
            "METERSEG_KAFKA_SECURITY__SASL_MECHANISM": "SCRAM-SHA-512",
            "METERSEG_KAFKA_SECURITY__USERNAME": self.kafka_user,
            "METERSEG_KAFKA_SECURITY__PASSWORD": self.kafka_password,
        }
        if protocol == "SASL_SSL":
            env["METERSEG_KAFKA_SECURITY__SSL_CAFILE"] = str(self.kafka.tls_ca_file)
        return env

    def settings(self, unique: str, protocol: Protocol = "SASL_PLAINTEXT", redis_url: str | None = None) -> Settings:
        """Settings of a worker or simulator of this stack (topics and app id of one test)."""
        return Settings(
            app_id=f"secure-{unique}",
            kafka_bootstrap=self.bootstrap(protocol),
            kafka_security=self.security(protocol),
            redis_url=redis_url or self.redis.url,
            topics=TopicNames(**{k: f"{v}.{unique}" for k, v in TopicNames().model_dump().items()}),
            stack=local_test_settings().stack.model_copy(update={"state_dir": Path(self.kafka.state_dir)}),
        )


@pytest.fixture(scope="session")
def secure_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureStack]:
    """Kafka 4.1 (PLAINTEXT, SASL_PLAINTEXT and SASL_SSL listeners, SCRAM-SHA-512) and a password-protected Redis."""
    base = local_test_settings().stack
    state = tmp_path_factory.mktemp("secure-stack")
    user, kafka_password, redis_password = "meterseg-worker", f"kpw-{secrets.token_hex(8)}", f"rpw-{secrets.token_hex(8)}"
    kafka = KafkaNode(
        version=base.kafka_version,
        cache_dir=Path(base.cache_dir),
        state_dir=state,
        port=free_port(),
        controller_port=free_port(),
        heap="384m",
        partitions=4,
        sasl_port=free_port(),
        ssl_port=free_port(),
        scram_users={user: kafka_password, "other-user": f"opw-{secrets.token_hex(8)}"},
    )
    redis_node = RedisNode(state_dir=state, port=free_port(), appendonly=False, password=redis_password)
    try:
        kafka.up(timeout_s=120)
        redis_node.up(timeout_s=30)
        yield SecureStack(kafka, redis_node, user, kafka_password, redis_password)
    finally:
        redis_node.down()
        kafka.down()
