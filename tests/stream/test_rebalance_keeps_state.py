"""Rebalances move only what moves: a partition that stays on its worker keeps its in-memory state.

A :class:`~stream.pipelines.base.PartitionedHandler` on a real Redis checkpoint store goes through
Kafka's eager rebalance (every partition revoked, then the new set assigned): a partition assigned
back whose checkpoint is still the generation this worker wrote is taken back as it is (same
object, no checkpoint read, reading resumes where it stopped); one that another worker checkpointed
meanwhile is restored from that checkpoint; one not assigned again is dropped.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from aiokafka import TopicPartition

from processors.columns import RawMessage
from stream.pipelines.base import PartitionedHandler
from stream.state.checkpoints import CheckpointStore

pytestmark = pytest.mark.integration

TOPIC = "readings"


class Counting:
    """A processor whose state is the number of messages it has seen."""

    def __init__(self, seen: int = 0) -> None:
        self.seen = seen


class CountingStore(CheckpointStore):
    """The real store, counting full checkpoint reads."""

    loads = 0

    async def load(self, pipeline: str, partition: int) -> tuple[Any | None, dict[str, int]]:
        self.loads += 1
        return await super().load(pipeline, partition)


class Handler(PartitionedHandler[Counting]):
    pipeline = "test"

    def new_processor(self, partition: int) -> Counting:
        return Counting()

    def restore_processor(self, partition: int, state: Any) -> Counting:
        return Counting(int(state["seen"]))

    def snapshot(self, processor: Counting) -> Any:
        return {"seen": processor.seen}

    async def process(self, batches: dict[int, dict[str, list[RawMessage]]]) -> None:
        for p, by_topic in batches.items():
            self.partitions[p].processor.seen += sum(len(v) for v in by_topic.values())


def tps(*partitions: int) -> set[TopicPartition]:
    return {TopicPartition(TOPIC, p) for p in partitions}


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[CountingStore]:
    client = aioredis.Redis.from_url(redis_url)
    s = CountingStore(client, f"rebalance-test-{uuid.uuid4().hex[:8]}")
    try:
        yield s
    finally:
        keys = [k async for k in client.scan_iter(f"{s.namespace}:*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()


async def feed(handler: Handler, partition: int, first: int, n: int) -> None:
    """n messages of one partition, as the consumer hands them over (offsets first..first+n-1)."""
    from aiokafka.structs import ConsumerRecord

    recs = [ConsumerRecord(TOPIC, partition, first + i, 0, 0, None, b"x", None, 1, 1, []) for i in range(n)]
    await handler.handle({TopicPartition(TOPIC, partition): recs})


async def test_a_partition_that_stays_keeps_its_state_in_memory(store: CountingStore) -> None:
    worker = Handler(store, checkpoint_interval_s=3600)
    assert await worker.on_assigned(tps(0, 1, 2)) == {}
    for p in (0, 1, 2):
        await feed(worker, p, 0, 5 + p)
    kept = worker.partitions[0].processor

    # eager rebalance: everything revoked (and checkpointed), then partitions 0 and 1 come back
    revoked = await worker.on_revoked(tps(0, 1, 2))
    assert revoked == {TopicPartition(TOPIC, 0): 5, TopicPartition(TOPIC, 1): 6, TopicPartition(TOPIC, 2): 7}
    # meanwhile another worker took partition 1 for a while and checkpointed it further
    other = Handler(store, checkpoint_interval_s=3600)
    await other.on_assigned(tps(1))
    await feed(other, 1, 6, 4)
    await other.on_revoked(tps(1))
    loads_before = store.loads

    resume = await worker.on_assigned(tps(0, 1))
    assert worker.partitions[0].processor is kept and kept.seen == 5  # not rebuilt
    assert resume[TopicPartition(TOPIC, 0)] == 5  # reading resumes where it stopped
    assert worker.partitions[1].processor.seen == 10  # restored from the other worker's checkpoint
    assert resume[TopicPartition(TOPIC, 1)] == 10
    assert store.loads - loads_before == 1  # only partition 1's checkpoint was read
    assert 2 not in worker.partitions and not worker.parked  # partition 2 moved away: dropped


async def test_a_failed_batch_still_restores_from_the_checkpoint(store: CountingStore) -> None:
    worker = Handler(store, checkpoint_interval_s=3600)
    await worker.on_assigned(tps(0))
    await feed(worker, 0, 0, 3)
    await worker.on_revoked(tps(0))
    await worker.on_assigned(tps(0))
    await feed(worker, 0, 3, 2)  # in memory only, not checkpointed
    worker.discard(tps(0))  # the consumer's rewind after a failed batch
    loads_before = store.loads
    resume = await worker.on_assigned(tps(0))
    assert store.loads - loads_before == 1 and worker.partitions[0].processor.seen == 3
    assert resume[TopicPartition(TOPIC, 0)] == 3


async def test_a_worker_that_lost_a_partition_drops_it_and_the_owners_checkpoint_stands(store: CountingStore) -> None:
    """A zombie (its session expired, the group gave its partition to another worker) cannot checkpoint over
    the new owner: its save is fenced, it drops the partition and commits nothing for it."""
    zombie = Handler(store, checkpoint_interval_s=3600)
    await zombie.on_assigned(tps(0))
    await feed(zombie, 0, 0, 3)
    assert await zombie.checkpoint_all() == {TopicPartition(TOPIC, 0): 3}
    owner = Handler(CountingStore(store.client, store.namespace), checkpoint_interval_s=3600)  # another process
    await owner.on_assigned(tps(0))
    await feed(owner, 0, 3, 4)
    await owner.checkpoint_all()

    await feed(zombie, 0, 3, 1)  # the zombie still reads it ...
    assert await zombie.checkpoint_all() == {}  # ... but its checkpoint is refused
    assert 0 not in zombie.partitions
    await feed(zombie, 0, 4, 1)  # records of a partition it dropped are ignored
    assert await zombie.on_revoked(tps(0)) == {}
    state, offsets = await CountingStore(store.client, store.namespace).load("test", 0)
    assert state == {"seen": 7} and offsets == {TOPIC: 7}
