"""Settings take effect on restart, segmentation side (issue 16, finding 1): a restored partition keeps its state
but runs with the current settings (thresholds, hysteresis, dwell, RFM map, lost horizon, rules file, clock);
what a change does to memberships goes out at once; a setting the state cannot follow (k) is refused, named."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from processors.columns import RawMessage
from processors.config_change import ConfigChangeError
from processors.rfm.segment_map import RfmSegmentMap
from processors.segmentation import PartitionSegmentation, SegmentationConfig

T0 = datetime(2026, 1, 1, tzinfo=UTC)
RULES = """
segments:
  - id: north
    name: North
    expression: region == "North"
  - id: big
    name: Big spenders
    expression: rfm.total_spend > 100
"""


def _buy(i: int, cid: str, day: float, amount: float) -> RawMessage:
    ts = (T0 + timedelta(days=day)).strftime("%Y-%m-%dT%H:%M:%SZ")
    value = orjson.dumps({"event_id": f"e{i}", "customer_id": cid, "ts": ts, "event_type": "PURCHASED",
                          "amount": amount})  # fmt: skip
    return RawMessage(value, "customer.purchases", 0, i)


def _with_state(config: SegmentationConfig) -> tuple[PartitionSegmentation, dict[str, Any]]:
    seg = PartitionSegmentation(config)
    msgs = [_buy(10 * c + d, f"C{c}", 3 * c + d, 20.0 * (c + 1)) for c in range(10) for d in range(c % 4 + 1)]
    static = {f"C{c}": {"region": "North" if c % 2 else "South", "tariff": "prepaid", "has_export": False}
              for c in range(10)}  # fmt: skip
    seg.process((msgs, []), static=static)
    seg.rescore(now=(T0 + timedelta(days=40)).timestamp())
    return seg, orjson.loads(orjson.dumps(seg.snapshot(), option=orjson.OPT_SERIALIZE_NUMPY))


def _members(seg: PartitionSegmentation, family: str) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for (cid, fam), segs in seg.book.members.items():
        if fam == family:
            for sid in segs:
                out.setdefault(sid, set()).add(cid)
    return out


def test_changed_thresholds_hysteresis_dwell_and_clock_take_effect_on_restore() -> None:
    before, state = _with_state(SegmentationConfig(rules_text=RULES))
    new = SegmentationConfig(
        rules_text=RULES, margin=0.3, patience=2, persist_margin=0.1, min_dwell_days=2, change_grace_days=1,
        drift_delta=0.02, drift_threshold=0.05, sample_cap=128, halflife_days=3.0, max_future_s=60.0,
        max_past_s=86_400.0, clock_rate=60.0, clock_idle_s=1.0, exchange_interval_s=9.0,
    )  # fmt: skip
    restored = PartitionSegmentation.restore(state, new)
    assert restored.config == new
    a = restored.assigner
    assert (a.margin, a.patience, a.persist_margin, a.min_dwell_days, a.change_grace_days, a.sample_cap) == (
        0.3, 2, 0.1, 2, 1, 128)
    assert (a.drift_delta, a.drift_threshold) == (0.02, 0.05)
    assert restored.features.halflife_days == 3.0
    assert (restored.clock.rate, restored.clock.idle_after_s) == (60.0, 1.0)
    assert {"margin", "patience", "min_dwell_days", "halflife_days", "max_future_s", "clock_rate",
            "drift_threshold", "exchange_interval_s"} <= set(restored.config_changes)  # fmt: skip
    # the state itself came back, and nothing moved
    assert restored.rfm.scores == before.rfm.scores and restored.book.members == before.book.members
    assert restored.pending.changes == []
    # max_future_s follows: a purchase dated an hour after its broker time is now refused
    late = _buy(999, "C1", 50, 5.0)
    broker = int((T0 + timedelta(days=50) - timedelta(hours=1)).timestamp() * 1000)
    out = restored.process(([RawMessage(late.value, late.topic, 0, 999, broker)], []))
    assert [r.reason for r in out.rejects] == ["in_future"]


def test_a_shorter_lost_horizon_moves_customers_at_the_next_rescore() -> None:
    before, state = _with_state(SegmentationConfig(lost_after_days=None))
    restored = PartitionSegmentation.restore(state, SegmentationConfig(lost_after_days=5.0))
    assert "lost_after_days" in restored.config_changes and restored.rfm.lost_after_days == 5.0
    out = restored.rescore(now=(T0 + timedelta(days=40)).timestamp())
    lost = {c.customer_id for c in out.changes if c.change == "entry" and c.family == "rfm"}
    assert lost and all(restored.rfm.scores[c][0] == 1 for c in lost)
    assert before.rescore(now=(T0 + timedelta(days=40)).timestamp()).changes == []  # the old horizon: no move


def test_a_changed_rfm_map_renames_customers_at_once(tmp_path: Path) -> None:
    before, state = _with_state(SegmentationConfig())
    default = RfmSegmentMap.default().to_dict()
    for s in default["segments"]:  # every segment renamed, "lost" merged into "hibernating"
        s["name"] = s["name"].upper()
    lost = next(s for s in default["segments"] if s["id"] == "lost")
    hib = next(s for s in default["segments"] if s["id"] == "hibernating")
    cells = {(r, f) for r in hib["r"] for f in hib["f"]} | {(r, f) for r in lost["r"] for f in lost["f"]}
    default["segments"].remove(lost)
    hib_rows = [s for s in default["segments"] if s["id"] == "hibernating"]
    # a segment covers a product of R and F values: the merged cells need their own entries
    default["segments"].remove(hib_rows[0])
    for i, (r, f) in enumerate(sorted(cells)):
        default["segments"].append({**hib, "id": "hibernating" if i == 0 else f"hibernating_{i}", "r": [r], "f": [f],
                                    "name": "HIBERNATING"})  # fmt: skip
    path = tmp_path / "map.yaml"
    path.write_text(yaml.safe_dump(default))
    was_lost = _members(before, "rfm").get("lost", set())
    assert was_lost  # the fixture has lost customers to move
    restored = PartitionSegmentation.restore(state, SegmentationConfig(rfm_map_file=str(path)))
    assert {"rfm_map_file", "rfm_map_file (the segment map)"} <= set(restored.config_changes)
    out = restored.rescore(now=(T0 + timedelta(days=40)).timestamp())  # the renaming goes out with the next output
    exits = {c.customer_id for c in out.changes if c.change == "exit" and c.segment_id == "lost"}
    assert exits == was_lost
    assert "lost" not in _members(restored, "rfm")
    assert all(a.segment_name == a.segment_name.upper() for a in out.rfm) and len(out.rfm) == len(restored.rfm.scores)
    assert restored.rescore(now=(T0 + timedelta(days=40)).timestamp()).changes == []  # once


def test_the_rules_file_replaces_the_checkpoint_rules_and_members_follow(tmp_path: Path) -> None:
    before, state = _with_state(SegmentationConfig(rules_text=RULES))
    api_rule = {"id": "api_south", "name": "South", "expression": 'region == "South"', "mode": "dynamic",
                "description": ""}  # fmt: skip
    state["rules"]["definitions"].append(api_rule)  # a rule defined through the API: not the file's to remove
    state["rules"]["members"]["api_south"] = sorted(_members(before, "rule").get("north", set()))
    north = _members(before, "rule")["north"]
    path = tmp_path / "rules.yaml"
    path.write_text("""
segments:
  - id: north
    name: North or big
    expression: region == "North" or rfm.total_spend > 100
  - id: loyal
    name: Loyal
    expression: rfm.frequency >= 2
""")
    restored = PartitionSegmentation.restore(state, SegmentationConfig(rules_file=str(path)))
    assert {"rules_file (segment big removed)", "rules_file (segment north changed)",
            "rules_file (segment loyal added)"} <= set(restored.config_changes)  # fmt: skip
    assert set(restored.rules.definitions) == {"north", "loyal", "api_south"}
    out = restored.process(([], []))  # the next output carries them
    by = {(c.segment_id, c.change, c.reason) for c in out.changes}
    assert ("big", "exit", "segment_removed") in by and ("loyal", "entry", "rule") in by
    assert _members(restored, "rule")["north"] > north  # big spenders of the South joined
    assert "big" not in _members(restored, "rule")
    assert restored.rule_file_ids == {"north", "loyal"}


def test_a_checkpoint_without_file_rule_ids_keeps_the_api_rules() -> None:
    _, state = _with_state(SegmentationConfig(rules_text=RULES))
    state["rules"]["definitions"].append({"id": "api_south", "name": "South", "expression": 'region == "South"',
                                          "mode": "dynamic", "description": ""})  # fmt: skip
    state["rules"]["members"]["api_south"] = []
    del state["rule_file_ids"]  # written before this version
    restored = PartitionSegmentation.restore(state, SegmentationConfig(), api_rule_ids={"api_south"})
    assert set(restored.rules.definitions) == {"api_south"}  # the file's two are gone, the API's stays
    assert {c.segment_id for c in restored.pending.changes if c.reason == "segment_removed"} == {"north", "big"}


def test_k_is_refused_with_what_to_do_and_a_setting_absent_on_one_side_is_not() -> None:
    _, state = _with_state(SegmentationConfig())
    with pytest.raises(ConfigChangeError) as caught:
        PartitionSegmentation.restore(state, SegmentationConfig(k=12))
    message = str(caught.value)
    assert "METERSEG_SEGMENTATION__K changed from 10 to 12" in message
    assert "set it back" in message and "METERSEG_APP_ID" in message
    del state["config"]["k"]  # a checkpoint without it: nothing of its state to follow
    assert "k" in PartitionSegmentation.restore(state, SegmentationConfig(k=12)).config_changes


def test_without_current_settings_the_checkpoint_config_is_used_and_pending_changes_survive_a_checkpoint(
    tmp_path: Path,
) -> None:
    before, state = _with_state(SegmentationConfig(clock_rate=7.0, rules_text=RULES))
    same = PartitionSegmentation.restore(state)
    assert same.config.clock_rate == 7.0 and same.config_changes == [] and same.snapshot() == before.snapshot()
    changed = PartitionSegmentation.restore(state, SegmentationConfig(clock_rate=7.0))  # both rules removed
    assert changed.pending.changes
    again = PartitionSegmentation.restore(orjson.loads(orjson.dumps(changed.snapshot())), changed.config)
    assert again.pending.changes == changed.pending.changes  # a checkpoint before they went out keeps them
