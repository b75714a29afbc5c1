"""Drill 5: a stalled consumer — processing paused for longer than the group's session timeout.

Two ways a worker stops making progress, both longer than the consumer
session timeout (10 s):

- the whole worker is frozen (SIGSTOP for 16 s, then SIGCONT): the broker
  evicts it from its groups while it cannot heartbeat; after SIGCONT it must
  notice (its generation is stale), rejoin, restore its partitions from their
  checkpoints and finish. A frozen process cannot answer ``/health`` at all
  (the probe times out), which a liveness probe treats as failed;
- the worker is alive but its batch loop is stuck (the private Redis is
  paused with SIGSTOP, so a batch waits on it for 34 s while the heartbeat
  keeps the member in its group — the "consumer silently stops" pitfall, no
  rebalance ever fires): ``/health`` must flip to ``stalled`` with HTTP 503
  (no poll for more than 30 s), and back to ``ok`` once processing resumes.

Both then finish with counters, window totals, RFM, memberships and alerts
equal to the batch truth and the clean reference run.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any
from urllib.error import HTTPError, URLError
from urllib.request import urlopen

import pytest

from meterseg.stack import LocalStack
from tests.chaos.fleet import (
    WORKER_ENV,
    Fleet,
    Outcome,
    check_outcome,
    consumed,
    drill_settings,
    finish,
    recovery_time,
    report,
    timed,
)
from tests.integration.harness import Worker, running_worker, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FREEZE_S = 16.0  # > session timeout (10 s): the broker evicts the frozen member
STUCK_S = 34.0  # > the 30 s without a poll after which /health says "stalled"
#: redis-py's default 5 s socket timeout turns a paused Redis into errors, which crash the worker today
#: (see test_engine_bugs.TIMER_CRASH, drill 4); a longer one makes the batch loop wait, i.e. stall
STALL_REDIS_OPTIONS = "?socket_timeout=120"


def health_status(worker: Worker, timeout_s: float = 2.0) -> tuple[int, dict[str, Any]]:
    """HTTP status and body of ``/health``; (0, {}) when the worker does not answer in time."""
    try:
        with urlopen(f"http://127.0.0.1:{worker.web_port}/health", timeout=timeout_s) as resp:
            return int(resp.status), json.loads(resp.read())
    except HTTPError as exc:
        return int(exc.code), json.loads(exc.read())
    except (URLError, TimeoutError, OSError):
        return 0, {}


def test_frozen_worker_rejoins_and_finishes(private_stack: LocalStack, reference: Outcome, tmp_path: Path) -> None:
    stack = private_stack
    settings = drill_settings(stack.kafka.bootstrap, stack.redis.url, "freeze")
    fleet = Fleet.simulate(settings, tmp_path)
    with timed("drill 5a (SIGSTOP worker)"), running_worker(settings, tmp_path, **WORKER_ENV) as worker:
        wait_for(lambda: consumed([worker]) >= fleet.expected_in // 4, 120, "a quarter of the stream", 0.2)
        baseline = consumed([worker])
        assert baseline < fleet.expected_in, "the fault must hit mid-stream"
        worker.proc.send_signal(signal.SIGSTOP)
        stopped_at = time.monotonic()
        try:
            while_frozen = health_status(worker, timeout_s=2.0)
            time.sleep(max(0.0, FREEZE_S - (time.monotonic() - stopped_at)))
        finally:
            worker.proc.send_signal(signal.SIGCONT)
        resumed_at = time.monotonic()
        after = [health_status(worker)[1].get("status") for _ in range(3)]
        recovery = recovery_time([worker], baseline, resumed_at)
        report("drill 5a SIGSTOP worker 16 s", recovery, measured_from="SIGCONT",
               health_while_frozen=while_frozen[0] or "no answer", health_after_sigcont=after)  # fmt: skip
        assert while_frozen[0] == 0, "a frozen worker cannot answer /health"
        # 3 groups joined at start; the broker evicted the frozen member, so it must join again (on a loaded
        # machine the rejoin can come a little after the first progress: wait for it, do not race it)
        wait_for(lambda: worker.log_path.read_text(errors="replace").count("Joined group") > 3, 60,
                 "the frozen worker rejoining its groups", 0.5)
        counters = finish([worker], fleet)
        assert health_status(worker)[0] == 200
    check_outcome(Outcome.collect(fleet, counters), reference, fleet.expected_in)


def test_stuck_batch_loop_reports_stalled_then_recovers(
    private_stack: LocalStack, reference: Outcome, tmp_path: Path
) -> None:
    stack = private_stack
    settings = drill_settings(stack.kafka.bootstrap, stack.redis.url, "stuck")
    settings = settings.model_copy(update={"redis_url": settings.redis_url + STALL_REDIS_OPTIONS})
    fleet = Fleet.simulate(settings, tmp_path)
    redis_pid = stack.redis.process.read_pid()
    assert redis_pid is not None
    seen: list[tuple[float, int, str]] = []
    with timed("drill 5b (stuck batch loop)"), running_worker(settings, tmp_path, **WORKER_ENV) as worker:
        wait_for(lambda: consumed([worker]) >= fleet.expected_in // 4, 120, "a quarter of the stream", 0.2)
        baseline = consumed([worker])
        assert baseline < fleet.expected_in, "the fault must hit mid-stream"
        os.kill(redis_pid, signal.SIGSTOP)
        paused_at = time.monotonic()
        try:
            while time.monotonic() - paused_at < STUCK_S:
                code, body = health_status(worker)
                seen.append((round(time.monotonic() - paused_at, 1), code, str(body.get("status"))))
                time.sleep(1.0)
        finally:
            os.kill(redis_pid, signal.SIGCONT)
        resumed_at = time.monotonic()
        recovery = recovery_time([worker], baseline, resumed_at)
        wait_for(lambda: health_status(worker)[0] == 200, 30, "health back to ok", 0.2)
        back_ok = time.monotonic() - resumed_at
        flipped = [t for t, code, status in seen if code == 503 and status == "stalled"]
        report("drill 5b batch loop stuck 34 s", recovery, measured_from="SIGCONT of Redis",
               stalled_reported_after_s=flipped[0] if flipped else None, health_ok_after_s=f"{back_ok:.1f}")  # fmt: skip
        assert all(code in (200, 503) for _, code, _ in seen), f"/health must keep answering: {seen}"
        assert flipped, f"/health never reported the stall: {seen}"
        counters = finish([worker], fleet)
    check_outcome(Outcome.collect(fleet, counters), reference, fleet.expected_in)
