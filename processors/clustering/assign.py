"""Per-partition behaviour assignment: hysteresis, statistics for the owner, drift detection.

A :class:`BehaviourAssigner` runs in every worker. For each customer feature
update it finds the nearest cluster of the current fleet model, accounts the
vector to that cluster's sufficient statistics (the k-means step the model
owner makes), and decides whether the customer's *membership* moves:

* **hysteresis** - a customer leaves its cluster only when the nearest other
  cluster is closer by a relative ``margin`` (``d_new <= (1 - margin) *
  d_current``, reason ``distance_margin``) or has been the nearest for
  ``patience`` consecutive updates (reason ``persistence``). A customer near a
  boundary therefore does not flap between two segments day after day, while a
  real shift (an EV bought) crosses the margin within a day or two;
* **re-seed** - cluster ids survive re-seeds (Hungarian matching in the
  owner), and a matched cluster is the same segment: its members keep the
  hysteresis rules. Only what the re-seed changed re-opens, once per customer
  at its next update and without hysteresis (reason ``drift_reseed`` after a
  drift, ``reseed`` after the owner's refresh): members of a *retired*
  cluster go to their nearest cluster, and a customer whose nearest cluster is
  *new* (a fresh id) joins it. Re-opening every membership instead moved half
  the fleet in a day at 10 000 meters (``bench/segmentation.py``);
* **minimum dwell** - a customer stays at least ``min_dwell_days`` (profile days) in a segment it
  entered, unless its features restarted (the feature shift rule saw two consecutive days break
  with its usual weekday: a behaviour change, e.g. an EV bought) within the last
  ``change_grace_days``; and nobody returns to any segment it left within the dwell, its last day
  included, restart or not (a restart moves a customer on, to where its new behaviour is);
* **drift** - river's ``PageHinkley`` watches, per partition, the daily share of established customers
  (a week seen) whose features restarted (weekdays only: the shift rule runs on weekdays). On a stationary fleet that
  share is a fraction of a percent and the detector stays quiet; when many customers change
  behaviour together (10 % adopt EV charging) it jumps and the detector fires once. Watching the
  assignment distance or every feature with ADWIN (the earlier design) fired 24 times on a
  stationary fleet: ADWIN's test grows so sensitive over thousands of updates that the weekly
  rhythm and the model's own refits pass as drift. A detection becomes a :class:`DriftEvent`.

Checkpoints hold data only (``format`` 2): the detector is rebuilt on restore by replaying the
daily shares kept in the state; a format-1 state (river ADWIN objects as pickles) is migrated by
keeping memberships and dropping the pickles unread (see :meth:`BehaviourAssigner.restore`).

Membership outputs are :class:`BehaviourChange` records; ``processors.segments``
turns them into ``segment.changes`` entries/exits.

Examples:
    >>> from datetime import date
    >>> from processors.clustering.model import FeatureSpec
    >>> from processors.clustering.owner import ModelOwner
    >>> from processors.features import CustomerFeatures
    >>> spec = FeatureSpec(names=("x",), log1p=(), log=())
    >>> owner = ModelOwner(k=2, spec=spec, min_seed_samples=4, seeder="kmeans++")
    >>> a = BehaviourAssigner(spec, margin=0.2, patience=3)
    >>> def upd(cid: str, x: float, d: int = 1) -> CustomerFeatures:
    ...     return CustomerFeatures(customer_id=cid, day=date(2026, 1, d), n_days=d, values={"x": x})
    >>> a.process([upd("A", 0.0), upd("B", 0.1), upd("C", 10.0), upd("D", 10.1)])  # no model yet
    []
    >>> a.set_model(owner.apply(a.flush_stats()))
    >>> out = a.process([upd("A", 0.0, 2), upd("C", 10.0, 2)])
    >>> [(c.customer_id, c.reason, c.from_id is None) for c in out]
    [('A', 'initial', True), ('C', 'initial', True)]
    >>> a.process([upd("A", 5.2, 3)])   # barely past the middle: within the margin, stays
    []
    >>> [c.reason for c in a.process([upd("A", 9.0, 4)])]   # clearly closer: moves
    ['distance_margin']

References:
    Bifet & Gavaldà (2007), "Learning from Time-Changing Data with Adaptive
    Windowing", SIAM International Conference on Data Mining (ADWIN, the earlier detector); Page
    (1954), "Continuous inspection schemes", Biometrika 41 (the Page-Hinkley test); river
    documentation, ``river.drift.PageHinkley``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict
from river import drift

from processors.clustering.model import ClusterModel, ClusterStats, FeatureSpec, sample_priority
from processors.features import CustomerFeatures

log = logging.getLogger(__name__)

Reason = Literal["initial", "distance_margin", "persistence", "drift_reseed", "reseed"]

STATE_FORMAT = 2
"""Version of :meth:`BehaviourAssigner.snapshot` (1: river ADWIN pickles, no dwell)."""

DETECTOR = "behaviour_changes"


class BehaviourChange(BaseModel):
    """Output: a customer's behaviour segment changed (or was first assigned)."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["membership"] = "membership"
    customer_id: str
    at: datetime
    from_id: str | None
    from_name: str | None
    to_id: str
    to_name: str
    reason: Reason
    distance: float
    model_version: int


class DriftEvent(BaseModel):
    """Output: the share of customers changing behaviour rose (``mean_*``: daily shares)."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["drift"] = "drift"
    detector: str
    at: datetime
    mean_before: float
    mean_after: float
    n_updates: int
    model_version: int


@dataclass
class _Membership:
    cluster: str
    pending: str | None = None
    pending_count: int = 0
    epoch: int = 0
    since: int = 0  # profile day (ordinal) the customer entered the cluster
    free_until: int = 0  # profile day until which the dwell is waived (after a feature restart)
    left: tuple[tuple[str, int], ...] = ()  # clusters it left within the dwell, with the day (ordinal) it left

    def leaving(self, day: int, dwell: int) -> tuple[tuple[str, int], ...]:
        """The clusters left within the dwell once this one is left on ``day`` too."""
        return ((self.cluster, day), *((c, d) for c, d in self.left if day - d <= dwell and c != self.cluster))


def _left(v: Sequence[Any]) -> tuple[tuple[str, int], ...]:
    """A membership's clusters left, from a snapshot: ``[[id, day], ...]``, or (earlier) ``id, day``, or nothing."""
    if not v or v[0] is None:
        return ()
    if isinstance(v[0], str):
        return ((v[0], int(v[1]) if len(v) > 1 else 0),)
    return tuple((str(c), int(d)) for c, d in v[0])


def _end_of(day: date) -> datetime:
    return datetime.combine(day + timedelta(days=1), time(0), tzinfo=UTC)


class BehaviourAssigner:
    """Assigns customers of one partition to the fleet model's clusters, with hysteresis and dwell.

    Args:
        spec: feature vector definition (must equal the model's).
        margin: relative distance margin a move needs at once.
        patience: consecutive updates a different cluster, closer by ``persist_margin``, needs otherwise.
        persist_margin: relative margin of the persistence path (0: merely nearest), so a customer on a
            boundary whose nearest cluster flips with week-to-week noise stays.
        min_dwell_days: profile days a customer stays in a segment it entered before it may move
            again without a behaviour change (0 = no dwell).
        change_grace_days: after a feature restart (a behaviour change) the dwell is waived for
            this many profile days, so the change shows within two days.
        drift_delta, drift_threshold, drift_min_days: river ``PageHinkley`` on the daily share of
            customers whose features restarted: ``delta`` is the tolerated rise of that share,
            ``threshold`` the cumulative excess that fires, ``min_days`` the weekdays watched first.
        drift_min_updates: days with fewer profile updates in the partition are not fed.
        sample_established_only: offer only established customers' vectors to the model's sample.
        reopen_on_refit: after a refit (the owner's ``refresh``, only in the model's first weeks) every
            customer goes to its nearest cluster at its next update, without hysteresis: the refit's
            consequences land on one day of the warm-up instead of trickling out over the next week.
        sample_cap: vectors per statistics flush kept for the owner's (re-)fitting.
    """

    def __init__(
        self,
        spec: FeatureSpec | None = None,
        *,
        margin: float = 0.15,
        patience: int = 3,
        persist_margin: float = 0.0,
        min_dwell_days: int = 0,
        change_grace_days: int = 3,
        drift_delta: float = 0.01,
        drift_threshold: float = 0.03,
        drift_min_days: int = 2,
        drift_min_updates: int = 20,
        sample_established_only: bool = True,
        reopen_on_refit: bool = True,
        sample_cap: int = 512,
    ) -> None:
        self.spec = spec or FeatureSpec()
        self.margin = margin
        self.patience = patience
        self.persist_margin = persist_margin
        self.min_dwell_days = min_dwell_days
        self.change_grace_days = change_grace_days
        self.drift_delta = drift_delta
        self.drift_threshold = drift_threshold
        self.drift_min_days = drift_min_days
        self.drift_min_updates = drift_min_updates
        self.sample_established_only = sample_established_only
        self.reopen_on_refit = reopen_on_refit
        self.sample_cap = sample_cap
        self.model: ClusterModel | None = None
        self.epoch = 0
        self.members: dict[str, _Membership] = {}
        self.stats = ClusterStats.empty(self.spec, 0, sample_cap)
        self.n_updates = 0
        self.day_counts: dict[int, list[int]] = {}  # profile day -> [updates, restarts], not yet fed
        self.fed_until = 0  # last profile day fed to the detector
        self.rates: list[tuple[int, float]] = []  # (day, share restarted) fed since the detector's last reset
        self.detector = self._new_detector()
        self.born: dict[str, int] = {}  # cluster id -> epoch (re-seed count) it appeared in

    def _new_detector(self) -> drift.PageHinkley:
        return drift.PageHinkley(min_instances=self.drift_min_days, delta=self.drift_delta,
                                 threshold=self.drift_threshold, alpha=1.0, mode="up")

    # -- model exchange ------------------------------------------------------------------------------
    def set_model(self, model: ClusterModel | None) -> None:
        """Swap in a (newer) fleet model; a re-seeded version re-opens its new and retired clusters once.

        A model of another feature spec (written by an older version during an upgrade) is ignored.
        """
        if model is None or (self.model is not None and model.version <= self.model.version):
            return
        if model.spec != self.spec:
            log.warning("ignored behaviour model version %d: its feature spec differs from this worker's",
                        model.version)
            return
        if model.reseeded:
            self.epoch += 1
        if self.model is not None:
            for cid in set(model.ids) - set(self.model.ids):
                self.born[cid] = self.epoch
        self.model = model

    def flush_stats(self) -> ClusterStats:
        """Statistics accumulated since the last flush (send them to the model owner)."""
        out = self.stats
        self.stats = ClusterStats.empty(self.spec, self.model.version if self.model else 0, self.sample_cap)
        return out

    def membership(self, customer_id: str) -> str | None:
        """Current cluster id of a customer."""
        m = self.members.get(customer_id)
        return m.cluster if m else None

    # -- processing --------------------------------------------------------------------------------------
    def process(self, batch: Sequence[CustomerFeatures]) -> list[BehaviourChange | DriftEvent]:
        """Assign a batch of feature updates; returns membership changes and drift events."""
        if not batch:
            return []
        x = np.array([self.spec.vector(f.clustering_values()) for f in batch])
        self.stats.scaler.learn(x)
        offer = [i for i, f in enumerate(batch) if f.established or not self.sample_established_only]
        if offer:
            self.stats.add_sample(x[offer], np.array([sample_priority(f"{batch[i].customer_id}|{batch[i].day}")
                                                      for i in offer]))
        self.stats.n_updates += len(batch)
        self.stats.last_day = max(self.stats.last_day, max(f.day.toordinal() for f in batch))
        first = min(f.day.toordinal() for f in batch)
        self.stats.first_day = min(self.stats.first_day or first, first)
        out: list[BehaviourChange | DriftEvent] = []
        for f in batch:  # a customer's first week restarts often (its usual weekday is a day or two): not counted
            if f.established and f.day.weekday() < 5 and f.day.toordinal() > self.fed_until:
                counts = self.day_counts.setdefault(f.day.toordinal(), [0, 0])
                counts[0] += 1
                counts[1] += int(f.restarted)
        version = self.model.version if self.model else 0
        out.extend(self._watch(max(f.day.toordinal() for f in batch), version))
        if self.model is None:
            self.n_updates += len(batch)
            for f in batch:
                if f.restarted and f.customer_id in self.members:
                    self.members[f.customer_id].free_until = f.day.toordinal() + self.change_grace_days
            return out
        model = self.model
        d = model.distances(x)
        nearest = d.argmin(axis=1)
        for j in np.unique(nearest):
            self.stats.add(model.ids[int(j)], x[nearest == j])
        for i, f in enumerate(batch):
            self.n_updates += 1
            j = int(nearest[i])
            change = self._decide(f, d[i], j, model)
            if change is not None:
                prev, reason = change
                pj = model.ids.index(prev) if prev is not None and prev in model.ids else None
                out.append(BehaviourChange(
                    customer_id=f.customer_id, at=_end_of(f.day), from_id=prev,
                    from_name=model.names[pj] if pj is not None else None,
                    to_id=model.ids[j], to_name=model.names[j], reason=reason,
                    distance=float(d[i, j]), model_version=model.version,
                ))
        return out

    def _decide(
        self, f: CustomerFeatures, dist: np.ndarray, j: int, model: ClusterModel
    ) -> tuple[str | None, Reason] | None:
        target = model.ids[j]
        day = f.day.toordinal()
        m = self.members.get(f.customer_id)
        if m is None:  # the first week after the first assignment is for settling: no dwell yet
            self.members[f.customer_id] = _Membership(target, epoch=self.epoch, since=day - self.min_dwell_days)
            return (None, "initial")
        if f.restarted:
            m.free_until = day + self.change_grace_days
        reopened = m.epoch < self.epoch  # first update since a re-seed
        refit = reopened and model.reseed_cause == "refresh" and self.reopen_on_refit
        if m.cluster not in model.ids or (reopened and target != m.cluster
                                          and (refit or self.born.get(target, 0) > m.epoch)):
            # its cluster retired, or (once after a re-seed) its nearest cluster is new: move without hysteresis
            prev = m.cluster
            # a refit's reassignment is the model settling, not the customer's behaviour: like the first
            # assignment it starts no dwell, so a customer the young model placed badly moves on as soon as
            # the margin shows it (within the warm-up), not a week later
            since = day - self.min_dwell_days if refit else day
            left = m.leaving(day, self.min_dwell_days) if prev != target else m.left
            self.members[f.customer_id] = _Membership(target, epoch=self.epoch, since=since, free_until=m.free_until,
                                                      left=left)
            if prev == target:
                return None
            if reopened or model.reseeded:
                return (prev, "drift_reseed" if model.reseed_cause == "drift" else "reseed")
            return (prev, "initial")
        if reopened:  # a matched cluster is the same segment: hysteresis as usual
            m.epoch = self.epoch
        if target == m.cluster:
            m.pending, m.pending_count = None, 0
            return None
        if day - m.since < self.min_dwell_days and day > m.free_until:
            m.pending, m.pending_count = None, 0  # too soon after its last move, and no behaviour change
            return None
        if any(c == target and day - d <= self.min_dwell_days for c, d in m.left):
            # no return within a week (the dwell, its last day included) to a segment it left, even after a
            # feature restart: a restart moves a customer on to where its new behaviour is, never back; on real
            # households the shift rule fires on noise often enough that waiving this let them return
            m.pending, m.pending_count = None, 0
            return None
        d_cur = float(dist[model.ids.index(m.cluster)])
        if float(dist[j]) <= (1.0 - self.margin) * d_cur:
            prev = m.cluster
            self.members[f.customer_id] = _Membership(target, epoch=self.epoch, since=day, free_until=m.free_until,
                                                      left=m.leaving(day, self.min_dwell_days))  # fmt: skip
            return (prev, "distance_margin")
        if float(dist[j]) > (1.0 - self.persist_margin) * d_cur:
            m.pending, m.pending_count = None, 0
            return None
        m.pending_count = m.pending_count + 1 if m.pending == target else 1
        m.pending = target
        if m.pending_count >= self.patience:
            prev = m.cluster
            self.members[f.customer_id] = _Membership(target, epoch=self.epoch, since=day, free_until=m.free_until,
                                                      left=m.leaving(day, self.min_dwell_days))  # fmt: skip
            return (prev, "persistence")
        return None

    def _watch(self, latest: int, version: int, *, emit: bool = True) -> list[DriftEvent]:
        """Feed the detector every complete weekday (a later day has arrived) with its share restarted."""
        out: list[DriftEvent] = []
        for day in sorted(d for d in self.day_counts if d < latest):
            updates, restarts = self.day_counts.pop(day)
            self.fed_until = max(self.fed_until, day)
            if updates < self.drift_min_updates:
                continue
            out.extend(self._feed(day, restarts / updates, version, emit=emit))
        return out

    def _feed(self, day: int, rate: float, version: int, *, emit: bool = True) -> list[DriftEvent]:
        before = float(np.mean([r for _, r in self.rates])) if self.rates else 0.0
        self.detector.update(rate)
        self.rates.append((day, rate))
        if not self.detector.drift_detected:
            return []
        self.rates = []  # river's detector resets itself at its next update: so does the replay log
        self.stats.drifts += 1
        if not emit:
            return []
        log.info("behaviour drift: %.1f %% of customers changed behaviour on %s (before: %.2f %% a day)",
                 100 * rate, date.fromordinal(day), 100 * before)
        return [DriftEvent(detector=DETECTOR, at=_end_of(date.fromordinal(day)), mean_before=before, mean_after=rate,
                           n_updates=self.n_updates, model_version=version)]

    # -- StatefulProcessor ------------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """JSON-serialisable state, data only (format :data:`STATE_FORMAT`): no pickled objects."""
        return {
            "format": STATE_FORMAT,
            "config": {"spec": self.spec.snapshot(), "margin": self.margin, "patience": self.patience,
                       "persist_margin": self.persist_margin,
                       "min_dwell_days": self.min_dwell_days, "change_grace_days": self.change_grace_days,
                       "drift_delta": self.drift_delta, "drift_threshold": self.drift_threshold,
                       "drift_min_days": self.drift_min_days, "drift_min_updates": self.drift_min_updates,
                       "sample_established_only": self.sample_established_only,
                       "reopen_on_refit": self.reopen_on_refit, "sample_cap": self.sample_cap},
            "model": self.model.snapshot() if self.model else None,
            "epoch": self.epoch,
            "members": {c: [m.cluster, m.pending, m.pending_count, m.epoch, m.since, m.free_until,
                            [list(x) for x in m.left]]
                        for c, m in sorted(self.members.items())},
            "stats": self.stats.snapshot(),
            "n_updates": self.n_updates,
            "day_counts": {str(d): list(v) for d, v in sorted(self.day_counts.items())},
            "fed_until": self.fed_until,
            "rates": [list(r) for r in self.rates],
            "born": dict(sorted(self.born.items())),
        }

    @classmethod
    def restore(cls, state: Mapping[str, Any], spec: FeatureSpec | None = None) -> BehaviourAssigner:
        """Inverse of :meth:`snapshot`; migrates a format-1 state.

        Format 1 held river ADWIN detectors as pickles and clustered other features: its memberships
        are kept (they move to the new model's clusters at their next update, reason ``reseed``), its
        model, statistics and pickled detectors are dropped unread (``spec``, default
        :class:`FeatureSpec`, replaces its feature spec; the owner re-seeds).
        """
        fmt = int(state.get("format", 1))
        c = state["config"]
        if fmt == 1:
            log.warning("behaviour state of format 1 (pickled river detectors, older features): keeping "
                        "%d memberships, dropping its model and detectors; the fleet model re-seeds",
                        len(state["members"]))
            a = cls(spec or FeatureSpec(), margin=c["margin"], patience=c["patience"], sample_cap=c["sample_cap"])
            a.members = {cid: _Membership(v[0], None, 0, 0) for cid, v in state["members"].items()}
            a.n_updates = int(state["n_updates"])
            return a
        if fmt != STATE_FORMAT:
            raise ValueError(f"behaviour state of format {fmt}: this version reads formats 1 and {STATE_FORMAT}")
        a = cls(FeatureSpec.restore(c["spec"]), margin=c["margin"], patience=c["patience"],
                persist_margin=c["persist_margin"], min_dwell_days=c["min_dwell_days"], change_grace_days=c["change_grace_days"],
                drift_delta=c["drift_delta"], drift_threshold=c["drift_threshold"],
                drift_min_days=c["drift_min_days"], drift_min_updates=c["drift_min_updates"],
                sample_established_only=c["sample_established_only"], reopen_on_refit=c["reopen_on_refit"],
                sample_cap=c["sample_cap"])
        a.model = ClusterModel.restore(state["model"]) if state["model"] else None
        a.epoch = int(state["epoch"])
        a.members = {cid: _Membership(v[0], v[1], int(v[2]), int(v[3]), int(v[4]), int(v[5]), _left(v[6:]))
                     for cid, v in state["members"].items()}
        a.stats = ClusterStats.restore(state["stats"])
        a.n_updates = int(state["n_updates"])
        a.day_counts = {int(d): [int(v[0]), int(v[1])] for d, v in state["day_counts"].items()}
        a.fed_until = int(state["fed_until"])
        for day, rate in state["rates"]:  # rebuild river's detector from the inputs it saw since its last reset
            a.detector.update(float(rate))
            a.rates.append((int(day), float(rate)))
        a.born = {cid: int(e) for cid, e in state["born"].items()}
        return a
