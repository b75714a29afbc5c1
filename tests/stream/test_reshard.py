"""Upgrading the customer projection's layout: the worker's start check and ``meterseg reshard-customers``.

Data written in one shard (every earlier version) is refused by a worker set to more shards, and moved
without losing a customer hash, history or member; a move between two sharded layouts (whose key names
overlap) keeps everything too. Real redis-server (the test stack's), a database of its own.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from datetime import UTC, datetime

import orjson
import pytest
import redis
import redis.asyncio as aioredis

from processors.segments import SegmentChange
from stream.state.keys import CustomerKeys
from stream.state.reshard import LayoutMismatch, check_layout, layout_key, reshard, stored_shards
from stream.state.segments import MembershipStore
from stream.web.context import read_customers

pytestmark = pytest.mark.integration

NS = "up"
CUSTOMERS = [f"C{i}" for i in range(200)]


def _change(customer: str, family: str, segment: str) -> SegmentChange:
    return SegmentChange.model_validate({
        "customer_id": customer, "family": family, "segment_id": segment, "segment_name": segment,
        "change": "entry", "from_segment": None, "to_segment": segment,
        "at": datetime(2026, 1, 5, tzinfo=UTC), "reason": "score_change",
    })  # fmt: skip


def _write(url: str, shards: int) -> None:
    """A projection as the engine writes it: rfm segments for everyone, a rule segment for a third, a catalogue."""

    async def run() -> None:
        client = aioredis.Redis.from_url(url)
        try:
            store = MembershipStore(client, NS, shards)
            changes = [_change(c, "rfm", ("loyal", "champions", "lost")[i % 3]) for i, c in enumerate(CUSTOMERS)]
            changes += [_change(c, "rule", "big") for c in CUSTOMERS[::3]]
            catalogue = {f"{f}:{s}": {"family": f, "id": s, "name": s}
                         for f, s in (("rfm", "loyal"), ("rfm", "champions"), ("rfm", "lost"), ("rule", "big"))}  # fmt: skip
            await store.apply(changes, catalogue=catalogue)
        finally:
            await client.aclose()

    asyncio.run(run())


def _read(url: str, shards: int) -> tuple[dict[tuple[str, str], int], dict[str, set[str]], list[list[bytes | None]]]:
    async def run() -> tuple[dict[tuple[str, str], int], dict[str, set[str]], list[list[bytes | None]]]:
        client = aioredis.Redis.from_url(url)
        try:
            store = MembershipStore(client, NS, shards)
            members = {s: await store.members("rfm", s) for s in ("loyal", "champions", "lost")}
            members["big"] = await store.members("rule", "big")
            rows = await read_customers(client, store.keys, CUSTOMERS, ["seg:rfm", "rule:big"])
            return await store.sizes(), members, rows
        finally:
            await client.aclose()

    return asyncio.run(run())


def test_a_one_shard_projection_is_refused_then_moved_without_loss(redis_db_url: str) -> None:
    _write(redis_db_url, 1)  # what every earlier version wrote (no layout key)
    before = _read(redis_db_url, 1)
    assert sum(before[0].values()) == len(CUSTOMERS) + len(CUSTOMERS[::3])
    client = redis.Redis.from_url(redis_db_url)
    try:
        assert stored_shards(client, NS) == 1
        with pytest.raises(LayoutMismatch, match="reshard-customers"):
            check_layout(client, NS, 8)
        assert _read(redis_db_url, 8)[0] != before[0], "the control: read with the new layout, the old state is missing"
        counts = reshard(client, NS, 8)
        assert counts["customer_keys"] == 2 * len(CUSTOMERS) and counts["members"] == sum(before[0].values())
        assert _read(redis_db_url, 8) == before
        assert not list(client.scan_iter(match=f"{NS}:cust:*")) and not list(client.scan_iter(match=f"{NS}:seg:rfm:*"))
        keys = CustomerKeys(NS, 8)
        assert client.llen(keys.history("C7")) == 1
        check_layout(client, NS, 8)  # now accepted
        assert reshard(client, NS, 8)["customer_keys"] == 0  # nothing left to move
        # between two sharded layouts (key names overlap: shard 3 of 8 and of 5 are one name)
        reshard(client, NS, 5)
        assert stored_shards(client, NS) == 5 and client.hget(layout_key(NS), "moving_to") is None
        assert _read(redis_db_url, 5) == before
        assert client.llen(CustomerKeys(NS, 5).history("C7")) == 1
    finally:
        client.close()


def test_a_fresh_app_records_its_layout_and_the_command_runs(redis_db_url: str) -> None:
    client = redis.Redis.from_url(redis_db_url)
    try:
        assert stored_shards(client, NS) is None
        check_layout(client, NS, 4)
        assert stored_shards(client, NS) == 4
    finally:
        client.close()
    _write(redis_db_url, 4)
    before = _read(redis_db_url, 4)
    env = {"METERSEG_APP_ID": NS, "METERSEG_REDIS_URL": redis_db_url, "METERSEG_REDIS_SHARDS": "2"}
    done = subprocess.run([sys.executable, "-m", "meterseg.cli", "reshard-customers"], env={**_env(), **env},
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    # only the customers whose shard changes move (crc mod 4 in 2, 3): a hash and a history each
    moved = sum(CustomerKeys(NS, 4).shard_of(c) >= 2 for c in CUSTOMERS)
    assert 0 < moved < len(CUSTOMERS)
    assert "4 -> 2 shard(s)" in done.stdout and f"; {2 * moved:,} customer keys" in done.stdout, done.stdout
    assert _read(redis_db_url, 2) == before
    refused = subprocess.run([sys.executable, "-m", "meterseg.cli", "worker"], env={**_env(), **env,
                             "METERSEG_REDIS_SHARDS": "3", "METERSEG_API_TOKEN": "a-long-enough-secret-token-0123"},
                             capture_output=True, text=True, timeout=120)  # fmt: skip
    assert refused.returncode == 2 and "in 2 shard(s), the settings give 3" in refused.stderr, refused.stderr


def _env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("METERSEG_")}


def test_the_catalogue_alone_marks_an_earlier_version(redis_db_url: str) -> None:
    client = redis.Redis.from_url(redis_db_url)
    try:
        client.hset(f"{NS}:segments", "rfm:loyal", orjson.dumps({"family": "rfm", "id": "loyal"}))
        assert stored_shards(client, NS) == 1
        check_layout(client, NS, 1)
        assert client.hget(layout_key(NS), "shards") == b"1"
    finally:
        client.close()
