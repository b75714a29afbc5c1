"""Raw aiokafka throughput on the local broker: the yardstick of every other benchmark.

200 000 JSON messages of ~150 bytes keyed over 10 000 meter ids into a
4-partition topic, produced with aiokafka's batch API (``create_batch`` /
``send_batch``, one batch per partition) and with plain ``send()`` plus
linger, then consumed with ``getmany``. Median of 3 runs. Other benchmarks call
:func:`measure` in the same run and print their figures as ratios to it,
because the machines are shared and noisy.

Run: ``.venv/bin/python -m bench.baseline [--messages N] [--runs R]``
"""

from __future__ import annotations

import argparse
import asyncio
import time
from dataclasses import dataclass

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.partitioner import DefaultPartitioner

from bench.common import create_topic, delete_topics, ensure_broker, fmt_rate, fresh_topic, kafka_options, median
from meterseg.settings import Settings

PARTITIONS = 4
METERS = 10_000


@dataclass(frozen=True)
class BaselineFigures:
    """Median rates in messages per second."""

    batch_produce: float
    send_produce: float
    consume: float
    messages: int
    payload_bytes: int


def make_messages(n: int) -> list[tuple[bytes, bytes]]:
    """``n`` (key, value) pairs: ~150-byte readings over :data:`METERS` meter ids."""
    out = []
    for i in range(n):
        meter = f"M{i % METERS:07d}"
        value = orjson.dumps(
            {
                "meter_id": meter,
                "interval_start": "2026-01-01T00:15:00Z",
                "kwh_import": 0.1234,
                "kwh_export": 0.0,
                "register_kwh": 1234.5678,
                "voltage": 231.2,
                "seq": i,
            }
        )
        out.append((meter.encode(), value))
    return out


async def produce_batched(bootstrap: str, topic: str, messages: list[tuple[bytes, bytes]]) -> float:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, max_batch_size=512 * 1024, linger_ms=50, **kafka_options())
    await producer.start()
    try:
        partitions = sorted(await producer.partitions_for(topic))
        partitioner = DefaultPartitioner()
        started = time.perf_counter()
        batches = {p: producer.create_batch() for p in partitions}
        pending = []
        for key, value in messages:
            p = partitioner(key, partitions, partitions)
            if batches[p].append(key=key, value=value, timestamp=None) is None:
                pending.append(await producer.send_batch(batches[p], topic, partition=p))
                batches[p] = producer.create_batch()
                batches[p].append(key=key, value=value, timestamp=None)
        for p, batch in batches.items():
            if batch.record_count():
                pending.append(await producer.send_batch(batch, topic, partition=p))
        await asyncio.gather(*pending)
        return len(messages) / (time.perf_counter() - started)
    finally:
        await producer.stop()


async def produce_send(bootstrap: str, topic: str, messages: list[tuple[bytes, bytes]]) -> float:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, max_batch_size=512 * 1024, linger_ms=50, **kafka_options())
    await producer.start()
    try:
        started = time.perf_counter()
        futures = [await producer.send(topic, value, key=key) for key, value in messages]
        await asyncio.gather(*futures)
        return len(messages) / (time.perf_counter() - started)
    finally:
        await producer.stop()


async def consume_all(bootstrap: str, topic: str, expected: int) -> float:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
        fetch_max_bytes=50 * 1024 * 1024,
        max_partition_fetch_bytes=8 * 1024 * 1024,
        **kafka_options(),
    )
    await consumer.start()
    try:
        # partition assignment and the first metadata round trip are set-up, not consumption: wait for
        # them, then time every getmany from the first one on (messages and time counted alike)
        await consumer._client.force_metadata_update()
        parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        seen = 0
        started = time.perf_counter()
        while seen < expected:
            batch = await consumer.getmany(timeout_ms=1000, max_records=50_000)
            seen += sum(len(records) for records in batch.values())
        return seen / (time.perf_counter() - started)
    finally:
        await consumer.stop()


async def _measure(bootstrap: str, n: int, runs: int, verbose: bool) -> BaselineFigures:
    messages = make_messages(n)
    batch_rates: list[float] = []
    send_rates: list[float] = []
    consume_rates: list[float] = []
    topics: list[str] = []
    try:
        await _runs(bootstrap, messages, runs, verbose, batch_rates, send_rates, consume_rates, topics)
    finally:
        await delete_topics(bootstrap, topics)
    return BaselineFigures(
        batch_produce=median(batch_rates),
        send_produce=median(send_rates),
        consume=median(consume_rates),
        messages=n,
        payload_bytes=sum(len(v) for _, v in messages) // n,
    )


async def _runs(
    bootstrap: str,
    messages: list[tuple[bytes, bytes]],
    runs: int,
    verbose: bool,
    batch_rates: list[float],
    send_rates: list[float],
    consume_rates: list[float],
    topics: list[str],
) -> None:
    n = len(messages)
    for run in range(runs):
        topic = fresh_topic("baseline")
        topics.append(topic)
        await create_topic(bootstrap, topic, PARTITIONS)
        batch_rates.append(await produce_batched(bootstrap, topic, messages))
        consume_rates.append(await consume_all(bootstrap, topic, n))
        topic2 = fresh_topic("baseline-send")
        topics.append(topic2)
        await create_topic(bootstrap, topic2, PARTITIONS)
        send_rates.append(await produce_send(bootstrap, topic2, messages))
        if verbose:
            print(
                f"  run {run + 1}/{runs}: batch produce {fmt_rate(batch_rates[-1])}, "
                f"send() produce {fmt_rate(send_rates[-1])}, getmany consume {fmt_rate(consume_rates[-1])}",
                flush=True,
            )


def measure(bootstrap: str, n: int = 200_000, runs: int = 3, verbose: bool = True) -> BaselineFigures:
    """Median raw aiokafka produce and consume rates on ``bootstrap``."""
    return asyncio.run(_measure(bootstrap, n, runs, verbose))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    settings = Settings()
    bootstrap = ensure_broker(settings)
    print(f"baseline: {args.messages:,} messages x {args.runs} runs on {bootstrap}, {PARTITIONS} partitions")
    figures = measure(bootstrap, args.messages, args.runs)
    print(f"payload: {figures.payload_bytes} bytes/message")
    print(f"median batched producer (create_batch/send_batch): {fmt_rate(figures.batch_produce)}")
    print(f"median producer send() with linger:               {fmt_rate(figures.send_produce)}")
    print(f"median consumer getmany:                          {fmt_rate(figures.consume)}")


if __name__ == "__main__":
    main()
