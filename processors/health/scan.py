"""Segmented scans: per-meter recurrences over a batch sorted by (meter, event time), without a Python loop.

A batch of readings sorted by (meter row, interval start) is a list of
*segments*, one per meter; ``start[i]`` is the position where the segment of
reading ``i`` begins. Every helper here gives, for each position, what feeding
the readings one at a time would have given, seeded by the meter's state at
the start of its segment — so the health rules do not depend on how a stream
is cut into batches. Counters are integers (exact under any grouping); a sum
of floats would differ in the last bits between a batch and one-at-a-time.

Examples:
    >>> import numpy as np
    >>> start = np.array([0, 0, 0, 0, 4, 4])           # two meters: positions 0-3 and 4-5
    >>> hit = np.array([True, True, False, True, True, True])
    >>> reset = ~hit
    >>> run_length(hit, reset, start, np.array([5, 1]), np.array([0, 0, 0, 0, 1, 1])).tolist()
    [6, 7, 0, 1, 2, 3]
    >>> band = np.array([0, 1, 0, 0, 1, 1])
    >>> state = np.array([[10, 0], [0, 2]])
    >>> counts_before(hit, band, start, state, np.array([0, 0, 0, 0, 1, 1])).tolist()
    [10, 0, 11, 11, 2, 3]
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from processors.columns import BOOL, I64


def latest(events: BOOL, pos: I64, start: I64) -> tuple[I64, BOOL]:
    """Index of the latest event at or before each position in its segment, and whether there is one."""
    last: I64 = np.maximum.accumulate(np.where(events, pos, -1))
    return last, last >= start


def exclusive_cumsum(values: npt.NDArray[Any]) -> I64:
    """``out[i] = values[:i].sum()`` (integers)."""
    out = np.zeros(len(values) + 1, np.int64)
    np.cumsum(values, out=out[1:])
    return out


def run_length(hit: BOOL, reset: BOOL, start: I64, state: I64, rows: I64) -> I64:
    """Consecutive ``hit`` positions up to and including each one, seeded by ``state[rows]``.

    A position that is neither ``hit`` nor ``reset`` (an out-of-order reading)
    leaves the run as it is; a ``reset`` sets it to 0.
    """
    pos = np.arange(len(hit))
    c = exclusive_cumsum(hit)
    last_reset, has_reset = latest(reset, pos, start)
    from_reset = c[pos + 1] - c[np.maximum(last_reset, 0) + 1]
    from_start = state[rows] + c[pos + 1] - c[start]
    out: I64 = np.where(has_reset, from_reset, from_start)
    return out


def sum_since_reset(values: I64, reset: BOOL, start: I64, state: I64, rows: I64) -> I64:
    """Sum of integer ``values`` since the latest ``reset`` (inclusive of this position), seeded by ``state``."""
    pos = np.arange(len(values))
    c = exclusive_cumsum(values)
    last_reset, has_reset = latest(reset, pos, start)
    from_reset = c[pos + 1] - c[np.maximum(last_reset, 0) + 1]
    from_start = state[rows] + c[pos + 1] - c[start]
    out: I64 = np.where(has_reset, from_reset, from_start)
    return out


def counts_before(hit: BOOL, band: I64, start: I64, state: npt.NDArray[Any], rows: I64) -> I64:
    """How many ``hit`` positions of the same band came before each position: ``state[row, band]`` plus
    the earlier ones of its segment (the position itself excluded)."""
    out = state[rows, band].astype(np.int64)
    for b in np.unique(band).tolist():
        sel = band == b
        c = exclusive_cumsum(hit & sel)
        out[sel] += (c[:-1] - c[start])[sel]
    return out


def counts_table(hit: BOOL, band: I64, start: I64, state: npt.NDArray[Any], rows: I64) -> I64:
    """For every position and every band, ``state[row, band]`` plus the segment's earlier ``hit`` positions of
    that band (the position itself excluded): shape ``(n, bands)``."""
    out = state[rows].astype(np.int64)
    for b in range(state.shape[1]):
        c = exclusive_cumsum(hit & (band == b))
        out[:, b] += c[:-1] - c[start]
    return out


def add_counts(state: npt.NDArray[Any], rows: I64, band: I64, hit: BOOL) -> None:
    """Add each segment's ``hit`` positions to ``state[row, band]`` (after the batch)."""
    np.add.at(state, (rows[hit], band[hit]), 1)
