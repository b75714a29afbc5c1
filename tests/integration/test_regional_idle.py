"""An idle partition does not stall regional totals fleet-wide (issue 16, finding 6).

Two meters on a four-partition topic: at least two partitions never see a reading. A regional window is
final once every partition has passed its end, so before the fix no regional window was ever emitted and
nothing said so. Now an idle, caught-up partition follows the fleet's frontier, regional windows come out,
and ``meterseg_region_frontier_missing_partitions`` / ``..._spread_seconds`` show the state (alert
``MeterSegRegionalFrontierStalled``, unit-tested with promtool in ``prometheus/tests/rules_test.yml``).
"""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from meterseg.settings import Settings
from tests.integration.harness import read_topic, running_worker, simulate, wait_for

pytestmark = pytest.mark.integration


def _gauge(metrics: str, name: str) -> float | None:
    for line in metrics.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def test_idle_partitions_follow_the_fleet_frontier(isolated_settings: Settings, tmp_path: Path) -> None:
    s = isolated_settings
    assert s.partitions == 4
    simulate(s, tmp_path, "--meters", "2", "--days", "1", "--seed", "2", "--history-days", "2")

    def regional() -> list[dict[str, object]]:
        out = []
        for _, value, _ in read_topic(s.kafka_bootstrap, s.topics.windows, timeout_s=10):
            rec = orjson.loads(value)
            if isinstance(rec, dict) and rec.get("kind") == "region":
                out.append(rec)
        return out

    with running_worker(s, tmp_path, METERSEG_INGEST__CLOCK_RATE="3600") as worker:
        wait_for(lambda: worker.health().get("totals", {}).get("accepted", 0) > 0, 90, "readings accepted")
        wait_for(lambda: len(regional()) > 0, 90, "a regional window emitted")
        wait_for(lambda: _gauge(worker.metrics(), "meterseg_region_frontier_missing_partitions") == 0, 30,
                 "every partition with a frontier")  # fmt: skip
        spread = _gauge(worker.metrics(), "meterseg_region_frontier_spread_seconds")
    assert spread is not None and spread >= 0
