"""The local stack: real Kafka (KRaft), Redis and Prometheus started by the project itself.

Used by ``meterseg stack up|down|status``, by ``meterseg demo`` and by the test
fixtures, so tests and the local run share one launcher.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from meterseg.settings import Settings
from meterseg.stack.kafka import KafkaNode
from meterseg.stack.process import StackError
from meterseg.stack.servers import PrometheusNode, RedisNode

__all__ = ["KafkaNode", "LocalStack", "PrometheusNode", "RedisNode", "StackError", "scram_user"]


def scram_user(settings: Settings) -> dict[str, str]:
    """The SCRAM user of the local broker's SASL listeners: ``settings.kafka_security``'s name and password.

    Empty when the settings name none (:meth:`KafkaNode.up` then refuses to start SASL listeners).
    """
    sec = settings.kafka_security
    if not sec.username or sec.password is None:
        return {}
    return {sec.username: sec.password.get_secret_value()}


@dataclass(frozen=True)
class LocalStack:
    """Kafka, Redis and (optionally) Prometheus sharing one state directory."""

    kafka: KafkaNode
    redis: RedisNode
    prometheus: PrometheusNode | None

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        with_prometheus: bool = True,
        appendonly: bool = True,
        sasl: bool | None = None,
        tls: bool | None = None,
    ) -> LocalStack:
        """The stack ``settings`` describe; ``sasl`` / ``tls`` (default: ``settings.stack.kafka_sasl`` /
        ``kafka_tls``) add the broker's SCRAM-SHA-512 listeners, whose user is ``settings.kafka_security``'s.
        """
        st = settings.stack
        state = Path(st.state_dir)
        sasl = st.kafka_sasl if sasl is None else sasl
        tls = st.kafka_tls if tls is None else tls
        return cls(
            kafka=KafkaNode(
                version=st.kafka_version,
                cache_dir=Path(st.cache_dir),
                state_dir=state,
                port=st.kafka_port,
                controller_port=st.kafka_controller_port,
                heap=st.kafka_heap,
                partitions=settings.partitions,
                sasl_port=st.kafka_sasl_port if sasl else None,
                ssl_port=st.kafka_ssl_port if tls else None,
                scram_users=scram_user(settings) if sasl or tls else {},
            ),
            redis=RedisNode(state_dir=state, port=st.redis_port, appendonly=appendonly),
            prometheus=PrometheusNode(state_dir=state, port=st.prometheus_port) if with_prometheus else None,
        )

    @property
    def kafka_client_env(self) -> dict[str, str]:
        """``METERSEG_KAFKA_*`` variables (no password) that point a client at the most secure listener."""
        k = self.kafka
        if k.ssl_bootstrap is not None:
            return {
                "METERSEG_KAFKA_BOOTSTRAP": k.ssl_bootstrap,
                "METERSEG_KAFKA_SECURITY__PROTOCOL": "SASL_SSL",
                "METERSEG_KAFKA_SECURITY__SASL_MECHANISM": "SCRAM-SHA-512",
                "METERSEG_KAFKA_SECURITY__SSL_CAFILE": str(k.tls_ca_file.resolve()),
            }
        if k.sasl_bootstrap is not None:
            return {
                "METERSEG_KAFKA_BOOTSTRAP": k.sasl_bootstrap,
                "METERSEG_KAFKA_SECURITY__PROTOCOL": "SASL_PLAINTEXT",
                "METERSEG_KAFKA_SECURITY__SASL_MECHANISM": "SCRAM-SHA-512",
            }
        return {"METERSEG_KAFKA_BOOTSTRAP": k.bootstrap}

    @property
    def components(self) -> list[KafkaNode | RedisNode | PrometheusNode]:
        parts: list[KafkaNode | RedisNode | PrometheusNode] = [self.kafka, self.redis]
        if self.prometheus is not None:
            parts.append(self.prometheus)
        return parts

    def up(self, timeout_s: float = 90.0) -> dict[str, str]:
        """Start whatever is not running yet; return what happened per component."""
        return {c.process.name: c.up(timeout_s) for c in self.components}

    def down(self) -> dict[str, bool]:
        """Stop exactly the processes this launcher started (reverse order)."""
        return {c.process.name: c.down() for c in reversed(self.components)}

    def status(self) -> dict[str, tuple[int | None, bool]]:
        """Per component: pid of our process (or None) and whether it answers."""
        return {c.process.name: (c.process.read_pid(), c.healthy()) for c in self.components}
