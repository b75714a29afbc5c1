"""Columnar batches of readings and heartbeats, and the meter registry they point into.

Why columns: a Faust agent that touches every reading as a Python object tops out
at a few thousand events per second. The stream core instead turns each Kafka
poll into one :class:`ReadingColumns` (one numpy array per field) and every
processor downstream works on whole arrays.

Meters are referred to by their *slot* in a :class:`MeterRegistry` (a dense,
append-only integer id), so per-meter lookups are array indexing rather than
dictionary lookups. Slots are only meaningful together with the registry
object they came from; that is why every batch carries its ``registry``.
Processors store meter *ids* (strings) in their snapshots, never slots, so a
restart with a registry built in a different order restores correctly.

Examples:
    >>> from datetime import UTC, datetime, timedelta
    >>> from stream.schemas import MeterInfo
    >>> reg = MeterRegistry()
    >>> reg.upsert(MeterInfo(meter_id="M1", customer_id="C1", region="North", tariff="prepaid",
    ...                      installed_on=datetime(2025, 1, 1, tzinfo=UTC)))
    0
    >>> reg.slot("M1"), reg.slot("nope"), reg.region_names[reg.region_code[0]]
    (0, None, 'North')
    >>> cols = ReadingColumns.from_rows(reg, [
    ...     {"meter_id": "M1", "customer_id": "C1", "interval_start": 1767225600,
    ...      "kwh_import": 0.5, "register_kwh": 10.0, "voltage": 230.0, "seq": 1}])
    >>> len(cols), cols.kwh_import.tolist(), cols.meter_ids()
    (1, [0.5], ['M1'])
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, NamedTuple

import numpy as np
import numpy.typing as npt

from processors.jsonbytes import dumps
from stream.schemas import MeterInfo

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
I8 = npt.NDArray[np.int8]
OBJ = npt.NDArray[np.object_]
BOOL = npt.NDArray[np.bool_]

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SECOND = timedelta(seconds=1)
TARIFFS: tuple[str, ...] = ("prepaid", "postpaid")
HEARTBEAT_STATUSES: tuple[str, ...] = ("ok", "degraded", "fault")
"""Status codes of :class:`HeartbeatColumns.status` are indices into this tuple."""


def epoch_seconds(ts: datetime) -> int:
    """Whole seconds since the epoch, floored (exact for any aware datetime).

    Examples:
        >>> epoch_seconds(datetime(2026, 1, 1, tzinfo=UTC))
        1767225600
    """
    return (ts - EPOCH) // _SECOND


class RawMessage(NamedTuple):
    """One Kafka record as the agent hands it to a decoder.

    ``timestamp_ms`` is the broker append (or producer) time, ``-1`` if unknown;
    it serves the latency metrics and the ``in_future`` plausibility check.
    ``key`` is the record key where a replay knows it (the backfill routes by it).
    """

    value: bytes
    topic: str = ""
    partition: int = -1
    offset: int = -1
    timestamp_ms: int = -1
    key: str | None = None


class MeterRegistry:
    """The fleet as learned from the compacted ``meter.registry`` topic.

    Append-only: a meter keeps its slot for the life of the object; an update
    of a known meter (new region, tariff ...) rewrites its attributes in place.
    Arrays grow by doubling so that ``upsert`` is amortised O(1).
    """

    def __init__(self, infos: Iterable[MeterInfo] = ()) -> None:
        self._slot_of: dict[str, int] = {}
        self.meter_ids: list[str] = []
        self.customer_ids: list[str] = []
        self.region_names: list[str] = []
        self._region_of: dict[str, int] = {}
        cap = 64
        self._region_code = np.zeros(cap, np.int32)
        self._tariff_code = np.zeros(cap, np.int8)
        self._has_export = np.zeros(cap, np.bool_)
        self._nominal_voltage = np.zeros(cap, np.float64)
        self._interval_minutes = np.zeros(cap, np.int64)
        self._installed_s = np.zeros(cap, np.int64)
        self.version = 0
        """Incremented on every change, so caches derived from the registry can tell they are stale."""
        for info in infos:
            self.upsert(info)

    def __len__(self) -> int:
        return len(self.meter_ids)

    def __contains__(self, meter_id: object) -> bool:
        return meter_id in self._slot_of

    def slot(self, meter_id: str) -> int | None:
        """Slot of a meter id, or ``None`` for an unknown meter."""
        return self._slot_of.get(meter_id)

    @property
    def slot_of(self) -> Mapping[str, int]:
        """Read-only view of the id → slot mapping (hot loops use ``.get`` on it)."""
        return self._slot_of

    def region_id(self, region: str) -> int:
        """Dense code of a region name, interning it on first sight."""
        code = self._region_of.get(region)
        if code is None:
            code = len(self.region_names)
            self._region_of[region] = code
            self.region_names.append(region)
        return code

    def _grow(self, need: int) -> None:
        cap = len(self._region_code)
        if need <= cap:
            return
        new = max(need, 2 * cap)
        for name in ("_region_code", "_tariff_code", "_has_export", "_nominal_voltage", "_interval_minutes", "_installed_s"):
            old = getattr(self, name)
            arr = np.zeros(new, old.dtype)
            arr[: len(old)] = old
            setattr(self, name, arr)

    def upsert(self, info: MeterInfo) -> int:
        """Register or update a meter; returns its slot."""
        slot = self._slot_of.get(info.meter_id)
        if slot is None:
            slot = len(self.meter_ids)
            self._grow(slot + 1)
            self._slot_of[info.meter_id] = slot
            self.meter_ids.append(info.meter_id)
            self.customer_ids.append(info.customer_id)
        else:
            self.customer_ids[slot] = info.customer_id
        self._region_code[slot] = self.region_id(info.region)
        self._tariff_code[slot] = TARIFFS.index(info.tariff)
        self._has_export[slot] = info.has_export
        self._nominal_voltage[slot] = info.nominal_voltage
        self._interval_minutes[slot] = info.interval_minutes
        self._installed_s[slot] = int(info.installed_on.timestamp())
        self.version += 1
        return slot

    # Views trimmed to the number of meters: index them with slots.
    @property
    def region_code(self) -> npt.NDArray[np.int32]:
        return self._region_code[: len(self)]

    @property
    def tariff_code(self) -> I8:
        return self._tariff_code[: len(self)]

    @property
    def has_export(self) -> BOOL:
        return self._has_export[: len(self)]

    @property
    def nominal_voltage(self) -> F64:
        return self._nominal_voltage[: len(self)]

    @property
    def interval_minutes(self) -> I64:
        return self._interval_minutes[: len(self)]

    @property
    def installed_s(self) -> I64:
        """``installed_on`` as epoch seconds (0 for a registry rebuilt by :meth:`restore`, which keeps none)."""
        return self._installed_s[: len(self)]

    def info(self, slot: int) -> dict[str, Any]:
        """Static attributes of one meter, JSON-serialisable (embedded in processor snapshots)."""
        return {
            "meter_id": self.meter_ids[slot],
            "customer_id": self.customer_ids[slot],
            "region": self.region_names[int(self._region_code[slot])],
            "tariff": TARIFFS[int(self._tariff_code[slot])],
            "has_export": bool(self._has_export[slot]),
            "nominal_voltage": float(self._nominal_voltage[slot]),
            "interval_minutes": int(self._interval_minutes[slot]),
        }

    def snapshot(self) -> list[dict[str, Any]]:
        """Every meter's attributes in slot order (JSON-serialisable)."""
        return [self.info(s) for s in range(len(self))]

    @classmethod
    def restore(cls, state: Sequence[Mapping[str, Any]]) -> MeterRegistry:
        """Rebuild a registry from :meth:`snapshot` output (same slots)."""
        reg = cls()
        for row in state:
            reg.upsert(MeterInfo(installed_on=EPOCH, **row))
        return reg


def _empty(dtype: type[np.generic]) -> Any:
    return np.zeros(0, dtype)


@dataclass(slots=True)
class ReadingColumns:
    """A batch of readings as parallel numpy arrays (one entry per reading).

    ``meter`` holds slots of ``registry``. ``message`` is the index of the Kafka
    message (in ``sources``) a reading came from and ``record`` its position in
    a batch envelope (``-1`` for a single-reading message), so a processor can
    point a dead-letter entry back at the original bytes.
    """

    registry: MeterRegistry
    meter: I64 = field(default_factory=lambda: _empty(np.int64))
    customer_id: OBJ = field(default_factory=lambda: _empty(np.object_))
    interval_start: I64 = field(default_factory=lambda: _empty(np.int64))
    interval_minutes: I64 = field(default_factory=lambda: _empty(np.int64))
    kwh_import: F64 = field(default_factory=lambda: _empty(np.float64))
    kwh_export: F64 = field(default_factory=lambda: _empty(np.float64))
    register_kwh: F64 = field(default_factory=lambda: _empty(np.float64))
    voltage: F64 = field(default_factory=lambda: _empty(np.float64))
    power_factor: F64 = field(default_factory=lambda: _empty(np.float64))
    seq: I64 = field(default_factory=lambda: _empty(np.int64))
    message: I64 = field(default_factory=lambda: _empty(np.int64))
    record: I64 = field(default_factory=lambda: _empty(np.int64))
    append_ms: I64 = field(default_factory=lambda: _empty(np.int64))
    sources: Sequence[RawMessage] = ()
    """Message-level metadata (value, topic, partition, offset, timestamp), indexed by ``message``."""
    batch_ids: Sequence[str | None] = ()
    """Envelope ``batch_id`` per message (``None`` for single readings), indexed by ``message``."""

    ARRAYS = (
        "meter", "customer_id", "interval_start", "interval_minutes", "kwh_import", "kwh_export",
        "register_kwh", "voltage", "power_factor", "seq", "message", "record", "append_ms",
    )  # fmt: skip

    def __len__(self) -> int:
        return len(self.meter)

    def take(self, index: npt.NDArray[np.bool_] | npt.NDArray[np.intp] | I64) -> ReadingColumns:
        """A new batch with the rows selected by a boolean mask or an index array."""
        return replace(self, **{name: getattr(self, name)[index] for name in self.ARRAYS})

    def meter_ids(self) -> list[str]:
        """Meter ids of the rows (for output and tests; not for hot loops)."""
        ids = self.registry.meter_ids
        return [ids[s] for s in self.meter.tolist()]

    def to_rows(self) -> list[dict[str, Any]]:
        """One dict per reading with ``interval_start`` in epoch seconds (for tests and debugging)."""
        out: list[dict[str, Any]] = []
        ids = self.meter_ids()
        for i in range(len(self)):
            out.append(
                {
                    "meter_id": ids[i],
                    "customer_id": self.customer_id[i],
                    "interval_start": int(self.interval_start[i]),
                    "interval_minutes": int(self.interval_minutes[i]),
                    "kwh_import": float(self.kwh_import[i]),
                    "kwh_export": float(self.kwh_export[i]),
                    "register_kwh": float(self.register_kwh[i]),
                    "voltage": float(self.voltage[i]),
                    "power_factor": float(self.power_factor[i]),
                    "seq": int(self.seq[i]),
                }
            )
        return out

    @classmethod
    def from_rows(cls, registry: MeterRegistry, rows: Sequence[Mapping[str, Any]]) -> ReadingColumns:
        """Build a batch from already-validated rows (``interval_start`` in epoch seconds).

        Unknown meters raise ``KeyError``: this is a test/backfill helper, the
        stream path goes through :mod:`processors.decode`.
        """
        n = len(rows)
        slot_of = registry.slot_of
        return cls(
            registry=registry,
            meter=np.array([slot_of[r["meter_id"]] for r in rows], np.int64),
            customer_id=np.array([r["customer_id"] for r in rows] + [None], np.object_)[:n],
            interval_start=np.array([r["interval_start"] for r in rows], np.int64),
            interval_minutes=np.array([r.get("interval_minutes", 15) for r in rows], np.int64),
            kwh_import=np.array([r["kwh_import"] for r in rows], np.float64),
            kwh_export=np.array([r.get("kwh_export", 0.0) for r in rows], np.float64),
            register_kwh=np.array([r["register_kwh"] for r in rows], np.float64),
            voltage=np.array([r["voltage"] for r in rows], np.float64),
            power_factor=np.array([r.get("power_factor", 1.0) for r in rows], np.float64),
            seq=np.array([r["seq"] for r in rows], np.int64),
            message=np.arange(n, dtype=np.int64),
            record=np.full(n, -1, np.int64),
            append_ms=np.full(n, -1, np.int64),
            batch_ids=[None] * n,
        )

    @classmethod
    def concat(cls, parts: Sequence[ReadingColumns]) -> ReadingColumns:
        """Concatenate batches that share one registry (message indices are re-based)."""
        if not parts:
            raise ValueError("concat needs at least one batch")
        registry = parts[0].registry
        arrays: dict[str, Any] = {}
        offset = 0
        shifted: list[I64] = []
        for p in parts:
            if p.registry is not registry:
                raise ValueError("batches must share one registry")
            shifted.append(p.message + offset)
            offset += len(p.sources) if p.sources else int(p.message.max(initial=-1)) + 1
        for name in cls.ARRAYS:
            arrays[name] = np.concatenate([getattr(p, name) for p in parts])
        arrays["message"] = np.concatenate(shifted)
        sources = [s for p in parts for s in p.sources]
        batch_ids = [b for p in parts for b in p.batch_ids]
        return cls(registry=registry, sources=sources, batch_ids=batch_ids, **arrays)


@dataclass(slots=True)
class HeartbeatColumns:
    """A batch of heartbeats as parallel arrays; ``status`` indexes :data:`HEARTBEAT_STATUSES`."""

    registry: MeterRegistry
    meter: I64 = field(default_factory=lambda: _empty(np.int64))
    ts: I64 = field(default_factory=lambda: _empty(np.int64))
    status: I8 = field(default_factory=lambda: _empty(np.int8))
    n_error_codes: I64 = field(default_factory=lambda: _empty(np.int64))
    error_codes: OBJ = field(default_factory=lambda: _empty(np.object_))
    """Tuple of error-code strings per heartbeat."""
    signal_dbm: F64 = field(default_factory=lambda: _empty(np.float64))
    battery_pct: F64 = field(default_factory=lambda: _empty(np.float64))
    clock_offset_s: F64 = field(default_factory=lambda: _empty(np.float64))
    firmware: OBJ = field(default_factory=lambda: _empty(np.object_))
    message: I64 = field(default_factory=lambda: _empty(np.int64))
    append_ms: I64 = field(default_factory=lambda: _empty(np.int64))
    sources: Sequence[RawMessage] = ()

    ARRAYS = (
        "meter", "ts", "status", "n_error_codes", "error_codes", "signal_dbm", "battery_pct",
        "clock_offset_s", "firmware", "message", "append_ms",
    )  # fmt: skip

    def __len__(self) -> int:
        return len(self.meter)

    def take(self, index: npt.NDArray[np.bool_] | npt.NDArray[np.intp] | I64) -> HeartbeatColumns:
        """A new batch with the rows selected by a boolean mask or an index array."""
        return replace(self, **{name: getattr(self, name)[index] for name in self.ARRAYS})

    @classmethod
    def from_rows(cls, registry: MeterRegistry, rows: Sequence[Mapping[str, Any]]) -> HeartbeatColumns:
        """Build a batch from validated rows (``ts`` in epoch seconds); a test/backfill helper.

        Examples:
            >>> reg = MeterRegistry([MeterInfo(meter_id="M1", customer_id="C1", region="N",
            ...     tariff="prepaid", installed_on=EPOCH)])
            >>> hb = HeartbeatColumns.from_rows(reg, [{"meter_id": "M1", "ts": 60, "status": "fault",
            ...     "error_codes": ["E1"]}])
            >>> hb.status.tolist(), hb.n_error_codes.tolist()
            ([2], [1])
        """
        n = len(rows)
        slot_of = registry.slot_of
        codes = np.empty(n, np.object_)
        for i, r in enumerate(rows):
            codes[i] = tuple(r.get("error_codes", ()))
        return cls(
            registry=registry,
            meter=np.array([slot_of[r["meter_id"]] for r in rows], np.int64),
            ts=np.array([r["ts"] for r in rows], np.int64),
            status=np.array([HEARTBEAT_STATUSES.index(r["status"]) for r in rows], np.int8),
            n_error_codes=np.array([len(c) for c in codes], np.int64),
            error_codes=codes,
            signal_dbm=np.array([r.get("signal_dbm", -70.0) for r in rows], np.float64),
            battery_pct=np.array([r.get("battery_pct", 100.0) for r in rows], np.float64),
            clock_offset_s=np.array([r.get("clock_offset_s", 0.0) for r in rows], np.float64),
            firmware=np.array([r.get("firmware", "1.0.0") for r in rows] + [None], np.object_)[:n],
            message=np.arange(n, dtype=np.int64),
            append_ms=np.full(n, -1, np.int64),
        )


def concat_heartbeats(parts: Sequence[HeartbeatColumns]) -> HeartbeatColumns:
    """Concatenate heartbeat batches that share one registry (message indices are re-based)."""
    if not parts:
        raise ValueError("concat needs at least one batch")
    arrays: dict[str, Any] = {
        name: np.concatenate([getattr(p, name) for p in parts]) for name in HeartbeatColumns.ARRAYS
    }
    shifted, offset = [], 0
    for p in parts:
        shifted.append(p.message + offset)
        offset += len(p.sources)
    arrays["message"] = np.concatenate(shifted)
    return HeartbeatColumns(registry=parts[0].registry, sources=[s for p in parts for s in p.sources], **arrays)


def column_names(cls: type[ReadingColumns] | type[HeartbeatColumns]) -> list[str]:
    """Field names of a columns class (for generic code and tests)."""
    return [f.name for f in fields(cls)]


RejectReason = Literal[
    "invalid_json", "schema", "unsupported_version", "unknown_meter", "too_late", "in_future",
]  # fmt: skip
"""Machine-readable dead-letter reasons (a Prometheus label, so a small closed set)."""


@dataclass(frozen=True, slots=True)
class Reject:
    """A message or a reading that goes to the dead-letter topic instead of being processed.

    ``payload`` is the original message bytes, except for a reading inside a
    batch envelope whose siblings are fine: then it is that reading's JSON and
    ``record`` its position in the envelope (``-1`` otherwise). For
    conservation counts, a reject with ``record == -1`` from an envelope-level
    failure (invalid JSON, bad header) stands for one *message* whose readings
    were never seen; all others stand for one reading.
    """

    reason: RejectReason
    message: str
    payload: bytes
    topic: str = ""
    partition: int = -1
    offset: int = -1
    record: int = -1
    meter_id: str | None = None

    def headers(self) -> list[tuple[str, bytes]]:
        """Kafka headers for the dead-letter record (the value is :attr:`payload`)."""
        return [
            ("reason", self.reason.encode()),
            ("error", self.message.encode()[:1000]),
            ("source_topic", self.topic.encode()),
            ("source_partition", str(self.partition).encode()),
            ("source_offset", str(self.offset).encode()),
            ("record", str(self.record).encode()),
        ]

    def to_record(self) -> dict[str, Any]:
        """JSON-serialisable form (payload as UTF-8 text with replacement characters)."""
        return {
            "reason": self.reason,
            "message": self.message,
            "payload": self.payload.decode("utf-8", "replace"),
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "record": self.record,
            "meter_id": self.meter_id,
        }


def _source(cols: ReadingColumns, i: int) -> RawMessage:
    msg = int(cols.message[i])
    return cols.sources[msg] if msg < len(cols.sources) else RawMessage(b"")


def reading_rejects(cols: ReadingColumns, index: Iterable[int], reason: RejectReason, message: str) -> list[Reject]:
    """Rejects for rows of an already-decoded batch (e.g. ``too_late`` from the windows).

    The payload is the original message when the row came alone, otherwise the
    row re-encoded as Reading JSON.
    """
    out: list[Reject] = []
    ids = cols.registry.meter_ids
    idx = np.fromiter(index, np.int64)
    need_json = [k for k, i in enumerate(idx.tolist()) if int(cols.record[i]) >= 0 or not _source(cols, i).value]
    rows = cols.take(idx[need_json]).to_rows() if need_json else []
    row_of = dict(zip(need_json, rows, strict=True))
    for k, i in enumerate(idx.tolist()):
        src = _source(cols, i)
        row = row_of.get(k)
        if row is None:
            payload = src.value
        else:
            row["interval_start"] = datetime.fromtimestamp(row["interval_start"], UTC).isoformat()
            payload = dumps(row)
        rec = int(cols.record[i])
        out.append(Reject(reason, message, payload, src.topic, src.partition, src.offset, rec, ids[int(cols.meter[i])]))
    return out


class MeterRows:
    """Dense local row numbers for the meters a processor has seen (its compact state index).

    A partition's processor sees only its share of the fleet, so it keeps state
    arrays sized to *its* meters rather than to the registry. Rows are assigned
    in first-seen order and are mapped from registry slots by one numpy gather
    per batch. Snapshots store meter ids, so rows survive a registry rebuilt in
    another order.

    Examples:
        >>> reg = MeterRegistry([MeterInfo(meter_id=m, customer_id="C", region="N", tariff="prepaid",
        ...                                installed_on=EPOCH) for m in ("A", "B", "C")])
        >>> rows = MeterRows()
        >>> rows.rows_of(reg, np.array([2, 0, 2])).tolist(), rows.ids
        ([0, 1, 0], ['C', 'A'])
    """

    def __init__(self, ids: Sequence[str] = ()) -> None:
        self.ids: list[str] = list(ids)
        self._registry: MeterRegistry | None = None
        # int32 (a registry of 2**31 meters is far off): one per *registered* meter, in every partition's
        # processors, so its width counts (a dict id -> row cost ~100 bytes per meter seen, this 4 per slot)
        self._row_of_slot = np.full(0, -1, np.int32)
        # ids of rows whose meter had no registry slot when the map was built (restored, not registered yet):
        # looked up when they register, so they keep their row. Usually empty.
        self._unmapped: dict[str, int] = {}
        self._of_id: dict[str, int] | None = None  # built on demand, only before a registry is known

    def __len__(self) -> int:
        return len(self.ids)

    def row(self, meter_id: str) -> int | None:
        """Row of a meter id, if seen."""
        if self._registry is None:
            if self._of_id is None or len(self._of_id) != len(self.ids):
                self._of_id = {m: i for i, m in enumerate(self.ids)}
            return self._of_id.get(meter_id)
        s = self._registry.slot(meter_id)
        if s is not None and s < len(self._row_of_slot) and self._row_of_slot[s] >= 0:
            return int(self._row_of_slot[s])
        return self._unmapped.get(meter_id)

    def _map(self, registry: MeterRegistry) -> None:
        """Map registry slots to rows; rows share the registry's id strings (a restore's copies are freed)."""
        self._registry, self._of_id = registry, None
        self._row_of_slot = np.full(len(registry), -1, np.int32)
        self._unmapped = {}
        ids = registry.meter_ids
        for i, m in enumerate(self.ids):
            s = registry.slot(m)
            if s is None:
                self._unmapped[m] = i
            else:
                self._row_of_slot[s] = i
                self.ids[i] = ids[s]

    def rows_of(self, registry: MeterRegistry, slots: I64) -> I64:
        """Rows of registry slots, assigning new rows to meters seen for the first time."""
        if registry is not self._registry:
            self._map(registry)
        if len(self._row_of_slot) < len(registry):
            grown = np.full(max(len(registry), 2 * len(self._row_of_slot)), -1, np.int32)
            grown[: len(self._row_of_slot)] = self._row_of_slot
            self._row_of_slot = grown
        rows = self._row_of_slot[slots]
        if len(rows) and rows.min() < 0:
            for s in dict.fromkeys(slots[rows < 0].tolist()):
                m = registry.meter_ids[s]
                r = self._unmapped.pop(m, None) if self._unmapped else None
                if r is None:
                    r = len(self.ids)
                    self.ids.append(m)
                self._row_of_slot[s] = r
            rows = self._row_of_slot[slots]
        return rows.astype(np.int64)


def grow_rows(arr: npt.NDArray[Any], n: int, fill: Any) -> npt.NDArray[Any]:
    """``arr`` with at least ``n`` rows (first axis), doubling capacity, new rows set to ``fill``."""
    if len(arr) >= n:
        return arr
    new = np.full((max(n, 2 * len(arr), 16), *arr.shape[1:]), fill, arr.dtype)
    new[: len(arr)] = arr
    return new


def pack_array(arr: npt.NDArray[Any]) -> dict[str, Any]:
    """A numpy array as JSON-serialisable data: dtype, shape and base64 of its little-endian bytes.

    Exact (bit-for-bit, NaN included) and ~10× faster and smaller than a list of
    numbers, which matters for snapshots of per-meter state of large fleets.

    Examples:
        >>> a = np.array([[1.5, np.nan], [-0.0, 1e-300]])
        >>> import orjson
        >>> b = unpack_array(orjson.loads(dumps(pack_array(a))))
        >>> b.tobytes() == a.tobytes(), b.shape
        (True, (2, 2))
    """
    le = np.ascontiguousarray(arr, arr.dtype.newbyteorder("<"))
    return {"dtype": le.dtype.str, "shape": list(arr.shape), "b64": base64.b64encode(le.tobytes()).decode()}


def unpack_array(data: Mapping[str, Any]) -> npt.NDArray[Any]:
    """Inverse of :func:`pack_array` (a writable, native-order copy)."""
    raw = base64.b64decode(data["b64"])
    arr = np.frombuffer(raw, np.dtype(data["dtype"])).reshape(data["shape"])
    return arr.astype(arr.dtype.newbyteorder("="), copy=True)
