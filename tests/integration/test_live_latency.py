"""``bench.live_latency`` pairs each output record with the input that caused it (pure: records made here)."""

from __future__ import annotations

from typing import Any

import orjson

from bench.live_latency import Timing, alert_latencies, purchase_latencies, reading_index


def rec(ts_ms: int, doc: dict[str, Any]) -> tuple[int, bytes]:
    return ts_ms, orjson.dumps(doc)


def test_an_alert_is_timed_from_the_first_envelope_that_carried_its_reading() -> None:
    block = {"columns": {"meter_id": ["M1", "M2"], "interval_start": ["2026-01-02T03:00:00Z"] * 2}}
    rows = {"readings": [{"meter_id": "M2", "interval_start": "2026-01-02T04:00:00Z"}]}
    malformed = [(3_000, b'{"schema_version":1,"batch_id":"x","readings":[{"meter_id":"M1"'),
                 rec(3_000, {"meter_id": "M1", "kwh_import": 1.0}), rec(3_000, {"readings": [{"meter_id": "M1",
                 "interval_start": "not a time"}]})]  # fmt: skip
    index = reading_index([*malformed, rec(5_000, block), rec(4_000, block), rec(6_000, rows)])  # a retransmission later
    alerts = [
        rec(4_300, {"meter_id": "M1", "kind": "voltage", "action": "raised", "ts": "2026-01-02T03:00:00Z"}),
        rec(6_900, {"meter_id": "M2", "kind": "spike", "action": "raised", "ts": "2026-01-02T04:00:00+00:00"}),
        rec(7_000, {"meter_id": "M2", "kind": "spike", "action": "cleared", "ts": "2026-01-02T05:00:00Z"}),
        rec(7_000, {"meter_id": "M3", "kind": "silent", "action": "raised", "ts": "2026-01-02T05:00:00Z"}),
        rec(7_100, {"meter_id": "M9", "kind": "voltage", "action": "raised", "ts": "2026-01-01T00:00:00Z"}),
    ]
    assert alert_latencies(index, alerts) == ([Timing("voltage", 4_000, 300.0), Timing("spike", 6_000, 900.0)], 1)  # M9's reading was sent before the phase


def test_a_segment_change_is_timed_from_the_purchase_since_the_customers_previous_change() -> None:
    purchases = [
        rec(1_000, {"customer_id": "C1", "event_type": "VIEWED"}),
        rec(2_000, {"customer_id": "C1", "event_type": "PURCHASED"}),
        rec(2_500, {"customer_id": "C2", "event_type": "PURCHASED"}),
        rec(8_000, {"customer_id": "C1", "event_type": "PURCHASED"}),
    ]
    entered = {"family": "rfm", "action": "entered"}
    changes = [
        rec(2_600, {"customer_id": "C1", **entered}),
        rec(2_600, {"customer_id": "C1", "family": "rule", "action": "entered"}),  # the same batch: counted once
        rec(2_600, {"customer_id": "C1", "family": "rfm", "action": "exited"}),
        rec(3_000, {"customer_id": "C1", "family": "rule", "action": "entered"}),  # no purchase since 2 600
        rec(3_100, {"customer_id": "C1", "family": "behaviour", "action": "entered"}),
        rec(8_700, {"customer_id": "C1", **entered}),
        rec(9_000, {"customer_id": "C3", **entered}),  # no purchase at all: a rescore
    ]
    # C2's purchase moved nothing
    assert purchase_latencies(purchases, changes) == ([600.0, 700.0], 2, 1)
