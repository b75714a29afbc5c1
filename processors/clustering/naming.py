"""Segment names an analyst can read, in units, that stay put while the segment does.

A behaviour segment is named from its centroid in absolute units - "about 12 kWh a
day, evening peak 18–21 h, weekend-heavy" - not from z-scores against the fleet
(which made farms "low consumption" next to offices, and flipped when the fleet
moved). The z-scores stay available as detail (``ClusterInfo.top_features``).

:class:`SegmentNames` keeps each cluster id's name and the centroid it was given
at. A name changes only when the cluster's profile really moved: its centroid is
farther than ``rename_radius`` (a fraction of the distance to its nearest other
centroid, scaled space) from where it was named *and* its description in units
differs; or when the segment becomes too small (``small_share`` of the fleet's
weight; it is then "small segment (B7)", not named like the others) or grows back
(above twice that share). Every change is returned so the owner can announce it
on ``model.events``.

Examples:
    >>> wd = [0.02] * 18 + [0.15, 0.15, 0.14] + [0.02] * 3
    >>> we = [0.03] * 18 + [0.12, 0.12, 0.12] + [0.03] * 3
    >>> describe_units({"log10_daily_kwh": 1.08, "weekday_h": wd, "weekend_h": we,
    ...                 "weekday_weekend_ratio": 0.7, "export_share": 0.0})
    'about 12 kWh a day, evening peak 18–21 h, weekend-heavy'
    >>> describe_units({"log10_daily_kwh": 2.3, "weekday_h": [1 / 24] * 24, "weekend_h": [1 / 24] * 24,
    ...                 "weekday_weekend_ratio": 1.0, "export_share": 0.2})
    'about 200 kWh a day, flat round the clock, PV exporter'
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

PERIODS: tuple[tuple[int, str], ...] = ((6, "night"), (11, "morning"), (15, "midday"), (18, "afternoon"),
                                        (24, "evening"))
"""(hour the period ends, word) for the peak's centre hour."""


def about(kwh: float) -> str:
    """A daily amount rounded to what a name should say (1 significant digit below 10, else 2).

    Examples:
        >>> about(3.44), about(12.4), about(143.0), about(0.04)
        ('3', '12', '140', '0.04')
    """
    if kwh < 0.1:
        return f"{kwh:.2f}"
    if kwh < 1:
        return f"{kwh:.1f}"
    digits = 1 if kwh < 10 else 2
    return f"{round(kwh, digits - 1 - math.floor(math.log10(kwh))):.0f}"


def peak_window(shares: Sequence[float], width: int = 3) -> tuple[int, float]:
    """Start hour and share of the ``width``-hour window (around midnight too) with the most consumption."""
    s = np.asarray(shares, dtype=float)
    sums = np.array([s[(np.arange(width) + h) % 24].sum() for h in range(24)])
    h = int(sums.argmax())
    return h, float(sums[h])


def describe_units(c: Mapping[str, Any]) -> str:
    """A centroid in words and units: daily kWh, weekday peak, weekend behaviour, PV export.

    ``c`` holds ``log10_daily_kwh``, ``weekday_h`` and ``weekend_h`` (24 hourly shares each),
    ``weekday_weekend_ratio`` (weekday kWh per weekend-day kWh) and ``export_share``.
    """
    words = [f"about {about(10 ** float(c['log10_daily_kwh']))} kWh a day"]
    start, share = peak_window(c["weekday_h"])
    if share < 0.16:  # a 3-hour window holds 12.5 % of a flat day
        words.append("flat round the clock")
    else:
        centre = (start + 1.5) % 24
        period = next(w for end, w in PERIODS if centre < end)
        words.append(f"{period} peak {start}–{(start + 3) % 24 or 24} h")
    ratio = float(c["weekday_weekend_ratio"])
    if ratio >= 2.5:
        words.append("closed at weekends")
    elif ratio >= 1.4:
        words.append("quieter at weekends")
    elif ratio <= 0.75:
        words.append("weekend-heavy")
    if float(c.get("export_share", 0.0)) >= 0.05:
        words.append("PV exporter")
    return ", ".join(words)


class SegmentNames:
    """Stable names per cluster id (see the module docstring).

    Args:
        rename_radius: fraction of the distance to the nearest other centroid a centroid must move
            from where it was named before its name may follow its new description.
        small_share: a cluster holding less than this share of the total weight is "small"
            (it leaves that state above twice the share).
    """

    def __init__(self, rename_radius: float = 0.5, small_share: float = 0.01) -> None:
        self.rename_radius = rename_radius
        self.small_share = small_share
        self.names: dict[str, str] = {}
        self.anchors: dict[str, list[float]] = {}  # id -> unscaled centroid at naming
        self.small: set[str] = set()

    def update(
        self,
        ids: Sequence[str],
        descriptions: Sequence[str],
        centroids: np.ndarray,
        weights: np.ndarray,
        std: np.ndarray,
        frozen: bool = True,
    ) -> tuple[list[str], list[dict[str, str]]]:
        """Names for this model version and the renames it brings (``{"id", "from", "to", "why"}``).

        ``frozen=False`` (warm-up) lets every name follow its description without announcing it.
        """
        total = float(weights.sum()) or 1.0
        z = centroids / std
        d = np.sqrt(((z[:, None, :] - z[None, :, :]) ** 2).sum(-1))
        np.fill_diagonal(d, np.inf)
        nearest = d.min(axis=1) if len(ids) > 1 else np.full(len(ids), np.inf)
        renames: list[dict[str, str]] = []
        for j, cid in enumerate(ids):
            share = float(weights[j]) / total
            was_small = cid in self.small
            small = share < self.small_share or (was_small and share < 2 * self.small_share)
            label = f"small segment ({cid})" if small else descriptions[j]
            (self.small.add if small else self.small.discard)(cid)
            old = self.names.get(cid)
            if old is not None and frozen:
                if label == old or old == f"{label} ({cid})":
                    continue
                moved = float(np.linalg.norm((centroids[j] - np.asarray(self.anchors[cid])) / std))
                if small == was_small and moved <= self.rename_radius * float(nearest[j]):
                    continue  # the description wobbles, the segment did not move: keep the name
            taken = {n for c, n in self.names.items() if c != cid and c in ids}
            if label in taken:  # two segments may describe alike: the later one carries its id, for good
                label = f"{label} ({cid})"
            self.names[cid], self.anchors[cid] = label, centroids[j].tolist()
            if old is not None and frozen and label != old:
                renames.append({"id": cid, "from": old, "to": label,
                                "why": "size" if small != was_small else "profile moved"})
        for cid in set(self.names) - set(ids):  # retired clusters
            self.names.pop(cid, None)
            self.anchors.pop(cid, None)
            self.small.discard(cid)
        return [self.names[cid] for cid in ids], renames

    def snapshot(self) -> dict[str, Any]:
        """JSON-serialisable state."""
        return {"rename_radius": self.rename_radius, "small_share": self.small_share,
                "names": dict(self.names), "anchors": dict(self.anchors), "small": sorted(self.small)}

    @classmethod
    def restore(cls, state: Mapping[str, Any]) -> SegmentNames:
        """Inverse of :meth:`snapshot`."""
        s = cls(float(state["rename_radius"]), float(state["small_share"]))
        s.names = {str(k): str(v) for k, v in state["names"].items()}
        s.anchors = {str(k): [float(x) for x in v] for k, v in state["anchors"].items()}
        s.small = {str(c) for c in state["small"]}
        return s
