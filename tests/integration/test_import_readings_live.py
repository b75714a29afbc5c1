"""`meterseg import readings` into a live worker on Kafka: exact windows, and a re-import changes nothing."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from meterseg.settings import Settings, TopicNames
from simulators.importers.readings import day_starts
from stream.schemas import window_records
from tests.integration.harness import metric_value, read_topic, running_worker, settings_env, wait_for

pytestmark = pytest.mark.integration

METERS = 12
BERLIN = ZoneInfo("Europe/Berlin")
DAYS = [date(2026, 3, 28), date(2026, 3, 29)]  # the second one has 23 hours


def _value(m: int, k: int) -> float:
    return round(0.05 + 0.01 * ((m * 7 + k * 3) % 11), 3)


def _files(tmp: Path) -> tuple[Path, Path, Path, dict[tuple[str, str], float], int]:
    """Registry; day 1 as a long file, day 2 (23 h) as a wide file; the expected UTC daily sums; readings."""
    reg = tmp / "meters.csv"
    reg.write_text("meter_id,customer_id,region,tariff\n" + "".join(
        f"IM{m:03d},IC{m:03d},{('North', 'South')[m % 2]},prepaid\n" for m in range(METERS)))  # fmt: skip
    want: dict[tuple[str, str], float] = defaultdict(float)
    n = 0
    long = ["meter_id,interval_start,kwh"]
    for m in range(METERS):
        for k, t in enumerate(day_starts(DAYS[0], 15, BERLIN)):
            local = datetime.fromtimestamp(t, UTC).astimezone(BERLIN).strftime("%Y-%m-%dT%H:%M:%S")
            long.append(f"IM{m:03d},{local},{_value(m, k)}")
            want[(f"IM{m:03d}", datetime.fromtimestamp(t, UTC).date().isoformat())] += _value(m, k)
            n += 1
    (tmp / "day1.csv").write_text("\n".join(long) + "\n")
    wide = ["meter_id,date," + ",".join(f"q{i + 1}" for i in range(100))]
    for m in range(METERS):
        starts = day_starts(DAYS[1], 15, BERLIN)
        values = [_value(m, 96 + k) for k in range(len(starts))]
        wide.append(f"IM{m:03d},{DAYS[1].isoformat()}," + ",".join(map(str, values)) + "," * (100 - len(values)))
        for t, v in zip(starts, values, strict=True):
            want[(f"IM{m:03d}", datetime.fromtimestamp(t, UTC).date().isoformat())] += v
            n += 1
    (tmp / "day2.csv").write_text("\n".join(wide) + "\n")
    return reg, tmp / "day1.csv", tmp / "day2.csv", want, n


def _import(settings: Settings, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "meterseg.cli", "import", "readings", "--no-progress", "--timezone", "Europe/Berlin",
         "--out", str(Path(args[-1]).parent / "out"), *args],
        env=settings_env(settings), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def _daily(windows: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for w in windows:
        if w["kind"] == "meter" and w["window"] == "1d" and w["readings"]:
            key = (w["key"], w["window_start"][:10])
            if key not in out or w["revision"] >= out[key]["revision"]:
                out[key] = w
    return out


def test_long_and_wide_import_into_a_live_worker_and_reimport_is_a_no_op(
    tmp_path: Path, kafka_bootstrap: str, services: Any
) -> None:
    from tests.conftest import local_test_settings

    unique = uuid.uuid4().hex[:8]
    settings = Settings(
        app_id=f"import-readings-{unique}",
        kafka_bootstrap=kafka_bootstrap,
        redis_url=services.redis_url.rsplit("/", 1)[0] + "/13",
        topics=TopicNames(**{k: f"{v}.{unique}" for k, v in TopicNames().model_dump().items()}),
        stack=local_test_settings().stack,
    )
    reg, day1, day2, want, n = _files(tmp_path)
    out1 = _import(settings, "--registry", str(reg), str(day1))
    out2 = _import(settings, "--registry", str(reg), "--shape", "wide", str(day2))
    assert f"rows read {METERS + METERS * 96:,}, published {METERS + METERS * 96:,}, rejected 0" in out1
    assert f"rows read {2 * METERS}, published {2 * METERS}, rejected 0" in out2
    env = {"METERSEG_INGEST__CLOCK_RATE": "3600"}
    with running_worker(settings, tmp_path, **env) as worker:
        state = {"kind": "accepted"}
        wait_for(lambda: metric_value(worker.metrics(), "meterseg_ingest_state_messages", state) >= n, 120, "imported")
        day = {"kind": "meter_1d"}

        def days_with_readings() -> float:  # UTC days 03-27 (from 23:00), 03-28, 03-29 (to 22:00)
            text = worker.metrics()
            return metric_value(text, "meterseg_windows_emitted_total", day) - metric_value(
                text, "meterseg_gap_windows_total", day
            )

        wait_for(lambda: days_with_readings() >= 3 * METERS, 120, "the last daily windows")
        first = _daily([w for _, v, _ in read_topic(kafka_bootstrap, settings.topics.windows)
                        for w in window_records(json.loads(v))])  # fmt: skip
        # the same data again, from other files: every block is a duplicate, nothing changes
        (tmp_path / "again").mkdir()
        again1, again2 = tmp_path / "again" / "export-a.csv", tmp_path / "again" / "export-b.csv"
        again1.write_bytes(day1.read_bytes())
        again2.write_bytes(day2.read_bytes())
        _import(settings, "--registry", str(reg), str(again1))
        _import(settings, "--registry", str(reg), "--shape", "wide", str(again2))
        dup = {"kind": "duplicates"}
        wait_for(lambda: metric_value(worker.metrics(), "meterseg_ingest_state_messages", dup) >= n, 120, "re-import")
        text = worker.metrics()
        assert metric_value(text, "meterseg_ingest_state_messages", state) == n
        assert metric_value(text, "meterseg_ingest_state_messages", {"kind": "deadletter"}) == 0
        assert metric_value(text, "meterseg_windows_revised_total") == 0
    windows = [w for _, v, _ in read_topic(kafka_bootstrap, settings.topics.windows) for w in window_records(json.loads(v))]
    assert _daily(windows) == first
    days = {k: w["kwh_in"] for k, w in first.items()}
    assert set(days) == set(want)
    for key, total in want.items():
        assert days[key] == pytest.approx(total, rel=1e-9, abs=1e-9), key
    quarters = [w for w in windows if w["kind"] == "meter" and w["window"] == "15m" and w["key"] == "IM000"]
    last = datetime(2026, 3, 29, 22, 0, tzinfo=UTC) - timedelta(minutes=15)  # end of the 23-hour local day
    assert {w["window_start"] for w in quarters if w["readings"]} >= {last.strftime("%Y-%m-%dT%H:%M:%SZ")}
