"""Drills 3 and 4: the Kafka broker, or Redis, stops and restarts mid-stream while the worker keeps running.

Both run on the drills' private stack (own ports and state directory, Redis
with ``appendonly yes``), so the shared session services are never stopped.

* Drill 3, broker: the Faust pitfall this guards against is a consumer group
  that loops on "coordinator dead" after a broker restart and never consumes
  again. Proves that the worker's Faust app and both batch consumers rejoin
  by themselves once the broker is back and resume from their checkpoints.
* Drill 4, Redis: Redis holds the partition checkpoints, the customer state
  the API reads and the fleet-wide model. Proves that batches failing on the
  outage are re-read from the last checkpoint rather than skipped or applied
  twice, that timers survive the outage, and that the worker resumes once
  Redis answers again.

Either way nothing is lost or counted twice: counters, window totals, RFM,
memberships and alerts equal the batch truth and the clean run.
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

#: component -> (drill number, display name, start timeout in seconds)
DRILLS = {"kafka": (3, "broker", 120.0), "redis": (4, "Redis", 60.0)}


@pytest.mark.parametrize("component", sorted(DRILLS))
def test_worker_resumes_after_restart(
    component: str, private_stack: LocalStack, reference: Outcome, tmp_path: Path
) -> None:
    number, name, start_timeout_s = DRILLS[component]
    stack = private_stack
    node = stack.kafka if component == "kafka" else stack.redis
    settings = drill_settings(stack.kafka.bootstrap, stack.redis.url, "broker" if component == "kafka" else "redis")
    fleet = Fleet.simulate(settings, tmp_path)
    with timed(f"drill {number} ({name} restart)"), running_worker(settings, tmp_path, **WORKER_ENV) as worker:
        wait_for(lambda: consumed([worker]) >= fleet.expected_in // 4, 120, "a quarter of the stream", 0.2)
        baseline = consumed([worker])
        assert baseline < fleet.expected_in, "the fault must hit mid-stream"
        down_at = time.monotonic()
        node.down()
        stopped = time.monotonic() - down_at
        time.sleep(OUTAGE_S)
        up_at = time.monotonic()
        node.up(timeout_s=start_timeout_s)
        restarted = time.monotonic() - up_at
        recovery = recovery_time([worker], baseline, up_at)
        assert worker.proc.poll() is None, worker.log_tail()
        report(f"drill {number} {name} stop/start", recovery, measured_from=f"{name} start command",
               stop_s=f"{stopped:.1f}", outage_s=f"{up_at - down_at:.1f}", start_s=f"{restarted:.1f}",
               fault_to_progress_s=f"{time.monotonic() - down_at:.1f}")  # fmt: skip
        counters = finish([worker], fleet)
        assert worker.health()["status"] == "ok"
    check_outcome(Outcome.collect(fleet, counters), reference, fleet.expected_in)
