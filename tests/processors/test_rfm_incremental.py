"""The incremental RFM rescore (issue 16, finding 8) gives exactly what a full rescore gives.

A tick rescores only the customers whose scores can have changed (``processors.rfm.index``): after any
sequence of purchases, population exchanges (peers' sketches), clock advances and restores, its output and
every customer's scores equal those of a processor that rescored everyone each time.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from processors.rfm import RfmProcessor, RfmSketches
from stream.schemas import Purchase

T0 = datetime(2026, 1, 1, tzinfo=UTC)

buy_st = st.builds(
    lambda i, c, hours, kind, amount: ("buy", Purchase(event_id=f"e{i}", customer_id=f"C{c}",
                                                       ts=T0 + timedelta(hours=hours), event_type=kind, amount=amount)),
    st.integers(0, 400),
    st.integers(0, 25),
    st.integers(0, 24 * 30),
    st.sampled_from(["PURCHASED", "PURCHASED", "PURCHASED", "VIEWED"]),
    st.floats(0, 300, allow_nan=False).map(lambda x: round(x, 2)),
)  # fmt: skip
peers_st = st.builds(
    lambda rows: ("peers", rows),
    st.lists(st.tuples(st.integers(0, 24 * 30), st.integers(0, 6), st.floats(1, 300, allow_nan=False)), max_size=12),
)
tick_st = st.builds(lambda hours: ("tick", hours), st.sampled_from([0, 0, 1, 3, 17, 24, 24 * 5, 24 * 20]))
restore_st = st.just(("restore", None))
ops_st = st.lists(st.one_of(buy_st, buy_st, peers_st, tick_st, tick_st, restore_st), min_size=1, max_size=60)


def _peers(rows: list[tuple[int, int, float]]) -> RfmSketches | None:
    if not rows:
        return None
    sk = RfmSketches.empty()
    for hours, freq, money in rows:
        sk.add(((T0 + timedelta(hours=hours)).timestamp(), float(freq), money), 1)
    return sk


def _dump(out: list[Any]) -> list[dict[str, Any]]:
    return [a.model_dump(mode="json") for a in out]


@settings(max_examples=150, deadline=None)
@given(ops=ops_st, lost_days=st.sampled_from([None, 1.0, 2.5, 10.0]))
def test_incremental_rescore_equals_a_full_rescore(ops: list[tuple[str, Any]], lost_days: float | None) -> None:
    inc = RfmProcessor(lost_after_days=lost_days)
    ref = RfmProcessor(lost_after_days=lost_days)
    now = T0
    for kind, arg in ops:
        if kind == "buy":
            assert _dump(inc.process([arg])) == _dump(ref.process([arg]))
        elif kind == "peers":
            inc.set_peers(_peers(arg))
            ref.set_peers(_peers(arg))
        elif kind == "restore":
            inc = RfmProcessor.restore(inc.snapshot())
        else:
            now = max(now, datetime.fromtimestamp(ref.clock, UTC)) + timedelta(hours=arg)  # purchases move it too
            assert _dump(inc.rescore(now)) == _dump(ref.rescore(now, full=True))
        assert inc.scores == ref.scores
    now += timedelta(days=1)
    assert _dump(inc.rescore(now)) == _dump(ref.rescore(now, full=True))
    assert inc.scores == ref.scores
    assert (inc.new_customers, inc.returning_customers) == (
        sum(c.record.n_purchase_days == 1 for c in ref.customers.values()),
        sum(c.record.n_purchase_days > 1 for c in ref.customers.values()),
    )


def test_an_idle_tick_scores_no_one_and_a_purchase_only_whom_it_can_move() -> None:
    rfm = RfmProcessor(lost_after_days=90.0)
    rfm.process([Purchase(event_id=f"e{i}", customer_id=f"C{i}", ts=T0 + timedelta(hours=i), event_type="PURCHASED",
                          amount=10.0 + i) for i in range(200)])  # fmt: skip
    now = T0 + timedelta(days=10)
    rfm.rescore(now)
    pop = rfm.population()
    assert rfm.index.candidates(pop, rfm._version, now.timestamp(), 90 * 86_400.0) == set()  # idle: nothing
    rfm.set_peers(None)  # the same population again: still nothing
    assert rfm.index.candidates(rfm.population(), rfm._version, now.timestamp(), 90 * 86_400.0) == set()
    rfm.process([Purchase(event_id="x", customer_id="C0", ts=now, event_type="PURCHASED", amount=10.0)])
    moved = rfm.index.candidates(rfm.population(), rfm._version, now.timestamp(), 90 * 86_400.0)
    assert moved is not None and "C0" in moved and len(moved) < 200
