"""Segmentation settings take effect on restart, through a live worker (issue 16, finding 1).

A worker segments a small fleet with the shipped RFM map and a rules file, and stops (its partitions
checkpointed). Restarted with another map (every segment id renamed) and another rules file (one rule
removed, one added), it restores the checkpoints with the new settings: every RFM member moves to the new
ids, the removed rule's members exit, the added rule's enter, on ``segment.changes`` and in Redis. Restarted
with another k, it refuses the checkpoints, naming the setting and what to do.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from meterseg.settings import Settings, TopicNames
from processors.rfm.segment_map import RfmSegmentMap
from tests.conftest import Services, local_test_settings
from tests.integration.harness import memberships_in_redis, read_topic, running_worker, simulate, wait_for

pytestmark = pytest.mark.integration

RULES_BEFORE = """
segments:
  - id: north
    name: North
    expression: region == "North"
  - id: spenders
    name: Spenders
    expression: rfm.total_spend > 0
"""
RULES_AFTER = """
segments:
  - id: spenders
    name: Spenders
    expression: rfm.total_spend > 0
  - id: south
    name: South
    expression: region == "South"
"""


def _settings(services: Services, redis_url: str) -> Settings:
    unique = uuid.uuid4().hex[:8]
    return Settings(
        app_id=f"restart-{unique}",
        kafka_bootstrap=services.kafka_bootstrap,
        redis_url=redis_url,
        topics=TopicNames(**{k: f"{v}.{unique}" for k, v in TopicNames().model_dump().items()}),
        stack=local_test_settings().stack,
    )


def _metric_zero_lag(metrics: str) -> bool:
    lag = [line for line in metrics.splitlines() if line.startswith("meterseg_consumer_lag_messages{")]
    seg = [line for line in lag if "purchases" in line]
    return bool(seg) and all(float(line.rsplit(" ", 1)[1]) == 0 for line in seg)


def _changes(settings: Settings) -> list[dict[str, Any]]:
    return [json.loads(v) for _, v, _ in read_topic(settings.kafka_bootstrap, settings.topics.segment_changes)]


def test_a_new_rfm_map_and_rules_file_take_effect_and_a_new_k_is_refused(
    tmp_path: Path, services: Services, redis_db_url: str
) -> None:
    settings = _settings(services, redis_db_url)
    rules_before, rules_after = tmp_path / "rules1.yaml", tmp_path / "rules2.yaml"
    rules_before.write_text(RULES_BEFORE)
    rules_after.write_text(RULES_AFTER)
    renamed = RfmSegmentMap.default().to_dict()
    for s in renamed["segments"]:
        s["id"] = f"v2_{s['id']}"
    map_path = tmp_path / "map.yaml"
    map_path.write_text(yaml.safe_dump(renamed))
    simulate(settings, tmp_path, "--meters", "60", "--days", "1", "--seed", "3", "--history-days", "30")
    env = {"METERSEG_SEGMENTATION__RULES_FILE": str(rules_before), "METERSEG_SEGMENTATION__EXCHANGE_INTERVAL_S": "1"}
    with running_worker(settings, tmp_path, **env) as worker:
        wait_for(lambda: _metric_zero_lag(worker.metrics()), 120, "purchases consumed")
        wait_for(lambda: ("rule", "north") in memberships_in_redis(settings), 30, "rule memberships")
    before = memberships_in_redis(settings)
    rfm_before = {cid for (family, _), members in before.items() if family == "rfm" for cid in members}
    north = before[("rule", "north")]
    assert rfm_before and north
    seen = {c["change_id"] for c in _changes(settings)}  # (the topic is read partition by partition)

    env = {"METERSEG_SEGMENTATION__RULES_FILE": str(rules_after), "METERSEG_SEGMENTATION__RFM_MAP_FILE": str(map_path),
           "METERSEG_SEGMENTATION__EXCHANGE_INTERVAL_S": "1"}  # fmt: skip

    def moved() -> bool:
        now = memberships_in_redis(settings)
        return (not any(f == "rfm" and not s.startswith("v2_") for f, s in now)
                and ("rule", "south") in now and ("rule", "north") not in now)  # fmt: skip

    with running_worker(settings, tmp_path, **env) as worker:
        wait_for(moved, 60, "memberships under the new settings")
        log = worker.log_tail(200_000)
    assert "restored with changed settings" in log and "rfm_map_file (the segment map)" in log
    after = memberships_in_redis(settings)
    assert {cid for (family, _), members in after.items() if family == "rfm" for cid in members} == rfm_before
    new = [c for c in _changes(settings) if c["change_id"] not in seen]
    rfm_exits = {c["customer_id"] for c in new if c["family"] == "rfm" and c["action"] == "exited"
                 and not c["segment_id"].startswith("v2_") and c["to_segment"].startswith("v2_")}  # fmt: skip
    assert rfm_exits == rfm_before
    assert {c["customer_id"] for c in new if c["segment_id"] == "north" and c["reason"] == "segment_removed"} == north
    assert {c["customer_id"] for c in new if c["segment_id"] == "south" and c["action"] == "entered"}

    with running_worker(settings, tmp_path, METERSEG_SEGMENTATION__K="12",
                        ready=lambda h: h.get("status") in ("ok", "stalled"), **env) as worker:  # fmt: skip
        wait_for(lambda: "METERSEG_SEGMENTATION__K changed from 10 to 12" in worker.log_tail(200_000), 60,
                 "the refusal of k")  # fmt: skip
        assert "set it back" in worker.log_tail(200_000)
        # and the worker says so where operators and orchestrators look: /health is stalled, with the reason
        wait_for(lambda: any("METERSEG_SEGMENTATION__K" in r for r in worker.health().get("stalled", [])), 30,
                 "the refusal in /health")  # fmt: skip
