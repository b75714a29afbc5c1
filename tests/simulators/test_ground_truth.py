"""The ground truth matches what was produced, message by message, on a small busy fleet."""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import orjson
import pytest
from pydantic import ValidationError
from sim_helpers import TOPICS, Run, busy_config, minutes, simulate, ts

from simulators.faults import KINDS
from simulators.partition import partition_for
from stream.schemas import (
    Bill,
    Feedback,
    Heartbeat,
    MaintenanceRequest,
    MeterInfo,
    Purchase,
    Reading,
    ReadingBatch,
)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    return simulate(tmp_path_factory.mktemp("busy"), **busy_config())


def _windows(run: Run, kind: str) -> dict[str, list[tuple[int, int, dict[str, Any]]]]:
    start = run.config.start
    out: dict[str, list[tuple[int, int, dict[str, Any]]]] = defaultdict(list)
    for f in run.gt.faults:
        if f["kind"] == kind:
            out[f["meter_id"]].append((minutes(start, f["start"]), minutes(start, f["end"]), f))
    return out


def _in(windows: list[tuple[int, int, dict[str, Any]]], minute: int) -> bool:
    return any(a <= minute < b for a, b, _ in windows)


def _split_readings(run: Run) -> tuple[list[tuple[int, bytes, dict[str, Any]]], list[bytes]]:
    """(valid readings with their position, raw malformed messages) of the readings topic."""
    valid, bad = [], []
    for pos, line in enumerate(run.lines(TOPICS.readings)):
        try:
            Reading.model_validate_json(line)
        except ValidationError:
            bad.append(line)
            continue
        valid.append((pos, line, orjson.loads(line)))
    return valid, bad


def test_every_fault_kind_and_shift_is_injected(run: Run) -> None:
    counts = Counter(f["kind"] for f in run.gt.faults)
    assert set(counts) == set(KINDS), counts
    assert run.summary.faults == {k: counts[k] for k in KINDS}
    assert [s["target"] for s in run.gt.shifts] == ["ev_night_charging", "stop_purchasing"]
    assert all(len(s["customers"]) > 10 for s in run.gt.shifts)


def test_every_message_validates_against_the_contracts(run: Run) -> None:
    models = {TOPICS.heartbeats: Heartbeat, TOPICS.purchases: Purchase, TOPICS.registry: MeterInfo,
              TOPICS.bills: Bill, TOPICS.maintenance: MaintenanceRequest, TOPICS.feedback: Feedback}
    for topic, model in models.items():
        lines = run.lines(topic)
        assert lines, topic
        for line in lines:
            model.model_validate_json(line)
    assert len(run.lines(TOPICS.registry)) == run.config.meters


def test_malformed_messages_match_the_ground_truth(run: Run) -> None:
    valid, bad = _split_readings(run)
    registered = {m["meter_id"] for m in run.events(TOPICS.registry)}
    unknown = [r for _, _, r in valid if r["meter_id"] not in registered]
    expected = Counter(f["variant"] for f in run.gt.faults if f["kind"] == "malformed")
    seen: Counter[str] = Counter()
    for line in bad:
        try:
            doc = orjson.loads(line)
        except orjson.JSONDecodeError:
            seen["invalid_json"] += 1
            continue
        if "kwh_import" not in doc:
            seen["missing_field"] += 1
        else:
            assert isinstance(doc["kwh_import"], str)
            seen["wrong_type"] += 1
    seen["unknown_meter"] = len(unknown)
    assert +seen == +expected
    sent = sorted(f["meter_id_sent"] for f in run.gt.faults if f.get("variant") == "unknown_meter")
    assert sorted(r["meter_id"] for r in unknown) == sent


def test_readings_match_the_ground_truth_meter_by_meter(run: Run) -> None:
    start = run.config.start
    step = run.config.interval_minutes
    all_starts = set(range(0, run.config.days * 1440, step))
    valid, _ = _split_readings(run)
    by_meter: dict[str, list[tuple[int, bytes, dict[str, Any]]]] = defaultdict(list)
    registered = {m["meter_id"] for m in run.events(TOPICS.registry)}
    for pos, line, r in valid:
        if r["meter_id"] in registered:
            by_meter[r["meter_id"]].append((pos, line, r))
    assert set(by_meter) == registered
    faults = {k: _windows(run, k) for k in KINDS}
    for meter, items in by_meter.items():
        # --- gaps are exactly the dropout windows
        starts = Counter(minutes(start, r["interval_start"]) for _, _, r in items)
        expected_missing = {s for s in all_starts
                            if _in(faults["dropout"][meter], s) or _in(faults["short_dropout"][meter], s)}
        assert all_starts - set(starts) == expected_missing, meter
        # --- duplicates are exactly the duplicate faults, with identical bytes
        dups = {s for s, n in starts.items() if n > 1}
        assert dups == {a for a, _, _ in faults["duplicate"][meter]}, meter
        assert all(n <= 2 for n in starts.values())
        lines_at: dict[int, set[bytes]] = defaultdict(set)
        for _, line, r in items:
            lines_at[minutes(start, r["interval_start"])].add(line)
        assert all(len(lines_at[s]) == 1 for s in dups)
        # --- out of order: exactly the delayed readings, delivered right after the announced one
        late, highest = set(), -1
        for _, _, r in items:
            if r["seq"] < highest:
                late.add(minutes(start, r["interval_start"]))
                for a, b, f in faults["out_of_order"][meter] + faults["late_upload"][meter]:
                    if a <= minutes(start, r["interval_start"]) < b:
                        assert minutes(start, f["delivered_after"]) == highest * step
            highest = max(highest, r["seq"])
        uploaded = {s for a, b, _ in faults["late_upload"][meter] for s in range(a, b, step)}
        assert late == {a for a, _, _ in faults["out_of_order"][meter]} | uploaded, meter
        # --- value faults, in interval order (first copy of each interval)
        series = {}
        for _, _, r in items:
            series.setdefault(minutes(start, r["interval_start"]), r)
        ordered = [series[s] for s in sorted(series)]
        for r in ordered:
            s = minutes(start, r["interval_start"])
            assert (r["kwh_import"] < 0) == _in(faults["negative"][meter], s), (meter, r)
            assert (not 207.0 <= r["voltage"] <= 253.0) == _in(faults["voltage"][meter], s), (meter, r)
            assert r["seq"] * step == s
        # stuck: runs of >= 3 equal non-zero values are exactly the stuck windows
        runs, current = [], [ordered[0]]
        for prev, r in itertools.pairwise(ordered):
            consecutive = minutes(start, r["interval_start"]) - minutes(start, prev["interval_start"]) == step
            if consecutive and r["kwh_import"] == prev["kwh_import"] and r["kwh_import"] != 0:
                current.append(r)
            else:
                runs.append(current)
                current = [r]
        runs.append(current)
        stuck_runs = {(minutes(start, g[0]["interval_start"]), minutes(start, g[-1]["interval_start"]) + step)
                      for g in runs if len(g) >= 3}
        expected_stuck = set()
        for a, b, _ in faults["stuck"][meter]:
            present = [s for s in sorted(series) if a <= s < b]
            expected_stuck.add((present[0], present[-1] + step))
            regs = {series[s]["register_kwh"] for s in present}
            assert len(regs) == 1, (meter, "register must stay frozen")
        assert stuck_runs == expected_stuck, meter
        # spikes: a reading >= 8x both neighbours exactly at spike faults
        for i in range(1, len(ordered) - 1):
            s = minutes(start, ordered[i]["interval_start"])
            around = max(abs(ordered[i - 1]["kwh_import"]), abs(ordered[i + 1]["kwh_import"]), 0.05)
            assert (ordered[i]["kwh_import"] >= 8 * around) == _in(faults["spike"][meter], s), (meter, s)


def test_heartbeats_match_the_ground_truth(run: Run) -> None:
    start = run.config.start
    hb = run.config.heartbeat_minutes
    times = set(range(hb, run.config.days * 1440 + 1, hb))
    by_meter: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for h in run.events(TOPICS.heartbeats):
        by_meter[h["meter_id"]].append(h)
    drop, volt, skew = _windows(run, "dropout"), _windows(run, "voltage"), _windows(run, "clock_skew")
    for meter, spans in _windows(run, "short_dropout").items():  # a 1-hour outage sends nothing either
        drop[meter] = drop[meter] + spans
    assert len(by_meter) == run.config.meters
    for meter, beats in by_meter.items():
        seen = [minutes(start, h["ts"]) for h in beats]
        assert len(seen) == len(set(seen))
        assert set(seen) == {t for t in times if not _in(drop[meter], t)}, meter
        for h, t in zip(beats, seen, strict=True):
            assert (h["status"] == "degraded") == _in(volt[meter], t), (meter, h)
            assert (h["status"] != "ok") == _in(volt[meter], t)
            assert (abs(h["clock_offset_s"]) > 60) == _in(skew[meter], t), (meter, h)
    for f in run.gt.faults:
        if f["kind"] == "clock_skew":
            assert any(minutes(start, f["start"]) <= minutes(start, h["ts"]) < minutes(start, f["end"])
                       for h in by_meter[f["meter_id"]])


def test_shifts_change_archetypes_and_purchases(run: Run) -> None:
    ev_shift, stop_shift = run.gt.shifts
    at = ts(ev_shift["at"])
    for cid in ev_shift["customers"]:
        assert run.gt.archetype_at(cid, at) == "ev_night_charging"
        assert run.gt.archetype_at(cid, run.config.start) != "ev_night_charging"
    # adopters' night-time consumption rises on the shift day
    adopters = set(ev_shift["customers"])
    night: dict[int, float] = defaultdict(float)
    for line in run.lines(TOPICS.readings):
        try:
            r = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if r.get("customer_id") in adopters and isinstance(r.get("kwh_import"), float):
            t = ts(r["interval_start"])
            if 0 <= t.hour < 4 and r["kwh_import"] > 0:
                night[(t - run.config.start).days] += r["kwh_import"]
    assert night[1] > 2.5 * night[0]
    stopped = set(stop_shift["customers"])
    stop_at = ts(stop_shift["at"])
    purchases = run.events(TOPICS.purchases)
    assert not [p for p in purchases if p["customer_id"] in stopped and ts(p["ts"]) >= stop_at]
    assert [p for p in purchases if p["customer_id"] not in stopped and ts(p["ts"]) >= stop_at]


def test_same_seed_gives_identical_bytes(run: Run, tmp_path: Path) -> None:
    again = simulate(tmp_path / "again", **busy_config())
    for f in sorted(run.out.iterdir()):
        assert (tmp_path / "again" / f.name).read_bytes() == f.read_bytes(), f.name
    other = simulate(tmp_path / "other", **busy_config(seed=12))
    assert other.lines(TOPICS.readings)[:50] != run.lines(TOPICS.readings)[:50]
    assert again.summary.messages == run.summary.messages


def test_envelopes_carry_the_same_readings(run: Run, tmp_path: Path) -> None:
    env = simulate(tmp_path / "env", **busy_config(envelope=40))
    valid, _ = _split_readings(run)
    registered = {m["meter_id"] for m in run.events(TOPICS.registry)}
    single = sorted(orjson.dumps(r) for _, _, r in valid if r["meter_id"] in registered)
    flat, singles = [], 0
    for line in env.lines(TOPICS.readings):
        if not line.startswith(b'{"schema_version":1,"batch_id"'):
            singles += 1  # malformed payloads stay single messages
            continue
        batch = ReadingBatch.model_validate_json(line)
        assert 1 <= len(batch.readings) <= 40 + 10
        assert len({partition_for(r.meter_id.encode(), 4) for r in batch.readings}) == 1, \
            "an envelope holds meters of one partition"
        flat += [orjson.dumps(r) for r in orjson.loads(line)["readings"]]
    assert singles == run.summary.faults["malformed"]
    assert sorted(flat) == single
    assert env.summary.readings == run.summary.readings
