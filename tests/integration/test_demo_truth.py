"""The demo stays true after its summary (issue 16, finding 9).

- ``{app}:clock:frozen`` (set by ``meterseg demo`` once its simulated fleet has sent everything) stops the
  worker's event clocks at the last event: at 3 600 event seconds per wall second, meters would otherwise
  turn late within seconds of the last reading, with nothing wrong on the fleet;
- Prometheus scrapes only the workers that exist: the launcher's configuration discovers targets from files
  (``PrometheusNode.register_target``), so no ``MeterSegWorkerDown`` for a second worker nobody started.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any
from urllib.request import urlopen

import pytest
import redis

from meterseg.settings import Settings
from meterseg.stack import PrometheusNode
from meterseg.stack.ports import free_port
from tests.integration.harness import running_worker, simulate, wait_for

pytestmark = pytest.mark.integration


def _late(metrics: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
               if line.startswith("meterseg_meters_late"))  # fmt: skip


def test_frozen_clock_keeps_meters_reporting_after_the_source_finished(
    isolated_settings: Settings, tmp_path: Path
) -> None:
    s = isolated_settings
    simulate(s, tmp_path, "--meters", "40", "--days", "1", "--seed", "5", "--history-days", "5")
    with running_worker(s, tmp_path, METERSEG_INGEST__CLOCK_RATE="3600") as worker:
        wait_for(lambda: worker.health().get("totals", {}).get("accepted", 0) > 0, 90, "readings accepted")
        wait_for(lambda: worker.health().get("seconds_since_progress", 0) > 2, 120, "the backlog consumed")
        client = redis.Redis.from_url(s.redis_url)
        client.set(f"{s.redis_namespace}:clock:frozen", "1")  # what `meterseg demo` does after the simulation
        client.close()
        wait_for(lambda: worker.health().get("clock_frozen") is True, 10, "the freeze applied")
        at_summary = _late(worker.metrics())
        time.sleep(12)  # without the freeze: 12 wall s = 12 event hours of silence at 3 600x
        after = _late(worker.metrics())
    assert after <= at_summary + 2, f"late meters grew from {at_summary:.0f} to {after:.0f} after the fleet finished"
    assert after < 20, f"{after:.0f} of 40 meters late right after a clean simulation"


def _targets(prom: PrometheusNode) -> list[dict[str, Any]]:
    with urlopen(f"{prom.url}/api/v1/targets", timeout=5) as resp:
        body: dict[str, Any] = json.loads(resp.read())
    return [t for t in body["data"]["activeTargets"] if t["labels"].get("job") == "meterseg"]


def test_prometheus_scrapes_only_registered_workers(tmp_path: Path) -> None:
    from prometheus_client import CollectorRegistry, Counter, start_http_server

    prom = PrometheusNode(state_dir=tmp_path / "state", port=free_port())
    prom.up(timeout_s=60)
    try:
        time.sleep(6)  # a discovery refresh and a scrape interval
        assert _targets(prom) == [], "targets nobody registered (a second worker that does not exist)"
        registry = CollectorRegistry()
        Counter("fake_worker_up", "a stand-in worker", registry=registry).inc()
        port = free_port()
        start_http_server(port, addr="127.0.0.1", registry=registry)
        prom.register_target("worker-a", f"127.0.0.1:{port}")

        def healthy() -> bool:
            found = _targets(prom)
            return len(found) == 1 and found[0]["health"] == "up"

        wait_for(healthy, 30, "the registered worker scraped")
        prom.unregister_target("worker-a")
        wait_for(lambda: _targets(prom) == [], 30, "the unregistered worker dropped")
    finally:
        prom.down()
