"""Windows: exact totals against a plain recomputation, revisions, gap windows, timers, restarts."""

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
    """Readings of 6 meters at random aligned times within ``spread_s``, random order, some negative.

    No meter repeats an interval: the windows receive deduplicated readings (a repeat of a counted interval
    is the deduplicator's to drop, and a window that closed complete is not kept for corrections).
    """
    rng = np.random.default_rng(seed)
    out = []
    taken: set[tuple[int, int]] = set()
    for i in range(n):
        m = int(rng.integers(0, 6))
        minutes = (15, 30, 60)[m % 3]
        t = T0 + int(rng.integers(0, spread_s // (minutes * 60))) * minutes * 60
        if (m, t) in taken:
            continue
        taken.add((m, t))
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


def final(closed: list[ClosedWindows], size: int, kind: str) -> tuple[dict[tuple[str, str], dict[str, Any]], int]:
    """The highest revision of each window (what a consumer keeping the last revision holds), and emissions."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    n = 0
    seen: set[tuple[str, str, int]] = set()
    for c in closed:
        if c.size_s != size or c.kind != kind:
            continue
        for r in c.to_records():
            n += 1
            key = (r["key"], r["window_start"])
            assert (*key, r["revision"]) not in seen, "a window was emitted twice with one revision"
            seen.add((*key, r["revision"]))
            if key in out:
                assert r["revision"] == out[key]["revision"] + 1, "revisions must go up by one"
            out[key] = r
    return out, n


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    spread_h=st.integers(1, 60),
    sizes=st.lists(st.integers(1, 40), min_size=1, max_size=6),
    close_after=st.sampled_from([0, 900, 3600, 7200]),
    lateness=st.sampled_from([0, 7200, 172_800]),
    cut=st.one_of(st.none(), st.integers(0, 6)),
)
def test_totals_exact_revised_and_restart_safe(
    seed: int, spread_h: int, sizes: list[int], close_after: int, lateness: int, cut: int | None
) -> None:
    """The last revision of every window equals a recomputation from the readings counted, whatever the order."""
    rows = rows_for(seed, sum(sizes), spread_h * 3600)
    rows.sort(key=lambda r: r["interval_start"] + (seed % 7) * 600 * ((r["seq"] % 3) - 1))  # mild disorder
    batches, pos = [], 0
    for s in sizes:
        batches.append(rows[pos : pos + s])
        pos += s
        if s % 5 == 0:
            batches.append([])  # a timer tick in between
    cfg = WindowConfig(close_after_s=close_after, allowed_lateness_s=lateness, price_per_kwh=PRICES)
    closed, accepted, _ = run(ConsumptionWindows(cfg), batches, cut)
    # Uninterrupted run gives identical output (restore ∘ snapshot is invisible).
    closed2, accepted2, _ = run(ConsumptionWindows(cfg), batches, None)
    assert [c.to_records() for c in closed] == [c.to_records() for c in closed2] and accepted == accepted2
    for size, kind in [(900, "meter"), (3600, "meter"), (86400, "meter"), (3600, "region")]:
        got, _ = final(closed, size, kind)
        want = recompute(accepted, size, kind)
        with_data = {k: r for k, r in got.items() if r["readings"] > 0}
        assert len(with_data) == len(want)
        for r in with_data.values():
            start = int(np.datetime64(r["window_start"].rstrip("Z"), "s").astype(np.int64))
            w = want[(r["key"], start)]
            assert close_enough(r["kwh_in"], w[0]) and close_enough(r["kwh_out"], w[1])
            assert r["readings"] == w[2]
            if kind == "region":
                assert close_enough(r["revenue"], w[3])
        if kind == "meter":  # gap windows: nothing counted, completeness 0
            gaps = [r for r in got.values() if r["readings"] == 0]
            assert all(r["kwh_in"] == 0.0 and r["completeness"] == 0.0 and r["expected"] >= 1 for r in gaps)


def test_region_total_equals_sum_of_meter_hours_and_batch_sum() -> None:
    rows = make_rows(6, 96 * 2)
    w = ConsumptionWindows(WindowConfig(close_after_s=900))
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
    w = ConsumptionWindows(
        WindowConfig(close_after_s=600, allowed_lateness_s=0, meter_sizes_s=(900,), region_size_s=None)
    )
    out = w.process(ReadingColumns.from_rows(REG, rows))
    assert out.closed == []
    assert w.on_timer(T0 + 900 + 900 + 599) == []  # not yet: delay 900 + lateness 600
    closed = w.on_timer(T0 + 900 + 900 + 600)
    assert [c.keys for c in closed] == [["M0000000", "M0000001"]]
    later = w.on_timer(T0 + 10**6)  # never twice: what closes later are the silent meters' gap windows
    assert later and all(int(c.count.sum()) == 0 and T0 not in c.start.tolist() for c in later)
    late = w.process(ReadingColumns.from_rows(REG, rows))
    assert late.too_late == 2 and [r.reason for r in late.rejects] == ["too_late"] * 2


def test_one_batch_spanning_days_is_chunked_in_event_time_order() -> None:
    rows = make_rows(3, 96 * 3)[::-1]  # a head-end upload, newest first
    w = ConsumptionWindows(WindowConfig(close_after_s=0))
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
    w = ConsumptionWindows(WindowConfig(close_after_s=0, allowed_lateness_s=0))
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


# -- late data corrects, gaps are visible (issue 13) ------------------------------------------------------
def _rows(meters: list[int], hours: range, *, t0: int = T0) -> list[dict[str, Any]]:
    rows = make_rows(6, 96 * 3, t0=t0)
    keep = {f"M{m:07d}" for m in meters}
    return [r for r in rows if r["meter_id"] in keep and (r["interval_start"] - t0) // 3600 in hours]


def test_a_block_uploaded_six_hours_late_corrects_its_windows() -> None:
    """Meter 1's head end holds 06:00-12:00 back and uploads it at 18:00: every day total ends up exact."""
    w = ConsumptionWindows(WindowConfig(price_per_kwh=PRICES))
    on_time = [r for r in _rows([0, 1, 2], range(0, 24)) if not (r["meter_id"] == "M0000001" and 6 <= (r["interval_start"] - T0) // 3600 < 12)]
    held = _rows([1], range(6, 12))
    closed: list[ClosedWindows] = []
    cut = next(i for i, r in enumerate(on_time) if r["interval_start"] >= T0 + 18 * 3600)
    out = w.process(ReadingColumns.from_rows(REG, on_time[:cut]))
    closed += out.closed
    late = w.process(ReadingColumns.from_rows(REG, held))
    assert late.too_late == 0 and late.corrected == len(held) == 24 and not late.rejects
    closed += late.closed
    closed += w.process(ReadingColumns.from_rows(REG, on_time[cut:])).closed + w.flush()
    every = on_time + held
    for size in (900, 3600, 86400):
        got, _ = final(closed, size, "meter")
        want = recompute(every, size, "meter")
        assert {k: r["readings"] for k, r in got.items()} == {
            (m, iso_s): int(v[2]) for (m, s), v in want.items() for iso_s in [_iso(s)]
        }
        for (m, s), v in want.items():
            assert close_enough(got[(m, _iso(s))]["kwh_in"], v[0])
    for c in late.closed:  # corrections serialise as WindowBatch columns, like every closing
        orjson.dumps(c.to_columns(), option=orjson.OPT_SERIALIZE_NUMPY)
    quarter = {(r["key"], r["window_start"], r["revision"]) for c in closed if c.size_s == 900 for r in c.to_records()}
    # the held quarter hours were emitted as gaps first (revision 0), then corrected (revision 1)
    assert (("M0000001", _iso(T0 + 6 * 3600), 0) in quarter) and (("M0000001", _iso(T0 + 6 * 3600), 1) in quarter)
    day, _ = final(closed, 86400, "meter")
    assert day[("M0000001", _iso(T0))]["completeness"] == 1.0 and day[("M0000001", _iso(T0))]["revision"] == 0
    region, _ = final(closed, 3600, "region")
    want_region = recompute(every, 3600, "region")
    for (k, s), v in want_region.items():
        assert close_enough(region[(k, _iso(s))]["kwh_in"], v[0]) and close_enough(region[(k, _iso(s))]["revenue"], v[3])


def test_beyond_the_allowed_lateness_of_its_meter_is_too_late() -> None:
    w = ConsumptionWindows(WindowConfig(allowed_lateness_s=4 * 3600, meter_sizes_s=(900, 3600), region_size_s=None))
    w.process(ReadingColumns.from_rows(REG, _rows([0, 1], range(0, 10))))
    late = w.process(ReadingColumns.from_rows(REG, make_rows(2, 1, t0=T0 + 6 * 3600)))  # 3 h 45 behind
    assert late.too_late == 0  # duplicates are the deduplicator's business: here it is simply counted again
    old = w.process(ReadingColumns.from_rows(REG, make_rows(1, 1, t0=T0 + 5 * 3600)))  # 4 h 45 behind
    assert old.too_late == 1 and old.rejects[0].reason == "too_late" and "allowed lateness" in old.rejects[0].message


def test_lateness_is_judged_per_meter_not_against_the_fastest() -> None:
    """A meter silent for a day and then uploading its day is on time for itself (the 1-hour rule lost it)."""
    w = ConsumptionWindows(WindowConfig(meter_sizes_s=(900, 86400), region_size_s=None))
    w.process(ReadingColumns.from_rows(REG, _rows([0, 1], range(0, 24))))
    w.process(ReadingColumns.from_rows(REG, _rows([0], range(0, 30), t0=T0 + 86400)))  # meter 0 runs on
    day2 = _rows([1], range(0, 24), t0=T0 + 86400)  # meter 1's day 2, a day late
    out = w.process(ReadingColumns.from_rows(REG, day2))
    assert out.too_late == 0 and out.corrected == 96
    rec = [r for c in out.closed if c.size_s == 86400 for r in c.to_records()]
    assert [(r["key"], r["readings"], r["revision"]) for r in rec] == [("M0000001", 96, 1)]


def test_every_expected_window_is_emitted_with_gaps_at_zero() -> None:
    """A missing quarter hour and a missing hour both show: readings 0, completeness 0, in order."""
    rows = [r for r in _rows([0], range(0, 4)) if r["interval_start"] not in (T0 + 900, *range(T0 + 7200, T0 + 10800, 900))]
    w = ConsumptionWindows(WindowConfig(close_after_s=0, meter_sizes_s=(900, 3600), region_size_s=None))
    closed = w.process(ReadingColumns.from_rows(REG, rows)).closed + w.close_until(T0 + 4 * 3600)
    quarter = [(r["window_start"][11:16], r["readings"], r["completeness"]) for c in closed if c.size_s == 900
               for r in c.to_records()]  # fmt: skip
    assert len(quarter) == 16 and [q[0] for q in quarter] == sorted(q[0] for q in quarter)
    assert [q for q in quarter if q[1] == 0] == [("00:15", 0, 0.0), ("02:00", 0, 0.0), ("02:15", 0, 0.0),
                                                 ("02:30", 0, 0.0), ("02:45", 0, 0.0)]  # fmt: skip
    hours = [(r["window_start"][11:16], r["readings"], r["expected"]) for c in closed if c.size_s == 3600
             for r in c.to_records()]  # fmt: skip
    assert hours == [("00:00", 3, 4), ("01:00", 4, 4), ("02:00", 0, 4), ("03:00", 4, 4)]
    assert w.close_until(T0 + 5 * 3600)  # the clock runs on: a silent meter's windows keep coming, as gaps


def test_an_hourly_meter_expects_one_quarter_window_per_hour() -> None:
    rows = [r for r in make_rows(3, 6, interval_s=3600) if r["meter_id"] == "M0000000" and r["interval_start"] != T0 + 3600]
    for r in rows:
        r["interval_minutes"] = 60
    w = ConsumptionWindows(WindowConfig(close_after_s=0, meter_sizes_s=(900, 3600), region_size_s=None))
    closed = w.process(ReadingColumns.from_rows(REG, rows)).closed + w.flush()
    quarter = [(r["window_start"][11:16], r["readings"]) for c in closed if c.size_s == 900 for r in c.to_records()]
    assert quarter == [("00:00", 1), ("01:00", 0), ("02:00", 1), ("03:00", 1), ("04:00", 1), ("05:00", 1)]


def test_correction_state_survives_a_restart_and_stays_small() -> None:
    w = ConsumptionWindows(WindowConfig(meter_sizes_s=(900, 3600, 86400)))
    rows = [r for r in _rows([0, 1, 2, 3], range(0, 24)) if not (r["meter_id"] == "M0000002" and r["interval_start"] % 7200 == 0)]
    w.process(ReadingColumns.from_rows(REG, rows))
    w.process(ReadingColumns.from_rows(REG, _rows([0, 1, 2, 3], range(0, 12), t0=T0 + 86400)))
    # meter 2's day 1 is partial (one reading in eight missing): its hours and day are kept, nobody else's
    assert {k[2] for k in w.store.entries if k[0] == "meter"} == {w.meters.row("M0000002")}
    again = ConsumptionWindows.restore(orjson.loads(orjson.dumps(w.snapshot())))
    fix = [r for r in _rows([2], range(0, 24)) if r["interval_start"] % 7200 == 0]
    a, b = w.process(ReadingColumns.from_rows(REG, fix)), again.process(ReadingColumns.from_rows(REG, fix))
    assert [c.to_records() for c in a.closed] == [c.to_records() for c in b.closed]
    day = [r for c in a.closed if c.size_s == 86400 for r in c.to_records()]
    assert [(r["readings"], r["completeness"], r["revision"]) for r in day] == [(96, 1.0, 1)]
    assert not [k for k in w.store.entries if k[0] == "meter"]  # complete again: nothing kept


def _iso(epoch: int) -> str:
    from test_ingest_support import iso

    return iso(epoch)


def test_a_checkpoint_from_before_corrections_restores_with_its_closing_delay() -> None:
    w = ConsumptionWindows(WindowConfig(close_after_s=900))
    w.process(ReadingColumns.from_rows(REG, _rows([0, 1], range(0, 3))))
    state = orjson.loads(orjson.dumps(w.snapshot()))
    cfg = state["config"]
    cfg["allowed_lateness_s"] = cfg.pop("close_after_s")  # what the field meant then
    for key in ("ledger", "store", "swept"):
        del state[key]
    old = ConsumptionWindows.restore(state)
    assert (old.config.close_after_s, old.config.allowed_lateness_s) == (900, 172_800)
    late = old.process(ReadingColumns.from_rows(REG, _rows([0], range(0, 1))[:1]))  # a repeat: no ledger yet
    assert late.too_late == 0 and old.ledger.since[old.meters.row("M0000000")] != -(2**63)
