"""The test stack picks its own free ports, so test runs on one machine never collide (issue 16, finding 10).

No broker is started here: the plan (ports, state directory) is computed in
fresh interpreters, the way two concurrent pytest runs would compute it.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from meterseg.stack import LocalStack, StackError
from meterseg.stack.ports import free_port
from meterseg.stack.process import port_open

REPO = Path(__file__).resolve().parents[1]
_PLAN = (
    "import json; from tests.conftest import local_test_settings as s; st = s().stack; "
    "print(json.dumps({'ports': [st.kafka_port, st.kafka_controller_port, st.redis_port, st.prometheus_port], "
    "'state': str(st.state_dir)}))"
)


def _plan_in_fresh_process(**env: str) -> dict[str, object]:
    base = {k: v for k, v in os.environ.items() if k not in ("METERSEG_TEST_PORT_OFFSET", "METERSEG_TEST_KEEP_STACK")}
    done = subprocess.run(
        [sys.executable, "-c", _PLAN], cwd=REPO, env={**base, "PYTHONPATH": str(REPO), **env},
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_two_runs_without_settings_get_distinct_free_ports_and_state_dirs() -> None:
    with socket.socket() as squatter:  # another stack already holds the old fixed Kafka test port
        try:
            squatter.bind(("127.0.0.1", 29092))
            squatter.listen()
        except OSError:
            pass  # something else holds it already: the same situation
        first, second = _plan_in_fresh_process(), _plan_in_fresh_process()
    ports_a, ports_b = first["ports"], second["ports"]
    assert isinstance(ports_a, list) and isinstance(ports_b, list)
    assert 29092 not in ports_a + ports_b and 26379 not in ports_a + ports_b
    assert len(set(ports_a)) == 4 and not set(ports_a) & set(ports_b), (ports_a, ports_b)
    assert not any(port_open(p) for p in ports_a + ports_b)
    assert first["state"] != second["state"], "two runs would share one Kafka log dir"


def test_offset_still_pins_fixed_ports_and_its_own_state_dir() -> None:
    plan = _plan_in_fresh_process(METERSEG_TEST_PORT_OFFSET="160")
    assert plan["ports"] == [29252, 29253, 26539, 29250]
    assert str(plan["state"]).endswith(".state/test-160")


def test_taken_port_names_the_variable_that_moves_the_test_stack(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import tests.conftest as conftest

    busy = free_port()
    offset = busy - conftest.FIXED_TEST_PORTS["kafka_port"]
    monkeypatch.setenv("METERSEG_TEST_PORT_OFFSET", str(offset))
    plan = conftest._plan_test_stack()
    assert plan.ports["kafka_port"] == busy
    settings = conftest.local_test_settings().model_copy(
        update={"stack": conftest.local_test_settings().stack.model_copy(
            update={"state_dir": tmp_path, **plan.ports})}
    )  # fmt: skip
    stack = LocalStack.from_settings(settings, with_prometheus=False, appendonly=False)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", busy))
        squatter.listen()
        with pytest.raises(StackError) as caught:
            conftest.start_test_stack(stack, plan)
    message = str(caught.value)
    assert f"port {busy} is taken" in message
    assert f"METERSEG_TEST_PORT_OFFSET={offset}" in message and "unset it" in message
    assert "METERSEG_STACK__KAFKA_PORT" not in message  # that variable does not move the test stack
