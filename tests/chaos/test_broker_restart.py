"""Drill 3: the Kafka broker stops and restarts mid-stream while the worker keeps running.

The Faust pitfall this guards against: after a broker restart a consumer group
can loop on "coordinator dead" and never consume again. Runs on the drills'
private stack (own ports and state directory), so the shared session broker
is never stopped. Proves that the worker's Faust app and both batch
consumers rejoin by themselves once the broker is back, resume from their
checkpoints, and that nothing is lost or counted twice: counters, window
totals, RFM, memberships and alerts equal the batch truth and the clean run.
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


def test_worker_resumes_after_broker_restart(private_stack: LocalStack, reference: Outcome, tmp_path: Path) -> None:
    stack = private_stack
    settings = drill_settings(stack.kafka.bootstrap, stack.redis.url, "broker")
    fleet = Fleet.simulate(settings, tmp_path)
    with timed("drill 3 (broker restart)"), running_worker(settings, tmp_path, **WORKER_ENV) as worker:
        wait_for(lambda: consumed([worker]) >= fleet.expected_in // 4, 120, "a quarter of the stream", 0.2)
        baseline = consumed([worker])
        assert baseline < fleet.expected_in, "the fault must hit mid-stream"
        down_at = time.monotonic()
        stack.kafka.down()
        stopped = time.monotonic() - down_at
        time.sleep(OUTAGE_S)
        up_at = time.monotonic()
        stack.kafka.up(timeout_s=120)
        restarted = time.monotonic() - up_at
        recovery = recovery_time([worker], baseline, up_at)
        assert worker.proc.poll() is None, worker.log_tail()
        report("drill 3 broker stop/start", recovery, measured_from="broker start command",
               broker_stop_s=f"{stopped:.1f}", outage_s=f"{up_at - down_at:.1f}", broker_start_s=f"{restarted:.1f}",
               fault_to_progress_s=f"{time.monotonic() - down_at:.1f}")  # fmt: skip
        counters = finish([worker], fleet)
        assert worker.health()["status"] == "ok"
    check_outcome(Outcome.collect(fleet, counters), reference, fleet.expected_in)
