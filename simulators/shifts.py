"""Scheduled behaviour shifts: at a simulated day, a share of customers changes.

Segmentation engines are judged on how fast and how cleanly they follow real
changes, so shifts are first-class and go into the ground truth with the exact
customers concerned. A shift is ``DAY:SHARE:TARGET``:

* TARGET an archetype name or alias (``ev``, ``solar``, ...): that share of the
  customers not already of it adopt it at the start of DAY (e.g. ``3:0.1:ev``:
  10 % adopt EV charging on day 3). Adopting solar also re-registers the
  customer's meters with ``has_export=true``.
* TARGET ``stop_purchasing``: that share of the customers who still buy stop
  all purchases and payments from DAY on (they should drift to at-risk/lost).

Customers are chosen from the shift's own random stream, so adding a shift
does not change the fleet, the load or the faults.

Examples:
    >>> s = Shift.parse("3:0.1:ev")
    >>> s.day, s.share, s.target
    (3, 0.1, 'ev_night_charging')
    >>> Shift.parse("1:0.05:stop_purchasing").target
    'stop_purchasing'
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from simulators.archetypes import ARCHETYPE_NAMES, index_of

STOP_PURCHASING = "stop_purchasing"


@dataclass
class Shift:
    """One scheduled shift; ``customers`` is filled when it is applied."""

    day: int
    share: float
    target: str
    customers: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    @classmethod
    def parse(cls, text: str) -> Shift:
        parts = text.split(":")
        if len(parts) != 3:
            raise ValueError(f"shift {text!r}: expected DAY:SHARE:TARGET, e.g. 3:0.1:ev")
        day_s, share_s, target = parts
        try:
            day, share = int(day_s), float(share_s)
        except ValueError:
            raise ValueError(f"shift {text!r}: DAY must be an integer and SHARE a number") from None
        if day < 0:
            raise ValueError(f"shift {text!r}: DAY must be >= 0")
        if not 0.0 < share <= 1.0:
            raise ValueError(f"shift {text!r}: SHARE must be within (0, 1]")
        if target != STOP_PURCHASING:
            target = ARCHETYPE_NAMES[index_of(target)]
        return cls(day, share, target)

    def choose(self, seed: int, number: int, eligible: np.ndarray) -> np.ndarray:
        """Pick ``share`` of the eligible customers (sorted indices), deterministically."""
        rng = np.random.default_rng(np.random.SeedSequence([seed, 4, number]))
        candidates = np.flatnonzero(eligible)
        k = round(self.share * candidates.size)
        if k == 0:
            return np.zeros(0, dtype=np.int64)
        return np.sort(rng.choice(candidates, size=k, replace=False)).astype(np.int64)
