"""Recovery times: the fault drills 1–5, and partition-state restore at 100 000 and 1 000 000 meters/customers.

Prints two tables.

1. **Drills** (real workers, real Kafka and Redis through the local stack
   launcher; 250 meters x 2 days + 30 days of purchases, seeded): drill 1
   (kill -9 the only worker, restart it) is timed here; drills 2–5 run as
   ``pytest tests/chaos -m slow -s`` and their ``[chaos]`` lines are collected.
   Recovery = fault injected (or, for outages, the service started again /
   the process resumed) → the checkpointed ingest state passes the count it
   held when the fault hit (``meterseg_ingest_state_messages``, 1 s tick).
2. **Restore** of the whole fleet's partition state, split over
   ``--partitions`` (4) partitions restored in turn (the worst case: one
   worker takes over everything), on *synthetic state*, not a simulated fleet:
   ingest state after 2 readings per meter for N meters (every meter has its
   rows, rings and health; a real day adds values, not rows), segmentation
   state after 1 purchase per customer for N customers (RFM records and
   sketches; no load-shape features). Times ``snapshot()``, the checkpoint
   ``save``/``load`` through :class:`stream.state.checkpoints.CheckpointStore`
   on a real Redis, and ``PartitionIngest.restore`` /
   ``PartitionSegmentation.restore``.

Usage::

    .venv/bin/python bench/recovery.py                 # both tables
    .venv/bin/python bench/recovery.py --restore-only  # restore table only (~1–2 min)
    .venv/bin/python bench/recovery.py --sizes 100000  # smaller
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


# -- drills -------------------------------------------------------------------------------------------
def drill1() -> str:
    """Kill -9 the only worker part-way through, restart it; recovery = kill → state past the kill point."""
    from meterseg.stack import LocalStack
    from tests.chaos.fleet import WORKER_ENV, Fleet, consumed, drill_settings, finish, recovery_time
    from tests.conftest import local_test_settings
    from tests.integration.harness import running_worker, wait_for

    stack = LocalStack.from_settings(local_test_settings(), with_prometheus=False, appendonly=False)
    started_here = stack.up(timeout_s=120)["kafka"] == "started"
    try:
        out = Path(tempfile.mkdtemp(prefix="recovery-drill1-"))
        settings = drill_settings(stack.kafka.bootstrap, stack.redis.url.rsplit("/", 1)[0] + "/12", "drill1")
        fleet = Fleet.simulate(settings, out)
        with running_worker(settings, out, **WORKER_ENV) as worker:
            wait_for(lambda: consumed([worker]) >= fleet.expected_in // 4, 120, "a quarter of the stream", 0.2)
            baseline = consumed([worker])
            worker.proc.send_signal(signal.SIGKILL)
            killed = time.monotonic()
            worker.proc.wait()
        with running_worker(settings, out, **WORKER_ENV) as worker:
            started = time.monotonic() - killed
            recovery = recovery_time([worker], baseline, killed)
            counters = finish([worker], fleet)
        ok = counters["messages"] == fleet.expected_in
        return (f"[chaos] drill 1 kill -9 the only worker, restart: recovery {recovery:.1f} s, measured_from kill, "
                f"worker_restart_s {started:.1f}, state_at_kill {baseline:.0f}/{fleet.expected_in}, "
                f"conservation {'ok' if ok else counters}")  # fmt: skip
    finally:
        if started_here:
            stack.down()


def drills_2_to_5() -> list[str]:
    """Run the chaos suite and keep its ``[chaos]`` lines (and its pass/fail summary)."""
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "tests/chaos", "-m", "slow", "-s", "-q", "-p", "no:cacheprovider", "-rfxX", "--tb=line"],
        cwd=REPO, capture_output=True, text=True, timeout=1800,
    )  # fmt: skip
    lines = [line for line in done.stdout.splitlines() if line.startswith(("[chaos]", "E ", "FAILED", "XPASS"))]
    summary = [line for line in done.stdout.splitlines() if re.search(r"\d+ (passed|failed|xfailed)", line)]
    return [*lines, f"pytest tests/chaos: {summary[-1] if summary else done.stdout[-500:]}"]


# -- restore -------------------------------------------------------------------------------------------
def _ingest_state(registry: object, first: int, stop: int) -> object:
    """A PartitionIngest that has seen 2 readings and 1 heartbeat from each of meters ``first..stop-1``."""
    import numpy as np

    from processors.columns import RawMessage
    from processors.ingest import PartitionIngest

    n = stop
    proc = PartitionIngest(registry)  # type: ignore[arg-type]
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    rng = np.random.default_rng(0)
    offset = 0
    for k in range(2):
        ts = (t0 + timedelta(minutes=15 * k)).strftime("%Y-%m-%dT%H:%M:%SZ")
        kwh = rng.uniform(0.05, 0.5, n).round(4).tolist()
        chunk = 100_000
        for lo in range(first, n, chunk):
            readings = []
            for i in range(lo, min(n, lo + chunk)):
                value = orjson.dumps({
                    "meter_id": f"M{i:07d}", "customer_id": f"C{i:07d}", "interval_start": ts, "interval_minutes": 15,
                    "kwh_import": kwh[i], "kwh_export": 0.0, "register_kwh": 1000.0 + kwh[i] * (k + 1),
                    "voltage": 231.0, "power_factor": 0.97, "seq": k,
                })  # fmt: skip
                readings.append(RawMessage(value, "meter.readings", 0, offset, 0))
                offset += 1
            heartbeats = []
            if k == 0:
                for i in range(lo, min(n, lo + chunk)):
                    value = orjson.dumps({
                        "meter_id": f"M{i:07d}", "customer_id": f"C{i:07d}", "ts": ts, "status": "ok", "error_codes": [], "signal_dbm": -70,
                        "battery_pct": 90.0, "firmware": "1.0.0", "clock_offset_s": 0.0,
                    })  # fmt: skip
                    heartbeats.append(RawMessage(value, "meter.heartbeats", 0, offset, 0))
                    offset += 1
            proc.process((readings, heartbeats))
    assert proc.totals["accepted"] == 3 * (stop - first), proc.totals
    return proc


def _segmentation_state(first: int, n: int) -> object:
    """A PartitionSegmentation that has applied one purchase of each of customers ``first..n-1``."""
    from processors.columns import RawMessage
    from processors.segmentation import PartitionSegmentation

    proc = PartitionSegmentation()
    t0 = datetime(2026, 1, 1, 12, tzinfo=UTC)
    chunk = 50_000
    for lo in range(first, n, chunk):
        msgs = []
        for i in range(lo, min(n, lo + chunk)):
            ts = (t0 - timedelta(days=i % 60)).strftime("%Y-%m-%dT%H:%M:%SZ")
            value = orjson.dumps({"event_id": f"E{i}", "customer_id": f"C{i:07d}", "event_type": "PURCHASED",
                                  "amount": 10.0 + i % 90, "ts": ts, "channel": "web"})  # fmt: skip
            msgs.append(RawMessage(value, "customer.purchases", 0, i, -1))  # no broker time: none to skew from
        proc.process((msgs, []), static={})
    assert len(proc.rfm.customers) == n - first
    return proc


def fleet(n: int) -> Any:
    """A meter registry of ``n`` meters (one customer each) in four regions."""
    from processors.columns import EPOCH, MeterRegistry
    from stream.schemas import MeterInfo

    regions = ("North", "South", "East", "West")
    return MeterRegistry(
        MeterInfo(meter_id=f"M{i:07d}", customer_id=f"C{i:07d}", region=regions[i % 4],
                  tariff="prepaid" if i % 2 else "postpaid", installed_on=EPOCH, has_export=i % 5 == 0)
        for i in range(n)
    )  # fmt: skip


async def _roundtrip(redis_url: str, name: str, state: object) -> tuple[float, float, int, Any]:
    """Checkpoint save and load times (s), the stored size (bytes) and the state loaded back."""
    import redis.asyncio as aioredis

    from stream.state.checkpoints import CheckpointStore

    client = aioredis.Redis.from_url(redis_url)
    store = CheckpointStore(client, f"bench-recovery-{uuid.uuid4().hex[:6]}")
    try:
        t = time.perf_counter()
        await store.save(name, 0, state, {"t": 1})
        saved = time.perf_counter() - t
        size = await store.stored_bytes(name, 0)
        t = time.perf_counter()
        loaded, _ = await store.load(name, 0)
        load = time.perf_counter() - t
        assert loaded is not None
        await store.delete(name, 0)
        return saved, load, size, loaded
    finally:
        await client.aclose()


def restore_table(sizes: Sequence[int], partitions: int, redis_url: str) -> None:
    """Print, per state kind and fleet size, the time to restore all ``partitions`` partitions of the fleet."""
    from processors.ingest import PartitionIngest
    from processors.segmentation import PartitionSegmentation

    print(f"{'state':<13}{'N':>10}{'build s':>9}{'snapshot s':>11}{'stored MB':>10}{'save s':>8}{'load s':>8}"
          f"{'restore s':>10}{'load+restore s':>15}", flush=True)  # fmt: skip
    for n in sizes:
        registry = fleet(n)
        for kind in ("ingest", "segmentation"):
            totals = dict.fromkeys(("build", "snapshot", "size", "save", "load", "restore"), 0.0)
            for p in range(partitions):
                first, stop = p * n // partitions, (p + 1) * n // partitions
                gc.collect()
                t = time.perf_counter()
                proc = _ingest_state(registry, first, stop) if kind == "ingest" else _segmentation_state(first, stop)
                totals["build"] += time.perf_counter() - t
                t = time.perf_counter()
                snap = proc.snapshot()  # type: ignore[attr-defined]
                totals["snapshot"] += time.perf_counter() - t
                del proc
                saved, load, size, raw = asyncio.run(_roundtrip(redis_url, kind, snap))
                del snap
                totals["save"] += saved
                totals["load"] += load
                totals["size"] += size
                t = time.perf_counter()
                if kind == "ingest":
                    PartitionIngest.restore(raw, registry)
                else:
                    PartitionSegmentation.restore(raw)
                totals["restore"] += time.perf_counter() - t
                del raw
            print(f"{kind:<13}{n:>10,}{totals['build']:>9.1f}{totals['snapshot']:>11.2f}{totals['size'] / 1e6:>10.1f}"
                  f"{totals['save']:>8.2f}{totals['load']:>8.2f}{totals['restore']:>10.2f}"
                  f"{totals['load'] + totals['restore']:>15.2f}", flush=True)  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000], help="meters / customers")
    p.add_argument("--partitions", type=int, default=4, help="partitions the fleet is split into (restored in turn)")
    p.add_argument("--restore-only", action="store_true", help="skip the drills")
    p.add_argument("--drills-only", action="store_true", help="skip the restore table")
    p.add_argument("--redis-url", default=os.environ.get("METERSEG_REDIS_URL", "redis://127.0.0.1:26379/12"),
                   help="Redis for the checkpoint round trip (default: the test stack's)")  # fmt: skip
    args = p.parse_args(argv)
    if not args.restore_only:
        print("== drills (recovery: fault -> ingest state moving past the point of the fault) ==", flush=True)
        print(drill1(), flush=True)
        for line in drills_2_to_5():
            print(line, flush=True)
    if not args.drills_only:
        print(
            f"== restore of the whole fleet's state, {args.partitions} partitions in turn, as one worker taking "
            "over everything does (synthetic state) ==",
            flush=True,
        )
        restore_table(args.sizes, args.partitions, args.redis_url)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
