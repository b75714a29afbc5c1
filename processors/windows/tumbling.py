"""Per-meter tumbling consumption windows (15 min, 1 h, 1 day by default): how readings enter them.

One :class:`~processors.windows.core.WindowRing` per size, rows = meters of
this partition (:class:`~processors.columns.MeterRows`). The expected reading
count of a window is its size over the meter's interval length, so the
completeness ratio shows gaps. Windows with no reading at all are emitted too
(gap windows, :mod:`processors.windows.revisions`), from the meter's first
reading on; :class:`~processors.windows.MeterWindows` is the processor.
"""

from __future__ import annotations

from collections.abc import Sequence

from processors.columns import I64, MeterRows, ReadingColumns
from processors.windows.core import WindowRing, demand_kw

__all__ = ["add_meter_chunk"]


def add_meter_chunk(rings: Sequence[WindowRing], meters: MeterRows, batch: ReadingColumns, index: I64) -> None:
    """Add the readings ``index`` of ``batch`` into per-meter rings."""
    rows = meters.rows_of(batch.registry, batch.meter[index])
    t = batch.interval_start[index]
    interval_s = batch.interval_minutes[index] * 60
    kwh_in = batch.kwh_import[index]
    kwh_out = batch.kwh_export[index]
    kw = demand_kw(batch, index)
    for ring in rings:
        ring.ensure_rows(len(meters))
        ring.add(rows, t, interval_s, kwh_in, kwh_out, kw, None)
