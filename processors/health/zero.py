"""Zero-run / dead-register rule: nothing measured for a run of intervals where the meter normally consumes.

A dead register (a failed metrology board, a tripped internal relay, a
meter left on a disconnected supply) still answers the head end: heartbeats
say ``ok``, readings arrive on time, but every interval reads 0 kWh imported
and 0 kWh exported and the register stands still. No value rule sees it (0 is
plausible, not negative, not a spike) and silence does not either.

Zero is also a normal reading: a vacant flat at night with a 10 Wh register,
a holiday home, a farm building in the off season. So the evidence is how
unlikely the run is *for this meter at these times of day*: each meter
counts, per time-of-day band (``day_bands`` bands of the day), how many of
its readings were zero, ``p0 = (zeros + w p0_all) / (readings + w)`` where
``p0_all`` is its zero rate at all hours (starting from ``prior_zero /
prior_readings``) and ``w = prior_readings``: a band with little history
borrows the meter's own rate, so a meter that consumed through its first
hours is judged from then on, whichever hour its register dies at; ``p0``
never goes below ``prior_zero / (all readings + prior_readings)``. The
counts are those from before the run began (a run is no evidence of its own
likelihood). Every zero reading of a run adds ``-log10(p0)`` of its band
to the run's evidence (kept in thousandths of a decade, an integer, so a batch
and one reading at a time agree exactly). The run is a dead register when its
evidence reaches ``dead_evidence_decades`` and it lasts at least
``dead_min_intervals`` readings. A meter that reads zero half the time at
night needs many hours of zeros; one that never did needs ``dead_min_intervals``.

A reading counts as zero when import and export are both 0 and the register
did not advance (a solar prosumer's midday zero import comes with export).
Only in-order readings count; any non-zero in-order reading ends the run.

Examples:
    >>> import numpy as np
    >>> zero_reading(np.array([0.0, 0.0, 0.0]), np.array([0.0, 0.4, 0.0]),
    ...              np.array([5.0, 5.0, 5.2]), np.array([5.0, 5.0, 5.0])).tolist()
    [True, False, False]
    >>> seen, zeros = np.array([1000, 0, 10]), np.array([0, 0, 9])
    >>> evidence_mdec(seen, zeros, seen, zeros, 0.5, 1.0).tolist()   # p0 1/2002 (the floor), 1/2, 0.9
    [3301, 301, 47]
    >>> evidence_mdec(np.array([0]), np.array([0]), np.array([95]), np.array([0]), 0.5, 1.0).tolist()  # 1/192
    [2283]
"""

from __future__ import annotations

import numpy as np

from processors.columns import BOOL, F64, I64


def zero_reading(kwh_import: F64, kwh_export: F64, register: F64, last_register: F64) -> BOOL:
    """Nothing measured: no import, no export, register not advancing (or no previous register known)."""
    still = (register == last_register) | np.isnan(last_register)
    out: BOOL = (kwh_import == 0.0) & (kwh_export == 0.0) & still
    return out


def evidence_mdec(
    readings: I64, zeros: I64, readings_all: I64, zeros_all: I64, prior_zero: float, prior_readings: float
) -> I64:
    """``-log10(p0)`` of one zero reading, in thousandths of a decade, from the band's and all bands' counts."""
    p0_all = (zeros_all + prior_zero) / (readings_all + prior_readings)
    # never below "half a zero in everything the meter sent": a rate of 0 in 1 000 readings is not certainty
    floor = prior_zero / (readings_all + prior_readings)
    p0 = np.maximum((zeros + prior_readings * p0_all) / (readings + prior_readings), floor)
    out: I64 = np.round(-1000.0 * np.log10(np.clip(p0, 1e-12, 1.0))).astype(np.int64)
    return out
