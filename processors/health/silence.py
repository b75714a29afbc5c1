"""Late / silent meters: nothing heard for more than k expected intervals.

Evaluated by a timer (:meth:`processors.health.HealthMonitor.check_silence`),
never by the next message — a silent meter sends none. ``last_seen`` is the
event time at which the meter last proved alive: the end of its latest
reading's interval or its latest heartbeat.

Examples:
    >>> import numpy as np
    >>> silent(np.array([0, 1000, -2**63]), np.array([900, 900, 900]), now=3000, k=3.0).tolist()
    [True, False, False]
"""

from __future__ import annotations

import numpy as np

from processors.columns import BOOL, I64

NEVER = np.iinfo(np.int64).min


def silent(last_seen: I64, interval_s: I64, *, now: int, k: float) -> BOOL:
    """Meters seen at least once whose last sign of life is older than ``k`` intervals."""
    out: BOOL = (last_seen != NEVER) & (now - last_seen > k * interval_s)
    return out
