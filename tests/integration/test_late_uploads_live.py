"""Late uploads through a live worker on Kafka: within the allowed lateness they correct their windows.

A seeded simulation is recorded, then edited like a head end with a communication fault: ten meters'
readings from 06:00 to 12:00 on the first day are held back and uploaded at 18:00 (six hours late,
as one block per meter), and three other meters' first hour is uploaded at the very end (47 hours
late). The worker runs with an allowed lateness of 24 h. Every reading of the 6-hour-late blocks
must end up in its windows, the corrected windows must be emitted again with a higher revision
(meter quarter hours and hours, and the regional hours), the final totals must equal batch sums, and
the 47-hour-late readings must be dead-lettered ``too_late`` with the reason.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from meterseg.settings import Settings, TopicNames
from stream.schemas import Reading, window_records
from stream.topics import ensure_topics
from tests.integration.harness import metric_value, read_topic, running_worker, wait_for

pytestmark = pytest.mark.integration

METERS = 60
DAY1 = "2026-01-01"


def _hour(r: dict[str, Any]) -> int:
    return int(r["interval_start"][11:13]) if r["interval_start"].startswith(DAY1) else 99


def _edit(lines: list[bytes]) -> tuple[list[list[bytes]], list[dict[str, Any]], list[dict[str, Any]]]:
    """The recorded readings with 6-hour-late blocks and 47-hour-late readings, in three uploads (each read by
    the worker before the next is sent: a backlog read in one poll is processed in event-time order, as if it
    had arrived in order); returns (uploads, late6, late47)."""
    rows = [orjson.loads(v) for v in lines]
    meters = sorted({r["meter_id"] for r in rows})
    late6_meters, late47_meters = set(meters[:10]), set(meters[10:13])
    late6 = [r for r in rows if r["meter_id"] in late6_meters and 6 <= _hour(r) < 12]
    late47 = [r for r in rows if r["meter_id"] in late47_meters and _hour(r) < 1]
    moved = {id(r) for r in late6 + late47}
    before: list[bytes] = []
    after: list[bytes] = []
    for r in rows:
        if id(r) in moved:
            continue
        (after if r["interval_start"] >= f"{DAY1}T18:00" else before).append(orjson.dumps(r))
    blocks = [orjson.dumps({"batch_id": f"late-{m}", "head_end_id": "hes-9", "sent_at": f"{DAY1}T18:00:00Z",
                            "readings": [x for x in late6 if x["meter_id"] == m]})
              for m in sorted(late6_meters)]  # one ReadingBatch per meter: the head end's late block  # fmt: skip
    return [before, blocks + after, [orjson.dumps(r) for r in late47]], late6, late47


async def _produce(bootstrap: str, topic: str, values: list[bytes], key_of: Any) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20)
    await producer.start()
    try:
        for v in values:
            await producer.send(topic, v, key=key_of(v).encode())
        await producer.flush()
    finally:
        await producer.stop()


def _taken(metrics: str) -> float:
    return sum(metric_value(metrics, "meterseg_ingest_state_messages", {"kind": k}) for k in ("accepted", "deadletter"))


def _first_meter(value: bytes) -> str:
    obj = orjson.loads(value)
    return str(obj["readings"][0]["meter_id"] if "readings" in obj else obj["meter_id"])


def test_six_hour_late_blocks_correct_their_windows_and_older_ones_are_too_late(
    tmp_path: Path, kafka_bootstrap: str, services: Any
) -> None:
    from tests.conftest import local_test_settings

    rec = tmp_path / "rec"
    done = subprocess.run(
        [sys.executable, "-m", "meterseg.cli", "simulate", "--no-progress", "--sink", "file", "--out", str(rec),
         "--meters", str(METERS), "--days", "2", "--seed", "7", "--no-ops", "--history-days", "0", "--no-faults",
         "--heartbeat-minutes", "0", "--start", f"{DAY1}T00:00:00"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    uploads, late6, late47 = _edit((rec / "meter.readings.jsonl").read_bytes().splitlines())
    stream = [v for u in uploads for v in u]
    unique = uuid.uuid4().hex[:8]
    settings = Settings(
        app_id=f"late-{unique}", kafka_bootstrap=kafka_bootstrap,
        redis_url=services.redis_url.rsplit("/", 1)[0] + "/11",
        topics=TopicNames(**{k: f"{v}.{unique}" for k, v in TopicNames().model_dump().items()}),
        stack=local_test_settings().stack,
    )  # fmt: skip
    asyncio.run(ensure_topics(settings))
    registry = (rec / "meter.registry.jsonl").read_bytes().splitlines()
    asyncio.run(_produce(kafka_bootstrap, settings.topics.registry, registry, lambda v: orjson.loads(v)["meter_id"]))
    env = {"METERSEG_INGEST__CLOCK_RATE": "3600", "METERSEG_INGEST__WINDOWS__ALLOWED_LATENESS_S": "86400"}
    with running_worker(settings, tmp_path, **env) as worker:
        readings = 0
        for upload in uploads:
            asyncio.run(_produce(kafka_bootstrap, settings.topics.readings, upload, _first_meter))
            readings += sum(1 for v in upload for _ in (orjson.loads(v).get("readings") or [None]))
            wait_for(lambda n=readings: _taken(worker.metrics()) >= n, 180, "the upload read")  # fmt: skip
        day = {"kind": "meter_1d"}
        wait_for(lambda: metric_value(worker.metrics(), "meterseg_windows_emitted_total", day)
                 - metric_value(worker.metrics(), "meterseg_gap_windows_total", day) >= 2 * METERS, 120,
                 "the last daily windows")  # fmt: skip
        metrics = worker.metrics()
    counted = metric_value(metrics, "meterseg_late_readings_counted_total")
    revised = {k: metric_value(metrics, "meterseg_windows_revised_total", {"kind": k})
               for k in ("meter_15m", "meter_1h", "meter_1d", "region_1h")}  # fmt: skip
    windows = [w for _, v, _ in read_topic(kafka_bootstrap, settings.topics.windows) for w in window_records(json.loads(v))]
    dead = read_topic(kafka_bootstrap, settings.topics.deadletter)
    print(f"late readings: {len(late6)} six hours late (blocks of 10 meters), {len(late47)} 47 hours late; "
          f"counted in their windows: {counted:.0f}; windows revised: {revised}; "
          f"too_late: {sum(dict(h)['reason'] == b'too_late' for _, _, h in dead)}")  # fmt: skip
    # every 6-hour-late reading counted (nothing else was late); the 47-hour-late ones too late, with the reason
    assert counted == len(late6) == 10 * 24
    too_late = [(dict(h), v) for _, v, h in dead if dict(h)["reason"] == b"too_late"]
    assert len(too_late) == len(dead) == len(late47) == 3 * 4
    assert {Reading.model_validate_json(v).meter_id for _, v in too_late} == {r["meter_id"] for r in late47}
    assert all(b"allowed lateness (86400s)" in h["error"] for h, _ in too_late)
    # the held quarter hours were emitted as gaps, then again with the readings (revision 1)
    quarters: dict[tuple[str, str], list[tuple[int, int]]] = defaultdict(list)
    for w in windows:
        if w["kind"] == "meter" and w["window"] == "15m":
            quarters[(w["key"], w["window_start"])].append((w["revision"], w["readings"]))
    for r in late6:
        assert sorted(quarters[(r["meter_id"], r["interval_start"])]) == [(0, 0), (1, 1)], r
    assert revised["meter_15m"] == len(late6) and revised["meter_1h"] == 10 * 6 and revised["region_1h"] >= 6
    # final totals (highest revision) equal batch sums of every reading that counted
    final: dict[tuple[str, str, str, str], dict[str, Any]] = {}
    for w in windows:
        key = (w["kind"], w["key"], w["window"], w["window_start"])
        if key not in final or w["revision"] >= final[key]["revision"]:
            final[key] = w
    region_of = {orjson.loads(v)["meter_id"]: orjson.loads(v)["region"] for v in registry}
    gone = {(r["meter_id"], r["interval_start"]) for r in late47}
    hours: dict[tuple[str, str, str, str], float] = Counter()
    for v in stream:
        obj = orjson.loads(v)
        for r in obj.get("readings") or [obj]:
            if (r["meter_id"], r["interval_start"]) in gone:
                continue
            hour = r["interval_start"][:13] + ":00:00Z"
            hours[("meter", r["meter_id"], "1h", hour)] += r["kwh_import"]
            hours[("region", region_of[r["meter_id"]], "1h", hour)] += r["kwh_import"]
    for key, total in hours.items():
        assert final[key]["kwh_in"] == pytest.approx(total, rel=1e-9, abs=1e-9), key
    held_hours = [(("meter", r["meter_id"], "1h", r["interval_start"][:13] + ":00:00Z")) for r in late6]
    assert all(final[k]["revision"] == 1 and final[k]["completeness"] == 1.0 for k in held_hours)
