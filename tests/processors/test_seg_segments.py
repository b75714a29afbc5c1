"""Segment change records: diffing, conversion from RFM/behaviour outputs, replay, volatility."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from processors.clustering import BehaviourChange
from processors.rfm import RfmProcessor
from processors.segments import (
    MembershipBook,
    SegmentChange,
    changes_from_behaviour,
    changes_from_rfm,
    diff_memberships,
    replay,
    volatility,
)
from stream.schemas import Purchase

AT = datetime(2026, 1, 6, 12, tzinfo=UTC)


def test_single_membership_move_is_exit_then_entry() -> None:
    ch = diff_memberships("C1", "behaviour", {"B1": "night-heavy"}, {"B3": "solar exporter"}, AT,
                          "distance_margin", 7)
    assert [(c.change, c.segment_id, c.segment_name, c.from_segment, c.to_segment) for c in ch] == [
        ("exit", "B1", "night-heavy", "B1", "B3"),
        ("entry", "B3", "solar exporter", "B1", "B3"),
    ]
    assert all(c.model_version == 7 and c.reason == "distance_margin" and c.at == AT for c in ch)
    assert diff_memberships("C1", "behaviour", {"B1": "x"}, {"B1": "x"}, AT, "initial") == []


def test_rule_family_is_multi_membership() -> None:
    ch = diff_memberships("C1", "rule", {"a": "A", "b": "B"}, {"b": "B", "c": "C"}, AT, "rule")
    assert [(c.change, c.segment_id, c.from_segment, c.to_segment) for c in ch] == [
        ("exit", "a", "a", None),
        ("entry", "c", None, "c"),
    ]


def test_changes_from_rfm_and_behaviour_outputs() -> None:
    p = RfmProcessor()
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    evs = [Purchase(event_id=f"e{i}", customer_id=f"C{i % 5}", ts=t0 + timedelta(days=i), event_type="PURCHASED",
                    amount=10.0 + i) for i in range(20)]
    changes = [c for a in p.process(evs) for c in changes_from_rfm(a)]
    assert {c.customer_id for c in changes} == {f"C{i}" for i in range(5)}
    assert all(c.family == "rfm" and c.change == "entry" and c.reason == "score_change" for c in changes)
    b = BehaviourChange(customer_id="C1", at=AT, from_id="B1", from_name="evening-heavy", to_id="B2",
                        to_name="night-heavy", reason="persistence", distance=0.4, model_version=3)
    ch = changes_from_behaviour(b)
    assert [(c.change, c.segment_id, c.reason, c.model_version) for c in ch] == [
        ("exit", "B1", "persistence", 3), ("entry", "B2", "persistence", 3)]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.sampled_from(["rfm", "behaviour", "rule"]),
                          st.sets(st.sampled_from("abcd"), max_size=3)), max_size=40))
def test_topic_consumers_rebuild_every_membership(steps: list[tuple[int, str, set[str]]]) -> None:
    """Replaying only the change records gives the same memberships as the book that produced them."""
    current: dict[tuple[str, str], dict[str, str]] = {}
    book = MembershipBook()
    log: list[SegmentChange] = []
    for i, (c, family, segs) in enumerate(steps):
        if family != "rule":
            segs = set(sorted(segs)[:1])
        key = (f"C{c}", family)
        new = {s: s.upper() for s in segs}
        ch = diff_memberships(key[0], family, current.get(key, {}), new, AT + timedelta(hours=i), "rule")  # type: ignore[arg-type]
        current[key] = new
        book.process(ch)
        log += ch
    expected = {k: v for k, v in current.items() if v}
    assert replay(log) == expected
    assert {k: v for k, v in book.members.items() if v} == expected
    assert replay(SegmentChange.model_validate_json(c.model_dump_json()) for c in log) == expected
    restored = MembershipBook.restore(book.snapshot())
    assert restored.snapshot() == book.snapshot() and dict(restored.sizes) == {
        k: v for k, v in book.sizes.items() if v}


def test_volatility_per_segment_and_family() -> None:
    book = MembershipBook()
    day1 = datetime(2026, 1, 6, tzinfo=UTC)
    for i in range(100):
        book.process(diff_memberships(f"C{i}", "behaviour", {}, {"B1" if i < 50 else "B2": "x"}, day1, "initial"))
    rnd = random.Random(0)
    day2 = day1 + timedelta(days=1)
    movers = rnd.sample(range(50), 2)  # two customers move B1 -> B2 on day 2
    for i in movers:
        book.process(diff_memberships(f"C{i}", "behaviour", {"B1": "x"}, {"B2": "x"}, day2, "distance_margin"))
    vol = book.volatility(date(2026, 1, 7))
    assert vol[("behaviour", "B1")] == 2 / 48 and vol[("behaviour", "B2")] == 2 / 52
    assert book.family_volatility("behaviour", date(2026, 1, 7)) == 4 / 100
    # duplicates (re-delivered change records) are neither applied nor counted
    assert book.process(diff_memberships(f"C{movers[0]}", "behaviour", {"B1": "x"}, {"B2": "x"}, day2,
                                         "distance_margin")) == []
    assert book.family_volatility("behaviour", date(2026, 1, 7)) == 4 / 100
    assert volatility(1, 1, 200) == 0.01
