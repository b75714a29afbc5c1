"""Behaviour clusters: one versioned fleet model from mergeable statistics, stable identities.

* :mod:`processors.clustering.model` - :class:`ClusterModel`, :class:`ClusterStats`,
  :func:`merge_stats`, :class:`ModelOwner` (scipy k-means++ refits, identities kept by
  scipy's ``linear_sum_assignment``, guarded online updates).
* :mod:`processors.clustering.naming` - segment names in units that stay put (:class:`SegmentNames`).
* :mod:`processors.clustering.assign` - :class:`BehaviourAssigner` (hysteresis, dwell, river PageHinkley drift).
* :mod:`processors.clustering.fleet` - :class:`LocalFleet`, the in-process reference wiring.
* :mod:`processors.clustering.metrics` - :func:`adjusted_rand_index`, :func:`normalized_mutual_info`, :func:`purity`.
* :mod:`processors.clustering.synthetic` - archetype-like daily profiles for tests/benchmarks.
"""

from processors.clustering.assign import BehaviourAssigner, BehaviourChange, DriftEvent
from processors.clustering.fleet import LocalFleet, partition_of
from processors.clustering.metrics import adjusted_rand_index, normalized_mutual_info, purity
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
    "match_identities",
    "merge_stats",
    "normalized_mutual_info",
    "partition_of",
    "purity",
]
