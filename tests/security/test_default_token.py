"""The published default API token is refused; the demo makes its own and the README's example works (issue 16, 3).

- a worker started with ``change-me`` (or an empty token) exits at once with what to set, before it
  touches Kafka or serves a byte;
- ``meterseg demo`` generates a token, keeps it in ``<state>/demo/api-token`` (0600) and reuses it;
- the README's first API example, pasted into bash in a checkout whose demo left that file, answers 200
  from a live worker.
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from meterseg.settings import DEFAULT_API_TOKEN, Settings
from tests.conftest import REPO, RunningEngine
from tests.integration.harness import free_port, settings_env

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("token", [DEFAULT_API_TOKEN, " "])
def test_worker_refuses_the_default_or_an_empty_token(isolated_settings: Settings, tmp_path: Path, token: str) -> None:
    env = settings_env(isolated_settings, METERSEG_API_TOKEN=token)
    env.pop("METERSEG_API_ALLOW_DEFAULT_TOKEN", None)
    started = time.monotonic()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "meterseg.cli", "worker", "--web-port", str(free_port()),
             "--metrics-port", str(free_port())],
            env=env, capture_output=True, text=True, timeout=45,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        pytest.fail("the worker started (and served the API) with the default token instead of refusing")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "METERSEG_API_TOKEN" in done.stderr
    if token == DEFAULT_API_TOKEN:
        assert "METERSEG_API_ALLOW_DEFAULT_TOKEN=true" in done.stderr
    assert time.monotonic() - started < 30


def test_demo_generates_keeps_and_reuses_a_secret_token(tmp_path: Path) -> None:
    from meterseg.demo import demo_api_token

    demo_dir = tmp_path / "demo"
    first = demo_api_token(Settings(), demo_dir)
    assert first != DEFAULT_API_TOKEN and len(first) >= 32
    path = demo_dir / "api-token"
    assert path.read_text().strip() == first
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert demo_api_token(Settings(), demo_dir) == first  # the next demo run keeps the token users exported
    assert demo_api_token(Settings(api_token="mine-and-secret"), demo_dir) == "mine-and-secret"


def _readme_first_api_example() -> str:
    text = (REPO / "README.md").read_text()
    api = text[text.index("## HTTP API") :]
    block = re.search(r"```bash\n(.*?)```", api, re.S)
    assert block is not None
    return block.group(1)


def test_readme_api_example_works_as_pasted(running_engine: RunningEngine, tmp_path: Path) -> None:
    """The block runs in a directory where a demo left its token file; only the worker's port differs."""
    snippet = _readme_first_api_example()
    (tmp_path / ".state" / "demo").mkdir(parents=True)
    (tmp_path / ".state" / "demo" / "api-token").write_text(running_engine.settings.api_token + "\n")
    script = snippet.replace("http://127.0.0.1:6066", running_engine.web_url)
    script = script.replace("curl -s ", "curl -s --fail-with-body ")
    env = {k: v for k, v in os.environ.items() if k != "METERSEG_API_TOKEN"}
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, f"README example failed:\n{script}\n{done.stdout}\n{done.stderr}"
    assert '"family"' in done.stdout, done.stdout
