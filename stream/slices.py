"""Work in slices: what a day close produces for every meter of a partition, a few thousand at a time.

Why: when the first readings of a new event day arrive, every meter of a partition closes its day
in the same batch, and so does every customer in the segmentation. Built whole before the first
is sent, the messages, records and Redis commands of 12 500 meters held tens of MB at once
(docs/scaling.md, "A day close is written in slices"); built and sent a slice at a time, one slice.

Examples:
    >>> list(slices(iter(range(5)), 2))
    [[0, 1], [2, 3], [4]]
    >>> list(slices([], 3))
    []
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import islice
from typing import TypeVar

T = TypeVar("T")

#: messages, records or customers per slice: small enough to hold, large enough that a round trip per
#: slice costs little (a day close of 12 500 meters is 7 slices)
SLICE = 2_000


def slices(items: Iterable[T], size: int = SLICE) -> Iterator[list[T]]:
    """``items`` in lists of ``size`` (the last one shorter), each taken from ``items`` only when asked for."""
    it = iter(items)
    while block := list(islice(it, size)):
        yield block
