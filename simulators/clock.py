"""The simulated clock: where simulated time is, and how fast it may run.

Three paces: as fast as possible (``speed=None``, the default: a month of data
in minutes), a speed-up factor (``speed=1440`` = one simulated day per wall
minute, good for demos), or real time (``speed=1``). Pacing only ever *waits*;
if generation cannot keep up, the clock logs once and keeps going, because a
lagging simulator should still produce correct data.

Simulated time advances in ticks of ``gcd(reading interval, heartbeat
period)`` minutes; tick ``k`` stands for the instant ``start + k * tick``.

Examples:
    >>> from datetime import UTC, datetime
    >>> c = SimClock(datetime(2026, 1, 1, tzinfo=UTC), days=1, tick_minutes=15)
    >>> c.ticks, c.at(4).isoformat()
    (96, '2026-01-01T01:00:00+00:00')
    >>> parse_start("2026-03-01").isoformat()
    '2026-03-01T00:00:00+00:00'
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime, timedelta

log = logging.getLogger(__name__)


def parse_start(text: str) -> datetime:
    """``--start`` value: an ISO date/time (UTC if no zone) or ``now`` (rounded down to a 15-minute boundary)."""
    if text == "now":
        now = datetime.now(UTC)
        return now.replace(minute=now.minute - now.minute % 15, second=0, microsecond=0)
    try:
        ts = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"start {text!r}: expected an ISO date such as 2026-01-01 or 2026-01-01T00:00Z") from None
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    if ts.second or ts.microsecond or ts.minute % 15:
        raise ValueError(f"start {text!r}: must fall on a 15-minute boundary")
    return ts.astimezone(UTC)


class SimClock:
    """Maps ticks to simulated instants and paces them against the wall clock."""

    def __init__(self, start: datetime, days: int, tick_minutes: int, speed: float | None = None) -> None:
        if days < 1:
            raise ValueError("days must be >= 1")
        if speed is not None and speed <= 0:
            raise ValueError("speed must be > 0 (1 = real time)")
        self.start = start
        self.tick_minutes = tick_minutes
        self.ticks = days * 1440 // tick_minutes
        self.speed = speed
        self._wall0 = time.monotonic()
        self._warned = False

    def at(self, tick: int) -> datetime:
        return self.start + timedelta(minutes=tick * self.tick_minutes)

    def restart_wall(self) -> None:
        """Anchor pacing at now (call right before the first tick)."""
        self._wall0 = time.monotonic()

    async def pace(self, tick: int) -> None:
        """Wait until tick ``tick`` is due in wall time (no-op when running as fast as possible)."""
        if self.speed is None:
            return
        due = self._wall0 + tick * self.tick_minutes * 60.0 / self.speed
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        elif delay < -5.0 and not self._warned:
            self._warned = True
            log.warning("simulator is %.1f s behind the requested speed %.0fx; lower --speed or --meters",
                        -delay, self.speed)
