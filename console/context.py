"""The console's per-request context: its configuration and the API client of the signed-in session."""

from __future__ import annotations

from dataclasses import dataclass

import flask

from console import auth
from console.client import Api, ConsoleError, Prometheus


@dataclass(frozen=True)
class ConsoleConfig:
    api_url: str
    prometheus_url: str


def config() -> ConsoleConfig:
    cfg: ConsoleConfig = flask.current_app.config["METERSEG_CONSOLE"]
    return cfg


def sessions() -> auth.Sessions:
    s: auth.Sessions = flask.current_app.config["METERSEG_SESSIONS"]
    return s


def current_api() -> Api:
    """The API with the token of the session making this request."""
    token = sessions().token(flask.request.cookies.get(auth.COOKIE))
    if token is None:
        raise ConsoleError("your session has expired: sign in again", 401)
    return Api(config().api_url, token)


def current_prometheus() -> Prometheus:
    return Prometheus(config().prometheus_url)
