"""The per-meter state spread over meter shards (:class:`stream.state.keys.MeterKeys`), on a real Redis.

The same health changes, daily windows and alerts written with one shard (the key names of earlier
versions) and with several answer every reader the same: top consumers (the shards' tops merged),
the health states and their members, a meter's windows and alerts. ``meterseg reshard-customers``
moves one-shard meter data (an earlier version's) to shards without losing an entry or a ranking's
expiry, and a worker refuses meter data of another shard count. Real redis-server, a database each.
"""

from __future__ import annotations

import asyncio
from datetime import date
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis

from processors.health import MeterHealth
from stream.state.health import HealthStore
from stream.state.keys import PLANNED_SHARDS, SLOTS, MeterKeys
from stream.state.meters import MeterStore
from stream.state.reshard import LayoutMismatch, check_layout, layout_key, reshard, stored_meter_shards

pytestmark = pytest.mark.integration

NS = "mtr"
METERS = [f"M{i:04d}" for i in range(120)]
DAYS = [f"2026-01-{d:02d}" for d in range(3, 9)]
T0 = 1_767_225_600


def _windows() -> list[tuple[dict[str, Any], str | None]]:
    return [({"key": m, "window_start": f"{d}T00:00:00Z", "kwh_in": float((i * 7 + j * 3) % 23) + 0.5},
             ("North", "South", None)[i % 3]) for i, m in enumerate(METERS) for j, d in enumerate(DAYS)]  # fmt: skip


def _health() -> list[MeterHealth]:
    states = ("good", "fair", "poor")
    return [MeterHealth(m, states[i % 3], ("stuck_register",) if i % 3 == 2 else (), T0 + i) for i, m in enumerate(METERS)]


async def _write(url: str, keys: MeterKeys) -> None:
    client = aioredis.Redis.from_url(url)
    try:
        await HealthStore(client, keys).save(_health())
        await MeterStore(client, keys, keep_days=30).save(_windows(), [{"meter_id": m, "kind": "spike"} for m in METERS[::5]])
    finally:
        await client.aclose()


async def _read(url: str, keys: MeterKeys) -> dict[str, Any]:
    client = aioredis.Redis.from_url(url)
    try:
        health, store = HealthStore(client, keys), MeterStore(client, keys, keep_days=30)
        first, last = date(2026, 1, 3), date(2026, 1, 8)
        return {
            "top": await store.top(first, last, limit=15),
            "top_north": await store.top(first, last, region="North", limit=5),
            "top_day": await store.top(last, last, limit=200),
            "states": await health.states(),
            "poor": await health.members("poor"),
            "M0007": await health.get("M0007"),
            "windows": [await client.lrange(keys.windows(m), 0, -1) for m in METERS[:9]],
            "alerts": [await client.lrange(keys.alerts(m), 0, -1) for m in METERS[:11]],
        }
    finally:
        await client.aclose()


def test_one_shard_names_are_those_of_earlier_versions() -> None:
    k = MeterKeys("{app}", 1)
    assert (k.health("M1"), k.state_sets("poor"), k.windows("M1"), k.alerts("M1"), k.days("2026-01-05"),
            k.days("2026-01-05", "North")) == (
        "{app}:health:M1", ["{app}:health:state:poor"], "{app}:meter:M1:windows", "{app}:meter:M1:alerts",
        ["{app}:kwh:2026-01-05"], ["{app}:kwh:North:2026-01-05"])  # fmt: skip


@pytest.mark.parametrize("shards", [3, 64, 100])
def test_meter_shard_tags_sit_in_evenly_spaced_slots(shards: int) -> None:
    """Shard k's tag is in slot range [k, k+1) * 16384 / shards: equal slot ranges get equal shard counts."""
    from redis.crc import key_slot

    keys = MeterKeys("{fleet-7}", shards)
    slots = [key_slot(keys.shard_day(k, "2026-01-05").encode()) for k in range(shards)]
    assert all(k * SLOTS // shards <= s < (k + 1) * SLOTS // shards for k, s in enumerate(slots)), slots
    assert {key_slot(keys.health(m).encode()) for m in METERS} <= set(slots)
    # a meter's keys share its shard's slot (a script on one meter's keys stays in one slot)
    m = METERS[5]
    assert len({key_slot(x.encode()) for x in (keys.health(m), keys.windows(m), keys.alerts(m))}) == 1
    assert shards <= PLANNED_SHARDS


def test_sharded_meter_state_answers_as_one_shard(redis_db_url: str) -> None:
    asyncio.run(_write(redis_db_url, MeterKeys(NS, 1)))
    sharded = MeterKeys("sh", 4)
    asyncio.run(_write(redis_db_url, sharded))
    one, four = asyncio.run(_read(redis_db_url, MeterKeys(NS, 1))), asyncio.run(_read(redis_db_url, sharded))
    assert four == one
    assert len(one["top"]) == 15 and len(one["top_day"]) == len(METERS) and len(one["poor"]) == len(METERS) // 3
    client = redis.Redis.from_url(redis_db_url)
    try:  # the control: the sharded data is in four shards' keys, each holding some of the meters
        sizes = [client.zcard(sharded.shard_day(k, DAYS[0])) for k in range(4)]
        assert sum(sizes) == len(METERS) and all(0 < s < len(METERS) for s in sizes), sizes
        assert not client.exists(f"sh:kwh:{DAYS[0]}")
    finally:
        client.close()


def test_saved_in_slices_answers_as_in_one_pipeline(redis_db_url: str) -> None:
    """A day's records saved a few at a time (generators, one pipeline per slice) leave what one pipeline does."""

    async def write(keys: MeterKeys, slice_size: int) -> int:
        client = aioredis.Redis.from_url(redis_db_url)
        runs = 0
        real = client.pipeline

        def counted(*args: Any, **kwargs: Any) -> Any:
            nonlocal runs
            runs += 1
            return real(*args, **kwargs)

        client.pipeline = counted  # type: ignore[method-assign]
        try:
            alerts = ({"meter_id": m, "kind": "spike"} for m in METERS[::5])
            await MeterStore(client, keys, keep_days=30).save(iter(_windows()), alerts, slice_size=slice_size)
        finally:
            await client.aclose()
        return runs

    whole, sliced = MeterKeys("whole", 4), MeterKeys("sliced", 4)
    records = len(_windows()) + len(METERS[::5])
    assert asyncio.run(write(whole, records)) == 1
    assert asyncio.run(write(sliced, 7)) == -(-records // 7)
    assert asyncio.run(_read(redis_db_url, sliced)) == asyncio.run(_read(redis_db_url, whole))


def test_one_shard_meter_state_is_refused_then_moved(redis_db_url: str) -> None:
    asyncio.run(_write(redis_db_url, MeterKeys(NS, 1)))
    before = asyncio.run(_read(redis_db_url, MeterKeys(NS, 1)))
    client = redis.Redis.from_url(redis_db_url)
    try:
        # the version that spread the customer keys only: a layout of 4 shards, meter keys in one
        client.hset(layout_key(NS), "shards", "4")
        assert stored_meter_shards(client, NS) == 1
        with pytest.raises(LayoutMismatch, match=r"per-meter state .* in 1 shard") as refused:
            check_layout(client, NS, 4)
        assert "METERSEG_REDIS_SHARDS=1" not in str(refused.value)  # the customers are in 4: no keeping both as is
        ttl = client.pttl(f"{NS}:kwh:{DAYS[0]}")
        assert 0 < ttl <= 30 * 86_400_000
        counts = reshard(client, NS, 4)
        assert counts["meter_from_shards"] == 1
        # health hashes of every meter, windows of every meter, alerts of every fifth
        assert counts["meter_keys"] == 2 * len(METERS) + len(METERS[::5])
        # state-set members and ranking entries: 120 + 6 days x (120 + 80 regional)
        assert counts["meter_members"] == len(METERS) + len(DAYS) * (len(METERS) + 80)
        assert asyncio.run(_read(redis_db_url, MeterKeys(NS, 4))) == before
        assert not [k for p in MeterKeys(NS, 1).patterns() for k in client.scan_iter(match=p)]
        new = MeterKeys(NS, 4)
        assert all(0 < client.pttl(new.shard_day(k, DAYS[0])) <= ttl for k in range(4))
        check_layout(client, NS, 4)  # accepted now
        assert client.hget(layout_key(NS), "meter_shards") == b"4"
        assert reshard(client, NS, 4)["meter_keys"] == 0
        # between two sharded layouts (both match the {app:m*} patterns)
        reshard(client, NS, 7)
        assert stored_meter_shards(client, NS) == 7 and client.hget(layout_key(NS), "meters_moving_to") is None
        assert asyncio.run(_read(redis_db_url, MeterKeys(NS, 7))) == before
    finally:
        client.close()


def test_a_fresh_app_records_the_meter_shards(redis_db_url: str) -> None:
    client = redis.Redis.from_url(redis_db_url)
    try:
        assert stored_meter_shards(client, NS) is None
        check_layout(client, NS, 8)
        assert stored_meter_shards(client, NS) == 8
        with pytest.raises(LayoutMismatch, match="in 8 shard"):
            check_layout(client, NS, 1)
    finally:
        client.close()


@pytest.mark.parametrize("shards", [1, 4])
def test_a_corrected_day_replaces_its_record_in_place(redis_db_url: str, shards: int) -> None:
    async def run() -> list[bytes]:
        client = aioredis.Redis.from_url(redis_db_url)
        try:
            keys = MeterKeys(NS, shards)
            store = MeterStore(client, keys)
            day1, day2 = ({"key": "M7", "window_start": f"2026-01-0{d}T00:00:00Z", "kwh_in": 1.0} for d in (5, 6))
            await store.save([(day1, None), (day2, None)])
            await store.save([({**day1, "kwh_in": 2.5, "revision": 1}, None)])
            assert await store.top(date(2026, 1, 5), date(2026, 1, 6)) == [("M7", 3.5)]
            return list(await client.lrange(keys.windows("M7"), 0, -1))
        finally:
            await client.aclose()

    records = asyncio.run(run())
    assert len(records) == 2 and b'"revision":1' in records[1] and b'"kwh_in":2.5' in records[1], records
