"""The RFM segment map — (R score, F score) → named segment — as replaceable data.

The default map (``processors/data/rfm_segments.yaml``) is the usual one from
``/work/shared/README.md``; an operator can point :meth:`RfmSegmentMap.load`
at another file. A map must cover each of the 25 (R, F) cells exactly once —
a gap would leave customers without a segment, an overlap would make the
segment depend on file order — and the error names the offending cells.

Examples:
    >>> m = RfmSegmentMap.default()
    >>> m.segment(5, 5).name, m.segment(1, 1).name, m.segment(2, 1).name
    ('Champions', 'Lost', 'Hibernating')
    >>> m.segment(3, 3).id
    'need_attention'
    >>> RfmSegmentMap.from_dict({"segments": [{"id": "all", "name": "All", "r": [1, 2, 3, 4, 5],
    ...                                         "f": [1, 2, 3, 4]}]})
    Traceback (most recent call last):
    ...
    ValueError: RFM segment map does not cover (R, F) cells: (1,5), (2,5), (3,5), (4,5), (5,5)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field

DEFAULT_MAP_PATH = Path(__file__).resolve().parent.parent / "data" / "rfm_segments.yaml"

EMBEDDED_DEFAULT_MAP: dict[str, Any] = {
    "segments": [
        {"id": "champions", "name": "Champions", "r": [5], "f": [4, 5]},
        {"id": "loyal", "name": "Loyal", "r": [3, 4], "f": [4, 5]},
        {"id": "potential_loyalist", "name": "Potential Loyalist", "r": [4, 5], "f": [2, 3]},
        {"id": "new_customers", "name": "New Customers", "r": [5], "f": [1]},
        {"id": "promising", "name": "Promising", "r": [4], "f": [1]},
        {"id": "need_attention", "name": "Need Attention", "r": [3], "f": [3]},
        {"id": "about_to_sleep", "name": "About To Sleep", "r": [3], "f": [1, 2]},
        {"id": "at_risk", "name": "At Risk", "r": [1, 2], "f": [3, 4]},
        {"id": "cant_lose_them", "name": "Can't Lose Them", "r": [1, 2], "f": [5]},
        {"id": "hibernating", "name": "Hibernating", "r": [2], "f": [1, 2]},
        {"id": "lost", "name": "Lost", "r": [1], "f": [1, 2]},
    ]
}
"""Copy of the shipped YAML for installs that do not carry ``processors/data`` (a test keeps them equal)."""


class RfmSegmentDef(BaseModel):
    """One named segment and the (R, F) cells it covers."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9_]+$")
    name: str = Field(min_length=1, max_length=64)
    r: list[int] = Field(min_length=1)
    f: list[int] = Field(min_length=1)
    description: str = ""


class RfmSegmentMap:
    """A validated lookup table from (R, F) to :class:`RfmSegmentDef`."""

    def __init__(self, segments: list[RfmSegmentDef]) -> None:
        cells: dict[tuple[int, int], RfmSegmentDef] = {}
        overlaps: list[str] = []
        bad: list[str] = []
        for seg in segments:
            for r in seg.r:
                for f in seg.f:
                    if not (1 <= r <= 5 and 1 <= f <= 5):
                        bad.append(f"{seg.id}:({r},{f})")
                        continue
                    if (r, f) in cells:
                        overlaps.append(f"({r},{f}) in {cells[(r, f)].id} and {seg.id}")
                    cells[(r, f)] = seg
        if bad:
            raise ValueError("RFM segment map has scores outside 1..5: " + ", ".join(bad))
        if overlaps:
            raise ValueError("RFM segment map covers cells twice: " + "; ".join(overlaps))
        missing = [(r, f) for r in range(1, 6) for f in range(1, 6) if (r, f) not in cells]
        if missing:
            raise ValueError(
                "RFM segment map does not cover (R, F) cells: " + ", ".join(f"({r},{f})" for r, f in missing)
            )
        ids = [s.id for s in segments]
        if len(set(ids)) != len(ids):
            raise ValueError("RFM segment map has duplicate segment ids")
        self.segments = list(segments)
        self._cells = cells

    def segment(self, r: int, f: int) -> RfmSegmentDef:
        """The segment of a customer with scores R = ``r`` and F = ``f``."""
        return self._cells[(r, f)]

    def by_id(self, segment_id: str) -> RfmSegmentDef:
        """Look a segment up by id."""
        for s in self.segments:
            if s.id == segment_id:
                return s
        raise KeyError(segment_id)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RfmSegmentMap:
        """Build from the parsed YAML structure ``{"segments": [...]}``."""
        if not isinstance(data, dict) or not isinstance(data.get("segments"), list):
            raise ValueError("RFM segment map must be a mapping with a 'segments' list")
        return cls([RfmSegmentDef.model_validate(s) for s in data["segments"]])

    @classmethod
    def load(cls, path: str | Path) -> RfmSegmentMap:
        """Load and validate a map file."""
        with open(path, encoding="utf-8") as fh:
            return cls.from_dict(yaml.safe_load(fh))

    @classmethod
    def default(cls) -> RfmSegmentMap:
        """The shipped map (``processors/data/rfm_segments.yaml``; embedded copy if not installed)."""
        if DEFAULT_MAP_PATH.exists():
            return cls.load(DEFAULT_MAP_PATH)
        return cls.from_dict(EMBEDDED_DEFAULT_MAP)

    def to_dict(self) -> dict[str, Any]:
        """JSON/YAML-serialisable form (round-trips through :meth:`from_dict`)."""
        return {"segments": [s.model_dump() for s in self.segments]}
