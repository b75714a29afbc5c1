"""Benchmark of the pure segmentation processors (no Kafka, Faust or Redis).

Prints, as medians of 3 runs:

* profile updates/s - features + scaling + clustering assignment + hysteresis + ADWIN;
* RFM updates/s - idempotent apply + sketch maintenance + scoring, and a full re-score;
* rule evaluations/s - per customer dict and columnar numpy;
* the clusterer comparison on synthetic archetype-like features: river's KMeans,
  STREAMKMeans and DBSTREAM learning one vector at a time, and this project's
  fleet model (sufficient statistics + river/k-means++ seeding), ARI and updates/s;
* fleet quality on synthetic profiles: ARI after N days, stationary volatility,
  share of EV adopters in the EV segment two days after adopting, drift events.

scikit-learn is not a dependency; the batch ceiling is numpy k-means++ + Lloyd
(best of 10) on the same features.

Usage::

    .venv/bin/python bench/processors_segmentation.py [--customers 2000] [--days 14] [--quick]
"""

from __future__ import annotations

import argparse
import collections
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import numpy as np
from river import cluster as river_cluster

from processors.clustering import LocalFleet, adjusted_rand_index
from processors.clustering.fitting import seed_kmeanspp, seed_river_kmeans
from processors.clustering.model import FeatureSpec
from processors.clustering.synthetic import ARCHETYPES, generate_profiles
from processors.features import FeatureProcessor, RunningScaler
from processors.rfm import RfmProcessor
from processors.rules import compile_rule
from processors.segments import MembershipBook, changes_from_behaviour
from stream.schemas import Purchase


def median_of(runs: int, fn: Callable[[int], float]) -> float:
    """Median of ``runs`` calls of ``fn(run_index)``."""
    return statistics.median(fn(i) for i in range(runs))


def bench_profiles(n: int, days: int) -> None:
    profiles, _ = generate_profiles(n_customers=n, days=days, seed=1)
    by_day = collections.defaultdict(list)
    for p in profiles:
        by_day[p.day].append(p)
    order = sorted(by_day)
    warm = order[:5]
    timed = [p for d in order[5:] for p in by_day[d]]

    def run(_: int) -> float:
        fleet = LocalFleet(n_workers=1, k=8, min_seed_samples=256, halflife_updates=n / 2)
        for d in warm:
            fleet.process(by_day[d])
            fleet.sync()
        w = fleet.workers[0]
        t = time.perf_counter()
        for i in range(0, len(timed), 1000):
            w.process(timed[i : i + 1000])
        return len(timed) / (time.perf_counter() - t)

    def run_features(_: int) -> float:
        fp = FeatureProcessor()
        t = time.perf_counter()
        for i in range(0, len(profiles), 1000):
            fp.process(profiles[i : i + 1000])
        return len(profiles) / (time.perf_counter() - t)

    print(f"profile updates/s (features+scaling+assign+hysteresis+ADWIN, batches of 1000): "
          f"{median_of(3, run):,.0f}")
    print(f"  features only: {median_of(3, run_features):,.0f}/s")


def bench_rfm(n_customers: int, n_events: int) -> None:
    rng = np.random.default_rng(2)
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    kinds = ("PURCHASED", "PURCHASED", "VIEWED", "PROCESSED")
    events = [
        Purchase(event_id=f"e{i}", customer_id=f"C{int(c)}", ts=t0 + timedelta(minutes=int(m)),
                 event_type=kinds[i % 4], amount=float(a))
        for i, (c, m, a) in enumerate(zip(rng.integers(0, n_customers, n_events), rng.integers(0, 60 * 24 * 90,
                                                                                               n_events),
                                          rng.lognormal(3, 1, n_events), strict=True))
    ]

    def run(_: int) -> float:
        p = RfmProcessor()
        t = time.perf_counter()
        for i in range(0, len(events), 1000):
            p.process(events[i : i + 1000])
        return len(events) / (time.perf_counter() - t)

    rescored = RfmProcessor()
    rescored.process(events)

    def run_rescore(k: int) -> float:
        t = time.perf_counter()
        rescored.rescore(t0 + timedelta(days=100 + k))
        return len(rescored.customers) / (time.perf_counter() - t)

    print(f"RFM updates/s (Purchase events, batches of 1000, {n_customers:,} customers): {median_of(3, run):,.0f}")
    print(f"  rescore: {median_of(3, run_rescore):,.0f} customers/s")


def bench_rules(n: int) -> None:
    rule = compile_rule('region == "North" and rfm.monetary_mean > 138 or tariff in ["prepaid"] and '
                        "not rfm.r_score <= 2")
    rng = np.random.default_rng(3)
    regions = np.array(["North", "South", "East", "West"], dtype=object)[rng.integers(0, 4, n)]
    tariffs = np.array(["prepaid", "postpaid"], dtype=object)[rng.integers(0, 2, n)]
    money = rng.lognormal(4.5, 0.5, n)
    r = rng.integers(1, 6, n).astype(float)
    rows = [{"region": regions[i], "tariff": tariffs[i], "rfm.monetary_mean": float(money[i]),
             "rfm.r_score": int(r[i])} for i in range(n)]
    cols = {"region": regions, "tariff": tariffs, "rfm.monetary_mean": money, "rfm.r_score": r}
    assert rule.mask(cols).tolist() == [rule.matches(x) for x in rows]

    def run_dict(_: int) -> float:
        t = time.perf_counter()
        for x in rows:
            rule.matches(x)
        return n / (time.perf_counter() - t)

    def run_cols(_: int) -> float:
        t = time.perf_counter()
        rule.mask(cols)
        return n / (time.perf_counter() - t)

    print(f"rule evaluations/s: per-customer dict {median_of(3, run_dict):,.0f}, "
          f"columnar {median_of(3, run_cols):,.0f} (rows of {n:,})")


def feature_vectors(n: int, days: int, seed: int) -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
    """Stream of scaled daily feature vectors, the customers' final vectors, and true labels."""
    profiles, labels = generate_profiles(n_customers=n, days=days, seed=seed)
    fp = FeatureProcessor()
    spec = FeatureSpec()
    feats = fp.process(profiles)
    stream = np.array([spec.vector(f.values) for f in feats])
    cids = sorted(labels)
    final = np.array([spec.vector(fp.values(c)) for c in cids])
    sc = RunningScaler(stream.shape[1])
    sc.learn(stream)
    return sc.transform(stream), sc.transform(final), [labels[c] for c in cids], cids


def bench_clusterers(n: int, days: int) -> None:
    k = len(ARCHETYPES)
    results: dict[str, list[tuple[float, float]]] = collections.defaultdict(list)
    for seed in range(3):
        stream, final, truth, _ = feature_vectors(n, days, seed)
        rows = [dict(enumerate(z.tolist())) for z in stream]
        last = [dict(enumerate(z.tolist())) for z in final]
        models = {
            "river KMeans": river_cluster.KMeans(n_clusters=k, halflife=0.5, sigma=1.0, seed=seed),
            "river STREAMKMeans": river_cluster.STREAMKMeans(chunk_size=100, n_clusters=k, halflife=0.5,
                                                             sigma=1.0, seed=seed),
            "river DBSTREAM": river_cluster.DBSTREAM(clustering_threshold=1.5, fading_factor=0.05,
                                                     cleanup_interval=4, intersection_factor=0.5, minimum_weight=1),
        }
        for name, m in models.items():
            t = time.perf_counter()
            for x in rows:
                m.learn_one(x)
            rate = len(rows) / (time.perf_counter() - t)
            pred = [m.predict_one(x) for x in last]
            results[name].append((adjusted_rand_index(truth, pred), rate))
        for name, seeder in (("seed: k-means++ (scipy seeding, Lloyd)", seed_kmeanspp),
                             ("seed: river KMeans, k-means++ init", seed_river_kmeans)):
            sample = stream[np.random.default_rng(seed).choice(len(stream), 2048, replace=False)]
            t = time.perf_counter()
            c = seeder(sample, k, seed=seed)
            rate = len(sample) / (time.perf_counter() - t)
            pred = ((final[:, None, :] - c[None]) ** 2).sum(-1).argmin(1)
            results[name].append((adjusted_rand_index(truth, pred.tolist()), rate))
        sample = stream[np.random.default_rng(seed).choice(len(stream), 2048, replace=False)]
        t = time.perf_counter()
        c = seed_river_kmeans(sample, k, seed=seed, init="river")
        rate = len(sample) / (time.perf_counter() - t)
        pred = ((final[:, None, :] - c[None]) ** 2).sum(-1).argmin(1)
        results["seed: river KMeans, river init"].append((adjusted_rand_index(truth, pred.tolist()), rate))
        t = time.perf_counter()
        c = seed_kmeanspp(final, k, seed=seed, n_init=10)
        pred = ((final[:, None, :] - c[None]) ** 2).sum(-1).argmin(1)
        results["batch ceiling: k-means++ Lloyd x10 (numpy)"].append(
            (adjusted_rand_index(truth, pred.tolist()), len(final) / (time.perf_counter() - t)))
    print(f"clusterer comparison ({n:,} customers x {days} days, k={k}, medians of 3 seeds; "
          "ARI on final vectors, rate = vectors learnt/s):")
    for name, vals in results.items():
        aris = [a for a, _ in vals]
        print(f"  {name:45s} ARI {statistics.median(aris):.3f} (min {min(aris):.3f})  "
              f"{statistics.median(r for _, r in vals):>10,.0f}/s")


def bench_fleet_quality(n: int, days: int, workers: int) -> None:
    shift_day = days
    _, labels0 = generate_profiles(n_customers=n, days=1, seed=9)
    ids = sorted(labels0)
    rng = np.random.default_rng(1)
    adopters = set(rng.choice(ids, size=n // 10, replace=False).tolist())
    profiles, labels = generate_profiles(n_customers=n, days=days + 2, seed=9,
                                         shift=lambda c, d: c in adopters and d >= shift_day)
    t = time.perf_counter()
    fleet = LocalFleet(n_workers=workers, k=len(ARCHETYPES), min_seed_samples=256, halflife_updates=n / 2)
    book = MembershipBook()
    all_days = sorted({p.day for p in profiles})
    drift_days: list[int] = []
    ari = 0.0
    for di, day in enumerate(all_days):
        out = fleet.process([p for p in profiles if p.day == day])
        fleet.sync()
        for o in out:
            if o.kind == "membership":
                book.process(changes_from_behaviour(o))
            elif di >= shift_day:
                drift_days.append(di)
        if di == shift_day - 1:
            m = fleet.memberships()
            ari = adjusted_rand_index([labels[c] for c in m], [m[c] for c in m])
    elapsed = time.perf_counter() - t
    vols = [book.family_volatility("behaviour", d + timedelta(days=1)) for d in all_days[shift_day - 4 : shift_day]]
    m = fleet.memberships()
    ev = collections.Counter(m[c] for c in labels if labels[c] == "ev_charger" and c not in adopters).most_common(1)
    ev_id = ev[0][0]
    # "matching" segment: adopters who were commuters become EV-charger-like; others get extra night load
    commuters = [c for c in adopters if labels[c] == "commuter"]
    moved_c = sum(m[c] == ev_id for c in commuters) / max(len(commuters), 1)
    moved_all = sum(m[c] == ev_id for c in adopters) / len(adopters)
    print(f"fleet quality ({n:,} customers, {workers} workers, {days} days, k={len(ARCHETYPES)}, "
          f"{elapsed:.1f} s end to end):")
    print(f"  ARI after {days} days: {ari:.3f}; volatility last 4 stationary days: "
          + ", ".join(f"{v:.2%}" for v in vols))
    print(f"  EV shift ({len(adopters)} adopters = 10 %): in the EV segment 2 days later: commuter adopters "
          f"{moved_c:.0%} ({len(commuters)}), all adopters {moved_all:.0%}; drift events after the shift: "
          f"{len(drift_days)} (days {sorted(set(drift_days))})")
    model = fleet.owner.model
    assert model is not None
    truth = collections.defaultdict(collections.Counter)
    for c, cid in m.items():
        truth[cid][labels[c]] += 1
    print(f"  model v{model.version}: " + "; ".join(
        f"{ci.id} {ci.name!r} [{truth[ci.id].most_common(1)[0][0] if truth[ci.id] else '-'}]"
        for ci in model.clusters()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--customers", type=int, default=2000)
    ap.add_argument("--days", type=int, default=14)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="small sizes (smoke run)")
    a = ap.parse_args()
    n = 400 if a.quick else a.customers
    bench_profiles(n, a.days)
    bench_rfm(n * 5, n * 50)
    bench_rules(n * 50)
    bench_clusterers(n, a.days)
    bench_fleet_quality(n, a.days, a.workers)


if __name__ == "__main__":
    main()
