"""Hand the heap's free pages back to the system between a worker's peaks.

Why: a worker's memory peaks while it checkpoints (a partition's state as Python
objects, then its chunks) and while it works through a large poll; the objects
are freed afterwards, but glibc keeps the pages they sat on. At 50 000 meters
on two workers, ``malloc_trim(0)`` gave back 265 and 178 MB of 617 and 526 MB
of RSS (docs/scaling.md, "Worker memory per meter"). The peak itself is not
lowered: a worker still needs memory for it. Between peaks the memory is
available to the other processes of the host, and RSS shows what the worker
holds rather than what it once held.

>>> trimmer = HeapTrimmer(interval_s=30.0)
>>> trimmer.due(now=100.0), trimmer.due(now=110.0), trimmer.due(now=131.0)
(True, False, True)
>>> HeapTrimmer(interval_s=0.0).due(now=100.0)  # 0 turns it off
False
>>> sorted(proc_status()), proc_status(2**22 + 7)  # this process; a pid that is gone (or never was)
(['VmHWM', 'VmRSS'], {})
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import logging
import os
import time
from dataclasses import dataclass

log = logging.getLogger(__name__)

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss_bytes() -> int:
    """Resident set size of this process (``/proc/self/statm``); 0 where there is no ``/proc``."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, IndexError, ValueError):
        return 0


def proc_status(pid: int | str = "self") -> dict[str, int]:
    """``VmRSS`` and ``VmHWM`` (the peak) of a process in kB, from ``/proc/<pid>/status``; empty once it is gone.

    The one reader of both for the worker and the benches (``ru_maxrss`` is not used: Linux carries it over
    fork and exec, so a process started from a big parent would report the parent's peak).
    """
    out: dict[str, int] = {}
    with contextlib.suppress(OSError, ValueError, IndexError), open(f"/proc/{pid}/status") as f:
        for line in f:
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                out[name] = int(value.split()[0])
    return out


@functools.cache
def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


def release_free_memory() -> bool:
    """glibc's ``malloc_trim(0)``: hand the heap's free pages back to the system; False off glibc."""
    libc = _libc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True


@dataclass
class HeapTrimmer:
    """Runs :func:`release_free_memory` at most every ``interval_s`` seconds (0: never)."""

    interval_s: float
    last: float | None = None

    def due(self, now: float | None = None) -> bool:
        """Whether a trim is due at ``now`` (monotonic seconds); if so, the next one waits ``interval_s``."""
        now = time.monotonic() if now is None else now
        if self.interval_s <= 0 or (self.last is not None and now - self.last < self.interval_s):
            return False
        self.last = now
        return True

    def trim(self) -> tuple[int, float]:
        """Trim now: bytes of RSS given back (0 if none, or off glibc) and seconds it took."""
        before, started = rss_bytes(), time.perf_counter()
        if not release_free_memory():
            return 0, 0.0
        took = time.perf_counter() - started
        released = max(0, before - rss_bytes())
        log.debug("heap trim: %.1f MB given back in %.3f s", released / 1e6, took)
        return released, took
