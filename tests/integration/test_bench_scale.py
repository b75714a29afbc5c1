"""``bench.scale`` runs end to end at a tiny size (a smoke test: no figure is judged, no time asserted)."""

from __future__ import annotations

import subprocess
import sys

import pytest
import redis

from meterseg.settings import Settings
from tests.conftest import REPO
from tests.integration.harness import settings_env

pytestmark = pytest.mark.integration


def test_scale_benchmark_prints_its_figures_and_cleans_up(isolated_settings: Settings) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.scale", "--meters", "300", "--baseline-runs", "1", "--baseline-messages",
         "3000", "--sample-s", "1", "--settle-timeout", "5", "--memory-sample", "100", "--steady-s", "6"],
        env=settings_env(isolated_settings), capture_output=True, text=True, timeout=240, cwd=REPO,
    )  # fmt: skip
    out = done.stdout
    assert done.returncode == 0, out[-3000:] + done.stderr[-3000:]
    for line in (
        "[drain] 2 workers over the backlog",
        "every reading and heartbeat processed",
        "readings/s, 2 workers, backlog processed",
        "readings per worker CPU-second",
        "batch processing, ingest",
        "Redis per customer, RFM + features + memberships",
        "checkpoint in Redis, ingest",
        "worker 2: peak RSS (VmHWM)",
        "steady phase (",
        "    reading → alert",
        "    purchase → segment change",
        "cleanup: deleted 13 topics",
    ):
        assert line in out, f"{line!r} missing:\n{out[-3000:]}"
    client = redis.Redis.from_url(isolated_settings.redis_url)
    try:
        assert not list(client.scan_iter(match="bench-scale-*")), "the run's Redis keys were left behind"
    finally:
        client.close()
