"""Customer data the engine gets right in-process (issue 14); the live CDNOW test checks the same end to end.

- A purchase dated far in the future is dead-lettered ``in_future`` and moves no clock; too old, with
  ``max_past_s`` set, ``too_late``.
- Every distinct membership change has its own ``change_id`` (also the same transition twice within
  one second), and a replay from a checkpoint reproduces the ids.
- Re-delivered purchases count in no purchase or revenue metric.
- lifetimes' ``monetary_value`` (repeat purchase days only) beside the mean per purchase, in any order.
- A customer silent beyond the horizon is in no active RFM segment.
- The API ages every customer at one observation time (``observed_at``).
"""

from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime, timedelta

import orjson

from processors.columns import RawMessage
from processors.rfm.processor import RfmProcessor
from processors.rfm.state import CustomerRfm, RfmEvent, recompute
from processors.segmentation import PartitionSegmentation, SegmentationConfig
from processors.segments import MembershipBook, SegmentChange
from stream.pipelines.segmentation import change_payload
from stream.schemas import Purchase

T0 = datetime(2026, 3, 1, tzinfo=UTC)
BROKER_MS = int(T0.timestamp() * 1000)
_offsets = itertools.count()


def _msg(event_id: str, customer: str, ts: datetime, amount: float = 10.0, broker_ms: int = BROKER_MS) -> RawMessage:
    body = orjson.dumps({"event_id": event_id, "customer_id": customer, "ts": ts.isoformat(),
                         "event_type": "PURCHASED", "amount": amount, "channel": "web"})  # fmt: skip
    return RawMessage(body, "customer.purchases", 0, next(_offsets), broker_ms)


def test_a_purchase_dated_2099_is_dead_lettered_and_moves_no_clock() -> None:
    seg = PartitionSegmentation()
    seg.process(([_msg("a", "C1", T0 - timedelta(days=3)), _msg("b", "C2", T0 - timedelta(days=1))], []))
    clock, rfm_clock = seg.clock.now(running=False), seg.rfm.clock
    out = seg.process(([_msg("c", "C1", datetime(2099, 1, 1, tzinfo=UTC))], []))
    assert [r.reason for r in out.rejects] == ["in_future"] and "broker timestamp" in out.rejects[0].message
    assert (seg.clock.now(running=False), seg.rfm.clock) == (clock, rfm_clock)
    record = seg.rfm.record("C1")
    assert record is not None and record.n_purchases == 1 and out.purchases == {}
    # within the skew (a head-end clock a few hours fast): accepted
    ok = seg.process(([_msg("d", "C2", T0 + timedelta(hours=5))], []))
    assert not ok.rejects and ok.purchases == {"PURCHASED": 1}


def test_far_past_is_dead_lettered_only_when_configured() -> None:
    old = _msg("a", "C1", datetime(1971, 1, 1, tzinfo=UTC))
    assert not PartitionSegmentation().process(([old], [])).rejects  # default: historical imports welcome
    strict = PartitionSegmentation(SegmentationConfig(max_past_s=365 * 86_400.0))
    assert [r.reason for r in strict.process(([old], [])).rejects] == ["too_late"]


def test_redelivered_purchases_count_in_no_metric() -> None:
    seg = PartitionSegmentation()
    batch = [_msg("a", "C1", T0), _msg("b", "C1", T0, 5.0), _msg("a", "C1", T0)]  # "a" twice in one poll
    first = seg.process((batch, []))
    again = seg.process((batch, []))
    assert first.purchases == {"PURCHASED": 2} and first.revenue == {"web": 15.0}
    assert again.purchases == {} and again.revenue == {}


def _change(change: str, seg: str = "vip", second: int = 0) -> SegmentChange:
    return SegmentChange(customer_id="C1", family="rule", segment_id=seg, segment_name=seg, change=change,
                         from_segment=seg if change == "exit" else None, to_segment=seg if change == "entry" else None,
                         at=T0 + timedelta(seconds=second), reason="rule")  # fmt: skip


def test_every_distinct_change_has_its_own_id_and_a_replay_the_same_ids() -> None:
    book = MembershipBook()
    # the same transitions twice within one second: distinct changes, so distinct ids
    first = book.process([_change("entry"), _change("exit")])
    checkpoint = book.snapshot()
    later = book.process([_change("entry"), _change("exit"), _change("entry", second=1)])
    ids = [change_payload(c)["change_id"] for c in first + later]
    assert len(ids) == 5 and len(set(ids)) == 5
    replayed = MembershipBook.restore(checkpoint).process(
        [_change("entry"), _change("exit"), _change("entry", second=1)]
    )
    assert [change_payload(c)["change_id"] for c in replayed] == ids[2:]


def test_rfm_segment_changes_of_a_busy_day_have_unique_ids() -> None:
    """Many purchases of one day (date-only data, like CDNOW): the rfm moves of a customer share one second."""
    rng = random.Random(7)
    seg = PartitionSegmentation()
    day = datetime(1997, 3, 1, tzinfo=UTC)
    ids: list[str] = []
    for batch in range(40):
        msgs = [_msg(f"e{batch}-{i}", f"C{rng.randrange(30)}", day + timedelta(days=rng.randrange(3)),
                     rng.choice([5.0, 50.0])) for i in range(8)]  # fmt: skip
        ids += [change_payload(c)["change_id"] for c in seg.process((msgs, [])).changes]
    assert len(ids) > 60 and len(set(ids)) == len(ids)


def test_monetary_value_is_lifetimes_mean_of_repeat_purchase_days() -> None:
    events = [
        Purchase(event_id=f"e{i}", customer_id="C1", ts=T0 + timedelta(days=d, hours=h), event_type="PURCHASED",
                 amount=a)
        for i, (d, h, a) in enumerate([(0, 1, 10.0), (0, 5, 20.0), (3, 0, 7.0), (3, 2, 3.0), (9, 0, 40.0)])
    ]  # fmt: skip
    for order in itertools.permutations(events):
        state = CustomerRfm.empty("C1")
        for e in order:
            state.apply(RfmEvent.from_purchase(e))
        # lifetimes: day sums 30 | 10 | 40 -> the first day left out: (10 + 40) / 2
        assert state.record.monetary_value == 25.0 and state.record.monetary_mean == 16.0
        assert state.record == recompute(events)["C1"]


def test_silent_customers_are_in_no_active_segment() -> None:
    rfm = RfmProcessor(lost_after_days=90.0)
    # C0..C9 bought often; only the first half recently
    events = [
        Purchase(event_id=f"e{k}-{d}", customer_id=f"C{k}", ts=T0 + timedelta(days=d + (0 if k < 5 else -200)),
                 event_type="PURCHASED", amount=10.0)
        for k in range(10) for d in range(0, 30, 3)
    ]  # fmt: skip
    rfm.process(events)
    rfm.rescore(T0 + timedelta(days=40))
    for k in range(5, 10):
        assert rfm.scores[f"C{k}"][0] == 1
        assert rfm.segment_map.segment(*rfm.scores[f"C{k}"][:2]).id in {"at_risk", "cant_lose_them", "lost"}
    assert SegmentationConfig().lost_after_days == 90.0


def test_one_observation_time_for_every_customer() -> None:
    from processors.rfm.state import observed_at

    a = {"first_purchase": "1997-01-01T00:00:00Z", "last_purchase": "1997-06-01T00:00:00Z", "T_days": 3}
    b = {"first_purchase": "1998-06-01T00:00:00Z", "last_purchase": "1998-06-30T00:00:00Z", "T_days": 1}
    now = datetime(1998, 6, 30, 0, 5, tzinfo=UTC).timestamp()
    assert observed_at(a, now)["T_days"] == 545 and observed_at(b, now)["T_days"] == 29
    assert observed_at(b, now)["days_since_last"] * 86_400 == 300
