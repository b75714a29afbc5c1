"""Meter health: VEE-style rules over readings and heartbeats, per-meter state, alerts on change.

:class:`HealthMonitor` keeps compact per-meter arrays (last reading, register,
sequence number, a short history of values for the spike rule, last
heartbeat status, last sign of life) and evaluates every rule on whole arrays.

Readings of one meter must be judged in event-time order (a stuck run or a
sequence gap is a property of consecutive readings), yet a batch envelope may
hold many readings of one meter (a head-end block of hours). Readings are
therefore sorted by (meter, event time) and every per-meter recurrence is a
*segmented scan* (``np.maximum.accumulate`` over positions, seeded by the
meter's state): the result equals feeding the readings one at a time in
event-time order, at array speed whatever the batch's shape. Heartbeats,
usually one per meter per batch, go in *rounds* (the r-th heartbeat of every
meter in round r).

Rule families live in their own modules: :mod:`.plausibility` (negative
consumption, voltage), :mod:`.spike` (robust z-score), :mod:`.register`
(stuck), :mod:`.sequence` (gaps), :mod:`.heartbeat` (fault, degraded, error
codes, clock skew), :mod:`.silence` (late meters, by timer); :mod:`.state`
turns findings into good/fair/poor and raised/cleared alerts.

Examples:
    >>> from stream.schemas import MeterInfo
    >>> from processors.columns import EPOCH, HeartbeatColumns, MeterRegistry, ReadingColumns
    >>> reg = MeterRegistry([MeterInfo(meter_id="M1", customer_id="C1", region="N",
    ...                                tariff="prepaid", installed_on=EPOCH)])
    >>> row = {"meter_id": "M1", "customer_id": "C1", "voltage": 230.0}
    >>> rows = [{**row, "interval_start": 900 * k, "kwh_import": 0.5, "register_kwh": 10.0, "seq": k}
    ...         for k in range(4)]   # same non-zero value, frozen register: stuck
    >>> h = HealthMonitor()
    >>> out = h.process(ReadingColumns.from_rows(reg, rows))
    >>> [(a.kind, a.status, a.health, a.at) for a in out.alerts]
    [('stuck_register', 'raised', 'poor', 1800)]
    >>> h.process(ReadingColumns.from_rows(reg, rows)).alerts   # redelivery: nothing new
    []
    >>> [(a.kind, a.status) for a in h.check_silence(now=3600 + 4 * 900).alerts]
    [('silent', 'raised')]
    >>> hb = HeartbeatColumns.from_rows(reg, [{"meter_id": "M1", "ts": 9000, "status": "ok"}])
    >>> [(a.kind, a.status) for a in h.process(hb).alerts]
    [('silent', 'cleared')]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Self

import numpy as np
import numpy.typing as npt

from processors.columns import (
    BOOL,
    F64,
    I64,
    HeartbeatColumns,
    MeterRows,
    ReadingColumns,
    grow_rows,
    pack_array,
    unpack_array,
)
from processors.health.config import EVENT_KINDS, KINDS, HealthConfig
from processors.health.heartbeat import conditions
from processors.health.plausibility import negative, voltage_out
from processors.health.register import repeats
from processors.health.sequence import gap
from processors.health.silence import NEVER, silent
from processors.health.spike import history_stats
from processors.health.state import HEALTH_STATES, HealthAlert, HealthStateMachine, MeterHealth, bit, reasons_of

__all__ = [
    "HEALTH_STATES",
    "KINDS",
    "HealthAlert",
    "HealthConfig",
    "HealthMonitor",
    "HealthOutput",
    "MeterHealth",
]

_NONE = np.iinfo(np.int64).min
_CLEAN_CAP = 1 << 30


@dataclass(slots=True)
class HealthOutput:
    """Alerts (state changes per kind) and the meters whose health record changed."""

    alerts: list[HealthAlert] = field(default_factory=list)
    changes: list[MeterHealth] = field(default_factory=list)

    def extend(self, alerts: list[HealthAlert], changes: list[MeterHealth]) -> None:
        self.alerts += alerts
        self.changes += changes


def _rounds(rows: I64, t: I64) -> list[I64]:
    """Split positions into rounds: the r-th reading (by time) of every row goes to round r."""
    n = len(rows)
    if n == 0:
        return []
    order = np.lexsort((t, rows))
    rs = rows[order]
    first = np.ones(n, np.bool_)
    first[1:] = rs[1:] != rs[:-1]
    ar = np.arange(n)
    rank = ar - np.maximum.accumulate(np.where(first, ar, 0))
    top = int(rank.max())
    if top == 0:
        return [order]
    by_rank = order[np.argsort(rank, kind="stable")]
    bounds = np.cumsum(np.bincount(rank, minlength=top + 1))
    return np.split(by_rank, bounds[:-1])


class HealthMonitor:
    """Per-meter health from readings and heartbeats; ``check_silence`` from a timer.

    Args:
        config: thresholds and severities (:class:`HealthConfig`).

    ``process(ReadingColumns | HeartbeatColumns) -> HealthOutput``,
    ``check_silence(now: int | None = None) -> HealthOutput``,
    ``health(meter_id) -> MeterHealth | None``, ``counts() -> {state: n}``.
    Feed it readings after deduplication and the windows' lateness check.
    """

    def __init__(self, config: HealthConfig | None = None) -> None:
        self.config = config or HealthConfig()
        self.rows = MeterRows()
        self.machine = HealthStateMachine(self.config)
        k = self.config.spike_window
        self.last_t = np.zeros(0, np.int64)
        self.last_seq = np.zeros(0, np.int64)
        self.last_import = np.zeros(0, np.float64)
        self.last_register = np.zeros(0, np.float64)
        self.run = np.zeros(0, np.int64)
        self.clean = np.zeros((0, len(EVENT_KINDS)), np.int64)
        self.hb_status = np.zeros(0, np.int8)
        self.hb_ts = np.zeros(0, np.int64)
        self.last_seen = np.zeros(0, np.int64)
        self.interval_s = np.zeros(0, np.int64)
        self.hist = np.zeros((0, k), np.float32)
        self.hist_pos = np.zeros(0, np.int64)
        self.cand_x = np.zeros(0, np.float64)
        self.cand_z = np.zeros(0, np.float64)
        self.stream_time = _NONE
        """Latest sign of life seen from any meter (the default clock of :meth:`check_silence`)."""

    _FILL: dict[str, Any] = {
        "last_t": _NONE, "last_seq": -1, "last_import": np.nan, "last_register": np.nan, "run": 0, "clean": 0,
        "hb_status": 0, "hb_ts": _NONE, "last_seen": NEVER, "interval_s": 0, "hist": np.nan, "hist_pos": 0,
        "cand_x": np.nan, "cand_z": np.nan,
    }  # fmt: skip

    def _ensure(self) -> None:
        n = len(self.rows)
        if len(self.last_t) >= n:
            return
        for name, fill in self._FILL.items():
            setattr(self, name, grow_rows(getattr(self, name), n, fill))
        self.machine.ensure_rows(n)

    # -- readings -----------------------------------------------------------------
    def process(self, batch: ReadingColumns | HeartbeatColumns) -> HealthOutput:
        """Evaluate the rules on a batch of readings or heartbeats."""
        if isinstance(batch, HeartbeatColumns):
            return self._heartbeats(batch)
        out = HealthOutput()
        if not len(batch):
            return out
        rows = self.rows.rows_of(batch.registry, batch.meter)
        self._ensure()
        out.extend(*self._readings(batch, rows))
        return out

    def _readings(self, batch: ReadingColumns, rows_in: I64) -> tuple[list[HealthAlert], list[MeterHealth]]:
        """All rules for a batch, sequential per meter yet without a Python loop over readings.

        Readings are sorted by (meter, event time); every per-meter recurrence
        (previous in-order reading, run of repeats, readings since a finding
        fired, last set/clear event) is a segmented scan done with
        ``np.maximum.accumulate`` over positions, seeded by the meter's state
        at the start of its segment.
        """
        cfg = self.config
        reg = batch.registry
        order = np.lexsort((batch.interval_start, rows_in))
        rw = rows_in[order]
        n = len(rw)
        pos = np.arange(n)
        slots = batch.meter[order]
        t = batch.interval_start[order]
        x = batch.kwh_import[order]
        register = batch.register_kwh[order]
        seq = batch.seq[order]
        volts = batch.voltage[order]
        interval = batch.interval_minutes[order] * 60
        first = np.ones(n, np.bool_)
        first[1:] = rw[1:] != rw[:-1]
        last = np.ones(n, np.bool_)
        last[:-1] = first[1:]
        start = np.maximum.accumulate(np.where(first, pos, 0))

        def since(events: npt.NDArray[np.bool_]) -> tuple[I64, npt.NDArray[np.bool_]]:
            """Index of the latest event at or before each position in its segment, and whether there is one."""
            latest = np.maximum.accumulate(np.where(events, pos, -1))
            return latest, latest >= start

        prev_t = np.full(n, _NONE, np.int64)
        prev_t[1:] = t[:-1]
        prev_t[first] = _NONE
        in_order = (t > self.last_t[rw]) & (t > prev_t)
        latest_io, _ = since(in_order)
        prev_io = np.full(n, -1, np.int64)
        prev_io[1:] = latest_io[:-1]
        has_prev = prev_io >= start
        pi = np.maximum(prev_io, 0)

        def before(values: npt.NDArray[Any], state: npt.NDArray[Any]) -> npt.NDArray[Any]:
            """Value at the previous in-order reading of the meter, else the meter's state."""
            return np.where(has_prev, values[pi], state[rw])

        prev_import = before(x, self.last_import)
        prev_seq = before(seq, self.last_seq)
        neg = negative(x, reg.has_export[slots], cfg.negative_tolerance_kwh)
        vol = voltage_out(volts, reg.nominal_voltage[slots], cfg.voltage_tolerance)
        gaps = gap(seq, prev_seq, cfg.sequence_gap_min) & in_order
        missing = seq - prev_seq - 1

        # Stuck: runs of repeating in-order readings, seeded by the meter's current run.
        rep = repeats(x, prev_import, register, before(register, self.last_register)) & in_order
        reps = np.cumsum(rep)
        reset, has_reset = since(in_order & ~rep)
        before_start = np.where(start > 0, reps[np.maximum(start - 1, 0)], 0)
        run = np.where(has_reset, reps - reps[np.maximum(reset, 0)], self.run[rw] + reps - before_start)
        stuck = (run >= cfg.stuck_intervals - 1) & (self.hb_status[rw] == 0)
        unstuck = in_order & (run == 0)

        spk, z = self._spike_candidates(x, prev_import, rw, pos, start)
        if cfg.spike_confirm:
            # An isolated spike falls back on the next interval; a ramp (EV charging, heating) stays up.
            cand = np.where(has_prev, np.where(spk[pi], x[pi], np.nan), self.cand_x[rw])
            cand_z = np.where(has_prev, np.where(spk[pi], z[pi], np.nan), self.cand_z[rw])
            fired_spike = in_order & ~np.isnan(cand) & (x * cfg.spike_fall_ratio < cand)
            spike_z = np.where(fired_spike, cand_z, z)
        else:
            fired_spike, spike_z = spk, z

        init = self.machine.active[rw].astype(np.int64)
        new = init.copy()
        clean_end = np.zeros((n, len(EVENT_KINDS)), np.int64)
        for k, (kind, fired) in enumerate(
            (("negative_consumption", neg), ("spike", fired_spike), ("voltage", vol), ("sequence_gap", gaps))
        ):
            b = bit(kind)
            lf, has_f = since(fired)
            clean = np.where(has_f, pos - lf, self.clean[rw, k] + (pos - start + 1))
            clean_end[:, k] = np.minimum(clean, _CLEAN_CAP)
            on = fired | ((clean < cfg.clear_after) & (has_f | ((init & b) != 0)))
            new = np.where(on, new | b, new & ~b)
        sb = bit("stuck_register")
        ev, has_ev = since(stuck | unstuck)
        stuck_on = np.where(has_ev, stuck[np.maximum(ev, 0)], (init & sb) != 0)
        new = np.where(stuck_on, new | sb, new & ~sb)
        new &= ~bit("silent")
        old = np.empty(n, np.int64)
        old[1:] = new[:-1]
        old[first] = init[first]

        # State at the end of each meter's segment.
        ends = np.flatnonzero(last)
        r_end = rw[ends]
        lio = latest_io[ends]
        ok = lio >= start[ends]
        io_rows, io_at = r_end[ok], lio[ok]
        self.last_t[io_rows] = t[io_at]
        self.last_seq[io_rows] = seq[io_at]
        self.last_import[io_rows] = x[io_at]
        self.last_register[io_rows] = register[io_at]
        if cfg.spike_confirm:
            self.cand_x[io_rows] = np.where(spk[io_at], x[io_at], np.nan)
            self.cand_z[io_rows] = np.where(spk[io_at], z[io_at], np.nan)
        self.run[r_end] = run[ends]
        self.clean[r_end] = clean_end[ends]
        k_hist = cfg.spike_window
        size = ends - start[ends] + 1
        offset = pos - start
        keep = offset >= (size - k_hist)[np.searchsorted(ends, pos)]  # only the last K of a segment matter
        pos0 = self.hist_pos[rw]
        self.hist[rw[keep], (pos0[keep] + offset[keep]) % k_hist] = x[keep]
        self.hist_pos[r_end] = (self.hist_pos[r_end] + size) % k_hist
        np.maximum.at(self.last_seen, rw, t + interval)
        self.interval_s[r_end] = interval[ends]
        self.stream_time = max(self.stream_time, int((t + interval).max()))

        values = {
            "negative_consumption": x, "spike": spike_z, "voltage": volts,
            "stuck_register": (run + 1).astype(np.float64), "sequence_gap": missing.astype(np.float64),
        }  # fmt: skip
        return self.machine.sequence(rw, t, old.astype(np.uint16), new.astype(np.uint16), self.rows.ids, values)

    def _spike_candidates(self, x: F64, prev_import: F64, rw: I64, pos: I64, start: I64) -> tuple[BOOL, F64]:
        """Readings that pass the spike tests (before confirmation), and their robust z-scores.

        The cheap jump test runs on every reading; history statistics only on
        the few that jump. A reading's history is the meter's ring plus the
        readings before it in this batch (the last ``spike_window`` of them).
        """
        cfg = self.config
        n = len(x)
        spk = np.zeros(n, np.bool_)
        z = np.zeros(n, np.float64)
        prev = np.nan_to_num(prev_import, nan=np.inf)  # no previous interval: no jump test passes
        jump = np.flatnonzero(x > cfg.spike_jump_ratio * np.maximum(prev, cfg.spike_min_level_kwh))
        if not len(jump):
            return spk, z
        k_hist = cfg.spike_window
        hist = self.hist[rw[jump]].copy()
        for j, i in enumerate(jump.tolist()):
            q = i - int(start[i])
            if q == 0:
                continue
            ring = self.hist[rw[i]]
            p0 = int(self.hist_pos[rw[i]])
            recent_state = ring[(p0 - 1 - np.arange(max(k_hist - q, 0))) % k_hist]
            batch_vals = x[max(int(start[i]), i - k_hist) : i].astype(np.float32)
            row = np.full(k_hist, np.nan, np.float32)
            merged = np.concatenate([recent_state, batch_vals])
            row[: len(merged)] = merged
            hist[j] = row
        xj = x[jump]
        zj, p95, top, n_hist = history_stats(hist, xj, min_mad=cfg.spike_min_mad_kwh)
        z[jump] = zj
        spk[jump] = (
            (n_hist >= cfg.spike_min_history)
            & (zj > cfg.spike_z)
            & (xj > cfg.spike_ratio_p95 * p95)
            & ((n_hist >= cfg.spike_warmup) | (xj > cfg.spike_warmup_ratio_max * top))
        )
        return spk, z

    # -- heartbeats ---------------------------------------------------------------
    def _heartbeats(self, batch: HeartbeatColumns) -> HealthOutput:
        out = HealthOutput()
        if not len(batch):
            return out
        rows = self.rows.rows_of(batch.registry, batch.meter)
        self._ensure()
        fresh = self.interval_s[rows] <= 0
        if fresh.any():
            self.interval_s[rows[fresh]] = batch.registry.interval_minutes[batch.meter[fresh]] * 60
        for idx in _rounds(rows, batch.ts):
            rw = rows[idx]
            ts = batch.ts[idx]
            in_order = (self.hb_ts[rw] == _NONE) | (ts >= self.hb_ts[rw])
            cond = conditions(
                batch.status[idx], batch.n_error_codes[idx], batch.clock_offset_s[idx], self.config.clock_skew_s
            )
            new = self.machine.active[rw].astype(np.int64)
            for kind, holds in cond.items():
                b = bit(kind)
                new = np.where(in_order, np.where(holds, new | b, new & ~b), new)
            new &= ~bit("silent")
            o = rw[in_order]
            self.hb_status[o] = batch.status[idx][in_order]
            self.hb_ts[o] = ts[in_order]
            self.last_seen[rw] = np.maximum(self.last_seen[rw], ts)
            self.stream_time = max(self.stream_time, int(ts.max()))
            values: dict[str, F64] = {"clock_skew": batch.clock_offset_s[idx]}
            out.extend(*self.machine.transition(rw, ts, new.astype(np.uint16), self.rows.ids, values))
        return out

    # -- timer --------------------------------------------------------------------
    def check_silence(self, now: int | None = None) -> HealthOutput:
        """Raise ``silent`` for meters not heard from for ``silent_intervals`` intervals.

        ``now`` is the stream clock in epoch seconds: the wall clock when the
        stream is live, the simulated clock in a simulation. Default: the
        latest sign of life seen from any meter, which does not mistake
        consumer lag for silent meters.
        """
        out = HealthOutput()
        n = len(self.rows)
        if n == 0 or (now is None and self.stream_time == _NONE):
            return out
        clock = self.stream_time if now is None else int(now)
        sb = bit("silent")
        quiet = silent(self.last_seen[:n], self.interval_s[:n], now=clock, k=self.config.silent_intervals)
        rw = np.flatnonzero(quiet & ((self.machine.active[:n].astype(np.int64) & sb) == 0))
        if len(rw):
            new = (self.machine.active[rw].astype(np.int64) | sb).astype(np.uint16)
            missed = ((clock - self.last_seen[rw]) // np.maximum(self.interval_s[rw], 1)).astype(np.float64)
            at = np.full(len(rw), clock, np.int64)
            out.extend(*self.machine.transition(rw, at, new, self.rows.ids, {"silent": missed}))
        return out

    # -- queries ------------------------------------------------------------------
    def health(self, meter_id: str) -> MeterHealth | None:
        """Current health of one meter (``None`` if never seen)."""
        r = self.rows.row(meter_id)
        if r is None:
            return None
        mask = int(self.machine.active[r])
        code = int(self.machine.state_codes(np.array([mask]))[0])
        return MeterHealth(meter_id, HEALTH_STATES[code], reasons_of(mask), int(self.machine.since[r]))

    def counts(self) -> dict[str, int]:
        """Meters per health state."""
        return self.machine.counts(len(self.rows))

    # -- protocol -----------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """Per-meter arrays (packed, bit-exact) keyed by the row list of meter ids."""
        n = len(self.rows)
        return {
            "config": self.config.model_dump(mode="json"),
            "meters": self.rows.ids,
            "active": pack_array(self.machine.active[:n]),
            "since": pack_array(self.machine.since[:n]),
            "stream_time": None if self.stream_time == _NONE else self.stream_time,
            **{name: pack_array(getattr(self, name)[:n]) for name in self._FILL},
        }

    @classmethod
    def restore(cls, state: dict[str, Any]) -> Self:
        """Rebuild from :meth:`snapshot` output."""
        h = cls(HealthConfig.model_validate(state["config"]))
        h.rows = MeterRows(state["meters"])
        for name in cls._FILL:
            setattr(h, name, unpack_array(state[name]))
        h.machine.active = unpack_array(state["active"])
        h.machine.since = unpack_array(state["since"])
        h.stream_time = _NONE if state["stream_time"] is None else state["stream_time"]
        return h
