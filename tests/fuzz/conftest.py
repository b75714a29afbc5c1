"""One worker on the test stack fed a seeded corpus of nasty messages on every input topic.

The corpus (:func:`tests.fuzz.payloads.corpus`, a fixed hypothesis seed, so the
same bytes every run) mixes valid messages with damaged ones: random bytes,
wrong types, huge values, NaN and infinities, unicode, timestamps far in the
past and future, enormous batch envelopes. Valid registrations come first so
the valid readings have a fleet to land in, and valid purchases for every
customer give the API a population to answer about.

``tests/fuzz/test_engine_fuzz.py`` judges what the worker made of the corpus;
``tests/fuzz/test_api_fuzz.py`` fuzzes the API of the same worker afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from meterseg.settings import Settings, TopicNames
from simulators.partition import partition_for
from tests.conftest import Services, local_test_settings
from tests.fuzz.payloads import CUSTOMERS, KNOWN_METERS, T0, corpus, iso
from tests.integration.harness import Worker, metric_value, read_topic, running_worker, wait_for

TOKEN = "fuzz-token-" + "x" * 8
SEED = 20260101
#: messages of each input topic in the corpus (readings: messages, envelopes among them)
CORPUS_SIZES = {
    "registry": 30, "readings": 120, "heartbeats": 60, "purchases": 80, "profiles": 20,
    "maintenance": 30, "feedback": 30, "bills": 30,
}  # fmt: skip
METER_TOPICS = ("registry", "readings", "heartbeats")
Record = tuple[bytes | None, bytes, list[tuple[str, bytes]]]


@dataclass(frozen=True)
class Produced:
    """One message of the corpus as the broker stored it."""

    topic: str  # attribute of Settings.topics, e.g. "readings"
    value: bytes | None
    partition: int
    offset: int


class FuzzRun:
    """The worker, what was produced, and what the worker reported once it had consumed it all."""

    def __init__(self, settings: Settings, worker: Worker, produced: list[Produced]) -> None:
        self.settings = settings
        self.worker = worker
        self.produced = produced
        self.health: dict[str, Any] = {}
        self.metrics = ""
        self.deadletters: list[Record] = []
        self.seconds = 0.0
        self.log = ""  # the worker's log once the corpus was consumed (before the API fuzz)

    def __repr__(self) -> str:  # hypothesis prints the fixtures of a failing example: keep it short
        return f"FuzzRun(app_id={self.settings.app_id!r}, web_port={self.worker.web_port})"

    def of(self, topic: str) -> list[Produced]:
        return [p for p in self.produced if p.topic == topic]

    def consumed(self, topic: str) -> float:
        return metric_value(
            self.metrics, "meterseg_events_consumed_total", {"topic": getattr(self.settings.topics, topic)}
        )


def _key(topic: str, value: bytes | None, rng: random.Random) -> bytes | None:
    """The key a producer would use: the meter or customer id in the payload, else something odd (or none)."""
    name = "meter_id" if topic in METER_TOPICS else "customer_id"
    with contextlib.suppress(Exception):
        found = orjson.loads(value or b"").get(name)
        if isinstance(found, str) and found:
            return found.encode("utf-8", "surrogatepass")
    if topic == "registry" or rng.random() < 0.5:  # a compacted topic takes keyed records only
        return rng.randbytes(rng.randrange(1, 12))
    return None


def _messages(rng: random.Random) -> list[tuple[str, bytes | None]]:
    """(topic attribute, value) in production order: the fleet first, then everything else interleaved."""
    fleet = [
        orjson.dumps({"meter_id": m, "customer_id": c, "region": ("North", "South")[i % 2], "tariff": "prepaid",
                      "installed_on": "2020-01-01T00:00:00Z"})
        for i, (m, c) in enumerate(zip(KNOWN_METERS, CUSTOMERS, strict=True))
    ]  # fmt: skip
    out: list[tuple[str, bytes | None]] = [("registry", v) for v in fleet]
    out += [("registry", v) for v in corpus("registry", CORPUS_SIZES["registry"], SEED)]
    out.append(("registry", None))  # a tombstone: ignored, neither applied nor dead-lettered
    rest: list[tuple[str, bytes | None]] = []
    for i, topic in enumerate(t for t in CORPUS_SIZES if t != "registry"):
        rest += [(topic, v) for v in corpus(topic, CORPUS_SIZES[topic], SEED + i + 1)]
    rest += [
        ("purchases", orjson.dumps({"event_id": f"valid-{c}", "customer_id": c, "ts": iso(T0 + 3600 * i),
                                    "event_type": "PURCHASED", "amount": 20.0 * (i + 1)}))
        for i, c in enumerate(CUSTOMERS)
    ]  # fmt: skip
    rng.shuffle(rest)
    return out + rest


async def _produce(settings: Settings, messages: list[tuple[str, bytes | None]], rng: random.Random) -> list[Produced]:
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap, max_request_size=2 * 1024 * 1024, acks="all"
    )
    await producer.start()
    try:
        out = []
        registry_done = False
        for topic, value in messages:
            if topic != "registry" and not registry_done:
                await producer.flush()  # the fleet is in the broker before its first reading
                registry_done = True
            key = _key(topic, value, rng)
            partition = partition_for(key, settings.partitions) if key else rng.randrange(settings.partitions)
            fut = await producer.send(getattr(settings.topics, topic), value, key=key, partition=partition)
            out.append((topic, value, fut))
        return [
            Produced(topic, value, meta.partition, meta.offset)
            for topic, value, meta in [(t, v, await f) for t, v, f in out]
        ]
    finally:
        await producer.stop()


def _deadletter_total(metrics: str) -> float:
    return metric_value(metrics, "meterseg_deadletter_total")


def _done(run: FuzzRun) -> bool:
    """Every corpus message consumed by the pipeline or agent of its topic."""
    run.metrics = run.worker.metrics()
    run.health = run.worker.health()
    ingest_in = len(run.of("readings")) + len(run.of("heartbeats"))
    if run.health.get("totals", {}).get("messages", 0) < ingest_in:
        return False
    return all(run.consumed(t) >= len(run.of(t)) for t in ("purchases", "profiles", "maintenance", "feedback", "bills"))


@pytest.fixture(scope="session")
def fuzz_run(services: Services, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FuzzRun]:
    """A worker that has consumed the whole corpus; its dead letters read back. The worker stays up for the API fuzz."""
    out: Path = tmp_path_factory.mktemp("fuzz")
    unique = uuid.uuid4().hex[:8]
    settings = Settings(
        app_id=f"fuzz-{unique}",
        kafka_bootstrap=services.kafka_bootstrap,
        redis_url=services.redis_url.rsplit("/", 1)[0] + "/12",
        topics=TopicNames(**{k: f"{v}.{unique}" for k, v in TopicNames().model_dump().items()}),
        stack=local_test_settings().stack,
    )
    rng = random.Random(SEED)
    messages = _messages(rng)
    env = {"METERSEG_API_TOKEN": TOKEN, "METERSEG_SEGMENTATION__EXCHANGE_INTERVAL_S": "1"}
    with running_worker(settings, out, **env) as worker:
        started = time.monotonic()
        produced = asyncio.run(_produce(settings, messages, rng))
        run = FuzzRun(settings, worker, produced)
        try:
            wait_for(lambda: _done(run) or worker.proc.poll() is not None, 45, "the corpus consumed")
        except AssertionError as exc:
            log = worker.log_tail(100_000)
            at = max(log.find("batch handler failed"), log.find("Traceback"), 0)
            raise AssertionError(f"{exc}; health {run.health}\n{log[at : at + 6000]}") from None
        # dead letters are produced after their batch; registry ones on the next 1 s tick
        samples: list[float] = []

        def settled() -> bool:
            samples.append(_deadletter_total(worker.metrics()))
            return len(samples) >= 3 and samples[-3:] == [samples[-1]] * 3

        wait_for(settled, 20, "dead letters settled", interval_s=0.7)
        wait_for(lambda: len(_read_deadletters(run)) >= samples[-1], 20, "dead letters in the topic")
        run.metrics, run.health = worker.metrics(), worker.health()
        run.seconds = time.monotonic() - started
        run.log = worker.log_tail(10_000_000)
        yield run


def _read_deadletters(run: FuzzRun) -> list[Record]:
    run.deadletters = read_topic(run.settings.kafka_bootstrap, run.settings.topics.deadletter)
    return run.deadletters
