"""One typed settings object for every meterseg process.

Every value can be set from the environment with the ``METERSEG_`` prefix
(nested values use a double underscore, e.g. ``METERSEG_TOPICS__READINGS``),
so the same code runs in the local stack, in Docker and in CI without edits.

Examples:
    >>> s = Settings()
    >>> s.kafka_bootstrap
    '127.0.0.1:9092'
    >>> s.topics.readings
    'meter.readings'
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from processors.ingest import IngestConfig
from processors.segmentation import SegmentationConfig

#: the published placeholder token: a worker refuses to serve the API with it unless ``api_allow_default_token``
DEFAULT_API_TOKEN = "change-me"


class TopicNames(BaseModel):
    """Names of every Kafka topic meterseg reads or writes."""

    readings: str = "meter.readings"
    heartbeats: str = "meter.heartbeats"
    purchases: str = "customer.purchases"
    registry: str = "meter.registry"
    alerts: str = "meter.alerts"
    windows: str = "consumption.windows"
    segment_changes: str = "segment.changes"
    model_events: str = "model.events"
    maintenance: str = "meter.maintenance"
    feedback: str = "customer.feedback"
    bills: str = "customer.bills"
    deadletter: str = "meterseg.deadletter"
    profiles: str = "meterseg.profiles"


class KafkaSecurity(BaseModel):
    """How every Kafka client of meterseg authenticates and encrypts (env ``METERSEG_KAFKA_SECURITY__*``).

    ``protocol`` is Kafka's ``security.protocol``; SASL protocols need
    ``username`` and ``password``, SSL protocols may name a CA file (default:
    the system's trust store) and a client certificate and key (mutual TLS).
    The password is a :class:`~pydantic.SecretStr`: it never appears in a
    ``repr`` or a log line. :func:`stream.clients.security.kafka_client_options`
    turns this into aiokafka keyword arguments.

    Examples:
        >>> KafkaSecurity(protocol="SASL_PLAINTEXT", username="alice", password="s3cret")
        KafkaSecurity(protocol='SASL_PLAINTEXT', sasl_mechanism='SCRAM-SHA-512', username='alice', password=SecretStr('**********'), ssl_cafile=None, ssl_certfile=None, ssl_keyfile=None, ssl_keyfile_password=None, ssl_check_hostname=True)
    """

    protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"] = "SCRAM-SHA-512"
    username: str | None = None
    password: SecretStr | None = None
    ssl_cafile: Path | None = Field(default=None, description="CA bundle (PEM) that signed the broker certificates")
    ssl_certfile: Path | None = Field(default=None, description="client certificate (PEM), for mutual TLS")
    ssl_keyfile: Path | None = Field(default=None, description="client private key (PEM), for mutual TLS")
    ssl_keyfile_password: SecretStr | None = None
    ssl_check_hostname: bool = True

    @property
    def uses_sasl(self) -> bool:
        return self.protocol.startswith("SASL_")

    @property
    def uses_ssl(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    @model_validator(mode="after")
    def _complete(self) -> KafkaSecurity:
        if self.uses_sasl and (not self.username or self.password is None):
            raise ValueError(
                f"Kafka security protocol {self.protocol} needs a username and a password "
                "(METERSEG_KAFKA_SECURITY__USERNAME and METERSEG_KAFKA_SECURITY__PASSWORD)"
            )
        if (self.ssl_certfile is None) != (self.ssl_keyfile is None):
            raise ValueError("a Kafka client certificate needs its key and vice versa (ssl_certfile with ssl_keyfile)")
        return self


class StackSettings(BaseModel):
    """Where and how the local stack (Kafka, Redis, Prometheus) runs."""

    state_dir: Path = Path(".state")
    cache_dir: Path = Path.home() / ".cache" / "meterseg"
    kafka_version: str = "4.1.1"
    kafka_heap: str = "640m"
    kafka_port: int = 9092
    kafka_controller_port: int = 9093
    redis_port: int = 6379
    prometheus_port: int = 9090
    start_timeout_s: float = 90.0
    #: also listen with SASL_PLAINTEXT (SCRAM-SHA-512) on ``kafka_sasl_port`` (``meterseg stack up --sasl``)
    kafka_sasl: bool = False
    kafka_sasl_port: int = 9094
    #: also listen with SASL_SSL (SCRAM-SHA-512 over TLS, CA in ``<state>/kafka/tls/ca.pem``) on ``kafka_ssl_port``
    kafka_tls: bool = False
    kafka_ssl_port: int = 9095


class Settings(BaseSettings):
    """Settings of a meterseg worker, simulator, importer or launcher."""

    model_config = SettingsConfigDict(env_prefix="METERSEG_", env_nested_delimiter="__", extra="ignore")

    app_id: str = "meterseg"
    kafka_bootstrap: str = "127.0.0.1:9092"
    kafka_security: KafkaSecurity = Field(default_factory=KafkaSecurity)
    #: ``redis://[user:password@]host:port/db`` or ``rediss://`` for TLS; shown masked by ``repr``
    redis_url: str = "redis://127.0.0.1:6379/0"
    #: ``redis_url`` names a node of a Redis Cluster (see :mod:`stream.clients.redis_client`)
    redis_cluster: bool = False
    #: hash-tag shards of the customer keys and member sets, and of the per-meter keys (None: 64 on a Redis
    #: Cluster, 1 on one server);
    #: fixed for the life of the data (``meterseg reshard-customers`` moves it), see :mod:`stream.state.keys`
    redis_shards: int | None = Field(
        default=None, ge=1, le=16384,
        description="hash-tag shards of the customer projection and the per-meter state (None: 64 on a cluster, 1 otherwise)",
    )
    topics: TopicNames = Field(default_factory=TopicNames)
    partitions: int = Field(default=4, ge=1, description="partitions of every topic; equals Faust topic_partitions")
    topic_replication_factor: int = Field(
        default=3, ge=1, description="replicas of every topic meterseg creates (capped, with a warning, at the brokers)"
    )
    topic_min_insync_replicas: int = Field(
        default=2, ge=1, description="min.insync.replicas of the topics meterseg creates: acks=all waits for this many"
    )
    producer_acks: Literal["all", "1", "0"] = Field(
        default="all", description="acks of the engine's producer: 'all' waits for min.insync.replicas copies"
    )
    metrics_port: int = Field(default=9108, ge=1, le=65535)
    web_port: int = Field(default=6066, ge=1, le=65535)
    web_bind: str = Field(
        default="0.0.0.0",  # every interface: the API needs a secret token; container port mappings reach it
        description="address the HTTP API listens on (127.0.0.1: this machine only)",
    )
    redis_socket_timeout_s: float = Field(
        default=30.0, gt=0.0, description="a Redis command with no answer for this long fails (and is retried)"
    )
    redis_connect_timeout_s: float = Field(default=5.0, gt=0.0, description="a Redis connection attempt gives up after")
    console_host: str = Field(default="127.0.0.1", description="address `meterseg console` listens on")
    console_port: int = Field(default=8050, ge=1, le=65535, description="port of `meterseg console`")
    console_api_url: str | None = Field(
        default=None, description="the engine API the console reads (None: http://127.0.0.1:<web_port>)"
    )
    console_prometheus_url: str | None = Field(
        default=None, description="the Prometheus the console reads (None: the local stack's)"
    )
    api_token: str = Field(default=DEFAULT_API_TOKEN, description="bearer token of the HTTP API")
    api_allow_default_token: bool = Field(
        default=False,
        description="development only: let a worker serve the API with the published default token",
    )
    log_level: str = "INFO"
    ingest: IngestConfig = Field(default_factory=IngestConfig)
    segmentation: SegmentationConfig = Field(default_factory=SegmentationConfig)
    checkpoint_interval_s: float = Field(default=2.0, gt=0.0, description="how often partition state is saved")
    heap_trim_interval_s: float = Field(
        default=30.0,
        ge=0.0,
        description="how often a worker hands its heap's free pages back to the system (glibc malloc_trim); 0 = never",
    )
    liveness_timeout_s: float = Field(
        default=30.0,
        gt=0.0,
        description="/health turns 503 'stalled' when a consumer has not polled, records have waited without a "
        "batch processed, a timer step has failed, or the timer has not ticked, for this long",
    )
    ingest_poll_records: int = Field(
        default=20_000, ge=1, description="most records one poll of the ingest consumer returns (both input topics)"
    )
    window_batch_size: int = Field(
        default=1000,
        ge=1,
        le=100_000,
        description="closed meter windows per consumption.windows message (WindowBatch); 1 = one window per message",
    )
    bills_paid_retention_s: int = Field(
        default=7 * 86_400, ge=60,
        description="a paid bill's marker stays this long in Redis, so a replayed bill event is not counted again",
    )
    meter_ranking_days: int = Field(
        default=400, ge=1, le=3660,
        description="days of per-meter daily kWh rankings kept in Redis (GET /meters/top), about 40 B per meter-day",
    )
    region_revenue_days: int = Field(
        default=400, ge=1, le=3660,
        description="event days of revenue per region kept in Redis (GET /fleet/revenue), about 20 B per region-day",
    )
    max_technician_labels: int = Field(
        default=200, ge=0, description="technician ids with their own metric label; others count as 'other'"
    )
    stack: StackSettings = Field(default_factory=StackSettings)

    @property
    def redis_namespace(self) -> str:
        """Prefix of the app's shared Redis keys: ``app_id``, or the hash tag ``{app_id}`` on a Redis Cluster.

        On a cluster the app-wide state (segment catalogue, regional windows, the model, rules)
        shares one hash slot: multi-key scripts and transactions. The customer projection, the
        member sets and the per-meter state (health, windows, alerts, kWh rankings) are spread over
        :attr:`state_shards` hash tags each (:mod:`stream.state.keys`), partition
        checkpoints stay under the plain ``app_id``: they spread over the masters; see
        :mod:`stream.clients.redis_client`.
        """
        return f"{{{self.app_id}}}" if self.redis_cluster else self.app_id

    @property
    def state_shards(self) -> int:
        """Shards of the customer projection and the meter keys: ``redis_shards``, else 64 on a Redis Cluster, 1 on one server.

        >>> Settings().state_shards, Settings(redis_cluster=True).state_shards, Settings(redis_shards=8).state_shards
        (1, 64, 8)
        """
        if self.redis_shards is not None:
            return self.redis_shards
        from stream.state.keys import CLUSTER_SHARDS

        return CLUSTER_SHARDS if self.redis_cluster else 1

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        """Fields for ``repr``/``str``, with the Redis URL's password and the API token masked."""
        from stream.clients.security import mask_url

        for name, value in super().__repr_args__():
            if name == "redis_url" and isinstance(value, str):
                yield name, mask_url(value)
            elif name == "api_token":
                yield name, "**********"
            else:
                yield name, value


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
