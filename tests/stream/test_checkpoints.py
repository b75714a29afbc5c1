"""Incremental, content-addressed partition checkpoints (``stream.state.checkpoints``) on a real Redis.

The guarantees under test: state and offsets switch together in one step; a save that dies at any
point (between chunk writes, or before the flip) leaves the previous checkpoint fully usable; a save
writes only the chunks not stored yet and leaves no chunk that nothing references; a worker that
lost the partition cannot overwrite its new owner's checkpoint (fencing); earlier formats load.
"""

from __future__ import annotations

import asyncio
import base64
import uuid
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import orjson
import pytest
import redis.asyncio as aioredis

from stream.state import chunking
from stream.state.checkpoints import CheckpointError, CheckpointFenced, CheckpointStore

pytestmark = pytest.mark.integration

WRITE = 20_000  # bytes of chunks per round trip: every state below takes several


class Crash(BaseException):
    """A worker dying mid-save (BaseException: nothing in the save may catch it)."""


def big_state(seed: int, customers: int = 3000) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    return {
        "seed": seed,
        "meters": [f"M{i:07d}" for i in range(500)],
        "values": rng.random(300),  # numpy: serialised as a list
        "column": base64.b64encode(rng.bytes(120_000)).decode(),  # a packed column: cut at fixed offsets
        "customers": {f"C{i:06d}": {"n": i, "spend": [seed, i * 0.5]} for i in range(customers)},
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


def store_of(client: aioredis.Redis) -> CheckpointStore:
    return CheckpointStore(client, client.test_ns, write_bytes=WRITE)  # type: ignore[attr-defined]


async def stored_ids(store: CheckpointStore, pipeline: str = "ingest", partition: int = 0) -> set[str]:
    ids: list[Any] = await store.client.hkeys(store.chunks_key(store.key(pipeline, partition)))
    return {i.decode() for i in ids}


async def referenced_ids(store: CheckpointStore, pipeline: str = "ingest", partition: int = 0) -> set[str]:
    head = store.key(pipeline, partition)
    skeleton = orjson.loads(await store.client.hget(head, "skeleton"))
    chunks: dict[str, bytes] = {}
    wanted = chunking.referenced(skeleton)
    while wanted - chunks.keys():
        ids = sorted(wanted - chunks.keys())
        chunks.update(zip(ids, await store.client.hmget(store.chunks_key(head), ids), strict=True))
        wanted = chunking.referenced(skeleton, chunks)
    return wanted


async def test_round_trip_and_the_next_save_writes_only_what_changed(client: aioredis.Redis) -> None:
    store = store_of(client)
    assert await store.load("ingest", 0) == (None, {})
    state = big_state(1)
    await store.save("ingest", 0, state, {"meter.readings": 10, "meter.heartbeats": 4})
    first = store.last_save
    assert first is not None and first.parts > 20 and first.written == first.bytes
    state["customers"]["C000500"]["spend"] = [9, 9]  # one customer changed
    await store.save("ingest", 0, state, {"meter.readings": 20, "meter.heartbeats": 7})
    second = store.last_save
    assert second is not None and second.bytes == pytest.approx(first.bytes, rel=0.01)
    assert second.written < 0.05 * second.bytes, (second.written, second.bytes)
    restored, offsets = await CheckpointStore(client, store.namespace).load("ingest", 0)
    assert restored == expected(state)
    assert list(restored["customers"]) == list(state["customers"])  # the order of keys is kept
    assert offsets == {"meter.readings": 20, "meter.heartbeats": 7}
    assert await stored_ids(store) == await referenced_ids(store)  # the replaced chunk is gone
    assert set(await store.keys("ingest", 0)) == {store.key("ingest", 0), store.chunks_key(store.key("ingest", 0))}
    assert await store.stored_bytes("ingest", 0) > second.bytes


async def test_a_state_that_shrinks_and_grows_keeps_exactly_its_chunks(client: aioredis.Redis) -> None:
    store = store_of(client)
    for seed, customers in ((1, 2000), (2, 300), (3, 50), (4, 5000), (4, 5000)):
        state = big_state(seed, customers)
        await store.save("ingest", 0, state, {"t": seed})
        assert await store_of(client).load("ingest", 0) == (expected(state), {"t": seed})
        assert await stored_ids(store) == await referenced_ids(store)
    assert store.last_save is not None and store.last_save.written == len(
        orjson.dumps(chunking.split_snapshot(big_state(4, 5000)).skeleton)
    )  # the same state again: only the skeleton is written


async def test_partitions_and_pipelines_are_independent(client: aioredis.Redis) -> None:
    store = store_of(client)
    await store.save("ingest", 0, big_state(0), {"t": 1})
    await store.save("ingest", 1, {"p": 1}, {"t": 2})
    await store.save("segments", 0, {"p": "s"}, {"u": 3})
    assert await store.load("ingest", 1) == ({"p": 1}, {"t": 2})
    assert await store.load("segments", 0) == ({"p": "s"}, {"u": 3})
    assert await store.delete("ingest", 0) == 2  # head and chunks
    assert await store.load("ingest", 0) == (None, {})
    assert await store.load("ingest", 1) == ({"p": 1}, {"t": 2})


@pytest.mark.parametrize("writes_before_crash", [0, 2, None], ids=["first-write", "after-2-writes", "before-flip"])
async def test_a_crash_before_the_flip_leaves_the_previous_checkpoint(
    client: aioredis.Redis, monkeypatch: pytest.MonkeyPatch, writes_before_crash: int | None
) -> None:
    store = store_of(client)
    await store.save("ingest", 0, big_state(1), {"meter.readings": 10})
    crashing = store_of(client)
    await crashing.load("ingest", 0)
    if writes_before_crash is None:  # every chunk written, the worker dies before the flip

        async def die(*args: Any, **kwargs: Any) -> Any:
            raise Crash

        crashing._flip = die  # type: ignore[assignment]
    else:
        real_write = crashing._write
        written = 0

        async def write(*args: Any) -> None:
            nonlocal written
            if written == writes_before_crash:
                raise Crash
            written += 1
            await real_write(*args)

        monkeypatch.setattr(crashing, "_write", write)
    with pytest.raises(Crash):
        await crashing.save("ingest", 0, big_state(2), {"meter.readings": 99})

    # a fresh worker (fresh store) restores the previous checkpoint: its state with its offsets
    fresh = store_of(client)
    state, offsets = await fresh.load("ingest", 0)
    assert state == expected(big_state(1))
    assert offsets == {"meter.readings": 10}
    if writes_before_crash != 0:
        assert await stored_ids(store) > await referenced_ids(store)  # the crashed save's chunks
    # its next save works and collects them
    await fresh.save("ingest", 0, big_state(3), {"meter.readings": 30})
    assert await store_of(client).load("ingest", 0) == (expected(big_state(3)), {"meter.readings": 30})
    assert await stored_ids(store) == await referenced_ids(store)


async def test_a_worker_that_lost_the_partition_cannot_overwrite_its_new_owners_checkpoint(
    client: aioredis.Redis,
) -> None:
    old_owner, new_owner = store_of(client), store_of(client)
    await old_owner.load("ingest", 0)
    await old_owner.save("ingest", 0, big_state(1), {"t": 1})
    await new_owner.load("ingest", 0)
    await new_owner.save("ingest", 0, big_state(2), {"t": 2})
    with pytest.raises(CheckpointFenced, match="another worker"):
        await old_owner.save("ingest", 0, big_state(3), {"t": 3})
    assert await store_of(client).load("ingest", 0) == (expected(big_state(2)), {"t": 2})
    assert await stored_ids(new_owner) == await referenced_ids(new_owner)
    # once it has read the new owner's checkpoint (the partition came back), it saves again
    await old_owner.load("ingest", 0)
    await old_owner.save("ingest", 0, big_state(4), {"t": 4})
    assert await store_of(client).load("ingest", 0) == (expected(big_state(4)), {"t": 4})


async def test_the_flip_refuses_a_missing_chunk(client: aioredis.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunks deleted under a slow writer never become part of the checkpoint."""
    store = store_of(client)
    await store.save("ingest", 0, big_state(1), {"t": 1})
    real_flip = store._flip

    async def flip_after_losing_a_chunk(keys: list[str], args: list[Any]) -> Any:
        new_ids = args[7 : 7 + int(args[6])]
        await client.hdel(keys[1], new_ids[0])
        return await real_flip(keys=keys, args=args)

    monkeypatch.setattr(store, "_flip", flip_after_losing_a_chunk)
    with pytest.raises(CheckpointError, match="missing"):
        await store.save("ingest", 0, big_state(2), {"t": 2})
    assert await store_of(client).load("ingest", 0) == (expected(big_state(1)), {"t": 1})


async def test_concurrent_saves_leave_one_consistent_checkpoint(client: aioredis.Redis) -> None:
    a, b = store_of(client), store_of(client)
    results = await asyncio.gather(
        a.save("ingest", 0, big_state(1), {"t": 1}), b.save("ingest", 0, big_state(2), {"t": 2}), return_exceptions=True
    )
    assert all(r is None or isinstance(r, CheckpointFenced) for r in results), results
    state, offsets = await store_of(client).load("ingest", 0)
    assert (state, offsets) in [(expected(big_state(1)), {"t": 1}), (expected(big_state(2)), {"t": 2})]
    loser = store_of(client)
    await loser.load("ingest", 0)
    await loser.save("ingest", 0, big_state(3), {"t": 3})  # the next save leaves only referenced chunks
    assert await stored_ids(loser) == await referenced_ids(loser)


async def test_a_load_racing_a_replacement_reads_the_new_checkpoint(
    client: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = store_of(client)
    await store.save("ingest", 0, big_state(1), {"t": 1})
    other = store_of(client)
    await other.load("ingest", 0)
    real = store._read_chunks
    raced = False

    async def read_chunks(head: str, skeleton: Any, size: int) -> Any:
        nonlocal raced
        if not raced:  # another worker replaces (and deletes) the chunks we are about to read
            raced = True
            await other.save("ingest", 0, big_state(2, 10), {"t": 2})
        return await real(head, skeleton, size)

    monkeypatch.setattr(store, "_read_chunks", read_chunks)
    assert await store.load("ingest", 0) == (expected(big_state(2, 10)), {"t": 2})


async def test_a_checkpoint_missing_bytes_is_an_error_not_a_state(client: aioredis.Redis) -> None:
    store = store_of(client)
    await store.save("ingest", 0, big_state(1), {"t": 1})
    await client.hset(store.key("ingest", 0), "bytes", "12")
    with pytest.raises(CheckpointError, match="12"):
        await store_of(client).load("ingest", 0)


async def test_the_first_format_loads_and_the_next_save_replaces_it(client: aioredis.Redis) -> None:
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


async def test_the_second_format_loads_and_the_next_save_removes_its_generations(client: aioredis.Redis) -> None:
    """Format 2: the state's orjson bytes in parts of a generation hash, a crashed save's generation pending."""
    store = store_of(client)
    head = store.key("ingest", 1)
    body = orjson.dumps(big_state(5), option=orjson.OPT_SERIALIZE_NUMPY)
    parts = [body[i : i + 100_000] for i in range(0, len(body), 100_000)]
    await client.hset(store.generation_key(head, "aa"), mapping={str(i): p for i, p in enumerate(parts)})
    await client.hset(store.generation_key(head, "bb"), mapping={"0": b"garbage"})
    await client.hset(head, mapping={"gen": "aa", "parts": len(parts), "bytes": len(body), "format": "2",
                                     "saved_at": "1.0", "offset:meter.readings": 7, "pending:bb": "1.0"})  # fmt: skip
    assert await store.load("ingest", 1) == (expected(big_state(5)), {"meter.readings": 7})
    await store.save("ingest", 1, big_state(6), {"meter.readings": 9})
    assert not [k async for k in client.scan_iter(match=f"{head}:gen:*")]
    fields: list[Any] = await client.hkeys(head)
    assert not [f for f in fields if f.startswith(b"pending:") or f in (b"parts", b"state")]
    assert await store_of(client).load("ingest", 1) == (expected(big_state(6)), {"meter.readings": 9})


async def test_a_small_state_has_no_chunks(client: aioredis.Redis) -> None:
    store = store_of(client)
    await store.save("ingest", 3, {}, {})
    assert store.last_save is not None and store.last_save.parts == 0
    assert await store.load("ingest", 3) == ({}, {})
    assert await store.keys("ingest", 3) == [store.key("ingest", 3)]
