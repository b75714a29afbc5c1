"""Scale: a fleet of ``--meters`` (default 1 000 000) through two ``meterseg worker`` processes in one group.

One invocation, against the broker and Redis of ``METERSEG_KAFKA_BOOTSTRAP`` /
``METERSEG_REDIS_URL`` (the local stack, started if it does not answer):

1. **baseline** — :func:`bench.baseline.measure` on the same broker, now: the raw
   aiokafka consume rate every throughput is also printed against (the machines
   are shared and noisy).
2. **fill** — ``meterseg simulate --sink kafka`` into fresh topics (this run's
   own names and app id): ``--meters`` meters, ``--days`` (1) simulated day of
   readings every ``--interval`` (60) minutes in head-end envelopes of
   ``--envelope`` (1 000) readings, a heartbeat every ``--heartbeat-minutes``
   (360) per meter (one message each), ``--history-days`` (7) of purchase
   history so that RFM scores and rfm memberships exist, default fault rates, no
   bills/maintenance/feedback topics. The whole input is in Kafka before any
   worker starts.
3. **drain** — two workers are started together over the backlog. Every
   ``--sample-s`` the bench prints, per partition, the messages behind the high
   watermark as the partition's owner reports them
   (``meterseg_consumer_lag_messages``, set by the worker's 1 s tick: ingest =
   readings + heartbeats, segs = purchases + profiles), the ingest messages not
   in a checkpoint yet (end offsets minus the ``{app}-ingest`` group's committed
   offsets: the engine commits what its Redis checkpoints hold, so this is what a
   crash would replay), readings processed and the workers' RSS. Readings/s =
   readings processed (``meterseg_readings_processed_total``, both workers) /
   the time from the last sample before any progress to the first sample with
   every ingest partition at lag 0. The workers' CPU seconds (``/proc``) are
   printed too: readings per worker CPU-second varies less than wall-clock
   rates on a shared machine.
4. **settle** — the workers run on until the segmentation lag is 0 and the
   profile and window counters stop moving for three samples
   (``--settle-timeout``). With ``--close-days`` the workers run with
   ``METERSEG_INGEST__CLOCK_RATE=3600``: once the data ends the event clock
   closes the day's windows, whose daily profiles give features and behaviour
   memberships; without it (the default) the last day stays open, and
   customers have RFM scores and rfm memberships only. At 1 000 000 meters that
   close (every meter's daily window and silence alert at once) took the
   workers from ~3.5 GB to over 8 GB each and into session time-outs, so it is
   opt-in; measure features per customer at a smaller size.

   Guards for a shared machine: the run stops early (and still reports) when a
   worker's RSS passes ``--max-rss-gb`` or the machine's ``MemAvailable`` drops
   below ``--min-available-gb``, or the drain takes longer than ``--timeout``.
5. **measure** — p50/p99 from the workers' Prometheus histograms (summed
   over both): batch processing time per pipeline, processing latency
   (``append_time``: from a reading's broker append, which in a backlog run is
   mostly the wait in the backlog; the ``event_time`` one measures from simulated
   time, here months before the wall clock, and is left out),
   Redis round trips; every checkpoint the workers wrote (their log lines:
   snapshot, encode, write seconds and size, see ``stream/pipelines/base.py``);
   checkpoint bytes written against the state checkpointed
   (``meterseg_checkpoint_bytes_total``: a checkpoint writes only the chunks
   not stored yet) and what Redis received meanwhile (``total_net_input_bytes``);
   checkpoint sizes in Redis; worker peak RSS (``VmHWM``).

   **Redis memory per customer** for *RFM, features and memberships*: for a
   random sample of ``--memory-sample`` customers, ``MEMORY USAGE … SAMPLES 0``
   of the customer hash ``{app}:cust:{id}`` (fields ``rfm``, ``features``, ``features2``, ``hours``,
   ``seg:rfm``, ``seg:behaviour``, ``rule:*``), plus each customer's share of
   the membership sets ``{app}:seg:{family}:{segment}`` (their total
   ``MEMORY USAGE`` / customers with a hash). The change history
   ``{app}:cust:{id}:hist`` (last 50 changes) and the checkpoints are printed
   beside it, not counted in the target (400 bytes).

6. **steady** (``--steady-s N``, off by default) — the fleet's next day sent
   live for N seconds at ``--steady-speed`` (120) simulated seconds per
   second, heartbeats every reading interval; printed: readings/s accepted,
   what Redis received, the checkpoint bytes written against the state
   checkpointed in that span, and the live latency reading → alert and
   purchase → segment change, from the records' Kafka timestamps
   (:mod:`bench.live_latency`).

Every run uses its own app id and topic names, deleted at the end with its
Redis keys (``--keep`` keeps them).

Usage::

    .venv/bin/python -m bench.scale                   # 1 000 000 meters: ~15 min, workers ~3.9 GB peak, Redis ~3.6 GB
    .venv/bin/python -m bench.scale --meters 100000 --close-days   # with features and behaviour memberships
    .venv/bin/python -m bench.scale --meters 300 --baseline-runs 1 --sample-s 1   # smoke size, ~20 s
    .venv/bin/python -m bench.scale --meters 100000 --workers 4 --redis-cluster 3  # on a 3-master Redis Cluster

With ``--redis-cluster N`` the run starts a Redis Cluster of N masters (``bench/cluster_spread.py``)
and the workers keep their shared state there (customer and meter keys spread by shard, see
docs/scaling.md §3); the report adds ``used_memory`` per master.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from aiokafka import AIOKafkaConsumer, TopicPartition  # noqa: E402
from aiokafka.admin import AIOKafkaAdminClient  # noqa: E402

from bench import live_latency  # noqa: E402
from bench.baseline import measure  # noqa: E402
from bench.common import ensure_broker, kafka_options  # noqa: E402
from bench.pipeline import (  # noqa: E402
    Cleanup,
    WorkerProc,
    child_env,
    cpu_seconds,
    delete_topics,
    histogram_buckets,
    histogram_quantile,
    metric_sum,
    run_settings,
    run_simulator,
    worker_process,
)
from meterseg.settings import Settings  # noqa: E402
from stream.clients.redis_client import app_key_patterns, async_redis, sync_redis  # noqa: E402
from stream.memory import proc_status  # noqa: E402
from stream.state.keys import customer_keys  # noqa: E402

#: with --close-days: once the data ends the event clock runs an hour per second and closes the day's windows
CLOSE_DAYS_ENV = {"METERSEG_INGEST__CLOCK_RATE": "3600"}
TARGET_BYTES_PER_CUSTOMER = 400
#: one line per checkpoint written by ``stream/pipelines/base.py`` (INFO when it took a while)
CHECKPOINT_LINE = re.compile(
    r"checkpoint (?P<pipeline>\w+)\[(?P<partition>\d+)\]: (?P<mb>[\d.]+) MB in (?P<parts>\d+) chunks, "
    r"(?P<new_mb>[\d.]+) MB of them new, snapshot (?P<snapshot>[\d.]+) s, chunking (?P<encode>[\d.]+) s, "
    r"write (?P<write>[\d.]+) s"
)

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


# ------------------------------------------------------------------------------------------- helpers
def mem_available_gb() -> float:
    """``MemAvailable`` of this machine in GB (inf when unknown)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1024 / 1024
    return float("inf")


def merged(samples: Sequence[Samples]) -> Samples:
    """Metrics of several workers summed (counters and histogram buckets add up)."""
    out: Samples = {}
    for s in samples:
        for k, v in s.items():
            out[k] = out.get(k, 0.0) + v
    return out


def quantiles(samples: Samples, name: str, **labels: str) -> tuple[float, float, float]:
    """(p50, p99, count) of a histogram, Prometheus-style interpolation inside buckets."""
    buckets = histogram_buckets(samples, name, **labels)
    count = buckets[-1][1] if buckets else 0.0
    return histogram_quantile(0.5, buckets), histogram_quantile(0.99, buckets), count


def fmt_s(value: float, top: float | None = None) -> str:
    if value != value:
        return "-"
    if top is not None and value >= top:
        return f">= {top:g} s"
    return f"{value * 1000:,.0f} ms" if value < 1 else f"{value:,.2f} s"


class CommittedLag:
    """End offsets of the input topics minus the groups' committed offsets (one admin client and consumer)."""

    def __init__(self, settings: Settings, topics: Sequence[str]):
        self.settings = settings
        self.topics = list(topics)
        self.admin: AIOKafkaAdminClient | None = None
        self.consumer: AIOKafkaConsumer | None = None
        self.tps: list[TopicPartition] = []

    async def start(self) -> None:
        opts = kafka_options(self.settings)
        self.admin = AIOKafkaAdminClient(bootstrap_servers=self.settings.kafka_bootstrap, **opts)
        await self.admin.start()
        self.consumer = AIOKafkaConsumer(bootstrap_servers=self.settings.kafka_bootstrap, group_id=None,
                                         enable_auto_commit=False, **opts)  # fmt: skip
        await self.consumer.start()
        await self.consumer._client.force_metadata_update()
        for topic in self.topics:
            for p in sorted(self.consumer.partitions_for_topic(topic) or ()):
                self.tps.append(TopicPartition(topic, p))

    async def read(self, group: str, topics: Sequence[str]) -> int:
        """Messages of ``topics`` not yet committed by ``group`` (committed = checkpointed in Redis)."""
        assert self.admin is not None and self.consumer is not None
        tps = [tp for tp in self.tps if tp.topic in topics]
        ends = await self.consumer.end_offsets(tps)
        try:
            got = await self.admin.list_consumer_group_offsets(group)
        except Exception:
            got = {}
        done = {tp: meta.offset for tp, meta in got.items() if meta.offset >= 0}
        return sum(max(0, end - done.get(tp, 0)) for tp, end in ends.items())

    async def stop(self) -> None:
        if self.consumer is not None:
            with contextlib.suppress(Exception):
                await self.consumer.stop()
        if self.admin is not None:
            with contextlib.suppress(Exception):
                await self.admin.close()


def position_lag(workers: Sequence[WorkerProc], samples: Sequence[Samples], topics: Sequence[str]) -> dict[int, int]:
    """Records behind the high watermark per partition (of ``topics`` summed), as its owner reports it.

    ``meterseg_consumer_lag_messages`` is set by each worker's timer tick for the partitions it owns; a
    worker keeps the last value of a partition it gave away, so only the owner's (``/health``) counts.
    """
    out: dict[int, int] = {}
    for w, s in zip(workers, samples, strict=True):
        owned = set(w.health().get("partitions", []))
        for (name, labels), value in s.items():
            lab = dict(labels)
            mine = f"{lab.get('topic')}[{lab.get('partition')}]" in owned
            if name == "meterseg_consumer_lag_messages" and lab.get("topic") in topics and mine:
                p = int(lab["partition"])
                out[p] = out.get(p, 0) + int(value)
    return out


# ----------------------------------------------------------------------------------------- results
@dataclass
class Row:
    t: float
    readings: float
    ingest_lag: dict[int, int]  # position lag per partition (readings + heartbeats)
    segments_lag: dict[int, int]  # position lag per partition (purchases + profiles)
    uncommitted: int  # ingest messages not yet in a checkpoint (end offset - committed offset)
    rss_mb: list[float]


@dataclass
class Run:
    rows: list[Row] = field(default_factory=list)
    first_progress: float | None = None
    ingest_done: float | None = None
    settled: float | None = None
    cpu_start: list[float] = field(default_factory=list)
    cpu_ingest_done: list[float] = field(default_factory=list)
    aborted: str | None = None  # why the run stopped early (a guard or a timeout), if it did


# ------------------------------------------------------------------------------------------- drain
def sample_metrics(workers: Sequence[WorkerProc]) -> list[Samples]:
    out = []
    for w in workers:
        try:
            out.append(w.metrics())
        except Exception:
            out.append({})
    return out


def print_row(row: Row, prev: Row | None, partitions: int, header: bool) -> None:
    parts = range(partitions)
    if header:
        print(f"  {'t s':>6} {'readings':>12} {'readings/s':>11}  "
              + " ".join(f"{'ingest p' + str(p):>10}" for p in parts) + f" {'not ckpt':>10}  "
              + " ".join(f"{'segs p' + str(p):>8}" for p in parts) + "  worker RSS MB", flush=True)  # fmt: skip
    rate = (row.readings - prev.readings) / (row.t - prev.t) if prev and row.t > prev.t else 0.0

    def lag(d: dict[int, int], p: int, width: int) -> str:
        return f"{d[p]:>{width},}" if p in d else f"{'-':>{width}}"

    print(f"  {row.t:>6.0f} {row.readings:>12,.0f} {rate:>11,.0f}  "
          + " ".join(lag(row.ingest_lag, p, 10) for p in parts) + f" {row.uncommitted:>10,}  "
          + " ".join(lag(row.segments_lag, p, 8) for p in parts) + "  "
          + " ".join(f"{r:,.0f}" for r in row.rss_mb), flush=True)  # fmt: skip


async def drain(
    settings: Settings, workers: Sequence[WorkerProc], expected_ingest: int, args: argparse.Namespace
) -> Run:
    """Sample until the ingest backlog is processed, then until segmentation has settled (module docstring)."""
    t = settings.topics
    ingest_topics, segments_topics = (t.readings, t.heartbeats), (t.purchases, t.profiles)
    committed = CommittedLag(settings, ingest_topics)
    await committed.start()
    run = Run(cpu_start=[cpu_seconds(w.proc.pid) for w in workers])
    started = time.monotonic()
    quiet: list[tuple[float, ...]] = []
    try:
        while True:
            for w in workers:
                if w.proc.poll() is not None:
                    raise RuntimeError(f"worker exited with {w.proc.returncode}:\n{w.log_tail()}")
            samples = await asyncio.to_thread(sample_metrics, workers)
            ingest_lag = await asyncio.to_thread(position_lag, workers, samples, ingest_topics)
            segments_lag = await asyncio.to_thread(position_lag, workers, samples, segments_topics)
            processed = sum(int(w.health().get("totals", {}).get("messages", 0)) for w in workers)
            now = time.monotonic() - started
            row = Row(now, sum(metric_sum(s, "meterseg_readings_processed_total") for s in samples), ingest_lag,
                      segments_lag, await committed.read(f"{settings.app_id}-ingest", ingest_topics),
                      [proc_status(w.proc.pid).get("VmRSS", 0) / 1024 for w in workers])  # fmt: skip
            prev = run.rows[-1] if run.rows else None
            run.rows.append(row)
            print_row(row, prev, settings.partitions, prev is None)
            available = mem_available_gb()
            if max(row.rss_mb) > args.max_rss_gb * 1024 or available < args.min_available_gb:
                run.aborted = (f"a worker's RSS reached {max(row.rss_mb) / 1024:.1f} GB (limit {args.max_rss_gb:g}) or "
                               f"the machine has {available:.1f} GB available (limit {args.min_available_gb:g})")  # fmt: skip
                run.cpu_ingest_done = run.cpu_ingest_done or [cpu_seconds(w.proc.pid) for w in workers]
                print(f"  -- stopping: {run.aborted}", flush=True)
                break
            if run.first_progress is None and row.readings > 0:
                run.first_progress = prev.t if prev is not None else now
            drained = len(ingest_lag) == settings.partitions and not any(ingest_lag.values())
            if run.ingest_done is None and drained and processed >= expected_ingest:
                run.ingest_done = now
                run.cpu_ingest_done = [cpu_seconds(w.proc.pid) for w in workers]
                print(f"  -- every reading and heartbeat processed at {now:.0f} s; settling segmentation", flush=True)
            if run.ingest_done is not None:
                total = merged(samples)
                mark = (
                    sum(segments_lag.values()) + (settings.partitions - len(segments_lag)),
                    metric_sum(total, "meterseg_profile_updates_total"),
                    metric_sum(total, "meterseg_windows_emitted_total"),
                )
                quiet.append(mark)
                last = quiet[-3:]
                if len(last) == 3 and last[0][0] == 0 and all(m == last[0] for m in last):
                    run.settled = now
                    break
                if now - run.ingest_done > args.settle_timeout:
                    print(f"  -- segmentation did not settle within {args.settle_timeout:g} s", flush=True)
                    break
            elif now > args.timeout:
                run.aborted = f"ingest not done after {args.timeout:g} s"
                run.cpu_ingest_done = [cpu_seconds(w.proc.pid) for w in workers]
                print(f"  -- stopping: {run.aborted}", flush=True)
                break
            await asyncio.sleep(args.sample_s)
    finally:
        await committed.stop()
    return run


# -------------------------------------------------------------------------------------------- redis
def info_per_master(client: Any, settings: Settings, section: str, name: str) -> dict[str, int]:
    """One ``INFO`` field of every master (``server`` for the one server without a cluster)."""
    if settings.redis_cluster:
        nodes = client.get_primaries()  # a RedisCluster client here
        return {node.name: int(client.info(section, target_nodes=node)[name]) for node in nodes}
    return {"server": int(client.info(section)[name])}


def redis_input_bytes(settings: Settings) -> int:
    """Bytes Redis has received from clients (``INFO stats`` ``total_net_input_bytes``, summed over masters)."""
    client = sync_redis(settings)
    try:
        return sum(info_per_master(client, settings, "stats", "total_net_input_bytes").values())
    finally:
        client.close()


def redis_memory(settings: Settings, customer_ids: Sequence[str], sample: int, seed: int) -> dict[str, Any]:
    """Bytes per customer of the customer hashes and membership sets (see the module docstring)."""
    keys = customer_keys(settings)
    client = sync_redis(settings)
    try:
        per_master = info_per_master(client, settings, "memory", "used_memory")
        picked = random.Random(seed).sample(list(customer_ids), min(sample, len(customer_ids)))
        pipe = client.pipeline(transaction=False)
        for cid in picked:
            pipe.memory_usage(keys.customer(cid), samples=0)
            pipe.object("encoding", keys.customer(cid))
            pipe.hlen(keys.customer(cid))
            pipe.memory_usage(keys.history(cid), samples=0)
        got = pipe.execute()
        hashes = [int(got[i]) for i in range(0, len(got), 4) if got[i] is not None]
        encodings: dict[str, int] = {}
        for i in range(1, len(got), 4):
            if got[i] is not None:
                enc = got[i].decode() if isinstance(got[i], bytes) else str(got[i])
                encodings[enc] = encodings.get(enc, 0) + 1
        fields = [int(got[i]) for i in range(2, len(got), 4) if got[i]]
        hists = [int(got[i]) for i in range(3, len(got), 4) if got[i] is not None]
        with_hash = len(hashes) / max(1, len(picked)) * len(customer_ids)
        set_bytes, set_members = 0, 0
        set_encodings: dict[str, int] = {}
        set_patterns = [f"{keys.prefix(0)}:seg:*"] if keys.shards == 1 else [f"{{{keys.app}:s*}}:seg:*"]
        for key in (k for p in set_patterns for k in client.scan_iter(match=p, count=1000)):
            if client.type(key) != b"set":
                continue
            set_bytes += int(client.memory_usage(key, samples=0) or 0)
            set_members += int(client.scard(key))
            enc = client.object("encoding", key)
            enc = enc.decode() if isinstance(enc, bytes) else str(enc)
            set_encodings[enc] = set_encodings.get(enc, 0) + 1
        example = client.hgetall(keys.customer(picked[0])) if picked else {}
        limits = client.config_get("hash-max-*")
        return {
            "used_memory": sum(per_master.values()),
            "used_memory_per_master": per_master,
            "sampled": len(picked),
            "with_hash": len(hashes),
            "hash_mean": statistics.fmean(hashes) if hashes else float("nan"),
            "hash_median": statistics.median(hashes) if hashes else float("nan"),
            "fields_mean": statistics.fmean(fields) if fields else float("nan"),
            "encodings": encodings,
            "hist_mean": statistics.fmean(hists) if hists else 0.0,
            "hist_share": len(hists) / max(1, len(picked)),
            "set_bytes": set_bytes,
            "set_members": set_members,
            "set_encodings": set_encodings,
            "set_per_customer": set_bytes / with_hash if with_hash else float("nan"),
            "example_fields": {(k.decode() if isinstance(k, bytes) else k): len(v) for k, v in example.items()},
            "hash_limits": {str(k): str(v) for k, v in limits.items()},
        }
    finally:
        client.close()


def delete_app_keys(settings: Settings) -> int:
    """Remove every Redis key of the run's app (shared state and checkpoints, one server or a cluster)."""
    client = sync_redis(settings)
    removed = 0
    try:
        for pattern in app_key_patterns(settings):
            keys = list(client.scan_iter(match=pattern, count=1000))
            for start in range(0, len(keys), 500):
                removed += int(client.unlink(*keys[start : start + 500]))  # split by slot on a cluster
    finally:
        client.close()
    return removed


def checkpoint_bytes(settings: Settings) -> dict[str, int]:
    """Redis memory of every partition checkpoint of this run, per pipeline."""
    from stream.state.checkpoints import CheckpointStore

    async def go() -> dict[str, int]:
        client = async_redis(settings)
        store = CheckpointStore(client, settings.app_id)
        try:
            out = {}
            for pipeline in ("ingest", "segments"):
                out[pipeline] = sum([await store.stored_bytes(pipeline, p) for p in range(settings.partitions)])
            return out
        finally:
            await client.aclose()

    return asyncio.run(go())


def checkpoint_lines(workers: Sequence[WorkerProc]) -> list[dict[str, Any]]:
    out = []
    for w in workers:
        for m in CHECKPOINT_LINE.finditer(w.log_path.read_text(errors="replace")):
            d: dict[str, Any] = m.groupdict()
            out.append({k: (v if k == "pipeline" else float(v)) for k, v in d.items()})
    return out


# ------------------------------------------------------------------------------------------- steady
def steady_phase(settings: Settings, work: Path, args: argparse.Namespace, workers: Sequence[WorkerProc]) -> str:
    """The live regime after the backlog: the same fleet's next day, sent at ``--steady-speed`` simulated
    seconds per second for ``--steady-s`` seconds; what the workers' checkpoints and Redis took meanwhile.

    Heartbeats come every reading interval here, in envelopes like the readings: a partition's readings
    are held back until its heartbeats have reached the same time (co-partitioned event time), so rarer
    heartbeats would hold the steady phase's readings past its end."""
    start = (date(2026, 1, 1) + timedelta(days=args.days)).isoformat()  # the fill starts at the simulator's default
    sim = ["--meters", str(args.meters), "--days", "1", "--start", start, "--interval", str(args.interval),
           "--envelope", str(args.envelope), "--heartbeat-minutes", str(args.interval), "--heartbeat-envelope",
           str(args.envelope), "--history-days", "0", "--seed", str(args.seed), "--speed", str(args.steady_speed),
           "--no-ops", "--no-progress"]  # fmt: skip
    print(f"\n[steady] {args.steady_s:.0f} s of meterseg simulate {' '.join(sim)}", flush=True)
    before, redis_before, began = merged(sample_metrics(workers)), redis_input_bytes(settings), time.monotonic()
    since_ms = int(time.time() * 1000)
    out = work / "steady"
    out.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-m", "meterseg.cli", "simulate", "--sink", "kafka", "--out", str(out), *sim],
        env=child_env(settings), stdout=(out / "simulate.log").open("w"), stderr=subprocess.STDOUT, cwd=REPO,
    )  # fmt: skip
    try:
        time.sleep(args.steady_s)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    time.sleep(2 * settings.checkpoint_interval_s + 1)  # what was sent is processed and checkpointed
    after, redis_after, span = merged(sample_metrics(workers)), redis_input_bytes(settings), time.monotonic() - began

    def delta(name: str, **labels: str) -> float:
        return metric_sum(after, name, **labels) - metric_sum(before, name, **labels)

    readings = delta("meterseg_readings_processed_total")
    units = {k: delta("meterseg_ingest_state_messages", kind=k) for k in ("messages", "accepted", "duplicates")}
    lines = [f"  steady phase ({span:.0f} s, the next simulated day at {args.steady_speed:g}x real time): "
             f"{readings / span:,.0f} readings/s accepted; Redis received {(redis_after - redis_before) / span / 1e6:,.2f} "
             f"MB/s ({(redis_after - redis_before) / max(1.0, readings):,.0f} B per reading); ingest messages "
             f"{units['messages']:,.0f}, readings and heartbeats accepted {units['accepted']:,.0f}, duplicates "
             f"{units['duplicates']:,.0f}"]  # fmt: skip
    for pipeline in ("ingest", "segments"):
        state_b = delta("meterseg_checkpoint_bytes_total", pipeline=pipeline, kind="state")
        written_b = delta("meterseg_checkpoint_bytes_total", pipeline=pipeline, kind="written")
        n = delta("meterseg_checkpoints_total", pipeline=pipeline)
        if state_b:
            lines.append(f"    checkpoints, {pipeline:<8}: {n:,.0f}, {written_b / span / 1e6:,.2f} MB/s written for "
                         f"{state_b / span / 1e6:,.2f} MB/s of state checkpointed ({written_b / state_b:.1%}; the "
                         f"earlier format wrote the whole state each time)")  # fmt: skip
    lines += asyncio.run(live_latency.measure(settings, since_ms))
    for line in lines:
        print(line, flush=True)
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------- main
def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)  # fmt: skip
    p.add_argument("--meters", type=int, default=1_000_000, help="fleet size")
    p.add_argument("--workers", type=int, default=2, help="meterseg worker processes in the group")
    p.add_argument("--days", type=int, default=1, help="simulated days of readings")
    p.add_argument("--interval", type=int, default=60, choices=(15, 30, 60), help="reading interval, minutes")
    p.add_argument("--envelope", type=int, default=1000, help="readings per head-end envelope")
    p.add_argument("--heartbeat-minutes", type=int, default=360, help="heartbeat period (one message each)")
    p.add_argument("--history-days", type=int, default=7, help="days of purchase history (RFM)")
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--baseline-runs", type=int, default=3, help="runs of bench.baseline.measure (median)")
    p.add_argument("--baseline-messages", type=int, default=200_000)
    p.add_argument("--sample-s", type=float, default=5.0, help="seconds between lag samples")
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds allowed for the ingest drain")
    p.add_argument("--settle-timeout", type=float, default=600.0, help="seconds allowed for segmentation after it")
    p.add_argument("--memory-sample", type=int, default=20_000, help="customers whose keys are measured")
    p.add_argument("--close-days", action="store_true",
                   help="once the data ends, run the event clock fast so that the day's windows close, daily "
                        "profiles give features and behaviour memberships (at 1 000 000 meters the close of every "
                        "meter's windows at once took workers past 8 GB: see the module docstring)")  # fmt: skip
    p.add_argument("--max-rss-gb", type=float, default=6.0, help="stop the run when a worker's RSS passes this")
    p.add_argument("--min-available-gb", type=float, default=2.0,
                   help="stop the run when the machine's MemAvailable drops below this (a shared machine)")  # fmt: skip
    p.add_argument("--keep", action="store_true", help="keep topics and Redis keys")
    p.add_argument("--steady-s", type=float, default=0.0,
                   help="after the backlog, send the fleet's next day live for this many seconds (0: no steady phase)")
    p.add_argument("--profile", action="store_true",
                   help="run the workers under cProfile (worker<N>/worker.prof in the run's log directory)")
    p.add_argument("--steady-speed", type=float, default=120.0,
                   help="simulated seconds per second in the steady phase (120: an hour of readings every 30 s)")
    p.add_argument("--redis-cluster", type=int, default=0, metavar="MASTERS",
                   help="run against a Redis Cluster of this many masters started for the run (0: the settings' Redis)")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    base = Settings()
    if not args.redis_cluster:
        return run(args, base)
    from bench.cluster_spread import local_cluster

    with local_cluster(args.redis_cluster) as url:  # workers and tools reach it through the settings
        return run(args, base.model_copy(update={"redis_url": url, "redis_cluster": True}))


def run(args: argparse.Namespace, base: Settings) -> int:
    """The benchmark (see the module docstring) against ``base``'s broker and Redis."""
    bootstrap = ensure_broker(base)
    work = Path(tempfile.mkdtemp(prefix="meterseg-scale-"))
    cleanup = Cleanup()
    began = time.monotonic()
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"meterseg scale benchmark: {args.meters:,} meters, {args.workers} workers, {base.partitions} partitions; "
          f"broker {bootstrap}, Redis {base.redis_url}; load average {load} on {os.cpu_count()} CPUs; logs in {work}",
          flush=True)  # fmt: skip
    print(f"\n[baseline] bench.baseline.measure: {args.baseline_messages:,} messages, {args.baseline_runs} run(s)",
          flush=True)  # fmt: skip
    raw = measure(bootstrap, args.baseline_messages, args.baseline_runs)
    settings = run_settings(base, "scale", cleanup)
    t = settings.topics
    sim = ["--meters", str(args.meters), "--days", str(args.days), "--interval", str(args.interval),
           "--envelope", str(args.envelope), "--heartbeat-minutes", str(args.heartbeat_minutes),
           "--history-days", str(args.history_days), "--seed", str(args.seed), "--no-ops", "--no-progress"]  # fmt: skip
    print(f"\n[fill] meterseg simulate {' '.join(sim)}", flush=True)
    cpu_before = os.times()
    filled = time.monotonic()
    summary = run_simulator(settings, work, sim)
    fill_s = time.monotonic() - filled
    cpu_after = os.times()
    sim_cpu = (cpu_after.children_user - cpu_before.children_user) + (
        cpu_after.children_system - cpu_before.children_system
    )
    produced = {k: int(v) for k, v in summary["messages"].items()}
    readings_total = int(summary["readings"])
    expected_ingest = produced.get(t.readings, 0) + produced.get(t.heartbeats, 0)
    print(f"  {sum(produced.values()):,} messages in {fill_s:.0f} s (simulator CPU {sim_cpu:.0f} s): "
          f"{readings_total:,} readings in {produced.get(t.readings, 0):,} envelopes, "
          f"{produced.get(t.heartbeats, 0):,} heartbeats, {produced.get(t.purchases, 0):,} purchase events, "
          f"{produced.get(t.registry, 0):,} registrations", flush=True)  # fmt: skip
    truth = json.loads((work / f"truth-{settings.app_id}.json").read_text())
    customer_ids: list[str] = list(truth["customers"]["ids"])

    run: Run | None = None
    final: list[Samples] = []
    rss: list[dict[str, int]] = []
    cpu_end: list[float] = []
    ckpt_lines: list[dict[str, Any]] = []
    memory: dict[str, Any] = {}
    ckpt_bytes: dict[str, int] = {}
    redis_in = 0
    steady = ""
    try:
        with contextlib.ExitStack() as stack:
            env = CLOSE_DAYS_ENV if args.close_days else {}
            workers = []
            for i in range(args.workers):
                (work / f"worker{i + 1}").mkdir()
                profile = work / f"worker{i + 1}" / "worker.prof" if args.profile else None
                workers.append(stack.enter_context(worker_process(settings, work / f"worker{i + 1}", env, profile)))
            print(f"\n[drain] {args.workers} workers over the backlog; lag per partition in messages behind the "
                  "high watermark as its owner reports it (ingest: readings + heartbeats, segs: purchases + "
                  "profiles); not ckpt: ingest messages not in a checkpoint yet (end - committed offsets)",
                  flush=True)  # fmt: skip
            redis_in = redis_input_bytes(settings)
            run = asyncio.run(drain(settings, workers, expected_ingest, args))
            redis_in = redis_input_bytes(settings) - redis_in
            final = sample_metrics(workers)
            rss = [proc_status(w.proc.pid) for w in workers]
            cpu_end = [cpu_seconds(w.proc.pid) for w in workers]
            print("\n[measure] Redis memory and checkpoints", flush=True)
            memory = redis_memory(settings, customer_ids, args.memory_sample, args.seed)
            ckpt_bytes = checkpoint_bytes(settings)
            if args.steady_s > 0:
                steady = steady_phase(settings, work, args, workers)
            logs = list(workers)
        ckpt_lines = checkpoint_lines(logs)  # after the stop: includes the checkpoints written on revocation
    finally:
        if not args.keep:
            topics = asyncio.run(delete_topics(bootstrap, cleanup.topics))
            keys = delete_app_keys(settings)
            state_dir = base.stack.state_dir if base.stack.state_dir.is_absolute() else REPO / base.stack.state_dir
            for app_id in cleanup.app_ids:
                shutil.rmtree(state_dir / "faust" / app_id, ignore_errors=True)
            print(f"\ncleanup: deleted {topics} topics and {keys} Redis keys", flush=True)

    assert run is not None
    report(args, raw.consume, summary, readings_total, run, final, rss, cpu_end, memory, ckpt_bytes, ckpt_lines,
           len(customer_ids), time.monotonic() - began, settings.partitions, redis_in)  # fmt: skip
    if steady:
        print(steady)
    return 0


def report(
    args: argparse.Namespace,
    raw_consume: float,
    summary: dict[str, Any],
    readings_total: int,
    run: Run,
    final: list[Samples],
    rss: list[dict[str, int]],
    cpu_end: list[float],
    memory: dict[str, Any],
    ckpt_bytes: dict[str, int],
    ckpt_lines: list[dict[str, Any]],
    customers: int,
    elapsed: float,
    partitions: int,
    redis_in: int = 0,
) -> None:
    total = merged(final)
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"\n=== summary: {args.meters:,} meters ({customers:,} customers), {args.workers} workers; {elapsed:.0f} s; "
          f"load average now {load} on {os.cpu_count()} CPUs ===")  # fmt: skip
    if run.aborted:
        print(f"  STOPPED EARLY: {run.aborted}; the figures below cover the run until then")
    readings = metric_sum(total, "meterseg_readings_processed_total")
    end = next((r for r in run.rows if r.t == run.ingest_done), run.rows[-1] if run.rows else None)
    if end is not None and run.first_progress is not None and run.cpu_ingest_done:
        span = max(1e-9, end.t - run.first_progress)
        cpu = sum(b - a for a, b in zip(run.cpu_start, run.cpu_ingest_done, strict=True))
        rate = end.readings / span
        what = "backlog processed" if run.ingest_done is not None else "until stopped, backlog NOT processed"
        print(f"  readings/s, {args.workers} workers, {what}: {rate:,.0f}/s ({end.readings:,.0f} readings in "
              f"{span:.0f} s; {rate / raw_consume:.3f}x the raw consume rate of {raw_consume:,.0f} msgs/s, "
              f"{rate / args.workers:,.0f}/s per worker)")  # fmt: skip
        print(f"  readings per worker CPU-second: {end.readings / cpu:,.0f} (worker CPU {cpu:,.0f} s, "
              f"{cpu / span:.2f} cores busy on average)")  # fmt: skip
    else:
        print("  no reading was processed")
    print(f"  readings: {readings_total:,} simulated, {readings:,.0f} accepted by the workers' counters (a "
          "partition replayed after a rebalance is counted again)")  # fmt: skip
    if run.settled is not None and run.ingest_done is not None:
        print(f"  segmentation settled {run.settled - run.ingest_done:.0f} s after the ingest backlog")
    print("  p50 / p99 (workers' histograms, both workers summed):")
    for label, name, labels, top in (
        ("batch processing, ingest", "meterseg_batch_processing_seconds", {"pipeline": "ingest"}, 5.0),
        ("batch processing, segments", "meterseg_batch_processing_seconds", {"pipeline": "segments"}, 5.0),
        (
            "processing latency*",
            "meterseg_processing_latency_seconds",
            {"source": "append_time"},
            None,
        ),
        ("Redis: segments apply", "meterseg_redis_operation_seconds", {"operation": "segments_apply"}, 1.0),
        ("Redis: health save", "meterseg_redis_operation_seconds", {"operation": "health_save"}, 1.0),
        ("Redis: checkpoint write", "meterseg_redis_operation_seconds", {"operation": "checkpoint_save"}, 1.0),
        ("Redis: checkpoint load", "meterseg_redis_operation_seconds", {"operation": "checkpoint_load"}, 1.0),
        ("partition restore on assignment", "meterseg_recovery_seconds", {}, 60.0),
    ):
        p50, p99, n = quantiles(total, name, **labels)
        if n:
            print(f"    {label:<40} {fmt_s(p50, top):>10} / {fmt_s(p99, top):<10} ({n:,.0f} observations)")
    print("    * from the broker append time of a reading: in a backlog run, mostly the wait in the backlog")
    by_pipe: dict[str, list[dict[str, Any]]] = {}
    for line in ckpt_lines:
        by_pipe.setdefault(line["pipeline"], []).append(line)
    counts = {p: metric_sum(total, "meterseg_checkpoints_total", pipeline=p) for p in ("ingest", "segments")}
    print(f"  checkpoints written: ingest {counts['ingest']:,.0f}, segments {counts['segments']:,.0f}; "
          "the slow ones (logged, > 1 s), medians / max:")  # fmt: skip
    for pipeline, lines in sorted(by_pipe.items()):

        def col(k: str, lines: list[dict[str, Any]] = lines) -> str:
            values = [x[k] for x in lines]
            return f"{statistics.median(values):.2f}/{max(values):.2f}"

        print(f"    {pipeline:<9} {len(lines):>4} x {col('mb')} MB ({col('new_mb')} MB new), snapshot "
              f"{col('snapshot')} s, chunking {col('encode')} s, write {col('write')} s")  # fmt: skip
    span = (end.t - run.first_progress) if end is not None and run.first_progress is not None else 0.0
    if redis_in:
        print(f"  Redis received {redis_in / 1e6:,.0f} MB from clients while the workers ran (INFO total_net_input_"
              f"bytes: checkpoints, projections, exchange; {redis_in / max(1, readings):,.0f} B per accepted reading)")  # fmt: skip
    for pipeline in ("ingest", "segments"):
        state_b = metric_sum(total, "meterseg_checkpoint_bytes_total", pipeline=pipeline, kind="state")
        written_b = metric_sum(total, "meterseg_checkpoint_bytes_total", pipeline=pipeline, kind="written")
        if state_b:
            per_s = f", {written_b / span / 1e6:,.1f} MB/s over the drain" if span > 0 else ""
            print(f"  checkpoint bytes, {pipeline:<8}: {written_b / 1e6:,.1f} MB written for {state_b / 1e6:,.1f} MB "
                  f"of state checkpointed ({written_b / state_b:.1%}: only changed chunks are written){per_s}")  # fmt: skip
    for pipeline, size in ckpt_bytes.items():
        per = args.meters if pipeline == "ingest" else customers
        print(f"  checkpoint in Redis, {pipeline:<8} {size / 1e6:>9,.1f} MB ({size / max(1, per):,.0f} bytes per "
              f"{'meter' if pipeline == 'ingest' else 'customer'})")  # fmt: skip
    if memory:
        target = memory["hash_mean"] + memory["set_per_customer"]
        print(
            f"  Redis used_memory {memory['used_memory'] / 1e6:,.0f} MB in all "
            f"({memory['used_memory'] / max(1, customers):,.0f} bytes per customer, everything included)"
        )
        masters = memory.get("used_memory_per_master", {})
        if len(masters) > 1:
            mean = sum(masters.values()) / len(masters)
            print("  Redis used_memory per master: " + ", ".join(
                f"{name} {used / 1e6:,.0f} MB ({(used - mean) / mean * 100:+.0f} %)" for name, used in sorted(masters.items())
            ))  # fmt: skip
        print(
            f"  Redis per customer, RFM + features + memberships: {target:,.0f} bytes "
            f"(target <= {TARGET_BYTES_PER_CUSTOMER}: {'MET' if target <= TARGET_BYTES_PER_CUSTOMER else 'NOT MET'})"
        )
        print(f"    customer hash {{app}}:cust:{{id}}: mean {memory['hash_mean']:,.0f} B, median "
              f"{memory['hash_median']:,.0f} B, {memory['fields_mean']:.1f} fields, encodings {memory['encodings']} "
              f"({memory['with_hash']:,} of {memory['sampled']:,} sampled customers have one)")  # fmt: skip
        print(f"    membership sets {{app}}:seg:*: {memory['set_bytes'] / 1e6:,.1f} MB for {memory['set_members']:,} "
              f"memberships = {memory['set_per_customer']:,.0f} B per customer with a hash; "
              f"encodings {memory['set_encodings']}")  # fmt: skip
        print(f"    not counted: change history {{app}}:cust:{{id}}:hist {memory['hist_mean']:,.0f} B mean "
              f"(present for {memory['hist_share']:.0%})")  # fmt: skip
        print(
            f"    example customer hash, field -> value bytes: {memory['example_fields']}; server {memory['hash_limits']}"
        )
    for i, status in enumerate(rss):
        cpu = cpu_end[i] if i < len(cpu_end) else float("nan")
        print(f"  worker {i + 1}: peak RSS (VmHWM) {status.get('VmHWM', 0) / 1024:,.0f} MB, RSS now "
              f"{status.get('VmRSS', 0) / 1024:,.0f} MB, CPU {cpu:,.0f} s")  # fmt: skip
    if run.rows:
        peak = max(sum(r.ingest_lag.values()) for r in run.rows)
        step = max(1, -(-len(run.rows) // 12))
        shown = run.rows[::step] + ([run.rows[-1]] if (len(run.rows) - 1) % step else [])
        print(f"  lag over time ({len(shown)} of {len(run.rows)} samples; peak ingest lag {peak:,} messages):")
        prev: Row | None = None
        for i, row in enumerate(shown):
            print_row(row, prev, partitions, i == 0)
            prev = row


if __name__ == "__main__":
    raise SystemExit(main())
