"""The worker's heap trim gives fragmented free memory back to the system (``stream.memory``)."""

from __future__ import annotations

import gc
import platform

import pytest

from stream.memory import HeapTrimmer, rss_bytes

MB = 1 << 20


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_freed_objects_pages_are_given_back() -> None:
    # ~200 MB in 1 KiB objects (glibc's heap, not pymalloc's arenas), one kept in every 64: each kept object
    # pins its page, so the freed ones cannot go back by shrinking the heap's top, only through malloc_trim
    gc.collect()
    trimmer = HeapTrimmer(interval_s=30.0)
    trimmer.trim()
    base = rss_bytes()
    blocks = [bytes(1024) for _ in range(200_000)]
    kept = blocks[::64]
    del blocks
    gc.collect()
    held = rss_bytes()
    assert held - base > 100 * MB, "the freed objects' pages should still be resident before the trim"
    released, took = trimmer.trim()
    assert released > 100 * MB, f"gave back {released / MB:.0f} MB of {(held - base) / MB:.0f} MB held"
    assert rss_bytes() - base < 50 * MB
    assert took < 5.0
    assert len(kept) == 3125


def test_a_trim_waits_for_its_interval_and_zero_turns_it_off() -> None:
    trimmer = HeapTrimmer(interval_s=30.0)
    assert [trimmer.due(t) for t in (0.0, 29.9, 30.0, 45.0, 61.0)] == [True, False, True, False, True]
    assert not HeapTrimmer(interval_s=0.0).due(0.0)
