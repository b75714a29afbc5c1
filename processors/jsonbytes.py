"""JSON bytes that hold only what they say: orjson's output copied into an exact-size ``bytes``.

Why: orjson (3.12 and later) hands back the buffer it wrote into, at its full
capacity: every result keeps at least 4 KiB, and a larger one up to the next
power of two, whatever its length. Measured on this machine with orjson 3.13.0:
10 000 results of 1 091 bytes held 7.7 KB of RSS each (results of 11 bytes:
4.1 KB each), against 1.1 KB once copied; orjson 3.11 kept about 1 KB extra per
result. A result dropped at once costs nothing, but the engine holds many at a
time: the new chunks of a checkpoint until they are written (the whole state
at a partition's first save), the day's closed windows and profiles of every
meter of a partition before they are sent, the commands of a Redis pipeline
before it runs. Held by the ten thousand, 4–16 KiB each is hundreds of MB, so
everything the engine encodes goes through :func:`dumps` (ruff bans
``orjson.dumps`` elsewhere in ``processors`` and ``stream``), or through
:func:`dumps_transient` where the result is dropped at once or kept only
sometimes: the checkpoint splitter hashes every chunk and right-sizes
(:func:`right_size`) only those it keeps, the ones not stored yet. The same
problem is described in the Home Assistant pull requests that trim cached
orjson fragments; the simulator's messages go through it too
(``simulators.encode.dumps``).

The copy costs a call and a ``memcpy`` of the output: measured +90–140 ns on a 235-byte window
record that orjson encodes in 340–400 ns; a reading costs a worker about 37 µs of CPU (27 000
readings per CPU-second, docs/scaling.md), so well under 1 %.

Examples:
    >>> dumps({"meter_id": "M1", "kwh": 1.5})
    b'{"meter_id":"M1","kwh":1.5}'
    >>> import numpy as np, orjson
    >>> dumps({"a": np.arange(3)}, option=orjson.OPT_SERIALIZE_NUMPY)
    b'{"a":[0,1,2]}'
    >>> dumps(object())
    Traceback (most recent call last):
    ...
    TypeError: Type is not JSON serializable: object
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson


def dumps(obj: Any, *, default: Callable[[Any], Any] | None = None, option: int | None = None) -> bytes:
    """``orjson.dumps(obj, default, option)`` in a ``bytes`` of exactly its length (see the module docstring)."""
    return right_size(orjson.dumps(obj, default, option))  # noqa: TID251 (one of the two places)


def dumps_transient(obj: Any, *, default: Callable[[Any], Any] | None = None, option: int | None = None) -> bytes:
    """``orjson.dumps`` as it is, for a result dropped at once (hashed, measured) or kept only sometimes.

    It saves the copy of :func:`dumps`; whoever keeps the result passes it through :func:`right_size`
    first (:class:`stream.state.chunking.Split` keeps only the chunks not stored yet).
    """
    return orjson.dumps(obj, default, option)  # noqa: TID251 (one of the two places)


def right_size(data: bytes) -> bytes:
    """``data`` in a ``bytes`` of exactly its length (orjson's result keeps its whole buffer).

    >>> right_size(dumps_transient([1, 2])) == b"[1,2]"
    True
    """
    return bytes(memoryview(data))
