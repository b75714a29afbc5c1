"""Size samples and fleet-wide daily moves kept in Redis for /segments/{id}/history and volatility."""

from __future__ import annotations

from dataclasses import dataclass, field

import orjson
import pytest
import redis.asyncio as aioredis

from stream.state.keys import CustomerKeys
from stream.web import history

pytestmark = pytest.mark.integration


@dataclass
class _Book:
    counts: dict[tuple[str, str, str], list[int]] = field(default_factory=dict)


@dataclass
class _Proc:
    book: _Book


@dataclass
class _Part:
    processor: _Proc


class _Handler:
    def __init__(self, books: dict[int, dict[tuple[str, str, str], list[int]]]) -> None:
        self.partitions = {p: _Part(_Proc(_Book(c))) for p, c in books.items()}


async def test_sample_sizes_one_per_bucket_and_trimmed(redis_db_url: str) -> None:
    client = aioredis.Redis.from_url(redis_db_url)
    ns = "h"
    try:
        await client.hset(f"{ns}:segments", "rfm:loyal", orjson.dumps({"family": "rfm", "id": "loyal"}))
        await client.hset(f"{ns}:rules", "vip", orjson.dumps({"name": "VIP", "mode": "static"}))
        await client.sadd(CustomerKeys(ns).members("rfm", "loyal")[0], "C1", "C2")
        assert await history.sample_sizes(client, ns, now=120.0) == 2
        await client.sadd(CustomerKeys(ns).members("rfm", "loyal")[0], "C3")
        await history.sample_sizes(client, ns, now=150.0)  # same minute: replaces
        await history.sample_sizes(client, ns, now=180.0)
        got = await history.size_history(client, ns, "rfm", "loyal")
        assert got == [{"ts": 120, "size": 3}, {"ts": 180, "size": 3}]
        assert await history.size_history(client, ns, "rule", "vip") == [{"ts": 120, "size": 0}, {"ts": 180, "size": 0}]
        assert await history.size_history(client, ns, "rfm", "loyal", since=150) == [{"ts": 180, "size": 3}]
        for t in range(5):
            await history.sample_sizes(client, ns, now=1000.0 + 60 * t, keep=3)
        assert len(await history.size_history(client, ns, "rfm", "loyal")) == 3
    finally:
        await client.aclose()


async def test_moves_merge_workers_and_prefer_live_partitions(redis_db_url: str) -> None:
    client = aioredis.Redis.from_url(redis_db_url)
    ns = "m"
    try:
        other = _Handler({1: {("rfm", "loyal", "2026-01-02"): [2, 1], ("rfm", "loyal", "2026-01-01"): [9, 9]}})
        await history.record_moves(other, client, ns)
        mine = _Handler({0: {("rfm", "loyal", "2026-01-02"): [1, 0], ("behaviour", "B1", "2026-01-02"): [4, 0]}})
        day, moves = await history.fleet_moves(client, ns, mine)
        assert day == "2026-01-02"
        assert moves == {"rfm:loyal": (3, 1), "behaviour:B1": (4, 0)}
        stale = _Handler({1: {("rfm", "loyal", "2026-01-02"): [5, 5]}})  # partition 1 moved to this worker
        _, moves = await history.fleet_moves(client, ns, stale)
        assert moves["rfm:loyal"] == (5, 5)
    finally:
        await client.aclose()
