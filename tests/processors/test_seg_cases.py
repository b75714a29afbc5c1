"""Segmentation processors' registrations for the generic protocol suite (``test_protocol.py``).

Defines no tests itself: :func:`seg_cases` builds one ``ProcessorCase`` per
stateful segmentation processor with a sample stream that exercises its
interesting paths (duplicates, timers, model swaps, activations), and
``test_protocol.py`` adds them to ``EXTRA_CASES``. ``ProcessorCase`` is passed
in to avoid importing ``test_protocol`` from here (it imports this module).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from processors.clustering import BehaviourAssigner, ClusterModel, FeatureSpec, ModelOwner
from processors.clustering.synthetic import generate_profiles
from processors.features import CustomerFeatures, DailyProfile, FeatureProcessor
from processors.rfm import RfmProcessor
from processors.rules import CustomerAttributes, RuleSegmentProcessor, load_segment_definitions_text
from processors.segments import MembershipBook, SegmentChange, diff_memberships
from stream.schemas import Purchase

T0 = datetime(2026, 1, 1, tzinfo=UTC)


# -- RFM ----------------------------------------------------------------------------------------------
def _purchases() -> list[Any]:
    evs = [
        Purchase(event_id=f"e{i}", customer_id=f"C{i % 7}", ts=T0 + timedelta(hours=13 * i),
                 event_type=("PURCHASED", "PURCHASED", "VIEWED", "PROCESSED")[i % 4], amount=5.0 + i % 11)
        for i in range(60)
    ]
    # batches with a re-delivery, out-of-order events and two timer ticks (datetimes)
    return [evs[:15], evs[10:30], T0 + timedelta(days=20), evs[45:], evs[30:45], evs[:5],
            T0 + timedelta(days=90)]


def _rfm_step(p: RfmProcessor, batch: Any) -> Any:
    return p.rescore(batch) if isinstance(batch, datetime) else p.process(batch)


# -- features -----------------------------------------------------------------------------------------
def _profiles() -> list[list[DailyProfile]]:
    # a third of the customers adopt EV charging from day 5: moves, restarts and drift to exercise
    profiles, _ = generate_profiles(n_customers=16, days=9, seed=4, shift=lambda c, d: d >= 5 and int(c[1:]) % 3 == 0)
    by_day: dict[date, list[DailyProfile]] = {}
    for p in profiles:
        by_day.setdefault(p.day, []).append(p)
    days = [by_day[d] for d in sorted(by_day)]
    return [*days[:4], days[3], *days[4:]]  # one day re-delivered


# -- behaviour assignment -----------------------------------------------------------------------------
SPEC = FeatureSpec()


def _feature_stream() -> list[list[CustomerFeatures]]:
    fp = FeatureProcessor()
    return [fp.process(batch) for batch in _profiles()]


def _seed_model() -> ClusterModel:
    owner = ModelOwner(k=4, spec=SPEC, min_seed_samples=16, seeder="kmeans++")
    a = BehaviourAssigner(SPEC, sample_established_only=False)
    for batch in _feature_stream()[:2]:
        a.process(batch)
    model = owner.apply(a.flush_stats())
    assert model is not None
    return model


def _assigner_factory() -> BehaviourAssigner:
    a = BehaviourAssigner(SPEC, drift_min_days=1, drift_delta=0.0, drift_threshold=0.01, drift_min_updates=1,
                          sample_established_only=False)
    a.set_model(_seed_model())
    return a


def _assigner_stream() -> list[Any]:
    feats = _feature_stream()
    return [*feats[2:5], "flush", *feats[5:], "flush"]


def _assigner_step(a: BehaviourAssigner, batch: Any) -> Any:
    if batch == "flush":
        return a.flush_stats().snapshot()
    return a.process(batch)


# -- model owner ----------------------------------------------------------------------------------------
def _stats_stream() -> list[Any]:
    workers = [BehaviourAssigner(SPEC, drift_min_days=1, drift_delta=0.0, drift_threshold=0.01, drift_min_updates=1,
                          sample_established_only=False) for _ in range(2)]
    owner = ModelOwner(k=4, spec=SPEC, min_seed_samples=16, seeder="kmeans++", refresh_every=2)
    out = []
    for batch in _feature_stream():
        for i, w in enumerate(workers):
            w.process([f for f in batch if int(f.customer_id[1:]) % 2 == i])
        stats = [w.flush_stats() for w in workers]
        out.append(stats)
        owner.process(stats)
        for w in workers:
            w.set_model(owner.model)
    return out


def _owner_factory() -> ModelOwner:
    return ModelOwner(k=4, spec=SPEC, min_seed_samples=16, seeder="kmeans++", refresh_every=2,
                      reseed_on_drift=True)


# -- rules ------------------------------------------------------------------------------------------------
RULES = """
segments:
  - id: north_big
    name: North big spenders
    expression: region == "North" and rfm.monetary_mean > 138
  - id: prepaid_lapsing
    name: Prepaid lapsing
    expression: tariff in ["prepaid"] and rfm.r_score <= 2
  - id: launch_list
    name: Launch list
    expression: not (region in ["South"]) and rfm.f_score >= 3
    mode: static
"""


def _attrs(i: int, k: int) -> dict[str, Any]:
    return {"region": ("North", "South", "East")[(i + k) % 3], "tariff": ("prepaid", "postpaid")[i % 2],
            "rfm.monetary_mean": 100.0 + 17 * ((i * k) % 5), "rfm.r_score": 1 + (i + k) % 5,
            "rfm.f_score": 1 + (i * 3 + k) % 5}


def _rule_stream() -> list[Any]:
    out: list[Any] = []
    for k in range(5):
        out.append([CustomerAttributes(customer_id=f"C{i}", at=T0 + timedelta(days=k), attributes=_attrs(i, k))
                    for i in range(12)])
        if k == 1:
            out.append(("activate", "launch_list", {f"C{i}": _attrs(i, k) for i in range(12)}))
    return out


def _rule_step(p: RuleSegmentProcessor, batch: Any) -> Any:
    if isinstance(batch, tuple):
        return p.activate(batch[1], batch[2], T0)
    return p.process(batch)


# -- membership book -------------------------------------------------------------------------------------------
def _changes() -> list[list[SegmentChange]]:
    out: list[list[SegmentChange]] = []
    segs = ["a", "b", "c"]
    for k in range(6):
        batch: list[SegmentChange] = []
        for i in range(8):
            old = segs[(i + k) % 3]
            new = segs[(i + k + (i % 2)) % 3]
            batch += diff_memberships(f"C{i}", "behaviour", {old: old.upper()}, {new: new.upper()},
                                      T0 + timedelta(days=k), "distance_margin", k)
        out.append(batch + batch[:3])  # duplicates are ignored
    return out


def seg_cases(case: Any) -> list[Any]:
    """ProcessorCase instances of the segmentation processors (``case`` is the ProcessorCase class)."""
    return [
        case("seg_rfm", RfmProcessor, _purchases, _rfm_step),
        case("seg_rfm_lost_after", lambda: RfmProcessor(lost_after_days=30), _purchases, _rfm_step),
        case("seg_features", FeatureProcessor, _profiles),
        case("seg_behaviour_assigner", _assigner_factory, _assigner_stream, _assigner_step),
        case("seg_model_owner", _owner_factory, _stats_stream),
        case("seg_rule_segments", lambda: RuleSegmentProcessor(load_segment_definitions_text(RULES)),
             _rule_stream, _rule_step),
        case("seg_membership_book", MembershipBook, _changes),
    ]
