"""A running worker fed nasty messages on every input topic: alive, every bad message dead-lettered, nothing lost.

The corpus and the worker come from ``tests/fuzz/conftest.py``. What is judged:

- the worker never crashed, never failed a batch or a timer step, and still
  reports itself healthy;
- every message (or envelope reading) the contract refuses is in
  ``meterseg.deadletter`` with a reason and an error, under its source topic,
  partition, offset and envelope index;
- conservation per topic from the worker's own counters: ingest units in =
  accepted + dead-lettered + duplicates; purchases, profiles and operations
  events consumed = applied + dead-lettered; registry records = applied +
  dead-lettered + tombstones.
"""

from __future__ import annotations

from collections import Counter

import pytest
from pydantic import BaseModel

from processors.features import DailyProfile
from stream.schemas import Bill, Feedback, Heartbeat, MaintenanceRequest, MeterInfo, Purchase
from tests.fuzz.conftest import FuzzRun
from tests.fuzz.payloads import contract_valid, readings_units
from tests.integration.harness import metric_value, wait_for

pytestmark = pytest.mark.integration

MODELS: dict[str, type[BaseModel]] = {
    "heartbeats": Heartbeat, "purchases": Purchase, "profiles": DailyProfile, "registry": MeterInfo,
    "maintenance": MaintenanceRequest, "feedback": Feedback, "bills": Bill,
}  # fmt: skip
HEADERS = ("reason", "error", "source_topic", "source_partition", "source_offset", "record")


def _dead(run: FuzzRun) -> dict[tuple[str, int, int, int], dict[str, bytes]]:
    """Dead letters by (source topic, partition, offset, record); each once (no restarts: no replays)."""
    out: dict[tuple[str, int, int, int], dict[str, bytes]] = {}
    for _, _, headers in run.deadletters:
        h = dict(headers)
        key = (h["source_topic"].decode(), int(h["source_partition"]), int(h["source_offset"]), int(h["record"]))
        assert key not in out, f"dead-lettered twice: {key}"
        out[key] = h
    return out


def test_worker_survives_the_corpus(fuzz_run: FuzzRun) -> None:
    run = fuzz_run
    log = run.log
    print(f"corpus: {Counter(p.topic for p in run.produced)}, consumed in {run.seconds:.1f} s")
    assert run.worker.proc.poll() is None, log[-4000:]
    assert run.health.get("status") == "ok", run.health
    assert metric_value(run.metrics, "meterseg_timer_errors_total") == 0, log[-4000:]
    for symptom in (
        "batch handler failed",
        "restoring the partitions",
        "Crashed",
        "timer part",
        "poll failed",
        "Traceback",
    ):
        assert symptom not in log, log[max(0, log.find(symptom) - 2000) : log.find(symptom) + 2000]


def test_every_dead_letter_names_its_reason_and_source(fuzz_run: FuzzRun) -> None:
    topics = {getattr(fuzz_run.settings.topics, t) for t in ("readings", *MODELS)}
    assert fuzz_run.deadletters
    for _, _, headers in fuzz_run.deadletters:
        h = dict(headers)
        assert set(HEADERS) <= set(h), h
        assert h["reason"] and h["error"], h
        assert h["source_topic"].decode() in topics, h
        assert int(h["source_partition"]) >= 0 and int(h["source_offset"]) >= 0, h


def test_every_bad_message_is_dead_lettered(fuzz_run: FuzzRun) -> None:
    run = fuzz_run
    dead = _dead(run)
    name = run.settings.topics
    missing = []
    for p in run.of("readings"):
        assert p.value is not None
        for record, _, ok in readings_units(p.value):
            key = (name.readings, p.partition, p.offset, record)
            if not ok and (key not in dead or dead[key]["reason"] == b"unknown_meter"):
                missing.append((key, p.value[:200]))
    for topic, model in MODELS.items():
        for p in run.of(topic):
            if p.value is None:  # the registry tombstone
                assert not any(k[:3] == (name.registry, p.partition, p.offset) for k in dead)
                continue
            key = (getattr(name, topic), p.partition, p.offset, -1)
            if contract_valid(model, p.value):
                if topic in ("purchases", "profiles", "registry", "maintenance", "feedback", "bills"):
                    assert key not in dead, (key, dead.get(key))  # valid: applied, never dead-lettered
            elif key not in dead:
                missing.append((key, p.value[:200]))
    assert not missing, f"{len(missing)} bad messages not dead-lettered, e.g. {missing[:5]}"


def test_conservation_per_topic(fuzz_run: FuzzRun) -> None:
    run = fuzz_run
    dead = _dead(run)
    name = run.settings.topics
    by_topic = Counter(k[0] for k in dead)

    # readings and heartbeats: units (readings inside envelopes count one each) from the worker's totals
    totals = run.health["totals"]
    units = sum(len(readings_units(p.value or b"")) for p in run.of("readings")) + len(run.of("heartbeats"))
    assert totals["messages"] == len(run.of("readings")) + len(run.of("heartbeats"))
    assert totals["accepted"] + totals["deadletter"] + totals["duplicates"] == units, totals
    assert by_topic[name.readings] + by_topic[name.heartbeats] == totals["deadletter"]
    assert totals["accepted"] > 0 and totals["duplicates"] > 0, totals  # the corpus holds valid and repeated data

    # purchases and profiles (segmentation pipeline): consumed = applied + duplicates + dead-lettered
    # (a purchase whose event id was applied before counts in no metric, as in the RFM state)
    purchases = len(run.of("purchases"))
    assert run.consumed("purchases") == purchases
    applied = metric_value(run.metrics, "meterseg_purchases_applied_total")
    seg = run.health["segmentation"]
    assert applied + seg["duplicates"] + by_topic[name.purchases] == purchases
    assert applied >= 6  # at least the valid purchase of every customer
    assert seg["deadletter"] == by_topic[name.purchases] + by_topic[name.profiles]

    def profiles_add_up() -> bool:  # the engine's own daily profiles keep coming: read both live
        metrics, health = run.worker.metrics(), run.worker.health()
        consumed = metric_value(metrics, "meterseg_events_consumed_total", {"topic": name.profiles})
        return bool(health["segmentation"]["messages"] == purchases + consumed)

    wait_for(profiles_add_up, 10, "segmentation messages = purchases + profiles consumed")

    # operations agents: consumed = applied + dead-lettered
    for topic in ("maintenance", "feedback", "bills"):
        n = len(run.of(topic))
        assert run.consumed(topic) == n, topic
        got = metric_value(run.metrics, "meterseg_events_applied_total", {"topic": getattr(name, topic)})
        assert got + by_topic[getattr(name, topic)] == n, topic

    # registry: applied + dead-lettered + tombstones
    registry = run.of("registry")
    valid = sum(p.value is not None and contract_valid(MeterInfo, p.value) for p in registry)
    tombstones = sum(p.value is None for p in registry)
    assert valid + by_topic[name.registry] + tombstones == len(registry)
    assert run.health["meters_known"] >= 6
