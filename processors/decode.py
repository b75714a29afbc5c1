"""Fast decoding of raw Kafka bytes into columns, with pydantic-equivalent validation.

Validating every reading with ``Reading.model_validate_json`` costs several
microseconds per reading, more than the whole budget at 250 000 readings/s. The
decoders here parse with orjson, pull each field out of the parsed dicts with
one list comprehension per field, and check types and ranges on whole arrays.

Equivalence with the pydantic contracts in :mod:`stream.schemas` is kept by
construction: the fast path accepts only the *canonical* shape of a record
(JSON numbers for numbers, strings for ids, a timestamp string that the
pydantic datetime validator itself accepted, cached per distinct string); any
record that falls off the fast path for any reason (wrong type, bool, a
numeric string, out of range, missing field ...) is handed to pydantic itself,
which either accepts it (with pydantic's values) or rejects it (with
pydantic's message). ``tests/processors/test_ingest_decode.py`` checks the
equivalence with hypothesis over generated payloads.

Deliberate differences from ``ReadingBatch.model_validate_json``:

* a bad reading inside a batch envelope rejects only that reading, not the
  whole block (one bad meter must not dead-letter a head-end's upload);
* ``seq`` values beyond the signed 64-bit range are rejected (``schema``),
  because they cannot be stored in the int64 column;
* a dict with a ``readings`` key and no ``meter_id`` is read as an envelope,
  one with a ``columns`` key and no ``meter_id`` as a ``ReadingBlock``
  (columns), and a heartbeat message with a ``heartbeats`` key and no
  ``meter_id`` as a ``HeartbeatBatch``;
* a block's shape (header, every column a list as long as ``meter_id``) is
  checked for the whole block, its values reading by reading, as in an
  envelope.

Reject reasons: ``invalid_json``, ``schema``, ``unsupported_version`` (a
``schema_version`` integer other than the one we speak), ``unknown_meter``
(valid reading of a meter absent from the registry).

Examples:
    >>> from stream.schemas import MeterInfo
    >>> from processors.columns import EPOCH
    >>> reg = MeterRegistry([MeterInfo(meter_id="M1", customer_id="C1", region="N",
    ...                                tariff="prepaid", installed_on=EPOCH)])
    >>> ok = (b'{"meter_id":"M1","customer_id":"C1","interval_start":"2026-01-01T00:00:00Z",'
    ...       b'"kwh_import":0.5,"register_kwh":10,"voltage":231.0,"seq":7}')
    >>> out = ReadingDecoder(reg).process([ok, b'{oops', ok.replace(b'M1', b'M2')])
    >>> len(out.readings), out.readings.interval_start.tolist(), [r.reason for r in out.rejects]
    (1, [1767225600], ['invalid_json', 'unknown_meter'])
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import chain, repeat
from operator import contains, itemgetter
from typing import Any, Self

import numpy as np
import numpy.typing as npt
import orjson
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from processors.columns import (
    F64,
    HEARTBEAT_STATUSES,
    I64,
    HeartbeatColumns,
    MeterRegistry,
    RawMessage,
    ReadingColumns,
    Reject,
    RejectReason,
    epoch_seconds,
)
from processors.jsonbytes import dumps
from stream.schemas import SCHEMA_VERSION, Heartbeat, Reading, UtcDatetime

_ID_RE = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
_INT64_MAX = 2**63 - 1
_MISSING: Any = object()
_DATETIME = TypeAdapter(UtcDatetime)
_STATUS_CODE = {s: i for i, s in enumerate(HEARTBEAT_STATUSES)}


class _EnvelopeHeader(BaseModel):
    """The envelope fields of :class:`stream.schemas.ReadingBatch`, readings left unvalidated."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    schema_version: Any = SCHEMA_VERSION
    batch_id: str = Field(min_length=1, max_length=128)
    head_end_id: str = Field(default="hes-1", min_length=1, max_length=64)
    sent_at: UtcDatetime
    readings: list[Any] = Field(min_length=1, max_length=100_000)


class _HeartbeatEnvelopeHeader(BaseModel):
    """The envelope fields of :class:`stream.schemas.HeartbeatBatch`, heartbeats left unvalidated."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    schema_version: Any = SCHEMA_VERSION
    batch_id: str = Field(min_length=1, max_length=128)
    head_end_id: str = Field(default="hes-1", min_length=1, max_length=64)
    sent_at: UtcDatetime
    heartbeats: list[Any] = Field(min_length=1, max_length=100_000)


def _error_text(exc: ValidationError) -> str:
    """A compact human message: ``field: problem; field: problem``."""
    parts = []
    for err in exc.errors(include_url=False)[:5]:
        loc = ".".join(str(x) for x in err["loc"]) or "payload"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)


def _version_reason(obj: Any) -> RejectReason | None:
    """``unsupported_version`` when the payload names another schema version as an integer."""
    if type(obj) is dict:
        v = obj.get("schema_version", SCHEMA_VERSION)
        if type(v) is int and v != SCHEMA_VERSION:
            return "unsupported_version"
    return None


def _extract(records: list[dict[str, Any]], defaults: dict[str, Any]) -> dict[str, list[Any]]:
    """One list per field (``defaults`` gives the fields and the value used when a key is absent).

    Fast path, one C-level pass: when the first record holds only known fields,
    the records are transposed with ``itemgetter`` and ``zip``. Records with
    another number of keys (a reading with a missing field inside an envelope
    must not send a whole poll down the slow path) are first replaced by a
    dict of exactly those fields, read with ``dict.get``; fields the first
    record lacks are then filled from them. When no fast path applies, one
    ``dict.get`` pass per field.
    """
    n = len(records)
    if n:
        first = records[0]
        present = [f for f in defaults if f in first]
        width = len(first)
        if len(present) >= 2 and width == len(present):
            lengths = list(map(len, records))
            odd = [] if lengths.count(width) == n else [i for i, k in enumerate(lengths) if k != width]
            regular = records
            if odd:
                regular = list(records)
                for i in odd:
                    r = records[i]
                    regular[i] = {f: r.get(f, defaults[f]) for f in present}
            try:
                rows = list(map(itemgetter(*present), regular))
            except KeyError:
                rows = None
            if rows is not None:
                cols = dict(zip(present, map(list, zip(*rows, strict=True)), strict=True))
                for f, d in defaults.items():
                    if f not in cols:
                        col = cols[f] = [d] * n
                        for i in odd:
                            col[i] = records[i].get(f, d)
                return cols
    return {f: [r.get(f, d) for r in records] for f, d in defaults.items()}


_READING_FIELDS: dict[str, Any] = {
    "schema_version": SCHEMA_VERSION, "meter_id": None, "customer_id": None, "interval_start": None,
    "interval_minutes": 15, "kwh_import": None, "kwh_export": 0.0, "register_kwh": None, "voltage": None,
    "power_factor": 1.0, "seq": None,
}  # fmt: skip
_HEARTBEAT_FIELDS: dict[str, Any] = {
    "schema_version": SCHEMA_VERSION, "meter_id": None, "customer_id": None, "ts": None, "status": None,
    "error_codes": _MISSING, "signal_dbm": -70.0, "battery_pct": 100.0, "firmware": "1.0.0", "clock_offset_s": 0.0,
}  # fmt: skip


def _version_ok(values: list[Any]) -> bool:
    if values and values[0] is SCHEMA_VERSION and values.count(SCHEMA_VERSION) == len(values):
        return set(map(type, values)) == {int}
    return all(v == SCHEMA_VERSION for v in values) and set(map(type, values)) == {int}


def _float_column(values: list[Any], lo: float, hi: float, slow: npt.NDArray[np.bool_]) -> F64:
    """Float column; entries that are not a JSON number (or out of range) are flagged ``slow``."""
    if set(map(type, values)) <= {float, int}:
        arr = np.array(values, np.float64)
    else:
        bad = np.fromiter((type(v) is not float and type(v) is not int for v in values), np.bool_, len(values))
        slow |= bad
        arr = np.array([0.0 if b else v for v, b in zip(values, bad.tolist(), strict=True)], np.float64)
    slow |= ~((arr >= lo) & (arr <= hi))
    return arr


def _int_column(values: list[Any], lo: int, hi: int, slow: npt.NDArray[np.bool_]) -> I64:
    """Int column (JSON integers only); anything else or out of ``[lo, hi]`` is flagged ``slow``."""
    if set(map(type, values)) == {int}:
        try:
            arr = np.array(values, np.int64)
        except OverflowError:
            arr = None
        if arr is not None:
            slow |= (arr < lo) | (arr > hi)
            return arr
    good = [type(v) is int and lo <= v <= hi for v in values]
    slow |= ~np.array(good, np.bool_)
    return np.array([v if g else 0 for v, g in zip(values, good, strict=True)], np.int64)


class _TimestampCache:
    """Epoch seconds of timestamp strings, as pydantic's ``UtcDatetime`` parses them.

    Readings of one interval share one ``interval_start`` string, so a small
    cache turns datetime parsing into one dict lookup per reading. Bounded:
    cleared when it exceeds ``capacity``.
    """

    def __init__(self, capacity: int = 65_536) -> None:
        self.capacity = capacity
        self._epoch: dict[str, int] = {}

    def column(self, values: list[Any], slow: npt.NDArray[np.bool_]) -> I64:
        get = self._epoch.get
        try:
            got = list(map(get, values))
        except TypeError:  # an unhashable value (list, dict) somewhere
            got = [get(v) if type(v) is str else None for v in values]
        if None in got:
            for i, (v, e) in enumerate(zip(values, got, strict=True)):
                if e is None:
                    e = get(v) if type(v) is str else None  # parsed earlier in this batch?
                    got[i] = e if e is not None else self._parse(v)
                    if got[i] is None:
                        slow[i] = True
                        got[i] = 0
        return np.array(got, np.int64)

    def _parse(self, value: Any) -> int | None:
        if type(value) is not str:
            return None
        try:
            ts = _DATETIME.validate_python(value)
        except ValidationError:
            return None
        if len(self._epoch) >= self.capacity:
            self._epoch.clear()
        e = epoch_seconds(ts)
        self._epoch[value] = e
        return e


class _IdCache:
    """Strings already known to satisfy the id pattern of the contracts (bounded)."""

    def __init__(self, capacity: int = 1_000_000) -> None:
        self.capacity = capacity
        self._valid: set[str] = set()

    def check(self, values: list[Any], slow: npt.NDArray[np.bool_]) -> None:
        valid = self._valid
        try:
            if valid.issuperset(values):
                return
            known = [v in valid for v in values]
        except TypeError:
            known = [type(v) is str and v in valid for v in values]
        if all(known):
            return
        for i, (v, k) in enumerate(zip(values, known, strict=True)):
            if not k:
                if type(v) is str and _ID_RE.fullmatch(v):
                    if len(valid) >= self.capacity:
                        valid.clear()
                    valid.add(v)
                else:
                    slow[i] = True


def _slots(registry: MeterRegistry, ids: list[Any], slow: npt.NDArray[np.bool_]) -> I64:
    """Registry slots of meter ids; ``-1`` for a well-formed unknown id, ``slow`` for malformed ones."""
    get = registry.slot_of.get
    try:
        slots = list(map(registry.slot_of.__getitem__, ids))  # every id known: the common case
    except (KeyError, TypeError):
        try:
            slots = [get(m, -1) for m in ids]
        except TypeError:
            slots = [get(m, -1) if type(m) is str else -1 for m in ids]
    arr = np.array(slots, np.int64)
    for i in np.flatnonzero(arr < 0).tolist():
        m = ids[i]
        if not (type(m) is str and _ID_RE.fullmatch(m)):
            slow[i] = True
    return arr


def _envelope_header(
    obj: dict[str, Any],
    m: RawMessage,
    rejects: list[Reject],
    items: str,
    model: type[_EnvelopeHeader] | type[_HeartbeatEnvelopeHeader],
    timestamps: _TimestampCache,
) -> str | None:
    """Validate a batch envelope's header (``items``: the key of its list); its batch id, or ``None`` once rejected.

    The fast path checks the canonical header by hand; anything else goes to
    pydantic (``model``), whose message becomes the reject's text.
    """
    reason = _version_reason(obj)
    batch_id = obj.get("batch_id")
    listed = obj.get(items)
    head_end = obj.get("head_end_id", "hes-1")
    fast = (
        reason is None
        and obj.get("schema_version", SCHEMA_VERSION) == SCHEMA_VERSION
        and type(obj.get("schema_version", SCHEMA_VERSION)) is int
        and type(batch_id) is str
        and 1 <= len(batch_id) <= 128
        and type(head_end) is str
        and 1 <= len(head_end) <= 64
        and type(listed) is list
        and 1 <= len(listed) <= 100_000
        and timestamps._parse(obj.get("sent_at")) is not None
    )
    if fast:
        return batch_id
    try:
        header = model.model_validate(obj)
    except ValidationError as exc:
        rejects.append(Reject(reason or "schema", _error_text(exc), m.value, m.topic, m.partition, m.offset))
        return None
    if reason is not None or header.schema_version != SCHEMA_VERSION:
        msg = f"schema_version {header.schema_version!r} is not supported (expected {SCHEMA_VERSION})"
        rejects.append(Reject(reason or "schema", msg, m.value, m.topic, m.partition, m.offset))
        return None
    return header.batch_id


_BLOCK_REQUIRED = ("meter_id", "customer_id", "interval_start", "kwh_import", "register_kwh", "voltage", "seq")
_BLOCK_OPTIONAL = ("interval_minutes", "kwh_export", "power_factor")


class _BlockShape(BaseModel):
    """The shape of :class:`stream.schemas.ReadingBlock` columns, values left unvalidated (for error messages)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    meter_id: list[Any] = Field(min_length=1, max_length=100_000)
    customer_id: list[Any]
    interval_start: list[Any]
    interval_minutes: list[Any] | None = None
    kwh_import: list[Any]
    kwh_export: list[Any] | None = None
    register_kwh: list[Any]
    voltage: list[Any]
    power_factor: list[Any] | None = None
    seq: list[Any]


class _BlockHeader(BaseModel):
    """The envelope fields of :class:`stream.schemas.ReadingBlock`."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    schema_version: Any = SCHEMA_VERSION
    batch_id: str = Field(min_length=1, max_length=128)
    head_end_id: str = Field(default="hes-1", min_length=1, max_length=64)
    sent_at: UtcDatetime
    columns: _BlockShape


def _block_columns(
    obj: dict[str, Any],
    m: RawMessage,
    rejects: list[Reject],
    timestamps: _TimestampCache,
    required: tuple[str, ...] = _BLOCK_REQUIRED,
    optional: tuple[str, ...] = _BLOCK_OPTIONAL,
    header: type[BaseModel] | None = None,
) -> dict[str, list[Any]] | None:
    """The columns of a valid ``ReadingBlock`` header (absent or null optional columns left out), or ``None``.

    Only the block's shape is checked here (header fields, every column a list
    as long as ``meter_id``); the values are checked reading by reading, so a
    bad value rejects its reading, not the block. A bad shape rejects the
    whole message with pydantic's words about it.
    """
    reason = _version_reason(obj)
    version = obj.get("schema_version", SCHEMA_VERSION)
    batch_id = obj.get("batch_id")
    head_end = obj.get("head_end_id", "hes-1")
    cols = obj.get("columns")
    ok = (
        reason is None
        and type(version) is int
        and version == SCHEMA_VERSION
        and type(batch_id) is str
        and 1 <= len(batch_id) <= 128
        and type(head_end) is str
        and 1 <= len(head_end) <= 64
        and type(cols) is dict
        and timestamps._parse(obj.get("sent_at")) is not None
    )
    out: dict[str, list[Any]] = {}
    if ok and type(cols) is dict:
        ids = cols.get(required[0])
        n = len(ids) if type(ids) is list else 0
        ok = 1 <= n <= 100_000
        for f in required:
            v = cols.get(f)
            if not (type(v) is list and len(v) == n):
                ok = False
                break
            out[f] = v
        for f in optional:
            v = cols.get(f)
            if v is not None:
                if not (type(v) is list and len(v) == n):
                    ok = False
                    break
                out[f] = v
    if ok:
        return out
    try:
        (header or _BlockHeader).model_validate(obj)
        assert type(cols) is dict  # the header model accepted it
        n = len(cols[required[0]])
        odd = [f for f in (*required, *optional) if cols.get(f) is not None and len(cols[f]) != n]
        text = f"columns.{odd[0] if odd else '?'}: every column must have as many entries as {required[0]} ({n})"
    except ValidationError as exc:
        text = _error_text(exc)
    if reason is not None or (type(version) is int and version != SCHEMA_VERSION):
        text = f"schema_version {version!r} is not supported (expected {SCHEMA_VERSION})"
    rejects.append(Reject(reason or "schema", text, m.value, m.topic, m.partition, m.offset))
    return None


_HB_BLOCK_REQUIRED = ("meter_id", "customer_id", "ts", "status")
_HB_BLOCK_OPTIONAL = ("error_codes", "signal_dbm", "battery_pct", "firmware", "clock_offset_s")


class _HeartbeatBlockShape(BaseModel):
    """The shape of :class:`stream.schemas.HeartbeatBlock` columns, values left unvalidated."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    meter_id: list[Any] = Field(min_length=1, max_length=100_000)
    customer_id: list[Any]
    ts: list[Any]
    status: list[Any]
    error_codes: list[Any] | None = None
    signal_dbm: list[Any] | None = None
    battery_pct: list[Any] | None = None
    firmware: list[Any] | None = None
    clock_offset_s: list[Any] | None = None


class _HeartbeatBlockHeader(BaseModel):
    """The envelope fields of :class:`stream.schemas.HeartbeatBlock`."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    schema_version: Any = SCHEMA_VERSION
    batch_id: str = Field(min_length=1, max_length=128)
    head_end_id: str = Field(default="hes-1", min_length=1, max_length=64)
    sent_at: UtcDatetime
    columns: _HeartbeatBlockShape


class _Gather:
    """One poll's records as one list per field, in message order, from objects and column blocks.

    Why a gatherer: a poll may mix single readings, ``ReadingBatch`` envelopes
    (objects, transposed by :func:`_extract`) and ``ReadingBlock`` columns
    (appended as they are, no per-reading object at all). The original of a
    reading (its own JSON for a dead letter, or for pydantic on the slow path)
    is rebuilt only when asked for.
    """

    def __init__(self, fields: dict[str, Any]) -> None:
        self.fields = fields
        self.col: dict[str, list[Any]] = {f: [] for f in fields}
        self.msg: list[int] = []
        self.pos: list[int] = []
        self.n = 0
        self.not_dict: list[int] = []
        self._starts: list[int] = []
        self._parts: list[list[Any] | dict[str, list[Any]]] = []

    def rows(self, records: list[Any], msg: list[int], pos: list[int]) -> None:
        """Append reading objects (anything that is not a dict is flagged for the slow path)."""
        start, k = self.n, len(records)
        clean = records
        if k and set(map(type, records)) != {dict}:
            self.not_dict += [start + j for j, r in enumerate(records) if type(r) is not dict]
            clean = [r if type(r) is dict else {} for r in records]
        extracted = _extract(clean, self.fields)
        if not start:
            self.col, self.msg, self.pos = extracted, list(msg), list(pos)
        else:
            for f, values in extracted.items():
                self.col[f].extend(values)
            self.msg.extend(msg)
            self.pos.extend(pos)
        self._starts.append(start)
        self._parts.append(records)
        self.n += k

    def block(self, columns: dict[str, list[Any]], message: int) -> None:
        """Append a block's columns (shape already checked by :func:`_block_columns`)."""
        k = len(columns["meter_id"])
        for f, default in self.fields.items():
            values = columns.get(f) if f != "schema_version" else None  # the block's version covers its readings
            self.col[f].extend(values if values is not None else [default] * k)
        self.msg.extend([message] * k)
        self.pos.extend(range(k))
        self._starts.append(self.n)
        self._parts.append(columns)
        self.n += k

    def original(self, i: int) -> Any:
        """Reading ``i`` as it came: its object, or a block's entries as one object (absent columns left out)."""
        part = bisect_right(self._starts, i) - 1
        j, src = i - self._starts[part], self._parts[part]
        if isinstance(src, list):
            return src[j]
        return {f: values[j] for f, values in src.items()}


@dataclass(slots=True)
class DecodedReadings:
    """What :meth:`ReadingDecoder.process` returns.

    ``messages``/``records`` count the inputs (records = readings seen inside
    parseable messages); ``unparsed`` counts messages rejected before their
    readings could be counted (invalid JSON, bad envelope header). Hence the
    conservation law the agent can assert per poll:
    ``records + unparsed == len(readings) + len(rejects)``.
    """

    readings: ReadingColumns
    rejects: list[Reject] = field(default_factory=list)
    messages: int = 0
    records: int = 0
    envelopes: int = 0
    unparsed: int = 0


@dataclass(slots=True)
class DecodedHeartbeats:
    """What :meth:`HeartbeatDecoder.process` returns (counts as in :class:`DecodedReadings`).

    ``records + unparsed == len(heartbeats) + len(rejects)``.
    """

    heartbeats: HeartbeatColumns
    rejects: list[Reject] = field(default_factory=list)
    messages: int = 0
    records: int = 0
    envelopes: int = 0
    unparsed: int = 0


def _as_raw(batch: Sequence[RawMessage | bytes]) -> list[RawMessage]:
    return [m if isinstance(m, RawMessage) else RawMessage(m) for m in batch]


class ReadingDecoder:
    """Decode ``meter.readings`` messages (single readings and batch envelopes) into :class:`ReadingColumns`.

    Args:
        registry: the fleet; readings of meters not in it are rejected ``unknown_meter``.
        timestamp_cache: distinct timestamp strings remembered (bounded).

    Stateless apart from caches, so :meth:`snapshot` is trivial; it still speaks
    the :class:`~processors.base.StatefulProcessor` protocol so the pipeline
    can treat every stage alike.
    """

    def __init__(self, registry: MeterRegistry, *, timestamp_cache: int = 65_536) -> None:
        self.registry = registry
        self._ts = _TimestampCache(timestamp_cache)
        self._customers = _IdCache()

    # -- protocol -----------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """No state worth keeping: caches rebuild themselves."""
        return {"timestamp_cache": self._ts.capacity}

    @classmethod
    def restore(cls, state: dict[str, Any], registry: MeterRegistry | None = None) -> Self:
        """A decoder with the given (or an empty) registry."""
        return cls(registry if registry is not None else MeterRegistry(), timestamp_cache=state["timestamp_cache"])

    # -- decoding -----------------------------------------------------------------
    def process(self, batch: Sequence[RawMessage | bytes]) -> DecodedReadings:
        """Decode one poll's worth of messages (bytes or :class:`RawMessage`)."""
        msgs = _as_raw(batch)
        rejects: list[Reject] = []
        batch_ids: list[str | None] = [None] * len(msgs)
        envelopes = 0
        parsed = self._parse_all(msgs)
        if parsed is not None and len(msgs) >= 2 and self._all_single(parsed):
            # the common single-reading poll: no per-message Python loop
            n = len(parsed)
            acc = _Gather(_READING_FIELDS)
            acc.rows(parsed, list(range(n)), [-1] * n)
            cols, more = self._columns(acc, msgs, batch_ids)
            return DecodedReadings(cols, more, n, n, 0)
        acc = _Gather(_READING_FIELDS)
        rows: list[Any] = []
        row_msg: list[int] = []
        row_pos: list[int] = []
        for i, m in enumerate(msgs):
            if parsed is not None:
                obj = parsed[i]
            else:
                try:
                    obj = orjson.loads(m.value)
                except orjson.JSONDecodeError as exc:
                    rejects.append(
                        Reject("invalid_json", f"invalid JSON: {exc}", m.value, m.topic, m.partition, m.offset)
                    )
                    continue
            if type(obj) is dict and "meter_id" not in obj and "readings" in obj:
                header = self._envelope(obj, m, rejects)
                if header is None:
                    continue
                envelopes += 1
                batch_ids[i] = header
                recs = obj["readings"]
                rows.extend(recs)
                row_msg.extend([i] * len(recs))
                row_pos.extend(range(len(recs)))
            elif type(obj) is dict and "meter_id" not in obj and "columns" in obj:
                block = _block_columns(obj, m, rejects, self._ts)
                if block is None:
                    continue
                envelopes += 1
                batch_ids[i] = obj["batch_id"]
                if rows:  # readings keep their message order
                    acc.rows(rows, row_msg, row_pos)
                    rows, row_msg, row_pos = [], [], []
                acc.block(block, i)
            else:
                rows.append(obj)
                row_msg.append(i)
                row_pos.append(-1)
        if rows:
            acc.rows(rows, row_msg, row_pos)
        unparsed = len(rejects)
        cols, more = self._columns(acc, msgs, batch_ids)
        rejects.extend(more)
        return DecodedReadings(cols, rejects, len(msgs), acc.n, envelopes, unparsed)

    @staticmethod
    def _parse_all(msgs: list[RawMessage]) -> list[Any] | None:
        """Every message parsed in one C-level pass, or ``None`` if any is not valid JSON (then one by one)."""
        try:
            return list(map(orjson.loads, [m.value for m in msgs]))
        except (orjson.JSONDecodeError, TypeError):
            return None

    @staticmethod
    def _all_single(objs: list[Any]) -> bool:
        """True when every parsed message is a dict and none looks like an envelope or a block."""
        return (
            set(map(type, objs)) == {dict}
            and not any(map(contains, objs, repeat("readings")))
            and not any(map(contains, objs, repeat("columns")))
        )

    def _envelope(self, obj: dict[str, Any], m: RawMessage, rejects: list[Reject]) -> str | None:
        """Validate the envelope header; return its batch id, or ``None`` after rejecting it."""
        return _envelope_header(obj, m, rejects, "readings", _EnvelopeHeader, self._ts)

    def _columns(
        self, acc: _Gather, msgs: list[RawMessage], batch_ids: list[str | None]
    ) -> tuple[ReadingColumns, list[Reject]]:
        n = acc.n
        rec_msg, rec_pos = acc.msg, acc.pos
        slow = np.zeros(n, np.bool_)
        slow[acc.not_dict] = True
        original = acc.original
        col = acc.col
        version = col["schema_version"]
        if not _version_ok(version):
            slow |= np.array([not (type(v) is int and v == SCHEMA_VERSION) for v in version], np.bool_)
        ids = col["meter_id"]
        meter = _slots(self.registry, ids, slow)
        customers = col["customer_id"]
        self._customers.check(customers, slow)
        start = self._ts.column(col["interval_start"], slow)
        minutes = _int_column(col["interval_minutes"], 15, 60, slow)
        slow |= (minutes != 15) & (minutes != 30) & (minutes != 60)
        kwh_import = _float_column(col["kwh_import"], -1e6, 1e6, slow)
        kwh_export = _float_column(col["kwh_export"], 0.0, 1e6, slow)
        register = _float_column(col["register_kwh"], -1e12, 1e12, slow)
        voltage = _float_column(col["voltage"], 0.0, 1e5, slow)
        pf = _float_column(col["power_factor"], -1.0, 1.0, slow)
        seq = _int_column(col["seq"], 0, _INT64_MAX, slow)
        customer_arr = np.empty(n, np.object_)
        customer_arr[:] = customers
        keep = np.ones(n, np.bool_)
        rejects: list[Reject] = []

        def reject(i: int, reason: RejectReason, text: str) -> None:
            keep[i] = False
            m = msgs[rec_msg[i]]
            pos = rec_pos[i]
            payload = m.value if pos < 0 else dumps(original(i))
            mid = ids[i] if type(ids[i]) is str else None
            rejects.append(Reject(reason, text, payload, m.topic, m.partition, m.offset, pos, mid))

        for i in np.flatnonzero(slow).tolist():
            m = msgs[rec_msg[i]]
            raw = m.value if rec_pos[i] < 0 else dumps(original(i))
            try:
                r = Reading.model_validate_json(raw)
            except ValidationError as exc:
                reject(i, _version_reason(original(i)) or "schema", _error_text(exc))
                continue
            if r.seq > _INT64_MAX:
                reject(i, "schema", "seq: exceeds the signed 64-bit range")
                continue
            meter[i] = self.registry.slot_of.get(r.meter_id, -1)
            customer_arr[i] = r.customer_id
            start[i] = epoch_seconds(r.interval_start)
            minutes[i] = r.interval_minutes
            kwh_import[i] = r.kwh_import
            kwh_export[i] = r.kwh_export
            register[i] = r.register_kwh
            voltage[i] = r.voltage
            pf[i] = r.power_factor
            seq[i] = r.seq
        for i in np.flatnonzero(keep & (meter < 0)).tolist():
            reject(i, "unknown_meter", f"meter {ids[i]!r} is not in the registry")
        msg_arr = np.array(rec_msg, np.int64)
        append = np.array([m.timestamp_ms for m in msgs], np.int64)
        cols = ReadingColumns(
            registry=self.registry,
            meter=meter,
            customer_id=customer_arr,
            interval_start=start,
            interval_minutes=minutes,
            kwh_import=kwh_import,
            kwh_export=kwh_export,
            register_kwh=register,
            voltage=voltage,
            power_factor=pf,
            seq=seq,
            message=msg_arr,
            record=np.array(rec_pos, np.int64),
            append_ms=append[msg_arr] if n else np.zeros(0, np.int64),
            sources=msgs,
            batch_ids=batch_ids,
        )
        if keep.all():
            return cols, rejects
        return cols.take(keep), rejects


def _error_codes(values: list[Any], slow: npt.NDArray[np.bool_]) -> npt.NDArray[np.object_]:
    """Tuples of error codes; anything but a list of at most 32 strings (or absent) is flagged ``slow``."""
    n = len(values)
    codes = np.empty(n, np.object_)
    kinds = set(map(type, values))
    if kinds == {list} and max(map(len, values)) <= 32 and set(map(type, chain.from_iterable(values))) <= {str}:
        out: npt.NDArray[np.object_] = np.fromiter(map(tuple, values), np.object_, n)
        return out
    for i, c in enumerate(values):
        if c is _MISSING:
            codes[i] = ()
        elif type(c) is list and len(c) <= 32 and all(type(x) is str for x in c):
            codes[i] = tuple(c)
        else:
            slow[i] = True
            codes[i] = ()
    return codes


class HeartbeatDecoder:
    """Decode ``meter.heartbeats`` messages into :class:`HeartbeatColumns` (same approach as readings).

    Examples:
        >>> from stream.schemas import MeterInfo
        >>> from processors.columns import EPOCH
        >>> reg = MeterRegistry([MeterInfo(meter_id="M1", customer_id="C1", region="N",
        ...                                tariff="prepaid", installed_on=EPOCH)])
        >>> hb = (b'{"meter_id":"M1","customer_id":"C1","ts":"2026-01-01T00:00:00+01:00",'
        ...       b'"status":"degraded","error_codes":["E7"],"clock_offset_s":-3}')
        >>> out = HeartbeatDecoder(reg).process([hb, b'[]'])
        >>> out.heartbeats.ts.tolist(), out.heartbeats.status.tolist(), [r.reason for r in out.rejects]
        ([1767222000], [1], ['schema'])
    """

    def __init__(self, registry: MeterRegistry, *, timestamp_cache: int = 65_536) -> None:
        self.registry = registry
        self._ts = _TimestampCache(timestamp_cache)
        self._customers = _IdCache()

    def snapshot(self) -> dict[str, Any]:
        """No state worth keeping: caches rebuild themselves."""
        return {"timestamp_cache": self._ts.capacity}

    @classmethod
    def restore(cls, state: dict[str, Any], registry: MeterRegistry | None = None) -> Self:
        """A decoder with the given (or an empty) registry."""
        return cls(registry if registry is not None else MeterRegistry(), timestamp_cache=state["timestamp_cache"])

    def process(self, batch: Sequence[RawMessage | bytes]) -> DecodedHeartbeats:
        """Decode one poll's worth of heartbeat messages."""
        msgs = _as_raw(batch)
        rejects: list[Reject] = []
        envelopes = 0
        parsed: list[Any] | None
        try:  # the common case: every message parses
            parsed = list(map(orjson.loads, [m.value for m in msgs]))
        except orjson.JSONDecodeError:
            parsed = None
        acc = _Gather(_HEARTBEAT_FIELDS)
        dicts = [p for p in parsed if type(p) is dict] if parsed is not None else []
        if parsed is not None and not any(map(contains, dicts, repeat("heartbeats"))) and not any(
            map(contains, dicts, repeat("columns"))
        ):
            acc.rows(parsed, list(range(len(msgs))), [-1] * len(msgs))
        else:
            rows: list[Any] = []
            row_msg: list[int] = []
            row_pos: list[int] = []  # index inside an envelope, -1 for a heartbeat message
            for i, m in enumerate(msgs):
                if parsed is not None:
                    obj = parsed[i]
                else:
                    try:
                        obj = orjson.loads(m.value)
                    except orjson.JSONDecodeError as exc:
                        rejects.append(
                            Reject("invalid_json", f"invalid JSON: {exc}", m.value, m.topic, m.partition, m.offset)
                        )
                        continue
                if type(obj) is dict and "meter_id" not in obj and "heartbeats" in obj:
                    if _envelope_header(obj, m, rejects, "heartbeats", _HeartbeatEnvelopeHeader, self._ts) is None:
                        continue
                    envelopes += 1
                    inner = obj["heartbeats"]
                    rows.extend(inner)
                    row_msg.extend([i] * len(inner))
                    row_pos.extend(range(len(inner)))
                elif type(obj) is dict and "meter_id" not in obj and "columns" in obj:
                    block = _block_columns(
                        obj, m, rejects, self._ts, _HB_BLOCK_REQUIRED, _HB_BLOCK_OPTIONAL, _HeartbeatBlockHeader
                    )
                    if block is None:
                        continue
                    envelopes += 1
                    if rows:  # heartbeats keep their message order
                        acc.rows(rows, row_msg, row_pos)
                        rows, row_msg, row_pos = [], [], []
                    acc.block(block, i)
                else:
                    rows.append(obj)
                    row_msg.append(i)
                    row_pos.append(-1)
            if rows:
                acc.rows(rows, row_msg, row_pos)
        unparsed = len(rejects)
        n = acc.n
        rec_msg, rec_pos, original = acc.msg, acc.pos, acc.original
        slow = np.zeros(n, np.bool_)
        slow[acc.not_dict] = True
        col = acc.col
        version = col["schema_version"]
        if not _version_ok(version):
            slow |= np.array([not (type(v) is int and v == SCHEMA_VERSION) for v in version], np.bool_)
        ids = col["meter_id"]
        meter = _slots(self.registry, ids, slow)
        self._customers.check(col["customer_id"], slow)
        ts = self._ts.column(col["ts"], slow)
        status_values = col["status"]
        try:
            found = list(map(_STATUS_CODE.get, status_values))
        except TypeError:
            found = [_STATUS_CODE.get(v) if type(v) is str else None for v in status_values]
        status = np.array([-1 if v is None else v for v in found] if None in found else found, np.int8)
        slow |= status < 0
        codes = _error_codes(col["error_codes"], slow)
        signal = _float_column(col["signal_dbm"], -200.0, 50.0, slow)
        battery = _float_column(col["battery_pct"], 0.0, 100.0, slow)
        offset = _float_column(col["clock_offset_s"], -1e7, 1e7, slow)
        firmware_values = col["firmware"]
        firmware: npt.NDArray[np.object_] = np.fromiter(firmware_values, np.object_, n)
        if n and not (set(map(type, firmware_values)) == {str} and max(map(len, firmware_values)) <= 32):
            bad = np.array([not (type(f) is str and len(f) <= 32) for f in firmware_values], np.bool_)
            slow |= bad
            firmware[bad] = ""
        keep = np.ones(n, np.bool_)

        def raw(i: int) -> bytes:
            """The bytes of heartbeat ``i``: its message, or its own JSON inside an envelope."""
            return msgs[rec_msg[i]].value if rec_pos[i] < 0 else dumps(original(i))

        def reject(i: int, reason: RejectReason, text: str) -> None:
            keep[i] = False
            m = msgs[rec_msg[i]]
            mid = ids[i] if type(ids[i]) is str else None
            rejects.append(Reject(reason, text, raw(i), m.topic, m.partition, m.offset, rec_pos[i], mid))

        for i in np.flatnonzero(slow).tolist():
            try:
                hb = Heartbeat.model_validate_json(raw(i))
            except ValidationError as exc:
                reject(i, _version_reason(original(i)) or "schema", _error_text(exc))
                continue
            meter[i] = self.registry.slot_of.get(hb.meter_id, -1)
            ts[i] = epoch_seconds(hb.ts)
            status[i] = _STATUS_CODE[hb.status]
            codes[i] = tuple(hb.error_codes)
            signal[i] = hb.signal_dbm
            battery[i] = hb.battery_pct
            offset[i] = hb.clock_offset_s
            firmware[i] = hb.firmware
        for i in np.flatnonzero(keep & (meter < 0)).tolist():
            reject(i, "unknown_meter", f"meter {ids[i]!r} is not in the registry")
        msg_arr = np.array(rec_msg, np.int64)
        append = np.array([m.timestamp_ms for m in msgs], np.int64)
        cols = HeartbeatColumns(
            registry=self.registry,
            meter=meter,
            ts=ts,
            status=status,
            n_error_codes=np.fromiter(map(len, codes), np.int64, n),
            error_codes=codes,
            signal_dbm=signal,
            battery_pct=battery,
            clock_offset_s=offset,
            firmware=firmware,
            message=msg_arr,
            append_ms=append[msg_arr] if n else np.zeros(0, np.int64),
            sources=msgs,
        )
        return DecodedHeartbeats(cols if keep.all() else cols.take(keep), rejects, len(msgs), n, envelopes, unparsed)
