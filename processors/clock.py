"""The event-time clock that timers use to close windows and find silent meters.

Why not the wall clock: event time (a reading's interval) and wall time differ
by hours when a head-end uploads in blocks, and by months when a recorded or
simulated fleet is replayed fast. Why not only the stream's watermark: a
watermark moves only when events arrive, so a quiet stream would never close
its last windows nor notice that every meter went silent.

The clock therefore follows the largest event time seen and, while no newer
event arrives, keeps advancing at ``rate`` event-seconds per wall-second
(1 for live meters; the simulator's speed-up for a replay). Timers ask
:meth:`EventClock.now` and close whatever that time makes final.

Examples:
    >>> clock = EventClock(rate=60.0)
    >>> clock.observe(1_000, wall=10.0)
    >>> clock.now(wall=10.0), clock.now(wall=12.0)     # two wall seconds = two event minutes
    (1000.0, 1120.0)
    >>> clock.observe(900, wall=12.0)                 # older events never move it back
    >>> clock.now(wall=12.0)
    1120.0
    >>> EventClock.restore(clock.snapshot()).now(wall=12.0)
    1120.0
"""

from __future__ import annotations

import time
from typing import Any, Self


class EventClock:
    """Largest event time seen, extrapolated at ``rate`` while the stream is quiet.

    Parameters:
        rate: event seconds per wall second while no newer event arrives.
    """

    def __init__(self, rate: float = 1.0) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive (event seconds per wall second)")
        self.rate = rate
        self._event: float | None = None
        self._wall = 0.0

    def observe(self, max_event_s: float, wall: float | None = None) -> None:
        """Record the largest event time (epoch seconds) of a batch just processed."""
        wall = time.time() if wall is None else wall
        current = self.now(wall)
        if current is None or max_event_s > current:
            self._event, self._wall = float(max_event_s), wall
        else:
            # keep the extrapolated reading, re-anchored so it stays monotonic
            self._event, self._wall = current, wall

    def now(self, wall: float | None = None) -> float | None:
        """Event time now, or None before the first event."""
        if self._event is None:
            return None
        wall = time.time() if wall is None else wall
        return self._event + max(0.0, wall - self._wall) * self.rate

    def snapshot(self) -> dict[str, Any]:
        return {"rate": self.rate, "event": self._event, "wall": self._wall}

    @classmethod
    def restore(cls, state: dict[str, Any]) -> Self:
        clock = cls(rate=state["rate"])
        clock._event, clock._wall = state["event"], state["wall"]
        return clock
