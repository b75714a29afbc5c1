"""The Faust application factory: the one place Faust is configured.

Settings chosen against known Faust pitfalls (see shared notes):
* ``broker_session_timeout`` is lowered from 60 s so a new or restarted worker
  gets its partitions in seconds, not a minute;
* ``topic_partitions`` equals ``Settings.partitions`` so source topics and
  table changelogs never mismatch (``PartitionsMismatch``);
* values are raw bytes: decoding and validation happen in our processors, so a
  malformed message becomes a dead letter instead of a crashed agent.
"""

from __future__ import annotations

import os
from typing import Any

from meterseg.settings import Settings
from stream.clients.security import faust_credentials

# Faust reads FAUST_LOOP at import; only "uvloop" or unset are valid.
if os.environ.get("FAUST_LOOP") not in (None, "", "uvloop"):
    del os.environ["FAUST_LOOP"]
os.environ.setdefault("FAUST_LOOP", "uvloop")

import faust


def create_app(settings: Settings, **overrides: Any) -> faust.App:
    """Build a Faust app for ``settings``; keyword overrides win (tests use them)."""
    options: dict[str, Any] = {
        "broker": f"kafka://{settings.kafka_bootstrap}",
        "broker_credentials": faust_credentials(settings),  # SASL / TLS from settings.kafka_security
        "store": "memory://",
        "topic_partitions": settings.partitions,
        # Faust's own topics (none in normal operation: memory store, agents on existing topics) as ours
        "topic_replication_factor": settings.topic_replication_factor,
        "value_serializer": "raw",
        "key_serializer": "raw",
        "broker_session_timeout": 10.0,
        "broker_heartbeat_interval": 3.0,
        "broker_request_timeout": 40.0,
        "broker_commit_every": 1000,
        "broker_commit_interval": 1.0,
        "consumer_auto_offset_reset": "earliest",
        "producer_linger_ms": 5,
        "producer_max_batch_size": 256 * 1024,
        "web_enabled": True,
        "web_port": settings.web_port,
        "web_bind": settings.web_bind,
        # Faust's own pages serve table data (/table), the cluster topology (/router), sensor statistics and
        # the service graph without any authentication: the worker serves only its token-protected API,
        # /health and /openapi.json
        "web_tables_enabled": False,
        "web_router_enabled": False,
        "web_stats_enabled": False,
        "web_graph_enabled": False,
        "datadir": str(settings.stack.state_dir / "faust" / settings.app_id),
        "autodiscover": False,
        "logging_config": None,
    }
    options.update(overrides)
    os.makedirs(options["datadir"], exist_ok=True)
    return faust.App(settings.app_id, **options)
