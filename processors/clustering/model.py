"""One versioned behaviour model for the whole fleet, built from mergeable statistics.

Design (the transport is the stream side's):

* Every partition worker (:class:`~processors.clustering.assign.BehaviourAssigner`)
  assigns its customers with the *current* :class:`ClusterModel` and
  accumulates :class:`ClusterStats`: per cluster id the count, sum and sum of
  squares of the customers' feature vectors that were nearest to it, the
  fleet scaler's count/sum/sum of squares, a small sample of recent vectors and
  the number of drifts it detected.
* A single model owner (:class:`~processors.clustering.owner.ModelOwner`, one partition of a model topic)
  merges the workers' stats (:func:`merge_stats` - addition, so order does
  not matter) and applies them (:meth:`~processors.clustering.owner.ModelOwner.apply`): a mini-batch
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
    >>> from processors.clustering.owner import ModelOwner
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
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

from processors.clustering.naming import describe_units
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
