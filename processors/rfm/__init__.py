"""RFM: exact per-customer state, population-quantile scores, named segments.

* :mod:`processors.rfm.state` — the record, the pure idempotent update, the batch reference.
* :mod:`processors.rfm.sketch` — mergeable, signed population sketches (ddsketch mapping).
* :mod:`processors.rfm.segment_map` — (R, F) → named segment, loaded from YAML.
* :mod:`processors.rfm.processor` — :class:`RfmProcessor`, the stateful processor.
"""

from processors.rfm.processor import RfmAssignment, RfmProcessor, RfmSketches
from processors.rfm.segment_map import RfmSegmentDef, RfmSegmentMap
from processors.rfm.sketch import PopulationSketch, score_from_fraction
from processors.rfm.state import (
    CustomerRfm,
    RfmEvent,
    RfmRecord,
    RfmSummary,
    apply_event,
    recompute,
)

__all__ = [
    "CustomerRfm",
    "PopulationSketch",
    "RfmAssignment",
    "RfmEvent",
    "RfmProcessor",
    "RfmRecord",
    "RfmSegmentDef",
    "RfmSegmentMap",
    "RfmSketches",
    "RfmSummary",
    "apply_event",
    "recompute",
    "score_from_fraction",
]
