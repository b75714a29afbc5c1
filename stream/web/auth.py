"""Bearer-token authentication of the HTTP API.

The token comes from ``Settings.api_token`` (``METERSEG_API_TOKEN``). The
comparison is constant-time (``hmac.compare_digest`` on bytes) so response
timing does not reveal how much of a guess was right; the presented token is
never logged or echoed.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping

from stream.web.errors import ApiError

SCHEME = "Bearer"


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
