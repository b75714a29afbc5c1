"""Stuck (frozen) register rule.

A meter is stuck when, for ``N`` consecutive intervals, the same non-zero
interval value repeats or the cumulative register does not move although
the interval shows consumption — while its heartbeats still say ``ok`` (a
meter that reports itself degraded is a different finding). Only in-order
readings count; a reordered reading neither extends nor breaks a run.

References:
    VEE practice: "stuck/frozen register — same non-zero value for 3 or more
    intervals" (see the shared README).

Examples:
    >>> import numpy as np
    >>> repeats(np.array([0.5, 0.0, 0.3]), np.array([0.5, 0.0, 0.2]),
    ...         np.array([10.0, 10.0, 12.0]), np.array([10.0, 10.0, 12.0])).tolist()
    [True, False, True]
"""

from __future__ import annotations

from processors.columns import BOOL, F64


def repeats(kwh_import: F64, last_import: F64, register: F64, last_register: F64) -> BOOL:
    """This interval repeats the previous one: same non-zero value, or a frozen register under load."""
    same_value = (kwh_import == last_import) & (kwh_import != 0.0)
    frozen = (register == last_register) & (register != 0.0) & (kwh_import > 0.0)
    out: BOOL = same_value | frozen
    return out
