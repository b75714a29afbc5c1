"""Fixtures of the fault drills: the clean reference run and a private stack to break.

The reference run streams the drills' fleet (same seed, same options, so
byte-identical input) through one undisturbed worker on the session stack; its
alerts are what no drill may lose. Drills that stop the broker or Redis use
:func:`private_stack`, a second local stack on its own ports and state
directory, so the session stack other tests share is never touched.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from meterseg.settings import Settings, StackSettings
from meterseg.stack import LocalStack
from tests.chaos.fleet import WORKER_ENV, Fleet, Outcome, drill_settings, finish
from tests.conftest import Services
from tests.integration.harness import running_worker

#: db of the session Redis used by the reference run (other suites use 1–11, 13 and 14)
REFERENCE_DB = 12
PRIVATE_PORTS = {"kafka_port": 49092, "kafka_controller_port": 49093, "redis_port": 46379, "prometheus_port": 49090}


@pytest.fixture(scope="session")
def reference(services: Services, tmp_path_factory: pytest.TempPathFactory) -> Outcome:
    """The clean run: the drills' fleet through one worker with no fault injected."""
    out = tmp_path_factory.mktemp("chaos-reference")
    settings = drill_settings(
        services.kafka_bootstrap, services.redis_url.rsplit("/", 1)[0] + f"/{REFERENCE_DB}", "ref"
    )
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
    settings = Settings(stack=StackSettings(state_dir=state, kafka_heap="384m", **PRIVATE_PORTS))
    stack = LocalStack.from_settings(settings, with_prometheus=False, appendonly=True)
    stack.up(timeout_s=120)
    try:
        yield stack
    finally:
        stack.down()
