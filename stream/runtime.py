"""Process-level tuning of a worker: the garbage collector.

Why: decoding an envelope makes a dict per reading; with CPython's default
thresholds (a young-generation pass every 700 allocations) and every
long-lived object of the worker (Faust, aiokafka, pydantic models, the meter
registry) scanned again by each full pass, collection cost more than a
quarter of the ingest CPU in ``bench/pipeline.py`` measurements (in-process
replay of a 6 000-meter day: about 237 k readings/s with the defaults, 311 k
with the settings below). The parsed readings die young and hold no cycles,
so collecting rarely loses nothing; :func:`tune_gc` moves everything alive
after start-up into the permanent generation (``gc.freeze``), so full
passes no longer walk it, and makes young passes rarer.
"""

from __future__ import annotations

import gc
import logging

log = logging.getLogger(__name__)

#: young-generation threshold (CPython's default is 700) and the two older ones
GC_THRESHOLDS = (50_000, 20, 100)


def tune_gc(thresholds: tuple[int, int, int] = GC_THRESHOLDS) -> None:
    """Freeze what start-up allocated and collect less often (call once the worker has started).

    Examples:
        >>> import gc
        >>> before = gc.get_threshold()
        >>> tune_gc((10_000, 10, 10))
        >>> gc.get_threshold()
        (10000, 10, 10)
        >>> gc.set_threshold(*before); gc.unfreeze()
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*thresholds)
    log.debug("gc: %d objects frozen, thresholds %s", gc.get_freeze_count(), thresholds)
