"""Behaviour clustering: ARI/NMI/purity, identity matching, hysteresis and dwell, fleet model, drift, names, checkpoints."""

from __future__ import annotations

import collections
import itertools
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processors.clustering import (
    BehaviourAssigner,
    ClusterModel,
    ClusterStats,
    FeatureSpec,
    LocalFleet,
    ModelOwner,
    adjusted_rand_index,
    match_identities,
    merge_stats,
    normalized_mutual_info,
    purity,
)
from processors.clustering.assign import DETECTOR
from processors.clustering.naming import SegmentNames
from processors.clustering.owner import ModelStateOutdated
from processors.clustering.synthetic import ARCHETYPES, generate_profiles
from processors.features import CustomerFeatures
from processors.segments import MembershipBook, changes_from_behaviour


# -- ARI and Hungarian ---------------------------------------------------------------------------------
@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 4), min_size=2, max_size=60), st.permutations(range(5)))
def test_ari_is_one_for_renamed_labels_and_symmetric(labels: list[int], perm: list[int]) -> None:
    renamed = [f"x{perm[v]}" for v in labels]
    assert adjusted_rand_index(labels, renamed) == pytest.approx(1.0)
    other = [(v * 7 + i) % 3 for i, v in enumerate(labels)]
    assert adjusted_rand_index(labels, other) == pytest.approx(adjusted_rand_index(other, labels))


def test_ari_known_values() -> None:
    # hand-computed: contingency [[2,1],[0,3]] -> index 1+3=4, a=3+3=6, b=1+6=7, total 15
    # expected 6*7/15=2.8, max 6.5 -> (4-2.8)/(6.5-2.8)
    assert adjusted_rand_index([0, 0, 0, 1, 1, 1], [0, 0, 1, 1, 1, 1]) == pytest.approx(1.2 / 3.7)
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 5, 5000), rng.integers(0, 5, 5000)
    assert abs(adjusted_rand_index(a.tolist(), b.tolist())) < 0.01


def test_nmi_and_purity_known_values() -> None:
    assert normalized_mutual_info([0, 0, 1, 1], ["b", "b", "a", "a"]) == pytest.approx(1.0)
    assert normalized_mutual_info([0, 0, 1, 1], [0, 1, 0, 1]) == pytest.approx(0.0, abs=1e-12)
    assert purity([0, 0, 1, 1, 1], ["x", "x", "x", "y", "y"]) == pytest.approx(0.8)
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 5, 5000), rng.integers(0, 5, 5000)
    assert normalized_mutual_info(a.tolist(), b.tolist()) < 0.01


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 6), st.integers(0, 10_000))
def test_identity_matching_is_the_minimum_cost_assignment(k: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    old, new = rng.normal(size=(k, 3)), rng.normal(size=(k, 3))
    match = match_identities(old, new)
    assert sorted(match) == list(range(k)) and sorted(match.values()) == list(range(k))
    cost = np.sqrt(((new[:, None, :] - old[None, :, :]) ** 2).sum(-1))
    best = min(sum(cost[r, c] for r, c in enumerate(p)) for p in itertools.permutations(range(k)))
    assert sum(cost[r, c] for r, c in match.items()) == pytest.approx(best)


# -- identities --------------------------------------------------------------------------------------------
T0 = datetime(2026, 1, 1, tzinfo=UTC)
SPEC2 = FeatureSpec(names=("a", "b"), log1p=(), log=())
CENTRES = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]])


def blob_stats(rng: np.random.Generator, centres: np.ndarray, n: int = 100, drifts: int = 0) -> ClusterStats:
    x = np.vstack([c + rng.normal(0, 0.5, (n, 2)) for c in centres])
    s = ClusterStats.empty(SPEC2, sample_cap=4096)
    s.scaler.learn(x)
    s.add_sample(x)
    s.n_updates = len(x)
    s.drifts = drifts
    return s


@pytest.mark.parametrize("perm", [(0, 1, 2, 3), (3, 2, 1, 0), (1, 3, 0, 2)])
def test_identities_survive_reseed_under_centroid_permutation(perm: tuple[int, ...]) -> None:
    rng = np.random.default_rng(1)
    owner = ModelOwner(k=4, spec=SPEC2, min_seed_samples=50, seeder="kmeans++", reseed_on_drift=True,
                       name_freeze_updates=0, refresh_every=0)
    first = owner.apply(blob_stats(rng, CENTRES))
    assert first is not None
    before = {cid: first.centroids[j] for j, cid in enumerate(first.ids)}
    names = dict(zip(first.ids, first.names, strict=True))
    # the population moves a little; the data arrive in another order and a drift forces a re-seed
    moved = CENTRES[list(perm)] + 0.7
    second = owner.apply(blob_stats(rng, moved, drifts=1))
    assert second is not None and second.reseed_cause == "drift" and second.version == first.version + 1
    assert set(second.ids) == set(first.ids)
    for j, cid in enumerate(second.ids):
        assert np.linalg.norm(second.centroids[j] - before[cid]) < 1.5, cid
        assert second.names[j] == names[cid]
    assert match_identities(CENTRES, CENTRES[list(perm)]) == {i: p for i, p in enumerate(perm)}


def test_new_cluster_after_reseed_with_larger_k_gets_fresh_id() -> None:
    rng = np.random.default_rng(2)
    owner = ModelOwner(k=3, spec=SPEC2, min_seed_samples=50, seeder="kmeans++", reseed_on_drift=True,
                       refresh_every=0)
    first = owner.apply(blob_stats(rng, CENTRES[:3]))
    assert first is not None
    owner.k = 4
    second = owner.apply(blob_stats(rng, CENTRES, drifts=1))
    assert second is not None
    assert set(first.ids) < set(second.ids) and len(set(second.ids) - set(first.ids)) == 1


def _assigner_on(owner: ModelOwner, rng: np.random.Generator, centres: np.ndarray, day: int = 1,
                 **kw: object) -> tuple[BehaviourAssigner, list]:
    """An assigner whose customers C<i>-<j> sit around ``centres[i]``, after one update each."""
    a = BehaviourAssigner(SPEC2, **kw)  # type: ignore[arg-type]
    a.set_model(owner.model)
    feats = [CustomerFeatures(customer_id=f"C{i}-{j}", day=date(2026, 1, day), n_days=day,
                              values={"a": float(c[0] + rng.normal(0, 0.5)), "b": float(c[1] + rng.normal(0, 0.5))})
             for i, c in enumerate(centres) for j in range(25)]
    return a, a.process(feats)


def test_matched_reseed_does_not_reopen_memberships() -> None:
    rng = np.random.default_rng(3)
    owner = ModelOwner(k=4, spec=SPEC2, min_seed_samples=50, seeder="kmeans++", reseed_on_drift=True,
                       refresh_every=0, match_radius=0.5)
    assert owner.apply(blob_stats(rng, CENTRES)) is not None
    a, first = _assigner_on(owner, rng, CENTRES)
    assert len(first) == 100 and all(c.reason == "initial" for c in first)
    # a drift re-seed on the same population: every cluster is matched, so nobody is re-opened
    second = owner.apply(blob_stats(rng, CENTRES + 0.2, drifts=1))
    assert second is not None and second.reseed_cause == "drift"
    assert a.model is not None and set(second.ids) == set(a.model.ids)
    a.set_model(second)
    again = [c for c in a.process([CustomerFeatures(customer_id=f"C{i}-{j}", day=date(2026, 1, 2), n_days=2,
                                                    values={"a": float(c[0]), "b": float(c[1])})
                                   for i, c in enumerate(CENTRES) for j in range(25)])
             if c.kind == "membership"]
    assert again == []


def test_reseed_with_a_moved_cluster_reopens_only_that_cluster() -> None:
    rng = np.random.default_rng(4)
    owner = ModelOwner(k=4, spec=SPEC2, min_seed_samples=50, seeder="kmeans++", reseed_on_drift=True,
                       refresh_every=0, match_radius=0.5)
    first = owner.apply(blob_stats(rng, CENTRES))
    assert first is not None
    a, _ = _assigner_on(owner, rng, CENTRES)
    # the population at (10, 10) moves to (22, 22): that cluster is new, the other three are matched
    moved = CENTRES.copy()
    moved[3] = [22.0, 22.0]
    second = owner.apply(blob_stats(rng, moved, drifts=1))
    assert second is not None
    fresh = set(second.ids) - set(first.ids)
    assert len(fresh) == 1 and len(set(first.ids) - set(second.ids)) == 1
    a.set_model(second)
    out = [c for c in a.process([CustomerFeatures(customer_id=f"C{i}-{j}", day=date(2026, 1, 2), n_days=2,
                                                  values={"a": float(c[0]), "b": float(c[1])})
                                 for i, c in enumerate(moved) for j in range(25)])
           if c.kind == "membership"]
    # only the moved customers change, at once (their cluster retired), into the new cluster
    assert {c.customer_id.split("-")[0] for c in out} == {"C3"} and len(out) == 25
    assert {c.to_id for c in out} == fresh and {c.reason for c in out} == {"drift_reseed"}


def test_refresh_runs_only_in_the_first_days() -> None:
    owner = ModelOwner(k=2, spec=SPEC2, min_seed_samples=50, seeder="kmeans++", refresh_every=1,
                       refresh_until_days=2)
    rng = np.random.default_rng(5)
    for day, expect in ((1, "seed"), (2, True), (3, True), (4, False), (9, False)):
        stats = blob_stats(rng, CENTRES[:2])
        stats.last_day = date(2026, 1, day).toordinal()
        assert owner.process([stats])
        if expect != "seed":
            assert owner._refresh_due(owner.model) is expect or day < 4, day  # type: ignore[arg-type]
    assert owner.last_day - owner.first_day == 8 and not owner._refresh_due(owner.model)  # type: ignore[arg-type]


def _daily(a: BehaviourAssigner, day: date, n: int, restarted: int) -> list:  # type: ignore[type-arg]
    feats = [CustomerFeatures(customer_id=f"C{i}", day=day, n_days=30, values={"a": 0.0, "b": 0.0},
                              restarted=i < restarted) for i in range(n)]
    return [o for o in a.process(feats) if o.kind == "drift"]


def test_drift_detector_quiet_on_a_stationary_fleet_fires_on_a_shared_change() -> None:
    a = BehaviourAssigner(SPEC2)
    rng = np.random.default_rng(6)
    day, fired = date(2026, 1, 5), []
    for _ in range(60):  # two months of a stationary partition: 0-1 % restart on a weekday, noise
        fired += _daily(a, day, 400, int(rng.integers(0, 5)))
        day += timedelta(days=1)
    assert fired == []
    while day.weekday() >= 5:
        day += timedelta(days=1)
    _daily(a, day, 400, 40)  # 10 % change behaviour together (EV adoption)...
    fired = _daily(a, day + timedelta(days=1), 400, 0)  # ...fed once the day is complete
    assert [e.detector for e in fired] == [DETECTOR] and fired[0].mean_after == pytest.approx(0.1)


def test_assigner_checkpoint_is_data_and_rebuilds_the_detector() -> None:
    a = BehaviourAssigner(SPEC2, min_dwell_days=7)
    day = date(2026, 1, 5)
    for _ in range(9):
        _daily(a, day, 100, 1)
        day += timedelta(days=1)
    state = a.snapshot()
    text = str(state)
    assert state["format"] == 2 and "pickle" not in text and "gAS" not in text  # no base64 pickles
    b = BehaviourAssigner.restore(state)
    assert b.snapshot() == state
    assert vars(b.detector)["_sum_increase"] == pytest.approx(vars(a.detector)["_sum_increase"])
    # both react alike afterwards
    assert [e.mean_after for e in _daily(a, day, 100, 30) + _daily(a, day + timedelta(days=1), 100, 0)] == [
        e.mean_after for e in _daily(b, day, 100, 30) + _daily(b, day + timedelta(days=1), 100, 0)]


def test_format_1_checkpoint_keeps_memberships_and_never_unpickles() -> None:
    old = {"config": {"spec": {"names": ["mean_daily_kwh"], "log1p": [], "log": []}, "margin": 0.25, "patience": 3,
                      "drift_delta": 0.002, "drift_features": True, "drift_min_days": 3, "drift_cooldown": 2000,
                      "sample_cap": 512},
           "model": None, "epoch": 0, "reference": None, "members": {"C1": ["B3", None, 0, 0]},
           "stats": {}, "n_updates": 7, "detectors": {"distance": "bm90IGEgcGlja2xl"},  # not even a pickle
           "quiet_until": {}}
    a = BehaviourAssigner.restore(old)
    assert a.membership("C1") == "B3" and a.model is None and a.spec == FeatureSpec()
    assert a.snapshot()["format"] == 2


def test_outdated_owner_state_reseeds_with_ids_and_versions_continuing() -> None:
    with pytest.raises(ModelStateOutdated) as err:
        ModelOwner.restore({"config": {}, "model": {"version": 41}, "next_number": 9})
    owner = ModelOwner.successor(err.value, k=2, spec=SPEC2, min_seed_samples=50)
    model = owner.apply(blob_stats(np.random.default_rng(1), CENTRES[:2]))
    assert model is not None and model.version == 42 and set(model.ids) == {"B9", "B10"}
    assert ModelOwner.restore(owner.snapshot()).snapshot() == owner.snapshot()


def test_seeding_waits_for_established_customers() -> None:
    a = BehaviourAssigner(SPEC2, sample_cap=512)
    young = [CustomerFeatures(customer_id=f"C{i}", day=date(2026, 1, 2), n_days=2, established=False,
                              values={"a": float(i % 2 * 10), "b": 0.0}) for i in range(100)]
    a.process(young)
    owner = ModelOwner(k=2, spec=SPEC2, min_seed_samples=50)
    assert owner.apply(a.flush_stats()) is None  # a scaler, but nothing to seed from
    a.process([f.model_copy(update={"established": True, "day": date(2026, 1, 9), "n_days": 9}) for f in young])
    assert owner.apply(a.flush_stats()) is not None


def test_online_step_that_worsens_the_fit_is_dropped() -> None:
    rng = np.random.default_rng(8)
    owner = ModelOwner(k=2, spec=SPEC2, min_seed_samples=50, refresh_every=0, guard_online=True,
                       halflife_updates=10)
    first = owner.apply(blob_stats(rng, CENTRES[:2]))
    assert first is not None
    bad = blob_stats(rng, CENTRES[:2], n=5)
    bad.add(first.ids[0], np.full((500, 2), 5.0))  # statistics that would drag a centre to the middle
    bad.n_updates = 500
    second = owner.apply(bad)
    assert second is not None
    np.testing.assert_allclose(second.centroids, first.centroids)


def test_names_stay_put_until_the_profile_moves() -> None:
    names = SegmentNames(rename_radius=0.5, small_share=0.05)
    std = np.ones(2)
    c = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    w = np.array([100.0, 100.0, 100.0])
    first, renamed = names.update(["B1", "B2", "B3"], ["low", "mid", "high"], c, w, std)
    assert first == ["low", "mid", "high"] and renamed == []
    # the descriptions wobble (rounding), the centroids barely move: names stay
    again, renamed = names.update(["B1", "B2", "B3"], ["lowish", "mid", "high"], c + 0.3, w, std)
    assert again == first and renamed == []
    # B1 really moves (more than half the way to its neighbour): renamed, and announced
    moved = c.copy()
    moved[0] = [6.0, -4.0]
    after, renamed = names.update(["B1", "B2", "B3"], ["new", "mid", "high"], moved, w, std)
    assert after[0] == "new" and renamed == [{"id": "B1", "from": "low", "to": "new", "why": "profile moved"}]
    # a segment with 1 % of the weight is marked small, not named like the others
    small, renamed = names.update(["B1", "B2", "B3"], ["new", "mid", "high"], moved, np.array([100.0, 100.0, 2.0]), std)
    assert small[2] == "small segment (B3)" and renamed[0]["why"] == "size"
    assert SegmentNames.restore(names.snapshot()).snapshot() == names.snapshot()


def test_minimum_dwell_unless_behaviour_changed() -> None:
    spec = FeatureSpec(names=("x",), log1p=(), log=())
    owner = ModelOwner(k=3, spec=spec, min_seed_samples=6, seeder="kmeans++")
    stats = ClusterStats.empty(spec)
    x = np.array([[0.0], [0.2], [10.0], [10.2], [20.0], [20.2]])
    stats.scaler.learn(x)
    stats.add_sample(x)
    a = BehaviourAssigner(spec, margin=0.1, patience=1, min_dwell_days=7)
    a.set_model(owner.apply(stats))

    def step(d: int, x: float, restarted: bool = False) -> list[str]:
        f = CustomerFeatures(customer_id="C1", day=date(2026, 1, 1) + timedelta(days=d), n_days=d + 1,
                             values={"x": x}, restarted=restarted)
        return [c.to_id for c in a.process([f]) if c.kind == "membership"]

    first = step(0, 0.0)  # initial; the first week after it is for settling
    other = step(1, 10.0)
    assert first and other and other != first
    assert step(3, 20.0) == [] and step(6, 0.0) == []  # another move within a week: held
    third = step(7, 20.0, restarted=True)  # a behaviour change waives the dwell
    assert third and third not in (first, other)
    # never back within a week to a segment it left, restart or not (a restart moves a customer on)
    assert step(8, 0.0, restarted=True) == []  # left on day 1 (first -> other -> third -> first): held
    assert step(9, 10.0, restarted=True) == [] and step(14, 10.0) == []  # left on day 7; day 14: the week's last
    assert step(15, 10.0) == other  # after the week
    # the segments left travel through a checkpoint; earlier checkpoints held one (id, day) or none
    again = BehaviourAssigner.restore(a.snapshot())
    assert again.members["C1"].left == a.members["C1"].left and again.members["C1"].left
    from processors.clustering.assign import _left

    assert _left(["B1", 5]) == (("B1", 5),) and _left([None, 0]) == () and _left([]) == ()
    assert _left([[["B1", 5], ["B2", 7]]]) == (("B1", 5), ("B2", 7))


# -- hysteresis --------------------------------------------------------------------------------------------
def boundary_model() -> ClusterModel:
    owner = ModelOwner(k=2, spec=FeatureSpec(names=("x",), log1p=(), log=()), min_seed_samples=4,
                       seeder="kmeans++")
    stats = ClusterStats.empty(owner.spec)
    x = np.array([[0.0], [0.2], [10.0], [10.2]])
    stats.scaler.learn(x)
    stats.add_sample(x)
    model = owner.apply(stats)
    assert model is not None
    return model


def wobble(assigner: BehaviourAssigner, days: int) -> list[str]:
    """A customer oscillating around the midpoint between the two clusters, one update per day."""
    moves = []
    for d in range(days):
        x = 5.1 + (0.3 if d % 2 else -0.3)
        f = CustomerFeatures(customer_id="C1", day=date(2026, 1, 1) + timedelta(days=d), n_days=d + 1,
                             values={"x": x})
        moves += [c.reason for c in assigner.process([f]) if c.kind == "membership" and c.reason != "initial"]
    return moves


def test_hysteresis_prevents_flapping() -> None:
    spec = FeatureSpec(names=("x",), log1p=(), log=())
    naive = BehaviourAssigner(spec, margin=0.0, patience=1)
    naive.set_model(boundary_model())
    assert len(wobble(naive, 20)) >= 15  # flaps nearly every day
    damped = BehaviourAssigner(spec, margin=0.15, patience=3)
    damped.set_model(boundary_model())
    assert wobble(damped, 20) == []


def test_persistent_small_advantage_eventually_moves() -> None:
    spec = FeatureSpec(names=("x",), log1p=(), log=())
    a = BehaviourAssigner(spec, margin=0.5, patience=3)
    a.set_model(boundary_model())
    reasons = []
    for d, x in enumerate([4.0, 5.6, 5.6, 5.6]):  # within the margin, but closer to the other cluster
        f = CustomerFeatures(customer_id="C1", day=date(2026, 1, 1) + timedelta(days=d), n_days=d + 1,
                             values={"x": x})
        reasons += [c.reason for c in a.process([f])]
    assert reasons == ["initial", "persistence"]


# -- the fleet model ------------------------------------------------------------------------------------------
def run_fleet(fleet: LocalFleet, profiles: list, every_day: bool = True) -> list:  # type: ignore[type-arg]
    outs = []
    for day in sorted({p.day for p in profiles}):
        outs.append(fleet.process([p for p in profiles if p.day == day]))
        if every_day:
            fleet.sync()
    return outs


def test_one_model_whatever_the_number_of_workers() -> None:
    profiles, _ = generate_profiles(n_customers=240, days=10, seed=5)  # a week to be established, then a model
    fleets = [LocalFleet(n_workers=w, k=8, min_seed_samples=100, seeder="kmeans++", halflife_updates=120)
              for w in (1, 3)]
    for f in fleets:
        run_fleet(f, profiles)
    one, three = (f.owner.model for f in fleets)
    assert one is not None and three is not None
    assert one.version == three.version and one.ids == three.ids
    np.testing.assert_allclose(one.centroids, three.centroids, rtol=1e-9, atol=1e-9)
    assert fleets[0].memberships() == fleets[1].memberships()
    # every worker of a fleet holds the same version
    assert {w.assigner.model.version for w in fleets[1].workers if w.assigner.model} == {three.version}


def test_merge_stats_is_order_independent() -> None:
    rng = np.random.default_rng(3)
    parts = [blob_stats(rng, CENTRES, n=20) for _ in range(3)]
    for i, p in enumerate(parts):
        p.add("B1", np.full((i + 1, 2), float(i)))
    a = merge_stats(parts).snapshot()
    b = merge_stats(parts[::-1]).snapshot()
    assert a["clusters"] == b["clusters"] and a["n_updates"] == b["n_updates"]
    assert sorted(map(tuple, a["sample"])) == sorted(map(tuple, b["sample"]))
    np.testing.assert_allclose(a["scaler"]["sum"], b["scaler"]["sum"])
    assert ClusterStats.restore(a).snapshot() == a


def test_recovers_archetypes_with_ari_above_085() -> None:
    """>= 7 archetype-like load shapes, 2 workers, 14 days, default (scipy k-means++) seeding."""
    assert len(ARCHETYPES) >= 7
    n = 480
    profiles, labels = generate_profiles(n_customers=n, days=14, seed=7)
    fleet = LocalFleet(n_workers=2, k=len(ARCHETYPES), min_seed_samples=200, halflife_updates=n / 2)
    outs = run_fleet(fleet, profiles)
    members = fleet.memberships()
    assert len(members) == n
    ari = adjusted_rand_index([labels[c] for c in members], list(members.values()))
    assert ari >= 0.85, ari
    # stationary behaviour: volatility of the last four days below 1 % per day
    book = MembershipBook()
    for out in outs:
        for o in out:
            if o.kind == "membership":
                book.process(changes_from_behaviour(o))
    for day in sorted({p.day for p in profiles})[-4:]:
        assert book.family_volatility("behaviour", day + timedelta(days=1)) < 0.01
    # readable, distinct profiles
    model = fleet.owner.model
    assert model is not None and len(set(model.names)) == model.k
    assert any("PV exporter" in p for p in model.profiles)
    assert all("kWh a day" in p for p in model.profiles)


def test_ev_adoption_moves_customers_and_fires_drift() -> None:
    n, shift_day = 400, 9
    _, labels = generate_profiles(n_customers=n, days=1, seed=9)
    commuters = sorted(c for c in labels if labels[c] == "commuter")
    adopters = set(commuters[::2])
    profiles, labels = generate_profiles(n_customers=n, days=shift_day + 3, seed=9,
                                         shift=lambda c, d: c in adopters and d >= shift_day)
    fleet = LocalFleet(n_workers=2, k=8, min_seed_samples=200, halflife_updates=n / 2, seeder="kmeans++")
    last = max(p.day for p in profiles)
    outs = run_fleet(fleet, [p for p in profiles if p.day < last])  # the shift day and the next one
    members = fleet.memberships()
    ev = collections.Counter(members[c] for c in labels if labels[c] == "ev_charger").most_common(1)[0][0]
    moved = sum(members[c] == ev for c in adopters) / len(adopters)
    assert moved >= 0.75, moved  # two days after adoption
    outs += run_fleet(fleet, [p for p in profiles if p.day == last])  # completes the day after the shift
    drifts = [o for out in outs[shift_day:] for o in out if o.kind == "drift"]
    assert not [o for out in outs[:shift_day] for o in out if o.kind == "drift"], "no drift before the shift"
    assert drifts, "a drift event fires after the shift"
