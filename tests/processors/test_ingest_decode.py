"""The fast decoders accept exactly what the pydantic contracts accept, with the same values."""

from __future__ import annotations

import json
import math
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from test_ingest_support import T0, envelope_payloads, iso, make_registry, make_rows, single_payloads

from processors.columns import RawMessage, epoch_seconds
from processors.decode import HeartbeatDecoder, ReadingDecoder
from stream.schemas import Heartbeat, Reading

REGISTRY = make_registry(4)
KNOWN = ["M0000000", "M0000001", "M0000002"]

_MISSING = object()
ACCEPTED: list[bool] = []

wrong_types = st.one_of(
    st.none(),
    st.booleans(),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=1),
    st.text(max_size=6),
)
numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(-2e6, 2e6),
    st.integers(-(2**65), 2**65),
    st.sampled_from([0, 1, -1, 1e6, -1e6, 1e12, 1e5, 100000.5, 1.0, -1.0, -1.0000001, 2**63, 2**64 - 1]),
    st.sampled_from(["1.5", "NaN", "inf", " 2 ", "1e3"]),
    wrong_types,
)
timestamps = st.one_of(
    st.sampled_from(
        [
            "2026-01-01T00:00:00Z",
            "2026-01-01T00:15:00+00:00",
            "2026-01-01T01:00:00+01:00",
            "2026-03-29T01:45:00.5Z",
            "2026-01-01T00:00:00",  # naive
            "2026-01-01",
            "2026-01-01 00:00:00Z",
            "2026-01-01T24:00:00Z",
            "2026-02-30T00:00:00Z",
            "20260101T000000Z",
            "2026-01-01T00:00:00-23:59",
            "",
            "yesterday",
        ]
    ),
    st.integers(-(10**12), 10**12),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    wrong_types,
)
ids = st.one_of(st.sampled_from([*KNOWN, "M9", "bad id", "", "x" * 65, "ü", "M1\n", "C0000000"]), wrong_types)


def field(values: st.SearchStrategy[Any], valid: st.SearchStrategy[Any]) -> tuple[Any, Any]:
    """A field's valid values and its mutations (missing is always a possible mutation)."""
    return valid, st.one_of(values, st.just(_MISSING))


def mutated(spec: dict[str, tuple[Any, Any]]) -> st.SearchStrategy[dict[str, Any]]:
    """A valid record with 0-3 of its fields replaced by a mutation (so accept and reject both occur)."""

    @st.composite
    def build(draw: st.DrawFn) -> dict[str, Any]:
        names = list(spec)
        bad = draw(st.sets(st.sampled_from(names), max_size=3))
        return {k: draw(spec[k][1] if k in bad else spec[k][0]) for k in names}

    return build()


reading_dicts = mutated(
    {
        "meter_id": field(ids, st.sampled_from(KNOWN)),
        "customer_id": field(ids, st.sampled_from(["C0000000", "C1", "c.a:b-c_d"])),
        "interval_start": field(timestamps, st.sampled_from(["2026-01-01T00:00:00Z", "2026-01-01T00:15:00Z"])),
        "interval_minutes": field(
            st.one_of(st.sampled_from([15.0, 45, 0, "15", 30.0]), numbers), st.sampled_from([15, 30, 60])
        ),
        "kwh_import": field(numbers, st.floats(-5, 50)),
        "kwh_export": field(numbers, st.floats(0, 5)),
        "register_kwh": field(numbers, st.floats(0, 1e6)),
        "voltage": field(numbers, st.floats(200, 260)),
        "power_factor": field(numbers, st.floats(-1, 1)),
        "seq": field(st.one_of(numbers, st.sampled_from([3.0, 3.5, -0.0])), st.integers(0, 10**6)),
        "schema_version": field(st.sampled_from([2, 0, 1.0, "1", True, None]), st.just(1)),
        "extra": (st.just(_MISSING), st.integers()),
    }
)


def strip(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not _MISSING}


def expected_reading(payload: bytes) -> dict[str, Any] | None:
    try:
        r = Reading.model_validate_json(payload)
    except ValidationError:
        return None
    return {
        "meter_id": r.meter_id,
        "customer_id": r.customer_id,
        "interval_start": epoch_seconds(r.interval_start),
        "interval_minutes": r.interval_minutes,
        "kwh_import": r.kwh_import,
        "kwh_export": r.kwh_export,
        "register_kwh": r.register_kwh,
        "voltage": r.voltage,
        "power_factor": r.power_factor,
        "seq": r.seq,
    }


def same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return all(a[k] == b[k] or (isinstance(a[k], float) and math.isclose(a[k], b[k], rel_tol=0, abs_tol=0)) for k in a)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(reading_dicts)
def test_single_reading_matches_pydantic(record: dict[str, Any]) -> None:
    payload = json.dumps(strip(record)).encode()  # json allows NaN/Infinity tokens, like pydantic
    want = expected_reading(payload)
    out = ReadingDecoder(REGISTRY).process([payload])
    if want is not None and want["seq"] >= 2**63:
        want = None  # documented: beyond int64 is rejected
        assert out.rejects[0].reason == "schema"
    ACCEPTED.append(want is not None)
    if want is None:
        assert len(out.readings) == 0
        assert len(out.rejects) == 1 and out.rejects[0].reason in {"schema", "invalid_json", "unsupported_version"}
        assert out.rejects[0].payload == payload
        return
    if want["meter_id"] not in KNOWN:
        assert [r.reason for r in out.rejects] == ["unknown_meter"]
        return
    assert out.rejects == []
    got = out.readings.to_rows()
    assert len(got) == 1 and got[0] == want


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(reading_dicts, min_size=1, max_size=8))
def test_envelope_readings_match_pydantic_one_by_one(records: list[dict[str, Any]]) -> None:
    recs = [strip(r) for r in records]
    payload = json.dumps({"batch_id": "b1", "sent_at": iso(T0), "readings": recs}).encode()
    try:
        orjson.loads(payload)
    except orjson.JSONDecodeError:  # NaN/Infinity tokens: the whole block is not JSON
        out = ReadingDecoder(REGISTRY).process([payload])
        assert [r.reason for r in out.rejects] == ["invalid_json"] and len(out.readings) == 0
        return
    out = ReadingDecoder(REGISTRY).process([RawMessage(payload, "meter.readings", 3, 42)])
    wants = [expected_reading(json.dumps(r).encode()) for r in recs]
    accepted = [w for w in wants if w is not None and w["meter_id"] in KNOWN and w["seq"] < 2**63]
    assert out.readings.to_rows() == accepted
    assert len(out.rejects) == len(recs) - len(accepted)
    assert all(r.partition == 3 and r.offset == 42 and r.record >= 0 for r in out.rejects)
    assert out.records == len(recs) and out.envelopes == 1
    assert out.records + out.unparsed == len(out.readings) + len(out.rejects)


@pytest.mark.parametrize(
    ("envelope", "reason"),
    [
        ({"batch_id": "", "sent_at": iso(T0), "readings": [{}]}, "schema"),
        ({"batch_id": "b", "sent_at": "2026-01-01T00:00:00", "readings": [{}]}, "schema"),
        ({"batch_id": "b", "sent_at": iso(T0), "readings": []}, "schema"),
        ({"batch_id": "b", "sent_at": iso(T0), "readings": {}}, "schema"),
        ({"batch_id": "b", "sent_at": iso(T0), "readings": [{}], "schema_version": 2}, "unsupported_version"),
    ],
)
def test_bad_envelope_header_rejects_whole_message(envelope: dict[str, Any], reason: str) -> None:
    payload = orjson.dumps(envelope)
    out = ReadingDecoder(REGISTRY).process([payload])
    assert len(out.readings) == 0 and [r.reason for r in out.rejects] == [reason]
    assert out.rejects[0].payload == payload


def test_invalid_json_and_non_object() -> None:
    raw = [RawMessage(v, offset=i) for i, v in enumerate([b"{", b"\xff\xfe", b"42", b"[]", b"NaN"])]
    out = ReadingDecoder(REGISTRY).process(raw)
    reasons = [r.reason for r in sorted(out.rejects, key=lambda r: r.offset)]
    assert reasons == ["invalid_json", "invalid_json", "schema", "schema", "invalid_json"]


def test_bulk_values_roundtrip_single_and_envelope() -> None:
    rows = make_rows(4, 10)
    dec = ReadingDecoder(REGISTRY)
    a = dec.process(single_payloads(rows)).readings.to_rows()
    b = dec.process(envelope_payloads(rows, 7)).readings.to_rows()
    assert a == b == rows


heartbeat_dicts = mutated(
    {
        "meter_id": field(ids, st.sampled_from(KNOWN)),
        "customer_id": field(ids, st.just("C0000001")),
        "ts": field(timestamps, st.just("2026-01-01T00:05:00Z")),
        "status": field(
            st.one_of(st.sampled_from(["OK", "down", "fault "]), wrong_types),
            st.sampled_from(["ok", "degraded", "fault"]),
        ),
        "error_codes": field(
            st.one_of(
                st.lists(st.text(max_size=3), max_size=40), st.lists(st.integers(), min_size=1, max_size=2), wrong_types
            ),
            st.lists(st.sampled_from(["E1", "E22"]), max_size=3),
        ),
        "signal_dbm": field(numbers, st.floats(-120, -30)),
        "battery_pct": field(numbers, st.floats(0, 100)),
        "firmware": field(st.one_of(st.just("x" * 33), wrong_types), st.just("2.1.0")),
        "clock_offset_s": field(numbers, st.floats(-600, 600)),
        "schema_version": field(st.sampled_from([2, 1.0, "1"]), st.just(1)),
    }
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(heartbeat_dicts)
def test_heartbeat_matches_pydantic(record: dict[str, Any]) -> None:
    payload = json.dumps(strip(record)).encode()
    try:
        hb: Heartbeat | None = Heartbeat.model_validate_json(payload)
    except ValidationError:
        hb = None
    out = HeartbeatDecoder(REGISTRY).process([payload])
    if hb is None:
        assert len(out.heartbeats) == 0 and out.rejects[0].reason in {"schema", "invalid_json", "unsupported_version"}
        return
    if hb.meter_id not in KNOWN:
        assert [r.reason for r in out.rejects] == ["unknown_meter"]
        return
    assert out.rejects == []
    h = out.heartbeats
    assert h.registry.meter_ids[int(h.meter[0])] == hb.meter_id
    assert int(h.ts[0]) == epoch_seconds(hb.ts)
    assert ("ok", "degraded", "fault")[int(h.status[0])] == hb.status
    assert h.error_codes[0] == tuple(hb.error_codes) and int(h.n_error_codes[0]) == len(hb.error_codes)
    assert (float(h.signal_dbm[0]), float(h.battery_pct[0]), float(h.clock_offset_s[0])) == (
        hb.signal_dbm, hb.battery_pct, hb.clock_offset_s,
    )  # fmt: skip
    assert h.firmware[0] == hb.firmware


def test_generators_exercise_both_outcomes() -> None:
    """Guard against a vacuous property test: both accepted and rejected payloads were drawn."""
    if len(ACCEPTED) >= 50:
        assert 0.1 < sum(ACCEPTED) / len(ACCEPTED) < 0.9


def test_bulk_heartbeats_match_pydantic() -> None:
    docs = [
        {"meter_id": KNOWN[i % 3], "customer_id": "C1", "ts": iso(T0 + 60 * i), "status": ("ok", "degraded", "fault")[i % 3],
         "error_codes": [["E1", "E2"], [], ["E_VOLTAGE", "X"]][i % 3], "signal_dbm": -60.5 - i % 7,
         "battery_pct": 50 + i % 50, "firmware": f"1.{i % 4}.0", "clock_offset_s": (i % 11) * 30.0}
        for i in range(300)
    ]  # fmt: skip
    payloads = [orjson.dumps(d) for d in docs]
    payloads[17] = b'{"broken'
    out = HeartbeatDecoder(REGISTRY).process(payloads)
    assert [r.reason for r in out.rejects] == ["invalid_json"]
    h = out.heartbeats
    want = [Heartbeat.model_validate_json(p) for i, p in enumerate(payloads) if i != 17]
    assert len(h) == len(want) == 299
    assert list(h.error_codes) == [tuple(w.error_codes) for w in want]
    assert h.ts.tolist() == [epoch_seconds(w.ts) for w in want]
    assert list(h.firmware) == [w.firmware for w in want]
    assert h.battery_pct.tolist() == [w.battery_pct for w in want]
    assert [("ok", "degraded", "fault")[s] for s in h.status.tolist()] == [w.status for w in want]


@settings(max_examples=200, deadline=None, derandomize=True)
@given(
    st.lists(
        st.dictionaries(st.sampled_from(["a", "b", "c", "x"]), st.integers(), min_size=0, max_size=4),
        min_size=1,
        max_size=80,
    )
)
def test_column_extraction_equals_a_get_per_field(records: list[dict[str, Any]]) -> None:
    """The transposing fast path (regular records, odd ones put back in place) equals plain ``dict.get``."""
    from processors.decode import _extract

    defaults = {"a": None, "b": 0, "c": "d"}
    regular = [{"a": i, "b": 2 * i, "c": 3} for i in range(len(records))]
    mixed = [r if i % 3 else regular[i] for i, r in enumerate(records)]
    for recs in (records, regular, mixed):
        assert _extract(recs, defaults) == {f: [r.get(f, d) for r in recs] for f, d in defaults.items()}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(heartbeat_dicts, min_size=1, max_size=8))
def test_envelope_heartbeats_match_single_messages(records: list[dict[str, Any]]) -> None:
    """A HeartbeatBatch decodes to what its heartbeats give one per message; a bad one rejects only itself."""
    recs = [strip(r) for r in records]
    payload = json.dumps({"batch_id": "h1", "sent_at": iso(T0), "heartbeats": recs}).encode()
    try:
        orjson.loads(payload)
    except orjson.JSONDecodeError:  # NaN/Infinity tokens: the whole block is not JSON
        out = HeartbeatDecoder(REGISTRY).process([payload])
        assert [r.reason for r in out.rejects] == ["invalid_json"] and len(out.heartbeats) == 0
        return
    out = HeartbeatDecoder(REGISTRY).process([RawMessage(payload, "meter.heartbeats", 3, 42)])
    singles = HeartbeatDecoder(REGISTRY).process([json.dumps(r).encode() for r in recs])
    a, b = out.heartbeats, singles.heartbeats
    assert a.meter.tolist() == b.meter.tolist() and a.ts.tolist() == b.ts.tolist()
    assert a.status.tolist() == b.status.tolist() and list(a.error_codes) == list(b.error_codes)
    assert a.signal_dbm.tolist() == b.signal_dbm.tolist() and list(a.firmware) == list(b.firmware)
    assert a.message.tolist() == [0] * len(a)
    assert sorted(r.reason for r in out.rejects) == sorted(r.reason for r in singles.rejects)
    assert all(r.partition == 3 and r.offset == 42 and 0 <= r.record < len(recs) for r in out.rejects)
    for r in out.rejects:  # the dead letter carries the heartbeat itself, not the whole block
        assert orjson.loads(r.payload) == orjson.loads(json.dumps(recs[r.record]))
    assert out.records == len(recs) and out.envelopes == 1 and out.unparsed == 0
    assert out.records + out.unparsed == len(out.heartbeats) + len(out.rejects)


@pytest.mark.parametrize(
    ("envelope", "reason"),
    [
        ({"batch_id": "", "sent_at": iso(T0), "heartbeats": [{}]}, "schema"),
        ({"batch_id": "b", "sent_at": "yesterday", "heartbeats": [{}]}, "schema"),
        ({"batch_id": "b", "sent_at": iso(T0), "heartbeats": []}, "schema"),
        ({"batch_id": "b", "sent_at": iso(T0), "heartbeats": "x"}, "schema"),
        ({"batch_id": "b", "sent_at": iso(T0), "heartbeats": [{}], "schema_version": 3}, "unsupported_version"),
    ],
)
def test_bad_heartbeat_envelope_header_rejects_whole_message(envelope: dict[str, Any], reason: str) -> None:
    payload = orjson.dumps(envelope)
    good = orjson.dumps({"meter_id": KNOWN[0], "customer_id": "C1", "ts": iso(T0), "status": "ok"})
    out = HeartbeatDecoder(REGISTRY).process([good, payload])
    assert len(out.heartbeats) == 1 and [r.reason for r in out.rejects] == [reason]
    assert out.rejects[0].payload == payload and out.rejects[0].record == -1
    assert out.records + out.unparsed == len(out.heartbeats) + len(out.rejects)


_BLOCK_FIELDS = ("meter_id", "customer_id", "interval_start", "interval_minutes", "kwh_import", "kwh_export",
                 "register_kwh", "voltage", "power_factor", "seq")  # fmt: skip
_BLOCK_DEFAULTS = {"interval_minutes": 15, "kwh_export": 0.0, "power_factor": 1.0}


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(reading_dicts, min_size=1, max_size=8), st.sets(st.sampled_from(sorted(_BLOCK_DEFAULTS))))
def test_block_decodes_as_the_envelope_of_the_same_readings(records: list[dict[str, Any]], left_out: set[str]) -> None:
    """A ReadingBlock gives what a ReadingBatch of the same readings gives: same readings, same rejects per record."""
    recs = [strip(r) for r in records]
    columns = {
        f: [r.get(f, _BLOCK_DEFAULTS.get(f)) for r in recs]
        for f in _BLOCK_FIELDS
        if not (f in left_out and all(f not in r for r in recs))  # an optional column may be left out
    }
    rows = [{f: col[i] for f, col in columns.items()} for i in range(len(recs))]
    block = json.dumps({"batch_id": "b1", "sent_at": iso(T0), "columns": columns}).encode()
    batch = json.dumps({"batch_id": "b1", "sent_at": iso(T0), "readings": rows}).encode()
    try:
        orjson.loads(block)
    except orjson.JSONDecodeError:  # NaN/Infinity tokens
        out = ReadingDecoder(REGISTRY).process([block])
        assert [r.reason for r in out.rejects] == ["invalid_json"] and len(out.readings) == 0
        return
    got = ReadingDecoder(REGISTRY).process([RawMessage(block, "meter.readings", 1, 9)])
    want = ReadingDecoder(REGISTRY).process([RawMessage(batch, "meter.readings", 1, 9)])
    assert got.readings.to_rows() == want.readings.to_rows()
    assert got.readings.batch_ids == want.readings.batch_ids == ["b1"]
    key = lambda r: (r.record, r.reason)  # noqa: E731
    assert sorted(map(key, got.rejects)) == sorted(map(key, want.rejects))
    for g, w in zip(sorted(got.rejects, key=key), sorted(want.rejects, key=key), strict=True):
        assert orjson.loads(g.payload) == orjson.loads(w.payload)  # the reading's own JSON, not the block
    assert (got.records, got.envelopes, got.unparsed) == (len(recs), 1, 0)


def test_block_and_single_readings_keep_message_order() -> None:
    rows = make_rows(3, 4)
    singles = single_payloads(rows)
    cols: dict[str, list[Any]] = {f: [] for f in _BLOCK_FIELDS}
    for r in (orjson.loads(p) for p in singles[4:8]):
        for f in _BLOCK_FIELDS:
            cols[f].append(r[f])
    block = orjson.dumps({"batch_id": "blk", "sent_at": iso(T0), "columns": cols})
    out = ReadingDecoder(REGISTRY).process([*singles[:4], block, *singles[8:]])
    assert out.readings.to_rows() == rows
    assert out.readings.message.tolist() == [0, 1, 2, 3, 4, 4, 4, 4, *range(5, 5 + len(rows) - 8)]
    assert out.readings.record.tolist()[4:8] == [0, 1, 2, 3]


_GOOD_COLUMNS = {"meter_id": ["M0000000"], "customer_id": ["C1"], "interval_start": [iso(T0)], "kwh_import": [1.0],
                 "register_kwh": [5.0], "voltage": [230.0], "seq": [1]}  # fmt: skip


@pytest.mark.parametrize(
    ("block", "reason"),
    [
        ({"batch_id": "b", "sent_at": iso(T0), "columns": []}, "schema"),
        ({"batch_id": "b", "sent_at": iso(T0), "columns": {**_GOOD_COLUMNS, "meter_id": []}}, "schema"),
        ({"batch_id": "b", "sent_at": iso(T0), "columns": {**_GOOD_COLUMNS, "voltage": [230.0, 231.0]}}, "schema"),
        ({"batch_id": "b", "sent_at": iso(T0), "columns": {**_GOOD_COLUMNS, "kwh_export": [0.0, 0.0]}}, "schema"),
        ({"batch_id": "b", "sent_at": iso(T0), "columns": {k: v for k, v in _GOOD_COLUMNS.items() if k != "seq"}},
         "schema"),
        ({"batch_id": "b", "sent_at": iso(T0), "columns": {**_GOOD_COLUMNS, "seq": 1}}, "schema"),
        ({"batch_id": "", "sent_at": iso(T0), "columns": _GOOD_COLUMNS}, "schema"),
        ({"batch_id": "b", "sent_at": "noon", "columns": _GOOD_COLUMNS}, "schema"),
        ({"batch_id": "b", "sent_at": iso(T0), "columns": _GOOD_COLUMNS, "schema_version": 2}, "unsupported_version"),
    ],
)
def test_bad_block_shape_rejects_whole_message(block: dict[str, Any], reason: str) -> None:
    payload = orjson.dumps(block)
    out = ReadingDecoder(REGISTRY).process([payload, payload])
    assert len(out.readings) == 0 and [r.reason for r in out.rejects] == [reason, reason]
    assert out.rejects[0].payload == payload and out.rejects[0].record == -1 and out.rejects[0].message
    assert out.records + out.unparsed == len(out.readings) + len(out.rejects)


def test_good_block_shape_with_null_optional_column() -> None:
    payload = orjson.dumps({"batch_id": "b", "sent_at": iso(T0), "columns": {**_GOOD_COLUMNS, "kwh_export": None}})
    out = ReadingDecoder(REGISTRY).process([payload])
    assert out.rejects == [] and out.readings.kwh_export.tolist() == [0.0]


_HB_BLOCK_FIELDS = ("meter_id", "customer_id", "ts", "status", "error_codes", "signal_dbm", "battery_pct", "firmware",
                    "clock_offset_s")  # fmt: skip
_HB_DEFAULTS = {"error_codes": [], "signal_dbm": -70.0, "battery_pct": 100.0, "firmware": "1.0.0", "clock_offset_s": 0.0}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(heartbeat_dicts, min_size=1, max_size=8), st.sets(st.sampled_from(sorted(_HB_DEFAULTS))))
def test_heartbeat_block_decodes_as_the_envelope_of_the_same_heartbeats(
    records: list[dict[str, Any]], left_out: set[str]
) -> None:
    recs = [strip(r) for r in records]
    columns = {
        f: [r.get(f, _HB_DEFAULTS.get(f)) for r in recs]
        for f in _HB_BLOCK_FIELDS
        if not (f in left_out and all(f not in r for r in recs))
    }
    rows = [{f: col[i] for f, col in columns.items()} for i in range(len(recs))]
    block = json.dumps({"batch_id": "k1", "sent_at": iso(T0), "columns": columns}).encode()
    batch = json.dumps({"batch_id": "k1", "sent_at": iso(T0), "heartbeats": rows}).encode()
    try:
        orjson.loads(block)
    except orjson.JSONDecodeError:
        return
    got = HeartbeatDecoder(REGISTRY).process([RawMessage(block, "meter.heartbeats", 2, 5)])
    want = HeartbeatDecoder(REGISTRY).process([RawMessage(batch, "meter.heartbeats", 2, 5)])
    a, b = got.heartbeats, want.heartbeats
    assert a.meter.tolist() == b.meter.tolist() and a.ts.tolist() == b.ts.tolist()
    assert a.status.tolist() == b.status.tolist() and list(a.error_codes) == list(b.error_codes)
    assert a.signal_dbm.tolist() == b.signal_dbm.tolist() and list(a.firmware) == list(b.firmware)
    assert a.battery_pct.tolist() == b.battery_pct.tolist() and a.clock_offset_s.tolist() == b.clock_offset_s.tolist()
    key = lambda r: (r.record, r.reason)  # noqa: E731
    assert sorted(map(key, got.rejects)) == sorted(map(key, want.rejects))
    for g, w in zip(sorted(got.rejects, key=key), sorted(want.rejects, key=key), strict=True):
        assert orjson.loads(g.payload) == orjson.loads(w.payload)
    assert (got.records, got.envelopes, got.unparsed) == (len(recs), 1, 0)


def test_bad_heartbeat_block_shape_rejects_whole_message() -> None:
    cols = {"meter_id": [KNOWN[0], KNOWN[1]], "customer_id": ["C1", "C1"], "ts": [iso(T0)] * 2, "status": ["ok"]}
    payload = orjson.dumps({"batch_id": "k", "sent_at": iso(T0), "columns": cols})
    out = HeartbeatDecoder(REGISTRY).process([payload])
    assert len(out.heartbeats) == 0 and [(r.reason, r.record) for r in out.rejects] == [("schema", -1)]
    assert "status" in out.rejects[0].message and out.rejects[0].payload == payload
