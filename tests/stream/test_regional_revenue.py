"""Revenue per event day and region (stream.state.regional): booked when an emission is confirmed, a correction
replaces the window's earlier amount, a repeated confirmation adds nothing, and only the latest days are kept."""

from __future__ import annotations

import asyncio
from datetime import date, timedelta
from typing import Any

import pytest
import redis.asyncio as aioredis

from stream.state.regional import RegionalMerger, revenue_by_day, revenue_days

pytestmark = pytest.mark.integration

D0 = date(2026, 3, 7)


def window(region: str, day: date, hour: int, revenue: float, revision: int = 0) -> tuple[str, dict[str, Any]]:
    start = f"{day.isoformat()}T{hour:02d}:00:00Z"
    rec = {"key": region, "window": "1h", "window_start": start, "kwh_in": 2.0, "kwh_out": 0.0, "revenue": revenue,
           "readings": 4, "revision": revision}  # fmt: skip
    return f"{region}|1h|{start}", rec


def test_revenue_per_day_counts_a_revised_window_once_and_keeps_the_latest_days(redis_db_url: str) -> None:
    async def run() -> list[Any]:
        client = aioredis.Redis.from_url(redis_db_url)
        try:
            merger = RegionalMerger(client, "rv", partitions=2, revenue_days=3)
            book = []

            async def snapshot(*days: date) -> None:
                book.append(await revenue_by_day(client, "rv", days))

            await merger.confirm([window("North", D0, 10, 12.5), window("South", D0, 10, 4.0)])
            await merger.confirm([window("North", D0, 10, 12.5)])  # the same totals again (an expired claim)
            await snapshot(D0)
            await merger.confirm([window("North", D0, 10, 15.0, revision=1)])  # a correction: replaces 12.5
            await merger.confirm([window("North", D0, 23, 1.25)])  # another hour of the day
            await snapshot(D0)
            await merger.confirm([window("North", D0, 23, 0.75, revision=1)])  # a correction downwards
            await snapshot(D0)
            book.append(await revenue_by_day(client, "rv", [D0], region="South"))
            book.append(await revenue_days(client, "rv"))
            # three event days kept: a window three days after D0 drops D0's book
            await merger.confirm([window("North", D0 + timedelta(days=2), 0, 1.0)])
            book.append(await revenue_days(client, "rv"))
            await merger.confirm([window("North", D0 + timedelta(days=3), 0, 2.0)])
            book.append(await revenue_days(client, "rv"))
            await snapshot(D0, D0 + timedelta(days=1), D0 + timedelta(days=3))
            book.append(await client.exists(f"rv:region:revenue:{D0.isoformat()}"))
            return book
        finally:
            await client.aclose()

    first, corrected, down, south, span, span2, span3, late, d0_key = asyncio.run(run())
    day = D0.isoformat()
    assert first == {day: {"North": 12.5, "South": 4.0}}
    assert corrected == {day: {"North": 16.25, "South": 4.0}}
    assert down == {day: {"North": 15.75, "South": 4.0}}
    assert south == {day: {"South": 4.0}}
    assert span == (D0, D0)
    assert span2 == (D0, D0 + timedelta(days=2))
    assert span3 == (D0 + timedelta(days=2), D0 + timedelta(days=3))
    assert late == {day: {}, (D0 + timedelta(days=1)).isoformat(): {}, (D0 + timedelta(days=3)).isoformat(): {"North": 2.0}}
    assert d0_key == 0
