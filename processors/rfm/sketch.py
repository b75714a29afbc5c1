"""Mergeable population sketches for quantile-based RFM scores.

Scores are quantiles over the *current* population: when a customer's
monetary mean moves from 20 to 25, the population must lose a 20 and gain a
25. ``ddsketch.DDSketch`` only accepts positive weights, so it cannot forget a
customer's previous value. :class:`PopulationSketch` therefore keeps the same
kind of bucket counts DDSketch keeps — keyed by ddsketch's
``LogarithmicMapping`` (relative accuracy guarantee) for frequency and money —
but as signed integer counts, so values can be removed. Merging is adding
counts, which is associative and commutative: workers that each own a set of
partitions publish their sketch, every worker sums the same sketches and so
computes identical scores.

Recency needs *absolute* resolution (one hour is one hour whether the last
purchase was yesterday or a year ago), so last-purchase times use fixed-width
buckets (:class:`LinearBuckets`), still signed and mergeable.

Examples:
    >>> a, b = PopulationSketch.log(0.01), PopulationSketch.log(0.01)
    >>> for v in (1.0, 2.0, 3.0): a.add(v)
    >>> for v in (4.0, 5.0): b.add(v)
    >>> both = PopulationSketch.merged([a, b])
    >>> both.n, round(both.fraction_below(4.0), 2)
    (5, 0.6)
    >>> both.remove(1.0); both.n
    4
    >>> PopulationSketch.restore(both.snapshot()) == both
    True

References:
    Masson, Rim & Lee (2019), "DDSketch: A Fast and Fully-Mergeable Quantile
    Sketch with Relative-Error Guarantees", PVLDB 12(12).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np
from ddsketch.mapping import LogarithmicMapping

ZERO_KEY = -(2**40)
"""Bucket of values ≤ 0 (e.g. frequency 0), below every logarithmic key."""


class LogBuckets:
    """Relative-accuracy buckets from ddsketch's ``LogarithmicMapping``."""

    kind = "log"

    def __init__(self, relative_accuracy: float = 0.01) -> None:
        self.param = relative_accuracy
        self._mapping = LogarithmicMapping(relative_accuracy)

    def key(self, value: float) -> int:
        """Bucket key of ``value`` (monotone non-decreasing in value)."""
        if value <= 0.0:
            return ZERO_KEY
        return int(self._mapping.key(value))


class LinearBuckets:
    """Fixed-width buckets: absolute resolution ``width`` (e.g. 3600 s)."""

    kind = "linear"

    def __init__(self, width: float = 3600.0) -> None:
        self.param = width

    def key(self, value: float) -> int:
        """Bucket key of ``value`` (monotone non-decreasing in value)."""
        return math.floor(value / self.param)


Buckets = LogBuckets | LinearBuckets


class PopulationSketch:
    """Signed bucket counts of one value per customer; mergeable, supports removal.

    ``fraction_below(v)`` is the share of the population in buckets strictly
    below ``v``'s bucket: values within one bucket (relative accuracy, or one
    hour) count as ties and get the same score.
    """

    def __init__(self, buckets: Buckets) -> None:
        self.buckets = buckets
        self.counts: dict[int, int] = {}
        self.n = 0
        self._cache: tuple[np.ndarray, np.ndarray] | None = None

    @classmethod
    def log(cls, relative_accuracy: float = 0.01) -> PopulationSketch:
        """A sketch with ddsketch logarithmic buckets."""
        return cls(LogBuckets(relative_accuracy))

    @classmethod
    def linear(cls, width: float) -> PopulationSketch:
        """A sketch with fixed-width buckets."""
        return cls(LinearBuckets(width))

    def key(self, value: float) -> int:
        """Bucket key of a value under this sketch's mapping."""
        return self.buckets.key(value)

    def add_key(self, key: int, weight: int = 1) -> None:
        """Add ``weight`` (may be negative) to a bucket."""
        c = self.counts.get(key, 0) + weight
        if c:
            self.counts[key] = c
        else:
            self.counts.pop(key, None)
        self.n += weight
        self._cache = None

    def add(self, value: float) -> None:
        """Add one customer's value."""
        self.add_key(self.key(value), 1)

    def remove(self, value: float) -> None:
        """Remove one customer's (previous) value."""
        self.add_key(self.key(value), -1)

    def _cumulative(self) -> tuple[np.ndarray, np.ndarray]:
        if self._cache is None:
            keys = np.array(sorted(self.counts), dtype=np.int64)
            counts = np.array([self.counts[int(k)] for k in keys], dtype=np.int64)
            below = np.concatenate(([0], np.cumsum(counts)[:-1])) if len(keys) else np.zeros(0, np.int64)
            self._cache = (keys, below)
        return self._cache

    def count_below_keys(self, keys: np.ndarray) -> np.ndarray:
        """Population count in buckets strictly below each key (vectorised)."""
        sorted_keys, below = self._cumulative()
        if len(sorted_keys) == 0:
            return np.zeros(len(keys), dtype=np.int64)
        idx = np.searchsorted(sorted_keys, keys, side="left")
        total_before = np.concatenate((below, [self.n]))
        return total_before[idx]

    def fraction_below(self, value: float) -> float:
        """Share of the population strictly below ``value``'s bucket."""
        if self.n <= 0:
            return 0.0
        return float(self.count_below_keys(np.array([self.key(value)]))[0]) / self.n

    @classmethod
    def merged(cls, sketches: Iterable[PopulationSketch]) -> PopulationSketch:
        """Sum of sketches with the same bucket mapping (order does not matter)."""
        items = list(sketches)
        if not items:
            raise ValueError("merged() needs at least one sketch")
        first = items[0]
        out = cls(first.buckets)
        for s in items:
            if (s.buckets.kind, s.buckets.param) != (first.buckets.kind, first.buckets.param):
                raise ValueError("cannot merge sketches with different bucket mappings")
            for k, c in s.counts.items():
                out.add_key(k, c)
        return out

    def snapshot(self) -> dict[str, Any]:
        """JSON-serialisable state (bucket counts as sorted [key, count] pairs)."""
        return {
            "kind": self.buckets.kind,
            "param": self.buckets.param,
            "counts": [[k, self.counts[k]] for k in sorted(self.counts)],
        }

    @classmethod
    def restore(cls, state: dict[str, Any]) -> PopulationSketch:
        """Inverse of :meth:`snapshot`."""
        buckets: Buckets = (
            LogBuckets(state["param"]) if state["kind"] == "log" else LinearBuckets(state["param"])
        )
        out = cls(buckets)
        for k, c in state["counts"]:
            out.add_key(int(k), int(c))
        return out

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PopulationSketch):
            return NotImplemented
        return (
            (self.buckets.kind, self.buckets.param) == (other.buckets.kind, other.buckets.param)
            and self.counts == other.counts
        )

    __hash__ = None  # type: ignore[assignment]


def score_from_fraction(fraction_below: np.ndarray) -> np.ndarray:
    """Quintile score 1..5 from the share of the population strictly below.

    Ties land on the lowest score of their run, so the many customers with
    frequency 0 share F = 1 (they are the New Customers / Promising cells).

    Examples:
        >>> score_from_fraction(np.array([0.0, 0.19, 0.2, 0.5, 0.79, 0.8, 1.0])).tolist()
        [1, 1, 2, 3, 4, 5, 5]
    """
    return np.clip(np.floor(fraction_below * 5.0).astype(np.int64) + 1, 1, 5)
