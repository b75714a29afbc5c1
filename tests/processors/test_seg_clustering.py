"""Behaviour clustering: ARI, Hungarian, identities, hysteresis, fleet model, drift, quality."""

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
    linear_sum_assignment,
    match_identities,
    merge_stats,
)
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


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 6), st.integers(1, 6), st.integers(0, 10_000))
def test_hungarian_matches_brute_force(rows: int, cols: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    cost = rng.integers(0, 20, (rows, cols)).astype(float) if seed % 2 else rng.random((rows, cols))
    pairs = linear_sum_assignment(cost)
    assert len(pairs) == min(rows, cols)
    assert len({r for r, _ in pairs}) == len(pairs) == len({c for _, c in pairs})
    if rows <= cols:
        best = min(sum(cost[r, c] for r, c in enumerate(p)) for p in itertools.permutations(range(cols), rows))
    else:
        best = min(sum(cost[r, c] for c, r in enumerate(p)) for p in itertools.permutations(range(rows), cols))
    assert sum(cost[r, c] for r, c in pairs) == pytest.approx(best)


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


def test_drift_cooldown_in_days_and_panel() -> None:
    a = BehaviourAssigner(SPEC2, drift_cooldown=0, drift_cooldown_days=7, drift_panel=10)
    a.members = {f"C{i}": None for i in range(1000)}  # type: ignore[misc]
    assert 0 < sum(a._in_panel(f"C{i}") for i in range(1000)) < 40
    ev = a._watch(1.0, np.zeros(2), T0, 1, 100)
    assert ev == []
    det = a.detectors["distance"]
    for v in [1.0] * 300 + [5.0] * 300:
        fired = a._watch(v, np.zeros(2), T0, 1, 100)
        if fired:
            break
    assert fired and a.quiet_until_day["distance"] == 107
    for v in [1.0] * 600 + [9.0] * 600:  # a second change within the week stays quiet
        assert all(e.detector != "distance" for e in a._watch(v, np.zeros(2), T0, 1, 103))
    assert det is a.detectors["distance"]


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
    naive = BehaviourAssigner(spec, margin=0.0, patience=1, drift_features=False)
    naive.set_model(boundary_model())
    assert len(wobble(naive, 20)) >= 15  # flaps nearly every day
    damped = BehaviourAssigner(spec, margin=0.15, patience=3, drift_features=False)
    damped.set_model(boundary_model())
    assert wobble(damped, 20) == []


def test_persistent_small_advantage_eventually_moves() -> None:
    spec = FeatureSpec(names=("x",), log1p=(), log=())
    a = BehaviourAssigner(spec, margin=0.5, patience=3, drift_features=False)
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
    profiles, _ = generate_profiles(n_customers=240, days=6, seed=5)
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
    """>= 7 archetype-like load shapes, 2 workers, 14 days, default (river) seeding."""
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
    assert any("solar exporter" in p for p in model.profiles)


def test_ev_adoption_moves_customers_and_fires_drift() -> None:
    n, shift_day = 400, 9
    _, labels = generate_profiles(n_customers=n, days=1, seed=9)
    commuters = sorted(c for c in labels if labels[c] == "commuter")
    adopters = set(commuters[::2])
    profiles, labels = generate_profiles(n_customers=n, days=shift_day + 2, seed=9,
                                         shift=lambda c, d: c in adopters and d >= shift_day)
    fleet = LocalFleet(n_workers=2, k=8, min_seed_samples=200, halflife_updates=n / 2, seeder="kmeans++",
                       drift_cooldown=200)
    outs = run_fleet(fleet, profiles)
    members = fleet.memberships()
    ev = collections.Counter(members[c] for c in labels if labels[c] == "ev_charger").most_common(1)[0][0]
    moved = sum(members[c] == ev for c in adopters) / len(adopters)
    assert moved >= 0.75, moved  # two days after adoption
    drifts = [o for out in outs[shift_day:] for o in out if o.kind == "drift"]
    assert drifts, "a drift event fires after the shift"
