"""In-process wiring of the fleet design: N partition workers + one model owner.

This is the reference the stream side mirrors (and what tests and benchmarks
drive): customers are partitioned by a stable hash of their id; each worker
owns a :class:`~processors.features.FeatureProcessor` and a
:class:`~processors.clustering.assign.BehaviourAssigner`; :meth:`LocalFleet.sync`
is the periodic exchange - every worker flushes its :class:`ClusterStats`,
the owner merges and applies them, and the new model version is broadcast to
every worker. In Faust: workers publish stats to a single-partition
``model.stats`` topic, the owner agent consumes it and writes the model to a
compacted ``model.events`` topic (and Redis), which every worker reads.

Examples:
    >>> from processors.clustering.synthetic import generate_profiles
    >>> from processors.clustering.metrics import adjusted_rand_index
    >>> profiles, labels = generate_profiles(n_customers=400, days=9, seed=2)
    >>> fleet = LocalFleet(n_workers=2, k=8, min_seed_samples=200)
    >>> for day in sorted({p.day for p in profiles}):
    ...     _ = fleet.process([p for p in profiles if p.day == day])
    ...     _ = fleet.sync()
    >>> fleet.version >= 2 and all(w.assigner.model is fleet.owner.model for w in fleet.workers)
    True
    >>> members = fleet.memberships()
    >>> adjusted_rand_index([labels[c] for c in members], list(members.values())) > 0.85
    True
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Any

from processors.clustering.assign import BehaviourAssigner, BehaviourChange, DriftEvent
from processors.clustering.model import FeatureSpec, Seeder
from processors.clustering.owner import ModelEvent, ModelOwner
from processors.features import DailyProfile, FeatureProcessor


def partition_of(customer_id: str, n: int) -> int:
    """Stable partition of a customer (crc32, unlike Python's salted ``hash``)."""
    return zlib.crc32(customer_id.encode()) % n


class FleetWorker:
    """One partition worker: features + assignment."""

    def __init__(
        self,
        spec: FeatureSpec,
        halflife_days: float,
        shift_threshold: float | None,
        assigner_kwargs: dict[str, Any],
    ) -> None:
        self.features = FeatureProcessor(halflife_days=halflife_days, shift_threshold=shift_threshold)
        self.assigner = BehaviourAssigner(spec, **assigner_kwargs)

    def process(self, batch: Sequence[DailyProfile]) -> list[BehaviourChange | DriftEvent]:
        """Fold the days, then assign the updated customers."""
        return self.assigner.process(self.features.process(batch))


class LocalFleet:
    """N workers and one owner in one process (tests, benchmarks, backfills).

    Args:
        n_workers: partition workers.
        k: clusters.
        spec: feature vector definition.
        halflife_days, shift_threshold: feature options (see :class:`FeatureProcessor`).
        seeder: owner's seeding clusterer.
        halflife_updates, min_seed_samples, sample_cap, reseed_on_drift, refresh_every, seed:
            passed to :class:`ModelOwner`.
        **assigner_kwargs: passed to every :class:`BehaviourAssigner` (margin, patience, drift...).
    """

    def __init__(
        self,
        n_workers: int = 2,
        k: int = 8,
        spec: FeatureSpec | None = None,
        *,
        halflife_days: float = 1.0,
        shift_threshold: float | None = 0.6,
        seeder: Seeder = "kmeans++",
        halflife_updates: float = 5000.0,
        min_seed_samples: int = 256,
        sample_cap: int = 2048,
        reseed_on_drift: bool = False,
        refresh_every: int = 4,
        seed: int = 0,
        **assigner_kwargs: Any,
    ) -> None:
        self.spec = spec or FeatureSpec()
        self.owner = ModelOwner(k, self.spec, halflife_updates=halflife_updates, min_seed_samples=min_seed_samples,
                                sample_cap=sample_cap, reseed_on_drift=reseed_on_drift,
                                refresh_every=refresh_every, seeder=seeder, seed=seed)
        self.workers = [FleetWorker(self.spec, halflife_days, shift_threshold, dict(assigner_kwargs)) for _ in range(n_workers)]

    @property
    def version(self) -> int:
        """Current model version (0 before seeding)."""
        return self.owner.model.version if self.owner.model else 0

    def process(self, batch: Sequence[DailyProfile]) -> list[BehaviourChange | DriftEvent]:
        """Route a batch to the workers by customer partition; concatenated outputs."""
        parts: list[list[DailyProfile]] = [[] for _ in self.workers]
        for p in batch:
            parts[partition_of(p.customer_id, len(self.workers))].append(p)
        out: list[BehaviourChange | DriftEvent] = []
        for w, part in zip(self.workers, parts, strict=True):
            out.extend(w.process(part))
        return out

    def sync(self) -> list[ModelEvent]:
        """One stats -> owner -> broadcast round."""
        events = self.owner.process([w.assigner.flush_stats() for w in self.workers])
        for w in self.workers:
            w.assigner.set_model(self.owner.model)
        return events

    def memberships(self) -> dict[str, str]:
        """Current cluster id of every assigned customer, over all workers."""
        out: dict[str, str] = {}
        for w in self.workers:
            out.update({c: m.cluster for c, m in w.assigner.members.items()})
        return out
