"""Which customers' RFM scores can have changed since the last rescore: the work of a tick follows what changed.

A customer's (R, F, M) scores are a function of three things only: its bucket keys in the three population
sketches (a function of its own record), the population (the scores are quantiles of it), and, for R with
``lost_after_days``, whether "now" is more than that horizon after its last purchase. So between two rescores
a customer's scores can change only if

* its own record changed (a purchase: it was scored then, against the population of that moment);
* the population moved the score of its key: the score of every *distinct* key present in the partition is
  recomputed (vectorised ``searchsorted`` over the sorted keys, O(distinct keys), which is a few hundred for
  F and M and one per hour of last purchase for R), compared with the score that key had at the last rescore,
  and only the customers of the keys whose score moved are rescored;
* "now" crossed the lost horizon of its last purchase: the customers whose R key (one bucket of
  ``recency_bucket_s``) lies between the previous rescore's horizon and this one's.

When none of these happened (no purchase, the same population, no horizon crossed) a tick does nothing.
Scoring the candidates uses the same vectorised code as a full rescore, and every other customer keeps
the score it had, which is exactly what a full rescore would give it again
(``tests/processors/test_rfm_incremental.py`` proves it on random event sequences and clock advances).

Examples:
    >>> idx = ScoreIndex()
    >>> idx.place("C1", (10, 3, 7)); idx.place("C2", (10, 4, 7))
    >>> sorted(idx.customers_at(0, [10])), idx.full   # nothing scored yet: the first rescore is a full one
    (['C1', 'C2'], True)
    >>> idx.place("C1", None); sorted(idx.customers_at(0, [10]))
    ['C2']
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TYPE_CHECKING

import numpy as np

from processors.rfm.sketch import PopulationSketch, score_from_fraction

if TYPE_CHECKING:
    from processors.rfm.processor import RfmSketches

Keys = tuple[int, int, int]


def key_scores(sketch: PopulationSketch, keys: np.ndarray, n: int) -> np.ndarray:
    """Quintile scores of bucket ``keys`` against a population sketch of ``n`` (the full rescore's formula)."""
    return score_from_fraction(sketch.count_below_keys(keys) / max(n, 1))


class ScoreIndex:
    """Customers by bucket key in each dimension (R, F, M), and the score each key had at the last rescore."""

    def __init__(self) -> None:
        self.keys: dict[str, Keys] = {}
        self.last: dict[str, float] = {}  # last purchase time (the lost horizon's input)
        self.by_key: tuple[dict[int, set[str]], ...] = ({}, {}, {})
        self.touched: set[str] = set()  # scored since the last rescore (a purchase), or newly indexed
        self.full = True  # the next rescore scores everyone (after construction, a restore, a setting change)
        self.population_version = -1  # of the population the last rescore scored against
        self.scored_at: float | None = None  # "now" of the last rescore
        self._sorted: list[np.ndarray | None] = [None, None, None]  # distinct keys, sorted (None: rebuild)
        self._settled: list[tuple[np.ndarray, np.ndarray]] = [(np.zeros(0, np.int64), np.zeros(0, np.int64))] * 3

    def place(self, customer_id: str, keys: Keys | None, last: float = 0.0) -> None:
        """Index a customer under its current keys and last purchase time (None: no purchase, not scored);
        it is rescored next."""
        old = self.keys.pop(customer_id, None)
        self.last.pop(customer_id, None)
        if old is not None:
            for d in range(3):
                members = self.by_key[d][old[d]]
                members.discard(customer_id)
                if not members:
                    del self.by_key[d][old[d]]
                    self._sorted[d] = None
        if keys is not None:
            self.keys[customer_id] = keys
            self.last[customer_id] = last
            for d in range(3):
                if keys[d] not in self.by_key[d]:
                    self.by_key[d][keys[d]] = set()
                    self._sorted[d] = None
                self.by_key[d][keys[d]].add(customer_id)
        self.touched.add(customer_id)

    def distinct(self, dimension: int) -> np.ndarray:
        """The distinct keys present in a dimension, sorted."""
        cached = self._sorted[dimension]
        if cached is None:
            cached = self._sorted[dimension] = np.array(sorted(self.by_key[dimension]), dtype=np.int64)
        return cached

    def customers_at(self, dimension: int, keys: Iterable[int]) -> set[str]:
        """Customers whose key in ``dimension`` is one of ``keys``."""
        out: set[str] = set()
        index = self.by_key[dimension]
        for k in keys:
            out |= index.get(int(k), set())
        return out

    def candidates(
        self, population: RfmSketches, version: int, now: float, lost_after_s: float | None
    ) -> set[str] | None:
        """Customers whose scores can differ from their last ones (None: everyone, a full rescore)."""
        if self.full or self.scored_at is None:
            return None
        out = set(self.touched)
        if version != self.population_version:
            sketches = (population.recency, population.frequency, population.monetary)
            for d, sketch in enumerate(sketches):
                keys = self.distinct(d)
                if not len(keys):
                    continue
                new = key_scores(sketch, keys, population.n)
                settled_keys, settled_scores = self._settled[d]
                at = np.searchsorted(settled_keys, keys)
                inside = at < len(settled_keys)
                known = np.zeros(len(keys), dtype=bool)
                old = np.full(len(keys), -1, dtype=np.int64)
                known[inside] = settled_keys[at[inside]] == keys[inside]
                old[known] = settled_scores[at[known]]
                out |= self.customers_at(d, keys[(~known) | (new != old)].tolist())
        if lost_after_s is not None and now > self.scored_at:
            # R = 1 once now - last > lost_after_s: who crossed it lies between the two horizons (buckets with
            # one of slack each side against rounding), and crossed it exactly as the scoring tests it
            width = float(population.recency.buckets.param)
            lo = math.floor((self.scored_at - lost_after_s) / width) - 1
            hi = math.floor((now - lost_after_s) / width) + 1
            keys = self.distinct(0)
            near = self.customers_at(0, keys[np.searchsorted(keys, lo): np.searchsorted(keys, hi, side="right")].tolist())
            then = self.scored_at
            out |= {c for c in near if ((now - self.last[c]) > lost_after_s) != ((then - self.last[c]) > lost_after_s)}
        return out

    def settle(self, population: RfmSketches, version: int, now: float) -> None:
        """Remember the scores of every present key under the population just scored against, at ``now``."""
        sketches = (population.recency, population.frequency, population.monetary)
        if version != self.population_version or self.full or any(s is None for s in self._sorted) or self.touched:
            self._settled = [
                (self.distinct(d), key_scores(s, self.distinct(d), population.n)) for d, s in enumerate(sketches)
            ]
        self.population_version = version
        self.scored_at = now
        self.touched.clear()
        self.full = False
