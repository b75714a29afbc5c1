"""The single owner of the fleet's behaviour model: merges the workers' statistics, emits new versions.

See :mod:`processors.clustering.model` for the design (mergeable statistics, one versioned model) and
:class:`ModelOwner` for how the model reaches the batch optimum and keeps it (seed late, refit while
young, guarded online steps, identities kept by minimum-cost matching, names that stay put).

Examples:
    >>> import numpy as np
    >>> from processors.clustering.model import ClusterStats, FeatureSpec
    >>> spec = FeatureSpec(names=("a", "b"), log1p=(), log=())
    >>> owner = ModelOwner(k=2, spec=spec, min_seed_samples=4, seeder="kmeans++")
    >>> stats = ClusterStats.empty(spec)
    >>> stats.add_sample(np.array([[0.0, 0.0], [0.1, 0.0], [5.0, 5.0], [5.1, 5.0]]))
    >>> stats.scaler.learn(np.array([[0.0, 0.0], [0.1, 0.0], [5.0, 5.0], [5.1, 5.0]]))
    >>> owner.apply(stats).version
    1
    >>> ModelOwner.restore(owner.snapshot()).model == owner.model
    True
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

from processors.clustering.fitting import (
    _agreement,
    _counts,
    _inertia,
    _match_radii,
    match_identities,
    seed_kmeanspp,
    seed_river_kmeans,
)
from processors.clustering.model import (
    STATE_FORMAT,
    ClusterInfo,
    ClusterModel,
    ClusterStats,
    FeatureSpec,
    Seeder,
    merge_stats,
)
from processors.clustering.naming import SegmentNames
from processors.features import RunningScaler

log = logging.getLogger(__name__)

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
            fit_new, fit_now = _inertia(z, candidate), _inertia(z, current)
            adopt = fit_new < (1.0 - self.refresh_gain) * fit_now and (
                self.refresh_min_agreement <= 0 or _agreement(z, current, candidate) >= self.refresh_min_agreement
            )
            # a refit moves many customers at once: say why it was or was not taken (a close call decides it)
            log.info("behaviour refit on profile day %s, %d sampled vectors: inertia %.4g against %.4g now "
                     "(gain %.1f %%, %.1f %% needed): %s", date.fromordinal(self.last_day) if self.last_day else "-",
                     len(z), fit_new, fit_now, 100 * (1 - fit_new / fit_now) if fit_now else 0.0,
                     100 * self.refresh_gain, "adopted" if adopt else "kept the current model")  # fmt: skip
            if adopt:
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
