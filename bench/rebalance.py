"""What a rebalance restores: a worker joins a group of two, then leaves it, at a given fleet size.

Issue 18 asks that a rebalance moves only what moves: a partition that stays on its worker keeps
its state in memory, and only partitions that change owner are restored from their checkpoints.
This bench measures it on real workers, real Kafka and Redis, for this checkout and, in the same
run, for older checkouts (``--before``; default: the commit before partitions were parked, whose
workers restored every partition they were assigned at every rebalance).

For each checkout:

1. **fill**: ``meterseg simulate`` produces ``--meters`` meters, one day of hourly readings in
   column blocks, heartbeats every 6 hours and a week of purchases into fresh topics;
2. **drain**: workers A and B consume the backlog (every partition at lag 0);
3. **join**: worker C starts; the group rebalances until every partition of both pipelines has one
   owner and every lag is 0 again;
4. **leave**: worker C stops (SIGTERM); A and B take its partitions back.

For each rebalance it prints, summed over the workers: partitions assigned (per pipeline, from the
workers' ``/health``), partitions whose owner changed, partitions **restored** from a checkpoint
(``meterseg_recovery_seconds_count``), their restore seconds (``meterseg_recovery_seconds_sum``),
partitions **kept** in memory (``meterseg_partitions_kept_total``; 0 before that metric existed), and
the wall seconds from the join (or the stop) until the group settled. Wall time is noisy on a shared
2-core machine; the counts are not.

Usage::

    .venv/bin/python -m bench.rebalance --meters 100000          # ~10 min on 2 cores
    .venv/bin/python -m bench.rebalance --meters 20000 --before   # this checkout only
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.common import ensure_broker  # noqa: E402
from bench.pipeline import (  # noqa: E402
    Cleanup,
    WorkerProc,
    delete_redis_keys,
    delete_topics,
    metric_sum,
    run_settings,
    run_simulator,
    simulate_args,
    worker_process,
)
from meterseg.settings import Settings  # noqa: E402

#: the commit before rebalances kept partitions in memory (fd7b3ca parked them)
BEFORE = ("fd7b3ca^",)
PIPELINES = ("ingest", "segments")
POLL_S = 0.5


@dataclass
class Step:
    """One rebalance, summed over the workers."""

    name: str
    assigned: dict[str, int]
    moved: dict[str, int]
    restored: dict[str, int]
    restore_s: dict[str, float]
    kept: dict[str, int]
    settle_s: float


def pipeline_of(topic_partition: str, settings: Settings) -> str | None:
    """``meter.readings[3]`` -> ``ingest``; the pipelines' input topics only."""
    topic = topic_partition.rsplit("[", 1)[0]
    t = settings.topics
    if topic in (t.readings, t.heartbeats):
        return "ingest"
    if topic in (t.purchases,):
        return "segments"
    return None


def owners(workers: Sequence[WorkerProc], settings: Settings) -> dict[str, str] | None:
    """Task (``ingest[3]``: partition 3 of the pipeline's co-partitioned topics) -> the worker owning it.

    None while a worker answers nothing or two workers report one task.
    """
    out: dict[str, str] = {}
    for w in workers:
        h = w.health()
        if "partitions" not in h:
            return None
        mine: set[str] = set()
        for tp in h["partitions"]:
            pipeline = pipeline_of(tp, settings)
            if pipeline is not None:
                mine.add(f"{pipeline}[{tp.rsplit('[', 1)[1]}")
        for task in mine:
            if task in out:
                return None
            out[task] = str(w.log_path.name)
    return out


def lag_zero(workers: Sequence[WorkerProc], settings: Settings) -> bool:
    """Every input partition at lag 0, as its owner reports it."""
    inputs = {settings.topics.readings, settings.topics.heartbeats, settings.topics.purchases}
    for w in workers:
        owned = set(w.health().get("partitions", []))
        for (name, labels), value in w.metrics().items():
            lab = dict(labels)
            if (name == "meterseg_consumer_lag_messages" and lab.get("topic") in inputs
                    and f"{lab['topic']}[{lab['partition']}]" in owned and value > 0):  # fmt: skip
                return False
    return True


def settled(workers: Sequence[WorkerProc], settings: Settings, expected: int) -> dict[str, str] | None:
    """Partition owners once every input partition has exactly one owner and the group is caught up."""
    got = owners(workers, settings)
    if got is None or len(got) != expected:
        return None
    return got if lag_zero(workers, settings) else None


def wait_settled(workers: Sequence[WorkerProc], settings: Settings, expected: int, timeout_s: float) -> dict[str, str]:
    deadline = time.monotonic() + timeout_s
    stable: dict[str, str] | None = None
    while time.monotonic() < deadline:
        for w in workers:
            if w.proc.poll() is not None:
                raise RuntimeError(f"a worker exited:\n{w.log_tail()}")
        got = settled(workers, settings, expected)
        if got is not None and got == stable:  # the same owners on two looks in a row
            return got
        stable = got
        time.sleep(POLL_S)
    raise TimeoutError(f"the group did not settle within {timeout_s:.0f} s")


def counters(workers: Sequence[WorkerProc]) -> dict[str, dict[str, float]]:
    """Restores, restore seconds and kept partitions per pipeline, summed over the workers."""
    out: dict[str, dict[str, float]] = {"restored": {}, "restore_s": {}, "kept": {}}
    for w in workers:
        if w.proc.poll() is not None:
            continue
        m = w.metrics()
        for p in PIPELINES:
            out["restored"][p] = out["restored"].get(p, 0) + metric_sum(m, "meterseg_recovery_seconds_count", pipeline=p)
            out["restore_s"][p] = out["restore_s"].get(p, 0) + metric_sum(m, "meterseg_recovery_seconds_sum", pipeline=p)
            out["kept"][p] = out["kept"].get(p, 0) + metric_sum(m, "meterseg_partitions_kept_total", pipeline=p)
    return out


def delta(after: dict[str, dict[str, float]], before: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """``after - before``, per counter and pipeline."""
    return {k: {p: after[k].get(p, 0) - before[k].get(p, 0) for p in PIPELINES} for k in after}


def step(name: str, old: dict[str, str], new: dict[str, str], d: dict[str, dict[str, float]], settings: Settings,
         seconds: float) -> Step:
    def per_pipeline(tasks: Sequence[str]) -> dict[str, int]:
        out = dict.fromkeys(PIPELINES, 0)
        for task in tasks:
            out[task.split("[", 1)[0]] += 1
        return out

    return Step(name, per_pipeline(list(new)), per_pipeline([tp for tp, w in new.items() if old.get(tp) != w]),
                {p: int(v) for p, v in d["restored"].items()}, dict(d["restore_s"]),
                {p: int(v) for p, v in d["kept"].items()}, seconds)


@contextlib.contextmanager
def checkout_at(rev: str) -> Iterator[Path]:
    """A detached worktree of ``rev`` (removed afterwards)."""
    path = Path(tempfile.mkdtemp(prefix="meterseg-before-"))
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "-q", str(path), rev], check=True)
    try:
        yield path
    finally:
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(path)], check=False)
        shutil.rmtree(path, ignore_errors=True)


def run_variant(label: str, cwd: Path, base: Settings, args: argparse.Namespace, work: Path) -> list[Step]:
    cleanup = Cleanup()
    settings = run_settings(base, f"rebalance-{label}", cleanup)
    vdir = work / label
    vdir.mkdir()
    sim = [*simulate_args(args.meters, 1, 1000, 360, args.seed), "--interval", "60", "--envelope-format", "columns",
           "--history-days", "7"]  # fmt: skip
    started = time.monotonic()
    summary = run_simulator(settings, vdir, sim)
    print(f"[{label}] fill: {int(summary['readings']):,} readings in {time.monotonic() - started:.0f} s", flush=True)
    inputs = 2 * settings.partitions  # tasks: ingest[p] and segments[p]
    steps: list[Step] = []
    try:
        with contextlib.ExitStack() as stack:
            a = stack.enter_context(worker_process(settings, vdir, {}, name="-A", cwd=cwd))
            b = stack.enter_context(worker_process(settings, vdir, {}, name="-B", cwd=cwd))
            started = time.monotonic()
            pair = wait_settled([a, b], settings, inputs, args.timeout)
            print(f"[{label}] drain: A and B caught up in {time.monotonic() - started:.0f} s", flush=True)
            before = counters([a, b])
            c_stack = contextlib.ExitStack()
            c = c_stack.enter_context(worker_process(settings, vdir, {}, name="-C", cwd=cwd))
            started = time.monotonic()
            wait_until_assigned(c, settings, args.timeout)
            three = wait_settled([a, b, c], settings, inputs, args.timeout)
            joined = time.monotonic() - started
            after_join = counters([a, b, c])
            steps.append(step("C joins", pair, three, delta(after_join, before), settings, joined))
            ab = counters([a, b])  # what A and B counted so far (C's counters leave with C)
            started = time.monotonic()
            c_stack.close()  # SIGTERM: C checkpoints its partitions on revocation and leaves
            back = wait_settled([a, b], settings, inputs, args.timeout)
            left = time.monotonic() - started
            steps.append(step("C leaves", three, back, delta(counters([a, b]), ab), settings, left))
    finally:
        delete_topics_and_keys(settings, cleanup)
    return steps


def wait_until_assigned(w: WorkerProc, settings: Settings, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if w.proc.poll() is not None:
            raise RuntimeError(f"worker C exited:\n{w.log_tail()}")
        if any(pipeline_of(tp, settings) for tp in w.health().get("partitions", [])):
            return
        time.sleep(POLL_S)
    raise TimeoutError("worker C got no partition")


def delete_topics_and_keys(settings: Settings, cleanup: Cleanup) -> None:
    import asyncio

    asyncio.run(delete_topics(settings.kafka_bootstrap, cleanup.topics))
    delete_redis_keys(settings.redis_url, cleanup.app_ids)


def report(label: str, steps: Sequence[Step]) -> None:
    for s in steps:
        for p in PIPELINES:
            print(f"  {label:9s} {s.name:9s} {p:8s} tasks {s.assigned[p]:2d}  owner changed {s.moved[p]:2d}  "
                  f"restored {s.restored[p]:2d} ({s.restore_s[p]:6.2f} s)  kept in memory {s.kept[p]:2d}", flush=True)
        print(f"  {label:9s} {s.name:9s} settled after {s.settle_s:.1f} s wall", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--meters", type=int, default=100_000)
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--before", nargs="*", default=list(BEFORE),
                   help="older checkouts measured in the same run (none: this checkout only)")
    p.add_argument("--timeout", type=float, default=900.0, help="seconds allowed for each wait")
    args = p.parse_args(argv)
    base = Settings()
    bootstrap = ensure_broker(base)
    work = Path(tempfile.mkdtemp(prefix="meterseg-rebalance-"))
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"meterseg rebalance bench: {args.meters:,} meters, {base.partitions} partitions per topic, broker "
          f"{bootstrap}; load average {load}; logs in {work}", flush=True)
    results: list[tuple[str, list[Step]]] = []
    for rev in args.before:
        with checkout_at(rev) as old:
            results.append((rev, run_variant(rev.replace("^", "p"), old, base, args, work)))
    results.append(("now", run_variant("now", REPO, base, args, work)))
    print("\nper rebalance, summed over the workers (restored = from a checkpoint in Redis; a task = partition p "
          "of the pipeline's co-partitioned topics):")
    for label, steps in results:
        report(label, steps)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

