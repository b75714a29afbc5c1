"""The console's pieces without a browser or an engine: sessions, the sign-in guard, the builder's caret."""

from __future__ import annotations

import time

from console import auth
from console.app import create_app
from console.pages.builder import caret_lines
from console.ui import duration, num


def test_sessions_hold_the_token_until_closed_or_expired() -> None:
    sessions = auth.Sessions(ttl_s=0.2)
    sid = sessions.open("s3cret")
    assert sid != "s3cret" and len(sid) >= 32 and sessions.token(sid) == "s3cret"
    assert sessions.token("guess") is None and sessions.token(None) is None
    other = sessions.open("s3cret")
    sessions.close(other)
    assert sessions.token(other) is None and sessions.token(sid) == "s3cret"
    time.sleep(0.25)
    assert sessions.token(sid) is None


def test_every_page_and_callback_needs_a_session() -> None:
    app = create_app("http://127.0.0.1:9", "http://127.0.0.1:9")  # nothing listens: sign-in cannot succeed
    client = app.server.test_client()
    for path in ("/", "/segments", "/builder?rule=x", "/export/rfm:loyal.csv"):
        resp = client.get(path)
        assert resp.status_code == 303 and resp.headers["Location"].endswith("/login"), path
    assert client.post("/_dash-update-component", json={}).status_code == 401
    assert client.get("/_dash-layout").status_code == 401
    login = client.get("/login")
    assert login.status_code == 200 and b'type="password"' in login.data
    refused = client.post("/login", data={"token": "anything"})
    assert refused.status_code == 401 and b"does not answer" in refused.data
    assert "Set-Cookie" not in refused.headers


def test_caret_points_at_the_column() -> None:
    assert caret_lines('region = "North"', 1, 8) == 'region = "North"\n       ^'
    assert caret_lines("a == 1 and\nb = 2", 2, 3) == "b = 2\n  ^"


def test_numbers_and_durations_for_people() -> None:
    assert num(1234.5, 1) == "1,234.5" and num(None) == "–" and num(float("nan")) == "–"
    assert duration(42) == "42 s" and duration(600) == "10.0 min" and duration(3 * 86_400) == "3.0 days"
    assert duration(None) == "–"
