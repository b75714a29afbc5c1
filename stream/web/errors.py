"""Every failure of an API call as a JSON body ``{"error": ..., "detail": ...}`` with the right status.

Bad input must never surface as a 500: handlers raise :class:`ApiError` (or
let a pydantic ``ValidationError``, a ``RuleSyntaxError`` or a JSON decode
error escape) and :func:`error_response` maps each to a 4xx answer. What is
left (a bug, Redis down) becomes a 5xx JSON answer and is logged with its
traceback - never with the request's headers, which carry the token.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from aiohttp import web
from pydantic import ValidationError

from processors.jsonbytes import dumps
from processors.rules import RuleSyntaxError

log = logging.getLogger(__name__)

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error", "detail"],
    "properties": {
        "error": {"type": "string", "description": "machine-readable kind, e.g. not_found, invalid_rule"},
        "detail": {"description": "human-readable explanation or a list of field errors"},
    },
    "additionalProperties": True,
}


class ApiError(Exception):
    """An expected failure: the status, a machine-readable kind, a readable detail and extra fields."""

    def __init__(self, status: int, error: str, detail: Any, **extra: Any) -> None:
        super().__init__(f"{status} {error}: {detail}")
        self.status = status
        self.error = error
        self.detail = detail
        self.extra = extra


class EngineUnavailable(ApiError):
    """The worker's engine has not started yet (or is stopping)."""

    def __init__(self, detail: str = "the engine has not started yet; retry shortly") -> None:
        super().__init__(503, "unavailable", detail)


def bad_request(detail: Any, error: str = "bad_request", **extra: Any) -> ApiError:
    return ApiError(400, error, detail, **extra)


def not_found(what: str, error: str = "not_found") -> ApiError:
    return ApiError(404, error, f"{what} not found")


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """A JSON answer (orjson: numpy values serialised, NaN as null)."""
    return web.Response(
        body=dumps(body, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS),
        status=status,
        content_type="application/json",
        headers=headers,
    )


def rule_error_body(e: RuleSyntaxError) -> dict[str, Any]:
    """A rule's syntax error with its position and caret, for a 400 answer."""
    return {
        "error": "invalid_rule",
        "detail": e.detail,
        "kind": e.kind,
        "line": e.line,
        "column": e.column,
        "offset": e.offset,
        "message": str(e),
    }


def error_response(exc: BaseException) -> web.Response:
    """The JSON answer for an exception raised by a handler."""
    if isinstance(exc, ApiError):
        return json_response({"error": exc.error, "detail": exc.detail, **exc.extra}, exc.status)
    if isinstance(exc, RuleSyntaxError):
        return json_response(rule_error_body(exc), 400)
    if isinstance(exc, ValidationError):
        errors = [
            {"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]}
            for e in exc.errors(include_url=False, include_context=False, include_input=False)
        ]
        return json_response({"error": "validation_error", "detail": errors}, 422)
    if isinstance(exc, orjson.JSONDecodeError):
        return json_response({"error": "invalid_json", "detail": f"request body is not valid JSON: {exc}"}, 400)
    if isinstance(exc, ConnectionError | OSError):
        log.warning("API dependency unavailable: %s", exc)
        return json_response({"error": "unavailable", "detail": "a backing service is unavailable"}, 503)
    log.exception("API handler failed", exc_info=exc)
    return json_response({"error": "internal", "detail": "internal error; see the worker log"}, 500)
