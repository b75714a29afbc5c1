"""The backfill and the live worker give the same windows and dead letters, for rows, envelopes and column blocks.

One seeded simulation (duplicates, reordering, malformed messages, dropouts) is recorded to files in
three shapes: one reading per message, ``ReadingBatch`` envelopes and ``ReadingBlock`` columns. Each
recording is replayed through :class:`processors.backfill.Backfill` (with Kafka's partitioner) and
produced, as recorded, to Kafka for a ``meterseg worker``. The final revision of every meter window
and every regional window, and the dead letters (reason and payload), must be the same; the three
shapes must also agree with one another.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from meterseg.settings import Settings, TopicNames
from processors.backfill import Backfill, BackfillConfig, _Router, polls_from_directory
from processors.ingest import IngestConfig
from simulators.partition import partition_for
from stream.schemas import MeterInfo, window_records
from stream.state.regional import merge_partials
from tests.integration.harness import metric_value, read_topic, running_worker, wait_for

pytestmark = pytest.mark.integration

METERS = 40
SHAPES = {
    "rows": [],
    "envelopes": ["--envelope", "20", "--envelope-format", "rows", "--heartbeat-envelope", "20"],
    "blocks": ["--envelope", "20", "--envelope-format", "columns", "--heartbeat-envelope", "20"],
}
SILENT_METER = "SILENT-1"
FAULTS = ["duplicate=0.05", "out_of_order=0.05", "malformed=0.05", "dropout=0.02"]


def _record(out: Path, shape: str) -> Path:
    d = out / shape
    done = subprocess.run(
        [sys.executable, "-m", "meterseg.cli", "simulate", "--no-progress", "--sink", "file", "--out", str(d),
         "--meters", str(METERS), "--days", "2", "--seed", "5", "--no-ops", "--history-days", "0",
         "--no-faults", *[a for f in FAULTS for a in ("--fault-rate", f)], *SHAPES[shape]],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    # a registered meter that never sends a reading: its owning partition emits its windows as gaps
    silent = MeterInfo(meter_id=SILENT_METER, customer_id="C-SILENT", region="North", tariff="prepaid",
                       installed_on=datetime(2020, 1, 1, tzinfo=UTC))  # fmt: skip
    with (d / "meter.registry.jsonl").open("a") as f:
        f.write(silent.model_dump_json() + "\n")
    return d


def _final(windows: list[dict[str, Any]], end: str) -> dict[tuple[str, str, str, str], tuple[Any, ...]]:
    """Highest revision per window (its revision number left out: it counts corrections, which depend on
    how the stream was cut into polls), up to the end of the data."""
    best: dict[tuple[str, str, str, str], dict[str, Any]] = {}
    for w in windows:
        if w["window_end"] > end:
            continue
        key = (w["kind"], w["key"], w["window"], w["window_start"])
        if key not in best or w.get("revision", 0) >= best[key].get("revision", 0):
            best[key] = w
    return {k: (w["readings"], round(w["kwh_in"], 9), round(w["kwh_out"], 9), w.get("expected"))
            for k, w in best.items()}  # fmt: skip


def _merge_regions(windows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The backfill keeps per-partition regional partials: merge them as Redis does (latest partial each)."""
    parts: dict[tuple[str, str, str], dict[int, dict[str, Any]]] = defaultdict(dict)
    meters = []
    for w in windows:
        if w["kind"] == "region":
            parts[(w["key"], w["window"], w["window_start"])][w["partition"]] = w
        else:
            meters.append(w)
    return meters + [merge_partials(list(p.values())) for p in parts.values()]


def _backfill(d: Path) -> tuple[list[dict[str, Any]], Counter[tuple[str, bytes]]]:
    cfg = BackfillConfig(partitions=4, partitioner=lambda key, n: partition_for(key.encode(), n), keep_outputs=True,
                         ingest=IngestConfig(profiles=False))  # fmt: skip
    bf = Backfill.from_directory(d, cfg)
    windows: list[dict[str, Any]] = []
    for poll in polls_from_directory(d):
        before = len(bf.result.windows)
        bf.process(poll)
        windows += bf.result.windows[before:]
    before = len(bf.result.windows)
    bf.finish()
    windows += bf.result.windows[before:]
    return windows, Counter(bf.result.deadletters)


async def _produce(bootstrap: str, d: Path, topics: TopicNames) -> int:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20)
    await producer.start()
    sent = 0
    try:
        for stream, topic, plain in (("registry", topics.registry, "meter.registry"),
                                     ("readings", topics.readings, "meter.readings"),
                                     ("heartbeats", topics.heartbeats, "meter.heartbeats")):  # fmt: skip
            router = _Router("readings" if stream == "registry" else stream)
            futures = []
            for line in (d / f"{plain}.jsonl").read_bytes().splitlines():
                key = router(line).key
                futures.append(await producer.send(topic, line, key=None if key is None else key.encode()))
                sent += stream != "registry"
            await producer.flush()
            for f in futures:
                await f
    finally:
        await producer.stop()
    return sent


def _live(settings: Settings, d: Path, logs: Path) -> tuple[list[dict[str, Any]], Counter[tuple[str, bytes]]]:
    """Produce a recording to Kafka as recorded; run a worker until its windows are closed; read its outputs."""
    bootstrap = settings.kafka_bootstrap
    sent = asyncio.run(_produce(bootstrap, d, settings.topics))
    with running_worker(settings, logs, METERSEG_INGEST__CLOCK_RATE="3600") as worker:
        state = {"kind": "messages"}
        wait_for(lambda: metric_value(worker.metrics(), "meterseg_ingest_state_messages", state) >= sent, 180,
                 "all messages")  # fmt: skip
        wait_for(lambda: metric_value(worker.metrics(), "meterseg_meters_late") >= METERS * 0.9, 120, "end")
        counts: list[float] = []

        def with_readings() -> float:
            text = worker.metrics()
            return metric_value(text, "meterseg_windows_emitted_total") - metric_value(
                text, "meterseg_gap_windows_total")  # fmt: skip

        wait_for(lambda: counts.append(with_readings()) or (len(counts) > 8 and counts[-1] == counts[-8]), 120,
                 "windows closed")  # fmt: skip
    windows = [w for _, v, _ in read_topic(bootstrap, settings.topics.windows) for w in window_records(json.loads(v))]
    dead = Counter((dict(h)["reason"].decode(), v) for _, v, h in read_topic(bootstrap, settings.topics.deadletter))
    return windows, dead


def test_backfill_equals_live_worker_for_rows_envelopes_and_blocks(
    tmp_path: Path, kafka_bootstrap: str, services: Any
) -> None:
    from tests.conftest import local_test_settings

    end = "2026-01-03T00:00:00Z"
    finals: dict[str, dict[tuple[str, str, str, str], tuple[Any, ...]]] = {}
    for shape in SHAPES:
        d = _record(tmp_path, shape)
        truth = json.loads((d / "ground_truth.json").read_text())
        end = truth["end"]
        windows, deadletters = _backfill(d)
        assert windows and deadletters
        unique = uuid.uuid4().hex[:8]
        settings = Settings(
            app_id=f"bf-live-{unique}", kafka_bootstrap=kafka_bootstrap,
            redis_url=services.redis_url.rsplit("/", 1)[0] + "/12",
            topics=TopicNames(**{k: f"{v}.{unique}" for k, v in TopicNames().model_dump().items()}),
            stack=local_test_settings().stack,
        )  # fmt: skip
        from stream.topics import ensure_topics

        asyncio.run(ensure_topics(settings))
        live, live_dead = _live(settings, d, tmp_path / shape)
        batch = _final(_merge_regions(windows), end)
        quarters = [v for k, v in batch.items() if k[0] == "meter" and k[2] == "15m"]
        firsts: dict[str, str] = {}
        for k in batch:
            if k[0] == "meter" and k[2] == "15m":
                firsts[k[1]] = min(firsts.get(k[1], k[3]), k[3])
        per_meter = Counter(k[1] for k in batch if k[0] == "meter" and k[2] == "15m")
        for meter, first in firsts.items():  # every expected window from the meter's first reading, gaps included
            since = (datetime.fromisoformat(end.replace("Z", "+00:00")) - datetime.fromisoformat(first.replace("Z", "+00:00")))
            assert per_meter[meter] == since.total_seconds() // 900, (shape, meter)
        assert len(firsts) == METERS + 1  # the silent meter included
        assert {v[0] for k, v in batch.items() if k[:2] == ("meter", SILENT_METER)} == {0}
        assert firsts[SILENT_METER] <= min(f for m, f in firsts.items() if m != SILENT_METER)
        assert any(v[0] == 0 for v in quarters) and sum(k[0] == "region" for k in batch) >= 2 * 48
        assert _final(live, end) == batch, shape
        assert live_dead == deadletters, shape
        finals[shape] = {k: v for k, v in batch.items() if k[0] == "meter"}
    assert finals["rows"] == finals["envelopes"] == finals["blocks"]
