"""Deduplication equals a plain set-of-keys model within the horizon, across batches and restarts."""

from __future__ import annotations

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st
from test_ingest_support import T0, envelope_payloads, make_registry, make_rows, single_payloads

from processors.columns import ReadingColumns
from processors.decode import ReadingDecoder
from processors.dedupe import Deduplicator

REG = make_registry(5)


def batch_of(keys: list[tuple[int, int]]) -> ReadingColumns:
    return ReadingColumns.from_rows(
        REG,
        [
            {"meter_id": f"M{m:07d}", "customer_id": "C", "interval_start": T0 + 900 * s, "kwh_import": 0.1,
             "register_kwh": 1.0, "voltage": 230.0, "seq": s}
            for m, s in keys
        ],
    )  # fmt: skip


# Slots drift forward with jitter smaller than the 64-slot horizon, so the set model is exact.
streams = st.lists(
    st.lists(st.tuples(st.integers(0, 4), st.integers(0, 40)), min_size=0, max_size=30), min_size=1, max_size=6
)


@settings(max_examples=120, deadline=None)
@given(streams, st.integers(0, 6))
def test_matches_set_model_and_survives_restart(batches: list[list[tuple[int, int]]], cut: int) -> None:
    seen: set[tuple[int, int]] = set()
    d = Deduplicator()
    for k, keys in enumerate(batches):
        if k == cut:
            d = Deduplicator.restore(orjson.loads(orjson.dumps(d.snapshot())))
        out = d.process(batch_of(keys))
        want = []
        for key in keys:
            if key not in seen:
                seen.add(key)
                want.append(key)
        got = [
            (int(m[1:]), (t - T0) // 900)
            for m, t in zip(out.readings.meter_ids(), out.readings.interval_start.tolist(), strict=True)
        ]
        assert got == want
        assert out.duplicates == len(keys) - len(want)
        assert out.duplicate_index.tolist() == sorted(set(range(len(keys))) - set(_first_index(keys, want, seen)))


# Several words: slots drift forward over ~1000 slots, never more than 100 behind the newest (horizon 192).
drifting = st.lists(
    st.tuples(st.integers(0, 60), st.lists(st.tuples(st.integers(0, 4), st.integers(0, 100)), max_size=30)),
    min_size=1, max_size=12,
)  # fmt: skip


@settings(max_examples=120, deadline=None)
@given(drifting, st.integers(0, 12))
def test_a_48_hour_horizon_matches_the_set_model(batches: list[tuple[int, list[tuple[int, int]]]], cut: int) -> None:
    """The 48 h horizon (3 words of 64 slots) as the windows' default lateness needs: exact across word edges."""
    seen: set[tuple[int, int]] = set()
    d = Deduplicator(horizon_s=48 * 3600)
    assert d.words == 3
    base = 0
    for k, (step, offsets) in enumerate(batches):
        if k == cut:
            d = Deduplicator.restore(orjson.loads(orjson.dumps(d.snapshot())))
        base += step
        keys = [(m, base + o) for m, o in offsets]
        out = d.process(batch_of(keys))
        want = [key for key in dict.fromkeys(keys) if key not in seen]
        seen.update(want)
        got = [
            (int(m[1:]), (t - T0) // 900)
            for m, t in zip(out.readings.meter_ids(), out.readings.interval_start.tolist(), strict=True)
        ]
        assert got == want and out.beyond_horizon == 0


def test_a_wider_horizon_keeps_what_the_narrow_one_remembered() -> None:
    d = Deduplicator()
    d.process(batch_of([(0, 10), (0, 50), (1, 60)]))
    wide = Deduplicator.restore(orjson.loads(orjson.dumps(d.snapshot()))).with_horizon(48 * 3600)
    assert wide.words == 3
    assert wide.process(batch_of([(0, 10), (0, 50), (1, 60), (0, 11)])).duplicates == 3


def _first_index(keys: list[tuple[int, int]], want: list[tuple[int, int]], _seen: set[tuple[int, int]]) -> list[int]:
    idx, j = [], 0
    for i, key in enumerate(keys):
        if j < len(want) and key == want[j]:
            idx.append(i)
            j += 1
    return idx


def test_beyond_horizon_passes_and_is_counted() -> None:
    d = Deduplicator()
    d.process(batch_of([(0, 100)]))
    out = d.process(batch_of([(0, 10), (0, 10)]))
    assert len(out.readings) == 1 and out.duplicates == 1 and out.beyond_horizon == 1


def test_redelivered_envelope_and_single_messages_are_dropped() -> None:
    rows = make_rows(5, 8)
    dec = ReadingDecoder(REG)
    d = Deduplicator()
    env = envelope_payloads(rows, 10)
    assert d.process(dec.process(env).readings).duplicates == 0
    again = d.process(dec.process(env[:2]).readings)
    assert again.duplicates == 20 and len(again.readings) == 0
    singles = d.process(dec.process(single_payloads(rows[:7])).readings)
    assert singles.duplicates == 7


def test_a_checkpoint_of_the_old_mask_layout_is_converted() -> None:
    """Before the ring, bit i of the mask meant slot hw - i."""
    import numpy as np

    from processors.columns import pack_array

    d = Deduplicator()
    d.process(batch_of([(0, 1)]))
    state = orjson.loads(orjson.dumps(d.snapshot()))
    del state["words"]
    state["hw"] = pack_array(np.array([T0 // 900 + 100], np.int64))
    state["mask"] = pack_array(np.array([0b101], np.uint64))  # slots 100 and 98 seen
    old = Deduplicator.restore(state)
    assert old.process(batch_of([(0, 100), (0, 98), (0, 99)])).duplicates == 2
