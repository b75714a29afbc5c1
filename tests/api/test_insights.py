"""Insights: overlap, differentiators, suggested segments (rules compile and select their leaf), lookalikes."""

from __future__ import annotations

import numpy as np
import pytest

from processors.insights import Population, band, differentiators, lookalikes, overlap, suggest
from processors.rules import KNOWN_ATTRIBUTES, compile_rule


def _population(n: int = 3000, seed: int = 0) -> Population:
    rng = np.random.default_rng(seed)
    region = rng.choice(["North", "South", "East"], n).astype(object)
    kwh = rng.gamma(4.0, 3.0, n)
    has_export = rng.random(n) < 0.3
    frequency = rng.poisson(4, n).astype(float)
    # monetary depends on region and kwh: North and heavy users spend more
    monetary = 50 + 40 * (region == "North") + 3 * kwh + rng.normal(0, 5, n)
    monetary[rng.random(n) < 0.05] = np.nan  # some unknown
    kwh[rng.random(n) < 0.03] = np.nan
    return Population(
        [f"C{i:05d}" for i in range(n)],
        {
            "region": region,
            "features.mean_daily_kwh": kwh,
            "has_export": has_export.astype(object),
            "rfm.frequency": frequency,
            "rfm.monetary_mean": monetary,
        },
    )


def test_overlap_counts_and_shares() -> None:
    got = overlap({"a", "b", "c"}, {"c", "d"})
    assert (got["shared"], got["only_a"], got["only_b"]) == (1, 2, 1)
    assert got["share_of_a"] == pytest.approx(1 / 3, abs=1e-4) and got["share_of_b"] == 0.5
    assert overlap(set(), set())["jaccard"] == 0.0


def test_differentiators_rank_the_attribute_that_separates() -> None:
    pop = _population()
    north = pop.columns["region"] == "North"
    diffs = differentiators(pop, north, ~north)
    assert diffs[0]["attribute"] in {"region", "rfm.monetary_mean"}
    by = {d["attribute"]: d for d in diffs}
    assert by["region"]["score"] == pytest.approx(1.0)  # disjoint categories
    assert by["rfm.monetary_mean"]["score"] > 2.0  # ~40 / sd
    assert abs(by["rfm.frequency"]["score"]) < 0.15
    h = by["rfm.monetary_mean"]
    assert len(h["a"]["histogram"]) == len(h["b"]["histogram"]) == len(h["bin_edges"]) - 1
    assert sum(h["a"]["histogram"]) == h["a"]["n"]
    assert by["rfm.monetary_mean"]["missing_a"] > 0


def test_suggest_finds_the_driver_and_rules_select_exactly_the_leaf() -> None:
    pop = _population()
    out = suggest(pop, "rfm.monetary_mean", ["region", "features.mean_daily_kwh", "has_export", "rfm.frequency"],
                  max_depth=3, min_leaf=100)  # fmt: skip
    assert out and len(out) <= 8
    top = out[0]
    assert "region" in top["rule"] or "mean_daily_kwh" in top["rule"]
    assert any(s["lift"] > 1.3 for s in out) and any(s["lift"] < 0.85 for s in out)
    for s in out:
        assert s["size"] >= 100
        rule = compile_rule(s["rule"], known_names=KNOWN_ATTRIBUTES)
        mask = rule.mask(pop.columns) & ~np.isnan(pop.columns["rfm.monetary_mean"])
        assert int(mask.sum()) == s["size"], s["rule"]
        assert float(pop.columns["rfm.monetary_mean"][mask].mean()) == pytest.approx(s["target_mean"])
    sizes = sum(s["size"] for s in suggest(pop, "rfm.monetary_mean", ["region"], min_leaf=1))
    assert sizes == int((~np.isnan(pop.columns["rfm.monetary_mean"])).sum())


def test_suggest_categorical_target() -> None:
    pop = _population()
    pop.columns["big"] = np.where(pop.columns["features.mean_daily_kwh"] > 15, "big", "small").astype(object)
    out = suggest(pop, "big", ["features.mean_daily_kwh", "region"], target_value="big", min_leaf=50)
    assert any(s["lift"] > 2 and "features.mean_daily_kwh" in s["rule"] for s in out)
    assert any(s["lift"] == 0 for s in out)  # a leaf with no big users at all (kwh <= 15)
    multi = suggest(pop, "region", ["rfm.monetary_mean"], max_depth=2, min_leaf=50)
    assert any(s["majority"] == "North" and s["lift"] > 1.5 for s in multi)
    with pytest.raises(ValueError):
        suggest(pop, "big", ["region"], max_depth=4)
    with pytest.raises(KeyError):
        suggest(pop, "nope", ["region"])


def test_lookalikes_rank_bands_and_cap() -> None:
    rng = np.random.default_rng(3)
    n = 5000
    x = rng.normal(0, 1, (n, 3))
    seed = np.zeros(n, bool)
    seed[:200] = True
    x[:200] += 3.0  # the seed sits far from the crowd
    x[200:300] += 2.9  # and 100 customers look just like it
    pop = Population([f"C{i}" for i in range(n)], {f"f{j}": x[:, j] for j in range(3)})
    out = lookalikes(pop, seed, ["f0", "f1", "f2"], max_share=0.02)
    assert out["cap"] == 100 and len(out["results"]) <= 100
    found = {int(r["customer_id"][1:]) for r in out["results"]}
    assert len(found & set(range(200, 300))) >= 80
    assert not found & set(range(200))
    scores = [r["score"] for r in out["results"]]
    assert scores == sorted(scores, reverse=True) and min(scores) >= 0.55
    assert all(band(r["score"]) == r["band"] for r in out["results"])
    inside = np.zeros(n, bool)
    inside[250:400] = True
    limited = lookalikes(pop, seed, ["f0", "f1", "f2"], candidates=inside, method="cosine")
    assert {int(r["customer_id"][1:]) for r in limited["results"]} <= set(range(250, 400))
    with pytest.raises(ValueError):
        lookalikes(pop, np.zeros(n, bool), ["f0"])
