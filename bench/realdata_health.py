"""The meter-health figures of ``bench/realdata_meters.py``, in-process: for tuning the rules in minutes, not an hour.

Same fleet, faults and scoring as the live bench (``simulate_args``,
``alert_scores``, ``clean_flagged_per_1000_month``), but the simulator writes
to files (``--sink file``) and the readings and heartbeats go through
:class:`processors.ingest.PartitionIngest` — the worker's own decode →
dedupe → windows → health code — in polls of ``--poll`` messages of each
topic, interleaved (``pending`` holds back the topic that runs ahead, as in
the worker). One partition instead of the worker's several: the health rules
are per meter, so the alerts are the same (on seed 2 with the rules of commit
b31c02a this reproduced the live figures exactly: spike 0.892 / 0.970, 14 of
941 clean meters flagged). It is not the yardstick: the live bench is.

``--config '{"spike_isolated_ratio": 12}'`` overrides health thresholds
(``HealthConfig`` fields) for a trial. Tune on seed 1, report on seed 2.

Run (from the repository root)::

    .venv/bin/python -m bench.realdata_health --seed 1     # 3 000 meters, 28 days: 7-11 minutes on a shared 2-core machine
    .venv/bin/python -m bench.realdata_health --meters 400 --days 5 --rates test
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.realdata_meters import (  # noqa: E402
    DEFAULT_RATES,
    SCORED,
    TARGET_CLEAN_PER_1000,
    TARGET_PRECISION,
    TARGET_RECALL,
    FleetRun,
    Outcome,
    alert_scores,
    clean_flagged_per_1000_month,
    simulate_args,
)
from meterseg.cli import main as meterseg_main  # noqa: E402
from processors.columns import MeterRegistry, RawMessage  # noqa: E402
from processors.health import HealthConfig  # noqa: E402
from processors.ingest import IngestConfig, PartitionIngest  # noqa: E402
from stream.schemas import MeterInfo  # noqa: E402

#: the raised fault rates of the reduced test (tests/quality/test_realdata_meters.py)
TEST_RATES = (
    "stuck=0.02", "spike=0.03", "negative=0.01", "voltage=0.01", "dropout=0.02", "short_dropout=0.02",
    "clock_skew=0.01", "zero_run=0.02", "duplicate=0.01", "out_of_order=0.03", "malformed=0.005",
)  # fmt: skip


def _lines(path: Path) -> list[bytes]:
    with path.open("rb") as f:
        return [line.rstrip(b"\n") for line in f]


def simulate_to_files(run: FleetRun, out: Path) -> dict[str, Any]:
    """``meterseg simulate --sink file`` with the bench's arguments; the ground truth."""
    args = ["simulate", "--sink", "file", "--out", str(out), "--ground-truth", str(out / "truth.json"),
            *simulate_args(run)]  # fmt: skip
    if meterseg_main(args) != 0:
        raise RuntimeError("simulator failed")
    truth: dict[str, Any] = json.loads((out / "truth.json").read_text())
    return truth


def ingest_alerts(out: Path, health: HealthConfig, poll: int) -> list[dict[str, Any]]:
    """Every alert of one :class:`PartitionIngest` fed the simulated topics, as ``meter.alerts`` records."""
    registry = MeterRegistry(MeterInfo.model_validate_json(b) for b in _lines(out / "meter.registry.jsonl"))
    readings, heartbeats = _lines(out / "meter.readings.jsonl"), _lines(out / "meter.heartbeats.jsonl")
    ingest = PartitionIngest(registry, IngestConfig(health=health))
    alerts: list[dict[str, Any]] = []
    i = j = 0
    while i < len(readings) or j < len(heartbeats):
        r = [RawMessage(v, "meter.readings", 0, i + k) for k, v in enumerate(readings[i : i + poll])]
        h = [RawMessage(v, "meter.heartbeats", 0, j + k) for k, v in enumerate(heartbeats[j : j + poll])]
        i, j = i + len(r), j + len(h)
        pending = {name for name, left in (("readings", i < len(readings)), ("heartbeats", j < len(heartbeats))) if left}
        alerts += [a.to_record() for a in ingest.process((r, h), wall=0.0, pending=pending).alerts]
    alerts += [a.to_record() for a in ingest.process(([], []), wall=0.0).alerts]
    for a in alerts:  # the live records' field names
        a["action"] = a["status"]
        a["ts"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(a["at"]))
    return alerts


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--meters", type=int, default=3000)
    p.add_argument("--days", type=int, default=28)
    p.add_argument("--seed", type=int, default=2, help="report seed (tune on seed 1)")
    p.add_argument("--envelope", type=int, default=500)
    p.add_argument("--rates", choices=("bench", "test"), default="bench", help="the bench's or the reduced test's")
    p.add_argument("--config", default="{}", help="JSON object of HealthConfig overrides")
    p.add_argument("--poll", type=int, default=20, help="messages of each topic per poll")
    p.add_argument("--verbose", action="store_true", help="list the alerts on clean meters")
    args = p.parse_args(argv)
    run = FleetRun(meters=args.meters, days=args.days, seed=args.seed, envelope=args.envelope,
                   rates=DEFAULT_RATES if args.rates == "bench" else TEST_RATES)  # fmt: skip
    health = HealthConfig(**json.loads(args.config))
    with tempfile.TemporaryDirectory(prefix="realdata-health-") as tmp:
        t0 = time.perf_counter()
        truth = simulate_to_files(run, Path(tmp))
        t1 = time.perf_counter()
        alerts = ingest_alerts(Path(tmp), health, args.poll)
        t2 = time.perf_counter()
    outcome = Outcome(truth, alerts, [], {})
    print(f"\n== in-process health: {run.meters} meters, {run.days} days, seed {run.seed}, {args.rates} rates, "
          f"overrides {args.config} ==")  # fmt: skip
    ok = True
    for (label, _f, alert_kind, _o), (_, prec, rec, na, nf, _m) in zip(SCORED, alert_scores(outcome, run.slack_s),
                                                                        strict=True):  # fmt: skip
        met = prec >= TARGET_PRECISION and rec >= TARGET_RECALL
        ok &= met
        print(f"{label:<26} {alert_kind:<22} {prec:>9.3f} {rec:>7.3f} {na:>7} {nf:>7}{'' if met else '   below target'}")
    rate, flagged, clean = clean_flagged_per_1000_month(outcome)
    ok &= rate <= TARGET_CLEAN_PER_1000
    print(f"clean meters flagged: {flagged} of {clean} = {rate:.1f} per 1 000 per month")
    if args.verbose:
        faulty = {f["meter_id"] for f in truth["faults"]}
        for a in alerts:
            if a["action"] == "raised" and a["meter_id"] not in faulty:
                print(f"  {a['kind']} {a['meter_id']} {a['ts']} value {a['value']}")
    print(f"seconds: simulate {t1 - t0:.0f}, ingest {t2 - t1:.0f}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
