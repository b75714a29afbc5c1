"""Chunked partition checkpoints (``stream.state.checkpoints``) on a real Redis.

The guarantee under test: state and offsets switch together in one step, and a
save that dies at any point (between part writes, or after the last part and
before the flip) leaves the previous checkpoint fully usable.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import orjson
import pytest
import redis.asyncio as aioredis

from stream.state import checkpoints as ck
from stream.state.checkpoints import CheckpointError, CheckpointStore

pytestmark = pytest.mark.integration

PART = 1000  # bytes per part: every state below spans several parts


class Crash(BaseException):
    """A worker dying mid-save (BaseException: nothing in the save may catch it)."""


def big_state(seed: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    return {
        "seed": seed,
        "meters": [f"M{i:07d}" for i in range(500)],
        "values": rng.random(300),  # numpy: serialised as a list
        "nested": {"text": "é" * 700, "n": [seed] * 50},
    }


def expected(state: dict[str, Any]) -> Any:
    return orjson.loads(orjson.dumps(state, option=orjson.OPT_SERIALIZE_NUMPY))


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    c = aioredis.Redis.from_url(redis_url)
    ns = f"ckpt-test-{uuid.uuid4().hex[:8]}"
    c.test_ns = ns  # type: ignore[attr-defined]
    try:
        yield c
    finally:
        keys = [k async for k in c.scan_iter(match=f"*{ns}*", count=1000)]
        if keys:
            await c.unlink(*keys)
        await c.aclose()


def store_of(client: aioredis.Redis, part_bytes: int = PART) -> CheckpointStore:
    return CheckpointStore(client, client.test_ns, part_bytes=part_bytes)  # type: ignore[attr-defined]


async def generation_keys(client: aioredis.Redis) -> list[bytes]:
    return sorted([k async for k in client.scan_iter(match=f"{client.test_ns}:ckpt:*:gen:*", count=1000)])  # type: ignore[attr-defined]


async def test_round_trip_over_several_parts_and_only_the_current_generation_is_kept(client: aioredis.Redis) -> None:
    store = store_of(client)
    assert await store.load("ingest", 0) == (None, {})
    await store.save("ingest", 0, big_state(1), {"meter.readings": 10, "meter.heartbeats": 4})
    assert store.last_save is not None and store.last_save.parts > 3
    await store.save("ingest", 0, big_state(2), {"meter.readings": 20, "meter.heartbeats": 7})
    state, offsets = await CheckpointStore(client, store.namespace).load("ingest", 0)
    assert state == expected(big_state(2))
    assert offsets == {"meter.readings": 20, "meter.heartbeats": 7}
    assert len(await generation_keys(client)) == 1  # the replaced generation is gone
    assert set(await store.keys("ingest", 0)) == {
        store.key("ingest", 0),
        *(k.decode() for k in await generation_keys(client)),
    }
    assert await store.stored_bytes("ingest", 0) > len(orjson.dumps(big_state(2), option=orjson.OPT_SERIALIZE_NUMPY))


async def test_partitions_and_pipelines_are_independent(client: aioredis.Redis) -> None:
    store = store_of(client)
    await store.save("ingest", 0, {"p": 0}, {"t": 1})
    await store.save("ingest", 1, {"p": 1}, {"t": 2})
    await store.save("segments", 0, {"p": "s"}, {"u": 3})
    assert await store.load("ingest", 1) == ({"p": 1}, {"t": 2})
    assert await store.load("segments", 0) == ({"p": "s"}, {"u": 3})
    assert await store.delete("ingest", 0) == 2
    assert await store.load("ingest", 0) == (None, {})
    assert await store.load("ingest", 1) == ({"p": 1}, {"t": 2})


@pytest.mark.parametrize("parts_before_crash", [1, 3, None], ids=["after-1-part", "after-3-parts", "before-flip"])
async def test_a_crash_between_part_writes_and_the_flip_leaves_the_previous_checkpoint(
    client: aioredis.Redis, monkeypatch: pytest.MonkeyPatch, parts_before_crash: int | None
) -> None:
    store = store_of(client)
    await store.save("ingest", 0, big_state(1), {"meter.readings": 10})
    monkeypatch.setattr(ck, "PARTS_PER_CALL", 1)  # one part per round trip: the crash can fall between any two

    crashing = store_of(client)
    if parts_before_crash is None:  # every part written, the worker dies before the flip

        async def die(*args: Any, **kwargs: Any) -> Any:
            raise Crash

        crashing._flip = die  # type: ignore[assignment]
    else:
        real_pipeline = client.pipeline
        written = 0

        def pipeline(*args: Any, **kwargs: Any) -> Any:
            nonlocal written
            if written == parts_before_crash:
                raise Crash
            written += 1
            return real_pipeline(*args, **kwargs)

        monkeypatch.setattr(client, "pipeline", pipeline)
    with pytest.raises(Crash):
        await crashing.save("ingest", 0, big_state(2), {"meter.readings": 99})
    monkeypatch.undo()

    # a fresh worker (fresh store) restores the previous checkpoint: its state with its offsets
    state, offsets = await CheckpointStore(client, store.namespace).load("ingest", 0)
    assert state == expected(big_state(1))
    assert offsets == {"meter.readings": 10}
    assert len(await generation_keys(client)) == 2  # the previous one and the crashed save's parts

    # the next save works; the crashed generation is collected once it is old enough
    monkeypatch.setattr(ck, "ABANDONED_AFTER_S", 0.0)
    await store.save("ingest", 0, big_state(3), {"meter.readings": 30})
    assert await store.load("ingest", 0) == (expected(big_state(3)), {"meter.readings": 30})
    assert len(await generation_keys(client)) == 1
    fields: list[Any] = await client.hkeys(store.key("ingest", 0))
    assert not [k for k in fields if k.startswith(b"pending:")]


async def test_a_fresh_crashed_generation_is_not_collected_yet(client: aioredis.Redis) -> None:
    """A generation still being written by another worker (announced recently) is left alone."""
    store = store_of(client)
    await store.save("ingest", 0, {"v": 1}, {"t": 1})
    crashing = store_of(client)

    async def die(*args: Any, **kwargs: Any) -> Any:
        raise Crash

    crashing._flip = die  # type: ignore[assignment]
    with pytest.raises(Crash):
        await crashing.save("ingest", 0, big_state(2), {"t": 2})
    await store.save("ingest", 0, {"v": 3}, {"t": 3})
    assert len(await generation_keys(client)) == 2
    assert await store.load("ingest", 0) == ({"v": 3}, {"t": 3})


async def test_the_flip_refuses_an_incomplete_generation(
    client: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Parts deleted under a slow writer (taken for garbage) never become the checkpoint."""
    store = store_of(client)
    await store.save("ingest", 0, big_state(1), {"t": 1})
    real_flip = store._flip

    async def flip_after_losing_a_part(keys: list[str], args: list[Any]) -> Any:
        await client.hdel(keys[1], "1")
        return await real_flip(keys=keys, args=args)

    monkeypatch.setattr(store, "_flip", flip_after_losing_a_part)
    with pytest.raises(Exception, match="holds"):
        await store.save("ingest", 0, big_state(2), {"t": 2})
    assert await CheckpointStore(client, store.namespace).load("ingest", 0) == (expected(big_state(1)), {"t": 1})


async def test_concurrent_saves_leave_one_consistent_checkpoint(client: aioredis.Redis) -> None:
    import asyncio

    a, b = store_of(client), store_of(client)
    await asyncio.gather(
        a.save("ingest", 0, big_state(1), {"t": 1}),
        b.save("ingest", 0, big_state(2), {"t": 2}),
    )
    state, offsets = await a.load("ingest", 0)
    assert (state, offsets) in [(expected(big_state(1)), {"t": 1}), (expected(big_state(2)), {"t": 2})]
    assert len(await generation_keys(client)) == 1


async def test_a_load_racing_a_replacement_reads_the_new_generation(
    client: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = store_of(client)
    await store.save("ingest", 0, big_state(1), {"t": 1})
    other = store_of(client)
    real = store._read_parts
    raced = False

    async def read_parts(head: str, gen: str, n: int, size: int) -> bytearray | None:
        nonlocal raced
        if not raced:  # another worker replaces (and deletes) the generation we are about to read
            raced = True
            await other.save("ingest", 0, big_state(2), {"t": 2})
        return await real(head, gen, n, size)

    monkeypatch.setattr(store, "_read_parts", read_parts)
    assert await store.load("ingest", 0) == (expected(big_state(2)), {"t": 2})


async def test_a_generation_missing_parts_is_an_error_not_a_state(client: aioredis.Redis) -> None:
    store = store_of(client)
    await store.save("ingest", 0, big_state(1), {"t": 1})
    head = store.key("ingest", 0)
    await client.hset(head, "bytes", "12")
    with pytest.raises(CheckpointError):
        await store.load("ingest", 0)


async def test_the_previous_format_loads_and_the_next_save_replaces_it(client: aioredis.Redis) -> None:
    store = store_of(client)
    head = store.key("segments", 2)
    old = {"customers": {"C1": [1, 2]}}
    await client.hset(
        head, mapping={"state": orjson.dumps(old), "saved_at": b"1.0", "offset:customer.purchases": b"41"}
    )
    assert await store.load("segments", 2) == (old, {"customer.purchases": 41})
    await store.save("segments", 2, {"customers": {}}, {"customer.purchases": 50})
    assert b"state" not in await client.hkeys(head)
    assert await store.load("segments", 2) == ({"customers": {}}, {"customer.purchases": 50})


async def test_an_empty_state_is_one_part(client: aioredis.Redis) -> None:
    store = store_of(client, part_bytes=ck.PART_BYTES)
    await store.save("ingest", 3, {}, {})
    assert store.last_save is not None and store.last_save.parts == 1
    assert await store.load("ingest", 3) == ({}, {})
