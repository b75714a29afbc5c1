"""The fault catalogue and the schedule of faults injected in one run.

Faults are drawn up front, from their own random stream, so the ground truth
is known before the first message is produced and does not depend on chunk
sizes, sinks or speed. Each fault has a window in *simulated minutes since
the start*, ``[start_min, end_min)``: a reading is affected when its
``interval_start`` lies in the window, a heartbeat when its ``ts`` does.

Kinds and what the stream shows (``rate`` = expected faults per meter per day):

=============  ===============================================================
stuck          kwh_import repeats one non-zero value and register_kwh stays
               frozen for 8-48 intervals; heartbeats keep saying ``ok``
spike          one interval's kwh_import multiplied by 20-50
negative       2-8 intervals of negative kwh_import (only meters without export)
voltage        4-16 intervals of voltage far out of range (> 265 V or < 195 V);
               heartbeats in the window are ``degraded`` with ``E_VOLTAGE``
dropout        4-32 intervals with no reading and no heartbeat (meter is late)
clock_skew     heartbeats report clock_offset_s of 300-3600 s (either sign)
duplicate      one reading delivered twice (identical bytes)
out_of_order   one reading held back and delivered after the meter's next 1-3
malformed      one extra message on the readings topic: invalid JSON, a missing
               field, a wrong type, or an unknown meter id
zero_run       8-32 intervals of kwh_import 0 and kwh_export 0 with register_kwh
               not advancing (a dead register); heartbeats keep saying ``ok``
short_dropout  exactly 4 intervals with no reading and no heartbeat (a 1-hour
               outage of a 15-minute meter, the shortest ``dropout``); off by
               default, for benchmarks that score short outages on their own
late_upload    4-16 intervals of readings held back by the head end and
               delivered together 4-24 hours after the last of them (within
               the default 48 h allowed lateness); heartbeats go on. The
               windows they belong to have closed by then: the engine must
               correct them. Off by default, for the late-data benchmark
=============  ===============================================================

Faults never overlap on one meter (a spike inside a dropout could not be
seen, and the ground truth must list only what was produced).

Examples:
    >>> cfg = FaultConfig.parse(["spike=0.5", "dropout=0"], base=FaultConfig.none())
    >>> cfg.rates["spike"], cfg.rates["dropout"], cfg.rates["stuck"]
    (0.5, 0.0, 0.0)
    >>> sched = schedule_faults(cfg, meters=100, days=2, interval_minutes=15, seed=1,
    ...                         no_negative=np.zeros(100, bool), heartbeat_minutes=15)
    >>> 60 < len(sched) < 140 and all(f.kind == "spike" for f in sched)
    True
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

KINDS: tuple[str, ...] = (
    "stuck", "spike", "negative", "voltage", "dropout", "clock_skew", "duplicate", "out_of_order", "malformed",
    "zero_run", "short_dropout", "late_upload",
)
#: kinds that change what heartbeats say (their windows apply to heartbeat timestamps)
HEARTBEAT_KINDS = frozenset({"voltage", "dropout", "clock_skew", "short_dropout"})
#: kinds during which the meter sends nothing at all
OUTAGE_KINDS = frozenset({"dropout", "short_dropout"})
MALFORMED_KINDS: tuple[str, ...] = ("invalid_json", "missing_field", "wrong_type", "unknown_meter")

DEFAULT_RATES: dict[str, float] = {
    "stuck": 0.003,
    "spike": 0.005,
    "negative": 0.003,
    "voltage": 0.003,
    "dropout": 0.004,
    "clock_skew": 0.002,
    "duplicate": 0.01,
    "out_of_order": 0.01,
    "malformed": 0.005,
    "zero_run": 0.003,
    "short_dropout": 0.0,
    "late_upload": 0.0,
}

#: duration range in intervals (inclusive)
DURATIONS: dict[str, tuple[int, int]] = {
    "stuck": (8, 48),
    "spike": (1, 1),
    "negative": (2, 8),
    "voltage": (4, 16),
    "dropout": (4, 32),
    "clock_skew": (8, 96),
    "duplicate": (1, 1),
    "out_of_order": (1, 1),
    "malformed": (1, 1),
    "zero_run": (8, 32),
    "short_dropout": (4, 4),
    "late_upload": (4, 16),
}


@dataclass(frozen=True)
class FaultConfig:
    """Fault rates per kind, in expected faults per meter per simulated day."""

    rates: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_RATES))

    @classmethod
    def none(cls) -> FaultConfig:
        return cls({k: 0.0 for k in KINDS})

    @classmethod
    def parse(cls, items: Iterable[str], base: FaultConfig | None = None) -> FaultConfig:
        """Apply ``kind=rate`` overrides (``all=rate`` sets every kind) to ``base`` (default rates)."""
        rates = dict((base or cls()).rates)
        for item in items:
            kind, sep, value = item.partition("=")
            kind = kind.strip()
            if not sep:
                raise ValueError(f"fault rate {item!r}: expected KIND=RATE, e.g. stuck=0.01")
            try:
                rate = float(value)
            except ValueError:
                raise ValueError(f"fault rate {item!r}: {value!r} is not a number") from None
            if not 0.0 <= rate <= 10.0:
                raise ValueError(f"fault rate {item!r}: rate must be within [0, 10] faults per meter-day")
            if kind == "all":
                rates = {k: rate for k in KINDS}
            elif kind in KINDS:
                rates[kind] = rate
            else:
                raise ValueError(f"unknown fault kind {kind!r}; choose one of: {', '.join(KINDS)}, all")
        return cls(rates)


@dataclass
class Fault:
    """One injected fault. ``meter`` is the meter index; times are simulated minutes since the start."""

    kind: str
    meter: int
    start_min: int
    end_min: int
    detail: dict[str, Any] = field(default_factory=dict)

    def covers(self, minute: int) -> bool:
        return self.start_min <= minute < self.end_min


def schedule_faults(
    config: FaultConfig,
    *,
    meters: int,
    days: int,
    interval_minutes: int,
    seed: int,
    no_negative: np.ndarray,
    heartbeat_minutes: int,
) -> list[Fault]:
    """Draw every fault of the run, sorted by start (then meter, kind)."""
    n_intervals = days * 1440 // interval_minutes
    busy: dict[int, list[tuple[int, int]]] = {}
    faults: list[Fault] = []
    for number, kind in enumerate(KINDS):
        # one random stream per kind: changing one rate leaves the other kinds' faults in place
        rng = np.random.default_rng(np.random.SeedSequence([seed, 3, number]))
        rate = config.rates.get(kind, 0.0)
        if rate <= 0.0 or n_intervals == 0:
            continue
        if kind == "clock_skew" and heartbeat_minutes <= 0:
            log.info("clock_skew faults need heartbeats (--heartbeat-minutes > 0); none injected")
            continue
        count = int(rng.poisson(rate * meters * days))
        lo, hi = DURATIONS[kind]
        if kind == "clock_skew":
            lo = max(lo, -(-2 * heartbeat_minutes // interval_minutes))
            hi = max(hi, lo)
        placed = 0
        for _ in range(count):
            for _attempt in range(10):
                meter = int(rng.integers(0, meters))
                if kind == "negative" and no_negative[meter]:
                    continue
                j0 = int(rng.integers(0, n_intervals))
                dur = int(rng.integers(lo, hi + 1))
                j1 = min(j0 + dur, n_intervals)
                detail: dict[str, Any] = {}
                reserve_end = j1
                if kind == "out_of_order":
                    delay = int(rng.integers(1, 4))
                    if j0 + delay >= n_intervals:
                        continue
                    detail["delay_intervals"] = delay
                    reserve_end = j0 + delay + 1
                elif kind == "late_upload":
                    delay = int(rng.integers(4 * 60, 24 * 60 + 1)) // interval_minutes
                    if j1 - 1 + delay >= n_intervals:
                        continue  # delivered within the run, so the ground truth lists only what was sent
                    detail["delay_intervals"] = delay
                elif kind == "spike":
                    detail["factor"] = round(float(rng.uniform(20.0, 50.0)), 2)
                elif kind == "clock_skew":
                    detail["clock_offset_s"] = round(float(rng.uniform(300.0, 3600.0) * rng.choice([-1, 1])), 2)
                elif kind == "malformed":
                    detail["variant"] = MALFORMED_KINDS[int(rng.integers(0, len(MALFORMED_KINDS)))]
                elif kind == "voltage":
                    detail["direction"] = "high" if rng.random() < 0.6 else "low"
                # keep a one-interval gap around faults so windows never touch either
                windows = busy.setdefault(meter, [])
                if any(a - 1 < reserve_end and j0 < b + 1 for a, b in windows):
                    continue
                windows.append((j0, reserve_end))
                faults.append(Fault(kind, meter, j0 * interval_minutes, j1 * interval_minutes, detail))
                placed += 1
                break
        if placed < count:
            log.info("fault %s: placed %d of %d drawn (meters too busy)", kind, placed, count)
    faults.sort(key=lambda f: (f.start_min, f.meter, KINDS.index(f.kind)))
    return faults


class ActiveFaults:
    """Faults active at a non-decreasing sequence of minutes (two-pointer sweep, cheap per step)."""

    def __init__(self, faults: Sequence[Fault], kinds: Iterable[str] | None = None) -> None:
        wanted = set(kinds) if kinds is not None else set(KINDS)
        self._pending = [f for f in faults if f.kind in wanted]
        self._next = 0
        self._active: list[Fault] = []

    def at(self, minute: int) -> list[Fault]:
        while self._next < len(self._pending) and self._pending[self._next].start_min <= minute:
            self._active.append(self._pending[self._next])
            self._next += 1
        self._active = [f for f in self._active if f.end_min > minute]
        return [f for f in self._active if f.start_min <= minute]
