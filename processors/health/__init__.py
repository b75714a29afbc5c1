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
consumption, voltage), :mod:`.spike` (robust statistics per time-of-day
band), :mod:`.register` (stuck, calibrated to the resolution), :mod:`.zero`
(dead register), :mod:`.sequence` (gaps, after a grace for reordering),
:mod:`.heartbeat` (fault, degraded, error codes, clock skew), :mod:`.silence`
(late meters on their interval grid, by timer); :mod:`.scan` holds the
segmented scans; :mod:`.state` turns findings into good/fair/poor and
raised/cleared alerts.

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

import math
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
from processors.health.register import frozen, level_band, same_value, unlikely_run
from processors.health.scan import add_counts, counts_before, counts_table, latest, run_length, sum_since_reset
from processors.health.sequence import PendingGaps
from processors.health.silence import NEVER, silent
from processors.health.spike import day_band, judge_jumps, push_peaks, push_rings
from processors.health.state import HEALTH_STATES, HealthAlert, HealthStateMachine, MeterHealth, bit, reasons_of
from processors.health.zero import evidence_mdec, zero_reading

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
_ZERO = np.zeros((1, 1), np.int64)


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

    Per-meter state is about 700 bytes: the spike rings (``day_bands`` ×
    ``spike_band_window`` float16), the equal-value counts per level band and
    the zero counts per time-of-day band (int32), and a few scalars.
    """

    def __init__(self, config: HealthConfig | None = None) -> None:
        self.config = config or HealthConfig()
        cfg = self.config
        self.rows = MeterRows()
        self.machine = HealthStateMachine(self.config)
        self.gaps = PendingGaps()
        self.last_t = np.zeros(0, np.int64)
        self.last_seq = np.zeros(0, np.int64)
        self.last_import = np.zeros(0, np.float64)
        self.last_register = np.zeros(0, np.float64)
        self.run = np.zeros(0, np.int64)
        """Consecutive in-order readings with the register frozen under load."""
        self.run_same = np.zeros(0, np.int64)
        self.run_zero = np.zeros(0, np.int64)
        self.zero_mdec = np.zeros(0, np.int64)
        self.eq_pairs = np.zeros((0, cfg.stuck_level_bands), np.int32)
        self.eq_equal = np.zeros((0, cfg.stuck_level_bands), np.int32)
        self.zero_seen = np.zeros((0, cfg.day_bands), np.int32)
        self.zero_count = np.zeros((0, cfg.day_bands), np.int32)
        self.run_seen = np.zeros((0, cfg.day_bands), np.int32)
        """``zero_seen`` as it was when the current zero run began."""
        self.run_zeros = np.zeros((0, cfg.day_bands), np.int32)
        self.clean = np.zeros((0, len(EVENT_KINDS)), np.int64)
        self.hb_status = np.zeros(0, np.int8)
        self.hb_ts = np.zeros(0, np.int64)
        self.last_seen = np.zeros(0, np.int64)
        self.interval_s = np.zeros(0, np.int64)
        self.silence_due = -math.inf
        """No meter can turn silent before this event time (a lower bound; -inf: not known, sweep). The timer
        skips its sweep of every meter until then; meters that report fold their new due time in."""
        self.ring = np.zeros((0, cfg.day_bands, cfg.spike_band_window), np.float16)
        self.ring_pos = np.zeros((0, cfg.day_bands), np.int64)
        self.peak_val = np.zeros((0, cfg.spike_peak_days), np.float16)
        """Daily maxima of the last ``spike_peak_days`` days (slot ``day % days``), and their day numbers."""
        self.peak_day = np.zeros((0, cfg.spike_peak_days), np.int32)
        self.jump_max = np.zeros(0, np.float16)
        """Largest ratio of a reading to the previous interval (floored) outside spikes: how jumpy the meter is."""
        self.cand_x = np.zeros(0, np.float64)
        self.cand_z = np.zeros(0, np.float64)
        self._judged_spike = np.zeros(0, np.bool_)
        self.stream_time = _NONE
        """Latest sign of life seen from any meter (the default clock of :meth:`check_silence`)."""

    _FILL: dict[str, Any] = {
        "last_t": _NONE, "last_seq": -1, "last_import": np.nan, "last_register": np.nan, "run": 0, "run_same": 0,
        "run_zero": 0, "zero_mdec": 0, "eq_pairs": 0, "eq_equal": 0, "zero_seen": 0, "zero_count": 0, "run_seen": 0,
        "run_zeros": 0, "clean": 0,
        "hb_status": 0, "hb_ts": _NONE, "last_seen": NEVER, "interval_s": 0, "ring": np.nan, "ring_pos": 0,
        "peak_val": np.nan, "peak_day": -1,
        "cand_x": np.nan, "cand_z": np.nan, "jump_max": 0.0,
    }  # fmt: skip

    def _ensure(self) -> None:
        n = len(self.rows)
        if len(self.last_t) >= n:
            return
        for name, fill in self._FILL.items():
            setattr(self, name, grow_rows(getattr(self, name), n, fill))
        self.machine.ensure_rows(n)
        self.gaps.ensure(n)

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
        (previous in-order reading, runs, counts per band, readings since a
        finding fired, last set/clear event) is a segmented scan
        (:mod:`.scan`), seeded by the meter's state at the start of its segment.
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
        x_out = batch.kwh_export[order]
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
            return latest(events, pos, start)

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
        prev_register = before(register, self.last_register)
        neg = negative(x, reg.has_export[slots], cfg.negative_tolerance_kwh)
        vol = voltage_out(volts, reg.nominal_voltage[slots], cfg.voltage_tolerance)
        gap_fired, gap_missing = self.gaps.judge(
            rw, t, seq, prev_seq, in_order, grace_s=cfg.sequence_gap_grace_s, min_gap=cfg.sequence_gap_min
        )
        hb_ok = self.hb_status[rw] == 0

        # Stuck: a register frozen under load, or a run of equal values unlikely for this meter at this level.
        froze = frozen(x, register, prev_register) & in_order
        same = same_value(x, prev_import) & in_order
        run = run_length(froze, in_order & ~froze, start, self.run, rw)
        run_same = run_length(same, in_order & ~same, start, self.run_same, rw)
        level = level_band(x, cfg.stuck_level_bands)
        pair = in_order & (x > 0.0) & ~np.isnan(prev_import)
        # the run's own equal pairs are not evidence of how often this meter repeats itself
        own = np.where(pair, np.maximum(run_same - 1, 0), 0)
        pairs = counts_before(pair, level, start, self.eq_pairs, rw) - own
        equal = counts_before(pair & same, level, start, self.eq_equal, rw) - own
        none = np.zeros(n, np.int64)
        pairs_all = self.eq_pairs[rw].sum(axis=1) + counts_before(pair, none, start, _ZERO, none) - own
        equal_all = self.eq_equal[rw].sum(axis=1) + counts_before(pair & same, none, start, _ZERO, none) - own
        by_value = (run_same >= cfg.stuck_intervals - 1) & (pairs_all >= cfg.stuck_min_pairs) & unlikely_run(
            run_same, pairs, equal, pairs_all, equal_all,
            cfg.stuck_run_probability, cfg.stuck_prior_equal, cfg.stuck_prior_pairs,
        )  # fmt: skip
        stuck = ((run >= cfg.stuck_intervals - 1) | by_value) & hb_ok
        unstuck = in_order & (run == 0) & (run_same == 0)

        # Dead register: a zero run unlikely for this meter at these times of day.
        tod = day_band(t, cfg.day_bands)
        zero = zero_reading(x, x_out, register, prev_register) & in_order
        # zero rates per band as they were when the run began (the run is not evidence of its own likelihood)
        seen_t = counts_table(in_order, tod, start, self.zero_seen, rw)
        zeros_t = counts_table(zero, tod, start, self.zero_count, rw)
        not_zero = in_order & ~zero
        run_zero = run_length(zero, not_zero, start, self.run_zero, rw)
        run_start = latest(zero & (run_zero == 1), pos, start)
        in_batch = run_start[1] & zero
        rs = np.maximum(run_start[0], 0)
        seen_rs = np.where(in_batch[:, None], seen_t[rs], self.run_seen[rw])
        zeros_rs = np.where(in_batch[:, None], zeros_t[rs], self.run_zeros[rw])
        ar = np.arange(n)
        cost = np.where(zero, evidence_mdec(
            seen_rs[ar, tod], zeros_rs[ar, tod], seen_rs.sum(axis=1), zeros_rs.sum(axis=1),
            cfg.dead_prior_zero, cfg.dead_prior_readings,
        ), 0)  # fmt: skip
        zero_mdec = sum_since_reset(cost, not_zero, start, self.zero_mdec, rw)
        dead = (run_zero >= cfg.dead_min_intervals) & (zero_mdec >= round(1000 * cfg.dead_evidence_decades)) & hb_ok
        alive = not_zero

        spk, z, fall = self._spike_candidates(x, prev_import, rw, tod, t // 86400, start)
        # a candidate's confirmation level: the next interval (floored) must fall below x / its fall ratio
        fall_to = x / fall
        if cfg.spike_confirm:
            # An isolated spike falls back on the next interval; a ramp (EV charging, heating) stays up.
            cand = np.where(has_prev, np.where(spk[pi], fall_to[pi], np.nan), self.cand_x[rw])
            cand_z = np.where(has_prev, np.where(spk[pi], z[pi], np.nan), self.cand_z[rw])
            fired_spike = in_order & ~np.isnan(cand) & (np.maximum(x, cfg.spike_min_level_kwh) < cand)
            spike_z = np.where(fired_spike, cand_z, z)
        else:
            fired_spike, spike_z = spk, z

        init = self.machine.active[rw].astype(np.int64)
        new = init.copy()
        clean_end = np.zeros((n, len(EVENT_KINDS)), np.int64)
        for k, (kind, fired) in enumerate(
            (("negative_consumption", neg), ("spike", fired_spike), ("voltage", vol), ("sequence_gap", gap_fired))
        ):
            b = bit(kind)
            lf, has_f = since(fired)
            clean = np.where(has_f, pos - lf, self.clean[rw, k] + (pos - start + 1))
            clean_end[:, k] = np.minimum(clean, _CLEAN_CAP)
            on = fired | ((clean < cfg.clear_after) & (has_f | ((init & b) != 0)))
            new = np.where(on, new | b, new & ~b)
        for kind, set_, unset in (("stuck_register", stuck, unstuck), ("dead_register", dead, alive)):
            b = bit(kind)
            ev, has_ev = since(set_ | unset)
            on = np.where(has_ev, set_[np.maximum(ev, 0)], (init & b) != 0)
            new = np.where(on, new | b, new & ~b)
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
            self.cand_x[io_rows] = np.where(spk[io_at], fall_to[io_at], np.nan)
            self.cand_z[io_rows] = np.where(spk[io_at], z[io_at], np.nan)
        self.run[r_end] = run[ends]
        self.run_same[r_end] = run_same[ends]
        self.run_zero[r_end] = run_zero[ends]
        self.zero_mdec[r_end] = zero_mdec[ends]
        add_counts(self.eq_pairs, rw, level, pair)
        add_counts(self.eq_equal, rw, level, pair & same)
        # a run still open at the end of the batch keeps the rates of its start
        open_run = run_zero[ends] > 0
        started_here = open_run & run_start[1][ends]
        at_start = np.maximum(run_start[0][ends], 0)
        self.run_seen[r_end[started_here]] = seen_t[at_start[started_here]]
        self.run_zeros[r_end[started_here]] = zeros_t[at_start[started_here]]
        add_counts(self.zero_seen, rw, tod, in_order)
        add_counts(self.zero_count, rw, tod, zero)
        self.clean[r_end] = clean_end[ends]
        usual = ~self._judged_spike  # spikes stay out of the references (they would hide the next one)
        push_rings(self.ring, self.ring_pos, rw[usual], tod[usual], x[usual])
        push_peaks(self.peak_val, self.peak_day, rw[usual], t[usual] // 86400, x[usual])
        jumped = usual & in_order & ~np.isnan(prev_import)
        np.maximum.at(self.jump_max, rw[jumped], np.minimum(
            x[jumped] / np.maximum(prev_import[jumped], cfg.spike_min_level_kwh), 6e4).astype(np.float16))
        np.maximum.at(self.last_seen, rw, t + interval)
        self.interval_s[r_end] = interval[ends]
        self._fold_silence_due(rw)
        self.stream_time = max(self.stream_time, int((t + interval).max()))

        values = {
            "negative_consumption": x, "spike": spike_z, "voltage": volts,
            "stuck_register": np.maximum(run, run_same).astype(np.float64) + 1.0,
            "sequence_gap": gap_missing.astype(np.float64), "dead_register": run_zero.astype(np.float64),
        }  # fmt: skip
        return self.machine.sequence(rw, t, old.astype(np.uint16), new.astype(np.uint16), self.rows.ids, values)

    def _spike_candidates(
        self, x: F64, prev_import: F64, rw: I64, tod: I64, day: I64, start: I64
    ) -> tuple[BOOL, F64, F64]:
        """Readings that pass the spike tests (before confirmation), their robust z-scores and fall ratios.

        The cheap jump test runs on every reading; the band statistics
        (:mod:`.spike`) only on the few that jump.
        """
        cfg = self.config
        n = len(x)
        spk = np.zeros(n, np.bool_)
        z = np.zeros(n, np.float64)
        fall = np.full(n, cfg.spike_fall_ratio, np.float64)
        prev = np.nan_to_num(prev_import, nan=np.inf)  # no previous interval: no jump test passes
        # an interval below spike_isolated_ratio x the idle floor (0.45 kWh) is within any household's range
        jump = np.flatnonzero((x > cfg.spike_jump_ratio * np.maximum(prev, cfg.spike_min_level_kwh))
                              & (x > cfg.spike_isolated_ratio * cfg.spike_min_level_kwh))
        self._judged_spike = np.zeros(n, np.bool_)
        if not len(jump):
            return spk, z, fall
        spk[jump], z[jump], self._judged_spike, fall[jump] = judge_jumps(
            self.ring, self.ring_pos, self.peak_val, self.peak_day, rw, tod, day, x, start, jump, cfg, prev,
            self.jump_max,
        )
        return spk, z, fall

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
        self._fold_silence_due(rows)
        return out

    # -- timer --------------------------------------------------------------------
    def _fold_silence_due(self, rows: I64) -> None:
        """Meters that just reported (last seen, interval, silent cleared): their due time lowers the bound."""
        if len(rows) and self.silence_due != -math.inf:
            due = self.last_seen[rows] + self.config.silent_intervals * self.interval_s[rows]
            self.silence_due = min(self.silence_due, float(due.min()))

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
        if clock < self.silence_due - 1:  # no meter is due: the timer's tick costs nothing per meter
            return out
        sb = bit("silent")
        k = self.config.silent_intervals
        quiet = silent(self.last_seen[:n], self.interval_s[:n], now=clock, k=k)
        rw = np.flatnonzero(quiet & ((self.machine.active[:n].astype(np.int64) & sb) == 0))
        if len(rw):
            new = (self.machine.active[rw].astype(np.int64) | sb).astype(np.uint16)
            missed = ((clock - self.last_seen[rw]) // np.maximum(self.interval_s[rw], 1)).astype(np.float64)
            at = np.full(len(rw), clock, np.int64)
            out.extend(*self.machine.transition(rw, at, new, self.rows.ids, {"silent": missed}))
        # the earliest time a meter seen and not silent now can turn silent; it only moves earlier when a meter
        # reports (its last sign of life only grows, and reporting is what clears silent): _fold_silence_due
        waiting = (self.last_seen[:n] != NEVER) & ((self.machine.active[:n].astype(np.int64) & sb) == 0)
        due = self.last_seen[:n][waiting] + k * self.interval_s[:n][waiting]
        self.silence_due = float(due.min()) if len(due) else math.inf
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
            **{name: pack_array(arr[:n]) for name, arr in self.gaps.arrays().items()},
        }

    @classmethod
    def restore(cls, state: dict[str, Any]) -> Self:
        """Rebuild from :meth:`snapshot` output."""
        h = cls(HealthConfig.model_validate(state["config"]))
        h.rows = MeterRows(state["meters"])
        n = len(h.rows)
        for name, fill in cls._FILL.items():
            if name in state:
                setattr(h, name, unpack_array(state[name]))
            else:  # a snapshot from before this rule's state existed: start it afresh
                setattr(h, name, grow_rows(getattr(h, name), n, fill))
        h.gaps.load({
            name: unpack_array(state[name]) if name in state else np.full(n, fill, np.int64)
            for name, fill in PendingGaps.FILL.items()
        })  # fmt: skip
        h.machine.active = unpack_array(state["active"])
        h.machine.since = unpack_array(state["since"])
        h.stream_time = _NONE if state["stream_time"] is None else state["stream_time"]
        return h
