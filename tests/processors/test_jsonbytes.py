"""processors.jsonbytes.dumps: the same JSON as orjson, in bytes that hold only their length."""

from __future__ import annotations

import tracemalloc

import numpy as np
import orjson
import pytest

from processors.jsonbytes import dumps

DOCS = [{"meter_id": "M1", "kwh": 1.5}, list(range(300)), {"x": "é" * 5000}, [], "s", 1.25, None]


@pytest.mark.parametrize("doc", DOCS)
def test_same_json_as_orjson(doc: object) -> None:
    assert dumps(doc) == orjson.dumps(doc)
    assert type(dumps(doc)) is bytes


def test_options_and_default_pass_through() -> None:
    doc = {2: np.arange(3, dtype=np.int32), "b": {1, 2}}
    option = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS
    assert dumps(doc, option=option, default=sorted) == b'{"2":[0,1,2],"b":[1,2]}'
    with pytest.raises(TypeError):
        dumps({"b": {1, 2}})


@pytest.mark.parametrize("size", [5, 300, 3000])
def test_results_hold_their_length_only(size: int) -> None:
    """What a held result costs, as the allocator sees it: its length and a bytes header, not a working buffer."""
    doc = list(range(size))
    tracemalloc.start()
    try:
        held = [dumps(doc) for _ in range(2_000)]
        traced, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    per_result = traced / len(held)
    assert per_result < len(held[0]) + 128, (per_result, len(held[0]))


def test_checkpoint_chunks_kept_hold_their_length_only() -> None:
    """A snapshot's new chunks wait for Redis exact-size; those already stored are not kept at all."""
    from stream.state.chunking import split_snapshot

    state = {"customers": {f"C{i:05d}": {"r": i, "f": [i % 7, i % 11], "m": i * 1.5} for i in range(4_000)}}
    tracemalloc.start()
    try:
        split = split_snapshot(state)
        traced, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    kept = sum(map(len, split.chunks.values()))
    # bytes headers, ids and the dict of chunks: well under 200 B a chunk; orjson's buffers would add >= 4 KiB each
    assert traced < kept + 200 * len(split.chunks), (traced, kept, len(split.chunks))
    again = split_snapshot(state, stored=set(split.chunks))
    assert again.ids == split.ids and not again.chunks
