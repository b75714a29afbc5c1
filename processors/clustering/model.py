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

import math
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict
from river import cluster as river_cluster

from processors.clustering.hungarian import linear_sum_assignment
from processors.features import LOAD_SHAPE_FEATURES, RunningScaler

Seeder = Literal["river_kmeans", "kmeans++"]


@dataclass(frozen=True)
class FeatureSpec:
    """Which features form the clustering vector, and how each is transformed.

    ``log1p`` features are amounts (kWh, money, counts), ``log`` features are
    ratios (clipped to [1/20, 20] first); the rest pass through.

    The default leaves out ``variability``: a day-to-day coefficient of
    variation jumps exactly when a customer's behaviour shifts (the shift
    itself is variance), which in our EV-adoption test kept adopters away from
    the EV segment; it stays available to rules and reports.
    """

    names: tuple[str, ...] = tuple(n for n in LOAD_SHAPE_FEATURES if n != "variability")
    log1p: tuple[str, ...] = ("mean_daily_kwh", "rfm.monetary_mean", "rfm.frequency", "rfm.days_since_last")
    log: tuple[str, ...] = ("weekday_weekend_ratio",)

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

    def snapshot(self) -> dict[str, list[str]]:
        """JSON-serialisable form."""
        return {"names": list(self.names), "log1p": list(self.log1p), "log": list(self.log)}

    @classmethod
    def restore(cls, state: Mapping[str, Sequence[str]]) -> FeatureSpec:
        """Inverse of :meth:`snapshot`."""
        return cls(tuple(state["names"]), tuple(state["log1p"]), tuple(state["log"]))


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
                weight=float(self.weights[j]),
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
    return out


# -- seeding --------------------------------------------------------------------------------------------
def _inertia(z: np.ndarray, c: np.ndarray) -> float:
    d2 = (z * z).sum(1)[:, None] - 2 * z @ c.T + (c * c).sum(1)[None, :]
    return float(np.maximum(d2, 0).min(axis=1).sum())


def _lloyd(z: np.ndarray, c: np.ndarray, iters: int = 30) -> np.ndarray:
    for _ in range(iters):
        d2 = (z * z).sum(1)[:, None] - 2 * z @ c.T + (c * c).sum(1)[None, :]
        a = d2.argmin(axis=1)
        new = np.array([z[a == j].mean(axis=0) if np.any(a == j) else c[j] for j in range(len(c))])
        if np.allclose(new, c):
            break
        c = new
    return c


def _kmeanspp_init(z: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ initial centres: each next centre drawn with probability ~ squared distance."""
    c = [z[rng.integers(len(z))]]
    d = ((z - c[0]) ** 2).sum(axis=1)
    for _ in range(k - 1):
        p = d / d.sum() if d.sum() > 0 else None
        c.append(z[rng.choice(len(z), p=p)])
        d = np.minimum(d, ((z - c[-1]) ** 2).sum(axis=1))
    return np.asarray(c)


def seed_kmeanspp(z: np.ndarray, k: int, seed: int = 0, n_init: int = 5) -> np.ndarray:
    """Best (lowest inertia) of ``n_init`` k-means++ seedings refined by Lloyd, on scaled ``z``."""
    rng = np.random.default_rng(seed)
    best: tuple[float, np.ndarray] | None = None
    for _ in range(n_init):
        cc = _lloyd(z, _kmeanspp_init(z, k, rng))
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
    """Map new centroid rows to old centroid rows by minimum total distance (Hungarian).

    Examples:
        >>> old = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
        >>> match_identities(old, old[[2, 0, 1]] + 0.1)
        {0: 2, 1: 0, 2: 1}
    """
    cost = np.sqrt(((new[:, None, :] - old[None, :, :]) ** 2).sum(-1))
    return dict(linear_sum_assignment(cost))


# -- the owner ------------------------------------------------------------------------------------------
class ModelEvent(BaseModel):
    """Output of the model owner: a new model version (and why)."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["model"] = "model"
    version: int
    reason: Literal["seed", "update", "drift_reseed", "refresh_reseed"]
    drifts: int
    n_updates: int
    clusters: list[ClusterInfo]
    model: dict[str, Any]


class ModelOwner:
    """The single owner of the fleet model: merges statistics, emits new versions.

    Args:
        k: number of behaviour clusters.
        spec: feature vector definition.
        halflife_updates: forgetting, as a half-life counted in feature updates: an
            apply of statistics covering ``n`` updates keeps ``0.5 ** (n / halflife)``
            of the existing centroid and scaler weight. Counting updates rather than
            applies makes forgetting independent of how often workers flush; set it
            to about half the fleet's daily profile updates (half the customers).
        min_seed_samples: sampled vectors needed before the first model.
        sample_cap: most recent sampled vectors kept (FIFO over flushes) for
            (re-)seeding; size it to one or two flushes' samples so seeds see
            the current population, not stale vectors.
        reseed_on_drift: re-seed when workers report a drift.
        refresh_every: every this many versions, re-seed from the recent sample and
            adopt the result if its inertia is lower by ``refresh_gain`` (escapes
            the local minima incremental k-means can sit in; 0 = never).
        refresh_gain: relative inertia improvement a refresh must bring.
        refresh_until_updates: refreshes run only while at most this many feature
            updates were applied (the model's youth; 0 = no age limit; None = three
            half-lives). Later, a refresh found on a sample of a few thousand vectors
            mostly re-draws boundaries and moves customers without a behaviour change.
        refresh_until_days: refreshes run only while the statistics' latest profile day is at most
            this many days after the first one (the youth in simulated time, which does not depend on
            the fleet size; 0 = no limit). Early clusters are fitted on immature features (no weekend
            seen yet), so refreshes are needed then; later ones only move customers.
        refresh_min_agreement: a refresh is adopted only if at least this share of the
            sample keeps its (matched) cluster (0 = no condition).
        seeder: ``"kmeans++"`` or ``"river_kmeans"``.
        seed_n_init: seedings tried per (re-)seed (the lowest inertia wins).
        match_radius: a re-seeded centroid keeps its matched old id only if it lies
            within this fraction of the distance from the old centroid to the nearest
            other old centroid (scaled space); otherwise the old id retires and the
            cluster gets a fresh id (0 = every matched pair keeps its id).
        seed: RNG seed (the model is a deterministic function of the inputs).
        name_freeze_updates: until this many feature updates were applied, a cluster's
            name follows its profile (warm-up: early clusters are fitted on a day or
            two of data and their first description is often wrong); from then on
            names are frozen and only ``profile`` keeps describing the cluster. A
            cluster born later is named from its profile at birth. Default: six
            half-lives (about three days of profiles with the advised half-life).
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
        refresh_gain: float = 0.05,
        refresh_until_updates: float | None = 0.0,
        refresh_min_agreement: float = 0.0,
        refresh_until_days: float = 0.0,
        seeder: Seeder = "river_kmeans",
        seed_n_init: int = 5,
        match_radius: float = 0.0,
        seed: int = 0,
        name_freeze_updates: float | None = None,
    ) -> None:
        self.name_freeze_updates = 6 * halflife_updates if name_freeze_updates is None else name_freeze_updates
        self.total_updates = 0.0
        self.refresh_every = refresh_every
        self.refresh_gain = refresh_gain
        self.refresh_until_updates = 3 * halflife_updates if refresh_until_updates is None else refresh_until_updates
        self.refresh_min_agreement = refresh_min_agreement
        self.refresh_until_days = refresh_until_days
        self.first_day = 0  # earliest / latest profile day (date ordinals) the statistics carried
        self.last_day = 0
        self.seed_n_init = seed_n_init
        self.match_radius = match_radius
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
        mean, std = self.scaler.mean, self.scaler.std
        z = (centroids - mean) / std
        profiles = [describe(z[j], self.spec.names) for j in range(len(ids))]
        version = self.model.version + 1 if self.model else 1
        if self.total_updates <= self.name_freeze_updates:
            names = [""] * len(names)
        names = [n or p for n, p in zip(names, profiles, strict=True)]
        seen: dict[str, int] = {}
        for j, n in enumerate(names):  # names must be unique: suffix the later duplicates with the id
            if n in seen and not n.endswith(f"({ids[j]})"):
                names[j] = f"{n} ({ids[j]})"
            seen[names[j]] = j
        return ClusterModel(version, self.spec, tuple(ids), tuple(names), centroids, weights, mean, std,
                            reseed_cause, tuple(profiles))

    def _fresh_ids(self, n: int) -> list[str]:
        ids = [f"B{self.next_number + i}" for i in range(n)]
        self.next_number += n
        return ids

    def apply(self, stats: ClusterStats) -> ClusterModel | None:
        """Fold merged statistics into the model; returns the new version (None if nothing to do)."""
        if stats.empty_stats:
            return None
        self.total_updates += stats.n_updates
        if stats.last_day:
            self.first_day = min(self.first_day or stats.last_day, stats.last_day)
            self.last_day = max(self.last_day, stats.last_day)
        keep = 0.5 ** (stats.n_updates / self.halflife_updates) if self.halflife_updates > 0 else 1.0
        self.scaler.decay(keep)
        self.scaler = RunningScaler.merged([self.scaler, stats.scaler])
        self.sample = np.vstack([self.sample, stats.sample])[-self.sample_cap :]
        mean, std = self.scaler.mean, self.scaler.std
        if self.model is None:
            if len(self.sample) < max(self.min_seed_samples, self.k):
                return None
            z = (self.sample - mean) / std
            centroids = self._seed_centroids(z) * std + mean
            weights = np.full(self.k, len(self.sample) / self.k)
            self.model = self._new_model(self._fresh_ids(self.k), [""] * self.k, centroids, weights, None)
            return self.model
        old = self.model
        z = (self.sample - mean) / std
        if stats.drifts > 0 and self.reseed_on_drift and len(self.sample) >= self.k:
            self.model = self._reseed(old, z, mean, std, "drift")
            return self.model
        centroids = old.centroids.copy()
        weights = old.weights * keep
        for j, cid in enumerate(old.ids):
            n = stats.count.get(cid, 0.0)
            if n > 0:
                centroids[j] = (weights[j] * centroids[j] + stats.sum[cid]) / (weights[j] + n)
                weights[j] += n
        if self._refresh_due(old) and len(self.sample) >= self.k:
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
        if not self.refresh_every or (old.version + 1) % self.refresh_every:
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
        """New centroids from the sample, old identities kept by Hungarian matching."""
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
        weights = np.full(len(new_z), len(self.sample) / len(new_z))
        return self._new_model(ids, names, new_z * std + mean, weights, cause)

    def process(self, batch: Sequence[ClusterStats]) -> list[ModelEvent]:
        """Merge a batch of workers' statistics and apply them: at most one new version."""
        if not batch:
            return []
        merged = merge_stats(batch)
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
                           n_updates=merged.n_updates, clusters=model.clusters(), model=model.snapshot())]

    def snapshot(self) -> dict[str, Any]:
        """JSON-serialisable state (model + scaler + sample + id counter)."""
        return {
            "config": {"k": self.k, "spec": self.spec.snapshot(), "halflife_updates": self.halflife_updates,
                       "min_seed_samples": self.min_seed_samples, "sample_cap": self.sample_cap,
                       "reseed_on_drift": self.reseed_on_drift, "refresh_every": self.refresh_every,
                       "refresh_gain": self.refresh_gain, "refresh_until_updates": self.refresh_until_updates,
                       "refresh_min_agreement": self.refresh_min_agreement,
                       "refresh_until_days": self.refresh_until_days, "seeder": self.seeder,
                       "seed_n_init": self.seed_n_init, "match_radius": self.match_radius, "seed": self.seed,
                       "name_freeze_updates": self.name_freeze_updates},
            "model": self.model.snapshot() if self.model else None,
            "scaler": self.scaler.snapshot(),
            "sample": self.sample.tolist(),
            "next_number": self.next_number,
            "total_updates": self.total_updates,
            "first_day": self.first_day,
            "last_day": self.last_day,
        }

    @classmethod
    def restore(cls, state: Mapping[str, Any]) -> ModelOwner:
        """Inverse of :meth:`snapshot`."""
        c = state["config"]
        o = cls(c["k"], FeatureSpec.restore(c["spec"]), halflife_updates=c["halflife_updates"], min_seed_samples=c["min_seed_samples"],
                sample_cap=c["sample_cap"], reseed_on_drift=c["reseed_on_drift"],
                refresh_every=c["refresh_every"], refresh_gain=c["refresh_gain"],
                refresh_until_updates=c.get("refresh_until_updates", 0.0),
                refresh_min_agreement=c.get("refresh_min_agreement", 0.0),
                refresh_until_days=c.get("refresh_until_days", 0.0), seeder=c["seeder"],
                seed_n_init=c.get("seed_n_init", 5), match_radius=c.get("match_radius", 0.0),
                seed=c["seed"], name_freeze_updates=c["name_freeze_updates"])
        o.model = ClusterModel.restore(state["model"]) if state["model"] else None
        o.scaler = RunningScaler.restore(state["scaler"])
        o.sample = np.asarray(state["sample"], dtype=float).reshape(-1, len(o.spec.names))
        o.next_number = int(state["next_number"])
        o.total_updates = float(state["total_updates"])
        o.first_day = int(state.get("first_day", 0))
        o.last_day = int(state.get("last_day", 0))
        return o
