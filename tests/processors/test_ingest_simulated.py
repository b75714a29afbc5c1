"""The ingest processors against the simulator's own output and ground truth (no broker needed).

A seeded, fault-heavy simulation is written with the file sink; its readings
and heartbeats go through decode → dedupe → windows → health in polls, with
the silence timer ticking on the stream clock. Checks:

* conservation: readings in = processed + dead-lettered + duplicates;
  with one reading per message and with head-end envelopes of 500;
* window totals equal the sum of the processed readings (relative 1e-9);
* every injected fault kind is found with precision and recall ≥ 0.95.
"""

from __future__ import annotations

import collections
import json
import math
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from meterseg.cli import main as meterseg_main
from processors.columns import MeterRegistry, RawMessage
from processors.decode import HeartbeatDecoder, ReadingDecoder
from processors.dedupe import Deduplicator
from processors.health import HealthAlert, HealthMonitor
from processors.windows import ClosedWindows, ConsumptionWindows, WindowConfig
from stream.schemas import MeterInfo

FAULT_TO_ALERT = {
    "stuck": "stuck_register",
    "spike": "spike",
    "negative": "negative_consumption",
    "voltage": "voltage",
    "dropout": "silent",
    "clock_skew": "clock_skew",
}
TOLERANCE_S = 3 * 900 + 3600  # a finding may be raised up to k intervals (+ an hour) after the fault ends


def _ts(s: str) -> int:
    return int(datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp())


@pytest.fixture(
    scope="module",
    params=[(0, 0, "rows"), (500, 0, "rows"), (500, 300, "rows"), (500, 300, "columns")],
    ids=["single", "envelope", "envelope-hb", "block-hb"],
)
def run(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("sim")
    rates = ["spike=0.3", "stuck=0.05", "negative=0.05", "voltage=0.05", "dropout=0.05", "clock_skew=0.05"]
    envelope, heartbeat_envelope, envelope_format = request.param
    args = ["simulate", "--meters", "1000", "--days", "3", "--seed", "23", "--sink", "file", "--out", str(out),
            "--ground-truth", str(out / "gt.json"), "--no-progress", "--no-ops", "--envelope", str(envelope),
            "--heartbeat-envelope", str(heartbeat_envelope), "--envelope-format", envelope_format]  # fmt: skip
    for r in rates:
        args += ["--fault-rate", r]
    assert meterseg_main(args) == 0
    return _pipeline(out)


def _lines(path: Path) -> list[bytes]:
    with path.open("rb") as f:
        return [line.rstrip(b"\n") for line in f]


class SweepingHealth(HealthMonitor):
    """Health rules whose silence timer sweeps every meter at every tick (no due-time bound)."""

    def check_silence(self, now: int | None = None) -> Any:
        self.silence_due = -math.inf
        return super().check_silence(now)


def _pipeline(d: Path, health_type: type[HealthMonitor] = HealthMonitor) -> dict[str, Any]:
    registry = MeterRegistry(MeterInfo.model_validate_json(b) for b in _lines(d / "meter.registry.jsonl"))
    readings = _lines(d / "meter.readings.jsonl")
    decoded_hb = HeartbeatDecoder(registry).process(_lines(d / "meter.heartbeats.jsonl"))
    assert decoded_hb.rejects == [] and decoded_hb.records == len(decoded_hb.heartbeats) > 0
    hb = decoded_hb.heartbeats
    hb = hb.take(np.argsort(hb.ts, kind="stable"))
    dec, dedupe, health = ReadingDecoder(registry), Deduplicator(), health_type()
    windows = ConsumptionWindows(WindowConfig(close_after_s=3600))
    counts: collections.Counter[str] = collections.Counter()
    alerts: list[HealthAlert] = []
    closed: list[ClosedWindows] = []
    accepted_kwh: list[float] = []
    hb_pos = ticks = swept = 0
    step = 2 if b'"readings"' in readings[0] or b'"columns"' in readings[0] else 1000
    for k in range(0, len(readings), step):
        msgs = [RawMessage(v, "meter.readings", 0, k + i) for i, v in enumerate(readings[k : k + step])]
        x = dec.process(msgs)
        counts["in"] += x.records + x.unparsed
        counts["dead_letter"] += len(x.rejects)
        u = dedupe.process(x.readings)
        counts["duplicates"] += u.duplicates
        w = windows.process(u.readings)
        counts["dead_letter"] += len(w.rejects)
        counts["processed"] += len(w.accepted)
        accepted_kwh += w.accepted.kwh_import.tolist()
        closed += w.closed
        alerts += health.process(w.accepted).alerts
        ticks, swept = ticks + 1, swept + (health.stream_time >= health.silence_due - 1)
        alerts += health.check_silence().alerts  # the timer may tick between readings and heartbeats
        if len(x.readings):
            until = int(np.searchsorted(hb.ts, int(x.readings.interval_start.max()) + 900, "right"))
            alerts += health.process(hb.take(np.arange(hb_pos, until))).alerts
            hb_pos = until
        alerts += health.check_silence().alerts
    closed += windows.flush()
    truth = json.loads((d / "gt.json").read_text())
    return {"counts": counts, "alerts": alerts, "closed": closed, "kwh": accepted_kwh, "truth": truth, "dir": d,
            "ticks": ticks, "swept": swept}  # fmt: skip


def test_conservation(run: dict[str, Any]) -> None:
    c = run["counts"]
    assert c["in"] == c["processed"] + c["dead_letter"] + c["duplicates"]
    assert c["duplicates"] > 0 and c["dead_letter"] > 0


def test_window_totals_equal_the_readings(run: dict[str, Any]) -> None:
    want = math.fsum(run["kwh"])
    for kind, size in (("meter", 900), ("meter", 3600), ("meter", 86400), ("region", 3600)):
        got = math.fsum(float(c.kwh_in.sum()) for c in run["closed"] if c.kind == kind and c.size_s == size)
        assert math.isclose(got, want, rel_tol=1e-9), (kind, size)
    counted = sum(int(c.count.sum()) for c in run["closed"] if c.kind == "meter" and c.size_s == 900)
    assert counted == run["counts"]["processed"]


@pytest.mark.parametrize("fault", sorted(FAULT_TO_ALERT))
def test_precision_and_recall_per_fault_kind(run: dict[str, Any], fault: str) -> None:
    kind = FAULT_TO_ALERT[fault]
    faults = collections.defaultdict(list)
    for f in run["truth"]["faults"]:
        if f["kind"] == fault:
            faults[f["meter_id"]].append((_ts(f["start"]), _ts(f["end"])))
    raised = collections.defaultdict(list)
    for a in run["alerts"]:
        if a.kind == kind and a.status == "raised":
            raised[a.meter_id].append(a.at)
    n_faults = sum(map(len, faults.values()))
    n_alerts = sum(map(len, raised.values()))
    assert n_faults >= 20, "the run must inject enough faults of each kind to score"
    found = sum(
        any(s <= t <= e + TOLERANCE_S for t in raised.get(m, [])) for m, spans in faults.items() for s, e in spans
    )
    true = sum(
        any(s - 900 <= t <= e + TOLERANCE_S for s, e in faults.get(m, [])) for m, ts in raised.items() for t in ts
    )
    recall, precision = found / n_faults, true / max(n_alerts, 1)
    assert recall >= 0.95 and precision >= 0.95, f"{fault}: recall {recall:.3f}, precision {precision:.3f}"


def test_the_silence_timer_skips_its_sweep_until_a_meter_is_due_and_finds_the_same(run: dict[str, Any]) -> None:
    """The due-time bound changes no alert: the same run with a sweep of every meter at every tick."""
    swept = _pipeline(run["dir"], SweepingHealth)
    assert run["alerts"] == swept["alerts"]
    assert any(a.kind == "silent" for a in run["alerts"])
    assert run["swept"] < run["ticks"]  # some ticks found no meter due and skipped the sweep
