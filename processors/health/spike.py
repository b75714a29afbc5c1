"""Spike rule: robust z-score of a reading against the meter's recent median and MAD.

A per-meter ring of the last ``window`` import values (float32) is kept; for
the meters of a batch the rings are sorted row-wise (numpy's SIMD sort makes
this cheaper than ``np.median``'s partition for short rows), giving median,
MAD and the 95th percentile in one pass. A reading is a spike when its
modified z-score exceeds ``z`` *and* it exceeds ``ratio × p95`` of the
history *and* it jumps by more than ``jump_ratio`` over the previous interval
(the classic VEE spike check against neighbouring intervals): load profiles
with a daily peak (EV charging, heating) have a large legitimate spread that
the second test respects, and slow ramps fail the third. While the history
covers less than the full window (the first day of a meter) it may not
contain the daily peak yet, so the value must also exceed ``warmup_ratio ×``
the history's maximum.

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
"""

from __future__ import annotations

import numpy as np

from processors.columns import F64, I64


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
