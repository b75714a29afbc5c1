"""Behaviour clusters: one versioned fleet model from mergeable statistics, stable identities.

* :mod:`processors.clustering.model` - :class:`ClusterModel`, :class:`ClusterStats`,
  :func:`merge_stats`, :class:`ModelOwner` (seeding with river, Hungarian identity matching).
* :mod:`processors.clustering.assign` - :class:`BehaviourAssigner` (hysteresis, ADWIN drift).
* :mod:`processors.clustering.fleet` - :class:`LocalFleet`, the in-process reference wiring.
* :mod:`processors.clustering.metrics` - :func:`adjusted_rand_index`.
* :mod:`processors.clustering.hungarian` - :func:`linear_sum_assignment`.
* :mod:`processors.clustering.synthetic` - archetype-like daily profiles for tests/benchmarks.
"""

from processors.clustering.assign import BehaviourAssigner, BehaviourChange, DriftEvent
from processors.clustering.fleet import LocalFleet, partition_of
from processors.clustering.hungarian import linear_sum_assignment
from processors.clustering.metrics import adjusted_rand_index
from processors.clustering.model import (
    ClusterInfo,
    ClusterModel,
    ClusterStats,
    FeatureSpec,
    ModelEvent,
    ModelOwner,
    match_identities,
    merge_stats,
)

__all__ = [
    "BehaviourAssigner",
    "BehaviourChange",
    "ClusterInfo",
    "ClusterModel",
    "ClusterStats",
    "DriftEvent",
    "FeatureSpec",
    "LocalFleet",
    "ModelEvent",
    "ModelOwner",
    "adjusted_rand_index",
    "linear_sum_assignment",
    "match_identities",
    "merge_stats",
    "partition_of",
]
