"""The live API against its own document, with a contract fuzzer (issue 16, finding 5).

schemathesis reads ``contracts/openapi.yaml`` and sends every operation valid and
invalid requests (examples, coverage and fuzzing phases) to the session's running
worker with the right token, checking every response: no 5xx, status codes and
content types the document lists, bodies that match its schemas, invalid
requests refused and valid ones accepted. Examples per operation are capped
(``METERSEG_SCHEMATHESIS_EXAMPLES``, 25 in CI) to keep the run at a couple of
minutes; the seed is fixed so a failure reproduces.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.error import HTTPError
from urllib.request import Request, urlopen

import pytest

from tests.conftest import REPO, RunningEngine

pytestmark = pytest.mark.integration
SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"


def _call(engine: RunningEngine, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    req = Request(engine.web_url + path, method=method, data=json.dumps(body).encode() if body is not None else None,
                  headers={"Authorization": f"Bearer {engine.settings.api_token}",
                           "Content-Type": "application/json"})  # fmt: skip
    try:
        with urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def test_expand_with_a_low_min_score_and_a_large_share_answers(running_engine: RunningEngine) -> None:
    """min_score below the lowest band (0.55) and max_share 1 are valid by the document: 200, never a 500."""
    status, listing = _call(running_engine, "GET", "/segments")
    assert status == 200
    seg = max(listing["segments"], key=lambda s: s["size"])
    status, body = _call(running_engine, "POST", f"/segments/{seg['id']}/expand",
                         {"min_score": 0.0, "max_share": 1.0, "limit": 1000})  # fmt: skip
    assert status == 200, body
    assert body["found"] > 0 and body["bands"]["less similar"] > 0
    assert sum(body["bands"].values()) == body["found"]
    assert all(r["band"] for r in body["results"])


def test_schemathesis_finds_no_failure(running_engine: RunningEngine, tmp_path: Path) -> None:
    examples = os.environ.get("METERSEG_SCHEMATHESIS_EXAMPLES", "25")
    report = tmp_path / "report.json"
    done = subprocess.run(
        [str(SCHEMATHESIS), "--config-file", str(REPO / "contracts" / "schemathesis.toml"), "run", str(REPO / "contracts" / "openapi.yaml"), "--url", running_engine.web_url,
         "-H", f"Authorization: Bearer {running_engine.settings.api_token}",
         "--checks", "all", "--exclude-checks", "ignored_auth,use_after_free,ensure_resource_availability",
         # the 3-day test fleet has no behaviour model yet (seeded after a week of profiles): POST /score can
         # only answer its documented 503 model_not_ready here, checked below instead of fuzzed
         "--exclude-path", "/score",
         "--phases", "examples,coverage,fuzzing", "--max-examples", examples, "--seed", "16",
         "--workers", "1", "--no-shrink", "--request-timeout", "30", "--generation-database", "none",
         "--no-color", "--output-truncate", "true", "--report", "json", "--report-json-path", str(report)],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )  # fmt: skip
    if os.environ.get("METERSEG_SCHEMATHESIS_LOG"):  # the whole output, for a developer reading every failure
        Path(os.environ["METERSEG_SCHEMATHESIS_LOG"]).write_text(done.stdout + done.stderr)
    assert done.returncode == 0, done.stdout[-12_000:] + done.stderr[-3000:]


def test_score_without_a_model_answers_the_documented_503(running_engine: RunningEngine) -> None:
    from urllib.error import HTTPError
    from urllib.request import Request, urlopen

    req = Request(f"{running_engine.web_url}/score", data=b'{"customer_id": "C0000001"}', method="POST", headers={
        "Authorization": f"Bearer {running_engine.settings.api_token}", "Content-Type": "application/json"})
    try:
        with urlopen(req, timeout=10) as resp:
            assert resp.status == 200  # a model exists after all: scoring works
    except HTTPError as exc:
        assert exc.code == 503 and b"model_not_ready" in exc.read()
