"""The array-backed daily profile builder gives exactly what the list-of-floats builder gave.

Its output comes as columns (:class:`ClosedProfiles`); the models they give one at a time and the messages
they encode are compared with the earlier builder's models and their JSON.

The reference below is the earlier implementation (48 Python floats per open meter-day), kept here as
the oracle: same profiles, bit for bit, in the same order, and the same snapshot, also across a
snapshot/restore in the middle and for checkpoints written by the earlier code.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np

from processors.features import DailyProfile
from processors.profiles import DAY_S, HOUR_S, DailyProfileBuilder
from processors.windows.core import ClosedWindows


class ListProfileBuilder:
    """The earlier builder: a list of 48 floats per (meter, day)."""

    def __init__(self) -> None:
        self.days: dict[tuple[str, int], list[float]] = {}

    def process(self, closed: Sequence[ClosedWindows], customer_of: Callable[[str], str | None]) -> list[DailyProfile]:
        out = []
        for cw in closed:
            if cw.kind == "meter" and cw.size_s == HOUR_S:
                day = (cw.start // DAY_S) * DAY_S
                hour = (cw.start - day) // HOUR_S
                for m, d, h, kin, kout in zip(cw.keys, day.tolist(), hour.tolist(), cw.kwh_in.tolist(),
                                              cw.kwh_out.tolist(), strict=True):  # fmt: skip
                    acc = self.days.setdefault((m, d), [0.0] * 48)
                    acc[h] += kin
                    acc[24 + h] += kout
        for cw in closed:
            if cw.kind == "meter" and cw.size_s == DAY_S:
                for i, m in enumerate(cw.keys):
                    acc = self.days.pop((m, int(cw.start[i])), None)
                    c = customer_of(m)
                    if acc is not None and c is not None:
                        out.append(DailyProfile(customer_id=c, meter_id=m,
                                                day=datetime.fromtimestamp(int(cw.start[i]), UTC).date(),
                                                kwh_import=tuple(acc[:24]), kwh_export=tuple(acc[24:])))  # fmt: skip
        return out

    def snapshot(self) -> dict[str, Any]:
        return {"days": [[m, d, list(acc)] for (m, d), acc in self.days.items()]}


def _closed(size: int, keys: list[str], starts: list[int], kin: np.ndarray, kout: np.ndarray) -> ClosedWindows:
    n = len(keys)
    z = np.zeros(n)
    return ClosedWindows("meter", size, keys, np.array(starts, np.int64), np.ones(n, np.int64),
                         np.full(n, 4, np.int64), kin, kout, z, z, z, z)  # fmt: skip


def _stream(seed: int) -> list[list[ClosedWindows]]:
    """Hourly windows of 40 meters over 3 days (some hours twice: corrections; some meters exporting), days closing."""
    rng = np.random.default_rng(seed)
    meters = [f"M{i}" for i in range(40)]
    polls = []
    for hour in range(72):
        keys = [m for m in meters if rng.random() < 0.9]
        keys += [m for m in keys[:3]]  # the same hour again (a revision adds to the sums)
        kin = rng.gamma(2.0, 0.3, len(keys)).round(4)
        kout = np.where(rng.random(len(keys)) < 0.15, rng.random(len(keys)).round(3), 0.0)
        batch = [_closed(HOUR_S, keys, [hour * HOUR_S] * len(keys), kin, kout)]
        if hour % 24 == 0 and hour:
            day = (hour // 24 - 1) * DAY_S
            batch.append(_closed(DAY_S, meters[::-1], [day] * len(meters), np.zeros(40), np.zeros(40)))
        polls.append(batch)
    return polls


def test_same_profiles_and_snapshots_as_the_list_builder() -> None:
    customer_of = {f"M{i}": f"C{i}" for i in range(35)}.get  # 5 meters without a customer
    for seed in range(3):
        ref, new = ListProfileBuilder(), DailyProfileBuilder()
        for k, batch in enumerate(_stream(seed)):
            closed, expected = new.process(batch, customer_of), ref.process(batch, customer_of)
            assert len(closed) == len(expected)
            assert list(closed) == expected
            # the messages the pipeline sends: what each model's JSON was, keyed by its customer
            assert list(closed.messages()) == [(p.customer_id.encode(), p.model_dump_json().encode()) for p in expected]
            assert new.snapshot() == ref.snapshot()
            if k == 30:  # a restart mid-stream: from its own snapshot, and from the earlier code's
                new = DailyProfileBuilder.restore(new.snapshot())
            if k == 50:
                new = DailyProfileBuilder.restore(ref.snapshot())
            assert len(new) == len(ref.days)


def test_rows_are_reused_once_days_close() -> None:
    b = DailyProfileBuilder()
    for batch in _stream(7):
        b.process(batch, {}.get)
    assert len(b._imp) <= 2 * 40 * 2  # at most two open days of 40 meters (plus doubling room)
    assert b._exp_used <= 2 * 40


def test_closed_profiles_wait_as_columns() -> None:
    """A day close of 5 000 meters: the profiles waiting to be sent hold columns (~0.4 KB each), not models (~2 KB)."""
    import tracemalloc

    meters = [f"M{i}" for i in range(5_000)]
    customer_of = {m: f"C{m}" for m in meters}.get
    b = DailyProfileBuilder()
    for hour in range(24):
        b.process([_closed(HOUR_S, meters, [hour * HOUR_S] * len(meters), np.full(len(meters), 0.25),
                           np.zeros(len(meters)))], customer_of)  # fmt: skip
    day_close = [_closed(DAY_S, meters, [0] * len(meters), np.zeros(len(meters)), np.zeros(len(meters)))]
    tracemalloc.start()
    try:
        closed = b.process(day_close, customer_of)
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(closed) == len(meters)
    assert held / len(closed) < 600, held / len(closed)
    first = next(iter(closed))
    assert first.kwh_import == (0.25,) * 24 and first.kwh_export == (0.0,) * 24
