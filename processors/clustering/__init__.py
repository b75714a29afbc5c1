"""Behaviour clusters: one versioned fleet model from mergeable statistics, stable identities.

* :mod:`processors.clustering.model` - :class:`ClusterModel` (one version of the fleet model),
  :class:`ClusterStats` and :func:`merge_stats` (the workers' mergeable statistics), :class:`FeatureSpec`.
* :mod:`processors.clustering.owner` - :class:`ModelOwner` (seeds late, refits while young, guarded
  online updates, names that stay put).
* :mod:`processors.clustering.fitting` - scipy k-means++ best of several, river's KMeans, identities kept
  by scipy's ``linear_sum_assignment``.
* :mod:`processors.clustering.naming` - segment names in units that stay put (:class:`SegmentNames`).
* :mod:`processors.clustering.assign` - :class:`BehaviourAssigner` (hysteresis, dwell, river PageHinkley drift).
* :mod:`processors.clustering.fleet` - :class:`LocalFleet`, the in-process reference wiring.
* :mod:`processors.clustering.metrics` - :func:`adjusted_rand_index`, :func:`normalized_mutual_info`, :func:`purity`.
* :mod:`processors.clustering.synthetic` - archetype-like daily profiles for tests/benchmarks.
"""

from processors.clustering.assign import BehaviourAssigner, BehaviourChange, DriftEvent
from processors.clustering.fitting import match_identities
from processors.clustering.fleet import LocalFleet, partition_of
from processors.clustering.metrics import adjusted_rand_index, normalized_mutual_info, purity
from processors.clustering.model import ClusterInfo, ClusterModel, ClusterStats, FeatureSpec, merge_stats
from processors.clustering.owner import ModelEvent, ModelOwner

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
