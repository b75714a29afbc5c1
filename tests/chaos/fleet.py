"""What every fault drill shares: a seeded fleet, running workers to the end, and the batch truth.

A drill simulates a small seeded fleet (readings, heartbeats with injected
meter faults, purchase history) into Kafka *before* any worker starts, so the
input of every run is byte-identical; it then runs workers over it, injects
its fault once part of the stream is processed, lets the engine finish, and
scores the outcome with :func:`check_outcome` against truth computed in batch
from the same topics:

- window totals: every daily meter window and every hourly regional window
  equals the batch sum of the de-duplicated valid readings (as in
  ``tests/integration/test_ingest_e2e.py``);
- RFM: every customer's record in Redis equals
  :func:`processors.rfm.state.recompute` over the purchase topic;
- memberships: the Redis segment sets equal a replay of ``segment.changes``;
- alerts: every alert id of a clean reference run (same input, no fault)
  appears; a repeated id carries identical content (at-least-once replay).
  ``silent`` alerts are judged against each partition's event clock, so which
  meters look silent mid-stream depends on how polls cut the stream; for them
  the final state per meter (silent once the data ends) must match instead.
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from meterseg.settings import Settings, TopicNames
from processors.rfm.state import recompute
from stream.schemas import Purchase, Reading, window_records
from tests.conftest import local_test_settings
from tests.integration.harness import (
    Worker,
    example_consumer,
    memberships_in_redis,
    metric_value,
    read_topic,
    rfm_in_redis,
    simulate,
    wait_for,
)

METERS = 250
DAYS = 2
SEED = 23
HISTORY_DAYS = 30
FAULTS = ("stuck=0.04", "spike=0.04", "negative=0.04", "voltage=0.04", "duplicate=0.03", "malformed=0.02")
SIM_ARGS: tuple[str, ...] = (
    "--meters", str(METERS), "--days", str(DAYS), "--seed", str(SEED), "--history-days", str(HISTORY_DAYS),
    "--no-ops", *[a for f in FAULTS for a in ("--fault-rate", f)],
)  # fmt: skip
#: replayed history: the event clock runs fast once the stream is quiet, so the last windows close;
#: small polls, so a worker takes some seconds over the fleet and a fault lands mid-stream
WORKER_ENV = {
    "METERSEG_INGEST_POLL_RECORDS": "250",
    "METERSEG_INGEST__CLOCK_RATE": "3600",
    "METERSEG_INGEST__WINDOWS__CLOSE_AFTER_S": "7200",
    "METERSEG_SEGMENTATION__EXCHANGE_INTERVAL_S": "1",
}
#: alert kinds whose ``at`` is the event clock of a timer tick, not an event time
CLOCK_TIMED_ALERTS = {"silent"}


#: what a change id names; a replay may attach other metadata (reason, model version)
TRANSITION = ("customer_id", "family", "segment_id", "action", "from_segment", "to_segment", "ts")


def drill_settings(kafka_bootstrap: str, redis_url: str, name: str) -> Settings:
    """Settings of one run: its own app id (every Redis key is under it) and topic names."""
    unique = uuid.uuid4().hex[:8]
    return Settings(
        app_id=f"chaos-{name}-{unique}",
        kafka_bootstrap=kafka_bootstrap,
        redis_url=redis_url,
        topics=TopicNames(**{k: f"{v}.{unique}" for k, v in TopicNames().model_dump().items()}),
        stack=local_test_settings().stack,
    )


@dataclass
class Fleet:
    """The simulated input of one run."""

    settings: Settings
    out: Path
    expected_in: int  # readings + heartbeats messages produced

    @classmethod
    def simulate(cls, settings: Settings, out: Path) -> Fleet:
        out.mkdir(parents=True, exist_ok=True)
        summary = simulate(settings, out, *SIM_ARGS)
        produced = summary["messages"]
        return cls(settings, out, produced[settings.topics.readings] + produced[settings.topics.heartbeats])


def consumed(workers: Sequence[Worker]) -> float:
    """Ingest messages taken into checkpointed partition state, over the live workers."""
    total = 0.0
    for w in workers:
        with contextlib.suppress(Exception):
            total += metric_value(w.metrics(), "meterseg_ingest_state_messages", {"kind": "messages"})
    return total


def processed_total(workers: Sequence[Worker]) -> int:
    """Ingest messages handled by the live workers since they started (health totals)."""
    return sum(int(w.health().get("totals", {}).get("messages", 0)) for w in workers)


def segmentation_lag_zero(workers: Sequence[Worker]) -> bool:
    """True once every segmentation input partition is assigned somewhere and read to its end."""
    lines: list[str] = []
    for w in workers:
        with contextlib.suppress(Exception):
            lines += [
                line
                for line in w.metrics().splitlines()
                if line.startswith("meterseg_consumer_lag_messages{") and ("purchases" in line or "profiles" in line)
            ]
    return bool(lines) and all(float(line.rsplit(" ", 1)[1]) == 0 for line in lines)


def state_counters(workers: Sequence[Worker]) -> dict[str, float]:
    """Checkpointed ingest counters (messages, accepted, deadletter, duplicates) over the live workers."""
    out: dict[str, float] = {}
    for kind in ("messages", "accepted", "deadletter", "duplicates"):
        out[kind] = 0.0
        for w in workers:
            out[kind] += metric_value(w.metrics(), "meterseg_ingest_state_messages", {"kind": kind})
    return out


def _sum_metric(workers: Sequence[Worker], name: str) -> float:
    return sum(metric_value(w.metrics(), name) for w in workers)


def _settled(sample: Any, quiet_samples: int = 6) -> Any:
    """A check: ``sample()`` returned the same value, not None, for the last ``quiet_samples`` calls."""
    seen: list[Any] = []

    def check() -> bool:
        seen.append(sample())
        last = seen[-quiet_samples:]
        return len(last) == quiet_samples and last[-1] is not None and all(v == last[-1] for v in last)

    return check


def finish(workers: Sequence[Worker], fleet: Fleet, timeout_s: float = 120) -> dict[str, float]:
    """Wait until every message is in state, the last windows closed and segmentation caught up.

    The end of the data is when the event clock, running on once the stream is quiet, has found
    (nearly) every meter silent; only after that can window emission settle for good (the clock
    waits 5 s of quiet before running, so "no new windows for a few seconds" alone is not enough).
    The last daily windows then produce the last daily profiles, which segmentation must consume.
    Returns the final checkpointed ingest counters (see :func:`state_counters`).
    """
    wait_for(lambda: consumed(workers) >= fleet.expected_in, timeout_s, "all messages in state")
    wait_for(lambda: _sum_metric(workers, "meterseg_meters_late") >= 0.9 * METERS, timeout_s, "end of data")
    # silent meters keep emitting gap windows as the clock runs on: settle on the windows with readings
    wait_for(_settled(lambda: _sum_metric(workers, "meterseg_windows_emitted_total")
                      - _sum_metric(workers, "meterseg_gap_windows_total")), timeout_s, "windows closed")  # fmt: skip

    def segmentation_done() -> tuple[int, ...] | None:
        if not segmentation_lag_zero(workers):
            return None
        return tuple(int(w.health().get("segmentation", {}).get("messages", 0)) for w in workers)

    wait_for(_settled(segmentation_done, 4), timeout_s, "segmentation caught up")
    time.sleep(1.5)  # one more model/population exchange and checkpoint
    return state_counters(workers)


@dataclass
class Outcome:
    """Everything a run left behind, read back from Kafka and Redis."""

    windows: list[dict[str, Any]]
    alerts: list[dict[str, Any]]
    readings: list[bytes]
    registry: list[dict[str, Any]]
    purchases: list[bytes]
    changes: list[dict[str, Any]]
    rfm: dict[str, dict[str, Any]]
    memberships: dict[tuple[str, str], set[str]]
    counters: dict[str, float]
    deadletter_reasons: Counter[str] = field(default_factory=Counter)
    known_meters: set[str] = field(default_factory=set)

    @classmethod
    def collect(cls, fleet: Fleet, counters: dict[str, float]) -> Outcome:
        s = fleet.settings
        boot = s.kafka_bootstrap
        truth = json.loads((fleet.out / "truth.json").read_text())

        reasons: Counter[str] = Counter()
        seen: set[tuple[bytes, bytes, bytes]] = set()
        for _, _, headers in read_topic(boot, s.topics.deadletter):
            h = dict(headers)
            source = (h.get("source_topic", b""), h.get("source_offset", b""), h.get("record", b""))
            if source not in seen:  # a replayed span dead-letters again
                seen.add(source)
                reasons[h.get("reason", b"?").decode()] += 1

        def values(topic: str) -> list[bytes]:
            return [v for _, v, _ in read_topic(boot, topic)]

        return cls(
            windows=[w for v in values(s.topics.windows) for w in window_records(json.loads(v))],
            alerts=[json.loads(v) for v in values(s.topics.alerts)],
            readings=values(s.topics.readings),
            registry=[json.loads(v) for v in values(s.topics.registry)],
            purchases=values(s.topics.purchases),
            changes=[json.loads(v) for v in values(s.topics.segment_changes)],
            rfm=rfm_in_redis(s),
            memberships=memberships_in_redis(s),
            counters=counters,
            deadletter_reasons=reasons,
            known_meters=set(truth["meters"]["ids"]),
        )

    def alert_ids(self) -> set[str]:
        return {a["alert_id"] for a in self.alerts if a["kind"] not in CLOCK_TIMED_ALERTS}

    def final_clock_timed(self) -> dict[tuple[str, str], str]:
        """Last action per (meter, clock-timed kind), in topic order (a meter's alerts share a partition)."""
        return {(a["meter_id"], a["kind"]): a["action"] for a in self.alerts if a["kind"] in CLOCK_TIMED_ALERTS}


# -- the checks -----------------------------------------------------------------------------------
def check_windows(o: Outcome) -> None:
    """Daily meter windows and hourly regional windows equal batch sums of the same readings."""
    region_of = {m["meter_id"]: m["region"] for m in o.registry}
    seen: set[tuple[str, datetime]] = set()
    day_in: dict[tuple[str, str], float] = defaultdict(float)
    region_hour: dict[tuple[str, str], float] = defaultdict(float)
    for value in o.readings:
        try:
            r = Reading.model_validate_json(value)
        except ValidationError:
            continue
        if r.meter_id not in o.known_meters or (r.meter_id, r.interval_start) in seen:
            continue
        seen.add((r.meter_id, r.interval_start))
        day_in[(r.meter_id, r.interval_start.date().isoformat())] += r.kwh_import
        hour = r.interval_start.replace(minute=0).strftime("%Y-%m-%dT%H:%M:%SZ")
        region_hour[(region_of[r.meter_id], hour)] += r.kwh_import
    daily: dict[tuple[str, str], float] = {}
    hourly: dict[tuple[str, str], float] = {}
    revision: dict[tuple[str, str, str], int] = {}
    for w in o.windows:
        if w["kind"] == "meter" and w["window"] == "1d":
            key = (w["key"], w["window_start"][:10])
        elif w["kind"] == "region" and w["window"] == "1h":
            key = (w["key"], w["window_start"])
        else:
            continue
        if not w["readings"]:
            continue  # a gap window (a silent meter's day)
        target = daily if w["kind"] == "meter" else hourly
        rev = w.get("revision", 0)
        last = revision.setdefault((w["kind"], *key), rev)
        if rev > last:  # a correction (late readings counted): the highest revision is the final total
            revision[(w["kind"], *key)] = rev
            target[key] = w["kwh_in"]
        elif rev == last:  # a window emitted again after a replay must say the same thing
            assert target.setdefault(key, w["kwh_in"]) == pytest.approx(w["kwh_in"], rel=1e-9, abs=1e-9), key
    assert set(daily) == set(day_in), (len(daily), len(day_in))
    bad = [k for k, total in day_in.items() if daily[k] != pytest.approx(total, rel=1e-9, abs=1e-9)]
    assert not bad, f"{len(bad)} daily windows differ from batch sums, e.g. {bad[:3]}"
    assert set(hourly) == set(region_hour), (len(hourly), len(region_hour))
    bad = [k for k, total in region_hour.items() if hourly[k] != pytest.approx(total, rel=1e-9, abs=1e-9)]
    assert not bad, f"{len(bad)} regional windows differ from batch sums, e.g. {bad[:3]}"


def partition_of(key: str, partitions: int = 4) -> int:
    """Partition of a key under Kafka's default partitioner (murmur2), for diagnostics."""
    from aiokafka.partitioner import murmur2

    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions


def check_rfm(o: Outcome) -> None:
    """Every customer's RFM record in Redis equals the batch recomputation from the purchase topic."""
    truth = recompute(Purchase.model_validate_json(v) for v in o.purchases)
    buyers = {cid for cid, rec in truth.items() if rec.n_purchases or rec.n_viewed or rec.n_processed}
    missing = buyers - set(o.rfm)
    assert buyers and set(o.rfm) == buyers, (
        f"{len(o.rfm)} customers with RFM in Redis, {len(buyers)} in the batch truth; missing by partition "
        f"{dict(Counter(partition_of(c) for c in missing))}, e.g. {sorted(missing)[:3]}, unexpected e.g. "
        f"{sorted(set(o.rfm) - buyers)[:3]}"
    )
    for cid in buyers:
        rec, red = truth[cid], o.rfm[cid]
        got = (red["n_purchases"], red["n_purchase_days"], red["frequency"], red["recency_days"],
               red["n_viewed"], red["n_processed"])  # fmt: skip
        want = (rec.n_purchases, rec.n_purchase_days, rec.frequency, rec.recency_days, rec.n_viewed, rec.n_processed)
        assert got == want, cid
        assert red["total_spend"] == pytest.approx(rec.total_spend, abs=1e-9), cid
        assert red["monetary_mean"] == pytest.approx(rec.monetary_mean, abs=1e-9), cid


def check_memberships(o: Outcome) -> None:
    """The Redis segment sets equal a replay of ``segment.changes`` by the documented consumer rule.

    Repeated change ids say the same (the id names the whole transition). The replay applies the
    contract of ``examples/segment_changes_consumer.py``: an rfm/behaviour entry replaces the
    customer's current segment, which absorbs the re-scored span replayed after a fault.
    """
    example = example_consumer()
    by_id: dict[str, dict[str, Any]] = {}
    state = example.Memberships()
    for c in o.changes:
        first = by_id.setdefault(c["change_id"], c)
        assert all(first[k] == c[k] for k in TRANSITION), c["change_id"]
        state.apply(c)
    rebuilt = {k: v for k, v in state.members.items() if v}
    assert rebuilt == o.memberships, {k: len(rebuilt.get(k, set()) ^ v) for k, v in o.memberships.items()}
    assert "rfm" in {family for family, _ in o.memberships}


ALERT_IDENTITY = ("meter_id", "kind", "action", "ts")


def check_alerts(o: Outcome, reference: Outcome) -> None:
    """No alert of the clean reference run is missing; repeats of an id report the same finding.

    A repeat (at-least-once replay) names the same meter, kind, action and event time; the meter's
    overall health and reasons in it are a snapshot that a replay, cut differently across the
    readings and heartbeats topics, may not reproduce (see ``stream.schemas.MeterAlert``).
    """
    by_id: dict[str, dict[str, Any]] = {}
    for a in o.alerts:
        first = by_id.setdefault(a["alert_id"], a)
        assert all(first[k] == a[k] for k in ALERT_IDENTITY), f"{a['alert_id']} repeated with another finding: " + str(
            {k: (first.get(k), a.get(k)) for k in ALERT_IDENTITY if first.get(k) != a.get(k)}
        )
    missing = reference.alert_ids() - o.alert_ids()
    assert not missing, f"{len(missing)} alerts of the clean run lost, e.g. {sorted(missing)[:5]}"
    # silence is judged against the partition's event clock, which depends on how polls cut the stream:
    # which meters look silent mid-stream varies run to run; that every meter ends silent does not
    final, want = o.final_clock_timed(), reference.final_clock_timed()
    assert final == want, f"{sum(final.get(k) != v for k, v in want.items())} meters end in another silence state"


def check_conservation(o: Outcome, reference: Outcome, expected_in: int) -> None:
    """Effectively-once state: every message counted exactly once, as in the clean run."""
    assert o.counters["messages"] == expected_in, o.counters
    assert o.counters == reference.counters, (
        f"checkpointed counters {o.counters} != clean run {reference.counters}; dead letters by reason: "
        f"{dict(o.deadletter_reasons)} (clean run: {dict(reference.deadletter_reasons)})"
    )


def check_outcome(o: Outcome, reference: Outcome, expected_in: int) -> None:
    """All the checks of the module docstring; conservation first (its failure explains the others)."""
    check_conservation(o, reference, expected_in)
    check_windows(o)
    check_rfm(o)
    check_memberships(o)
    check_alerts(o, reference)


# -- workers started together -------------------------------------------------------------------------
@contextlib.contextmanager
def workers_started_together(settings: Settings, log_dir: Path, n: int, **env: str) -> Iterator[list[Worker]]:
    """``n`` ``meterseg worker`` processes launched at once (so none runs alone through a pre-produced
    stream before the others join); stopped (SIGTERM, then SIGKILL) on exit, like ``running_worker``."""
    import subprocess
    import sys

    from tests.integration.harness import free_port, settings_env

    workers: list[Worker] = []
    try:
        for _ in range(n):
            web, metrics = free_port(), free_port()
            log_path = log_dir / f"worker-{web}.log"
            with log_path.open("wb") as out:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "meterseg.cli", "worker", "--web-port", str(web),
                     "--metrics-port", str(metrics)],
                    env=settings_env(settings, **env), stdout=out, stderr=subprocess.STDOUT,
                )  # fmt: skip
            workers.append(Worker(proc, web, metrics, log_path))
        for w in workers:
            wait_for(lambda: all(x.health().get("status") == "ok" or x.proc.poll() is not None for x in workers),
                     90, "workers start")  # fmt: skip
            assert w.proc.poll() is None, f"worker exited:\n{w.log_tail()}"
        yield workers
    finally:
        for w in workers:
            w.proc.terminate()
        for w in workers:
            try:
                w.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                w.proc.kill()
                w.proc.wait()


# -- recovery time ----------------------------------------------------------------------------------
def recovery_time(workers: Sequence[Worker], baseline: float, since: float, timeout_s: float = 120) -> float:
    """Seconds from ``since`` (a ``time.monotonic()``) until the checkpointed ingest state of ``workers``
    passes ``baseline``, the count it held when the fault was injected: the engine is moving forward
    again, past whatever it had to replay. Resolution: the workers' 1 s gauge tick."""

    def moved_on() -> bool:
        for w in workers:
            assert w.proc.poll() is None, f"worker exited with {w.proc.returncode}:\n{w.log_tail(3000)}"
        return consumed(workers) > baseline

    wait_for(moved_on, timeout_s, f"ingest state past {baseline:.0f} messages", 0.2)
    return time.monotonic() - since


def report(name: str, recovery_s: float, **details: Any) -> None:
    extra = "".join(f", {k} {v}" for k, v in details.items())
    print(f"\n[chaos] {name}: recovery {recovery_s:.1f} s{extra}", flush=True)


@contextlib.contextmanager
def timed(name: str) -> Iterator[None]:
    started = time.monotonic()
    yield
    print(f"\n[chaos] {name}: drill took {time.monotonic() - started:.1f} s", flush=True)
