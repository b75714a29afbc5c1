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

__all__ = ["KafkaNode", "LocalStack", "PrometheusNode", "RedisNode", "StackError"]


@dataclass(frozen=True)
class LocalStack:
    """Kafka, Redis and (optionally) Prometheus sharing one state directory."""

    kafka: KafkaNode
    redis: RedisNode
    prometheus: PrometheusNode | None

    @classmethod
    def from_settings(cls, settings: Settings, with_prometheus: bool = True, appendonly: bool = True) -> LocalStack:
        st = settings.stack
        state = Path(st.state_dir)
        return cls(
            kafka=KafkaNode(
                version=st.kafka_version,
                cache_dir=Path(st.cache_dir),
                state_dir=state,
                port=st.kafka_port,
                controller_port=st.kafka_controller_port,
                heap=st.kafka_heap,
                partitions=settings.partitions,
            ),
            redis=RedisNode(state_dir=state, port=st.redis_port, appendonly=appendonly),
            prometheus=PrometheusNode(state_dir=state, port=st.prometheus_port) if with_prometheus else None,
        )

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
