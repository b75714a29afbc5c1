"""Per-meter health state (good / fair / poor with reasons) and its alert transitions.

The state of a meter is a bit mask of active finding kinds; ``poor`` if any
active kind has severity ``poor``, ``fair`` if any is active, else ``good``.
Alerts are produced only where a bit flips — one ``raised`` when a kind
becomes active, one ``cleared`` when it stops — never for a finding that is
merely still true, so a meter stuck for a day yields two alerts, not 96.

Examples:
    >>> import numpy as np
    >>> m = HealthStateMachine(HealthConfig())
    >>> m.ensure_rows(1)
    >>> alerts, changes = m.transition(np.array([0]), np.array([60]), np.array([bit("spike")], np.uint16), ["M1"])
    >>> [(a.kind, a.status, a.previous_health, a.health) for a in alerts], changes[0].reasons
    ([('spike', 'raised', 'good', 'fair')], ('spike',))
    >>> m.transition(np.array([0]), np.array([120]), np.array([bit("spike")], np.uint16), ["M1"])
    ([], [])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from processors.columns import F64, I64, grow_rows
from processors.health.config import KINDS, HealthConfig

HEALTH_STATES: tuple[str, ...] = ("good", "fair", "poor")
U16 = npt.NDArray[np.uint16]


def bit(kind: str) -> int:
    """Bit of a finding kind in the active mask."""
    return 1 << KINDS.index(kind)


def reasons_of(mask: int) -> tuple[str, ...]:
    """Active kinds of a mask, in :data:`KINDS` order."""
    return tuple(k for i, k in enumerate(KINDS) if mask >> i & 1)


@dataclass(frozen=True, slots=True)
class HealthAlert:
    """One ``meter.alerts`` event: a finding kind raised or cleared on a meter."""

    meter_id: str
    kind: str
    status: Literal["raised", "cleared"]
    at: int
    """Event time (epoch s) of the reading/heartbeat, or the timer's clock for ``silent``."""
    health: str
    previous_health: str
    reasons: tuple[str, ...]
    value: float | None = None
    """The measurement behind a raise (z-score, voltage, kWh, missing count ...), if any."""

    def to_record(self) -> dict[str, Any]:
        """JSON-ready payload."""
        return {
            "meter_id": self.meter_id,
            "kind": self.kind,
            "status": self.status,
            "at": self.at,
            "health": self.health,
            "previous_health": self.previous_health,
            "reasons": list(self.reasons),
            "value": self.value,
        }


@dataclass(frozen=True, slots=True)
class MeterHealth:
    """A meter's current health (what the agent writes to Redis when it changes)."""

    meter_id: str
    state: str
    reasons: tuple[str, ...]
    since: int

    def to_record(self) -> dict[str, Any]:
        return {"meter_id": self.meter_id, "state": self.state, "reasons": list(self.reasons), "since": self.since}


class HealthStateMachine:
    """Active-finding masks per row and the alerts their changes cause."""

    def __init__(self, config: HealthConfig) -> None:
        self.config = config
        self.poor = config.poor_mask()
        self.active: U16 = np.zeros(0, np.uint16)
        self.since: I64 = np.zeros(0, np.int64)

    def ensure_rows(self, n: int) -> None:
        self.active = grow_rows(self.active, n, 0)
        self.since = grow_rows(self.since, n, 0)

    def state_codes(self, masks: npt.NDArray[Any]) -> npt.NDArray[np.int8]:
        """0 good, 1 fair, 2 poor for each mask."""
        m = masks.astype(np.int64)
        out: npt.NDArray[np.int8] = np.where(m & self.poor, 2, np.where(m != 0, 1, 0)).astype(np.int8)
        return out

    def transition(
        self,
        rows: I64,
        at: I64,
        new: U16,
        ids: Sequence[str],
        values: Mapping[str, F64] | None = None,
    ) -> tuple[list[HealthAlert], list[MeterHealth]]:
        """Set the masks of ``rows`` (unique) to ``new``; return alerts and changed meter states."""
        old = self.active[rows]
        changed = np.flatnonzero(old != new)
        if not len(changed):
            return [], []
        rw, o, n, t = rows[changed], old[changed], new[changed], at[changed]
        s_old, s_new = self.state_codes(o), self.state_codes(n)
        self.active[rw] = n
        moved = s_old != s_new
        self.since[rw[moved]] = t[moved]
        alerts: list[HealthAlert] = []
        changes: list[MeterHealth] = []
        vals = {k: v[changed] for k, v in (values or {}).items()}
        for j, (r, om, nm, tt) in enumerate(zip(rw.tolist(), o.tolist(), n.tolist(), t.tolist(), strict=True)):
            reasons = reasons_of(nm)
            prev, cur = HEALTH_STATES[int(s_old[j])], HEALTH_STATES[int(s_new[j])]
            diff = om ^ nm
            for i, kind in enumerate(KINDS):
                if diff >> i & 1:
                    raised = bool(nm >> i & 1)
                    value = float(vals[kind][j]) if raised and kind in vals else None
                    alerts.append(
                        HealthAlert(ids[r], kind, "raised" if raised else "cleared", tt, cur, prev, reasons, value)
                    )
            changes.append(MeterHealth(ids[r], cur, reasons, int(self.since[r])))
        return alerts, changes

    def sequence(
        self,
        rows: I64,
        at: I64,
        old: U16,
        new: U16,
        ids: Sequence[str],
        values: Mapping[str, F64] | None = None,
    ) -> tuple[list[HealthAlert], list[MeterHealth]]:
        """Apply mask changes reading by reading: ``rows`` grouped and in time order, ``old[i]`` the mask
        before step ``i`` (``new[i - 1]`` within a row's group), ``new[i]`` after it."""
        alerts: list[HealthAlert] = []
        changes: list[MeterHealth] = []
        changed = np.flatnonzero(old != new)
        if len(changed):
            s_old, s_new = self.state_codes(old[changed]), self.state_codes(new[changed])
            vals = {k: v[changed].tolist() for k, v in (values or {}).items()}
            rw, o, n, t = rows[changed].tolist(), old[changed].tolist(), new[changed].tolist(), at[changed].tolist()
            for j, (r, om, nm, tt) in enumerate(zip(rw, o, n, t, strict=True)):
                reasons = reasons_of(nm)
                prev, cur = HEALTH_STATES[int(s_old[j])], HEALTH_STATES[int(s_new[j])]
                if prev != cur:
                    self.since[r] = tt
                diff = om ^ nm
                for i, kind in enumerate(KINDS):
                    if diff >> i & 1:
                        raised = bool(nm >> i & 1)
                        value = float(vals[kind][j]) if raised and kind in vals else None
                        alerts.append(
                            HealthAlert(ids[r], kind, "raised" if raised else "cleared", tt, cur, prev, reasons, value)
                        )
                changes.append(MeterHealth(ids[r], cur, reasons, int(self.since[r])))
        last = np.ones(len(rows), np.bool_)
        last[:-1] = rows[1:] != rows[:-1]
        self.active[rows[last]] = new[last]
        return alerts, changes

    def counts(self, n_rows: int) -> dict[str, int]:
        """Meters per health state (the ``meters by health state`` gauge)."""
        codes = self.state_codes(self.active[:n_rows])
        c = np.bincount(codes, minlength=3)
        return {s: int(c[i]) for i, s in enumerate(HEALTH_STATES)}
