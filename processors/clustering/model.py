"""One versioned behaviour model for the whole fleet, built from mergeable statistics.

Design (the transport is the stream side's):

* Every partition worker (:class:`~processors.clustering.assign.BehaviourAssigner`)
  assigns its customers with the *current* :class:`ClusterModel` and
  accumulates :class:`ClusterStats`: per cluster id the count, sum and sum of
  squares of the customers' feature vectors that were nearest to it, the
  fleet scaler's count/sum/sum of squares, a small sample of recent vectors and
  the number of drifts it detected.
* A single model owner (:class:`ModelOwner`, one partition of a model topic)
  merges the workers' stats (:func:`merge_stats` - addition, so order does
  not matter) and applies them (:meth:`ModelOwner.apply`): a mini-batch
  k-means step with exponential forgetting (the same update river's
  ``cluster.KMeans`` makes per sample with its half-life, done per batch),
  which gives a new :class:`ClusterModel` with ``version + 1``. The owner
  publishes it (compacted topic / Redis key); workers swap it in.
* Seeding and re-seeding (on drift, when configured, and the periodic
  refresh while the model is young) cluster the owner's sample of recent
  vectors: ``seeder="kmeans++"`` (best of ``seed_n_init`` k-means++
  seedings refined by Lloyd, numpy; what ``SegmentationConfig`` ships) or
  ``"river_kmeans"`` (best of several runs of ``river.cluster.KMeans``).
  Measured with ``bench/segmentation.py`` at 10 000 meters x 14 days (seed
  1): river's KMeans merged two archetypes and left a cluster empty (ARI
  0.77) where k-means++ on a 2 048-vector sample reached the batch ceiling
  (0.93); on seed 2 both gave 0.90.
  New centroids are matched to old ones with the Hungarian algorithm on
  centroid distance so every segment keeps its id and name; a matched pair
  whose centroid moved more than ``match_radius`` of the way to the old
  centroid's nearest neighbour is not the same cluster: the old id retires and
  the new centroid gets a fresh id (only those clusters' memberships re-open,
  see :mod:`processors.clustering.assign`).

Vectors live in a *transformed* space (``log1p`` for kWh and RFM amounts,
``log`` for ratios) and distances are Euclidean after standard scaling by the
model's scaler: centroids and statistics are stored unscaled, so a new
scaler never invalidates them (scaling is linear).

Examples:
    >>> spec = FeatureSpec(names=("a", "b"), log1p=(), log=())
    >>> owner = ModelOwner(k=2, spec=spec, min_seed_samples=4, seeder="kmeans++")
    >>> stats = ClusterStats.empty(spec)
    >>> stats.add_sample(np.array([[0.0, 0.0], [0.1, 0.0], [5.0, 5.0], [5.1, 5.0]]))
    >>> stats.scaler.learn(np.array([[0.0, 0.0], [0.1, 0.0], [5.0, 5.0], [5.1, 5.0]]))
    >>> m1 = owner.apply(stats)
    >>> m1.version, len(m1.ids), sorted(m1.nearest(np.array([[5.0, 5.1], [0.0, 0.1]]))[0].tolist())
    (1, 2, [0, 1])
    >>> ClusterModel.restore(m1.snapshot()) == m1
    True

References:
    river documentation, ``river.cluster.KMeans`` (online k-means with a
    half-life), ``STREAMKMeans`` and ``DBSTREAM``; Sculley (2010), "Web-scale
    k-means clustering", WWW (mini-batch k-means); Arthur & Vassilvitskii
    (2007), "k-means++: the advantages of careful seeding", SODA; Kuhn (1955),
    "The Hungarian method for the assignment problem" (identity matching).
"""

from __future__ import annotations

import logging
import math
import warnings
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict
from river import cluster as river_cluster
from scipy.cluster.vq import kmeans2
from scipy.optimize import linear_sum_assignment

from processors.clustering.naming import SegmentNames, describe_units
from processors.features import CLUSTER_FEATURES, WEEKDAY_SHAPE, WEEKEND_SHAPE, RunningScaler

log = logging.getLogger(__name__)

STATE_FORMAT = 2
"""Version of :meth:`ModelOwner.snapshot` (1: no ``format`` key, 9 daily figures, z-score names)."""

Seeder = Literal["river_kmeans", "kmeans++"]


@dataclass(frozen=True)
class FeatureSpec:
    """Which features form the clustering vector, and how each is transformed.

    ``log1p`` features are amounts (kWh, money, counts), ``log`` features are
    ratios (clipped to [1/20, 20] first); the rest pass through.

    ``groups`` pool the scaling of features that are one quantity: the 24 hourly
    shares of the weekday shape are scaled by one common standard deviation (not
    each hour by its own, which blew up quiet night hours into noise), and the
    group as a whole weighs ``weight`` single features in the distance. The
    default (:data:`~processors.features.CLUSTER_FEATURES`) compares weekday shape
    (weight 4), weekend shape (2), log10 daily kWh, the weekday/weekend level ratio
    and the export share (1 each): families of customers differ first by when in
    the day and the week they use energy, then by how much.
    Without ``variability`` (it jumps exactly when behaviour shifts) or RFM.
    """

    names: tuple[str, ...] = CLUSTER_FEATURES
    log1p: tuple[str, ...] = ("mean_daily_kwh", "rfm.monetary_mean", "rfm.frequency", "rfm.days_since_last")
    log: tuple[str, ...] = ("weekday_weekend_ratio",)
    groups: tuple[tuple[tuple[str, ...], float], ...] = ((WEEKDAY_SHAPE, 4.0), (WEEKEND_SHAPE, 2.0))

    def effective_std(self, std: np.ndarray) -> np.ndarray:
        """Per-feature scale of the distance: ``std`` with each group pooled and weighted (see the class).

        Examples:
            >>> spec = FeatureSpec(names=("a", "b", "c"), log1p=(), log=(), groups=((("b", "c"), 1.0),))
            >>> spec.effective_std(np.array([2.0, 1.0, 7.0])).round(3).tolist()
            [2.0, 7.071, 7.071]
        """
        out = np.asarray(std, dtype=float).copy()
        for members, weight in self.groups:
            idx = [self.names.index(n) for n in members if n in self.names]
            if idx:
                pooled = math.sqrt(float(np.mean(out[idx] ** 2)))
                out[idx] = pooled * math.sqrt(len(idx) / weight)
        return out

    def vector(self, values: Mapping[str, float]) -> np.ndarray:
        """Transformed vector of one customer's feature values (missing -> 0 after transform)."""
        out = np.empty(len(self.names))
        for i, n in enumerate(self.names):
            v = float(values.get(n, 0.0))
            if not math.isfinite(v):
                v = 0.0
            if n in self.log1p:
                v = math.log1p(max(v, 0.0))
            elif n in self.log:
                v = math.log(min(max(v, 0.05), 20.0))
            out[i] = v
        return out

    def snapshot(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        return {"names": list(self.names), "log1p": list(self.log1p), "log": list(self.log),
                "groups": [[list(g), w] for g, w in self.groups]}

    @classmethod
    def restore(cls, state: Mapping[str, Any]) -> FeatureSpec:
        """Inverse of :meth:`snapshot` (a spec stored before ``groups`` existed has none)."""
        groups = tuple((tuple(g), float(w)) for g, w in state.get("groups", ()))
        return cls(tuple(state["names"]), tuple(state["log1p"]), tuple(state["log"]), groups)

    def describe(self, centroid: np.ndarray, z: np.ndarray) -> str:
        """Readable profile of a centroid (unscaled ``centroid``, fleet z-scores ``z``).

        In units (:func:`~processors.clustering.naming.describe_units`) when the spec has the
        load-shape features, else from the z-scores (:func:`describe`).
        """
        need = ("log10_daily_kwh", "weekday_weekend_ratio", *WEEKDAY_SHAPE, *WEEKEND_SHAPE)
        if not all(n in self.names for n in need):
            return describe(z, self.names)
        at = {n: float(centroid[i]) for i, n in enumerate(self.names)}
        ratio = at["weekday_weekend_ratio"]
        return describe_units({
            "log10_daily_kwh": at["log10_daily_kwh"],
            "weekday_h": [at[n] for n in WEEKDAY_SHAPE], "weekend_h": [at[n] for n in WEEKEND_SHAPE],
            "weekday_weekend_ratio": math.exp(ratio) if "weekday_weekend_ratio" in self.log else ratio,
            "export_share": at.get("export_share", 0.0),
        })


# -- readable cluster profiles ---------------------------------------------------------------------
_WORDS: dict[str, tuple[str, str]] = {
    "mean_daily_kwh": ("high consumption", "low consumption"),
    "peak_to_average": ("peaky", "flat"),
    "share_night": ("night-heavy", "little night use"),
    "share_morning": ("morning-heavy", "little morning use"),
    "share_daytime": ("daytime-heavy", "little daytime use"),
    "share_evening": ("evening-heavy", "little evening use"),
    "weekday_weekend_ratio": ("weekday-heavy", "weekend-heavy"),
    "export_share": ("solar exporter", "no export"),
    "variability": ("irregular", "steady"),
    "rfm.days_since_last": ("lapsed buyer", "recent buyer"),
    "rfm.frequency": ("frequent buyer", "rare buyer"),
    "rfm.monetary_mean": ("big spender", "small spender"),
}


def describe(z: np.ndarray, names: Sequence[str], top: int = 3, threshold: float = 0.5) -> str:
    """Readable profile from a centroid's z-scores versus the population.

    The ``top`` features with the largest |z| above ``threshold`` become words.

    Examples:
        >>> describe(np.array([1.2, 0.1, 2.0]), ["mean_daily_kwh", "peak_to_average", "share_night"])
        'night-heavy, high consumption'
        >>> describe(np.zeros(2), ["mean_daily_kwh", "share_night"])
        'typical'
    """
    order = np.argsort(-np.abs(z))
    words = []
    for i in order[:top]:
        if abs(z[i]) < threshold:
            break
        hi, lo = _WORDS.get(names[i], (f"high {names[i]}", f"low {names[i]}"))
        words.append(hi if z[i] > 0 else lo)
    return ", ".join(words) if words else "typical"


# -- the versioned model ----------------------------------------------------------------------------
class ClusterInfo(BaseModel):
    """Identity and readable profile of one behaviour cluster (segment)."""

    model_config = ConfigDict(frozen=True)

    id: str
    name: str
    profile: str
    weight: float
    top_features: dict[str, float]
    small: bool = False


@dataclass(frozen=True, eq=False)
class ClusterModel:
    """A versioned, immutable fleet model: scaler + centroids with stable ids and names.

    ``centroids`` are in the transformed, *unscaled* space (k x d); distances
    are Euclidean after scaling by ``scale_mean``/``scale_std``.
    ``reseed_cause`` is set on a version produced by a re-seed: ``"drift"``
    (workers reported drift) or ``"refresh"`` (the periodic re-seed found a
    clearly better clustering of the recent sample).
    """

    version: int
    spec: FeatureSpec
    ids: tuple[str, ...]
    names: tuple[str, ...]
    centroids: np.ndarray
    weights: np.ndarray
    scale_mean: np.ndarray
    scale_std: np.ndarray
    reseed_cause: Literal["drift", "refresh"] | None = None
    profiles: tuple[str, ...] = field(default=())
    small: tuple[str, ...] = field(default=())

    @property
    def reseeded(self) -> bool:
        """Whether this version came from a re-seed (memberships are re-opened once)."""
        return self.reseed_cause is not None

    @property
    def k(self) -> int:
        """Number of clusters."""
        return len(self.ids)

    def scaled_centroids(self) -> np.ndarray:
        """Centroids in the scaled space."""
        return (self.centroids - self.scale_mean) / self.scale_std

    def distances(self, x: np.ndarray) -> np.ndarray:
        """Euclidean distances (n x k) of transformed vectors ``x`` (n x d) to every centroid."""
        z = (np.atleast_2d(x) - self.scale_mean) / self.scale_std
        c = self.scaled_centroids()
        d2 = (z * z).sum(axis=1)[:, None] - 2.0 * z @ c.T + (c * c).sum(axis=1)[None, :]
        return np.sqrt(np.maximum(d2, 0.0))

    def nearest(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Index of the nearest centroid and its distance for each row."""
        d = self.distances(x)
        idx = d.argmin(axis=1)
        return idx, d[np.arange(len(idx)), idx]

    def index_of(self, cluster_id: str) -> int:
        """Row of a cluster id (ValueError if retired)."""
        return self.ids.index(cluster_id)

    def clusters(self) -> list[ClusterInfo]:
        """Readable description of every cluster (id, stable name, current profile)."""
        z = (self.centroids - self.scale_mean) / self.scale_std
        out = []
        for j, cid in enumerate(self.ids):
            order = np.argsort(-np.abs(z[j]))[:3]
            out.append(ClusterInfo(
                id=cid, name=self.names[j], profile=self.profiles[j] if self.profiles else "",
                weight=float(self.weights[j]), small=cid in self.small,
                top_features={self.spec.names[i]: round(float(z[j, i]), 3) for i in order},
            ))
        return out

    def snapshot(self) -> dict[str, Any]:
        """JSON-serialisable form (store it in Redis / a compacted topic)."""
        return {
            "version": self.version,
            "spec": self.spec.snapshot(),
            "ids": list(self.ids),
            "names": list(self.names),
            "profiles": list(self.profiles),
            "centroids": self.centroids.tolist(),
            "weights": self.weights.tolist(),
            "scale_mean": self.scale_mean.tolist(),
            "scale_std": self.scale_std.tolist(),
            "reseed_cause": self.reseed_cause,
            "small": list(self.small),
        }

    @classmethod
    def restore(cls, state: Mapping[str, Any]) -> ClusterModel:
        """Inverse of :meth:`snapshot`."""
        return cls(
            version=int(state["version"]),
            spec=FeatureSpec.restore(state["spec"]),
            ids=tuple(state["ids"]),
            names=tuple(state["names"]),
            profiles=tuple(state["profiles"]),
            centroids=np.asarray(state["centroids"], dtype=float),
            weights=np.asarray(state["weights"], dtype=float),
            scale_mean=np.asarray(state["scale_mean"], dtype=float),
            scale_std=np.asarray(state["scale_std"], dtype=float),
            reseed_cause=state["reseed_cause"],
            small=tuple(state.get("small", ())),
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ClusterModel):
            return NotImplemented
        return self.snapshot() == other.snapshot()

    __hash__ = None  # type: ignore[assignment]


# -- sufficient statistics ----------------------------------------------------------------------------
class ClusterStats:
    """Mergeable sufficient statistics one worker sends to the model owner.

    Per cluster id: ``count``, ``sum`` and ``sumsq`` (d) of the transformed
    vectors whose nearest centroid it was; ``scaler`` over all vectors;
    ``sample`` of the vectors seen since the last flush for (re-)seeding - a
    bottom-k sample by a hash priority of (customer, day), so it is uniform,
    deterministic and mergeable (the union's bottom-k is the bottom-k of the
    parts); ``drifts`` detected;
    ``model_version`` the worker assigned with (informational: ids are stable
    across versions, so stats of an older version still merge correctly).
    """

    def __init__(self, spec: FeatureSpec, model_version: int = 0, sample_cap: int = 512) -> None:
        self.spec = spec
        self.model_version = model_version
        self.sample_cap = sample_cap
        d = len(spec.names)
        self.count: dict[str, float] = {}
        self.sum: dict[str, np.ndarray] = {}
        self.sumsq: dict[str, np.ndarray] = {}
        self.scaler = RunningScaler(d)
        self.sample = np.zeros((0, d))
        self.priority = np.zeros(0)
        self.drifts = 0
        self.n_updates = 0
        self.last_day = 0  # latest profile day (date ordinal) of the updates, 0 = unknown
        self.first_day = 0  # earliest profile day of the updates, 0 = unknown

    @classmethod
    def empty(cls, spec: FeatureSpec, model_version: int = 0, sample_cap: int = 512) -> ClusterStats:
        """Statistics with nothing accumulated."""
        return cls(spec, model_version, sample_cap)

    def add(self, cluster_id: str, x: np.ndarray) -> None:
        """Account vectors ``x`` (n x d) to a cluster."""
        x = np.atleast_2d(x)
        if cluster_id not in self.count:
            self.count[cluster_id] = 0.0
            self.sum[cluster_id] = np.zeros(x.shape[1])
            self.sumsq[cluster_id] = np.zeros(x.shape[1])
        self.count[cluster_id] += x.shape[0]
        self.sum[cluster_id] += x.sum(axis=0)
        self.sumsq[cluster_id] += (x * x).sum(axis=0)

    def add_sample(self, x: np.ndarray, priority: np.ndarray | None = None) -> None:
        """Offer vectors to the sample; the ``sample_cap`` lowest priorities stay.

        ``priority`` defaults to a hash of the vector's bytes; workers pass
        :func:`sample_priority` of (customer id, day).
        """
        x = np.atleast_2d(x)
        if priority is None:
            priority = np.array([sample_priority(row.tobytes()) for row in x])
        xs = np.vstack([self.sample, x])
        ps = np.concatenate([self.priority, priority])
        keep = np.argsort(ps, kind="stable")[: self.sample_cap]  # canonical order: by priority
        self.sample, self.priority = xs[keep], ps[keep]

    @property
    def empty_stats(self) -> bool:
        """Whether nothing was accumulated."""
        return self.scaler.n == 0 and not self.count and self.drifts == 0 and len(self.sample) == 0

    def snapshot(self) -> dict[str, Any]:
        """JSON-serialisable form (what a worker publishes)."""
        return {
            "spec": self.spec.snapshot(),
            "model_version": self.model_version,
            "sample_cap": self.sample_cap,
            "clusters": {
                c: [self.count[c], self.sum[c].tolist(), self.sumsq[c].tolist()] for c in sorted(self.count)
            },
            "scaler": self.scaler.snapshot(),
            "sample": self.sample.tolist(),
            "priority": self.priority.tolist(),
            "drifts": self.drifts,
            "n_updates": self.n_updates,
            "last_day": self.last_day,
            "first_day": self.first_day,
        }

    @classmethod
    def restore(cls, state: Mapping[str, Any]) -> ClusterStats:
        """Inverse of :meth:`snapshot`."""
        s = cls(FeatureSpec.restore(state["spec"]), int(state["model_version"]), int(state["sample_cap"]))
        for c, (n, sm, sq) in state["clusters"].items():
            s.count[c] = float(n)
            s.sum[c] = np.asarray(sm, dtype=float)
            s.sumsq[c] = np.asarray(sq, dtype=float)
        s.scaler = RunningScaler.restore(state["scaler"])
        s.sample = np.asarray(state["sample"], dtype=float).reshape(-1, len(s.spec.names))
        s.priority = np.asarray(state["priority"], dtype=float)
        s.drifts = int(state["drifts"])
        s.n_updates = int(state["n_updates"])
        s.last_day = int(state.get("last_day", 0))
        s.first_day = int(state.get("first_day", 0))
        return s


def sample_priority(key: str | bytes) -> float:
    """Deterministic pseudo-random priority in [0, 1) of a sample key (crc32).

    Examples:
        >>> sample_priority("C1|2026-01-05") == sample_priority(b"C1|2026-01-05")
        True
    """
    data = key.encode() if isinstance(key, str) else key
    return zlib.crc32(data) / 2**32


def merge_stats(stats: Iterable[ClusterStats]) -> ClusterStats:
    """Add several workers' statistics (associative; samples merged as bottom-k by priority).

    Examples:
        >>> spec = FeatureSpec(names=("a",), log1p=(), log=())
        >>> a, b = ClusterStats.empty(spec), ClusterStats.empty(spec)
        >>> a.add("B1", np.array([[1.0], [3.0]])); b.add("B1", np.array([[5.0]])); b.add("B2", np.array([[0.0]]))
        >>> m = merge_stats([a, b])
        >>> m.count, m.sum["B1"].tolist()
        ({'B1': 3.0, 'B2': 1.0}, [9.0])
    """
    xs = list(stats)
    if not xs:
        raise ValueError("merge_stats needs at least one ClusterStats")
    # the bottom-k of a union is the bottom-k of the parts' bottom-k: with the same cap, the merged
    # sample is the one a single worker would have drawn, whatever the number of workers
    out = ClusterStats(xs[0].spec, max(s.model_version for s in xs), max(s.sample_cap for s in xs))
    for s in xs:
        if s.spec != out.spec:
            raise ValueError("cannot merge statistics of different feature specs")
        for c in s.count:
            if c not in out.count:
                out.count[c] = 0.0
                out.sum[c] = np.zeros_like(s.sum[c])
                out.sumsq[c] = np.zeros_like(s.sumsq[c])
            out.count[c] += s.count[c]
            out.sum[c] = out.sum[c] + s.sum[c]
            out.sumsq[c] = out.sumsq[c] + s.sumsq[c]
        out.scaler = RunningScaler.merged([out.scaler, s.scaler])
        out.add_sample(s.sample, s.priority)
        out.drifts += s.drifts
        out.n_updates += s.n_updates
        out.last_day = max(out.last_day, s.last_day)
        if s.first_day:
            out.first_day = min(out.first_day or s.first_day, s.first_day)
    return out


# -- seeding --------------------------------------------------------------------------------------------
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


# -- the owner ------------------------------------------------------------------------------------------
class ModelStateOutdated(ValueError):
    """An owner state of an older format: the model must be re-seeded (ids and versions continue)."""

    def __init__(self, fmt: int, next_number: int, version: int) -> None:
        super().__init__(f"behaviour model state of format {fmt}, this version reads {STATE_FORMAT}: re-seeding "
                         f"(cluster ids continue at B{next_number}, versions after {version})")
        self.next_number = next_number
        self.version = version


class ModelEvent(BaseModel):
    """Output of the model owner: a new model version (and why), with the renames it brings."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["model"] = "model"
    version: int
    reason: Literal["seed", "update", "drift_reseed", "refresh_reseed"]
    drifts: int
    n_updates: int
    clusters: list[ClusterInfo]
    model: dict[str, Any]
    renamed: list[dict[str, str]] = []
    profile_day: str = ""  # the latest profile day the statistics carried (ISO date; "" = unknown)


class ModelOwner:
    """The single owner of the fleet model: merges statistics, emits new versions.

    How the model reaches the batch optimum and keeps it:

    * **seed late**: the workers' samples carry only *established* customers (a full week seen,
      weekdays and weekends, :data:`~processors.features.ESTABLISHED_DAYS`); the first model is
      fitted once ``min_seed_samples`` of them arrived. Seeding after a day or two fitted
      weekday-only features that nothing later repaired;
    * **refit** every ``refresh_every_days`` simulated days from the decayed sample (the most recent
      ``sample_cap`` vectors, a uniform bottom-k sample of every flush): scipy's k-means with
      k-means++ seeding, best of ``seed_n_init`` (:func:`seed_kmeanspp`); the refit replaces the
      centroids only if its inertia on the sample is lower by ``refresh_gain``, and its clusters
      keep their ids by minimum-cost matching (scipy's ``linear_sum_assignment``);
    * **guarded online updates**: between refits the merged statistics move the centroids by a
      mini-batch k-means step with forgetting (``halflife_updates``), but the step is kept only if it
      does not raise the inertia on the sample (``guard_online``): a step that would drag a
      centroid into a worse optimum is dropped (its weights still count).

    Args:
        k: number of behaviour clusters (fixed: see README "Behaviour segments" for why).
        spec: feature vector definition.
        halflife_updates: forgetting of the online step, in feature updates.
        min_seed_samples: sampled vectors needed before the first model.
        sample_cap: most recent sampled vectors kept for (re-)fitting.
        reseed_on_drift: re-seed when workers report a drift.
        refresh_every: refit every this many versions (0 = by days only).
        refresh_every_days: refit when the statistics' latest profile day passed the last refit's by
            this many days (0 = by versions only).
        refresh_gain: relative inertia improvement a refit must bring.
        refresh_until_updates, refresh_until_days: refits only in the model's youth (0 = always).
        refresh_min_agreement: a refit is adopted only if at least this share of the sample keeps its
            (matched) cluster (0 = no condition).
        seeder: ``"kmeans++"`` (scipy) or ``"river_kmeans"`` (river's online KMeans, kept for comparison).
        seed_n_init: seedings tried per (re-)fit (the lowest inertia wins).
        match_radius: a refitted centroid keeps its matched old id only within this fraction of the
            distance from the old centroid to its nearest other old centroid (0 = always).
        guard_online: keep an online step only if it does not raise the sample inertia.
        seed: RNG seed (the model is a deterministic function of the inputs).
        name_freeze_updates: until this many feature updates were applied names follow descriptions.
        rename_radius, small_share: see :class:`~processors.clustering.naming.SegmentNames`.
    """

    def __init__(
        self,
        k: int = 8,
        spec: FeatureSpec | None = None,
        *,
        halflife_updates: float = 5000.0,
        min_seed_samples: int = 256,
        sample_cap: int = 2048,
        reseed_on_drift: bool = False,
        refresh_every: int = 4,
        refresh_every_days: float = 0.0,
        refresh_gain: float = 0.05,
        refresh_until_updates: float | None = 0.0,
        refresh_min_agreement: float = 0.0,
        refresh_until_days: float = 0.0,
        seeder: Seeder = "kmeans++",
        seed_n_init: int = 5,
        match_radius: float = 0.0,
        guard_online: bool = False,
        seed: int = 0,
        name_freeze_updates: float | None = None,
        rename_radius: float = 0.5,
        small_share: float = 0.0,
    ) -> None:
        self.name_freeze_updates = 6 * halflife_updates if name_freeze_updates is None else name_freeze_updates
        self.total_updates = 0.0
        self.refresh_every = refresh_every
        self.refresh_every_days = refresh_every_days
        self.refresh_gain = refresh_gain
        self.refresh_until_updates = 3 * halflife_updates if refresh_until_updates is None else refresh_until_updates
        self.refresh_min_agreement = refresh_min_agreement
        self.refresh_until_days = refresh_until_days
        self.first_day = 0  # earliest / latest profile day (date ordinals) the statistics carried
        self.last_day = 0
        self.refit_day = 0  # profile day of the last (re-)fit
        self.seed_n_init = seed_n_init
        self.match_radius = match_radius
        self.guard_online = guard_online
        self.k = k
        self.spec = spec or FeatureSpec()
        self.halflife_updates = halflife_updates
        self.min_seed_samples = min_seed_samples
        self.sample_cap = sample_cap
        self.reseed_on_drift = reseed_on_drift
        self.seeder: Seeder = seeder
        self.seed = seed
        self.model: ClusterModel | None = None
        self.scaler = RunningScaler(len(self.spec.names))
        self.sample = np.zeros((0, len(self.spec.names)))
        self.next_number = 1
        self.first_version = 1
        self.naming = SegmentNames(rename_radius, small_share)
        self.renamed: list[dict[str, str]] = []

    def _scaling(self) -> tuple[np.ndarray, np.ndarray]:
        return self.scaler.mean, self.spec.effective_std(self.scaler.std)

    def _seed_centroids(self, z: np.ndarray) -> np.ndarray:
        seed = self.seed + (self.model.version if self.model else 0)
        if self.seeder == "river_kmeans":
            return seed_river_kmeans(z, self.k, seed=seed, n_init=self.seed_n_init)
        return seed_kmeanspp(z, self.k, seed=seed, n_init=self.seed_n_init)

    def _new_model(
        self,
        ids: list[str],
        names: list[str],
        centroids: np.ndarray,
        weights: np.ndarray,
        reseed_cause: Literal["drift", "refresh"] | None,
    ) -> ClusterModel:
        mean, std = self._scaling()
        z = (centroids - mean) / std
        profiles = [self.spec.describe(centroids[j], z[j]) for j in range(len(ids))]
        version = self.model.version + 1 if self.model else self.first_version
        frozen = self.total_updates > self.name_freeze_updates
        final, renamed = self.naming.update(ids, profiles, centroids, weights, std, frozen=frozen)
        self.renamed = renamed
        for r in renamed:
            log.info("behaviour segment %s renamed %r -> %r (%s)", r["id"], r["from"], r["to"], r["why"])
        small = tuple(cid for cid in ids if cid in self.naming.small)
        return ClusterModel(version, self.spec, tuple(ids), tuple(final), centroids, weights, mean, std,
                            reseed_cause, tuple(profiles), small)

    def _fresh_ids(self, n: int) -> list[str]:
        ids = [f"B{self.next_number + i}" for i in range(n)]
        self.next_number += n
        return ids

    def apply(self, stats: ClusterStats) -> ClusterModel | None:
        """Fold merged statistics into the model; returns the new version (None if nothing to do)."""
        self.renamed = []
        if stats.empty_stats:
            return None
        self.total_updates += stats.n_updates
        if stats.last_day:  # the model's age in profile days: a flush may carry several days of a backlog
            first = stats.first_day or stats.last_day
            self.first_day = min(self.first_day or first, first)
            self.last_day = max(self.last_day, stats.last_day)
        keep = 0.5 ** (stats.n_updates / self.halflife_updates) if self.halflife_updates > 0 else 1.0
        self.scaler.decay(keep)
        self.scaler = RunningScaler.merged([self.scaler, stats.scaler])
        self.sample = np.vstack([self.sample, stats.sample])[-self.sample_cap :]
        mean, std = self._scaling()
        if self.model is None:
            if len(self.sample) < max(self.min_seed_samples, self.k):
                return None
            z = (self.sample - mean) / std
            seeded = self._seed_centroids(z)
            centroids = seeded * std + mean
            weights = _counts(z, seeded)
            self.refit_day = self.last_day
            self.model = self._new_model(self._fresh_ids(self.k), [""] * self.k, centroids, weights, None)
            return self.model
        old = self.model
        z = (self.sample - mean) / std
        if stats.drifts > 0 and self.reseed_on_drift and len(self.sample) >= self.k:
            self.refit_day = self.last_day
            self.model = self._reseed(old, z, mean, std, "drift")
            return self.model
        centroids = old.centroids.copy()
        weights = old.weights * keep
        for j, cid in enumerate(old.ids):
            n = stats.count.get(cid, 0.0)
            if n > 0:
                centroids[j] = (weights[j] * centroids[j] + stats.sum[cid]) / (weights[j] + n)
                weights[j] += n
        if self.guard_online and len(z) >= self.k and _inertia(z, (centroids - mean) / std) > _inertia(
            z, (old.centroids - mean) / std
        ):
            centroids = old.centroids.copy()  # the step would worsen the fit: keep the centres, count the weights
        if self._refresh_due(old) and len(self.sample) >= self.k:
            self.refit_day = self.last_day
            candidate = self._seed_centroids(z)
            current = (centroids - mean) / std
            if _inertia(z, candidate) < (1.0 - self.refresh_gain) * _inertia(z, current) and (
                self.refresh_min_agreement <= 0 or _agreement(z, current, candidate) >= self.refresh_min_agreement
            ):
                self.model = self._reseed(old, z, mean, std, "refresh", candidate)
                return self.model
        self.model = self._new_model(list(old.ids), list(old.names), centroids, weights, None)
        return self.model

    def _refresh_due(self, old: ClusterModel) -> bool:
        if self.refresh_every_days > 0:
            if self.last_day - self.refit_day < self.refresh_every_days:
                return False
        elif not self.refresh_every or (old.version + 1) % self.refresh_every:
            return False
        if self.refresh_until_days > 0 and self.last_day - self.first_day > self.refresh_until_days:
            return False
        return self.refresh_until_updates <= 0 or self.total_updates <= self.refresh_until_updates

    def _reseed(
        self,
        old: ClusterModel,
        z: np.ndarray,
        mean: np.ndarray,
        std: np.ndarray,
        cause: Literal["drift", "refresh"],
        candidate: np.ndarray | None = None,
    ) -> ClusterModel:
        """New centroids from the sample, old identities kept by minimum-cost matching."""
        new_z = self._seed_centroids(z) if candidate is None else candidate
        old_z = (old.centroids - mean) / std
        match = match_identities(old_z, new_z)
        radius = _match_radii(old_z, self.match_radius)
        ids, names = [], []
        for j in range(len(new_z)):
            if j in match and float(np.linalg.norm(new_z[j] - old_z[match[j]])) <= radius[match[j]]:
                ids.append(old.ids[match[j]])
                names.append(old.names[match[j]])
            else:
                ids.append(self._fresh_ids(1)[0])
                names.append("")
        weights = _counts(z, new_z) * (float(old.weights.sum()) / max(len(z), 1))
        return self._new_model(ids, names, new_z * std + mean, weights, cause)

    def process(self, batch: Sequence[ClusterStats]) -> list[ModelEvent]:
        """Merge a batch of workers' statistics and apply them: at most one new version.

        Statistics of another feature spec (a worker of an older version during an upgrade) are dropped.
        """
        usable = [s for s in batch if s.spec == self.spec]
        if len(usable) < len(batch):
            log.warning("dropped %d behaviour statistics of another feature spec (a worker of another version?)",
                        len(batch) - len(usable))
        if not usable:
            return []
        merged = merge_stats(usable)
        before = self.model
        model = self.apply(merged)
        if model is None:
            return []
        reason: Literal["seed", "update", "drift_reseed", "refresh_reseed"] = (
            "seed"
            if before is None
            else "drift_reseed"
            if model.reseed_cause == "drift"
            else "refresh_reseed"
            if model.reseed_cause == "refresh"
            else "update"
        )
        return [ModelEvent(version=model.version, reason=reason, drifts=merged.drifts,
                           n_updates=merged.n_updates, clusters=model.clusters(), model=model.snapshot(),
                           renamed=list(self.renamed),
                           profile_day=date.fromordinal(self.last_day).isoformat() if self.last_day else "")]

    def snapshot(self) -> dict[str, Any]:
        """JSON-serialisable state (model + scaler + sample + id counter + names), format :data:`STATE_FORMAT`."""
        return {
            "format": STATE_FORMAT,
            "config": {"k": self.k, "spec": self.spec.snapshot(), "halflife_updates": self.halflife_updates,
                       "min_seed_samples": self.min_seed_samples, "sample_cap": self.sample_cap,
                       "reseed_on_drift": self.reseed_on_drift, "refresh_every": self.refresh_every,
                       "refresh_every_days": self.refresh_every_days,
                       "refresh_gain": self.refresh_gain, "refresh_until_updates": self.refresh_until_updates,
                       "refresh_min_agreement": self.refresh_min_agreement,
                       "refresh_until_days": self.refresh_until_days, "seeder": self.seeder,
                       "seed_n_init": self.seed_n_init, "match_radius": self.match_radius,
                       "guard_online": self.guard_online, "seed": self.seed,
                       "name_freeze_updates": self.name_freeze_updates},
            "model": self.model.snapshot() if self.model else None,
            "scaler": self.scaler.snapshot(),
            "sample": self.sample.tolist(),
            "next_number": self.next_number,
            "first_version": self.first_version,
            "total_updates": self.total_updates,
            "first_day": self.first_day,
            "last_day": self.last_day,
            "refit_day": self.refit_day,
            "naming": self.naming.snapshot(),
        }

    @classmethod
    def restore(cls, state: Mapping[str, Any]) -> ModelOwner:
        """Inverse of :meth:`snapshot`; an older format raises :class:`ModelStateOutdated` (re-seed)."""
        fmt = int(state.get("format", 1))
        if fmt != STATE_FORMAT:
            model = state.get("model")
            raise ModelStateOutdated(fmt, int(state.get("next_number", 1)), int(model["version"]) if model else 0)
        c = state["config"]
        o = cls(c["k"], FeatureSpec.restore(c["spec"]), halflife_updates=c["halflife_updates"],
                min_seed_samples=c["min_seed_samples"], sample_cap=c["sample_cap"],
                reseed_on_drift=c["reseed_on_drift"], refresh_every=c["refresh_every"],
                refresh_every_days=c["refresh_every_days"], refresh_gain=c["refresh_gain"],
                refresh_until_updates=c["refresh_until_updates"], refresh_min_agreement=c["refresh_min_agreement"],
                refresh_until_days=c["refresh_until_days"], seeder=c["seeder"], seed_n_init=c["seed_n_init"],
                match_radius=c["match_radius"], guard_online=c["guard_online"], seed=c["seed"],
                name_freeze_updates=c["name_freeze_updates"])
        o.model = ClusterModel.restore(state["model"]) if state["model"] else None
        o.scaler = RunningScaler.restore(state["scaler"])
        o.sample = np.asarray(state["sample"], dtype=float).reshape(-1, len(o.spec.names))
        o.next_number = int(state["next_number"])
        o.first_version = int(state["first_version"])
        o.total_updates = float(state["total_updates"])
        o.first_day = int(state["first_day"])
        o.last_day = int(state["last_day"])
        o.refit_day = int(state["refit_day"])
        o.naming = SegmentNames.restore(state["naming"])
        return o

    def continue_after(self, outdated: ModelStateOutdated) -> ModelOwner:
        """Make this fresh owner the successor of an outdated state: it re-seeds, ids and versions continue."""
        self.next_number = max(self.next_number, outdated.next_number)
        self.first_version = max(self.first_version, outdated.version + 1)
        return self

    @classmethod
    def successor(cls, outdated: ModelStateOutdated, **kwargs: Any) -> ModelOwner:
        """A fresh owner (``kwargs`` as for the constructor) succeeding an outdated state."""
        return cls(**kwargs).continue_after(outdated)
