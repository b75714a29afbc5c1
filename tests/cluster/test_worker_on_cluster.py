"""A worker end to end on a real Redis Cluster (``METERSEG_REDIS_CLUSTER=true``): ingest, segments, the API.

Every component names its shared Redis keys by ``settings.redis_namespace`` (the hash tag ``{app}`` on a
cluster), so the multi-key scripts (regional windows, memberships) run in one slot; see docs/scaling.md
"Redis Cluster".
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any
from urllib.request import Request, urlopen

import pytest

from meterseg.settings import Settings, TopicNames
from stream.clients.redis_client import sync_redis
from tests.cluster.conftest import RedisCluster
from tests.conftest import local_test_settings
from tests.integration.harness import running_worker, simulate, wait_for

pytestmark = pytest.mark.integration


def test_worker_runs_on_a_redis_cluster(redis_cluster: RedisCluster, kafka_bootstrap: str, tmp_path: Path) -> None:
    unique = uuid.uuid4().hex[:8]
    settings = Settings(
        app_id=f"cluster-{unique}",
        kafka_bootstrap=kafka_bootstrap,
        redis_url=redis_cluster.url,
        redis_cluster=True,
        api_token=f"tok-{unique}",
        topics=TopicNames(**{k: f"{v}.{unique}" for k, v in TopicNames().model_dump().items()}),
        stack=local_test_settings().stack,
    )
    summary = simulate(settings, tmp_path, "--meters", "60", "--days", "2", "--seed", "6", "--history-days", "45")
    expected = summary["messages"][settings.topics.readings] + summary["messages"][settings.topics.heartbeats]
    env = {"METERSEG_REDIS_CLUSTER": "true", "METERSEG_API_TOKEN": settings.api_token,
           "METERSEG_INGEST__CLOCK_RATE": "3600", "METERSEG_SEGMENTATION__EXCHANGE_INTERVAL_S": "1"}  # fmt: skip
    with running_worker(settings, tmp_path, **env) as worker:
        wait_for(lambda: worker.health().get("totals", {}).get("messages", 0) >= expected, 120, "every reading")
        wait_for(lambda: worker.health().get("segmentation", {}).get("changes", 0) > 0, 120, "segment changes")

        def api(path: str) -> Any:
            req = Request(
                f"http://127.0.0.1:{worker.web_port}{path}", headers={"Authorization": f"Bearer {settings.api_token}"}
            )
            with urlopen(req, timeout=30) as resp:
                return json.loads(resp.read())

        wait_for(lambda: any(s["size"] > 0 for s in api("/segments")["segments"]), 60, "populated segments")
        assert api("/meters/faulty?state=good,fair,poor&limit=1")["total"] > 0
        assert worker.health()["status"] == "ok", worker.health()
        log_text = worker.log_path.read_text(errors="replace")
    assert "CROSSSLOT" not in log_text and "same key slot" not in log_text
    client = sync_redis(settings)
    try:
        keys = list(client.scan_iter(match=f"{settings.redis_namespace}:*", count=1000))
        assert keys, "the worker's state is in the cluster under its hash tag"
        assert len({client.keyslot(k) for k in keys}) == 1
    finally:
        client.close()
