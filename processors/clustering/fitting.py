"""Fitting behaviour clusters: k-means++ best of several, river's KMeans, identities by minimum-cost matching.

What :class:`~processors.clustering.owner.ModelOwner` (re-)fits with, apart from the versioned model
itself (:mod:`processors.clustering.model`): the seeding is scipy's (``kmeans2(minit="++")``) refined by
Lloyd iterations, best inertia of ``n_init`` runs; ``seed_river_kmeans`` runs river's ``cluster.KMeans``
instead (the bench compares both); :func:`match_identities` keeps a refitted centroid's id by scipy's
``linear_sum_assignment`` on centroid distances.

References:
    Arthur & Vassilvitskii (2007), "k-means++: the advantages of careful seeding", SODA; Lloyd (1982),
    "Least squares quantization in PCM", IEEE Trans. Inf. Theory; Kuhn (1955), "The Hungarian method for
    the assignment problem"; river documentation, ``river.cluster.KMeans``.
"""

from __future__ import annotations

import warnings

import numpy as np
from river import cluster as river_cluster
from scipy.cluster.vq import kmeans2
from scipy.optimize import linear_sum_assignment


def _inertia(z: np.ndarray, c: np.ndarray) -> float:
    d2 = (z * z).sum(1)[:, None] - 2 * z @ c.T + (c * c).sum(1)[None, :]
    return float(np.maximum(d2, 0).min(axis=1).sum())


def _counts(z: np.ndarray, c: np.ndarray) -> np.ndarray:
    """How many rows of ``z`` each centre of ``c`` is nearest to (at least a small positive weight)."""
    d2 = (z * z).sum(1)[:, None] - 2 * z @ c.T + (c * c).sum(1)[None, :]
    return np.maximum(np.bincount(d2.argmin(axis=1), minlength=len(c)).astype(float), 1e-3)


def _kmeanspp_init(z: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ initial centres (for river's KMeans seeder; ``seed_kmeanspp`` lets scipy do it)."""
    c = [z[rng.integers(len(z))]]
    d = ((z - c[0]) ** 2).sum(axis=1)
    for _ in range(k - 1):
        p = d / d.sum() if d.sum() > 0 else None
        c.append(z[rng.choice(len(z), p=p)])
        d = np.minimum(d, ((z - c[-1]) ** 2).sum(axis=1))
    return np.asarray(c)


def _lloyd(z: np.ndarray, c: np.ndarray, iters: int = 100) -> np.ndarray:
    """Lloyd iterations until no assignment changes (distances by matrix product; an empty cluster keeps its centre)."""
    z2 = (z * z).sum(1)[:, None]
    a = None
    for _ in range(iters):
        new_a = (z2 - 2 * z @ c.T + (c * c).sum(1)[None, :]).argmin(axis=1)
        if a is not None and np.array_equal(a, new_a):
            break
        a = new_a
        counts = np.bincount(a, minlength=len(c)).astype(float)
        sums = np.zeros_like(c)
        np.add.at(sums, a, z)
        c = np.where(counts[:, None] > 0, sums / np.maximum(counts, 1.0)[:, None], c)
    return c


def seed_kmeanspp(z: np.ndarray, k: int, seed: int = 0, n_init: int = 5, iters: int = 100) -> np.ndarray:
    """Best (lowest inertia) of ``n_init`` k-means runs on scaled ``z``: scipy's k-means++ seeding, then Lloyd.

    The seeding is scipy's (``kmeans2(minit="++")``); the Lloyd iterations run here until no
    assignment changes, with distances as one matrix product: scipy's ``vq`` took 13 ms per
    iteration on 4 096 x 51 vectors, the whole refit 5 s instead of 0.2 s.

    Examples:
        >>> z = np.vstack([np.zeros((20, 2)), np.full((20, 2), 5.0)])
        >>> sorted(seed_kmeanspp(z, 2, n_init=3).round(3).tolist())
        [[0.0, 0.0], [5.0, 5.0]]
    """
    rng = np.random.default_rng(seed)
    best: tuple[float, np.ndarray] | None = None
    for _ in range(n_init):
        with warnings.catch_warnings():  # an empty cluster keeps its centre; the inertia judges the run
            warnings.simplefilter("ignore")
            start, _ = kmeans2(z, k, iter=1, minit="++", missing="warn", seed=rng)
        cc = _lloyd(z, start, iters)
        score = _inertia(z, cc)
        if best is None or score < best[0]:
            best = (score, cc)
    assert best is not None
    return best[1]


def seed_river_kmeans(
    z: np.ndarray, k: int, seed: int = 0, n_init: int = 5, passes: int = 3, init: str = "kmeans++"
) -> np.ndarray:
    """Best (lowest inertia) of ``n_init`` runs of ``river.cluster.KMeans`` over scaled ``z``.

    Each run makes ``passes`` shuffled passes of ``learn_one`` over the sample.
    ``init="kmeans++"`` places river's centres with k-means++ first;
    ``init="river"`` keeps river's own random-normal centres (``sigma=1``),
    which in our measurement merged two of eight archetypes in 3 of 4 seeds.
    """
    rng = np.random.default_rng(seed)
    best: tuple[float, np.ndarray] | None = None
    for _ in range(n_init):
        km = river_cluster.KMeans(n_clusters=k, halflife=0.5, sigma=1.0, seed=int(rng.integers(1 << 30)))
        if init == "kmeans++":
            start = _kmeanspp_init(z, k, rng)
            for j in range(k):
                km.centers[j].clear()
                km.centers[j].update(enumerate(start[j].tolist()))
        for _ in range(passes):
            for i in rng.permutation(len(z)):
                km.learn_one(dict(enumerate(z[i].tolist())))
        c = np.array([[km.centers[j].get(i, 0.0) for i in range(z.shape[1])] for j in range(k)])
        score = _inertia(z, c)
        if best is None or score < best[0]:
            best = (score, c)
    assert best is not None
    return best[1]


def _match_radii(old: np.ndarray, fraction: float) -> np.ndarray:
    """Per old centroid: ``fraction`` of the distance to its nearest other old centroid (inf if alone or 0)."""
    if len(old) < 2 or fraction <= 0:
        return np.full(len(old), np.inf)
    d = np.sqrt(((old[:, None, :] - old[None, :, :]) ** 2).sum(-1))
    np.fill_diagonal(d, np.inf)
    return fraction * d.min(axis=1)


def _agreement(z: np.ndarray, current: np.ndarray, candidate: np.ndarray) -> float:
    """Share of ``z`` whose nearest candidate centroid is the match of its nearest current centroid."""
    match = match_identities(current, candidate)  # candidate row -> current row

    def nearest(c: np.ndarray) -> np.ndarray:
        return ((z * z).sum(1)[:, None] - 2 * z @ c.T + (c * c).sum(1)[None, :]).argmin(axis=1)
    mapped = np.array([match.get(j, -1) for j in range(len(candidate))])
    return float(np.mean(mapped[nearest(candidate)] == nearest(current)))


def match_identities(old: np.ndarray, new: np.ndarray) -> dict[int, int]:
    """Map new centroid rows to old centroid rows by minimum total distance (scipy's ``linear_sum_assignment``).

    Examples:
        >>> old = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
        >>> match_identities(old, old[[2, 0, 1]] + 0.1)
        {0: 2, 1: 0, 2: 1}
    """
    cost = np.sqrt(((new[:, None, :] - old[None, :, :]) ** 2).sum(-1))
    rows, cols = linear_sum_assignment(cost)
    return {int(r): int(c) for r, c in zip(rows, cols, strict=True)}
