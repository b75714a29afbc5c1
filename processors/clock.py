"""The event-time clock that timers use to close windows and find silent meters.

Why not the wall clock: event time (a reading's interval) and wall time differ
by hours when a head-end uploads in blocks, and by months when a recorded or
simulated fleet is replayed fast. Why not only the stream's watermark: a
watermark moves only when events arrive, so a quiet stream would never close
its last windows nor notice that every meter went silent.

The clock therefore follows the largest event time seen and, once no newer
event has arrived for ``idle_after_s`` wall seconds, keeps advancing at
``rate`` event-seconds per wall-second (1 for live meters; the simulator's
speed-up for a replay). The idle grace matters when a backlog is replayed:
batches then follow each other closely and the clock must stay with the
data, or every meter would look silent between two batches. Timers ask
:meth:`EventClock.now` and close whatever that time makes final.

Examples:
    >>> clock = EventClock(rate=60.0, idle_after_s=1.0)
    >>> clock.observe(1_000, wall=10.0)
    >>> clock.now(wall=10.5), clock.now(wall=13.0)   # idle after 1 s, then 2 wall s = 2 event min
    (1000.0, 1120.0)
    >>> clock.observe(900, wall=13.0)     # an older event: the stream is busy again, not idle
    >>> clock.now(wall=13.0), clock.now(wall=13.0, running=False)
    (1000.0, 1000.0)
    >>> EventClock.restore(clock.snapshot()).now(wall=15.0)
    1060.0

Only events move the largest event time, never the running-on, so a busy
consumer that stalls for a while cannot push windows shut ahead of its data.

A source that has *finished* (a simulation or a replay that has sent everything) is not quiet but over:
:meth:`EventClock.freeze` stops the running-on at the largest event time seen, so the fleet does not turn
silent (and late) in a simulated future nobody sends. The freeze is not part of the snapshot: the engine
applies it from Redis (``{app}:clock:frozen``) to every clock it owns, at every tick.

    >>> clock.freeze(True); clock.now(wall=100.0)
    1000.0
    >>> clock.freeze(False); clock.now(wall=15.0)
    1060.0
"""

from __future__ import annotations

import time
from typing import Any, Self


class EventClock:
    """Largest event time seen, extrapolated at ``rate`` while the stream is quiet.

    Parameters:
        rate: event seconds per wall second while no newer event arrives.
        idle_after_s: wall seconds without a newer event before the clock runs on its own.
    """

    def __init__(self, rate: float = 1.0, idle_after_s: float = 0.0) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive (event seconds per wall second)")
        if idle_after_s < 0:
            raise ValueError("idle_after_s must not be negative")
        self.rate = rate
        self.idle_after_s = idle_after_s
        self._event: float | None = None
        self._wall = 0.0
        self.frozen = False

    def observe(self, max_event_s: float, wall: float | None = None) -> None:
        """Record the largest event time (epoch seconds) of a batch just processed."""
        wall = time.time() if wall is None else wall
        current = self.now(wall, running=False)
        if current is None or max_event_s > current:
            self._event, self._wall = float(max_event_s), wall
        else:
            self._wall = wall  # an event arrived: the stream is not idle

    def now(self, wall: float | None = None, *, running: bool = True) -> float | None:
        """Event time now, or None before the first event.

        ``running=False`` gives the largest event time seen, without running on:
        what a consumer that is still behind (lag > 0) must use, since the
        stream is not quiet, only not read yet.
        """
        if self._event is None:
            return None
        if not running or self.frozen:
            return self._event
        wall = time.time() if wall is None else wall
        return self._event + max(0.0, wall - self._wall - self.idle_after_s) * self.rate

    def freeze(self, frozen: bool) -> None:
        """Stop (or resume) running on past the largest event time: the source has finished sending."""
        self.frozen = frozen

    def snapshot(self) -> dict[str, Any]:
        return {"rate": self.rate, "idle_after_s": self.idle_after_s, "event": self._event, "wall": self._wall}

    @classmethod
    def restore(cls, state: dict[str, Any]) -> Self:
        clock = cls(rate=state["rate"], idle_after_s=state.get("idle_after_s", 0.0))
        clock._event, clock._wall = state["event"], state["wall"]
        return clock
