"""Login with the API's bearer token, kept on the server: the browser holds only a random session id.

The login form posts the token once; the console checks it against the API
(``GET /segments``: 401 means wrong) and stores it in :class:`Sessions`,
keyed by a random id set as an ``HttpOnly``, ``SameSite=Strict`` cookie. The
token never appears in a URL, a page or a cookie. Every request but the login
page and Dash's static assets needs a live session: a page is redirected to
``/login``, anything else (a callback) gets a 401.
"""

from __future__ import annotations

import html
import secrets
import threading
import time
from dataclasses import dataclass, field

import flask
from werkzeug.wrappers import Response

from console.client import Api, ConsoleError

COOKIE = "meterseg_console"
SESSION_TTL_S = 12 * 3600.0
OPEN_PREFIXES = ("/login", "/_dash-component-suites/", "/assets/", "/_favicon.ico")


@dataclass
class Sessions:
    """session id → (token, expiry); in memory, so a console restart logs everyone out."""

    ttl_s: float = SESSION_TTL_S
    _items: dict[str, tuple[str, float]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def open(self, token: str) -> str:
        sid = secrets.token_urlsafe(32)
        with self._lock:
            now = time.monotonic()
            self._items = {k: v for k, v in self._items.items() if v[1] > now}
            self._items[sid] = (token, now + self.ttl_s)
        return sid

    def token(self, sid: str | None) -> str | None:
        if not sid:
            return None
        with self._lock:
            item = self._items.get(sid)
        if item is None or item[1] < time.monotonic():
            return None
        return item[0]

    def close(self, sid: str | None) -> None:
        with self._lock:
            self._items.pop(sid or "", None)


LOGIN_PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>meterseg console - sign in</title>
<style>
body {{ font-family: system-ui, sans-serif; background: #f4f6f8; display: flex; justify-content: center; padding-top: 12vh; }}
form {{ background: white; padding: 2em 2.5em; border-radius: 8px; box-shadow: 0 1px 4px #0002; width: 24em; }}
h1 {{ font-size: 1.3em; margin-top: 0; }} label {{ display: block; margin: 1em 0 .3em; }}
input[type=password] {{ width: 100%; padding: .5em; box-sizing: border-box; }}
button {{ margin-top: 1.2em; padding: .5em 1.4em; background: #1f5f99; color: white; border: 0; border-radius: 4px; }}
.error {{ color: #b00020; }} .hint {{ color: #555; font-size: .9em; }}
</style></head>
<body><form method="post" action="/login" id="login-form">
<h1>meterseg console</h1>
<p class="hint">Sign in with the engine API's bearer token (<code>METERSEG_API_TOKEN</code>).</p>
{error}
<label for="token">API token</label>
<input type="password" id="token" name="token" autocomplete="current-password" autofocus required>
<button type="submit" id="login-submit">Sign in</button>
</form></body></html>"""


def install(server: flask.Flask, sessions: Sessions, api_url: str) -> None:
    """Add the login and logout routes and the session check to the console's Flask server."""

    @server.route("/login", methods=["GET", "POST"])
    def login() -> Response:
        error = ""
        if flask.request.method == "POST":
            token = flask.request.form.get("token", "")
            try:
                Api(api_url, token).get("/segments", family="rule")
            except ConsoleError as exc:
                error = "wrong token" if exc.status == 401 else str(exc)
            else:
                resp = flask.redirect("/", code=303)
                resp.set_cookie(COOKIE, sessions.open(token), httponly=True, samesite="Strict",
                                secure=flask.request.is_secure, max_age=int(sessions.ttl_s))  # fmt: skip
                return resp
        body = LOGIN_PAGE.format(error=f'<p class="error" id="login-error">{html.escape(error)}</p>' if error else "")
        return flask.Response(body, status=401 if error else 200, mimetype="text/html")

    @server.route("/logout")
    def logout() -> Response:
        sessions.close(flask.request.cookies.get(COOKIE))
        resp = flask.redirect("/login", code=303)
        resp.delete_cookie(COOKIE)
        return resp

    @server.before_request
    def require_session() -> Response | None:
        path = flask.request.path
        if path.startswith(OPEN_PREFIXES) or path == "/logout":
            return None
        if sessions.token(flask.request.cookies.get(COOKIE)) is not None:
            return None
        if flask.request.method == "GET" and not path.startswith("/_dash"):
            return flask.redirect("/login", code=303)
        return flask.Response('{"error": "unauthorized", "detail": "sign in again"}', status=401,
                              mimetype="application/json")  # fmt: skip
