"""Sequence-gap rule: readings still missing once the allowed reordering has had its time.

A meter numbers its readings. When an in-order reading skips numbers, the
skipped ones may simply be late: head ends forward blocks, a held-back
reading arrives after the meter's next few. So a gap is *pending*, not a
finding: the meter remembers the range of missing numbers, how many are still
missing and when it is due (the reading's interval start plus
``sequence_gap_grace_s``); each reordered reading that falls in the range
fills one. The finding is raised on the meter's first in-order reading at or
after the due time if at least ``sequence_gap_min`` numbers are still
missing. A reading later than the windows' allowed lateness is dead-lettered
(``too_late``) before the health rules and never fills a gap: set the grace to
at least that lateness so a reordering the windows accept never raises one.

Judged on the meter's own event time (its next reading), not on a shared
clock, so the finding does not depend on how the stream is cut into batches
or how fast other meters are. Pending gaps are few (a meter with one is
being reordered or has lost data), so they are followed in a short Python
loop over the readings of those meters only.

Examples:
    >>> import numpy as np
    >>> g = PendingGaps(); g.ensure(1)
    >>> rows, t = np.array([0, 0, 0]), np.array([3600, 5400, 9000])
    >>> seq, prev = np.array([4, 6, 10]), np.array([1, 4, 6])   # 2-3 lost, 5 lost, 7-9 lost
    >>> fired, missing = g.judge(rows, t, seq, prev, np.ones(3, bool), grace_s=3600, min_gap=1)
    >>> fired.tolist(), missing.tolist()                         # due at 7200: judged at 9000
    ([False, False, True], [0, 0, 3])
    >>> int(g.missing[0]), int(g.due[0])                         # 7-9 pending until 12600
    (3, 12600)
    >>> late = g.judge(np.array([0, 0]), np.array([6300, 12600]), np.array([8, 11]), np.array([-1, 10]),
    ...                np.array([False, True]), grace_s=3600, min_gap=1)
    >>> late[0].tolist(), late[1].tolist()                       # 8 came late; 7 and 9 are still missing
    ([False, True], [0, 2])
"""

from __future__ import annotations

from typing import Any

import numpy as np

from processors.columns import BOOL, I64, grow_rows

_NONE = np.iinfo(np.int64).min


class PendingGaps:
    """Per meter row: the range ``[lo, hi)`` of missing sequence numbers, how many are missing, when due."""

    FILL: dict[str, Any] = {"gap_lo": -1, "gap_hi": -1, "gap_missing": 0, "gap_due": _NONE}

    def __init__(self) -> None:
        self.lo: I64 = np.zeros(0, np.int64)
        self.hi: I64 = np.zeros(0, np.int64)
        self.missing: I64 = np.zeros(0, np.int64)
        self.due: I64 = np.zeros(0, np.int64)

    def ensure(self, n: int) -> None:
        self.lo = grow_rows(self.lo, n, -1)
        self.hi = grow_rows(self.hi, n, -1)
        self.missing = grow_rows(self.missing, n, 0)
        self.due = grow_rows(self.due, n, _NONE)

    def arrays(self) -> dict[str, I64]:
        return {"gap_lo": self.lo, "gap_hi": self.hi, "gap_missing": self.missing, "gap_due": self.due}

    def load(self, arrays: dict[str, I64]) -> None:
        self.lo, self.hi = arrays["gap_lo"], arrays["gap_hi"]
        self.missing, self.due = arrays["gap_missing"], arrays["gap_due"]

    def judge(
        self, rows: I64, t: I64, seq: I64, prev_seq: I64, in_order: BOOL, *, grace_s: int, min_gap: int
    ) -> tuple[BOOL, I64]:
        """Readings sorted by (row, time): where a gap is raised, and how many readings it misses."""
        n = len(rows)
        fired = np.zeros(n, np.bool_)
        missing_at = np.zeros(n, np.int64)
        opened = in_order & (prev_seq >= 0) & (seq - prev_seq > 1)
        busy = (self.missing[rows] > 0) | opened | ~in_order
        if not busy.any():
            return fired, missing_at
        involved = np.zeros(len(self.missing), np.bool_)
        involved[rows[busy]] = True
        lo, hi, missing, due = self.lo, self.hi, self.missing, self.due
        for i in np.flatnonzero(involved[rows]).tolist():
            r = int(rows[i])
            s = int(seq[i])
            if not in_order[i]:
                if missing[r] > 0 and lo[r] <= s < hi[r]:
                    missing[r] -= 1
                continue
            if missing[r] > 0 and t[i] >= due[r]:
                if missing[r] >= min_gap:
                    fired[i] = True
                    missing_at[i] = missing[r]
                missing[r] = 0
            if opened[i]:
                first = int(prev_seq[i]) + 1
                if missing[r] > 0:
                    lo[r], hi[r] = min(int(lo[r]), first), max(int(hi[r]), s)
                else:
                    lo[r], hi[r] = first, s
                missing[r] += s - first
                due[r] = max(int(due[r]), int(t[i]) + grace_s)
        return fired, missing_at
