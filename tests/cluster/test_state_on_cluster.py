"""Every Redis access pattern of the engine and the API, on a real three-master Redis Cluster.

With ``redis_cluster=True`` the clients are ``RedisCluster`` ones; the app-wide
keys are under the hash-tagged namespace ``{app}``, so the multi-key Lua
scripts (regional windows), the transactions (model exchange, top consumers)
and the multi-key reads (MGET) run in one slot; the customer projection and the
member sets are spread over shard hash tags ``{app:s<k>}`` (:mod:`stream.state.keys`),
and their scripts (single-family memberships, the API's bulk HMGET) run once per shard; the per-meter
state (health, windows, alerts, daily rankings) over the meter shard tags ``{app:m<k>.<salt>}``, top
consumers one ZUNIONSTORE per shard. The stores are built exactly as the engine
builds them, with ``settings.redis_namespace``. A control shows what breaks
without the hash tag: the same scripts across slots are refused (CROSSSLOT).
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest
from redis.crc import key_slot
from redis.exceptions import RedisClusterException, ResponseError

from meterseg.settings import Settings
from processors.clustering.model import ClusterStats, FeatureSpec
from processors.clustering.owner import ModelOwner
from processors.health import MeterHealth
from processors.segments import SegmentChange
from processors.windows import ClosedWindows
from stream.clients.redis_client import app_key_patterns, async_redis, sync_redis
from stream.clients.security import check_redis
from stream.state.checkpoints import CheckpointStore
from stream.state.health import HealthStore
from stream.state.keys import MeterKeys, customer_keys, meter_keys
from stream.state.meters import MeterStore
from stream.state.model import ModelExchange
from stream.state.regional import RegionalMerger
from stream.state.reshard import LayoutMismatch, check_layout, reshard, stored_meter_shards
from stream.state.segments import MembershipStore
from stream.web.context import meter_health, read_customers
from tests.cluster.conftest import RedisCluster

pytestmark = pytest.mark.integration

HOUR = 3600
T0 = int(datetime(2026, 1, 5, tzinfo=UTC).timestamp())


@pytest.fixture
def settings(redis_cluster: RedisCluster) -> Settings:
    return Settings(app_id=f"cl-{uuid.uuid4().hex[:8]}", redis_url=redis_cluster.url, redis_cluster=True)


def sync_keyslot(key: str) -> int:
    """The hash slot of a key (Redis Cluster's CRC16 of its hash tag)."""
    return int(key_slot(key.encode()))


def region_windows(start: int, kwh: float) -> ClosedWindows:
    one = np.array
    return ClosedWindows(
        kind="region", size_s=HOUR, keys=["North"], start=one([start]), count=one([4]), expected=one([-1]),
        kwh_in=one([kwh]), kwh_out=one([0.0]), kw_min=one([0.1]), kw_max=one([0.9]), kw_mean=one([0.5]),
        revenue=one([kwh * 0.3]),
    )  # fmt: skip


def change(customer: str, segment: str, action: str = "entry", family: str = "rfm") -> SegmentChange:
    return SegmentChange.model_validate({
        "customer_id": customer, "family": family, "segment_id": segment, "segment_name": segment.title(),
        "change": action, "from_segment": None, "to_segment": segment if action == "entry" else None,
        "at": datetime(2026, 1, 5, tzinfo=UTC), "reason": "score_change",
    })  # fmt: skip


async def test_cluster_namespace_holds_one_slot_and_the_client_routes(settings: Settings) -> None:
    client = async_redis(settings)
    try:
        await check_redis(client, settings.redis_url)
        ns = settings.redis_namespace
        assert ns == "{" + settings.app_id + "}"
        slots = {client.keyslot(f"{ns}:{suffix}") for suffix in ("cust:C1", "seg:rfm:loyal", "region:pending", "model")}
        assert len(slots) == 1
        nodes = {client.get_node_from_key(f"{settings.app_id}:{i}").name for i in range(64)}
        assert len(nodes) == 3, "without the hash tag keys spread over the three masters"
    finally:
        await client.aclose()


async def test_checkpoints_health_and_meter_views(settings: Settings) -> None:
    client = async_redis(settings)
    try:
        # as the engine builds it: named by the plain app id, each partition's checkpoint in a slot of its own
        store = CheckpointStore(client, settings.app_id)
        await store.save("ingest", 3, {"clock": 5, "values": [1, 2]}, {"meter.readings": 42, "meter.heartbeats": 7})
        assert await store.load("ingest", 3) == (
            {"clock": 5, "values": [1, 2]},
            {"meter.readings": 42, "meter.heartbeats": 7},
        )

        keys = meter_keys(settings)
        assert keys.shards == 64
        health = HealthStore(client, keys)
        await health.save([MeterHealth("M1", "poor", ("stuck_register",), T0), MeterHealth("M2", "good", (), T0)])
        assert await health.members("poor") == ["M1"]
        assert (await health.get("M1") or {})["reasons"] == ["stuck_register"]
        assert await meter_health(client, keys) == {"M1": "poor", "M2": "good"}

        meters = MeterStore(client, keys)
        day1 = {"key": "M1", "window_start": "2026-01-05T00:00:00Z", "kwh_in": 3.0}
        day2 = {"key": "M1", "window_start": "2026-01-06T00:00:00Z", "kwh_in": 4.0}
        other = {"key": "M2", "window_start": "2026-01-06T00:00:00Z", "kwh_in": 5.0}
        await meters.save(
            [(day1, "North"), (day2, "North"), (other, "South")], alerts=[{"meter_id": "M1", "kind": "spike"}]
        )
        first, last = datetime(2026, 1, 5).date(), datetime(2026, 1, 6).date()
        assert await meters.top(first, last) == [("M1", 7.0), ("M2", 5.0)]  # a ZUNIONSTORE per shard, merged
        assert await meters.top(first, last, region="North") == [("M1", 7.0)]
        assert keys.shard_of("M1") != keys.shard_of("M2")  # the merge is across slots
        revised = {**day2, "kwh_in": 4.5, "revision": 1}  # the revise script: one key, its meter's slot
        await meters.save([(revised, "North")])
        assert await meters.top(first, last, limit=1) == [("M1", 7.5)]
        assert len(await client.lrange(keys.windows("M1"), 0, -1)) == 2
    finally:
        await client.aclose()


async def test_regional_windows_merge_once_across_partitions(settings: Settings) -> None:
    client, ns = async_redis(settings), settings.redis_namespace
    try:
        a, b = RegionalMerger(client, ns, partitions=2), RegionalMerger(client, ns, partitions=2)
        await a.save(0, T0 + HOUR, [region_windows(T0, 2.0)])
        assert await a.claim_ready() == []  # partition 1 has not reported yet
        await b.save(1, T0 + HOUR, [region_windows(T0, 3.0)])
        claimed = await b.claim_ready()
        assert [(m.split("|")[0], rec["kwh_in"], rec["readings"]) for m, rec in claimed] == [("North", 5.0, 8)]
        assert await a.claim_ready() == []  # claimed by b
        await b.confirm(claimed)
        await a.save(0, T0 + 2 * HOUR, [region_windows(T0, 9.0)])  # a late replay of an emitted window: no-op
        assert await a.claim_ready() == []
    finally:
        await client.aclose()


async def test_memberships_and_the_api_bulk_reads(settings: Settings) -> None:
    client, ns = async_redis(settings), settings.redis_namespace
    try:
        store = MembershipStore(client, ns, settings.state_shards)
        others = [change(f"X{i}", "loyal") for i in range(40)]
        await store.apply([change("C1", "loyal"), change("C2", "loyal"), change("C3", "big", family="rule"), *others])
        await store.apply([change("C1", "champions")])  # an rfm entry replaces C1's current segment (Lua, per shard)
        assert await store.members("rfm", "loyal") == {"C2"} | {c.customer_id for c in others}
        assert await store.members("rfm", "champions") == {"C1"}
        assert await store.sizes() == {("rfm", "loyal"): 41, ("rfm", "champions"): 1, ("rule", "big"): 1}
        # the customers' keys are spread over several slots on several masters, each with its shard's member set
        keys = [store.customer_key(c.customer_id) for c in others]
        slots = {sync_keyslot(k) for k in keys}
        assert len(slots) > 10
        sync = sync_redis(settings)
        try:
            assert len({sync.get_node_from_key(k).name for k in keys}) >= 2, "customer keys on several masters"
        finally:
            sync.close()
        for c in others:
            shard = store.keys.shard_of(c.customer_id)
            assert sync_keyslot(store.keys.shard_members(shard, "rfm", "loyal")) == sync_keyslot(
                store.customer_key(c.customer_id)
            )
        rows = await read_customers(
            client, store.keys, ["C1", "C2", "C9"], ["seg:rfm", "rule:big"]
        )  # a Lua call a shard
        assert rows == [[b"champions", None], [b"loyal", None], [None, None]]
    finally:
        await client.aclose()


async def test_model_exchange_lease_and_versions(settings: Settings) -> None:
    client, ns = async_redis(settings), settings.redis_namespace
    spec = FeatureSpec()
    try:
        owner = ModelExchange(client, ns, lambda: ModelOwner(k=2, spec=spec, min_seed_samples=16, sample_cap=64))
        follower = ModelExchange(client, ns, lambda: ModelOwner(k=2, spec=spec))
        stats = ClusterStats.empty(spec)
        stats.add_sample(np.random.default_rng(1).random((40, len(spec.names))))
        await owner.push_stats([stats])
        events = await owner.run_owner()  # lease (SET NX PX), LRANGE+DEL and the 3-key SET in MULTIs
        assert events and events[-1].version >= 1
        assert await follower.run_owner() == []  # the lease is held by the owner
        model = await follower.fetch()
        assert model is not None and model.version == events[-1].version
        assert await follower.fetch() is None  # nothing newer
    finally:
        await client.aclose()


def test_without_the_hash_tag_the_scripts_are_refused(settings: Settings) -> None:
    """The control: the app id alone as namespace spreads the keys, and the multi-key commands fail."""
    client = sync_redis(settings)
    try:
        plain = settings.app_id
        keys: list[Any] = [f"{plain}:region:pending", f"{plain}:region:frontier"]
        assert client.keyslot(keys[0]) != client.keyslot(keys[1])
        with pytest.raises((RedisClusterException, ResponseError), match=r"(?i)slot"):
            client.eval("return redis.call('ZCARD', KEYS[1]) + redis.call('HLEN', KEYS[2])", 2, *keys)
    finally:
        client.close()


async def test_the_app_key_patterns_find_every_key_of_the_app(settings: Settings) -> None:
    """What the demo's fresh start removes: the shared state and the checkpoints spread over the masters."""
    client = async_redis(settings)
    try:
        await CheckpointStore(client, settings.app_id).save("ingest", 0, {"x": 1}, {"meter.readings": 1})
        store = MembershipStore(client, settings.redis_namespace, settings.state_shards)
        await store.apply([change("C1", "loyal")])
        await HealthStore(client, meter_keys(settings)).save([MeterHealth("M1", "poor", ("spike",), T0)])
        found = {key for pattern in app_key_patterns(settings) async for key in client.scan_iter(match=pattern)}
        assert any(k.startswith(f"{settings.app_id}:ckpt:".encode()) for k in found)
        assert store.customer_key("C1").encode() in found
        assert meter_keys(settings).health("M1").encode() in found
        assert all(k.startswith((settings.app_id.encode(), b"{" + settings.app_id.encode())) for k in found)
    finally:
        await client.aclose()


def test_an_earlier_one_slot_projection_moves_to_the_shards(settings: Settings) -> None:
    """The upgrade of a cluster deployment: everything under ``{app}`` (earlier versions) moved over the masters."""
    ns = settings.redis_namespace
    customers = [f"U{i}" for i in range(60)]

    async def write_and_read(shards: int, write: bool) -> tuple[set[str], dict[tuple[str, str], int], list[Any]]:
        client = async_redis(settings)
        try:
            store = MembershipStore(client, ns, shards)
            if write:
                await store.apply([change(c, "loyal") for c in customers],
                                  catalogue={"rfm:loyal": {"family": "rfm", "id": "loyal", "name": "Loyal"}})  # fmt: skip
            rows = await read_customers(client, store.keys, customers, ["seg:rfm"])
            return await store.members("rfm", "loyal"), await store.sizes(), rows
        finally:
            await client.aclose()

    before = asyncio.run(write_and_read(1, True))
    assert before[0] == set(customers)
    sync = sync_redis(settings)
    try:
        assert len({sync.keyslot(k) for k in sync.scan_iter(match=f"{ns}:*")}) == 1  # the one-slot layout
        with pytest.raises(LayoutMismatch):
            check_layout(sync, ns, settings.state_shards)
        counts = reshard(sync, ns, settings.state_shards)
        assert counts["customer_keys"] == 2 * len(customers) and counts["members"] == len(customers)
        check_layout(sync, ns, settings.state_shards)
        moved = [store_keys.customer(c) for store_keys in [customer_keys(settings)] for c in customers]
        assert len({sync.get_node_from_key(k).name for k in moved}) >= 2
    finally:
        sync.close()
    assert asyncio.run(write_and_read(settings.state_shards, False)) == before


def test_meter_keys_spread_over_the_masters_and_an_earlier_layout_moves(settings: Settings) -> None:
    """Meter keys of 300 meters land on every master; one-slot meter data (earlier versions) moves to the shards."""
    ns = settings.redis_namespace
    meters = [f"MM{i:04d}" for i in range(300)]

    async def write(keys: MeterKeys) -> None:
        client = async_redis(settings)
        try:
            await HealthStore(client, keys).save([MeterHealth(m, ("good", "poor")[i % 2], (), T0) for i, m in enumerate(meters)])
            await MeterStore(client, keys).save(
                [({"key": m, "window_start": "2026-01-05T00:00:00Z", "kwh_in": float(i)}, "North") for i, m in enumerate(meters)]
            )
        finally:
            await client.aclose()

    async def read(keys: MeterKeys) -> tuple[Any, ...]:
        client = async_redis(settings)
        try:
            day = datetime(2026, 1, 5).date()
            return (await HealthStore(client, keys).states(), await MeterStore(client, keys).top(day, day, limit=20),
                    await MeterStore(client, keys).top(day, day, region="North", limit=300))  # fmt: skip
        finally:
            await client.aclose()

    asyncio.run(write(MeterKeys(ns, 1)))  # what every earlier version wrote: one slot
    before = asyncio.run(read(MeterKeys(ns, 1)))
    assert len(before[0]) == len(meters) and before[1][0] == ("MM0299", 299.0)
    sync = sync_redis(settings)
    try:
        one = MeterKeys(ns, 1)
        assert {sync.get_node_from_key(one.health(m)).name for m in meters} == {sync.get_node_from_key(ns).name}
        sync.hset(f"{ns}:layout", "shards", str(settings.state_shards))  # the version that spread the customers only
        with pytest.raises(LayoutMismatch, match="per-meter state"):
            check_layout(sync, ns, settings.state_shards)
        counts = reshard(sync, ns, settings.state_shards)
        assert counts["meter_keys"] == 2 * len(meters) and counts["meter_members"] == 3 * len(meters)
        check_layout(sync, ns, settings.state_shards)
        assert stored_meter_shards(sync, ns) == 64
        keys = meter_keys(settings)
        per_master = Counter(sync.get_node_from_key(keys.health(m)).name for m in meters)
        slots = {sync.keyslot(keys.windows(m)) for m in meters}
        assert len(per_master) == 3 and min(per_master.values()) > len(meters) // 5, per_master
        assert len(slots) > 40, len(slots)
        assert not [k for p in one.patterns() for k in sync.scan_iter(match=p)]
    finally:
        sync.close()
    assert asyncio.run(read(meter_keys(settings))) == before
