"""Event contracts: one pydantic v2 model per Kafka payload.

These models are the boundary between meters/simulators/importers and the
engine. They import neither Kafka nor Faust, so producers (the simulator, the
importers) and consumers (the agents, batch backfills) share one definition.

Every event carries ``schema_version`` so consumers can refuse payloads from a
future producer with a clear dead-letter reason instead of misreading them.

Examples:
    >>> r = Reading(meter_id="M000001", customer_id="C000001",
    ...             interval_start="2026-01-01T00:00:00Z", kwh_import=0.25,
    ...             register_kwh=1000.25, voltage=231.0, power_factor=0.97, seq=0)
    >>> r.interval_minutes, r.interval_start.tzinfo is not None
    (15, True)
    >>> Reading.model_validate_json(r.model_dump_json()) == r
    True
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

SCHEMA_VERSION: Literal[1] = 1


#: Event times an input payload may carry: [EARLIEST, LATEST). Outside it a timestamp is a fault to
#: dead-letter, not data: the engine's clocks run on from the largest event time and format times as ISO
#: strings, which stop at the year 9999, and importers accept the years 1970-2100 alike.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2101, 1, 1, tzinfo=UTC)


def _aware_utc(value: datetime) -> datetime:
    """Refuse naive timestamps and normalise to UTC (meters may send offsets).

    Raises only ``ValueError`` (a validation error): the conversion of, e.g.,
    ``9999-12-31T23:59:59-01:00`` overflows the datetime range, and an
    ``OverflowError`` escaping the validator would crash the consumer instead
    of dead-lettering one message.
    """
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("timestamp must carry a time zone (UTC recommended, e.g. 2026-01-01T00:00:00Z)")
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("timestamp is out of range once converted to UTC") from None


def _utc(value: datetime) -> datetime:
    """:func:`_aware_utc`, and within [EARLIEST, LATEST)."""
    utc = _aware_utc(value)
    if not EARLIEST <= utc < LATEST:
        raise ValueError(f"timestamp must lie in the years 1970-2100 (UTC), got {utc.isoformat()}")
    return utc


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError("must be a finite number")
    return value


UtcDatetime = Annotated[datetime, AfterValidator(_utc)]
"""An input event time: aware, in UTC, within the years 1970-2100."""
OutputDatetime = Annotated[datetime, AfterValidator(_aware_utc)]
"""A time the engine publishes: aware, in UTC; may pass 2100 (a window's end, the event clock running on)."""
Finite = Annotated[float, AfterValidator(_finite)]
MeterId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]
CustomerId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]


class Event(BaseModel):
    """Base of every payload: strict about unknown versions, tolerant of extra fields."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    schema_version: Literal[1] = SCHEMA_VERSION


class Reading(Event):
    """One interval measurement of one meter.

    ``kwh_import`` may be negative on the wire: a negative value on a meter
    without export is a *health* finding (VEE rule), not a malformed message.
    """

    meter_id: MeterId
    customer_id: CustomerId
    interval_start: UtcDatetime
    interval_minutes: Literal[15, 30, 60] = 15
    kwh_import: Finite = Field(ge=-1e6, le=1e6)
    kwh_export: Finite = Field(default=0.0, ge=0.0, le=1e6)
    register_kwh: Finite = Field(ge=-1e12, le=1e12)
    voltage: Finite = Field(ge=0.0, le=1e5)
    power_factor: Finite = Field(default=1.0, ge=-1.0, le=1.0)
    seq: int = Field(ge=0)


class ReadingBatch(Event):
    """A block of readings forwarded by a head-end system or data concentrator."""

    batch_id: str = Field(min_length=1, max_length=128)
    head_end_id: str = Field(default="hes-1", min_length=1, max_length=64)
    sent_at: UtcDatetime
    readings: list[Reading] = Field(min_length=1, max_length=100_000)


class ReadingColumnsPayload(BaseModel):
    """The readings of a :class:`ReadingBlock`, one list per field; entry *i* of every list is reading *i*.

    The fields and their defaults are :class:`Reading`'s; a column left out
    takes its field's default for every reading (``interval_minutes`` 15,
    ``kwh_export`` 0, ``power_factor`` 1).
    """

    model_config = ConfigDict(extra="ignore", frozen=True)

    meter_id: list[MeterId] = Field(min_length=1, max_length=100_000)
    customer_id: list[CustomerId]
    interval_start: list[UtcDatetime]
    interval_minutes: list[Literal[15, 30, 60]] | None = None
    kwh_import: list[Annotated[Finite, Field(ge=-1e6, le=1e6)]]
    kwh_export: list[Annotated[Finite, Field(ge=0.0, le=1e6)]] | None = None
    register_kwh: list[Annotated[Finite, Field(ge=-1e12, le=1e12)]]
    voltage: list[Annotated[Finite, Field(ge=0.0, le=1e5)]]
    power_factor: list[Annotated[Finite, Field(ge=-1.0, le=1.0)]] | None = None
    seq: list[Annotated[int, Field(ge=0)]]

    @model_validator(mode="after")
    def _same_length(self) -> Self:
        n = len(self.meter_id)
        for name in type(self).model_fields:
            col = getattr(self, name)
            if col is not None and len(col) != n:
                raise ValueError(f"column {name} has {len(col)} entries, meter_id has {n}")
        return self

    def readings(self) -> list[Reading]:
        """The block as :class:`Reading` records, in order."""
        n = len(self.meter_id)
        return [
            Reading(
                meter_id=self.meter_id[i],
                customer_id=self.customer_id[i],
                interval_start=self.interval_start[i],
                interval_minutes=self.interval_minutes[i] if self.interval_minutes is not None else 15,
                kwh_import=self.kwh_import[i],
                kwh_export=self.kwh_export[i] if self.kwh_export is not None else 0.0,
                register_kwh=self.register_kwh[i],
                voltage=self.voltage[i],
                power_factor=self.power_factor[i] if self.power_factor is not None else 1.0,
                seq=self.seq[i],
            )
            for i in range(n)
        ]


class ReadingBlock(Event):
    """A block of readings forwarded by a head-end system, as columns rather than one object per reading.

    Why: the same readings as a :class:`ReadingBatch`, in about 40 % of the
    bytes (no field name repeated per reading), which the broker stores and
    the engine parses without transposing objects into columns. What the
    engine does with it is what it does with the equivalent ``ReadingBatch``:
    each reading is judged on its own, a bad one is dead-lettered alone (with
    its index in the block and its own JSON), and the block is deduplicated
    by ``batch_id`` like an envelope.
    """

    batch_id: str = Field(min_length=1, max_length=128)
    head_end_id: str = Field(default="hes-1", min_length=1, max_length=64)
    sent_at: UtcDatetime
    columns: ReadingColumnsPayload


class Heartbeat(Event):
    """A meter's periodic status report."""

    meter_id: MeterId
    customer_id: CustomerId
    ts: UtcDatetime
    status: Literal["ok", "degraded", "fault"]
    error_codes: list[str] = Field(default_factory=list, max_length=32)
    signal_dbm: Finite = Field(default=-70.0, ge=-200.0, le=50.0)
    battery_pct: Finite = Field(default=100.0, ge=0.0, le=100.0)
    firmware: str = Field(default="1.0.0", max_length=32)
    clock_offset_s: Finite = Field(default=0.0, ge=-1e7, le=1e7)


class HeartbeatBatch(Event):
    """A block of heartbeats forwarded by a head-end system or data concentrator.

    Why: a head end collects its meters' status reports and forwards them
    together, as it does readings. One Kafka record per heartbeat costs the
    broker, the client and the engine far more than the heartbeat itself (at
    hourly heartbeats they were 99 % of the records of an enveloped fleet).
    Every heartbeat inside is judged on its own: a bad one is dead-lettered
    alone, with its index in the block.
    """

    batch_id: str = Field(min_length=1, max_length=128)
    head_end_id: str = Field(default="hes-1", min_length=1, max_length=64)
    sent_at: UtcDatetime
    heartbeats: list[Heartbeat] = Field(min_length=1, max_length=100_000)


class HeartbeatColumnsPayload(BaseModel):
    """The heartbeats of a :class:`HeartbeatBlock`, one list per field; entry *i* of every list is heartbeat *i*.

    The fields and defaults are :class:`Heartbeat`'s; a column left out takes
    its field's default for every heartbeat.
    """

    model_config = ConfigDict(extra="ignore", frozen=True)

    meter_id: list[MeterId] = Field(min_length=1, max_length=100_000)
    customer_id: list[CustomerId]
    ts: list[UtcDatetime]
    status: list[Literal["ok", "degraded", "fault"]]
    error_codes: list[Annotated[list[str], Field(max_length=32)]] | None = None
    signal_dbm: list[Annotated[Finite, Field(ge=-200.0, le=50.0)]] | None = None
    battery_pct: list[Annotated[Finite, Field(ge=0.0, le=100.0)]] | None = None
    firmware: list[Annotated[str, Field(max_length=32)]] | None = None
    clock_offset_s: list[Annotated[Finite, Field(ge=-1e7, le=1e7)]] | None = None

    @model_validator(mode="after")
    def _same_length(self) -> Self:
        n = len(self.meter_id)
        for name in type(self).model_fields:
            col = getattr(self, name)
            if col is not None and len(col) != n:
                raise ValueError(f"column {name} has {len(col)} entries, meter_id has {n}")
        return self


class HeartbeatBlock(Event):
    """A block of heartbeats forwarded by a head-end system, as columns (see :class:`ReadingBlock`)."""

    batch_id: str = Field(min_length=1, max_length=128)
    head_end_id: str = Field(default="hes-1", min_length=1, max_length=64)
    sent_at: UtcDatetime
    columns: HeartbeatColumnsPayload


class Purchase(Event):
    """A customer's engagement, purchase or payment event (RFM input)."""

    event_id: str = Field(min_length=1, max_length=128)
    customer_id: CustomerId
    ts: UtcDatetime
    event_type: Literal["VIEWED", "PROCESSED", "PURCHASED"]
    kind: Literal["topup", "bill_payment", "product", "plan"] = "product"
    product_code: str | None = Field(default=None, max_length=64)
    amount: Finite = Field(ge=0.0, le=1e9)
    quantity: int = Field(default=1, ge=1, le=1_000_000)
    channel: Literal["web", "app", "store", "agent"] = "web"


class MeterInfo(Event):
    """Registration of a meter (compacted ``meter.registry`` topic, keyed by meter id).

    The engine learns its fleet from here: unknown meters are dead-lettered,
    regions feed the regional totals, ``has_export`` decides whether negative
    net consumption is legitimate.
    """

    meter_id: MeterId
    customer_id: CustomerId
    region: str = Field(min_length=1, max_length=64)
    tariff: Literal["prepaid", "postpaid"]
    installed_on: UtcDatetime
    nominal_voltage: Finite = Field(default=230.0, gt=0.0, le=1e5)
    interval_minutes: Literal[15, 30, 60] = 15
    has_export: bool = False


class MaintenanceRequest(Event):
    """A maintenance visit requested for a customer's meter (opened, later resolved)."""

    request_id: str = Field(min_length=1, max_length=128)
    customer_id: CustomerId
    meter_id: MeterId | None = None
    requested_at: UtcDatetime
    resolved_at: UtcDatetime | None = None
    technician_id: str | None = Field(default=None, max_length=64)


class Feedback(Event):
    """A customer satisfaction score (1–5; ≤ 2 counts as a complaint)."""

    feedback_id: str = Field(min_length=1, max_length=128)
    customer_id: CustomerId
    ts: UtcDatetime
    score: int = Field(ge=1, le=5)


class Bill(Event):
    """A postpaid bill issued to a customer; ``paid_at`` set once paid."""

    bill_id: str = Field(min_length=1, max_length=128)
    customer_id: CustomerId
    issued_at: UtcDatetime
    amount: Finite = Field(ge=0.0, le=1e9)
    kwh: Finite = Field(default=0.0, ge=0.0, le=1e9)
    paid_at: UtcDatetime | None = None


# -- events the engine publishes ---------------------------------------------------------------


class ConsumptionWindow(Event):
    """A closed consumption window of one meter or one region (``consumption.windows``).

    Emitted when the partition's event clock (or the wall-clock timer) passes
    its end plus ``close_after_s`` (1 h), with ``revision`` 0. Every expected
    window of a registered meter is emitted, from its first reading on (or from
    its partition's first reading, or from its registration if later, and not
    before its ``installed_on``), including those with no reading (a gap: ``readings`` 0,
    ``completeness`` 0). A reading that
    arrives later, within the allowed lateness of its meter (48 h), corrects
    the window: it is emitted again with the corrected totals and the next
    ``revision``. Keep, per (kind, key, window, window_start), the record with
    the highest revision: that is the final total. A replay after a crash
    re-emits a window with the same revision and totals (deduplicate on the
    tuple plus revision).
    """

    kind: Literal["meter", "region"]
    key: str = Field(description="meter id or region name")
    window: str = Field(description="window size label, e.g. 15m, 1h, 1d")
    window_start: OutputDatetime
    window_end: OutputDatetime
    kwh_in: float
    kwh_out: float
    readings: int = Field(ge=0)
    expected: int | None = Field(default=None, description="readings a complete window holds (meters only)")
    completeness: float | None = None
    min_kw: float | None = None
    max_kw: float | None = None
    mean_kw: float | None = None
    revenue: float | None = Field(default=None, description="regional windows only")
    revision: int = Field(
        default=0,
        ge=0,
        description="0 when the window first closes; n for its n-th correction by late readings (keep the highest)",
    )


class WindowBatch(Event):
    """Closed windows of one size and one partition, as columns (``consumption.windows``).

    Why: at 15-minute intervals a meter closes about 1.25 windows per reading
    (15 m, a quarter of an hour, 1/96 of a day), so one Kafka record (or even
    one JSON object) per window would cost more than ingesting the reading and
    cap the engine well below the envelope rate. The engine therefore
    publishes meter windows in batches (``METERSEG_WINDOW_BATCH_SIZE``, 1 = one
    :class:`ConsumptionWindow` per message); regional windows stay single
    records. Entry *i* of every list describes window *i*, with the same
    meaning as the :class:`ConsumptionWindow` field of the same name;
    :func:`window_records` turns either shape into records. The key is the
    first window's meter id: all windows of a batch belong to meters of the
    same partition.
    """

    batch_id: str = Field(min_length=1, max_length=256, description="deterministic: partition, size, first window")
    kind: Literal["meter", "region"] = "meter"
    window: str = Field(description="window size label, e.g. 15m, 1h, 1d")
    key: list[str] = Field(min_length=1, max_length=100_000)
    window_start: list[OutputDatetime]
    window_end: list[OutputDatetime]
    kwh_in: list[float]
    kwh_out: list[float]
    readings: list[Annotated[int, Field(ge=0)]]
    expected: list[int | None]
    completeness: list[float | None]
    min_kw: list[float | None]
    max_kw: list[float | None]
    mean_kw: list[float | None]
    revision: list[Annotated[int, Field(ge=0)]] | None = Field(
        default=None, description="per window, as ConsumptionWindow.revision; left out: every window's is 0"
    )

    @model_validator(mode="after")
    def _same_length(self) -> WindowBatch:
        n = len(self.key)
        for name in _WINDOW_COLUMNS:
            if getattr(self, name) is None and name == "revision":
                continue
            if len(getattr(self, name)) != n:
                raise ValueError(f"{name} has {len(getattr(self, name))} entries, key has {n}")
        return self


_WINDOW_COLUMNS = (
    "window_start", "window_end", "kwh_in", "kwh_out", "readings", "expected", "completeness", "min_kw",
    "max_kw", "mean_kw", "revision",
)  # fmt: skip


def window_records(payload: dict[str, Any]) -> list[dict[str, Any]]:
    """The window records of one ``consumption.windows`` payload, batched (:class:`WindowBatch`) or single.

    Examples:
        >>> window_records({"kind": "region", "key": "North", "window": "1h"})[0]["key"]
        'North'
        >>> batch = {"batch_id": "b", "kind": "meter", "window": "15m", "key": ["M1", "M2"], "kwh_in": [0.5, 0.25]}
        >>> [(w["key"], w["window"], w["kwh_in"]) for w in window_records(batch)]
        [('M1', '15m', 0.5), ('M2', '15m', 0.25)]
    """
    keys = payload.get("key")
    if not isinstance(keys, list):
        return [payload]
    columns = {name: payload[name] for name in _WINDOW_COLUMNS if payload.get(name) is not None}
    common = {"schema_version": payload.get("schema_version", SCHEMA_VERSION), "kind": payload.get("kind", "meter"),
              "window": payload.get("window")}  # fmt: skip
    return [
        {**common, "key": key, **{name: values[i] for name, values in columns.items()}} for i, key in enumerate(keys)
    ]


AlertKind = Literal[
    "negative_consumption", "spike", "stuck_register", "voltage", "clock_skew", "fault", "degraded", "error_codes",
    "sequence_gap", "silent", "dead_register",
]  # fmt: skip
"""The health rules' finding kinds (``processors.health.config.KINDS``; a test keeps the two equal)."""


class MeterAlert(Event):
    """A meter-health alert, published only when a condition is raised or cleared (``meter.alerts``).

    ``alert_id`` names the finding (meter, kind, action, event time): deduplicate on it. Delivery
    is at-least-once; ``health`` and ``reasons`` are the meter's overall state when the alert was
    made, a snapshot that a span replayed after a crash may report differently.
    """

    alert_id: str = Field(description="deterministic: meter, kind, action and event time")
    meter_id: MeterId
    customer_id: CustomerId | None = None
    kind: AlertKind = Field(
        description="rule that fired: stuck_register (frozen register or an unlikely run of equal values), "
        "dead_register (a zero run where the meter normally consumes), spike, negative_consumption, voltage, "
        "sequence_gap (readings still missing after the reordering grace), silent (expected intervals with no "
        "sign of life), and the heartbeat conditions clock_skew, fault, degraded, error_codes"
    )
    action: Literal["raised", "cleared"]
    health: Literal["good", "fair", "poor"]
    reasons: list[str] = Field(default_factory=list)
    ts: OutputDatetime
    detail: str = ""


class SegmentChange(Event):
    """One customer entering or leaving one segment (``segment.changes``).

    A consumer that reads only this topic can rebuild every membership, per
    (family, segment_id): in the ``rule`` family ``entered`` adds and ``exited``
    removes; in ``rfm`` and ``behaviour`` (one segment per customer) ``entered``
    replaces the customer's current segment and ``exited`` removes only the
    current one. Delivery is at-least-once; the replace rule absorbs replays.
    """

    change_id: str = Field(
        description="unique id of this change, the same when a replay re-sends it: "
        "customer:family:segment:action:from>to:ts followed by #seq (the partition's change sequence number) "
        "or, for a change an API call made, @ and the exact time"
    )
    customer_id: CustomerId
    family: Literal["rfm", "behaviour", "rule"]
    segment_id: str
    segment_name: str
    action: Literal["entered", "exited"]
    from_segment: str | None = None
    to_segment: str | None = None
    ts: OutputDatetime
    reason: str
    model_version: int | None = None


class ModelEvent(Event):
    """A change of the fleet-wide behaviour model: new version, drift detected, re-seed, segment renamed (``model.events``)."""

    event_id: str
    kind: Literal["version", "drift", "reseed", "rename"]
    model_version: int = Field(ge=0)
    ts: OutputDatetime
    detail: dict[str, float | int | str] = Field(default_factory=dict)


class DeadLetter(BaseModel):
    """Documentation model of a dead-letter record (``meterseg.deadletter``).

    The record's *value* is the original bytes (or, for one bad reading inside
    an otherwise valid batch envelope, that reading's JSON) and its *key* the
    original key; the context travels in Kafka headers named like these fields.
    """

    reason: str = Field(description="invalid_json, schema, unknown_meter, too_late, unsupported_version, ...")
    error: str = Field(description="human-readable validation message")
    source_topic: str
    source_partition: int
    source_offset: int
    record: int = Field(default=-1, description="index inside a batch envelope, -1 for a whole message")


#: payload model(s) of every topic, by the settings attribute naming the topic
TOPIC_PAYLOADS: dict[str, tuple[type[BaseModel], ...]] = {
    "readings": (Reading, ReadingBatch, ReadingBlock),
    "heartbeats": (Heartbeat, HeartbeatBatch, HeartbeatBlock),
    "purchases": (Purchase,),
    "registry": (MeterInfo,),
    "alerts": (MeterAlert,),
    "windows": (ConsumptionWindow, WindowBatch),
    "segment_changes": (SegmentChange,),
    "model_events": (ModelEvent,),
    "maintenance": (MaintenanceRequest,),
    "feedback": (Feedback,),
    "bills": (Bill,),
    "deadletter": (DeadLetter,),
}
