"""A console (``meterseg console``) in front of the session's running engine, and Debian's Chromium under Playwright.

``playwright install`` downloads browsers from the internet; these machines
install ``chromium`` with apt (scripts/bootstrap.sh) and Playwright drives
that executable.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.error import URLError
from urllib.request import urlopen

import pytest

from tests.conftest import RunningEngine
from tests.integration.harness import free_port, settings_env, wait_for

CHROMIUM = Path(os.environ.get("METERSEG_CHROMIUM", "/usr/bin/chromium"))
#: set to a directory (e.g. docs/console) to keep the page screenshots there
SCREENSHOTS_ENV = "METERSEG_CONSOLE_SCREENSHOTS"


@dataclass
class Console:
    url: str
    engine: RunningEngine
    log: Path
    screenshot_dir: Path
    extra_dirs: list[Path] = field(default_factory=list)

    @property
    def token(self) -> str:
        return self.engine.settings.api_token


def _answers(url: str) -> bool:
    try:
        with urlopen(url, timeout=2) as resp:
            return bool(resp.status == 200)
    except (URLError, OSError):
        return False


@pytest.fixture(scope="module")
def console(running_engine: RunningEngine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    out = tmp_path_factory.mktemp("console")
    port = free_port()
    log = out / "console.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "meterseg.cli", "console", "--port", str(port),
             "--api-url", running_engine.web_url, "--prometheus-url", running_engine.prometheus_url],
            env=settings_env(running_engine.settings), stdout=sink, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        wait_for(lambda: _answers(f"http://127.0.0.1:{port}/login") or proc.poll() is not None, 60, "console start")
        assert proc.poll() is None, log.read_text()
        keep = os.environ.get(SCREENSHOTS_ENV)
        yield Console(f"http://127.0.0.1:{port}", running_engine, log, out, [Path(keep)] if keep else [])
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium; scripts/bootstrap.sh does it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"])
        try:
            yield b
        finally:
            b.close()


@dataclass
class BrowserLog:
    """What the browser reported: console errors (a failed callback or a 4xx/5xx answer is one), uncaught exceptions, requests to elsewhere."""

    errors: list[str] = field(default_factory=list)
    external: list[str] = field(default_factory=list)


@pytest.fixture
def page(browser: Any, console: Console) -> Iterator[tuple[Any, BrowserLog]]:
    """A signed-in page; the test fails if the browser logged an error or fetched anything from elsewhere."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    pg = context.new_page()
    seen = BrowserLog()
    pg.on("console", lambda m: seen.errors.append(f"console.{m.type}: {m.text}") if m.type == "error" else None)
    pg.on("pageerror", lambda e: seen.errors.append(f"uncaught: {e}"))
    pg.on("request", lambda r: None if r.url.startswith(console.url) else seen.external.append(r.url))
    pg.goto(console.url + "/login")
    pg.fill("#token", console.token)
    pg.click("#login-submit")
    pg.wait_for_url(console.url + "/")
    try:
        yield pg, seen
    finally:
        context.close()
    assert not seen.errors, seen.errors
    assert not seen.external, f"the console fetched from outside: {seen.external}"


def unique_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"
