"""Spike rule: a reading far above the meter's own behaviour at that time of day, by robust statistics.

Households are spiky: a kettle, an oven or an electric shower puts one
15-minute interval at 20-50 times the night base load, every day, at about
the same hours (richardsonpy's appliance model reproduces this). A spike test
against the meter's recent values as a whole calls every such peak a fault
(precision 0.087 on a real-profile fleet). This rule compares like with like:

* each meter keeps, per time-of-day band (``day_bands`` bands of the day), a
  ring of its last ``spike_band_window`` values in that band (float16: the
  statistics need three significant digits, not seven);
* a reading is a spike candidate when it jumps more than ``spike_jump_ratio``
  over the previous interval (floored at ``spike_min_level_kwh``) and is at
  least ``spike_isolated_ratio`` x that floor (a cheap filter, most readings
  stop here);
* **isolated**: ``spike_isolated_ratio`` (15x) over the previous interval, above
  the band's largest recent value and above ``spike_isolated_peak`` x the
  week's maximum, and (on confirmation) 15x over the next interval too. An
  injected spike is 20-50x the interval it replaces; a household's kettle or
  oven is rarely 15x both neighbours and mostly well below its weekly peak;
* **towering**: with at least ``spike_band_min_history`` values in its band, a
  modified z-score above ``spike_z`` against the band's median and MAD, over
  ``spike_ratio_max`` x the band's largest recent value and ``spike_ratio_peak``
  x the week's, and a jump over the previous interval higher than any the
  meter made outside spikes (a smooth commercial load's spike, whose
  neighbours are not idle; a household that jumps 30x to its kettle must
  out-jump itself);
* with less history (a meter's first hours) the same tests run against all
  the meter's recent values: ``spike_warmup_ratio_max`` (isolated) or
  ``spike_warmup_towering`` (towering) x their maximum.

Confirmation (in :class:`processors.health.HealthMonitor`): a spike is raised
only when the next interval falls back (an oven or a charging car stays up).

References:
    B. Iglewicz and D. C. Hoaglin, *How to Detect and Handle Outliers*, ASQC
    Quality Press, 1993 (modified z-score 0.6745 (x − median) / MAD).
    P. J. Rousseeuw and C. Croux, "Alternatives to the median absolute
    deviation", JASA 88(424), 1993.

Examples:
    >>> import numpy as np
    >>> hist = np.array([[0.2, 0.3, 0.25, 0.2, np.nan], [1.0, 1.0, 1.0, 1.0, 1.0]], np.float32)
    >>> z, p95, n = robust_z(hist, np.array([3.0, 1.0]), min_mad=0.01)
    >>> bool(z[0] > 8), float(z[1]), n.tolist()
    (True, 0.0, [4, 5])
    >>> day_band(np.array([0, 4 * 3600, 86399, 86400 + 18 * 3600]), 6).tolist()
    [0, 1, 5, 4]
"""

from __future__ import annotations

import numpy as np

from processors.columns import BOOL, F64, I64
from processors.health.config import HealthConfig


def day_band(t: I64, bands: int) -> I64:
    """Time-of-day band of an event time (UTC): ``bands`` equal parts of the day."""
    out: I64 = (t % 86400) * bands // 86400
    return out


def judge_jumps(
    ring: np.ndarray,
    ring_pos: I64,
    peak_val: np.ndarray,
    peak_day: np.ndarray,
    rows: I64,
    band: I64,
    day: I64,
    x: F64,
    start: I64,
    at: I64,
    cfg: HealthConfig,
    prev: F64,
    jump_max: np.ndarray,
) -> tuple[BOOL, F64, BOOL, F64]:
    """Judge the readings at positions ``at`` (those that jumped), in order: spike candidates and z-scores.

    Two ways to be a candidate (see the module docstring): *isolated* (x at
    least ``spike_isolated_ratio`` times the previous interval, both floored at
    ``spike_min_level_kwh``, and above ``spike_isolated_peak`` times the week's
    maximum and the band's maximum) or *towering* (the band's z-score and
    ``spike_ratio_max`` over the band's maximum and ``spike_ratio_peak`` over
    the week's). Fourth result: the ratio by which the next interval must fall
    back to confirm it (``spike_isolated_ratio`` for an isolated-only
    candidate, ``spike_fall_ratio`` otherwise). A towering candidate must
    also jump higher than the meter ever jumped (``jump_max``, its largest
    ratio to the previous interval outside spikes, then its earlier readings
    in this batch): a household whose kettle jumps 30x is not judged by the
    jump of a smooth commercial load.

    A reading's history is the meter's state (band rings, daily maxima)
    followed by its earlier readings in this batch, as one reading at a time
    would have seen them. Readings judged spikes are kept out of every later
    history (third result, per position): a spike must not raise the band's or
    the week's reference and hide the next one.
    """
    n_bands, k = ring.shape[1], ring.shape[2]
    days = peak_val.shape[1]
    spk = np.zeros(len(at), np.bool_)
    z = np.zeros(len(at), np.float64)
    fall = np.full(len(at), cfg.spike_fall_ratio, np.float64)
    excluded = np.zeros(len(x), np.bool_)
    order = np.arange(k)
    ratio = x / np.maximum(prev, cfg.spike_min_level_kwh)
    for j, i in enumerate(at.tolist()):
        r, b, s, d = int(rows[i]), int(band[i]), int(start[i]), int(day[i])
        keep = ~excluded[s:i]
        earlier = x[s:i][keep].astype(ring.dtype).astype(np.float32)  # as the ring will hold them
        earlier_band = band[s:i][keep]
        band_hist = np.full((1, k), np.nan, np.float32)
        every = []
        for bb in range(n_bands):
            mine = ring[r, bb, (int(ring_pos[r, bb]) + order) % k].astype(np.float32)
            merged = np.concatenate([mine, earlier[earlier_band == bb]])[-k:]
            if bb == b:
                band_hist[0] = merged
            every.append(merged)
        values = np.concatenate(every)
        all_hist = values[~np.isnan(values)][None, :]
        recent = (peak_day[r] > d - days) & (peak_day[r] <= d)
        week = np.concatenate([peak_val[r][recent].astype(np.float32), earlier[day[s:i][keep] > d - days]])
        peak = float(week.max()) if len(week) else np.nan
        xi = x[i : i + 1]
        zb, _, top_b, n_b = history_stats(band_hist, xi, min_mad=cfg.spike_min_mad_kwh)
        za, _, top_a, n_a = history_stats(all_hist, xi, min_mad=cfg.spike_min_mad_kwh) if all_hist.size else (
            np.zeros(1), None, np.full(1, np.nan), np.zeros(1, np.int64))
        xv = float(xi[0])
        if n_a[0] < cfg.spike_min_history:
            continue
        jumps = ratio[s:i][keep]
        jumps = jumps[np.isfinite(jumps)]
        highest = max(float(jump_max[r]), float(jumps.max()) if len(jumps) else 0.0)
        unheard = float(ratio[i]) > highest
        if n_b[0] >= cfg.spike_band_min_history and n_a[0] >= cfg.spike_warmup:
            z[j] = zb[0]
            towering = (
                unheard and zb[0] > cfg.spike_z and xv > cfg.spike_ratio_max * top_b[0]
                and not xv <= cfg.spike_ratio_peak * peak
            )
            isolated = (
                xv > cfg.spike_isolated_ratio * max(float(prev[i]), cfg.spike_min_level_kwh)
                and xv > top_b[0] and not xv <= cfg.spike_isolated_peak * peak
            )
            spk[j] = towering or isolated
            if isolated and not towering:
                fall[j] = cfg.spike_isolated_ratio
        else:  # warm-up: no band or week yet, so only an isolated jump far above everything seen so far
            z[j] = za[0]
            towering = unheard and za[0] > cfg.spike_z and xv > cfg.spike_warmup_towering * top_a[0]
            isolated = (
                za[0] > cfg.spike_z and xv > cfg.spike_warmup_ratio_max * top_a[0]
                and xv > cfg.spike_isolated_ratio * max(float(prev[i]), cfg.spike_min_level_kwh)
            )
            spk[j] = towering or isolated
            if isolated and not towering:
                fall[j] = cfg.spike_isolated_ratio
        excluded[i] = spk[j] and cfg.spike_exclude
    return spk, z, excluded, fall


def push_peaks(peak_val: np.ndarray, peak_day: np.ndarray, rows: I64, day: I64, x: F64) -> None:
    """Fold a batch's readings into the meters' daily maxima (one slot per day, ``day % days``)."""
    if not len(rows):
        return
    days = peak_val.shape[1]
    key = rows * (1 << 24) + day
    uniq, inv = np.unique(key, return_inverse=True)
    top = np.full(len(uniq), -np.inf)
    np.maximum.at(top, inv, x)
    r, d = uniq >> 24, uniq & ((1 << 24) - 1)
    slot = d % days
    same = peak_day[r, slot] == d
    old = peak_val[r, slot].astype(np.float64)
    newer = same | (peak_day[r, slot] < d)
    peak_val[r[newer], slot[newer]] = np.where(same, np.fmax(old, top), top)[newer]
    peak_day[r[newer], slot[newer]] = d[newer]


def push_rings(ring: np.ndarray, ring_pos: I64, rows: I64, band: I64, x: F64) -> None:
    """Append a batch's readings (sorted by row, then time) to their (meter, band) rings."""
    if not len(rows):
        return
    n_bands, k = ring.shape[1], ring.shape[2]
    group = rows * n_bands + band
    order = np.lexsort((np.arange(len(rows)), group))
    g = group[order]
    first = np.ones(len(g), np.bool_)
    first[1:] = g[1:] != g[:-1]
    ar = np.arange(len(g))
    begin = np.maximum.accumulate(np.where(first, ar, 0))
    rank = ar - begin
    size = np.bincount(np.cumsum(first) - 1)
    count = size[np.cumsum(first) - 1]
    keep = rank >= count - k
    r, b = rows[order], band[order]
    ring[r[keep], b[keep], (ring_pos[r[keep], b[keep]] + rank[keep]) % k] = x[order][keep]
    ends = np.flatnonzero(first)
    ring_pos[r[ends], b[ends]] = (ring_pos[r[ends], b[ends]] + size) % k


def robust_z(history: np.ndarray, x: F64, *, min_mad: float) -> tuple[F64, F64, I64]:
    """Modified z-score of ``x[i]`` against the non-NaN values of ``history[i]``; also p95 and count."""
    z, p95, _top, n = history_stats(history, x, min_mad=min_mad)
    return z, p95, n


def history_stats(history: np.ndarray, x: F64, *, min_mad: float) -> tuple[F64, F64, F64, I64]:
    """Robust z-score, 95th percentile, maximum and count of each row's non-NaN history."""
    m = history.shape[0]
    if m == 0:
        empty = np.zeros(0, np.float64)
        return empty, empty, empty, np.zeros(0, np.int64)
    srt = np.sort(history, axis=1)  # NaN last
    n = np.count_nonzero(~np.isnan(history), axis=1).astype(np.int64)
    safe = np.maximum(n, 1)
    lo, hi = (safe - 1) // 2, safe // 2
    ar = np.arange(m)
    med = (srt[ar, lo].astype(np.float64) + srt[ar, hi]) / 2.0
    dev = np.sort(np.abs(history - med[:, None].astype(history.dtype)), axis=1)
    mad = (dev[ar, lo].astype(np.float64) + dev[ar, hi]) / 2.0
    p95 = srt[ar, np.minimum((safe * 95) // 100, safe - 1)].astype(np.float64)
    top = srt[ar, safe - 1].astype(np.float64)
    z = 0.6745 * (x - med) / np.maximum(mad, min_mad)
    return z, p95, top, n
