"""Fixtures of the fault drills: the clean reference run and a private stack to break.

Every drill, and the reference run, runs on :func:`private_stack`: Kafka and
Redis of this test session alone (free ports, own state directory), so drills
that stop the broker or Redis never touch the session stack other tests share,
and no other test (or a concurrent test session) can flush a Redis database
under a drill. Each run has its own app id and topic names.

The reference run streams the drills' fleet (same seed, same options, so
byte-identical input) through one undisturbed worker; its alerts and
checkpointed counters are what every drill must reproduce.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from meterseg.settings import Settings, StackSettings
from meterseg.stack import LocalStack
from tests.chaos.fleet import WORKER_ENV, Fleet, Outcome, drill_settings, finish
from tests.conftest import Services
from tests.integration.harness import free_port, running_worker


@pytest.fixture(scope="session")
def reference(private_stack: LocalStack, tmp_path_factory: pytest.TempPathFactory) -> Outcome:
    """The clean run: the drills' fleet through one worker with no fault injected."""
    out = tmp_path_factory.mktemp("chaos-reference")
    settings = drill_settings(private_stack.kafka.bootstrap, private_stack.redis.url, "ref")
    fleet = Fleet.simulate(settings, out)
    with running_worker(settings, out, **WORKER_ENV) as worker:
        counters = finish([worker], fleet)
    return Outcome.collect(fleet, counters)


@pytest.fixture(scope="session")
def private_stack(services: Services, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """Kafka and Redis (append-only) of the drills alone, started once and stopped at the end."""
    if services.via != "local":
        pytest.skip("drills that stop the broker or Redis run on the local launcher's private stack")
    state: Path = tmp_path_factory.mktemp("chaos-stack")
    # free ports, not fixed ones: two test sessions on one machine (a CI clone and a working copy) each
    # get their own stack instead of colliding
    ports = {"kafka_port": free_port(), "kafka_controller_port": free_port(), "redis_port": free_port()}
    settings = Settings(stack=StackSettings(state_dir=state, kafka_heap="384m", **ports))
    stack = LocalStack.from_settings(settings, with_prometheus=False, appendonly=True)
    stack.up(timeout_s=120)
    try:
        yield stack
    finally:
        stack.down()
