"""Simulator and importer into a real Kafka broker: everything arrives, keyed and partitioned like Kafka would."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaConsumer

from meterseg.settings import Settings, TopicNames
from simulators.faults import FaultConfig
from simulators.generator import SimConfig, Simulator
from simulators.importers.base import ImportRun
from simulators.importers.transactions import TransactionSpec, import_transactions
from simulators.partition import partition_for
from simulators.sinks import FileSink, KafkaSink

pytestmark = pytest.mark.integration
DATA = Path(__file__).resolve().parents[1] / "data" / "importers"


def _settings(bootstrap: str) -> Settings:
    suffix = uuid.uuid4().hex[:8]
    topics = TopicNames(**{k: f"{v}.sim-{suffix}" for k, v in TopicNames().model_dump().items()})
    return Settings(kafka_bootstrap=bootstrap, topics=topics)


async def _consume(bootstrap: str, topic: str, expected: int) -> list[tuple[int, bytes, bytes]]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False, group_id=None)
    await consumer.start()
    out: list[tuple[int, bytes, bytes]] = []
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while len(out) < expected and loop.time() < deadline:
            batch = await consumer.getmany(timeout_ms=500, max_records=100_000)
            for tp, records in batch.items():
                out += [(tp.partition, r.key, r.value) for r in records]
    finally:
        await consumer.stop()
    return out


@pytest.mark.parametrize("envelope", [0, 100])
async def test_simulation_into_kafka(kafka_bootstrap: str, tmp_path: Path, envelope: int) -> None:
    settings = _settings(kafka_bootstrap)
    config = SimConfig(meters=300, days=1, seed=9, envelope=envelope, heartbeat_minutes=60,
                       faults=FaultConfig.parse(["all=0.05"]))
    sink = KafkaSink(kafka_bootstrap, settings.partitions, compacted=[settings.topics.registry])
    summary = await Simulator(config, settings).run(sink, progress=False)
    await Simulator(config, settings).run(FileSink(tmp_path), progress=False)
    topic = settings.topics.readings
    expected = summary.messages[topic]
    got = await _consume(kafka_bootstrap, topic, expected)
    assert len(got) == expected
    file_values = Counter((tmp_path / f"{topic}.jsonl").read_bytes().splitlines())
    assert Counter(v for _, _, v in got) == file_values  # same bytes as the file sink
    for partition, key, value in got:
        assert partition == partition_for(key, settings.partitions)
        try:
            doc = orjson.loads(value)
        except orjson.JSONDecodeError:
            continue  # an injected invalid-JSON payload, still keyed by its meter
        readings = doc.get("readings", [doc])
        assert key.decode() == readings[0]["meter_id"]
        assert {partition_for(r["meter_id"].encode(), settings.partitions) for r in readings} == {partition}
    registry = await _consume(kafka_bootstrap, settings.topics.registry, 300)
    assert len(registry) == 300
    purchases = settings.topics.purchases
    got_p = await _consume(kafka_bootstrap, purchases, summary.messages[purchases])
    assert all(p == partition_for(k, settings.partitions) and k.decode() == orjson.loads(v)["customer_id"]
               for p, k, v in got_p)


async def test_import_into_kafka(kafka_bootstrap: str) -> None:
    settings = _settings(kafka_bootstrap)
    sink = KafkaSink(kafka_bootstrap, settings.partitions)
    run = ImportRun(sink, settings.partitions, progress=False)
    spec = TransactionSpec(customer_col="c", date_col="d", amount_col="a", quantity_col="q",
                           columns=("c", "d", "q", "a"), date_format="%Y%m%d", delimiter="whitespace")
    await sink.start()
    try:
        await sink.ensure_topics([settings.topics.purchases])
        await import_transactions(DATA / "cdnow.txt", spec, run, settings.topics)
    finally:
        await sink.stop()
    assert (run.result.read, run.result.published, run.result.rejected) == (10, 5, 5)
    got = await _consume(kafka_bootstrap, settings.topics.purchases, 5)
    assert sorted(orjson.loads(v)["customer_id"] for _, _, v in got) == ["00001", "00002", "00002", "00003", "00003"]
