"""Live end-to-end latency from the records themselves: reading → alert and purchase → segment change.

Why from the records: the worker's ``meterseg_processing_latency_seconds`` says how long a
message waited before its batch was processed; an operator who acts on an alert, or a
campaign that acts on a segment change, waits for the *output* record. This reads what went
through Kafka during a live phase (``bench/scale.py --steady-s``) and pairs each output with
the input that caused it, by Kafka record timestamps (producer CreateTime: the simulator's and
the worker's wall clocks, the same machine):

* **reading → alert**: a raised alert of a reading rule (negative consumption, spike, voltage,
  stuck or dead register, sequence gap) names its meter and the reading's interval start; its
  cause is the first readings envelope holding that meter's reading of that interval. The
  latency includes everything the worker does before it publishes: the wait for the partition's
  heartbeats to reach the same event time (co-partitioned event time), the batch, the produce.
* **purchase → segment change**: a change in the ``rfm`` or ``rule`` family of a customer who
  made a ``PURCHASED`` event since that customer's previous change is attributed to the latest
  such purchase. Changes with no purchase before them (a rescore as the event clock moves, a
  model refit) are counted apart, and so are purchases that moved no segment (most of them).

Records older than ``since_ms`` are not read, so the backlog a bench drained first does not count.

>>> idx = reading_index([(1_000, b'{"readings": [{"meter_id": "M1", "interval_start": "2026-01-02T03:00:00Z"}]}')])
>>> alert = b'{"meter_id": "M1", "kind": "voltage", "action": "raised", "ts": "2026-01-02T03:00:00Z"}'
>>> alert_latencies(idx, [(1_250, alert)])
([Timing(kind='voltage', sent_ms=1000, ms=250.0)], 0)
>>> buys = [(2_000, b'{"customer_id": "C1", "event_type": "PURCHASED"}')]
>>> change = b'{"customer_id": "C1", "family": "rfm", "action": "entered"}'
>>> purchase_latencies(buys, [(2_400, change), (9_000, change)])
([400.0], 1, 0)
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import NamedTuple

import orjson

from bench.common import percentile, read_records
from meterseg.settings import Settings

Record = tuple[int, bytes]  # (Kafka timestamp ms, value)

READING_ALERT_KINDS = frozenset(
    {"negative_consumption", "spike", "voltage", "stuck_register", "dead_register", "sequence_gap"}
)
PURCHASE_FAMILIES = frozenset({"rfm", "rule"})


def _epoch(ts: str) -> int:
    return int(datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp())


def _reading_rows(value: bytes) -> list[tuple[str, str]]:
    """(meter id, interval start) of every reading in a message: one reading, a row envelope or a column block.

    The simulator also sends malformed messages (its message-level faults, dead-lettered by the worker):
    they caused no alert and give no row.
    """
    try:
        doc = orjson.loads(value)
        if "columns" in doc:
            cols = doc["columns"]
            return list(zip(cols["meter_id"], cols["interval_start"], strict=True))
        rows = doc.get("readings", [doc])
        return [(row["meter_id"], row["interval_start"]) for row in rows]
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return []


def reading_index(records: Iterable[Record]) -> dict[tuple[str, int], int]:
    """(meter id, interval start epoch s) → the earliest timestamp of a message that carried that reading."""
    first: dict[tuple[str, int], int] = {}
    for ts_ms, value in records:
        for meter, start in _reading_rows(value):
            try:
                key = (meter, _epoch(start))
            except (AttributeError, TypeError, ValueError):
                continue  # a malformed timestamp: dead-lettered by the worker
            if ts_ms < first.get(key, ts_ms + 1):
                first[key] = ts_ms
    return first


class Timing(NamedTuple):
    """One output paired with its cause: what it is, when the cause was sent (ms), how long it took (ms)."""

    kind: str
    sent_ms: int
    ms: float


def alert_latencies(index: dict[tuple[str, int], int], alerts: Iterable[Record]) -> tuple[list[Timing], int]:
    """Each raised reading alert timed from its reading; and how many such alerts had no reading read
    (their reading came before ``since_ms``: the cause is in the backlog).

    The kinds differ by design: a voltage or negative reading is judged on its own, a stuck register
    or a sequence gap only once later readings (or the reordering grace) show it.
    """
    out: list[Timing] = []
    unmatched = 0
    for ts_ms, value in alerts:
        a = orjson.loads(value)
        if a.get("action") != "raised" or a.get("kind") not in READING_ALERT_KINDS:
            continue
        sent = index.get((a["meter_id"], _epoch(a["ts"])))
        if sent is None:
            unmatched += 1
        else:
            out.append(Timing(a["kind"], sent, float(ts_ms - sent)))
    return out, unmatched


def purchase_latencies(purchases: Iterable[Record], changes: Iterable[Record]) -> tuple[list[float], int, int]:
    """Milliseconds from a purchase to the segment change it caused; changes without a purchase; purchases without a change.

    A change is caused by a purchase when the customer made one after its previous change (or since the
    phase began) and before this change: the latest such purchase counts, once. Entries of the customer
    stamped in the same millisecond (an rfm and a rule entry of one batch) count as one.
    """
    bought: dict[str, list[int]] = defaultdict(list)
    for ts_ms, value in purchases:
        p = orjson.loads(value)
        if p.get("event_type") == "PURCHASED":
            bought[p["customer_id"]].append(ts_ms)
    for stamps in bought.values():
        stamps.sort()
    since_change: dict[str, int] = {}
    used: set[tuple[str, int]] = set()
    out: list[float] = []
    without = 0
    for ts_ms, value in sorted(changes, key=lambda r: r[0]):
        c = orjson.loads(value)
        if c.get("family") not in PURCHASE_FAMILIES or c.get("action") != "entered":
            continue
        customer = c["customer_id"]
        floor = since_change.get(customer, -1)
        if ts_ms == floor:
            continue  # another family's entry from the same batch: one cause, timed once
        since_change[customer] = ts_ms
        stamps = bought.get(customer, [])
        i = bisect.bisect_right(stamps, ts_ms) - 1
        if i >= 0 and stamps[i] > floor and (customer, stamps[i]) not in used:
            used.add((customer, stamps[i]))
            out.append(float(ts_ms - stamps[i]))
        else:
            without += 1
    total = sum(len(s) for s in bought.values())
    return out, without, total - len(used)


def _quantiles(values: Sequence[float]) -> str:
    p50, p99 = percentile(values, 0.50) / 1000.0, percentile(values, 0.99) / 1000.0
    return f"p50 {p50:,.2f} s, p99 {p99:,.2f} s, max {max(values) / 1000.0:,.2f} s"


async def measure(settings: Settings, since_ms: int) -> list[str]:
    """Report lines: reading → alert and purchase → segment change latency for records since ``since_ms``."""
    t = settings.topics
    readings = await read_records(settings, t.readings, since_ms)
    alerts = await read_records(settings, t.alerts, since_ms)
    purchases = await read_records(settings, t.purchases, since_ms)
    changes = await read_records(settings, t.segment_changes, since_ms)
    timed, no_reading = alert_latencies(reading_index(readings), alerts)
    to_change, no_purchase, unmoved = purchase_latencies(purchases, changes)
    lines = []
    if timed:
        lines.append(f"    reading → alert (Kafka timestamps, {len(timed):,} raised reading alerts): "
                     f"{_quantiles([x.ms for x in timed])}; {no_reading:,} alerts of readings sent before the phase")  # fmt: skip
        by_kind: dict[str, list[float]] = defaultdict(list)
        for x in timed:
            by_kind[x.kind].append(x.ms)
        for kind, values in sorted(by_kind.items(), key=lambda kv: -len(kv[1])):
            lines.append(f"      {kind:<21} {len(values):>6,}: {_quantiles(values)}")
        slow = sorted(timed, key=lambda x: -x.ms)[:5]
        lines.append("      slowest (kind, reading sent at s into the phase, latency): " + ", ".join(
            f"{x.kind} +{(x.sent_ms - since_ms) / 1000:.0f} s {x.ms / 1000:.1f} s" for x in slow))  # fmt: skip
    else:
        lines.append(f"    reading → alert: no raised reading alert in the phase ({no_reading:,} of earlier readings)")
    if to_change:
        lines.append(f"    purchase → segment change ({len(to_change):,} rfm/rule entries after a purchase): "
                     f"{_quantiles(to_change)}; {no_purchase:,} entries without a purchase before them (rescores), "
                     f"{unmoved:,} purchases that moved no segment")  # fmt: skip
    else:
        lines.append(f"    purchase → segment change: no entry followed a purchase in the phase "
                     f"({no_purchase:,} entries without one, {unmoved:,} purchases that moved no segment)")  # fmt: skip
    return lines
