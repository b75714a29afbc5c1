"""A snapshot as content-addressed chunks, so that a checkpoint writes only what changed.

Why: a partition's state is written as a whole every few seconds, yet between
two checkpoints only the meters that reported and the customers that bought
changed. Splitting the snapshot into chunks named by a hash of their bytes
makes the difference between two checkpoints a set difference: the chunks of
the new snapshot not stored yet are written, the ones no longer referenced are
deleted, everything else stays where it is (the idea of content-addressed
backup stores such as restic and of rsync's block matching; the cost follows
the change, as with the changelog topics of Kafka Streams).

How the snapshot (JSON-like: dicts, lists, strings, numbers; numpy arrays
allowed) is split, without knowing the processors that made it:

* a **string** longer than ``2 × STRING_CHUNK`` (the base64 of a packed numpy
  column, :func:`processors.columns.pack_array`) is cut at fixed offsets. A
  column's rows sit at fixed offsets, so a meter's change touches the chunk of
  its row; rows added at the end touch the last chunks only.
* a **dict** with more than ``KEYED_MIN`` entries (customers by id) is cut
  after every key whose CRC-32 is ``0 mod k`` (content-defined boundaries): a
  customer added or changed touches its own chunk, wherever it sits in the
  order, and the order of the keys is kept. ``k`` (1, 4, 16 or 64 entries per
  chunk on average) is chosen from the size of its first entries, for chunks
  of about ``CHUNK_TARGET`` bytes: a changed customer rewrites a few
  neighbours, not a few dozen.
* a **list** longer than ``KEYED_MIN`` is cut the same way, after every item
  whose first element (a meter id in ``[meter, day, sums]`` rows) or, for a
  scalar item, itself hashes to ``0 mod k``.
* everything else stays in the **skeleton**: the snapshot with each cut value
  replaced by a marker ``{MARKER: kind, "ids": [chunk ids]}``; when that list is
  longer than ``IDS_MAX``, the marker is ``{MARKER: kind, "manifest": [ids]}``
  and the ids are themselves in chunks (cut after ids that are ``0 mod
  IDS_PER_MANIFEST``), so the skeleton stays small at any state size.

:func:`join` puts the pieces back exactly: the same keys in the same order, the
same values (numpy arrays come back as the lists JSON makes of them, as from any
checkpoint).

Examples:
    >>> state = {"meters": {f"M{i}": [i, i * 2] for i in range(300)}, "clock": 7, "col": "AAAA" * 5000}
    >>> split = split_snapshot(state)
    >>> len(split.chunks) > 3, split.skeleton["clock"]
    (True, 7)
    >>> join(split.skeleton, split.chunks) == state
    True
    >>> state["meters"]["M7"] = [7, 0]  # one customer changed: one new chunk
    >>> len(set(split_snapshot(state).chunks) - set(split.chunks))
    1
"""

from __future__ import annotations

import hashlib
import math
import zlib
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

import numpy as np
import orjson

from processors.jsonbytes import dumps_transient, right_size

#: characters per chunk of a long string (a multiple of 4: base64 quads stay whole); 6 KiB of a packed column
STRING_CHUNK = 8 * 1024
#: dicts and lists longer than this are cut into chunks; shorter ones stay in the skeleton
KEYED_MIN = 256
#: the bytes a chunk of a dict or list aims at: its keys (items) per chunk are the power of 4 (1 to 64) nearest
#: to this over the size of an entry; smaller chunks rewrite fewer unchanged neighbours, each costs an id and a
#: Redis hash field (~70 B)
CHUNK_TARGET = 1024
#: the mean number of ids per manifest chunk
IDS_PER_MANIFEST = 64
#: a cut value naming more chunks than this keeps their ids in chunks of their own (a manifest), cut by content
#: too: the skeleton stays small however large the state, and one changed chunk changes one manifest chunk
IDS_MAX = 256
#: the key of the marker that stands for a cut value in the skeleton (no snapshot uses a NUL in its keys)
MARKER = "\x00chunks"

_NUMPY = orjson.OPT_SERIALIZE_NUMPY


def chunk_id(data: bytes) -> str:
    """The name of a chunk: 16 hex digits of its BLAKE2b digest (64 bits: no collision in any one partition).

    >>> chunk_id(b"abc")
    'd8bb14d833d59559'
    """
    return hashlib.blake2b(data, digest_size=8).hexdigest()


@dataclass
class Split:
    """A snapshot cut up: the skeleton, the ids of every chunk it names, and the bytes of those not stored yet."""

    skeleton: Any
    ids: set[str] = field(default_factory=set)
    """Every chunk the skeleton names, directly or through its manifests."""
    chunks: dict[str, bytes] = field(default_factory=dict)
    """Id → bytes of the chunks not in ``stored`` (all of them when nothing is stored)."""
    chunk_bytes: int = 0
    """The bytes of every chunk in ``ids``, stored or not."""
    stored: Collection[str] = ()

    def add(self, data: bytes, *, sized: bool = False) -> str:
        """Name ``data`` and keep it if it is not stored yet; ``sized``: it is exact-size already (not orjson's)."""
        cid = chunk_id(data)
        if cid not in self.ids:
            self.ids.add(cid)
            self.chunk_bytes += len(data)
            if cid not in self.stored:  # a chunk already stored is not kept: memory follows the change too
                # only what is kept is copied out of orjson's buffer (processors.jsonbytes)
                self.chunks[cid] = data if sized else right_size(data)
        return cid


def split_snapshot(state: Any, stored: Collection[str] = ()) -> Split:
    """Cut ``state`` into a skeleton and content-addressed chunks (see the module docstring).

    ``stored``: ids of chunks already stored, whose bytes are not kept in :attr:`Split.chunks`.
    """
    out = Split(None, stored=stored)
    out.skeleton = _split(state, out)
    return out


def _keys_per_chunk(sample: bytes, entries: int) -> int:
    """Entries per chunk (1, 4, 16 or 64) for chunks of about CHUNK_TARGET bytes, from a sample's encoding.

    >>> _keys_per_chunk(b"x" * 32_000, 32), _keys_per_chunk(b"x" * 3_000, 32), _keys_per_chunk(b"x" * 320, 32)
    (1, 16, 64)
    """
    per_entry = max(1.0, len(sample) / max(1, entries))
    exponent = round(math.log(max(1.0, CHUNK_TARGET / per_entry), 4))
    return int(4 ** min(3, max(0, exponent)))


def _boundary(key: Any, mask: int) -> bool:
    if isinstance(key, str):
        data = key.encode()
    elif isinstance(key, (list, tuple)) and key and isinstance(key[0], (str, int)):
        data = str(key[0]).encode()
    elif isinstance(key, (str, int, float, bool)) or key is None:
        data = repr(key).encode()
    else:
        data = dumps_transient(key, option=_NUMPY)
    return zlib.crc32(data) & mask == 0


def _split(value: Any, out: Split) -> Any:
    if isinstance(value, np.ndarray):  # as JSON has it: a (nested) list
        value = value.tolist()
    if isinstance(value, str):
        if len(value) <= 2 * STRING_CHUNK:
            return value
        ids = [out.add(value[i : i + STRING_CHUNK].encode(), sized=True) for i in range(0, len(value), STRING_CHUNK)]
        return _marker("s", ids, out)
    if isinstance(value, Mapping):
        if len(value) <= KEYED_MIN:
            return {k: _split(v, out) for k, v in value.items()}
        mask = _keys_per_chunk(dumps_transient(dict(islice(value.items(), 32)), option=_NUMPY), 32) - 1
        try:  # JSON object keys are strings: the common case, hashed in one comprehension
            cuts = [i + 1 for i, k in enumerate(value) if not zlib.crc32(k.encode()) & mask]
        except AttributeError:
            cuts = [i + 1 for i, k in enumerate(value) if _boundary(k, mask)]
        if not cuts or cuts[-1] != len(value):
            cuts.append(len(value))
        items, at, ids = iter(value.items()), 0, []
        for cut in cuts:
            ids.append(out.add(dumps_transient(dict(islice(items, cut - at)), option=_NUMPY)))
            at = cut
        return _marker("d", ids, out)
    if isinstance(value, (list, tuple)):
        if len(value) <= KEYED_MIN:
            return [_split(v, out) for v in value]
        mask = _keys_per_chunk(dumps_transient(value[:32], option=_NUMPY), 32) - 1
        ids, start = [], 0
        for i, item in enumerate(value):
            if _boundary(item, mask):
                ids.append(out.add(dumps_transient(value[start : i + 1], option=_NUMPY)))
                start = i + 1
        if start < len(value):
            ids.append(out.add(dumps_transient(value[start:], option=_NUMPY)))
        return _marker("l", ids, out)
    return value


def _marker(kind: str, ids: list[str], out: Split) -> dict[str, Any]:
    if len(ids) <= IDS_MAX:
        return {MARKER: kind, "ids": ids}
    manifest, start = [], 0
    for i, cid in enumerate(ids):
        if int(cid, 16) % IDS_PER_MANIFEST == 0:
            manifest.append(out.add(dumps_transient(ids[start : i + 1])))
            start = i + 1
    if start < len(ids):
        manifest.append(out.add(dumps_transient(ids[start:])))
    return {MARKER: kind, "manifest": manifest}


def _ids(marker: Mapping[str, Any], chunks: Mapping[str, bytes]) -> list[str]:
    if "ids" in marker:
        return list(marker["ids"])
    ids: list[str] = []
    for m in marker["manifest"]:
        ids.extend(orjson.loads(chunks[m]))
    return ids


def referenced(skeleton: Any, chunks: Mapping[str, bytes] | None = None) -> set[str]:
    """The ids of every chunk a skeleton names; with ``chunks``, also those its manifests name.

    >>> sorted(referenced({"a": {MARKER: "s", "ids": ["x", "y"]}, "b": [1, {MARKER: "l", "ids": ["y"]}]}))
    ['x', 'y']
    """
    found: set[str] = set()
    stack = [skeleton]
    while stack:
        v = stack.pop()
        if isinstance(v, dict):
            if MARKER in v:
                found.update(v.get("ids", ()))
                found.update(v.get("manifest", ()))
                if chunks is not None and "manifest" in v:
                    found.update(_ids(v, chunks))
            else:
                stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
    return found


def join(skeleton: Any, chunks: Mapping[str, bytes]) -> Any:
    """The snapshot a skeleton and its chunks stand for (KeyError: a chunk it names is missing)."""
    if isinstance(skeleton, dict):
        kind = skeleton.get(MARKER)
        if kind is None:
            return {k: join(v, chunks) for k, v in skeleton.items()}
        ids = _ids(skeleton, chunks)
        if kind == "s":
            return b"".join(chunks[i] for i in ids).decode()
        if kind == "d":
            merged: dict[str, Any] = {}
            for i in ids:
                merged.update(orjson.loads(chunks[i]))
            return merged
        items: list[Any] = []
        for i in ids:
            items.extend(orjson.loads(chunks[i]))
        return items
    if isinstance(skeleton, list):
        return [join(v, chunks) for v in skeleton]
    return skeleton
