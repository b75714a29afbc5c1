"""Windows: exact totals against a plain recomputation, once-only emission, timers, restarts."""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

import numpy as np
import orjson
from hypothesis import given, settings
from hypothesis import strategies as st
from test_ingest_support import T0, make_registry, make_rows

from processors.columns import ReadingColumns
from processors.windows import ClosedWindows, ConsumptionWindows, WindowConfig

REG = make_registry(6)
PRICES = {"prepaid": 0.25, "postpaid": 0.125}


def rows_for(seed: int, n: int, spread_s: int) -> list[dict[str, Any]]:
    """Readings of 6 meters at random aligned times within ``spread_s``, random order, some negative."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        m = int(rng.integers(0, 6))
        minutes = (15, 30, 60)[m % 3]
        t = T0 + int(rng.integers(0, spread_s // (minutes * 60))) * minutes * 60
        out.append(
            {"meter_id": f"M{m:07d}", "customer_id": "C", "interval_start": t, "interval_minutes": minutes,
             "kwh_import": float(rng.normal(0.3, 0.5)), "kwh_export": float(abs(rng.normal(0, 0.1))),
             "register_kwh": 1.0, "voltage": 230.0, "seq": i}
        )  # fmt: skip
    return out


def run(windows: ConsumptionWindows, batches: list[list[dict[str, Any]]], cut: int | None) -> tuple[
    list[ClosedWindows], list[dict[str, Any]], ConsumptionWindows
]:  # fmt: skip
    closed: list[ClosedWindows] = []
    accepted: list[dict[str, Any]] = []
    for k, rows in enumerate(batches):
        if k == cut:
            windows = ConsumptionWindows.restore(orjson.loads(orjson.dumps(windows.snapshot())))
        if not rows:
            closed += windows.on_timer(T0 + 3600 * k)
            continue
        out = windows.process(ReadingColumns.from_rows(REG, rows))
        assert len(out.accepted) + out.too_late == len(rows)
        accepted += out.accepted.to_rows()
        closed += out.closed
    closed += windows.flush()
    return closed, accepted, windows


def recompute(accepted: list[dict[str, Any]], size: int, key: str) -> dict[tuple[str, int], list[float]]:
    tot: dict[tuple[str, int], list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0, 0.0])
    for r in accepted:
        k = r["meter_id"] if key == "meter" else REG.region_names[int(REG.region_code[REG.slot(r["meter_id"])])]
        w = (k, r["interval_start"] // size * size)
        tot[w][0] += r["kwh_import"]
        tot[w][1] += r["kwh_export"]
        tot[w][2] += 1
        tarif = "prepaid" if int(r["meter_id"][1:]) % 2 else "postpaid"
        tot[w][3] += r["kwh_import"] * PRICES[tarif]
    return tot


def close_enough(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    spread_h=st.integers(1, 60),
    sizes=st.lists(st.integers(1, 40), min_size=1, max_size=6),
    lateness=st.sampled_from([0, 900, 3600, 7200]),
    cut=st.one_of(st.none(), st.integers(0, 6)),
)
def test_totals_exact_once_only_and_restart_safe(
    seed: int, spread_h: int, sizes: list[int], lateness: int, cut: int | None
) -> None:
    rows = rows_for(seed, sum(sizes), spread_h * 3600)
    rows.sort(key=lambda r: r["interval_start"] + (seed % 7) * 600 * ((r["seq"] % 3) - 1))  # mild disorder
    batches, pos = [], 0
    for s in sizes:
        batches.append(rows[pos : pos + s])
        pos += s
        if s % 5 == 0:
            batches.append([])  # a timer tick in between
    cfg = WindowConfig(allowed_lateness_s=lateness, price_per_kwh=PRICES)
    closed, accepted, _ = run(ConsumptionWindows(cfg), batches, cut)
    # Uninterrupted run gives identical output (restore ∘ snapshot is invisible).
    closed2, accepted2, _ = run(ConsumptionWindows(cfg), batches, None)
    assert [c.to_records() for c in closed] == [c.to_records() for c in closed2] and accepted == accepted2
    for size, kind in [(900, "meter"), (3600, "meter"), (86400, "meter"), (3600, "region")]:
        got = [r for c in closed if c.size_s == size and c.kind == kind for r in c.to_records()]
        keys = [(r["key"], r["window_start"]) for r in got]
        assert len(keys) == len(set(keys)), "a window was emitted twice"
        want = recompute(accepted, size, kind)
        assert len(got) == len(want)
        for r in got:
            start = int(np.datetime64(r["window_start"].rstrip("Z"), "s").astype(np.int64))
            w = want[(r["key"], start)]
            assert close_enough(r["kwh_in"], w[0]) and close_enough(r["kwh_out"], w[1])
            assert r["readings"] == w[2]
            if kind == "region":
                assert close_enough(r["revenue"], w[3])


def test_region_total_equals_sum_of_meter_hours_and_batch_sum() -> None:
    rows = make_rows(6, 96 * 2)
    w = ConsumptionWindows(WindowConfig(allowed_lateness_s=900))
    closed: list[ClosedWindows] = []
    for k in range(0, len(rows), 250):
        closed += w.process(ReadingColumns.from_rows(REG, rows[k : k + 250])).closed
    closed += w.flush()
    region = sum(float(c.kwh_in.sum()) for c in closed if c.kind == "region")
    for size in (900, 3600, 86400):
        meter = sum(float(c.kwh_in.sum()) for c in closed if c.kind == "meter" and c.size_s == size)
        assert close_enough(meter, math.fsum(r["kwh_import"] for r in rows))
    assert close_enough(region, math.fsum(r["kwh_import"] for r in rows))
    day = [r for c in closed if c.size_s == 86400 for r in c.to_records()]
    assert {r["readings"] for r in day} == {96} and {r["completeness"] for r in day} == {1.0}


def test_timer_closes_quiet_windows_and_later_readings_are_too_late() -> None:
    rows = make_rows(2, 1)
    w = ConsumptionWindows(WindowConfig(allowed_lateness_s=600, meter_sizes_s=(900,), region_size_s=None))
    out = w.process(ReadingColumns.from_rows(REG, rows))
    assert out.closed == []
    assert w.on_timer(T0 + 900 + 900 + 599) == []  # not yet: delay 900 + lateness 600
    closed = w.on_timer(T0 + 900 + 900 + 600)
    assert [c.keys for c in closed] == [["M0000000", "M0000001"]]
    assert w.on_timer(T0 + 10**6) == []  # never twice
    late = w.process(ReadingColumns.from_rows(REG, rows))
    assert late.too_late == 2 and [r.reason for r in late.rejects] == ["too_late"] * 2


def test_one_batch_spanning_days_is_chunked_in_event_time_order() -> None:
    rows = make_rows(3, 96 * 3)[::-1]  # a head-end upload, newest first
    w = ConsumptionWindows(WindowConfig(allowed_lateness_s=0))
    out = w.process(ReadingColumns.from_rows(REG, rows))
    assert out.too_late == 0
    closed = out.closed + w.flush()
    assert sum(len(c) for c in closed if c.size_s == 900) == 3 * 96 * 3
    assert sum(len(c) for c in closed if c.size_s == 86400) == 9


def test_revenue_from_purchases() -> None:
    w = ConsumptionWindows(WindowConfig())
    w.process(ReadingColumns.from_rows(REG, make_rows(4, 1)))
    dropped = w.add_revenue(["North", "North", "South"], np.array([T0, T0 + 10, T0 - 86400]), np.array([5.0, 2.5, 1.0]))
    assert dropped == 1
    north = [r for c in w.flush() if c.kind == "region" for r in c.to_records() if r["key"] == "North"]
    assert north[0]["revenue"] == 7.5 and north[0]["readings"] == 1


def test_too_late_rejects_point_back_at_the_source() -> None:
    from test_ingest_support import envelope_payloads, single_payloads

    from processors.columns import RawMessage
    from processors.decode import ReadingDecoder

    rows = make_rows(2, 3)
    dec = ReadingDecoder(REG)
    w = ConsumptionWindows(WindowConfig(allowed_lateness_s=0))
    w.process(dec.process(single_payloads(rows[4:])).readings)
    single = [RawMessage(p, "meter.readings", 2, 10 + i) for i, p in enumerate(single_payloads(rows[:1]))]
    late = w.process(dec.process(single).readings).rejects
    assert [(r.reason, r.partition, r.offset, r.record, r.payload) for r in late] == [
        ("too_late", 2, 10, -1, single[0].value)
    ]
    env = RawMessage(envelope_payloads(rows[:2], 2)[0], "meter.readings", 1, 7)
    late = w.process(dec.process([env]).readings).rejects
    assert [(r.partition, r.offset, r.record) for r in late] == [(1, 7, 0), (1, 7, 1)]
    back = orjson.loads(late[1].payload)
    assert back["meter_id"] == rows[1]["meter_id"] and back["kwh_import"] == rows[1]["kwh_import"]
