"""The producer partitions keys exactly as Kafka's default partitioner, hashing a batch at a time, caching nothing."""

from __future__ import annotations

import random

from aiokafka.partitioner import DefaultPartitioner

from stream.clients.producer import BatchProducer


async def test_partitions_of_equals_the_default_partitioner() -> None:
    rng = random.Random(5)
    producer = BatchProducer("127.0.0.1:1")  # never started: partitioning needs no broker (built in a loop, as aiokafka asks)
    reference = DefaultPartitioner()
    keys: list[bytes | None] = [f"M{i:07d}".encode() for i in range(300)]  # one length: hashed as a batch
    keys += [f"C{i}".encode() for i in range(50)]  # several lengths, some groups below the batch size
    keys += [bytes(rng.randrange(256) for _ in range(rng.randrange(0, 40))) for _ in range(300)]  # any bytes
    keys += [b"", b"\0", b"abc\0", b"M0000001\0\0"]  # empty and trailing NULs (numpy bytes arrays drop those)
    rng.shuffle(keys)
    for partitions in ([0], [0, 1, 2, 3], list(range(7)), [2, 5, 9]):
        got = producer.partitions_of(keys, partitions)
        want = [reference(k, list(partitions), list(partitions)) for k in keys]
        assert got == want
        assert [producer.partition_of(k, partitions) for k in keys[:20]] == want[:20]


async def test_records_without_a_key_go_round_robin() -> None:
    producer = BatchProducer("127.0.0.1:1")
    got = producer.partitions_of([None, b"M0000001", None, None], [0, 1, 2])
    assert [got[0], got[2], got[3]] == [1, 2, 0] and not hasattr(producer, "_partition_cache")
