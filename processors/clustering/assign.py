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
* **drift** - river's ADWIN watches the assignment distance (reported only when
  its mean *rises*: the model fits worse) and, optionally, every feature,
  standardised with a *reference* scaling frozen at the first model (and at
  each re-seed): the model's own scaler follows the population within hours,
  so population-wide shifts would vanish in it. A detection becomes a :class:`DriftEvent` output and is counted in
  the statistics, which lets a configured owner re-seed. After a detection the
  detector stays quiet for ``drift_cooldown`` updates *and*
  ``drift_cooldown_days`` simulated days (the profile day): a count of updates
  means less than a day on a large partition, where ADWIN then fired again on
  the weekly rhythm; ``drift_min_effect`` ignores detections whose mean moved
  less than that many reference standard deviations, and ``drift_panel``
  feeds the detectors from a fixed hash panel of customers: ADWIN's test gets
  so sensitive on tens of thousands of updates that weekday/weekend swings
  pass, so a partition watches about as many customers whatever the fleet size.

Membership outputs are :class:`BehaviourChange` records; ``processors.segments``
turns them into ``segment.changes`` entries/exits.

Examples:
    >>> from datetime import date
    >>> from processors.clustering.model import FeatureSpec, ModelOwner
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
    Windowing", SIAM International Conference on Data Mining (ADWIN); river
    documentation, ``river.drift.ADWIN``.
"""

from __future__ import annotations

import base64
import pickle
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict
from river import drift

from processors.clustering.model import ClusterModel, ClusterStats, FeatureSpec, sample_priority
from processors.features import CustomerFeatures

Reason = Literal["initial", "distance_margin", "persistence", "drift_reseed", "reseed"]


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
    """Output: ADWIN detected a change in the assignment distances or a feature."""

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


def _pack(obj: object) -> str:
    return base64.b64encode(pickle.dumps(obj)).decode("ascii")


def _unpack(text: str) -> drift.ADWIN:
    # trusted input only: our own snapshot of a river ADWIN (state lives in the worker's store)
    obj = pickle.loads(base64.b64decode(text))
    assert isinstance(obj, drift.ADWIN)
    return obj


def _end_of(day: date) -> datetime:
    return datetime.combine(day + timedelta(days=1), time(0), tzinfo=UTC)


class BehaviourAssigner:
    """Assigns customers of one partition to the fleet model's clusters, with hysteresis.

    Args:
        spec: feature vector definition (must equal the model's).
        margin: relative distance margin a move needs at once.
        patience: consecutive updates a different nearest cluster needs otherwise.
        drift_delta: ADWIN confidence parameter.
        drift_features: also watch every scaled feature with ADWIN.
        drift_min_days: customers with fewer folded days do not feed the detectors.
        drift_cooldown: updates after a detection during which the same detector stays quiet.
        drift_cooldown_days: simulated days (profile days) after a detection during which the same
            detector stays quiet (0 = none); scales with the fleet, unlike ``drift_cooldown``.
        drift_min_effect: smallest change of a detector's mean (in reference standard deviations for
            features, relative to the mean before for the distance) reported as drift (0 = any).
        drift_panel: only a fixed hash panel of about this many of the partition's customers feeds the
            detectors (0 = every customer): ADWIN's sensitivity grows with the updates it sees, so
            without a panel a larger partition alarms on smaller (weekly) swings.
        sample_cap: vectors per statistics flush kept for the owner's (re-)seeding.
    """

    def __init__(
        self,
        spec: FeatureSpec | None = None,
        *,
        margin: float = 0.15,
        patience: int = 3,
        drift_delta: float = 0.002,
        drift_features: bool = True,
        drift_min_days: int = 3,
        drift_cooldown: int = 2000,
        drift_cooldown_days: float = 0.0,
        drift_min_effect: float = 0.0,
        drift_panel: int = 0,
        sample_cap: int = 512,
    ) -> None:
        self.spec = spec or FeatureSpec()
        self.margin = margin
        self.patience = patience
        self.drift_delta = drift_delta
        self.drift_features = drift_features
        self.drift_min_days = drift_min_days
        self.drift_cooldown = drift_cooldown
        self.drift_cooldown_days = drift_cooldown_days
        self.drift_min_effect = drift_min_effect
        self.drift_panel = drift_panel
        self.sample_cap = sample_cap
        self.model: ClusterModel | None = None
        self.reference: tuple[np.ndarray, np.ndarray] | None = None
        self.epoch = 0
        self.members: dict[str, _Membership] = {}
        self.stats = ClusterStats.empty(self.spec, 0, sample_cap)
        self.n_updates = 0
        names = ["distance"] + ([f"feature:{n}" for n in self.spec.names] if drift_features else [])
        self.detectors: dict[str, drift.ADWIN] = {n: drift.ADWIN(delta=drift_delta) for n in names}
        self.quiet_until: dict[str, int] = dict.fromkeys(names, 0)
        self.quiet_until_day: dict[str, float] = dict.fromkeys(names, 0.0)  # profile day (date ordinal)
        self.born: dict[str, int] = {}  # cluster id -> epoch (re-seed count) it appeared in

    # -- model exchange ------------------------------------------------------------------------------
    def set_model(self, model: ClusterModel | None) -> None:
        """Swap in a (newer) fleet model; a re-seeded version re-opens its new and retired clusters once."""
        if model is None or (self.model is not None and model.version <= self.model.version):
            return
        if model.spec != self.spec:
            raise ValueError("model feature spec differs from the assigner's")
        if model.reseeded:
            self.epoch += 1
        if self.model is not None:
            for cid in set(model.ids) - set(self.model.ids):
                self.born[cid] = self.epoch
        if model.reseeded or self.reference is None:
            self.reference = (model.scale_mean.copy(), model.scale_std.copy())
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
        x = np.array([self.spec.vector(f.values) for f in batch])
        self.stats.scaler.learn(x)
        self.stats.add_sample(x, np.array([sample_priority(f"{f.customer_id}|{f.day}") for f in batch]))
        self.stats.n_updates += len(batch)
        self.stats.last_day = max(self.stats.last_day, max(f.day.toordinal() for f in batch))
        if self.model is None:
            self.n_updates += len(batch)
            return []
        model = self.model
        d = model.distances(x)
        nearest = d.argmin(axis=1)
        for j in np.unique(nearest):
            self.stats.add(model.ids[int(j)], x[nearest == j])
        out: list[BehaviourChange | DriftEvent] = []
        assert self.reference is not None
        z = (x - self.reference[0]) / self.reference[1]
        for i, f in enumerate(batch):
            self.n_updates += 1
            j = int(nearest[i])
            change = self._decide(f.customer_id, d[i], j, model)
            at = _end_of(f.day)
            if change is not None:
                prev, reason = change
                pj = model.ids.index(prev) if prev is not None and prev in model.ids else None
                out.append(BehaviourChange(
                    customer_id=f.customer_id, at=at, from_id=prev,
                    from_name=model.names[pj] if pj is not None else None,
                    to_id=model.ids[j], to_name=model.names[j], reason=reason,
                    distance=float(d[i, j]), model_version=model.version,
                ))
            if f.n_days >= self.drift_min_days and self._in_panel(f.customer_id):
                out.extend(self._watch(float(d[i, j]), z[i], at, model.version, f.day.toordinal()))
        return out

    def _decide(
        self, cid: str, dist: np.ndarray, j: int, model: ClusterModel
    ) -> tuple[str | None, Reason] | None:
        target = model.ids[j]
        m = self.members.get(cid)
        if m is None:
            self.members[cid] = _Membership(target, epoch=self.epoch)
            return (None, "initial")
        reopened = m.epoch < self.epoch  # first update since a re-seed
        if m.cluster not in model.ids or (reopened and target != m.cluster and self.born.get(target, 0) > m.epoch):
            # its cluster retired, or (once after a re-seed) its nearest cluster is new: move without hysteresis
            prev = m.cluster
            self.members[cid] = _Membership(target, epoch=self.epoch)
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
        d_cur = float(dist[model.ids.index(m.cluster)])
        if float(dist[j]) <= (1.0 - self.margin) * d_cur:
            prev = m.cluster
            self.members[cid] = _Membership(target, epoch=self.epoch)
            return (prev, "distance_margin")
        m.pending_count = m.pending_count + 1 if m.pending == target else 1
        m.pending = target
        if m.pending_count >= self.patience:
            prev = m.cluster
            self.members[cid] = _Membership(target, epoch=self.epoch)
            return (prev, "persistence")
        return None

    def _in_panel(self, cid: str) -> bool:
        """Whether a customer feeds the drift detectors: a fixed hash panel of about ``drift_panel`` customers."""
        if self.drift_panel <= 0 or len(self.members) <= self.drift_panel:
            return True
        return sample_priority(f"drift|{cid}") * len(self.members) < self.drift_panel

    def _watch(self, distance: float, z: np.ndarray, at: datetime, version: int, day: int) -> list[DriftEvent]:
        out: list[DriftEvent] = []
        values: list[tuple[str, float]] = [("distance", distance)]
        if self.drift_features:
            values += [(f"feature:{n}", float(v)) for n, v in zip(self.spec.names, z, strict=True)]
        for name, v in values:
            det = self.detectors[name]
            before = det.estimation
            det.update(v)
            if not det.drift_detected or self.n_updates < self.quiet_until[name] or day < self.quiet_until_day[name]:
                continue
            after = det.estimation
            if name == "distance" and after <= before:
                continue  # distances fell: the model fits better, nothing to report
            scale = abs(before) if name == "distance" else 1.0
            if abs(after - before) < self.drift_min_effect * scale:
                continue  # significant on this many updates, but too small to matter
            self.quiet_until[name] = self.n_updates + self.drift_cooldown
            self.quiet_until_day[name] = day + self.drift_cooldown_days
            self.stats.drifts += 1
            out.append(DriftEvent(detector=name, at=at, mean_before=before, mean_after=after,
                                  n_updates=self.n_updates, model_version=version))
        return out

    # -- StatefulProcessor ------------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """JSON-serialisable state (ADWIN windows as base64 pickles of river objects)."""
        return {
            "config": {"spec": self.spec.snapshot(), "margin": self.margin, "patience": self.patience,
                       "drift_delta": self.drift_delta, "drift_features": self.drift_features,
                       "drift_min_days": self.drift_min_days, "drift_cooldown": self.drift_cooldown,
                       "drift_cooldown_days": self.drift_cooldown_days, "drift_min_effect": self.drift_min_effect,
                       "drift_panel": self.drift_panel,
                       "sample_cap": self.sample_cap},
            "model": self.model.snapshot() if self.model else None,
            "epoch": self.epoch,
            "reference": None if self.reference is None else [r.tolist() for r in self.reference],
            "members": {c: [m.cluster, m.pending, m.pending_count, m.epoch]
                        for c, m in sorted(self.members.items())},
            "stats": self.stats.snapshot(),
            "n_updates": self.n_updates,
            "detectors": {n: _pack(d) for n, d in self.detectors.items()},
            "quiet_until": dict(self.quiet_until),
            "quiet_until_day": dict(self.quiet_until_day),
            "born": dict(sorted(self.born.items())),
        }

    @classmethod
    def restore(cls, state: Mapping[str, Any]) -> BehaviourAssigner:
        """Inverse of :meth:`snapshot`."""
        c = state["config"]
        a = cls(FeatureSpec.restore(c["spec"]), margin=c["margin"], patience=c["patience"],
                drift_delta=c["drift_delta"], drift_features=c["drift_features"],
                drift_min_days=c["drift_min_days"], drift_cooldown=c["drift_cooldown"],
                drift_cooldown_days=c.get("drift_cooldown_days", 0.0), drift_min_effect=c.get("drift_min_effect", 0.0),
                drift_panel=c.get("drift_panel", 0),
                sample_cap=c["sample_cap"])
        a.model = ClusterModel.restore(state["model"]) if state["model"] else None
        a.epoch = int(state["epoch"])
        ref = state["reference"]
        a.reference = None if ref is None else (np.asarray(ref[0], dtype=float), np.asarray(ref[1], dtype=float))
        a.members = {cid: _Membership(v[0], v[1], int(v[2]), int(v[3])) for cid, v in state["members"].items()}
        a.stats = ClusterStats.restore(state["stats"])
        a.n_updates = int(state["n_updates"])
        a.detectors = {n: _unpack(t) for n, t in state["detectors"].items()}
        a.quiet_until = {n: int(v) for n, v in state["quiet_until"].items()}
        a.quiet_until_day = {n: float(v) for n, v in state.get("quiet_until_day", {}).items()} or dict.fromkeys(
            a.quiet_until, 0.0)
        a.born = {c: int(e) for c, e in state.get("born", {}).items()}
        return a
