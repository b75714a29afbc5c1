"""RFM processor: exact state, quantile scores from mergeable sketches, named segments.

One :class:`RfmProcessor` per worker holds the customers of the partitions it
owns. Scores are quantiles over the *whole* population: each worker publishes
:meth:`RfmProcessor.local_sketches` (its customers' current values), and
receives the sum of the others' through :meth:`RfmProcessor.set_peers`; since
merging is addition, every worker scores against the same population.

R is scored on the last purchase time (later = higher R) and evaluated when
scores are read: a customer's R drops as the rest of the population keeps
buying, without any event of their own. :meth:`RfmProcessor.rescore` — called
from a timer — recomputes every score against the current population and
returns the customers whose scores or segment changed; with
``lost_after_days`` set, a customer silent for longer gets R = 1 whatever the
population does. A rescore only scores the customers whose scores can have
changed since the last one (:mod:`processors.rfm.index`): an idle tick costs
nothing, whatever the population. F is scored on lifetimes' frequency (repeat purchase days),
M on mean spend per purchase (``monetary_basis="total"`` for total spend).

Examples:
    >>> from datetime import UTC, datetime, timedelta
    >>> from stream.schemas import Purchase
    >>> t0 = datetime(2026, 1, 1, tzinfo=UTC)
    >>> def buy(i: int, cid: str, day: int, amount: float) -> Purchase:
    ...     return Purchase(event_id=f"e{i}", customer_id=cid, ts=t0 + timedelta(days=day),
    ...                     event_type="PURCHASED", amount=amount)
    >>> rfm = RfmProcessor()
    >>> # customer Ck buys on days 0..k: C9 buys most often and most recently
    >>> days = [(k, d) for k in range(10) for d in range(k + 1)]
    >>> batch = [buy(i, f"C{k}", d, 10.0 + k) for i, (k, d) in enumerate(days)]
    >>> out = rfm.process(batch)
    >>> len(out), out[9].customer_id, out[9].summary.frequency, out[9].segment_name
    (10, 'C9', 9, 'Champions')
    >>> out[0].segment_name, (out[0].r_score, out[0].f_score)
    ('Lost', (1, 1))
    >>> rfm.process(batch)   # re-delivery: nothing changes, nothing is emitted
    []
    >>> late = rfm.process([buy(1000, "C9", 30, 99.0)])  # one more purchase
    >>> late[0].segment_name, late[0].previous_segment_name
    ('Champions', 'Champions')
    >>> changed = rfm.rescore(t0 + timedelta(days=200))  # no one else bought: ranks hold
    >>> changed
    []
    >>> RfmProcessor.restore(rfm.snapshot()).snapshot() == rfm.snapshot()
    True
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

from processors.rfm.index import Keys, ScoreIndex
from processors.rfm.segment_map import RfmSegmentMap
from processors.rfm.sketch import PopulationSketch, score_from_fraction
from processors.rfm.state import DAY_S, CustomerRfm, RfmEvent, RfmRecord, RfmSummary
from stream.schemas import Purchase

Scores = tuple[int, int, int]


class RfmAssignment(BaseModel):
    """Output record: a customer's RFM summary, scores and named segment.

    Emitted by :meth:`RfmProcessor.process` for every customer whose state
    changed (``cause="event"``) and by :meth:`RfmProcessor.rescore` for every
    customer whose scores or segment changed (``cause="rescore"``). Scores and
    segment are ``None`` for customers with engagement but no purchase yet.
    """

    model_config = ConfigDict(frozen=True)

    customer_id: str
    at: datetime
    cause: Literal["event", "rescore"]
    summary: RfmSummary
    r_score: int | None
    f_score: int | None
    m_score: int | None
    segment_id: str | None
    segment_name: str | None
    previous_scores: tuple[int, int, int] | None
    previous_segment_id: str | None
    previous_segment_name: str | None

    @property
    def segment_changed(self) -> bool:
        """Whether the named segment differs from the previous one."""
        return self.segment_id != self.previous_segment_id


@dataclass
class RfmSketches:
    """The three population sketches (R on last purchase time, F, M); mergeable."""

    recency: PopulationSketch
    frequency: PopulationSketch
    monetary: PopulationSketch

    @classmethod
    def empty(cls, relative_accuracy: float = 0.01, recency_bucket_s: float = 3600.0) -> RfmSketches:
        """Empty sketches with the given resolutions."""
        return cls(
            PopulationSketch.linear(recency_bucket_s),
            PopulationSketch.log(relative_accuracy),
            PopulationSketch.log(relative_accuracy),
        )

    @classmethod
    def merged(cls, items: Iterable[RfmSketches]) -> RfmSketches:
        """Sum of several workers' sketches (associative, commutative)."""
        xs = list(items)
        return cls(
            PopulationSketch.merged(x.recency for x in xs),
            PopulationSketch.merged(x.frequency for x in xs),
            PopulationSketch.merged(x.monetary for x in xs),
        )

    def add(self, values: tuple[float, float, float], weight: int) -> None:
        """Add (weight=1) or remove (weight=-1) one customer's (last_ts, frequency, monetary)."""
        self.recency.add_key(self.recency.key(values[0]), weight)
        self.frequency.add_key(self.frequency.key(values[1]), weight)
        self.monetary.add_key(self.monetary.key(values[2]), weight)

    @property
    def n(self) -> int:
        """Population size."""
        return self.recency.n

    def snapshot(self) -> dict[str, Any]:
        """JSON-serialisable state (publish this to peers)."""
        return {k: getattr(self, k).snapshot() for k in ("recency", "frequency", "monetary")}

    @classmethod
    def restore(cls, state: dict[str, Any]) -> RfmSketches:
        """Inverse of :meth:`snapshot`."""
        return cls(*(PopulationSketch.restore(state[k]) for k in ("recency", "frequency", "monetary")))


class RfmProcessor:
    """Exact, idempotent RFM per customer with population-quantile scores and segments.

    Args:
        segment_map: (R, F) → segment; default the shipped YAML map.
        relative_accuracy: bucket accuracy of the F and M sketches.
        recency_bucket_s: bucket width of the last-purchase-time sketch.
        monetary_basis: score M on ``"mean"`` spend per purchase or ``"total"`` spend.
        lost_after_days: if set, a customer whose last purchase is older gets R = 1.
    """

    def __init__(
        self,
        segment_map: RfmSegmentMap | None = None,
        *,
        relative_accuracy: float = 0.01,
        recency_bucket_s: float = 3600.0,
        monetary_basis: Literal["mean", "total"] = "mean",
        lost_after_days: float | None = None,
    ) -> None:
        self.segment_map = segment_map or RfmSegmentMap.default()
        self.relative_accuracy = relative_accuracy
        self.recency_bucket_s = recency_bucket_s
        self.monetary_basis = monetary_basis
        self.lost_after_days = lost_after_days
        self.customers: dict[str, CustomerRfm] = {}
        self.scores: dict[str, Scores] = {}
        self.local = RfmSketches.empty(relative_accuracy, recency_bucket_s)
        self.peers: RfmSketches | None = None
        self._population: RfmSketches | None = None
        self._version = 0  # of the population (local + peers): bumped whenever either changes
        self.index = ScoreIndex()  # who can need a rescore (derived state: rebuilt on restore)
        self.new_customers = 0  # buyers on exactly one purchase day, and on more (gauges, kept as records change)
        self.returning_customers = 0
        self.clock = 0.0

    # -- population -------------------------------------------------------------------------------
    def _values(self, r: RfmRecord) -> tuple[float, float, float]:
        assert r.last_ts is not None
        m = r.monetary_mean if self.monetary_basis == "mean" else r.total_spend
        return (r.last_ts, float(r.frequency), m)

    def _keys(self, r: RfmRecord) -> Keys:
        v = self._values(r)
        return (self.local.recency.key(v[0]), self.local.frequency.key(v[1]), self.local.monetary.key(v[2]))

    def _count(self, r: RfmRecord, weight: int) -> None:
        if r.n_purchase_days == 1:
            self.new_customers += weight
        elif r.n_purchase_days > 1:
            self.returning_customers += weight

    def local_sketches(self) -> RfmSketches:
        """This worker's contribution to the population (publish it to the other workers)."""
        return self.local

    def set_peers(self, sketches: RfmSketches | None) -> None:
        """Set the merged sketches of all *other* workers (None when running alone).

        The same population again (every exchange sends it, changed or not) changes nothing: the next rescore
        is then free.
        """
        if _same(self.peers, sketches):
            return
        self.peers = sketches
        self._population = None
        self._version += 1

    def population(self) -> RfmSketches:
        """Local plus peers: the population scores are quantiles of."""
        if self.peers is None:
            return self.local
        if self._population is None:
            self._population = RfmSketches.merged([self.local, self.peers])
        return self._population

    # -- scoring ----------------------------------------------------------------------------------
    def _score_many(self, records: Sequence[RfmRecord], now: float) -> np.ndarray:
        """Scores (n x 3) of records against the current population."""
        pop = self.population()
        n = max(pop.n, 1)
        vals = [self._values(r) for r in records]
        rk = np.array([pop.recency.key(v[0]) for v in vals], dtype=np.int64)
        fk = np.array([pop.frequency.key(v[1]) for v in vals], dtype=np.int64)
        mk = np.array([pop.monetary.key(v[2]) for v in vals], dtype=np.int64)
        out = np.empty((len(records), 3), dtype=np.int64)
        out[:, 0] = score_from_fraction(pop.recency.count_below_keys(rk) / n)
        out[:, 1] = score_from_fraction(pop.frequency.count_below_keys(fk) / n)
        out[:, 2] = score_from_fraction(pop.monetary.count_below_keys(mk) / n)
        if self.lost_after_days is not None:
            last = np.array([v[0] for v in vals])
            out[(now - last) > self.lost_after_days * DAY_S, 0] = 1
        return out

    def _assignment(
        self,
        cid: str,
        scores: Scores | None,
        prev: Scores | None,
        cause: Literal["event", "rescore"],
        previous_map: RfmSegmentMap | None = None,
    ) -> RfmAssignment:
        at = datetime.fromtimestamp(self.clock, tz=UTC)
        seg = self.segment_map.segment(scores[0], scores[1]) if scores else None
        pseg = (previous_map or self.segment_map).segment(prev[0], prev[1]) if prev else None
        return RfmAssignment(
            customer_id=cid,
            at=at,
            cause=cause,
            summary=self.customers[cid].record.summary(at),
            r_score=scores[0] if scores else None,
            f_score=scores[1] if scores else None,
            m_score=scores[2] if scores else None,
            segment_id=seg.id if seg else None,
            segment_name=seg.name if seg else None,
            previous_scores=prev,
            previous_segment_id=pseg.id if pseg else None,
            previous_segment_name=pseg.name if pseg else None,
        )

    # -- StatefulProcessor ------------------------------------------------------------------------
    def process(self, batch: Sequence[Purchase | RfmEvent]) -> list[RfmAssignment]:
        """Apply a batch of events (each once, by event id); one output per changed customer.

        The changed customers are scored against the population after the whole
        batch; other customers' scores are refreshed by :meth:`rescore` (so cached
        scores depend on when customers were last scored, never the exact state).
        """
        before: dict[str, RfmRecord] = {}
        for ev in batch:
            e = RfmEvent.from_purchase(ev) if isinstance(ev, Purchase) else ev
            st = self.customers.get(e.customer_id)
            if st is None:
                st = self.customers[e.customer_id] = CustomerRfm.empty(e.customer_id)
            old = st.record
            if st.apply(e):
                before.setdefault(e.customer_id, old)
                if e.ts > self.clock:
                    self.clock = e.ts
        if not before:
            return []
        for cid, old in before.items():
            new = self.customers[cid].record
            if old.has_purchases:
                self.local.add(self._values(old), -1)
            if new.has_purchases:
                self.local.add(self._values(new), 1)
            self._count(old, -1)
            self._count(new, 1)
            self.index.place(cid, self._keys(new) if new.has_purchases else None, new.last_ts or 0.0)
        self._population = None
        self._version += 1
        buyers = [cid for cid in before if self.customers[cid].record.has_purchases]
        scored = self._score_many([self.customers[c].record for c in buyers], self.clock)
        out: list[RfmAssignment] = []
        new_scores = {cid: (int(s[0]), int(s[1]), int(s[2])) for cid, s in zip(buyers, scored, strict=True)}
        for cid in before:
            prev = self.scores.get(cid)
            sc = new_scores.get(cid)
            if sc is not None:
                self.scores[cid] = sc
            out.append(self._assignment(cid, sc, prev, "event"))
        return out

    def rescore(self, now: datetime, *, full: bool = False) -> list[RfmAssignment]:
        """Re-score at ``now``; return the customers whose scores or segment changed, by customer id.

        Only the customers whose scores can have changed since the last rescore are scored (see
        :mod:`processors.rfm.index`); ``full`` scores every customer (the same result, at O(customers)).
        """
        self.clock = max(self.clock, now.timestamp())
        pop = self.population()
        lost_s = None if self.lost_after_days is None else self.lost_after_days * DAY_S
        candidates = None if full else self.index.candidates(pop, self._version, self.clock, lost_s)
        indexed = self.index.keys
        buyers = sorted(indexed) if candidates is None else sorted(c for c in candidates if c in indexed)
        out: list[RfmAssignment] = []
        if buyers:
            scored = self._score_many([self.customers[c].record for c in buyers], self.clock)
            for cid, s in zip(buyers, scored, strict=True):
                sc = (int(s[0]), int(s[1]), int(s[2]))
                prev = self.scores.get(cid)
                if sc != prev:
                    self.scores[cid] = sc
                    out.append(self._assignment(cid, sc, prev, "rescore"))
        self.index.settle(pop, self._version, self.clock)
        return out

    def remap(self, previous: RfmSegmentMap) -> list[RfmAssignment]:
        """Customers whose named segment differs under the current map from under ``previous`` (a changed
        map setting): their assignments, with the previous segment as ``previous`` named it."""
        out: list[RfmAssignment] = []
        for cid, sc in sorted(self.scores.items()):
            old, new = previous.segment(sc[0], sc[1]), self.segment_map.segment(sc[0], sc[1])
            if (old.id, old.name) != (new.id, new.name):
                out.append(self._assignment(cid, sc, sc, "rescore", previous))
        return out

    def record(self, customer_id: str) -> RfmRecord | None:
        """The exact record of a customer (None if unknown)."""
        st = self.customers.get(customer_id)
        return st.record if st else None

    def snapshot(self) -> dict[str, Any]:
        """JSON-serialisable state; local sketches are rebuilt from the records on restore."""
        return {
            "config": {
                "segment_map": self.segment_map.to_dict(),
                "relative_accuracy": self.relative_accuracy,
                "recency_bucket_s": self.recency_bucket_s,
                "monetary_basis": self.monetary_basis,
                "lost_after_days": self.lost_after_days,
            },
            "clock": self.clock,
            "customers": {cid: st.to_json() for cid, st in sorted(self.customers.items())},
            "scores": {cid: list(s) for cid, s in sorted(self.scores.items())},
            "peers": self.peers.snapshot() if self.peers is not None else None,
        }

    @classmethod
    def restore(cls, state: dict[str, Any]) -> RfmProcessor:
        """Rebuild a processor equal to the one snapshotted."""
        c = state["config"]
        p = cls(
            RfmSegmentMap.from_dict(c["segment_map"]),
            relative_accuracy=c["relative_accuracy"],
            recency_bucket_s=c["recency_bucket_s"],
            monetary_basis=c["monetary_basis"],
            lost_after_days=c["lost_after_days"],
        )
        p.clock = float(state["clock"])
        for cid, data in state["customers"].items():
            st = CustomerRfm.from_json(cid, data)
            p.customers[cid] = st
            if st.record.has_purchases:
                p.local.add(p._values(st.record), 1)
                p.index.place(cid, p._keys(st.record), st.record.last_ts or 0.0)
            p._count(st.record, 1)
        p.scores = {cid: (int(s[0]), int(s[1]), int(s[2])) for cid, s in state["scores"].items()}
        if state.get("peers") is not None:
            p.set_peers(RfmSketches.restore(state["peers"]))
        return p


def _same(a: RfmSketches | None, b: RfmSketches | None) -> bool:
    """Whether two (optional) sets of sketches hold the same counts."""
    if a is None or b is None:
        return a is b
    return a.recency == b.recency and a.frequency == b.frequency and a.monetary == b.monetary
