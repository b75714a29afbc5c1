"""The customer attributes rules can use, and how each processor's output maps onto them.

Rules read flat dotted names. This module fixes that vocabulary in one place so
definitions can be validated at load time (``known_names=KNOWN_ATTRIBUTES``)
and so the stream side assembles attributes the same way everywhere: merge the
dicts below into the customer's attribute hash (Redis) and feed it to
:class:`~processors.rules.segments.RuleSegmentProcessor`.

Examples:
    >>> from processors.rules import compile_rule
    >>> rule = compile_rule('region == "North" and rfm.monetary_mean > 138', known_names=KNOWN_ATTRIBUTES)
    >>> sorted(rule.names)
    ['region', 'rfm.monetary_mean']
    >>> registry_attributes(region="North", tariff="prepaid", has_export=False)["tariff"]
    'prepaid'
"""

from __future__ import annotations

from typing import Any

from processors.clustering.assign import BehaviourChange
from processors.features import LOAD_SHAPE_FEATURES, CustomerFeatures
from processors.rfm.processor import RfmAssignment

RFM_ATTRIBUTES: tuple[str, ...] = (
    "rfm.n_purchases",
    "rfm.n_purchase_days",
    "rfm.frequency",
    "rfm.recency_days",
    "rfm.T_days",
    "rfm.days_since_last",
    "rfm.total_spend",
    "rfm.monetary_mean",
    "rfm.n_viewed",
    "rfm.n_processed",
    "rfm.r_score",
    "rfm.f_score",
    "rfm.m_score",
    "rfm.segment",
    "rfm.segment_name",
)
FEATURE_ATTRIBUTES: tuple[str, ...] = tuple(f"features.{n}" for n in LOAD_SHAPE_FEATURES)
BEHAVIOUR_ATTRIBUTES: tuple[str, ...] = ("behaviour.segment", "behaviour.segment_name", "behaviour.distance")
REGISTRY_ATTRIBUTES: tuple[str, ...] = ("region", "tariff", "has_export")
HEALTH_ATTRIBUTES: tuple[str, ...] = ("health.state",)
LATER_ATTRIBUTES: tuple[str, ...] = ("clv", "churn.probability")
"""Reserved for the CLV/churn models to come (missing until then: comparisons are false)."""

KNOWN_ATTRIBUTES: frozenset[str] = frozenset(
    RFM_ATTRIBUTES + FEATURE_ATTRIBUTES + BEHAVIOUR_ATTRIBUTES + REGISTRY_ATTRIBUTES + HEALTH_ATTRIBUTES
    + LATER_ATTRIBUTES
)


def rfm_attributes(a: RfmAssignment) -> dict[str, Any]:
    """Flat ``rfm.*`` attributes of an RFM output record."""
    s = a.summary
    return {
        "rfm.n_purchases": s.n_purchases,
        "rfm.n_purchase_days": s.n_purchase_days,
        "rfm.frequency": s.frequency,
        "rfm.recency_days": s.recency_days,
        "rfm.T_days": s.T_days,
        "rfm.days_since_last": s.days_since_last,
        "rfm.total_spend": s.total_spend,
        "rfm.monetary_mean": s.monetary_mean,
        "rfm.n_viewed": s.n_viewed,
        "rfm.n_processed": s.n_processed,
        "rfm.r_score": a.r_score,
        "rfm.f_score": a.f_score,
        "rfm.m_score": a.m_score,
        "rfm.segment": a.segment_id,
        "rfm.segment_name": a.segment_name,
    }


def feature_attributes(f: CustomerFeatures) -> dict[str, Any]:
    """Flat ``features.*`` attributes of a feature record (load-shape features only)."""
    return {f"features.{n}": f.values[n] for n in LOAD_SHAPE_FEATURES if n in f.values}


def behaviour_attributes(c: BehaviourChange) -> dict[str, Any]:
    """Flat ``behaviour.*`` attributes after a behaviour membership change."""
    return {"behaviour.segment": c.to_id, "behaviour.segment_name": c.to_name, "behaviour.distance": c.distance}


def registry_attributes(region: str, tariff: str, has_export: bool) -> dict[str, Any]:
    """Attributes from the meter registry (``MeterInfo``)."""
    return {"region": region, "tariff": tariff, "has_export": has_export}
