"""Heartbeat rules: fault and degraded status, error codes, clock skew.

These are *conditions*: each heartbeat sets or clears them, so the latest
heartbeat decides (an ``ok`` heartbeat clears ``degraded``).

Examples:
    >>> import numpy as np
    >>> c = conditions(np.array([0, 1, 2], np.int8), np.array([0, 1, 0]), np.array([0.0, -500.0, 5.0]), 120.0)
    >>> {k: v.tolist() for k, v in c.items()}["clock_skew"], c["fault"].tolist()
    ([False, True, False], [False, False, True])
"""

from __future__ import annotations

import numpy as np

from processors.columns import BOOL, F64, I8, I64


def conditions(status: I8, n_error_codes: I64, clock_offset_s: F64, skew_limit_s: float) -> dict[str, BOOL]:
    """Per heartbeat, which condition kinds hold (status codes index ``HEARTBEAT_STATUSES``)."""
    return {
        "fault": status == 2,
        "degraded": status == 1,
        "error_codes": n_error_codes > 0,
        "clock_skew": np.abs(clock_offset_s) > skew_limit_s,
    }
