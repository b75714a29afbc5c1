"""Drill 2: two workers in one consumer group; one is killed (its partitions move) and later restarted.

The fleet is produced while both workers run (the registry first, then the
readings, as a head-end does), so the kill lands mid-stream. Proves that a
partition's state follows the partition between workers: when
worker B dies with SIGKILL in the middle of the stream, worker A takes over
B's partitions after the group's session timeout, restores their checkpoints
and resumes them at exactly the offsets those checkpoints reflect; when B
comes back, A checkpoints on revocation and B restores A's state. Afterwards
the checkpointed counters, window totals, RFM records, memberships and alerts
equal the batch truth and the clean reference run.
"""

from __future__ import annotations

import signal
import threading
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
    workers_started_together,
)
from tests.integration.harness import Worker, running_worker, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _owned(worker: Worker, pipeline_topic: str) -> set[str]:
    return {p for p in worker.health().get("partitions", []) if p.startswith(pipeline_topic)}


def test_killed_worker_partitions_move_and_move_back(
    private_stack: LocalStack, reference: Outcome, tmp_path: Path
) -> None:
    settings = drill_settings(private_stack.kafka.bootstrap, private_stack.redis.url, "failover")
    readings, purchases = settings.topics.readings, settings.topics.purchases
    n = settings.partitions
    expected_in = int(reference.counters["messages"])  # same seed and options: the same input
    produced: list[Fleet] = []
    with timed("drill 2 (failover)"), workers_started_together(settings, tmp_path, 2, **WORKER_ENV) as (a, b):

        def split() -> bool:
            ra, rb, pa, pb = _owned(a, readings), _owned(b, readings), _owned(a, purchases), _owned(b, purchases)
            return bool(ra and rb and pa and pb) and len(ra | rb) == len(pa | pb) == n and not (ra & rb)

        wait_for(split, 60, "both workers own partitions of both pipelines", 0.2)
        moved = _owned(b, readings)
        # the fleet streams in while both workers run (registrations first, as a head-end does), so the
        # kill hits mid-stream however fast one worker alone would have been
        simulator = threading.Thread(target=lambda: produced.append(Fleet.simulate(settings, tmp_path)))
        simulator.start()
        wait_for(lambda: consumed([a, b]) >= expected_in // 4, 120, "a quarter of the stream", 0.2)
        baseline = consumed([a, b])
        b.proc.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        b.proc.wait()
        simulator.join(timeout=300)
        (fleet,) = produced
        assert fleet.expected_in == expected_in
        assert baseline < fleet.expected_in, "the fault must hit mid-stream"
        wait_for(lambda: len(_owned(a, readings)) == n, 60, "A owns B's partitions", 0.2)
        takeover = time.monotonic() - killed
        recovery = recovery_time([a], baseline, killed)
        report("drill 2 kill -9 one of two workers", recovery, takeover_s=f"{takeover:.1f}",
               state_at_kill=f"{baseline:.0f}/{fleet.expected_in}", moved=sorted(moved))  # fmt: skip
        # B comes back: partitions move back (A checkpoints them on revocation, the new B restores them)
        with running_worker(settings, tmp_path, **WORKER_ENV) as b2:
            back = time.monotonic()
            wait_for(
                lambda: bool(_owned(b2, readings)) and len(_owned(a, readings)) < n, 60, "partitions move back", 0.2
            )
            report("drill 2 restarted worker gets partitions back", time.monotonic() - back,
                   back=sorted(_owned(b2, readings)))  # fmt: skip
            counters = finish([a, b2], fleet)
            assert _owned(b2, readings) and _owned(b2, purchases), "the restarted worker keeps its share"
    check_outcome(Outcome.collect(fleet, counters), reference, fleet.expected_in)
