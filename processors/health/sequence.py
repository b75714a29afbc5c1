"""Sequence-gap rule: readings missing between two in-order readings of a meter.

A meter numbers its readings; a jump of more than ``min_gap`` missing numbers
means readings were lost (a held-back, out-of-order reading leaves a gap of
one that fills later, hence the default of 2).

Examples:
    >>> import numpy as np
    >>> gap(np.array([5, 9, 3]), np.array([4, 5, -1]), 2).tolist()
    [False, True, False]
"""

from __future__ import annotations

from processors.columns import BOOL, I64


def gap(seq: I64, last_seq: I64, min_gap: int) -> BOOL:
    """``seq - last_seq - 1 >= min_gap`` where a previous sequence number is known (``>= 0``)."""
    out: BOOL = (last_seq >= 0) & (seq - last_seq - 1 >= min_gap)
    return out
