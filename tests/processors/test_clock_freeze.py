"""A finished source stops the event clock at its last event (issue 16, finding 9)."""

from __future__ import annotations

from processors.clock import EventClock


def test_frozen_clock_stays_at_the_last_event_and_resumes() -> None:
    clock = EventClock(rate=2880.0, idle_after_s=5.0)
    clock.observe(1_000_000, wall=0.0)
    assert clock.now(wall=65.0) == 1_000_000 + 60 * 2880  # quiet: runs on at the simulation's speed
    clock.freeze(True)
    assert clock.now(wall=3600.0) == 1_000_000  # finished: an hour later, still the last event
    clock.observe(1_000_900, wall=3601.0)  # events still move it
    assert clock.now(wall=7200.0) == 1_000_900
    clock.freeze(False)
    assert clock.now(wall=3611.0) == 1_000_900 + 5 * 2880
    assert "frozen" not in clock.snapshot()  # the engine applies it from Redis, never from a checkpoint
