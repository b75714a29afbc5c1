"""Paging of long lists: Redis-cursor pages for segment members, offset+limit for search results.

Segment member sets can hold millions of ids, so ``/segments/{id}/members``
pages with ``SSCAN``: the opaque ``cursor`` is Redis' own, each page costs
O(page) and every member present for the whole iteration is returned at
least once (Redis' SCAN guarantee; a page may hold a few more than
``limit``). ``offset`` + ``limit`` is offered where a stable order matters
more than cost (search results, sorted in memory).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from stream.web.errors import bad_request

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


@dataclass(frozen=True)
class Page:
    """Requested page: ``cursor`` (SSCAN) or ``offset``, and ``limit`` (1..MAX_LIMIT)."""

    limit: int
    cursor: int | None = None
    offset: int | None = None


def int_param(query: Mapping[str, str], name: str, lo: int, hi: int | None = None) -> int | None:
    """An integer query parameter in ``[lo, hi]`` (None when absent or empty); 400 otherwise.

    >>> int_param({"top": "7"}, "top", 1, 100), int_param({}, "top", 1, 100)
    (7, None)
    >>> int_param({"top": "²"}, "top", 1, 100)  # str.isdigit() says yes, int() says no
    Traceback (most recent call last):
    ...
    stream.web.errors.ApiError: 400 invalid_parameter: top must be an integer, got '²'
    """
    raw = query.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        raise bad_request(f"{name} must be an integer, got {raw!r}", error="invalid_parameter") from None
    if value < lo or (hi is not None and value > hi):
        bounds = f"between {lo} and {hi}" if hi is not None else f">= {lo}"
        raise bad_request(f"{name} must be {bounds}, got {value}", error="invalid_parameter")
    return value


def parse_page(query: Mapping[str, str], default_limit: int = DEFAULT_LIMIT) -> Page:
    """``limit`` (default 100, max 1000) with either ``cursor`` or ``offset``.

    >>> parse_page({"limit": "10", "cursor": "42"})
    Page(limit=10, cursor=42, offset=None)
    >>> parse_page({"limit": "5000"})
    Traceback (most recent call last):
    ...
    stream.web.errors.ApiError: 400 invalid_parameter: limit must be between 1 and 1000, got 5000
    """
    limit = int_param(query, "limit", 1, MAX_LIMIT) or default_limit
    cursor = int_param(query, "cursor", 0, 2**64 - 1)
    offset = int_param(query, "offset", 0)
    if cursor is not None and offset is not None:
        raise bad_request("give either cursor or offset, not both", error="invalid_parameter")
    return Page(limit, cursor, offset)


def window(items: list[str], page: Page) -> tuple[list[str], int | None]:
    """Slice of a sorted list for an offset page; the next offset or None at the end."""
    start = page.offset or 0
    chunk = items[start : start + page.limit]
    nxt = start + len(chunk)
    return chunk, (nxt if nxt < len(items) else None)
