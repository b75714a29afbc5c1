"""Nasty payloads for every input topic (hypothesis strategies and a seeded corpus), and the oracles they are judged by.

A payload starts as a valid record of its topic's contract (:mod:`stream.schemas`)
and is then damaged: fields replaced by values of the wrong type, huge numbers,
NaN and infinities, unicode, timestamps far in the past and future, fields
dropped or extra fields added; serialised as JSON (Python's ``json`` so that
``NaN``, ``Infinity`` and integers beyond 64 bits come out as the sloppy
producers write them) in UTF-8, or in another encoding, truncated, or replaced
by random bytes. Readings also come in batch envelopes, some of them enormous.

The oracles say what the engine must make of a payload without running the
engine: how many units a readings message stands for and which of them the
contract rejects.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import orjson
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from processors.columns import EPOCH, MeterRegistry
from processors.features import DailyProfile
from stream.schemas import (
    Bill,
    Feedback,
    Heartbeat,
    HeartbeatBatch,
    HeartbeatBlock,
    MaintenanceRequest,
    MeterInfo,
    Purchase,
    Reading,
    ReadingBatch,
    ReadingBlock,
)

KNOWN_METERS = [f"M{i:07d}" for i in range(6)]
CUSTOMERS = [f"C{i:07d}" for i in range(6)]
T0 = 1_767_225_600  # 2026-01-01T00:00:00Z
INT64_MAX = 2**63 - 1


def registry() -> MeterRegistry:
    """The fleet the fuzzed readings and heartbeats point into (plus unknown meters)."""
    return MeterRegistry(
        MeterInfo(meter_id=m, customer_id=c, region=("North", "South")[i % 2], tariff="prepaid", installed_on=EPOCH)
        for i, (m, c) in enumerate(zip(KNOWN_METERS, CUSTOMERS, strict=True))
    )


def iso(epoch: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# ----------------------------------------------------------------------------- values
def one_in(n: int) -> st.SearchStrategy[bool]:
    """True about once in ``n`` draws (hypothesis favours the first, simplest choice, so never True first)."""
    return st.sampled_from([False] * (n - 1) + [True])


FAR_TIMESTAMPS: list[Any] = [
    "0001-01-01T00:00:00Z", "0001-01-01T00:00:00+14:00", "1900-01-01T00:00:00Z", "1969-12-31T23:59:59Z",
    "1970-01-01T00:00:00Z", "2100-12-31T23:59:59Z", "2101-01-01T00:00:00Z", "2999-06-01T00:00:00Z",
    "9999-12-31T23:59:59Z", "9999-12-31T23:59:59-01:00", "9999-12-31T23:59:59.999999-23:59", "10000-01-01T00:00:00Z",
    "0000-01-01T00:00:00Z", "2026-13-01T00:00:00Z", "2026-01-01T00:00:00", "2026-01-01T00:00:00+25:00",
    "2026-01-01T00:00:00Z\x00", "２０２６-01-01T00:00:00Z", "", "now", -1, 0, 2**31, 2**40, 253402300800, -(2**63),
    1e20, -1e20, 1.5e9, "0001-01-01", "1969-12-31", "2100-12-31", "2101-01-01", "9999-12-31",
]  # fmt: skip
#: the far ends: beyond the datetime range once in UTC, the last and first days, just outside the contract
TIME_EDGES: list[str] = [
    "9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+14:00", "9999-12-31", "0001-01-01", "2101-01-01T00:00:00Z",
    "2100-12-31T23:59:59Z",
]  # fmt: skip
HUGE_NUMBERS: list[Any] = [
    2**63, -(2**63) - 1, 2**64, 10**30, -(10**30), 10**400, 1e308, -1e308, 5e-324, -0.0,
    float("nan"), float("inf"), float("-inf"), 1e6 + 1, -1e6 - 1, 1e12 + 1,
]  # fmt: skip
WEIRD_STRINGS: list[str] = [
    "", " ", "\x00", "\ud800", "\udfff", "\U0010ffff", "é" * 65, "𝟙𝟚𝟛", "١٢٣", "NaN", "Infinity",
    "-inf", "1e999", "0x10", "1_000", "null", "true", "{}", "[]", "M0000001\n", " M0000001", "Ｍ0000001",
    "'; DROP TABLE meters; --", "../../etc/passwd", "%s%n", "\u202eevil", "😀" * 20,
]  # fmt: skip

scalars: st.SearchStrategy[Any] = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(HUGE_NUMBERS),
    st.text(max_size=12),
    st.sampled_from(WEIRD_STRINGS),
    st.integers(65, 20_000).map(lambda n: "x" * n),  # over every length limit
    st.sampled_from(FAR_TIMESTAMPS),
)
nasty_values: st.SearchStrategy[Any] = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)


# ----------------------------------------------------------------------------- valid records
def _reading(draw: st.DrawFn) -> dict[str, Any]:
    k = draw(st.integers(0, 7))
    return {
        "meter_id": draw(st.sampled_from([*KNOWN_METERS, "M9999999"])),
        "customer_id": draw(st.sampled_from(CUSTOMERS)),
        "interval_start": iso(T0 + 900 * k),
        "interval_minutes": 15,
        "kwh_import": draw(st.floats(0, 5)),
        "kwh_export": 0.0,
        "register_kwh": 1000.0 + k,
        "voltage": draw(st.floats(210, 250)),
        "power_factor": 0.98,
        "seq": k,
    }


def _heartbeat(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "meter_id": draw(st.sampled_from([*KNOWN_METERS, "M9999999"])),
        "customer_id": draw(st.sampled_from(CUSTOMERS)),
        "ts": iso(T0 + 60 * draw(st.integers(0, 120))),
        "status": draw(st.sampled_from(["ok", "degraded", "fault"])),
        "error_codes": draw(st.lists(st.sampled_from(["E1", "E7"]), max_size=2)),
        "signal_dbm": -70.0,
        "battery_pct": 90.0,
        "firmware": "1.2.3",
        "clock_offset_s": draw(st.floats(-5, 5)),
    }


def _purchase(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "event_id": f"e{draw(st.integers(0, 20))}",
        "customer_id": draw(st.sampled_from(CUSTOMERS)),
        "ts": iso(T0 + 3600 * draw(st.integers(0, 48))),
        "event_type": draw(st.sampled_from(["VIEWED", "PROCESSED", "PURCHASED"])),
        "kind": draw(st.sampled_from(["topup", "bill_payment", "product", "plan"])),
        "product_code": "P1",
        "amount": draw(st.floats(0, 500)),
        "quantity": draw(st.integers(1, 5)),
        "channel": draw(st.sampled_from(["web", "app", "store", "agent"])),
    }


def _profile(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "customer_id": draw(st.sampled_from(CUSTOMERS)),
        "meter_id": draw(st.sampled_from(KNOWN_METERS)),
        "day": f"2026-01-{draw(st.integers(1, 9)):02d}",
        "kwh_import": draw(st.lists(st.floats(0, 3), min_size=24, max_size=24)),
        "kwh_export": None,
    }


def _meter_info(draw: st.DrawFn) -> dict[str, Any]:
    i = draw(st.integers(0, len(KNOWN_METERS) - 1))
    return {
        "meter_id": KNOWN_METERS[i],
        "customer_id": CUSTOMERS[i],
        "region": draw(st.sampled_from(["North", "South", "Zuid-Oost", "Région 7"])),
        "tariff": draw(st.sampled_from(["prepaid", "postpaid"])),
        "installed_on": "2020-01-01T00:00:00Z",
        "nominal_voltage": 230.0,
        "interval_minutes": 15,
        "has_export": draw(st.booleans()),
    }


def _maintenance(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "request_id": f"r{draw(st.integers(0, 20))}",
        "customer_id": draw(st.sampled_from(CUSTOMERS)),
        "meter_id": draw(st.sampled_from(KNOWN_METERS)),
        "requested_at": iso(T0),
        "resolved_at": draw(st.sampled_from([None, iso(T0 + 7200)])),
        "technician_id": draw(st.sampled_from([None, "T1", "T2"])),
    }


def _feedback(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "feedback_id": f"f{draw(st.integers(0, 20))}",
        "customer_id": draw(st.sampled_from(CUSTOMERS)),
        "ts": iso(T0),
        "score": draw(st.integers(1, 5)),
    }


def _bill(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "bill_id": f"b{draw(st.integers(0, 20))}",
        "customer_id": draw(st.sampled_from(CUSTOMERS)),
        "issued_at": iso(T0),
        "amount": draw(st.floats(0, 300)),
        "kwh": draw(st.floats(0, 900)),
        "paid_at": draw(st.sampled_from([None, iso(T0 + 86400)])),
    }


#: topic attribute (``Settings.topics``) -> builder of a valid record
VALID: dict[str, Callable[[st.DrawFn], dict[str, Any]]] = {
    "readings": _reading,
    "heartbeats": _heartbeat,
    "purchases": _purchase,
    "profiles": _profile,
    "registry": _meter_info,
    "maintenance": _maintenance,
    "feedback": _feedback,
    "bills": _bill,
}
#: topic attribute -> the contract its payloads must satisfy (readings: also ReadingBatch envelopes)
MODEL: dict[str, type[BaseModel]] = {
    "readings": Reading,
    "heartbeats": Heartbeat,
    "purchases": Purchase,
    "profiles": DailyProfile,
    "registry": MeterInfo,
    "maintenance": MaintenanceRequest,
    "feedback": Feedback,
    "bills": Bill,
}


#: topic attribute -> its timestamp fields
TIME_FIELDS: dict[str, tuple[str, ...]] = {
    "readings": ("interval_start",), "heartbeats": ("ts",), "purchases": ("ts",), "profiles": ("day",),
    "registry": ("installed_on",), "maintenance": ("requested_at", "resolved_at"), "feedback": ("ts",),
    "bills": ("issued_at", "paid_at"),
}  # fmt: skip


@st.composite
def damaged_record(draw: st.DrawFn, topic: str) -> Any:
    """A record of ``topic``: valid, or with fields replaced, dropped or added, or not an object at all."""
    record = VALID[topic](draw)
    how = draw(st.sampled_from(["valid", "valid", "fields", "fields", "time", "huge", "extra", "not_object"]))
    if how == "valid":
        return record
    if how == "time":  # timestamps far in the past and future, and strings that only look like one
        for name in TIME_FIELDS[topic]:
            record[name] = draw(st.sampled_from(TIME_EDGES) | st.sampled_from(FAR_TIMESTAMPS))
        return record
    if how == "huge":  # numbers at and beyond every bound, NaN and infinities
        numeric = [k for k, v in record.items() if type(v) in (int, float)]
        for name in draw(st.sets(st.sampled_from(numeric), min_size=1, max_size=2)) if numeric else ():
            record[name] = draw(st.sampled_from(HUGE_NUMBERS))
        for name in [k for k, v in record.items() if type(v) is list and v and type(v[0]) is float]:
            values = record[name]  # a series: some of its values at the extremes
            for i in draw(st.sets(st.integers(0, len(values) - 1), min_size=1)):
                values[i] = draw(st.sampled_from([*HUGE_NUMBERS, 1.7e308]))
        return record
    if how == "not_object":
        return draw(nasty_values)
    if how == "extra":
        record.update(draw(st.dictionaries(st.text(max_size=8), nasty_values, min_size=1, max_size=3)))
        record["schema_version"] = draw(st.sampled_from([1, 2, 0, -1, "1", 1.0, True, None, 2**70]))
        return record
    names = list(record)
    for name in draw(st.sets(st.sampled_from(names), min_size=1, max_size=3)):
        if draw(st.booleans()):
            record[name] = draw(nasty_values)
        else:
            del record[name]
    return record


def encode(obj: Any, how: str = "json") -> bytes:
    """Serialise like a sloppy producer: Python's json (NaN, Infinity, big integers), maybe not UTF-8."""
    text = json.dumps(obj, allow_nan=True, ensure_ascii=how == "ascii")
    if how == "latin-1":
        return text.encode("latin-1", "replace")
    if how == "utf-16":
        return text.encode("utf-16", "surrogatepass")
    return text.encode("utf-8", "surrogatepass")  # lone surrogates become invalid UTF-8


@st.composite
def raw_bytes(draw: st.DrawFn, topic: str) -> bytes:
    """One message value of ``topic``: a (damaged) record in some encoding, or bytes that are not JSON at all."""
    kind = draw(st.sampled_from(["record"] * 6 + ["random", "truncated", "flipped", "bom", "empty"]))
    if kind == "random":
        return draw(st.binary(max_size=64))
    if kind == "empty":
        return draw(st.sampled_from([b"", b" ", b"null", b"[]", b"{}", b"\x00", b"\xef\xbb\xbf"]))
    value = encode(draw(damaged_record(topic)), draw(st.sampled_from(["json", "json", "ascii", "latin-1", "utf-16"])))
    if kind == "truncated":
        return value[: draw(st.integers(0, max(len(value) - 1, 0)))]
    if kind == "flipped" and value:
        i = draw(st.integers(0, len(value) - 1))
        return value[:i] + bytes([value[i] ^ draw(st.integers(1, 255))]) + value[i + 1 :]
    if kind == "bom":
        return b"\xef\xbb\xbf" + value
    return value


@st.composite
def envelope(draw: st.DrawFn) -> bytes:
    """A ReadingBatch envelope: a damaged header and/or damaged readings; sometimes enormous."""
    size = draw(st.sampled_from(["small", "small", "small", "large", "over"]))
    if size == "over":  # one reading more than the contract allows: the whole envelope is refused
        readings: Any = [{}] * 100_001
    elif size == "large":
        one = draw(damaged_record("readings"))
        n = draw(st.integers(1_000, 3_000))
        readings = [one] * max(1, min(n, 700_000 // len(encode(one))))  # stays under Kafka's 1 MB message
    else:
        readings = draw(st.lists(damaged_record("readings"), min_size=0, max_size=6))
    header: dict[str, Any] = {"batch_id": "b-1", "head_end_id": "hes-7", "sent_at": iso(T0 + 7200)}
    if draw(st.booleans()):
        for name in draw(st.sets(st.sampled_from([*header, "schema_version"]), min_size=1, max_size=2)):
            header[name] = draw(nasty_values)
    if draw(one_in(10)):
        readings = draw(nasty_values)  # not a list
    return encode({**header, "readings": readings})


_BLOCK_REQUIRED = ("meter_id", "customer_id", "interval_start", "kwh_import", "register_kwh", "voltage", "seq")
_BLOCK_OPTIONAL = ("interval_minutes", "kwh_export", "power_factor")


@st.composite
def block(draw: st.DrawFn) -> bytes:
    """A ReadingBlock: damaged readings as columns, and/or a damaged header or column shape."""
    records = draw(st.lists(damaged_record("readings"), min_size=0, max_size=6))
    rows = [r if type(r) is dict else {} for r in records]
    columns: dict[str, Any] = {f: [r.get(f) for r in rows] for f in _BLOCK_REQUIRED}
    for f in _BLOCK_OPTIONAL:
        if draw(st.booleans()):
            columns[f] = [r.get(f, 15 if f == "interval_minutes" else 0.0) for r in rows]
    shape = draw(st.sampled_from(["ok", "ok", "ok", "short", "dropped", "not_list", "huge"]))
    if shape == "short" and columns["meter_id"]:  # one column a value short
        name = draw(st.sampled_from(sorted(columns)))
        columns[name] = columns[name][:-1]
    elif shape == "dropped":
        del columns[draw(st.sampled_from(_BLOCK_REQUIRED))]
    elif shape == "not_list":
        columns[draw(st.sampled_from(sorted(columns)))] = draw(nasty_values)
    elif shape == "huge" and rows:  # many copies of the first reading
        n = draw(st.integers(1_000, 3_000))
        columns = {f: [v[0]] * n for f, v in columns.items()}
    header: dict[str, Any] = {"batch_id": "k-1", "head_end_id": "hes-7", "sent_at": iso(T0 + 7200)}
    if draw(one_in(4)):
        header[draw(st.sampled_from([*header, "schema_version"]))] = draw(nasty_values)
    return encode({**header, "columns": columns if not draw(one_in(12)) else draw(nasty_values)})


def readings_message() -> st.SearchStrategy[bytes]:
    return st.one_of(raw_bytes("readings"), envelope(), block())


@st.composite
def heartbeat_envelope(draw: st.DrawFn) -> bytes:
    """A HeartbeatBatch: a damaged header and/or damaged heartbeats."""
    beats: Any = draw(st.lists(damaged_record("heartbeats"), min_size=0, max_size=6))
    header: dict[str, Any] = {"batch_id": "h-1", "head_end_id": "hes-7", "sent_at": iso(T0 + 7200)}
    if draw(st.booleans()):
        header[draw(st.sampled_from([*header, "schema_version"]))] = draw(nasty_values)
    if draw(one_in(10)):
        beats = draw(nasty_values)
    return encode({**header, "heartbeats": beats})


_HB_REQUIRED = ("meter_id", "customer_id", "ts", "status")
_HB_OPTIONAL = ("error_codes", "signal_dbm", "battery_pct", "firmware", "clock_offset_s")


@st.composite
def heartbeat_block(draw: st.DrawFn) -> bytes:
    """A HeartbeatBlock: damaged heartbeats as columns, and/or a damaged header or column shape."""
    rows = [r if type(r) is dict else {} for r in draw(st.lists(damaged_record("heartbeats"), max_size=6))]
    columns: dict[str, Any] = {f: [r.get(f) for r in rows] for f in _HB_REQUIRED}
    for f in _HB_OPTIONAL:
        if draw(st.booleans()):
            columns[f] = [r.get(f, [] if f == "error_codes" else 0.0) for r in rows]
    shape = draw(st.sampled_from(["ok", "ok", "ok", "short", "dropped", "not_list"]))
    if shape == "short" and rows:
        name = draw(st.sampled_from(sorted(columns)))
        columns[name] = columns[name][:-1]
    elif shape == "dropped":
        del columns[draw(st.sampled_from(_HB_REQUIRED))]
    elif shape == "not_list":
        columns[draw(st.sampled_from(sorted(columns)))] = draw(nasty_values)
    header: dict[str, Any] = {"batch_id": "hk-1", "head_end_id": "hes-7", "sent_at": iso(T0 + 7200)}
    if draw(one_in(4)):
        header[draw(st.sampled_from([*header, "schema_version"]))] = draw(nasty_values)
    return encode({**header, "columns": columns})


def heartbeats_message() -> st.SearchStrategy[bytes]:
    return st.one_of(raw_bytes("heartbeats"), heartbeat_envelope(), heartbeat_block())


# ----------------------------------------------------------------------------- oracles
_PLACEHOLDER = {
    "meter_id": "M0", "customer_id": "C0", "interval_start": iso(T0), "kwh_import": 0.0, "register_kwh": 0.0,
    "voltage": 230.0, "seq": 0,
}  # fmt: skip


def readings_units(value: bytes) -> list[tuple[int, bytes, bool]]:
    """The units a ``meter.readings`` message stands for: ``(record, bytes, contract-valid)``.

    ``record`` is -1 for a single reading or a message refused as a whole (not
    JSON, bad envelope header), else the reading's index in its envelope.
    Contract-valid means :class:`stream.schemas.Reading` accepts it (whether the
    meter is known is not part of the contract) and its ``seq`` fits 64 bits.
    """
    try:
        obj = orjson.loads(value)
    except orjson.JSONDecodeError:
        return [(-1, value, False)]
    if type(obj) is dict and "columns" in obj and "meter_id" not in obj and "readings" not in obj:
        return _block_units(obj, value)
    if type(obj) is dict and "readings" in obj and "meter_id" not in obj:
        recs = obj["readings"]
        if type(recs) is not list or not 1 <= len(recs) <= 100_000:
            return [(-1, value, False)]
        try:
            ReadingBatch.model_validate({**obj, "readings": [_PLACEHOLDER]})
        except ValidationError:
            return [(-1, value, False)]
        out = []
        for i, r in enumerate(recs):
            raw = orjson.dumps(r)
            out.append((i, raw, _valid_reading(raw)))
        return out
    return [(-1, value, _valid_reading(value))]


def _block_units(
    obj: dict[str, Any],
    value: bytes,
    required: tuple[str, ...] = _BLOCK_REQUIRED,
    optional: tuple[str, ...] = _BLOCK_OPTIONAL,
    model: type[BaseModel] = ReadingBlock,
    placeholder: dict[str, Any] = _PLACEHOLDER,
    valid: Callable[[bytes], bool] = lambda raw: _valid_reading(raw),
) -> list[tuple[int, bytes, bool]]:
    """A block's units: one per record if its shape and header are valid, else the message as one."""
    cols = obj["columns"]
    if type(cols) is not dict or type(cols.get(required[0])) is not list:
        return [(-1, value, False)]
    n = len(cols[required[0]])
    present = {f: cols[f] for f in (*required, *optional) if cols.get(f) is not None}
    if not 1 <= n <= 100_000 or not set(required) <= set(present):
        return [(-1, value, False)]
    if any(type(v) is not list or len(v) != n for v in present.values()):
        return [(-1, value, False)]
    try:  # the header, with one placeholder record as columns
        model.model_validate({**obj, "columns": {k: [v] for k, v in placeholder.items()}})
    except ValidationError:
        return [(-1, value, False)]
    out = []
    for i in range(n):
        raw = orjson.dumps({f: v[i] for f, v in present.items()})
        out.append((i, raw, valid(raw)))
    return out


def heartbeats_units(value: bytes) -> list[tuple[int, bytes, bool]]:
    """The units a ``meter.heartbeats`` message stands for (as :func:`readings_units` for readings)."""
    try:
        obj = orjson.loads(value)
    except orjson.JSONDecodeError:
        return [(-1, value, False)]
    placeholder = {"meter_id": "M0", "customer_id": "C0", "ts": iso(T0), "status": "ok"}
    if type(obj) is dict and "columns" in obj and "meter_id" not in obj and "heartbeats" not in obj:
        return _block_units(obj, value, _HB_REQUIRED, _HB_OPTIONAL, HeartbeatBlock, placeholder,
                            lambda raw: contract_valid(Heartbeat, raw))  # fmt: skip
    if type(obj) is dict and "heartbeats" in obj and "meter_id" not in obj:
        beats = obj["heartbeats"]
        if type(beats) is not list or not 1 <= len(beats) <= 100_000:
            return [(-1, value, False)]
        try:
            HeartbeatBatch.model_validate({**obj, "heartbeats": [placeholder]})
        except ValidationError:
            return [(-1, value, False)]
        return [(i, orjson.dumps(b), contract_valid(Heartbeat, orjson.dumps(b))) for i, b in enumerate(beats)]
    return [(-1, value, contract_valid(Heartbeat, value))]


def _valid_reading(raw: bytes) -> bool:
    try:
        r = Reading.model_validate_json(raw)
    except ValidationError:
        return False
    return r.seq <= INT64_MAX


def contract_valid(model: type[BaseModel], value: bytes) -> bool:
    """Whether ``model`` accepts the message ``value``."""
    try:
        model.model_validate_json(value)
    except ValidationError:
        return False
    return True


# ----------------------------------------------------------------------------- a seeded corpus
def corpus(topic: str, n: int, seed: int) -> list[bytes]:
    """Up to ``n`` nasty-or-valid values of ``topic``, the same ones for the same seed."""
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as fixed_seed

    out: list[bytes] = []
    strategy = readings_message() if topic == "readings" else raw_bytes(topic)

    @fixed_seed(seed)
    @settings(max_examples=n, database=None, phases=[Phase.generate], deadline=None,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(strategy)
    def collect(value: bytes) -> None:
        out.append(value)

    collect()
    return out
