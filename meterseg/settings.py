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

from functools import lru_cache
from pathlib import Path

from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from processors.ingest import IngestConfig
from processors.segmentation import SegmentationConfig


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


class Settings(BaseSettings):
    """Settings of a meterseg worker, simulator, importer or launcher."""

    model_config = SettingsConfigDict(env_prefix="METERSEG_", env_nested_delimiter="__", extra="ignore")

    app_id: str = "meterseg"
    kafka_bootstrap: str = "127.0.0.1:9092"
    redis_url: str = "redis://127.0.0.1:6379/0"
    topics: TopicNames = Field(default_factory=TopicNames)
    partitions: int = Field(default=4, ge=1, description="partitions of every topic; equals Faust topic_partitions")
    metrics_port: int = Field(default=9108, ge=1, le=65535)
    web_port: int = Field(default=6066, ge=1, le=65535)
    api_token: str = Field(default="change-me", description="bearer token of the HTTP API")
    log_level: str = "INFO"
    ingest: IngestConfig = Field(default_factory=IngestConfig)
    segmentation: SegmentationConfig = Field(default_factory=SegmentationConfig)
    checkpoint_interval_s: float = Field(default=2.0, gt=0.0, description="how often partition state is saved")
    stack: StackSettings = Field(default_factory=StackSettings)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
