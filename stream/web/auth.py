"""Bearer-token authentication of the HTTP API.

The token comes from ``Settings.api_token`` (``METERSEG_API_TOKEN``). The
comparison is constant-time (``hmac.compare_digest`` on bytes) so response
timing does not reveal how much of a guess was right; the presented token is
never logged or echoed.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping

from meterseg.settings import DEFAULT_API_TOKEN, Settings
from stream.web.errors import ApiError

SCHEME = "Bearer"


class InsecureApiToken(ValueError):
    """The worker would serve customer data behind a token everyone knows (or none)."""


def require_secret_token(settings: Settings) -> None:
    """Refuse the published default token (or an empty one) unless development mode says otherwise.

    Why refuse rather than warn: a warning scrolls by, and the API serves every customer's data to whoever
    knows ``change-me``. Development runs (tests, ``meterseg demo`` with its own token) opt in explicitly.

    >>> require_secret_token(Settings(api_token="s3cret-enough"))
    >>> require_secret_token(Settings(api_allow_default_token=True))
    >>> require_secret_token(Settings())
    Traceback (most recent call last):
    ...
    stream.web.auth.InsecureApiToken: METERSEG_API_TOKEN is the published default 'change-me': ...
    """
    if not settings.api_token.strip():
        raise InsecureApiToken("METERSEG_API_TOKEN is empty: set a secret token (e.g. `openssl rand -hex 24`)")
    if settings.api_token == DEFAULT_API_TOKEN and not settings.api_allow_default_token:
        raise InsecureApiToken(
            f"METERSEG_API_TOKEN is the published default {DEFAULT_API_TOKEN!r}: whoever reaches the API on port "
            f"{settings.web_port} could read every customer's data. Set a secret token "
            "(e.g. `export METERSEG_API_TOKEN=$(openssl rand -hex 24)`), or, on a development machine only, "
            "METERSEG_API_ALLOW_DEFAULT_TOKEN=true"
        )


def check_token(headers: Mapping[str, str], token: str) -> None:
    """Raise a 401 :class:`ApiError` unless ``Authorization: Bearer <token>`` matches.

    >>> check_token({"Authorization": "Bearer s3cret"}, "s3cret")
    >>> check_token({}, "s3cret")
    Traceback (most recent call last):
    ...
    stream.web.errors.ApiError: 401 unauthorized: missing bearer token
    """
    header = headers.get("Authorization") or ""
    scheme, _, presented = header.partition(" ")
    if scheme.lower() != SCHEME.lower() or not presented:
        raise ApiError(401, "unauthorized", "missing bearer token")
    # surrogateescape: a header that is not UTF-8 (aiohttp keeps its bytes as surrogates) is just a wrong token
    if not token or not hmac.compare_digest(presented.strip().encode("utf-8", "surrogateescape"), token.encode()):
        raise ApiError(401, "unauthorized", "invalid bearer token")
