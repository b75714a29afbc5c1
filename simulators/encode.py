"""Fast, deterministic serialisation of events to JSON bytes.

Two promises: the same values always give the same bytes (``--seed``
reproducibility is checked byte for byte), and readings and heartbeats - the
bulk of the traffic - cost about a microsecond each. The bulk events use
pre-built ``bytes %`` templates with fixed decimals (faster than building a
dict per event); rarer events go through :func:`dumps` (orjson on dicts with a
fixed key order). Every template produces JSON that validates against the
contracts in :mod:`stream.schemas` (the tests check it).

Examples:
    >>> from datetime import UTC, datetime
    >>> iso(datetime(2026, 1, 1, 0, 15, tzinfo=UTC))
    b'2026-01-01T00:15:00Z'
    >>> tpl = reading_template(b"2026-01-01T00:00:00Z", 15, 7)
    >>> from stream.schemas import Reading
    >>> r = Reading.model_validate_json(tpl % (b"M1", b"C1", 0.25, 0.0, 12.5, 230.4, 0.951))
    >>> (r.meter_id, r.seq, r.kwh_import, r.voltage)
    ('M1', 7, 0.25, 230.4)
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import orjson

from processors.jsonbytes import dumps as _right_sized

_ISO = "%Y-%m-%dT%H:%M:%SZ"


def iso(ts: datetime) -> bytes:
    """UTC timestamp as ISO 8601 bytes with a ``Z`` suffix (second resolution)."""
    return ts.astimezone(UTC).strftime(_ISO).encode()


def iso_str(ts: datetime) -> str:
    """Like :func:`iso`, as ``str`` (ground truth, summaries)."""
    return ts.astimezone(UTC).strftime(_ISO)


def dumps(obj: dict[str, Any]) -> bytes:
    """orjson with deterministic output (insertion-ordered keys, no NaN), in a right-sized ``bytes``.

    orjson hands back a ``bytes`` that keeps its 4 KB working buffer; held by
    the hundred thousand (a day's purchases of a million customers wait in a
    heap), that is gigabytes, so this is :func:`processors.jsonbytes.dumps`,
    the engine's own right-sizing encoder.
    """
    return _right_sized(obj)


def reading_template(interval_start: bytes, interval_minutes: int, seq: int) -> bytes:
    """``bytes %`` template of one reading; fill with (meter, customer, imp, exp, register, voltage, pf).

    Everything constant within one interval (time stamp, length, sequence
    number) is baked in, so the per-reading work is one formatting call.
    """
    return (
        b'{"schema_version":1,"meter_id":"%s","customer_id":"%s","interval_start":"'
        + interval_start
        + b'","interval_minutes":'
        + str(interval_minutes).encode()
        + b',"kwh_import":%.4f,"kwh_export":%.4f,"register_kwh":%.4f,"voltage":%.1f,"power_factor":%.3f,"seq":'
        + str(seq).encode()
        + b"}"
    )


def heartbeat_template(ts: bytes) -> bytes:
    """Template of one heartbeat; fill with (meter, customer, status, error codes, signal, battery, firmware, offset).

    ``error codes`` is the raw inside of the JSON list, e.g. ``b'"E_VOLTAGE"'`` or ``b""``.
    """
    return (
        b'{"schema_version":1,"meter_id":"%s","customer_id":"%s","ts":"'
        + ts
        + b'","status":"%s","error_codes":[%s],"signal_dbm":%.1f,"battery_pct":%.1f,'
        b'"firmware":"%s","clock_offset_s":%.2f}'
    )


REGISTRY_TEMPLATE = (
    b'{"schema_version":1,"meter_id":"%s","customer_id":"%s","region":"%s","tariff":"%s",'
    b'"installed_on":"%s","nominal_voltage":230.0,"interval_minutes":%d,"has_export":%s}'
)
"""Template of one ``MeterInfo``: (meter, customer, region, tariff, installed_on, interval, has_export)."""


def envelope(
    batch_id: bytes, head_end_id: bytes, sent_at: bytes, fragments: Iterable[bytes], *, items: bytes = b"readings"
) -> bytes:
    """A ``ReadingBatch`` (or, with ``items=b"heartbeats"``, a ``HeartbeatBatch``) of already-serialised events."""
    return (
        b'{"schema_version":1,"batch_id":"'
        + batch_id
        + b'","head_end_id":"'
        + head_end_id
        + b'","sent_at":"'
        + sent_at
        + b'","'
        + items
        + b'":['
        + b",".join(fragments)
        + b"]}"
    )


_BLOCK_FIELDS = ("meter_id", "customer_id", "interval_start", "interval_minutes", "kwh_import", "kwh_export",
                 "register_kwh", "voltage", "power_factor", "seq")  # fmt: skip


HEARTBEAT_BLOCK_FIELDS = ("meter_id", "customer_id", "ts", "status", "error_codes", "signal_dbm", "battery_pct",
                          "firmware", "clock_offset_s")  # fmt: skip


def block(
    batch_id: bytes,
    head_end_id: bytes,
    sent_at: bytes,
    fragments: Iterable[bytes],
    fields: tuple[str, ...] = _BLOCK_FIELDS,
) -> bytes:
    """A ``ReadingBlock`` (or ``HeartbeatBlock``, with ``fields=HEARTBEAT_BLOCK_FIELDS``) of serialised events.

    The same readings as :func:`envelope` would carry, as one list per field.

    The fragments are the serialised readings (the row form), so a block holds
    exactly the values the equivalent ``ReadingBatch`` would: the two forms
    of one run decode to the same readings (the tests check it).

    Examples:
        >>> from stream.schemas import ReadingBlock
        >>> tpl = reading_template(b"2026-01-01T00:00:00Z", 15, 3)
        >>> raw = block(b"b1", b"hes-1", b"2026-01-01T00:15:00Z", [tpl % (b"M1", b"C1", 0.5, 0.0, 9.0, 230.0, 0.95),
        ...                                                       tpl % (b"M2", b"C2", 0.25, 0.1, 4.0, 231.5, 1.0)])
        >>> [(r.meter_id, r.kwh_import, r.seq) for r in ReadingBlock.model_validate_json(raw).columns.readings()]
        [('M1', 0.5, 3), ('M2', 0.25, 3)]
    """
    rows = [orjson.loads(f) for f in fragments]
    columns = {f: [r[f] for r in rows] for f in fields}
    return dumps({"schema_version": 1, "batch_id": batch_id.decode(), "head_end_id": head_end_id.decode(),
                  "sent_at": sent_at.decode(), "columns": columns})  # fmt: skip

