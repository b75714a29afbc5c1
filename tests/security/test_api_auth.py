"""API security audit: every customer-data route needs the token, compared in constant time, never logged.

The unit tests check the route table and :func:`stream.web.auth.check_token`;
the integration test runs a real worker at DEBUG log level (every request
logged) and calls every route of the table with no token, a wrong token, the
wrong scheme, a header that is not UTF-8 and the right token, then searches the
worker's whole log (and every answer) for both tokens. Faust's own pages that
would serve data without a token (``/table``, ``/router``, statistics) are off.
"""

from __future__ import annotations

import hmac
import http.client
import json
import secrets
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from meterseg.settings import Settings
from stream.web.auth import check_token
from stream.web.errors import ApiError
from stream.web.routes import Route, all_routes
from tests.integration.harness import free_port, settings_env, wait_for

#: the only routes of the table served without a token (besides /health, outside the table)
PUBLIC = {("GET", "/openapi.json")}
#: path parameters for calling every route (values that exist or not: the token check comes first)
PATH_VALUES = {"id": "rfm:loyal"}
CUSTOMER_PATH_VALUES = {"id": "C0000001"}


def test_every_route_but_the_spec_needs_the_token() -> None:
    routes = all_routes()
    public = {(r.method, r.path) for r in routes if not r.auth}
    assert public == PUBLIC, f"routes without a token: {sorted(public - PUBLIC)}"
    assert {r.tag for r in routes if r.auth} >= {"segments", "customers", "meters", "insights", "score"}


def test_token_is_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr("stream.web.auth.hmac.compare_digest", spy)
    check_token({"Authorization": "Bearer s3cret"}, "s3cret")
    check_token({"Authorization": "bearer s3cret "}, "s3cret")  # scheme case and trailing blanks do not matter
    for header in ("Bearer s3cre", "Bearer s3cretX", "Bearer \udcff\udcfe"):  # the last: a non-UTF-8 header
        with pytest.raises(ApiError) as err:
            check_token({"Authorization": header}, "s3cret")
        assert err.value.status == 401 and "s3cret" not in str(err.value)
    assert len(calls) == 5 and all(isinstance(a, bytes) and b == b"s3cret" for a, b in calls)
    for headers in ({}, {"Authorization": "Basic s3cret"}, {"Authorization": "Bearer "}):
        with pytest.raises(ApiError, match="missing bearer token"):
            check_token(headers, "s3cret")
    with pytest.raises(ApiError, match="invalid bearer token"):
        check_token({"Authorization": "Bearer anything"}, "")  # an empty configured token lets nobody in


@dataclass
class Answer:
    status: int
    body: bytes


def _call(port: int, method: str, path: str, authorization: bytes | None) -> Answer:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.putrequest(method, path)
        body = b"{}" if method == "POST" else b""
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Content-Length", str(len(body)))
        if authorization is not None:
            conn.putheader("Authorization", authorization)
        conn.endheaders(body)
        resp = conn.getresponse()
        return Answer(resp.status, resp.read())
    finally:
        conn.close()


def _path(r: Route) -> str:
    values = CUSTOMER_PATH_VALUES if r.tag in ("customers", "meters") else PATH_VALUES
    path = r.path
    for name, value in values.items():
        path = path.replace("{" + name + "}", value)
    return path


@pytest.fixture
def debug_worker(isolated_settings: Settings, tmp_path: Path) -> Iterator[tuple[int, Path, str]]:
    """A worker at DEBUG log level with a random token: (web port, log file, token)."""
    token = f"tok-{secrets.token_hex(16)}"
    web, metrics = free_port(), free_port()
    log_path = tmp_path / "worker.log"
    with log_path.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "meterseg.cli", "-v", "worker", "--loglevel", "debug",
             "--web-port", str(web), "--metrics-port", str(metrics)],
            env=settings_env(isolated_settings, METERSEG_API_TOKEN=token),
            stdout=out,
            stderr=subprocess.STDOUT,
        )  # fmt: skip

    def up() -> bool:
        assert proc.poll() is None, log_path.read_text(errors="replace")[-3000:]
        try:
            return _call(web, "GET", "/health", None).status == 200
        except OSError:
            return False

    try:
        wait_for(up, 90, "worker start")
        yield web, log_path, token
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.mark.integration
def test_every_customer_route_refuses_without_the_token_and_no_token_is_logged(
    debug_worker: tuple[int, Path, str],
) -> None:
    port, log_path, token = debug_worker
    wrong = f"tok-{secrets.token_hex(16)}"
    seen: dict[str, list[Any]] = {}
    answers: list[bytes] = []
    for r in all_routes():
        path = _path(r)
        refused = {
            "none": _call(port, r.method, path, None),
            "wrong": _call(port, r.method, path, f"Bearer {wrong}".encode()),
            "prefix": _call(port, r.method, path, f"Bearer {token[:-1]}".encode()),
            "scheme": _call(port, r.method, path, f"Basic {token}".encode()),
            "not utf-8": _call(port, r.method, path, b"Bearer \xff\xfe" + token.encode()),
        }
        right = _call(port, r.method, path, f"Bearer {token}".encode())
        answers += [a.body for a in (*refused.values(), right)]
        seen[f"{r.method} {r.path}"] = [right.status, {k: a.status for k, a in refused.items()}]
        if (r.method, r.path) in PUBLIC:
            assert right.status == 200 and all(a.status == 200 for a in refused.values())
            continue
        for kind, answer in refused.items():
            assert answer.status == 401, (r.method, path, kind, answer)
            assert json.loads(answer.body)["error"] == "unauthorized"
        assert right.status not in (401, 500), (r.method, path, right)  # 200, 404 or 4xx about the input
    # Faust's own data and topology pages are off
    for path in ("/table/", "/router/", "/assignment/", "/graph/"):
        assert _call(port, "GET", path, None).status == 404, path
    log_text = log_path.read_text(errors="replace")
    assert "GET /segments -> " in log_text, "the worker must have logged the requests at DEBUG"
    for secret in (token, wrong, token[:-1]):
        assert secret not in log_text, "a token appears in the worker's log"
        assert all(secret.encode() not in body for body in answers), "a token is echoed in an answer"
    assert "Bearer" not in log_text
