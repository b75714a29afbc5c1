"""Issue-4 benchmark: readings/s and latency of the real worker, beside raw aiokafka and a trivial Faust agent.

Everything runs in one invocation against one broker (the project's local
stack, started if needed; or ``METERSEG_KAFKA_BOOTSTRAP`` / ``METERSEG_REDIS_URL``),
and every figure is the median of ``--runs`` runs:

1. **raw** — aiokafka ``getmany`` consume rate of ~150-byte JSON readings: as
   :func:`bench.baseline.measure` reports it, and measured here with the clock
   started before the first ``getmany`` call (the reference of every ratio;
   ``measure`` starts its clock after the first batch but counts its records);
2. **faust** — a trivial Faust agent that only counts the same kind of
   messages (``bench/faust_trivial.py``, a subprocess; first to last event);
3. **worker** — the real ``meterseg worker`` subprocess over a pre-filled
   backlog: ``meterseg simulate --sink kafka`` first writes N readings plus
   heartbeats into fresh topics, then the worker starts; the clock runs from
   the last ``/health`` poll that saw no message processed to the first that
   saw them all (``totals.messages``; polls every 50 ms, so both ends err on
   the slow side). Readings/s = ``meterseg_readings_processed_total`` / that
   time. Once with one reading per message (``single``), once with head-end
   envelopes (``--envelope 1000``, heartbeats in ``HeartbeatBatch`` envelopes of
   ``--envelope-heartbeats`` 1000 as well; 0 sends them one per message), and
   once with the same readings as ``ReadingBlock`` columns (``block``:
   ``--envelope-format columns``). The worker's CPU seconds (``/proc``) and its
   time in the ingest batch handler (``meterseg_batch_processing_seconds_sum``) are
   printed too, as they vary less than wall-clock rates on a shared machine;
4. **latency** — steady state: the worker runs first, then the simulator
   publishes at a fixed ``--speed`` (simulated seconds per wall second) with
   raised fault rates. Readings, heartbeats and alerts topics are created with
   ``message.timestamp.type=LogAppendTime``, so every record carries its broker
   append time. Reading→alert = append time of the alert on ``meter.alerts``
   minus append time of the reading it was raised or cleared on, for the
   reading rules (negative consumption, spike, stuck register, voltage,
   sequence gap; matched by meter id and interval start); heartbeat→alert is
   the same for the heartbeat rules (clock skew, fault, degraded, error codes;
   matched by meter id and heartbeat ``ts``); a ``silent`` clear counts for
   whichever message came first; timer-driven ``silent`` raises are excluded. Also
   p50/p99 of the worker's ``meterseg_processing_latency_seconds{source="append_time"}``
   histogram over the steady part of the run (Prometheus-style interpolation
   inside the buckets, so only as fine as the buckets).

Throughputs are printed as ratios to the raw consume rate and to the trivial
Faust agent; the issue's targets (≥ 15 000 readings/s single, ≥ 250 000
readings/s with envelopes, p99 reading→alert < 1 s) are checked.

Every run uses its own app id and topic names (``bench.<topic>.<uuid>``), so
nothing collides with other users of a shared broker or Redis; the topics and
the run's Redis keys (``<app id>:*``) are deleted at the end (``--keep`` keeps them).

Run (from the repository root)::

    .venv/bin/python -m bench.pipeline            # ~5 minutes
    .venv/bin/python -m bench.pipeline --quick    # ~1 minute, 1 run, smaller sizes
    .venv/bin/python -m bench.pipeline --only single,envelope --runs 1 --profile /tmp/prof

``--profile DIR`` runs one extra single and envelope worker under ``cProfile``
(``python -m cProfile -o DIR/<mode>.prof -m meterseg.cli worker``) after the
measured runs and prints the top functions by own and cumulative time.
Sizes are flags (``--help``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import pstats
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.error import HTTPError
from urllib.request import urlopen

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import orjson  # noqa: E402
from aiokafka import AIOKafkaConsumer, TopicPartition  # noqa: E402
from aiokafka.admin import AIOKafkaAdminClient, NewTopic  # noqa: E402

from bench.baseline import PARTITIONS as RAW_PARTITIONS  # noqa: E402
from bench.baseline import make_messages, measure, produce_batched  # noqa: E402
from bench.common import create_topic, ensure_broker, fresh_topic, median  # noqa: E402
from meterseg.settings import Settings, TopicNames  # noqa: E402
from meterseg.stack.ports import free_port  # noqa: E402

TARGET_SINGLE = 15_000.0
TARGET_ENVELOPE = 250_000.0
TARGET_P99_S = 1.0
POLL_S = 0.05
APPEND_TIME = {"message.timestamp.type": "LogAppendTime"}
STEPS = ("raw", "faust", "single", "envelope", "block", "latency")
#: health findings judged on readings (alert time = the reading's interval start) and on heartbeats (= its ts)
READING_KINDS = frozenset({"negative_consumption", "spike", "stuck_register", "voltage", "sequence_gap"})
HEARTBEAT_KINDS = frozenset({"clock_skew", "fault", "degraded", "error_codes"})


# ------------------------------------------------------------------------------------------ sizes
@dataclass(frozen=True)
class Sizes:
    """What each step produces; ``--quick`` shrinks it."""

    runs: int = 3
    raw_messages: int = 100_000
    faust_events: int = 30_000
    single_meters: int = 1_000
    single_days: int = 1
    envelope_meters: int = 5_000
    envelope_days: int = 1
    envelope: int = 1_000
    envelope_heartbeat_minutes: int = 60
    envelope_heartbeats: int = 1_000
    latency_meters: int = 1_000
    latency_seconds: float = 30.0
    latency_faults: str = "all=0.2"

    @property
    def latency_speed(self) -> float:
        """Simulated seconds per wall second so that one simulated day takes ``latency_seconds``."""
        return 86_400.0 / self.latency_seconds


QUICK = Sizes(
    runs=1,
    faust_events=10_000,
    single_meters=500,
    envelope_meters=2_000,
    latency_meters=500,
    latency_seconds=12.0,
)


# ----------------------------------------------------------------------------------------- results
@dataclass(frozen=True)
class Throughput:
    """One worker run over a backlog."""

    readings: int
    heartbeats: int
    messages: int
    seconds: float
    cpu_seconds: float
    processor_seconds: float

    @property
    def readings_rate(self) -> float:
        return self.readings / self.seconds

    @property
    def messages_rate(self) -> float:
        return self.messages / self.seconds

    @property
    def readings_per_cpu_s(self) -> float:
        return self.readings / self.cpu_seconds if self.cpu_seconds > 0 else float("nan")


@dataclass(frozen=True)
class Latency:
    """One steady-state run."""

    readings: int
    alerts: int
    reading_alerts: int
    heartbeat_alerts: int
    reading_p50: float
    reading_p99: float
    heartbeat_p50: float
    heartbeat_p99: float
    append_p50: float
    append_p99: float
    lag_max: int


@dataclass
class Cleanup:
    """Topics and Redis namespaces created by this invocation."""

    topics: list[str] = field(default_factory=list)
    app_ids: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------------------- helpers
def run_settings(base: Settings, tag: str, cleanup: Cleanup) -> Settings:
    """``base`` with an app id and topic names of this run only."""
    unique = uuid.uuid4().hex[:8]
    topics = TopicNames(**{k: f"bench.{v}.{unique}" for k, v in TopicNames().model_dump().items()})
    settings = base.model_copy(update={"app_id": f"bench-{tag}-{unique}", "topics": topics})
    cleanup.topics += list(topics.model_dump().values())
    cleanup.app_ids.append(settings.app_id)
    return settings


def child_env(settings: Settings, **extra: str) -> dict[str, str]:
    """Environment that makes a ``meterseg`` child process use ``settings``."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p),
        "METERSEG_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "METERSEG_REDIS_URL": settings.redis_url,
        "METERSEG_REDIS_CLUSTER": "true" if settings.redis_cluster else "false",
        "METERSEG_APP_ID": settings.app_id,
        "METERSEG_PARTITIONS": str(settings.partitions),
        "METERSEG_STACK__STATE_DIR": str(settings.stack.state_dir),
        "METERSEG_API_TOKEN": settings.api_token,
        # benchmark workers serve no one: development mode, said explicitly
        "METERSEG_API_ALLOW_DEFAULT_TOKEN": "true",
    }
    for name, value in settings.topics.model_dump().items():
        env[f"METERSEG_TOPICS__{name.upper()}"] = value
    env.update(extra)
    return env


def pct(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=float), q)) if len(values) else float("nan")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads) so far; 0 when unknown."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def epoch_of(iso: str) -> int:
    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp())


async def create_topics(bootstrap: str, names: Sequence[str], partitions: int, configs: dict[str, str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(n, partitions, 1, topic_configs=dict(configs)) for n in names])
        for _ in range(50):
            if set(names) <= set(await admin.list_topics()):
                break
            await asyncio.sleep(0.1)
    finally:
        await admin.close()


async def delete_topics(bootstrap: str, names: Sequence[str]) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        doomed = sorted(set(names) & set(await admin.list_topics()))
        for start in range(0, len(doomed), 50):
            with contextlib.suppress(Exception):
                await admin.delete_topics(doomed[start : start + 50])
        return len(doomed)
    finally:
        await admin.close()


def delete_redis_keys(url: str, app_ids: Sequence[str]) -> int:
    import redis

    client = redis.Redis.from_url(url)
    removed = 0
    try:
        for app_id in app_ids:
            keys = list(client.scan_iter(match=f"{app_id}:*", count=1000))
            for start in range(0, len(keys), 500):
                removed += int(client.delete(*keys[start : start + 500]))
    finally:
        client.close()
    return removed


# ----------------------------------------------------------------------------------------- metrics
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)$")


def parse_metrics(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Prometheus text format → {(name, labels): value}."""
    out: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        if not match:
            continue
        name, raw_labels, value = match.groups()
        labels = frozenset(re.findall(r'(\w+)="([^"]*)"', raw_labels or ""))
        out[(name, labels)] = float(value)
    return out


def metric_sum(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    want = set(labels.items())
    return sum(v for (n, lab), v in samples.items() if n == name and want <= lab)


def histogram_buckets(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> list[tuple[float, float]]:
    """Cumulative (upper bound, count) pairs of a histogram, sorted by bound."""
    want = set(labels.items())
    out = []
    for (n, lab), v in samples.items():
        if n == f"{name}_bucket" and want <= lab:
            le = dict(lab)["le"]
            out.append((float("inf") if le == "+Inf" else float(le), v))
    return sorted(out)


def histogram_quantile(q: float, buckets: list[tuple[float, float]]) -> float:
    """Prometheus' ``histogram_quantile``: linear interpolation inside the bucket holding rank ``q``."""
    if not buckets or buckets[-1][1] <= 0:
        return float("nan")
    rank = q * buckets[-1][1]
    lower, below = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if bound == float("inf"):
                return lower
            return lower + (bound - lower) * ((rank - below) / (count - below) if count > below else 0.0)
        lower, below = bound, count
    return lower


def diff_buckets(after: list[tuple[float, float]], before: list[tuple[float, float]]) -> list[tuple[float, float]]:
    prior = dict(before)
    return [(b, c - prior.get(b, 0.0)) for b, c in after]


# ------------------------------------------------------------------------------------------ worker
@dataclass
class WorkerProc:
    """A ``meterseg worker`` subprocess and its endpoints."""

    proc: subprocess.Popen[bytes]
    web_port: int
    metrics_port: int
    log_path: Path

    def health(self) -> dict[str, Any]:
        try:
            with urlopen(f"http://127.0.0.1:{self.web_port}/health", timeout=5) as resp:
                body: dict[str, Any] = json.loads(resp.read())
                return body
        except HTTPError as exc:  # 503 while starting
            with contextlib.suppress(Exception):
                parsed: dict[str, Any] = json.loads(exc.read())
                return parsed
            return {"status": "starting"}
        except Exception:
            return {"status": "unreachable"}

    def metrics(self) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        with urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10) as resp:
            return parse_metrics(resp.read().decode())

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]


@contextlib.contextmanager
def worker_process(
    settings: Settings,
    log_dir: Path,
    env: dict[str, str],
    profile_to: Path | None = None,
    name: str = "",
    cwd: Path = REPO,
) -> Iterator[WorkerProc]:
    """Start ``meterseg worker`` (optionally under cProfile); SIGTERM (then SIGKILL) on exit.

    ``cwd``: the checkout the worker runs from (``python -m`` puts it first on ``sys.path``)."""
    web, metrics = free_port(), free_port()
    log_path = log_dir / f"worker-{settings.app_id}{name}.log"
    prefix = [sys.executable]
    if profile_to is not None:
        prefix += ["-m", "cProfile", "-o", str(profile_to)]
    command = [*prefix, "-m", "meterseg.cli", "worker", "--web-port", str(web), "--metrics-port", str(metrics)]
    with log_path.open("wb") as out:
        proc = subprocess.Popen(command, env=child_env(settings, **env), stdout=out, stderr=subprocess.STDOUT, cwd=cwd)
    worker = WorkerProc(proc, web, metrics, log_path)
    try:
        yield worker
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_until(check: Callable[[], bool], timeout_s: float, what: str, worker: WorkerProc | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        if worker is not None and worker.proc.poll() is not None:
            raise RuntimeError(f"worker exited while waiting for {what}:\n{worker.log_tail()}")
        time.sleep(POLL_S)
    tail = f"\n{worker.log_tail()}" if worker is not None else ""
    raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what}{tail}")


def simulate_args(
    meters: int, days: int, envelope: int, heartbeat_minutes: int, seed: int, heartbeat_envelope: int = 0
) -> list[str]:
    return [
        "--meters", str(meters), "--days", str(days), "--seed", str(seed), "--no-ops",
        "--envelope", str(envelope), "--heartbeat-minutes", str(heartbeat_minutes),
        "--heartbeat-envelope", str(heartbeat_envelope), "--no-progress",
    ]  # fmt: skip


def run_simulator(settings: Settings, out_dir: Path, args: Sequence[str]) -> dict[str, Any]:
    """``meterseg simulate --sink kafka`` to completion; its JSON summary."""
    summary = out_dir / f"summary-{settings.app_id}.json"
    done = subprocess.run(
        [sys.executable, "-m", "meterseg.cli", "simulate", "--sink", "kafka", "--out", str(out_dir),
         "--ground-truth", str(out_dir / f"truth-{settings.app_id}.json"), "--summary-json", str(summary), *args],
        env=child_env(settings), capture_output=True, text=True, timeout=600, cwd=REPO,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"simulator failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(summary.read_text())
    return result


def worker_throughput(
    base: Settings,
    cleanup: Cleanup,
    work: Path,
    tag: str,
    sim: list[str],
    profile_to: Path | None = None,
    workers: int = 1,
) -> Throughput:
    """Fill fresh topics with the simulator, then time ``workers`` workers (one consumer group) through the backlog.

    With several workers the progress is the sum of the messages each has
    processed (``/health`` totals; a partition handed over at the group's first
    rebalance resumes at the checkpoint its owner wrote when it let go, so
    nothing is counted twice), and CPU is summed over the workers.
    """
    settings = run_settings(base, tag, cleanup)
    t = settings.topics
    asyncio.run(create_topics(settings.kafka_bootstrap, [t.readings, t.heartbeats, t.alerts],
                              settings.partitions, APPEND_TIME))  # fmt: skip
    summary = run_simulator(settings, work, sim)
    produced = summary["messages"]
    expected = int(produced.get(t.readings, 0)) + int(produced.get(t.heartbeats, 0))
    # default event clock (rate 1): a fast clock (e.g. 3600, as the e2e test uses) can run on between two
    # fetches of a replayed backlog, and readings then arrive too late for their windows (fewer processed)
    with contextlib.ExitStack() as stack:
        procs = [
            stack.enter_context(worker_process(settings, work, {}, profile_to if i == 0 else None, name=f"-{i}"))
            for i in range(workers)
        ]

        def progress() -> int:
            total = 0
            for w in procs:  # a worker not answering yet has processed nothing
                with contextlib.suppress(Exception):
                    total += int(w.health().get("totals", {}).get("messages", 0))
            return total

        last_zero = time.time()
        cpu_start = 0.0
        done_at: float | None = None
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            sent = time.time()
            cpu_now = sum(cpu_seconds(w.proc.pid) for w in procs)
            messages = progress()
            if messages == 0:
                last_zero, cpu_start = sent, cpu_now
            elif messages >= expected:
                done_at = time.time()
                cpu_end = sum(cpu_seconds(w.proc.pid) for w in procs)
                break
            for w in procs:
                if w.proc.poll() is not None:
                    raise RuntimeError(f"worker exited:\n{w.log_tail()}")
            time.sleep(POLL_S)
        if done_at is None:
            raise TimeoutError(f"workers did not process {expected} messages:\n{procs[0].log_tail()}")
        samples = [w.metrics() for w in procs]
    return Throughput(
        readings=int(sum(metric_sum(x, "meterseg_readings_processed_total") for x in samples)),
        heartbeats=int(sum(metric_sum(x, "meterseg_heartbeats_processed_total") for x in samples)),
        messages=expected,
        seconds=done_at - last_zero,
        cpu_seconds=cpu_end - cpu_start,
        processor_seconds=sum(
            metric_sum(x, "meterseg_batch_processing_seconds_sum", pipeline="ingest") for x in samples
        ),
    )


# ----------------------------------------------------------------------------------------- latency
Stamped = tuple[bytes | None, bytes, int]


async def read_all(bootstrap: str, topic: str, timeout_s: float = 60.0) -> list[Stamped]:
    """Every record of ``topic`` as (key, value, timestamp ms)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None,
                                fetch_max_bytes=64 << 20, max_partition_fetch_bytes=16 << 20)  # fmt: skip
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()
        parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        if not tps:
            return []
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        out: list[Stamped] = []
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if all([await consumer.position(tp) >= ends[tp] for tp in tps]):
                break
            batch = await consumer.getmany(timeout_ms=500, max_records=100_000)
            for records in batch.values():
                out.extend((r.key, r.value or b"", r.timestamp) for r in records)
        return out
    finally:
        with contextlib.suppress(asyncio.CancelledError):
            await consumer.stop()


def event_index(
    readings: list[Stamped], heartbeats: list[Stamped]
) -> tuple[dict[tuple[str, int], int], dict[tuple[str, int], int]]:
    """(meter id, event time s) → earliest append time (ms), for readings (single or envelopes) and heartbeats."""
    r_index: dict[tuple[str, int], int] = {}
    h_index: dict[tuple[str, int], int] = {}
    for _, value, ts in readings:
        try:
            doc = orjson.loads(value)
            rows = doc.get("readings", [doc])
            for row in rows:
                key = (row["meter_id"], epoch_of(row["interval_start"]))
                if key not in r_index or ts < r_index[key]:
                    r_index[key] = ts
        except Exception:  # malformed faults are expected
            continue
    for _, value, ts in heartbeats:
        try:
            doc = orjson.loads(value)
            key = (doc["meter_id"], epoch_of(doc["ts"]))
            if key not in h_index or ts < h_index[key]:
                h_index[key] = ts
        except Exception:
            continue
    return r_index, h_index


def steady_latency(
    base: Settings, cleanup: Cleanup, work: Path, sizes: Sizes, envelope: int = 0, profile_to: Path | None = None
) -> Latency:
    """Worker first, then the simulator at a fixed speed; reading→alert from broker append times."""
    settings = run_settings(base, "latency", cleanup)
    t = settings.topics
    asyncio.run(create_topics(settings.kafka_bootstrap, [t.readings, t.heartbeats, t.alerts],
                              settings.partitions, APPEND_TIME))  # fmt: skip
    speed = sizes.latency_speed
    sim = simulate_args(sizes.latency_meters, 1, envelope, 15, seed=7)
    sim += ["--speed", f"{speed:g}", "--start", "2026-03-02"]
    for rate in sizes.latency_faults.split(","):
        if rate.strip():
            sim += ["--fault-rate", rate.strip()]
    summary_path = work / f"summary-{settings.app_id}.json"
    env = {"METERSEG_INGEST__CLOCK_RATE": f"{speed:g}"}
    with worker_process(settings, work, env, profile_to) as worker:
        wait_until(lambda: worker.health().get("status") == "ok", 120, "worker start", worker)
        started = time.monotonic()
        sim_proc = subprocess.Popen(
            [sys.executable, "-m", "meterseg.cli", "simulate", "--sink", "kafka", "--out", str(work),
             "--ground-truth", str(work / f"truth-{settings.app_id}.json"), "--summary-json", str(summary_path),
             *sim],
            env=child_env(settings), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=REPO,
        )  # fmt: skip
        try:
            # the steady part starts once the spike rule has history (warm-up) and the group is settled
            time.sleep(min(5.0, sizes.latency_seconds * 0.15))
            before = worker.metrics()
            lag_max = 0
            while sim_proc.poll() is None:
                samples = worker.metrics()
                lag_max = max(lag_max, int(metric_sum(samples, "meterseg_consumer_lag_messages")))
                time.sleep(0.5)
                if time.monotonic() - started > sizes.latency_seconds * 4 + 60:
                    raise TimeoutError("simulator did not finish in time")
            output = sim_proc.stdout.read().decode(errors="replace") if sim_proc.stdout else ""
            if sim_proc.returncode != 0:
                raise RuntimeError(f"simulator failed:\n{output[-2000:]}")
        finally:
            if sim_proc.poll() is None:
                sim_proc.kill()
                sim_proc.wait()
        produced = json.loads(summary_path.read_text())["messages"]
        expected = int(produced.get(t.readings, 0)) + int(produced.get(t.heartbeats, 0))
        wait_until(lambda: int(worker.health().get("totals", {}).get("messages", 0)) >= expected, 120,
                   "the last messages", worker)  # fmt: skip
        time.sleep(1.0)  # the last alerts are produced after the batch is counted
        after = worker.metrics()
    buckets = diff_buckets(
        histogram_buckets(after, "meterseg_processing_latency_seconds", source="append_time"),
        histogram_buckets(before, "meterseg_processing_latency_seconds", source="append_time"),
    )

    async def read() -> tuple[list[Stamped], list[Stamped], list[Stamped]]:
        b = settings.kafka_bootstrap
        return await read_all(b, t.readings), await read_all(b, t.heartbeats), await read_all(b, t.alerts)

    readings, heartbeats, alerts = asyncio.run(read())
    r_index, h_index = event_index(readings, heartbeats)
    r_lat: list[float] = []
    h_lat: list[float] = []
    for _, value, ts in alerts:
        alert = orjson.loads(value)
        kind, key = alert["kind"], (alert["meter_id"], epoch_of(alert["ts"]))
        if kind in READING_KINDS:
            source = r_index.get(key)
            if source is not None:
                r_lat.append((ts - source) / 1000.0)
        elif kind in HEARTBEAT_KINDS:
            source = h_index.get(key)
            if source is not None:
                h_lat.append((ts - source) / 1000.0)
        elif kind == "silent" and alert["action"] == "cleared":
            # cleared by whichever sign of life came first (a raise comes from the timer: not counted)
            found = [(t, lat) for t, lat in ((r_index.get(key), r_lat), (h_index.get(key), h_lat)) if t is not None]
            if found:
                first, into = min(found, key=lambda pair: pair[0])
                into.append((ts - first) / 1000.0)
    return Latency(
        readings=int(metric_sum(after, "meterseg_readings_processed_total")),
        alerts=len(alerts),
        reading_alerts=len(r_lat),
        heartbeat_alerts=len(h_lat),
        reading_p50=pct(r_lat, 50),
        reading_p99=pct(r_lat, 99),
        heartbeat_p50=pct(h_lat, 50),
        heartbeat_p99=pct(h_lat, 99),
        append_p50=histogram_quantile(0.50, buckets),
        append_p99=histogram_quantile(0.99, buckets),
        lag_max=lag_max,
    )


# --------------------------------------------------------------------------------------------- raw
async def _raw_consume_once(bootstrap: str, n: int, cleanup: Cleanup) -> float:
    topic = fresh_topic("raw")
    cleanup.topics.append(topic)
    await create_topic(bootstrap, topic, RAW_PARTITIONS)
    await produce_batched(bootstrap, topic, make_messages(n))
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
        fetch_max_bytes=50 * 1024 * 1024,
        max_partition_fetch_bytes=8 * 1024 * 1024,
    )
    await consumer.start()
    try:
        seen = 0
        started = time.perf_counter()  # before the first getmany: its fetch is part of the cost
        while seen < n:
            batch = await consumer.getmany(timeout_ms=1000, max_records=50_000)
            seen += sum(len(records) for records in batch.values())
        return seen / (time.perf_counter() - started)
    finally:
        with contextlib.suppress(asyncio.CancelledError):
            await consumer.stop()


def raw_consume(bootstrap: str, n: int, runs: int, cleanup: Cleanup) -> list[float]:
    """getmany msgs/s with the clock started before the first ``getmany`` call.

    :func:`bench.baseline.consume_all` starts its clock after the first
    non-empty batch yet counts that batch's records, which overstates the rate
    (unboundedly when one batch holds everything, e.g. 50 000 messages).
    """
    return [asyncio.run(_raw_consume_once(bootstrap, n, cleanup)) for _ in range(runs)]


# ------------------------------------------------------------------------------------------- faust
def faust_trivial(bootstrap: str, events: int, cleanup: Cleanup, work: Path) -> float:
    """Events/s of ``bench/faust_trivial.py`` over ``events`` fresh baseline messages."""
    topic = fresh_topic("faust")
    cleanup.topics.append(topic)

    async def fill() -> None:
        await create_topic(bootstrap, topic, RAW_PARTITIONS)
        await produce_batched(bootstrap, topic, make_messages(events))

    asyncio.run(fill())
    app_id = f"bench-faust-{uuid.uuid4().hex[:8]}"
    result = work / f"{app_id}.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench.faust_trivial", "--topic", topic, "--expected", str(events),
         "--result", str(result), "--bootstrap", bootstrap, "--app-id", app_id,
         "--partitions", str(RAW_PARTITIONS)],
        env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=600, cwd=REPO,
    )  # fmt: skip
    if done.returncode != 0 or not result.exists():
        raise RuntimeError(f"faust_trivial failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return float(json.loads(result.read_text())["rate"])


# ------------------------------------------------------------------------------------------ report
def ratio(value: float, reference: float | None) -> str:
    if reference is None or not reference or value != value:
        return "      -"
    return f"{value / reference:7.3f}x" if value / reference < 10 else f"{value / reference:7.1f}x"


def row(label: str, value: float, unit: str, raw: float | None, faust: float | None, note: str = "") -> str:
    return f"  {label:<52} {value:>11,.0f} {unit:<11} {ratio(value, raw)} raw  {ratio(value, faust)} faust  {note}"


def verdict(ok: bool) -> str:
    return "MET" if ok else "NOT MET"


def print_profile(path: Path, top: int) -> None:
    stats = pstats.Stats(str(path))
    stats.strip_dirs()
    total = getattr(stats, "total_tt", 0.0)
    print(f"\n  profile {path} (total {total:.1f} s in the main thread), top {top} by own time:")
    stats.sort_stats("tottime").print_stats(top)
    print(f"  top {top} by cumulative time:")
    stats.sort_stats("cumulative").print_stats(top)


# -------------------------------------------------------------------------------------------- main
def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    d = Sizes()
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)  # fmt: skip
    p.add_argument("--quick", action="store_true", help="~1 minute: 1 run and smaller sizes (flags given still win)")
    p.add_argument("--runs", type=int, default=None, help=f"runs per figure (default {d.runs}; quick {QUICK.runs})")
    p.add_argument("--only", default=",".join(STEPS), help=f"comma-separated steps of {', '.join(STEPS)}")
    p.add_argument("--raw-messages", type=int, default=None, help=f"default {d.raw_messages}")
    p.add_argument("--faust-events", type=int, default=None, help=f"default {d.faust_events}")
    p.add_argument("--single-meters", type=int, default=None, help=f"default {d.single_meters}")
    p.add_argument("--single-days", type=int, default=None, help=f"default {d.single_days}")
    p.add_argument("--envelope-meters", type=int, default=None, help=f"default {d.envelope_meters}")
    p.add_argument("--envelope-days", type=int, default=None, help=f"default {d.envelope_days}")
    p.add_argument("--envelope", type=int, default=None, help=f"readings per envelope (default {d.envelope})")
    p.add_argument(
        "--envelope-heartbeat-minutes",
        type=int,
        default=None,
        help=f"heartbeat period in envelope mode, 0 = none (default {d.envelope_heartbeat_minutes})",
    )
    p.add_argument(
        "--envelope-heartbeats",
        type=int,
        default=None,
        help=f"heartbeats per HeartbeatBatch envelope in envelope mode, 0 = one heartbeat per message "
        f"(default {d.envelope_heartbeats})",
    )
    p.add_argument("--latency-meters", type=int, default=None, help=f"default {d.latency_meters}")
    p.add_argument(
        "--latency-seconds",
        type=float,
        default=None,
        help=f"wall seconds for the simulated day of the steady run (default {d.latency_seconds:g})",
    )
    p.add_argument("--latency-faults", default=None, help=f"--fault-rate values, comma-separated ({d.latency_faults})")
    p.add_argument("--workers", type=int, default=1, help="envelope step: workers in one consumer group")
    p.add_argument("--profile", type=Path, default=None, help="also profile a single and an envelope worker run")
    p.add_argument("--top", type=int, default=25, help="profile entries to print")
    p.add_argument("--keep", action="store_true", help="keep topics and Redis keys")
    return p.parse_args(argv)


def sizes_from(args: argparse.Namespace) -> Sizes:
    base = QUICK if args.quick else Sizes()
    updates = {
        name: getattr(args, name) for name in Sizes.__dataclass_fields__ if getattr(args, name, None) is not None
    }
    return Sizes(**{**base.__dict__, **updates})


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = sizes_from(args)
    steps = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(steps) - set(STEPS)
    if unknown:
        print(f"unknown steps: {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    base = Settings()
    bootstrap = ensure_broker(base)
    work = Path(tempfile.mkdtemp(prefix="meterseg-bench-"))
    cleanup = Cleanup()
    began = time.monotonic()
    print(f"meterseg pipeline benchmark: broker {bootstrap}, Redis {base.redis_url}, {base.partitions} partitions, "
          f"median of {sizes.runs} run(s); load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}; logs in {work}", flush=True)  # fmt: skip
    raw = faust = raw_reported = None
    single: list[Throughput] = []
    envelope: list[Throughput] = []
    latency: list[Latency] = []
    single_sim = simulate_args(sizes.single_meters, sizes.single_days, 0, 15, seed=1)
    env_sim = simulate_args(sizes.envelope_meters, sizes.envelope_days, sizes.envelope,
                            sizes.envelope_heartbeat_minutes, seed=2, heartbeat_envelope=sizes.envelope_heartbeats)  # fmt: skip
    block_sim = [*env_sim, "--envelope-format", "columns"]  # the same readings as ReadingBlock columns
    block: list[Throughput] = []
    try:
        if "raw" in steps:
            print(f"\n[raw] aiokafka getmany over {sizes.raw_messages:,} messages", flush=True)
            raw_reported = measure(bootstrap, sizes.raw_messages, sizes.runs).consume
            rates = raw_consume(bootstrap, sizes.raw_messages, sizes.runs, cleanup)
            print("  clock from the first getmany call: " + ", ".join(f"{r:,.0f}/s" for r in rates), flush=True)
            raw = median(rates)
        if "faust" in steps:
            print(f"\n[faust] trivial agent over {sizes.faust_events:,} messages", flush=True)
            rates = []
            for run in range(sizes.runs):
                rates.append(faust_trivial(bootstrap, sizes.faust_events, cleanup, work))
                print(f"  run {run + 1}/{sizes.runs}: {rates[-1]:,.0f} events/s", flush=True)
            faust = median(rates)
        for mode, sim, results in (
            ("single", single_sim, single), ("envelope", env_sim, envelope), ("block", block_sim, block)
        ):
            if mode not in steps:
                continue
            n = 1 if mode == "single" else args.workers
            print(f"\n[{mode}] {n} worker(s) over a backlog: meterseg simulate {' '.join(sim)}", flush=True)
            for run in range(sizes.runs):
                r = worker_throughput(base, cleanup, work, mode, sim, workers=n)
                results.append(r)
                print(f"  run {run + 1}/{sizes.runs}: {r.readings:,} readings + {r.heartbeats:,} heartbeats "
                      f"({r.messages:,} messages) in {r.seconds:.2f} s: {r.readings_rate:,.0f} readings/s, "
                      f"{r.messages_rate:,.0f} messages/s; worker CPU {r.cpu_seconds:.2f} s "
                      f"({r.readings_per_cpu_s:,.0f} readings/CPU-s), in the ingest batch handler {r.processor_seconds:.2f} s",
                      flush=True)  # fmt: skip
        if "latency" in steps:
            print(f"\n[latency] steady state: {sizes.latency_meters:,} meters, one simulated day in "
                  f"{sizes.latency_seconds:g} s (--speed {sizes.latency_speed:g}), faults {sizes.latency_faults}",
                  flush=True)  # fmt: skip
            for run in range(sizes.runs):
                lat = steady_latency(base, cleanup, work, sizes)
                latency.append(lat)
                print(f"  run {run + 1}/{sizes.runs}: {lat.readings:,} readings, {lat.alerts} alerts "
                      f"({lat.reading_alerts} on readings, {lat.heartbeat_alerts} on heartbeats); reading→alert "
                      f"p50 {lat.reading_p50 * 1000:,.0f} ms p99 {lat.reading_p99 * 1000:,.0f} ms; heartbeat→alert "
                      f"p50 {lat.heartbeat_p50 * 1000:,.0f} ms p99 {lat.heartbeat_p99 * 1000:,.0f} ms; "
                      f"append_time metric p50 {lat.append_p50 * 1000:,.0f} ms p99 {lat.append_p99 * 1000:,.0f} ms; "
                      f"max lag {lat.lag_max:,}", flush=True)  # fmt: skip
        if args.profile is not None:
            args.profile.mkdir(parents=True, exist_ok=True)
            for mode, sim in (("single", single_sim), ("envelope", env_sim), ("block", block_sim)):
                out = args.profile / f"{mode}.prof"
                print(f"\n[profile] {mode} worker under cProfile -> {out}", flush=True)
                r = worker_throughput(base, cleanup, work, f"prof-{mode}", sim, profile_to=out)
                print(f"  (under the profiler) {r.readings_rate:,.0f} readings/s, {r.messages_rate:,.0f} messages/s",
                      flush=True)  # fmt: skip
    finally:
        if not args.keep:
            topics = asyncio.run(delete_topics(bootstrap, cleanup.topics))
            keys = delete_redis_keys(base.redis_url, cleanup.app_ids)
            state_dir = base.stack.state_dir if base.stack.state_dir.is_absolute() else REPO / base.stack.state_dir
            for app_id in cleanup.app_ids:  # Faust data directories of our workers
                shutil.rmtree(state_dir / "faust" / app_id, ignore_errors=True)
            print(f"\ncleanup: deleted {topics} topics and {keys} Redis keys", flush=True)

    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"\n=== summary (median of {sizes.runs} run(s); {time.monotonic() - began:.0f} s; load average now {load}"
          f" on {os.cpu_count()} CPUs) ===")  # fmt: skip
    if raw_reported is not None:
        print(row("raw getmany consume, bench.baseline.measure()", raw_reported, "msgs/s", raw, faust,
                  "(clock starts after the 1st batch)"))  # fmt: skip
    if raw is not None:
        print(row("raw getmany consume, clock from 1st getmany [raw]", raw, "msgs/s", raw, faust))
    if faust is not None:
        print(row("trivial Faust agent (count only)", faust, "events/s", raw, faust))
    for mode, results, target in (
        ("single-reading", single, TARGET_SINGLE),
        ("envelope (ReadingBatch)", envelope, TARGET_ENVELOPE),
        ("block (ReadingBlock)", block, TARGET_ENVELOPE),
    ):
        if not results:
            continue
        rate = median([r.readings_rate for r in results])
        note = f"target >= {target:,.0f}: {verdict(rate >= target)}"
        print(row(f"worker {mode}: readings", rate, "readings/s", raw, faust, note))
        print(row(f"worker {mode}: messages (readings+heartbeats)", median([r.messages_rate for r in results]),
                  "msgs/s", raw, faust))  # fmt: skip
        print(row(f"worker {mode}: readings per worker CPU-second", median([r.readings_per_cpu_s for r in results]),
                  "readings/s", raw, faust))  # fmt: skip
        share = median([r.processor_seconds / r.seconds for r in results])
        print(
            f"  {'':<52} (share of wall time in the ingest batch handler, meterseg_batch_processing_seconds: {share:.0%})"
        )
    if latency:
        p99 = median([x.reading_p99 for x in latency])
        print(
            f"  {'reading→alert latency p50 / p99':<52} {median([x.reading_p50 for x in latency]) * 1000:>8,.0f} ms "
            f"/ {p99 * 1000:,.0f} ms   target p99 < {TARGET_P99_S:g} s: {verdict(p99 < TARGET_P99_S)}"
        )
        print(
            f"  {'heartbeat→alert latency p50 / p99':<52} "
            f"{median([x.heartbeat_p50 for x in latency]) * 1000:>8,.0f} ms "
            f"/ {median([x.heartbeat_p99 for x in latency]) * 1000:,.0f} ms"
        )
        print(
            f"  {'append_time latency metric p50 / p99':<52} {median([x.append_p50 for x in latency]) * 1000:>8,.0f} ms "
            f"/ {median([x.append_p99 for x in latency]) * 1000:,.0f} ms   (histogram buckets, interpolated)"
        )
        print(f"  {'alerts matched per run (readings / heartbeats)':<52} "
              f"{median([x.reading_alerts for x in latency]):>8,.0f} / {median([x.heartbeat_alerts for x in latency]):,.0f}")  # fmt: skip
    if args.profile is not None:
        for mode in ("single", "envelope", "block"):
            path = args.profile / f"{mode}.prof"
            if path.exists():
                print_profile(path, args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
