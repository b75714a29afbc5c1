"""RFM: incremental == batch, idempotence, restart safety, scores, segment map, sketches."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from processors.rfm import (
    PopulationSketch,
    RfmProcessor,
    RfmSegmentMap,
    RfmSketches,
    recompute,
)
from processors.rfm.segment_map import DEFAULT_MAP_PATH
from processors.rfm.state import event_key
from stream.schemas import Purchase

T0 = datetime(2026, 1, 1, tzinfo=UTC)

event_st = st.builds(
    lambda i, c, minutes, kind, amount: Purchase(
        event_id=f"e{i}",
        customer_id=f"C{c}",
        ts=T0 + timedelta(minutes=minutes),
        event_type=kind,
        amount=amount,
    ),
    st.integers(0, 60),
    st.integers(0, 4),
    st.integers(0, 60 * 24 * 20),
    st.sampled_from(["PURCHASED", "PURCHASED", "VIEWED", "PROCESSED"]),
    st.floats(0, 500, allow_nan=False).map(lambda x: round(x, 2)),
)


def unique_by_id(events: list[Purchase]) -> list[Purchase]:
    """An event id names one immutable event: keep the first payload of each id."""
    seen: dict[str, Purchase] = {}
    for e in events:
        seen.setdefault(e.event_id, e)
    return list(seen.values())


@settings(max_examples=150, deadline=None)
@given(st.lists(event_st, max_size=80), st.randoms(use_true_random=False), st.integers(1, 7))
def test_incremental_equals_batch_with_duplicates_and_disorder(
    events: list[Purchase], rnd: random.Random, batch_size: int
) -> None:
    events = unique_by_id(events)
    # re-deliveries (duplicates) and arbitrary order
    stream = events + rnd.sample(events, k=len(events) // 2)
    rnd.shuffle(stream)
    p = RfmProcessor()
    for i in range(0, len(stream), batch_size):
        p.process(stream[i : i + batch_size])
    expected = recompute(events)
    assert {cid: st.record for cid, st in p.customers.items()} == expected
    now = T0 + timedelta(days=30)
    for cid, rec in expected.items():
        s = p.customers[cid].record.summary(now)
        bought = [e for e in events if e.customer_id == cid and e.event_type == "PURCHASED"]
        days = sorted({e.ts.date() for e in bought})
        assert s.n_purchases == len(bought)
        assert s.frequency == max(len(days) - 1, 0)
        if days:
            assert s.recency_days == (days[-1] - days[0]).days
            assert s.T_days == (now.date() - days[0]).days
            assert s.total_spend == pytest.approx(sum(e.amount for e in bought))
        assert rec.n_viewed == sum(1 for e in events if e.customer_id == cid and e.event_type == "VIEWED")


@settings(max_examples=60, deadline=None)
@given(st.lists(event_st, max_size=60), st.integers(0, 60))
def test_replay_and_restart_give_identical_state(events: list[Purchase], cut: int) -> None:
    events = unique_by_id(events)
    once = RfmProcessor()
    once.process(events)
    # "kill -9" after `cut` events: restore from the last snapshot, then the broker re-delivers all
    crashed = RfmProcessor()
    crashed.process(events[:cut])
    revived = RfmProcessor.restore(json.loads(json.dumps(crashed.snapshot())))
    assert revived.process(events[:cut]) == []  # already applied: nothing emitted
    revived.process(events)
    revived.process(events)
    assert revived.snapshot()["customers"] == once.snapshot()["customers"]
    assert revived.local_sketches().snapshot() == once.local_sketches().snapshot()
    # scores are quantiles of the population *when scored*: a different history may have cached
    # different ones, and the next timer re-score makes them agree
    now = T0 + timedelta(days=30)
    revived.rescore(now)
    once.rescore(now)
    assert revived.snapshot() == once.snapshot()


def buy(i: int, cid: str, day: float, amount: float) -> Purchase:
    return Purchase(
        event_id=f"e{i}",
        customer_id=cid,
        ts=T0 + timedelta(days=day),
        event_type="PURCHASED",
        amount=amount,
    )


def population(n: int = 500, seed: int = 1) -> list[Purchase]:
    rnd = random.Random(seed)
    evs: list[Purchase] = []
    for c in range(n):
        k = rnd.randint(1, 12)
        start = rnd.uniform(0, 60)
        for _ in range(k):
            evs.append(buy(len(evs), f"C{c}", start + rnd.uniform(0, 30), rnd.lognormvariate(3, 1)))
    return evs


def test_scores_are_population_quintiles() -> None:
    p = RfmProcessor()
    out = p.process(population())
    for dim in ("r_score", "f_score", "m_score"):
        counts = [sum(1 for a in out if getattr(a, dim) == s) for s in range(1, 6)]
        assert all(c > 0 for c in counts), (dim, counts)
    # monetary has few ties: close to 20 % per quintile
    m_counts = [sum(1 for a in out if a.m_score == s) for s in range(1, 6)]
    assert max(m_counts) - min(m_counts) < 0.06 * len(out)
    # the highest spender gets M = 5, the lowest M = 1
    recs = {cid: st.record for cid, st in p.customers.items()}
    top = max(recs, key=lambda c: recs[c].monetary_mean)
    low = min(recs, key=lambda c: recs[c].monetary_mean)
    assert p.scores[top][2] == 5 and p.scores[low][2] == 1


def test_workers_merging_sketches_agree_with_a_single_worker() -> None:
    events = population(400)
    single = RfmProcessor()
    single.process(events)
    workers = [RfmProcessor() for _ in range(3)]
    for e in events:  # partition by customer, like Kafka keyed by customer id
        workers[hash(e.customer_id) % 3].process([e])
    for i, w in enumerate(workers):
        others = [x.local_sketches() for j, x in enumerate(workers) if j != i]
        w.set_peers(RfmSketches.merged(others))
    merged = RfmSketches.merged(w.local_sketches() for w in workers)
    assert merged.snapshot() == single.local_sketches().snapshot()
    now = T0 + timedelta(days=100)
    single.rescore(now)
    for w in workers:
        w.rescore(now)
        for cid in w.scores:
            assert w.scores[cid] == single.scores[cid]


def test_customers_age_into_lower_recency_without_own_events() -> None:
    p = RfmProcessor(lost_after_days=120)
    p.process([buy(i, f"C{i}", i, 50.0) for i in range(20)])
    assert p.scores["C0"][0] == 1 and p.scores["C19"][0] == 5
    # others keep buying; C19 does not: its rank falls and a rescore reports it
    p.process([buy(100 + i, f"C{i}", 40 + i, 50.0) for i in range(19)])
    changed = {a.customer_id: a for a in p.rescore(T0 + timedelta(days=60))}
    assert "C19" in changed and changed["C19"].r_score is not None and changed["C19"].r_score < 5
    assert changed["C19"].cause == "rescore" and changed["C19"].previous_scores is not None
    # a long silence: everyone lost after 120 days
    late = p.rescore(T0 + timedelta(days=400))
    assert all(a.r_score == 1 for a in late)
    assert {a.segment_id for a in late} <= {"lost", "at_risk", "cant_lose_them", "hibernating"}


def test_engagement_only_customer_has_no_segment() -> None:
    p = RfmProcessor()
    out = p.process(
        [Purchase(event_id="v", customer_id="C1", ts=T0, event_type="VIEWED", amount=0.0)]
    )
    assert out[0].segment_id is None and out[0].summary.n_viewed == 1 and p.local_sketches().n == 0


def test_default_segment_map_covers_every_cell_and_matches_the_readme() -> None:
    m = RfmSegmentMap.default()
    expected = {
        (5, 5): "Champions", (5, 4): "Champions", (4, 4): "Loyal", (3, 5): "Loyal",
        (5, 2): "Potential Loyalist", (4, 3): "Potential Loyalist", (5, 1): "New Customers",
        (4, 1): "Promising", (3, 3): "Need Attention", (3, 1): "About To Sleep", (3, 2): "About To Sleep",
        (1, 3): "At Risk", (2, 4): "At Risk", (1, 5): "Can't Lose Them", (2, 5): "Can't Lose Them",
        (2, 1): "Hibernating", (2, 2): "Hibernating", (1, 1): "Lost", (1, 2): "Lost",
    }  # fmt: skip
    for (r, f), name in expected.items():
        assert m.segment(r, f).name == name
    names = {m.segment(r, f).name for r in range(1, 6) for f in range(1, 6)}
    assert len(names) == 11


def test_segment_map_rejects_gaps_overlaps_and_bad_scores(tmp_path: Path) -> None:
    data = yaml.safe_load(DEFAULT_MAP_PATH.read_text())
    gap = {"segments": [s for s in data["segments"] if s["id"] != "lost"]}
    with pytest.raises(ValueError, match=r"does not cover.*\(1,1\), \(1,2\)"):
        RfmSegmentMap.from_dict(gap)
    overlap = {"segments": [*data["segments"], {"id": "x", "name": "X", "r": [5], "f": [5]}]}
    with pytest.raises(ValueError, match=r"twice: \(5,5\) in champions and x"):
        RfmSegmentMap.from_dict(overlap)
    with pytest.raises(ValueError, match=r"outside 1\.\.5"):
        RfmSegmentMap.from_dict({"segments": [{"id": "x", "name": "X", "r": [6], "f": [1]}]})
    # an operator's replacement file is honoured
    custom = [{"id": "everyone", "name": "Everyone", "r": [1, 2, 3, 4, 5], "f": [1, 2, 3, 4, 5]}]
    path = tmp_path / "map.yaml"
    path.write_text(yaml.safe_dump({"segments": custom}))
    p = RfmProcessor(RfmSegmentMap.load(path))
    assert p.process([buy(1, "C1", 1, 5.0)])[0].segment_name == "Everyone"


def test_population_sketch_removal_and_merge_order() -> None:
    rnd = random.Random(3)
    values = [rnd.lognormvariate(2, 1) for _ in range(1000)]
    parts = [PopulationSketch.log(0.01) for _ in range(4)]
    for i, v in enumerate(values):
        parts[i % 4].add(v)
    a = PopulationSketch.merged(parts)
    b = PopulationSketch.merged(reversed(parts))
    assert a == b and a.n == 1000
    for v in values[:500]:
        a.remove(v)
    rest = PopulationSketch.log(0.01)
    for v in values[500:]:
        rest.add(v)
    assert a == rest
    # quantile accuracy: fraction below the true median is close to 0.5
    med = sorted(values[500:])[250]
    assert abs(rest.fraction_below(med) - 0.5) < 0.02


def test_embedded_default_map_equals_the_shipped_yaml() -> None:
    from processors.rfm.segment_map import EMBEDDED_DEFAULT_MAP

    shipped = RfmSegmentMap.load(DEFAULT_MAP_PATH).to_dict()
    assert RfmSegmentMap.from_dict(EMBEDDED_DEFAULT_MAP).to_dict() == shipped


def _history(cid: str, n: int) -> list[Purchase]:
    kinds = ["PURCHASED", "VIEWED", "PROCESSED"]
    return [Purchase(event_id=f"sim0-202601010000-p{cid}{k:08d}", customer_id=cid, event_type=kinds[k % 3],
                     amount=10.0 + k % 7, ts=T0 + timedelta(days=k * 365 / n)) for k in range(n)]  # fmt: skip


def test_a_checkpoint_that_kept_event_ids_restores_to_the_same_duplicates() -> None:
    """Snapshots written before the event keys kept the id strings: restored, every id of the history is
    still known (a re-import counts nothing twice) and the next state is the one the keys give."""
    proc = RfmProcessor()
    history = _history("C1", 40) + _history("C2", 5)
    proc.process(history[:-3])
    snap = proc.snapshot()
    by_key = {event_key(p.event_id): p.event_id for p in history}
    old = json.loads(json.dumps(snap))
    for data in old["customers"].values():
        data["seen"] = sorted(by_key[k] for k in data["seen"])  # the id strings, as the earlier format had them
    assert isinstance(old["customers"]["C1"]["seen"][0], str)
    restored, now = RfmProcessor.restore(old), RfmProcessor.restore(snap)
    assert restored.snapshot() == snap
    assert all(restored.customers[p.customer_id].has_seen(p.event_id) for p in history[:-3])
    assert restored.process(history[:-3]) == []  # the whole history again: nothing new
    assert [a.summary for a in restored.process(history)] == [a.summary for a in now.process(history)]
    assert restored.snapshot() == now.snapshot()


def test_a_long_history_is_held_in_arrays_of_keys() -> None:
    """A customer's event keys and purchase days grow with its history for as long as it lives: with 150 events
    in a year the RFM state held 25 KB a customer as sets of the id strings and day numbers, 2.8 KB as sorted
    arrays of 64-bit keys."""
    import gc
    import tracemalloc
    from array import array

    proc = RfmProcessor()
    tracemalloc.start()
    try:
        for c in range(200):  # the events are decoded, applied and dropped, as from Kafka: what stays is the state
            proc.process(_history(f"C{c}", 150))
        gc.collect()
        held = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    st = proc.customers["C7"]
    assert isinstance(st.seen, array) and len(st.seen) == 150 and len(st.days) == st.record.n_purchase_days
    assert held / 200 < 4_000, f"{held / 200:.0f} B per customer"
