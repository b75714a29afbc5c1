"""Drill 4: Redis (append-only) stops and restarts mid-stream while the worker keeps running.

Redis holds the partition checkpoints, the customer state the API reads and the
fleet-wide model. Runs on the drills' private stack (``appendonly yes``), so
the shared session Redis is never stopped. Proves that batches failing on the
outage are re-read from the last checkpoint rather than skipped or applied
twice, that timers survive the outage, and that the worker resumes once Redis
answers again: counters, window totals, RFM, memberships and alerts equal the
batch truth and the clean run.
"""

from __future__ import annotations

import time
from pathlib import Path

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
from tests.integration.harness import running_worker, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

OUTAGE_S = 5.0


def test_worker_resumes_after_redis_restart(private_stack: LocalStack, reference: Outcome, tmp_path: Path) -> None:
    stack = private_stack
    settings = drill_settings(stack.kafka.bootstrap, stack.redis.url, "redis")
    fleet = Fleet.simulate(settings, tmp_path)
    with timed("drill 4 (Redis restart)"), running_worker(settings, tmp_path, **WORKER_ENV) as worker:
        wait_for(lambda: consumed([worker]) >= fleet.expected_in // 4, 120, "a quarter of the stream", 0.2)
        baseline = consumed([worker])
        assert baseline < fleet.expected_in, "the fault must hit mid-stream"
        down_at = time.monotonic()
        stack.redis.down()
        time.sleep(OUTAGE_S)
        up_at = time.monotonic()
        stack.redis.up(timeout_s=60)
        recovery = recovery_time([worker], baseline, up_at)
        assert worker.proc.poll() is None, worker.log_tail()
        report("drill 4 Redis stop/start", recovery, measured_from="Redis start command",
               outage_s=f"{up_at - down_at:.1f}", fault_to_progress_s=f"{time.monotonic() - down_at:.1f}")  # fmt: skip
        counters = finish([worker], fleet)
        assert worker.health()["status"] == "ok"
    check_outcome(Outcome.collect(fleet, counters), reference, fleet.expected_in)
