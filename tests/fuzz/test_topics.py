"""Fuzzed payloads of every input topic through the engine's pure processing paths (no Kafka, no Redis).

For readings (single and envelopes), heartbeats, purchases, daily profiles,
the meter registry and the operations topics (maintenance, feedback, bills):

- nothing raises, whatever the bytes;
- every rejected unit carries a reason, a message and its source (topic,
  partition, offset, and its index inside an envelope) - what the dead-letter
  record's headers are made of;
- exactly the units the contract refuses are rejected as malformed;
- conservation: units in = accepted + rejected + duplicates, also when the
  same poll is delivered twice;
- the state after the fuzz still checkpoints (JSON) and restores, and every
  output (windows, alerts, segment changes) satisfies its own contract.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

import orjson
import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from processors.columns import RawMessage, Reject
from processors.features import DailyProfile
from processors.ingest import IngestConfig, PartitionIngest
from processors.segmentation import PartitionSegmentation, SegmentationConfig
from stream.agents.operations import parse_events
from stream.pipelines.segmentation import change_payload
from stream.registry import apply_registration
from stream.schemas import (
    Bill,
    ConsumptionWindow,
    Feedback,
    MaintenanceRequest,
    MeterInfo,
    Purchase,
    SegmentChange,
)
from tests.fuzz.payloads import (
    CUSTOMERS,
    T0,
    contract_valid,
    heartbeats_message,
    heartbeats_units,
    iso,
    raw_bytes,
    readings_message,
    readings_units,
    registry,
)

FUZZ = settings(
    max_examples=200,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)
MALFORMED = {"invalid_json", "schema", "unsupported_version"}
REASONS = MALFORMED | {"unknown_meter", "too_late", "in_future"}
WALL = T0 + 86_400.0  # a day after the fuzzed events: the broker's and the worker's now
RULES = """
segments:
  - id: big_north
    name: Big spenders in the North
    expression: region == "North" and rfm.total_spend > 100
"""


def messages(topic: str, values: list[bytes]) -> list[RawMessage]:
    return [RawMessage(v, topic, 3, 100 + i, int(WALL * 1000)) for i, v in enumerate(values)]


def check_reject(rej: Reject, sources: dict[tuple[str, int], RawMessage]) -> None:
    """A reject is a complete dead letter: reason, message and the source record it came from."""
    assert rej.reason in REASONS, rej
    assert rej.message.strip(), rej
    src = sources[(rej.topic, rej.offset)]
    assert rej.partition == src.partition
    if rej.record < 0:
        assert rej.payload == src.value
    headers = dict(rej.headers())
    assert headers["reason"] == rej.reason.encode() and headers["error"]
    assert headers["source_topic"] == rej.topic.encode() and int(headers["source_offset"]) == rej.offset
    assert int(headers["source_partition"]) == rej.partition and int(headers["record"]) == rej.record


def formattable(epoch_s: float) -> None:
    """Output times must be ISO-formattable (the pipelines format them; a year past 9999 would crash them)."""
    datetime.fromtimestamp(epoch_s, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --------------------------------------------------------------------------- readings and heartbeats
@FUZZ
@given(
    readings=st.lists(readings_message(), max_size=6),
    heartbeats=st.lists(heartbeats_message(), max_size=6),
    deliveries=st.integers(1, 2),
)
@example(  # the last interval the contract takes: its windows end in 2101 (outputs may pass the input range)
    readings=[orjson.dumps({"meter_id": "M0000000", "customer_id": "C0000000", "interval_start": "2100-12-31T23:45:00Z",
                            "kwh_import": 0.1, "register_kwh": 1.0, "voltage": 230.0, "seq": 0})],
    heartbeats=[],
    deliveries=1,
)  # fmt: skip
def test_ingest_accounts_for_every_reading_and_heartbeat(
    readings: list[bytes], heartbeats: list[bytes], deliveries: int
) -> None:
    reg = registry()
    ingest = PartitionIngest(reg, IngestConfig())
    r_msgs, h_msgs = messages("meter.readings", readings), messages("meter.heartbeats", heartbeats)
    sources = {(m.topic, m.offset): m for m in r_msgs + h_msgs}
    units = {(m.offset, rec): ok for m in r_msgs for rec, _, ok in readings_units(m.value)}
    bad_readings = {k for k, ok in units.items() if not ok}
    h_units = {(m.offset, rec): ok for m in h_msgs for rec, _, ok in heartbeats_units(m.value)}
    bad_heartbeats = {k for k, ok in h_units.items() if not ok}
    for _ in range(deliveries):  # a second delivery of the same poll: duplicates or the same rejects
        out = ingest.process((r_msgs, h_msgs), wall=WALL)
        assert out.accepted + len(out.rejects) + out.duplicates == len(units) + len(h_units)
        for rej in out.rejects:
            check_reject(rej, sources)
            event(f"reject: {rej.reason}")
        if out.accepted:
            event("some accepted")
        malformed = {(r.topic, r.offset, r.record) for r in out.rejects if r.reason in MALFORMED}
        assert {(o, rec) for t, o, rec in malformed if t == "meter.readings"} == bad_readings
        assert {(o, rec) for t, o, rec in malformed if t == "meter.heartbeats"} == bad_heartbeats
        for alert in out.alerts:
            formattable(alert.at)
        for closed in out.closed:
            for record in closed.to_records():
                ConsumptionWindow.model_validate(record)
    totals = ingest.totals
    assert totals["accepted"] + totals["deadletter"] + totals["duplicates"] == deliveries * (len(units) + len(h_units))
    # the event clock runs on a year: windows close, silence is judged, times stay formattable
    later = ingest.on_timer(wall=WALL + 365 * 86_400, caught_up=True)
    for alert in later.alerts:
        formattable(alert.at)
    for closed in later.closed:
        for record in closed.to_records():
            ConsumptionWindow.model_validate(record)
    # the checkpoint is JSON and restores to the same state
    state = orjson.loads(orjson.dumps(ingest.snapshot()))
    assert PartitionIngest.restore(state, reg).snapshot() == ingest.snapshot()


def test_timestamps_beyond_the_datetime_range_are_dead_letters_not_crashes() -> None:
    """``9999-12-31T23:59:59-01:00`` is the year 10000 in UTC: it used to raise OverflowError from the contract."""
    reading = {
        "meter_id": "M0000001", "customer_id": "C0000001", "interval_minutes": 15, "kwh_import": 0.2,
        "register_kwh": 10.0, "voltage": 230.0, "seq": 1,
    }  # fmt: skip
    stamps = ["9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+14:00", "2101-01-01T00:00:00Z", "1969-12-31T23:59Z"]
    values = [orjson.dumps({**reading, "interval_start": ts}) for ts in stamps]
    beats = [orjson.dumps({"meter_id": "M0000001", "customer_id": "C1", "ts": ts, "status": "ok"}) for ts in stamps]
    envelope = orjson.dumps({"batch_id": "b", "sent_at": stamps[0], "readings": [reading]})
    ingest = PartitionIngest(registry(), IngestConfig())
    out = ingest.process((messages("meter.readings", [*values, envelope]), messages("meter.heartbeats", beats)))
    assert out.accepted == 0
    assert [r.reason for r in out.rejects] == ["schema"] * (2 * len(stamps) + 1)
    assert all("timestamp" in r.message for r in out.rejects)


def test_one_far_future_reading_does_not_make_every_later_reading_late() -> None:
    def reading(ts: str, seq: int) -> bytes:
        return orjson.dumps({
            "meter_id": "M0000001", "customer_id": "C0000001", "interval_start": ts, "kwh_import": 0.2,
            "register_kwh": 10.0 + seq, "voltage": 230.0, "seq": seq,
        })  # fmt: skip

    ingest = PartitionIngest(registry(), IngestConfig())
    far = ingest.process((messages("meter.readings", [reading("2100-12-31T23:45:00Z", 1)]), []), wall=WALL)
    assert [r.reason for r in far.rejects] == ["in_future"]  # WindowConfig.max_future_s (7 days) past the broker time
    out = ingest.process((messages("meter.readings", [reading(iso(T0), 2)]), []), wall=WALL)
    assert out.accepted_readings == 1, [r.reason for r in out.rejects]


# --------------------------------------------------------------------------- purchases and profiles
def profile(day: str, kwh: list[float]) -> bytes:
    return orjson.dumps({"customer_id": "C0000001", "day": day, "kwh_import": kwh})


@FUZZ
@given(
    purchases=st.lists(raw_bytes("purchases"), max_size=10),
    profiles=st.lists(raw_bytes("profiles"), max_size=4),
    deliveries=st.integers(1, 2),
)
@example(purchases=[], profiles=[profile("9999-12-31", [0.5] * 24)], deliveries=1)  # the clock ran past 9999
@example(purchases=[], profiles=[profile("2026-01-02", [5e-324] + [0.0] * 23)], deliveries=1)  # ZeroDivisionError
@example(purchases=[], profiles=[profile(f"2026-01-0{d}", [1e200] + [0.5] * 23) for d in (2, 3)], deliveries=1)
def test_segmentation_accounts_for_every_purchase_and_profile(
    purchases: list[bytes], profiles: list[bytes], deliveries: int
) -> None:
    seg = PartitionSegmentation(SegmentationConfig(rules_text=RULES))
    p_msgs, pr_msgs = messages("customer.purchases", purchases), messages("meterseg.profiles", profiles)
    sources = {(m.topic, m.offset): m for m in p_msgs + pr_msgs}
    static = {c: {"region": "North", "tariff": "prepaid", "has_export": False} for c in CUSTOMERS}
    bad_purchases = {m.offset for m in p_msgs if not contract_valid(Purchase, m.value)}
    bad_profiles = {m.offset for m in pr_msgs if not contract_valid(DailyProfile, m.value)}
    outputs = []
    for _ in range(deliveries):
        out = seg.process((p_msgs, pr_msgs), static=static, wall=WALL)
        outputs.append(out)
        # every purchase is applied, a duplicate of an applied event id, or dead-lettered: invalid, or dated
        # beyond the configured skew after its broker timestamp (in_future)
        rejected = {r.offset for r in out.rejects if r.topic == "customer.purchases"}
        assert sum(out.purchases.values()) + out.duplicates + len(rejected) == len(p_msgs)
        assert out.profiles + len(bad_profiles) == len(pr_msgs)
        assert bad_purchases <= rejected
        assert {r.offset for r in out.rejects if r.topic == "customer.purchases" and r.reason == "in_future"} == {
            m.offset for m in p_msgs if m.offset not in bad_purchases
            and Purchase.model_validate_json(m.value).ts.timestamp() > m.timestamp_ms / 1000 + 7 * 86_400
        }  # fmt: skip
        assert {r.offset for r in out.rejects if r.topic == "meterseg.profiles"} == bad_profiles
        for rej in out.rejects:
            assert rej.reason in {"invalid_json", "schema", "in_future"}
            check_reject(rej, sources)
            event(f"reject: {rej.reason}")
        if out.purchases or out.profiles:
            event("some accepted")
        if out.changes:
            event("segment changes")
        for features in out.features:  # they feed the fleet-wide behaviour model: one NaN would poison it
            assert all(math.isfinite(v) for v in features.values.values()), features
    # customers age a year: RFM re-scores; every change is a valid segment.changes record
    outputs.append(seg.rescore(wall=WALL + 365 * 86_400, caught_up=True))
    for out in outputs:
        for change in out.changes:
            SegmentChange.model_validate(change_payload(change))
    state = orjson.loads(orjson.dumps(seg.snapshot()))
    assert PartitionSegmentation.restore(state).snapshot() == seg.snapshot()


# --------------------------------------------------------------------------- registry
@FUZZ
@given(values=st.lists(st.one_of(raw_bytes("registry"), st.none()), max_size=12))
def test_registry_applies_valid_registrations_and_names_the_others(values: list[bytes | None]) -> None:
    reg = registry()
    known = len(reg)
    applied = invalid = 0
    for value in values:
        error = apply_registration(reg, value)
        if value is None:  # a tombstone: ignored
            assert error is None
        elif contract_valid(MeterInfo, value):
            assert error is None
            applied += 1
        else:
            assert error, value
            invalid += 1
    assert applied + invalid + values.count(None) == len(values)
    assert len(reg) >= known
    for slot in range(len(reg)):
        orjson.dumps(reg.info(slot))  # the registry goes into checkpoints


# --------------------------------------------------------------------------- operations agents
@pytest.mark.parametrize(
    ("topic", "model"),
    [("maintenance", MaintenanceRequest), ("feedback", Feedback), ("bills", Bill)],
)
@settings(FUZZ, max_examples=100)
@given(data=st.data())
def test_operations_agents_parse_or_dead_letter_every_event(
    topic: str, model: type[BaseModel], data: st.DataObject
) -> None:
    values = data.draw(st.lists(raw_bytes(topic), max_size=10))
    msgs = messages(f"ops.{topic}", values)
    rejects: list[Reject] = []
    parsed: list[BaseModel] = parse_events(model, msgs, rejects)
    assert len(parsed) + len(rejects) == len(msgs)
    assert {r.offset for r in rejects} == {m.offset for m in msgs if not contract_valid(model, m.value)}
    sources = {(m.topic, m.offset): m for m in msgs}
    for rej in rejects:
        assert rej.reason in {"invalid_json", "schema"}
        check_reject(rej, sources)
    for item in parsed:  # what the agents compute from an event must not raise either
        if isinstance(item, MaintenanceRequest) and item.resolved_at is not None:
            (item.resolved_at - item.requested_at).total_seconds()
        orjson.dumps(item.model_dump(mode="json"))
