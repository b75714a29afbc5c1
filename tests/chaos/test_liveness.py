"""Liveness beyond "the consumer polls": failing batches, waiting records, failing or stopped timers.

Drill 5 (``test_stall.py``) covers a worker whose batch loop hangs (no poll
for 30 s). These cover what polling alone cannot see:

- unit: :meth:`stream.engine.Engine.stall_reasons` on a fake engine, for each
  rule, including that one failed batch healed by the next checkpoint, or
  records that arrive after a long quiet spell, are not a stall;
- integration: a real worker whose Redis refuses ``HSET`` (an ACL change on a
  private redis-server) keeps polling, but every batch or every checkpoint
  fails: ``/health`` must turn 503 ``stalled`` naming the failing batches, and
  come back to ``ok`` once Redis accepts writes again, with every reading
  processed (the rewinds lost nothing).
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.error import HTTPError
from urllib.request import urlopen

import pytest
import redis

from meterseg.settings import Settings, TopicNames
from meterseg.stack import RedisNode
from stream.engine import Engine
from tests.conftest import local_test_settings
from tests.integration.harness import Worker, free_port, running_worker, simulate, wait_for

LIMIT = 30.0


def fake_engine(now: float, **consumer: Any) -> Any:
    """An object with what :meth:`Engine.stall_reasons` reads: two live consumers, a live timer."""

    def live(**overrides: Any) -> SimpleNamespace:
        fields = {"last_poll": now, "last_progress": now, "failing_since": None, "failures": 0, "last_error": "",
                  "refused": None}
        return SimpleNamespace(**{**fields, **overrides})

    return SimpleNamespace(
        settings=Settings(liveness_timeout_s=LIMIT, checkpoint_interval_s=2.0),
        consumers={"ingest": live(**consumer), "segments": live()},
        waiting_since={"ingest": None, "segments": None},
        lag={"ingest": 0, "segments": 0},
        timer_ok={"ingest": now, "segments": now},
        last_tick=now,
    )


def reasons(engine: Any, now: float) -> list[str]:
    return Engine.stall_reasons(engine, now)


def test_a_live_engine_has_no_stall_reason() -> None:
    assert reasons(fake_engine(1000.0), 1000.0 + LIMIT - 1) == []


def test_a_checkpoint_refusing_the_settings_is_a_stall_at_once() -> None:
    why = "METERSEG_SEGMENTATION__K changed from 10 to 12: set it back"
    assert reasons(fake_engine(1000.0, refused=why), 1000.0) == [
        f"ingest: a partition's checkpoint refuses the settings: {why}"
    ]


def test_no_poll_is_a_stall() -> None:
    assert reasons(fake_engine(1000.0, last_poll=900.0), 1000.0) == ["ingest: no poll for 100 s"]


def test_batches_failing_with_nothing_checkpointed_is_a_stall_even_while_polling() -> None:
    engine = fake_engine(1000.0, failing_since=960.0, failures=40, last_error="NoPermissionError")
    assert reasons(engine, 1000.0) == [
        "ingest: batches failing for 40 s with nothing checkpointed (40 failures so far, last NoPermissionError)"
    ]
    # a failure that the next checkpoint will heal is not (yet) a stall
    assert reasons(fake_engine(1000.0, failing_since=995.0, failures=1), 1000.0) == []
    # with long checkpoint intervals the grace is two intervals, not the liveness limit
    slow = fake_engine(1000.0, failing_since=950.0, failures=3)
    slow.settings = Settings(liveness_timeout_s=LIMIT, checkpoint_interval_s=40.0)
    assert reasons(slow, 1000.0) == []


def test_records_waiting_without_progress_is_a_stall() -> None:
    engine = fake_engine(1000.0, last_progress=100.0)  # a quiet stream: no batch for 900 s
    Engine._note_lag(engine, "ingest", {"tp0": 0})
    assert reasons(engine, 1000.0) == []
    # records arrive: waiting counts from their arrival, not from the last (long ago) batch
    engine.waiting_since["ingest"] = 995.0
    engine.lag["ingest"] = 12
    assert reasons(engine, 1000.0) == []
    assert reasons(engine, 995.0 + LIMIT + 5) == ["ingest: 12 records waiting, no batch processed for 35 s"]
    engine.consumers["ingest"].last_progress = 995.0 + LIMIT + 4  # a batch went through: live again
    assert reasons(engine, 995.0 + LIMIT + 5) == []


def test_note_lag_keeps_the_first_arrival_and_ignores_unknown_lag() -> None:
    engine = fake_engine(1000.0)
    Engine._note_lag(engine, "ingest", {"a": 3, "b": 0})
    first = engine.waiting_since["ingest"]
    assert first is not None and engine.lag["ingest"] == 3
    Engine._note_lag(engine, "ingest", {"a": 5})
    assert engine.waiting_since["ingest"] == first and engine.lag["ingest"] == 5
    Engine._note_lag(engine, "ingest", {})  # lag unknown (query failed): keep what we knew
    assert engine.waiting_since["ingest"] == first
    Engine._note_lag(engine, "ingest", {"a": 0})
    assert engine.waiting_since["ingest"] is None and engine.lag["ingest"] == 0


def test_failing_timer_steps_and_a_stopped_timer_are_stalls() -> None:
    engine = fake_engine(1000.0)
    engine.timer_ok["segments"] = 950.0
    assert reasons(engine, 1000.0) == ["segments: timer step failing for 50 s"]
    engine = fake_engine(1000.0)
    engine.last_tick = 960.0
    assert reasons(engine, 1000.0) == ["timer: no tick for 40 s"]


def _health(worker: Worker) -> tuple[int, dict[str, Any]]:
    try:
        with urlopen(f"http://127.0.0.1:{worker.web_port}/health", timeout=3) as resp:
            return int(resp.status), json.loads(resp.read())
    except HTTPError as exc:
        return int(exc.code), json.loads(exc.read())


@pytest.mark.integration
def test_worker_whose_batches_keep_failing_reports_stalled_then_recovers(kafka_bootstrap: str, tmp_path: Path) -> None:
    node = RedisNode(state_dir=tmp_path / "redis", port=free_port(), appendonly=False)
    node.up(timeout_s=30)
    admin = redis.Redis.from_url(node.url)
    try:
        unique = uuid.uuid4().hex[:8]
        settings = Settings(
            app_id=f"liveness-{unique}",
            kafka_bootstrap=kafka_bootstrap,
            redis_url=node.url,
            topics=TopicNames(**{k: f"{v}.{unique}" for k, v in TopicNames().model_dump().items()}),
            stack=local_test_settings().stack,
        )
        env = {"METERSEG_LIVENESS_TIMEOUT_S": "4", "METERSEG_CHECKPOINT_INTERVAL_S": "1",
               "METERSEG_INGEST__CLOCK_RATE": "3600"}  # fmt: skip
        with running_worker(settings, tmp_path, **env) as worker:
            assert _health(worker)[0] == 200
            admin.execute_command("ACL", "SETUSER", "default", "-hset")  # every checkpoint and state write fails
            summary = simulate(settings, tmp_path, "--meters", "30", "--days", "1", "--seed", "4", "--no-ops")
            expected = summary["messages"][settings.topics.readings] + summary["messages"][settings.topics.heartbeats]
            seen: list[tuple[int, dict[str, Any]]] = []

            def stalled() -> bool:
                seen.append(_health(worker))
                return seen[-1][0] == 503

            wait_for(stalled, 40, "/health to report the failing batches", 0.5)
            body = seen[-1][1]
            assert body["status"] == "stalled", body
            assert any(r.startswith("ingest: batches failing") for r in body["stalled"]), body
            assert body["seconds_since_poll"] < 4, "the consumer still polls: the old check saw nothing wrong"
            admin.execute_command("ACL", "SETUSER", "default", "+hset")
            wait_for(lambda: _health(worker)[0] == 200, 40, "/health back to ok", 0.5)
            wait_for(lambda: worker.health().get("totals", {}).get("messages", 0) >= expected, 90, "every reading")
            assert worker.health()["status"] == "ok"
    finally:
        admin.close()
        node.down()
