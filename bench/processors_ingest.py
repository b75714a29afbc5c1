"""Throughput of the pure ingest processors: decode → dedupe → windows → health.

Prints readings/s per stage and end to end (median of 3 runs) for

* ``single``: one reading per Kafka message, handed over in polls of
  ``--poll`` messages (what ``getmany`` returns);
* ``envelope``: batch envelopes of ``--envelope`` readings, one envelope per call;
* ``block``: meter-major head-end blocks (10 meters × 100 intervals per envelope),
  the worst case for per-meter sequential rules.

The fleet has ``--meters`` meters; readings advance interval by interval, so
windows close and health rules run as in a live stream. No Kafka, no Redis:
this is the ceiling the agents can reach. ``--profile`` prints the top
functions by cumulative time (cProfile) for one run of each mode.

Usage: ``.venv/bin/python bench/processors_ingest.py [--meters 10000] [--intervals 20]``
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from processors.columns import EPOCH, MeterRegistry
from processors.decode import ReadingDecoder
from processors.dedupe import Deduplicator
from processors.health import HealthMonitor
from processors.windows import ConsumptionWindows, WindowConfig
from stream.schemas import MeterInfo

T0 = 1_767_225_600
STAGES = ("decode", "dedupe", "windows", "health")


def fleet(n: int) -> MeterRegistry:
    regions = ("North", "South", "East", "West")
    return MeterRegistry(
        MeterInfo(meter_id=f"M{i:07d}", customer_id=f"C{i:07d}", region=regions[i % 4],
                  tariff="prepaid" if i % 2 else "postpaid", installed_on=EPOCH, has_export=i % 5 == 0)
        for i in range(n)
    )  # fmt: skip


def readings(n_meters: int, n_intervals: int, seed: int = 0) -> list[dict[str, object]]:
    rng = np.random.default_rng(seed)
    k = np.arange(n_intervals)[:, None]
    shape = 1.0 + 0.6 * np.sin(2 * np.pi * k / 96 + rng.uniform(0, 2 * np.pi, size=n_meters))
    noise = rng.lognormal(0.0, 0.15, size=(n_intervals, n_meters))
    kwh = (rng.uniform(0.1, 0.5, size=n_meters) * shape * noise).round(4)  # daily shape, mild noise
    reg = (1000.0 + np.cumsum(kwh, axis=0)).round(4)
    volt = rng.normal(231.0, 2.0, size=(n_intervals, n_meters)).round(1)
    out: list[dict[str, object]] = []
    for k in range(n_intervals):
        ts = datetime.fromtimestamp(T0 + 900 * k, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        kk, rr, vv = kwh[k].tolist(), reg[k].tolist(), volt[k].tolist()
        for m in range(n_meters):
            out.append({"meter_id": f"M{m:07d}", "customer_id": f"C{m:07d}", "interval_start": ts,
                        "interval_minutes": 15, "kwh_import": kk[m], "kwh_export": 0.0, "register_kwh": rr[m],
                        "voltage": vv[m], "power_factor": 0.97, "seq": k})  # fmt: skip
    return out


def run_once(
    registry: MeterRegistry, polls: list[list[bytes]], n_readings: int, lateness_s: int = 900
) -> dict[str, float]:
    dec = ReadingDecoder(registry)
    dd = Deduplicator()
    prices = {"prepaid": 0.2, "postpaid": 0.15}
    win = ConsumptionWindows(WindowConfig(close_after_s=lateness_s, price_per_kwh=prices))
    health = HealthMonitor()
    spent = dict.fromkeys(STAGES, 0.0)
    clock = time.perf_counter
    cpu0 = time.process_time()
    closed = alerts = 0
    for poll in polls:
        t0 = clock()
        d = dec.process(poll)
        t1 = clock()
        u = dd.process(d.readings)
        t2 = clock()
        w = win.process(u.readings)
        t3 = clock()
        h = health.process(w.accepted)
        t4 = clock()
        spent["decode"] += t1 - t0
        spent["dedupe"] += t2 - t1
        spent["windows"] += t3 - t2
        spent["health"] += t4 - t3
        closed += sum(len(c) for c in w.closed)
        alerts += len(h.alerts)
    t0 = clock()
    closed += sum(len(c) for c in win.flush())  # the end of the run closes what is still open
    spent["windows"] += clock() - t0
    total = sum(spent.values())
    rates = {s: n_readings / v for s, v in spent.items()}
    rates["total"] = n_readings / total
    rates["cpu"] = n_readings / (time.process_time() - cpu0)
    rates["closed_windows"] = closed
    rates["alerts"] = alerts
    return rates


def bench(
    name: str, registry: MeterRegistry, polls: list[list[bytes]], n: int, runs: int, lateness_s: int = 900
) -> dict[str, float]:
    results = [run_once(registry, polls, n, lateness_s) for _ in range(runs)]
    med = {k: statistics.median(r[k] for r in results) for k in results[0]}
    stages = "  ".join(f"{s} {med[s]:>10,.0f}/s" for s in STAGES)
    print(f"{name:<9} {n:>8,} readings  total {med['total']:>9,.0f} readings/s"
          f" (per CPU-second {med['cpu']:>9,.0f}; best run {max(r['total'] for r in results):,.0f})   [{stages}]"
          f"  closed windows {med['closed_windows']:,.0f}, alerts {med['alerts']:,.0f}")  # fmt: skip
    return med


def profile(label: str, fn: Callable[[], object], top: int) -> None:
    prof = cProfile.Profile()
    prof.enable()
    fn()
    prof.disable()
    print(f"\n--- cProfile, {label}: top {top} by own time ---")
    pstats.Stats(prof).sort_stats("tottime").print_stats(top)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--meters", type=int, default=10_000)
    ap.add_argument("--intervals", type=int, default=20, help="intervals per meter (envelope mode)")
    ap.add_argument("--single-intervals", type=int, default=6, help="intervals per meter (single mode)")
    ap.add_argument("--envelope", type=int, default=1000, help="readings per envelope")
    ap.add_argument("--poll", type=int, default=1000, help="single-reading messages per decode call")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--top", type=int, default=20)
    args = ap.parse_args(argv)

    registry = fleet(args.meters)
    rows = readings(args.meters, args.intervals)
    envelopes = [
        orjson.dumps({"batch_id": f"b{k}", "head_end_id": "hes-1", "sent_at": "2026-01-01T00:00:00Z",
                      "readings": rows[k : k + args.envelope]})
        for k in range(0, len(rows), args.envelope)
    ]  # fmt: skip
    env_polls = [[e] for e in envelopes]
    n_single = args.meters * args.single_intervals
    singles = [orjson.dumps(r) for r in rows[:n_single]]
    single_polls = [singles[k : k + args.poll] for k in range(0, len(singles), args.poll)]

    print(f"meters {args.meters:,}; envelope {args.envelope} readings; single polls of {args.poll}; "
          f"median of {args.runs} runs; numpy {np.__version__}")  # fmt: skip
    bench("single", registry, single_polls, len(singles), args.runs)
    bench("envelope", registry, env_polls, len(rows), args.runs)
    # A head-end block per meter group: 1000 readings = 10 meters x 100 intervals (25 h), meter-major.
    # Blocks of different meters overlap in time, so the windows need a lateness of the block span.
    n_block = min(args.meters, 1000)
    block_rows = readings(n_block, 100)
    block_rows.sort(key=lambda r: (str(r["meter_id"]), str(r["interval_start"])))
    blocks = [
        [orjson.dumps({"batch_id": f"h{k}", "sent_at": "2026-01-01T00:00:00Z", "readings": block_rows[k : k + 1000]})]
        for k in range(0, len(block_rows), 1000)
    ]
    bench("block", registry, blocks, len(block_rows), args.runs, lateness_s=2 * 86400)
    if args.profile:
        profile("single", lambda: run_once(registry, single_polls, len(singles)), args.top)
        profile("envelope", lambda: run_once(registry, env_polls, len(rows)), args.top)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
