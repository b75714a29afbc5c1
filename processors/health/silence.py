"""Late / silent meters: k expected intervals of the meter's own grid ended with no sign of life.

Evaluated by a timer (:meth:`processors.health.HealthMonitor.check_silence`),
never by the next message — a silent meter sends none. ``last_seen`` is the
event time at which the meter last proved alive: the end of its latest
reading's interval or its latest heartbeat.

The meter's grid is its interval length: the reading of ``[s, s + interval)``
is expected at ``s + interval``. Once ``k`` such expected readings have come
due after ``last_seen`` with nothing heard, the meter is silent. Counted as
"at least k due", not "more than k intervals of time": a stream is judged in
slices of one interval, so with "more than" a 1-hour outage of a 15-minute
meter (4 missing readings, back on the 5th) was judged at 45 minutes exactly,
found not *more* than 3 intervals, and never raised (recall 0 on 1-hour
outages on a real-profile fleet).

Examples:
    >>> import numpy as np
    >>> silent(np.array([0, 1000, -2**63]), np.array([900, 900, 900]), now=2700, k=3.0).tolist()
    [True, False, False]
    >>> silent(np.array([0]), np.array([900]), now=2699, k=3.0).tolist()
    [False]
"""

from __future__ import annotations

import numpy as np

from processors.columns import BOOL, I64

NEVER = np.iinfo(np.int64).min


def silent(last_seen: I64, interval_s: I64, *, now: int, k: float) -> BOOL:
    """Meters seen at least once with ``k`` or more expected intervals due since their last sign of life."""
    out: BOOL = (last_seen != NEVER) & (now - last_seen >= k * interval_s)
    return out
