"""Per-meter tumbling consumption windows (15 min, 1 h, 1 day by default).

One :class:`~processors.windows.core.WindowRing` per size, rows = meters of
this partition (:class:`~processors.columns.MeterRows`). The expected reading
count of a window is its size over the meter's interval length, so the
completeness ratio shows gaps without a per-meter timer.

Windows with no reading at all are not emitted (a silent meter is reported by
the health rules' silence check instead), which keeps the output proportional
to the input.

Examples:
    >>> from stream.schemas import MeterInfo
    >>> from processors.columns import EPOCH, MeterRegistry, ReadingColumns
    >>> reg = MeterRegistry([MeterInfo(meter_id="M1", customer_id="C1", region="N",
    ...                                tariff="prepaid", installed_on=EPOCH)])
    >>> rows = [{"meter_id": "M1", "customer_id": "C1", "interval_start": 900 * k, "kwh_import": 0.5,
    ...          "register_kwh": 1.0, "voltage": 230.0, "seq": k} for k in range(4)]
    >>> w = MeterWindows(WindowConfig(meter_sizes_s=(900, 3600), region_size_s=None, allowed_lateness_s=0))
    >>> out = w.process(ReadingColumns.from_rows(reg, rows))
    >>> [(c.size_s, c.start.tolist()) for c in out.closed]   # the last 15 min window is still open
    [(900, [0, 900, 1800])]
    >>> hour = [c for c in w.close_until(3600) if c.size_s == 3600][0].to_records()[0]
    >>> hour["kwh_in"], hour["readings"], hour["expected"], hour["completeness"], hour["max_kw"]
    (2.0, 4, 4, 1.0, 2.0)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Self

from processors.columns import I64, MeterRows, ReadingColumns
from processors.windows.core import (
    ClosedWindows,
    EventTimeWindows,
    WindowConfig,
    WindowOutput,
    WindowRing,
    demand_kw,
)

__all__ = ["ClosedWindows", "MeterWindows", "WindowConfig", "WindowOutput", "add_meter_chunk"]


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


class MeterWindows(EventTimeWindows):
    """Per-meter tumbling windows of ``config.meter_sizes_s`` (regional settings ignored).

    Args:
        config: sizes, allowed lateness, timer delay; see :class:`WindowConfig`.

    ``process(ReadingColumns) -> WindowOutput``; ``close_until(epoch_s)`` /
    ``on_timer(now)`` / ``flush()`` ``-> list[ClosedWindows]``.
    """

    def __init__(self, config: WindowConfig | None = None) -> None:
        super().__init__(config)
        cfg = self.config
        self.meters = MeterRows()
        self.rings = [WindowRing(s, self.ring_length(s, cfg.allowed_lateness_s), "meter") for s in cfg.meter_sizes_s]

    def _add(self, batch: ReadingColumns, index: I64) -> None:
        add_meter_chunk(self.rings, self.meters, batch, index)

    def _keys(self, ring: WindowRing) -> Sequence[str]:
        return self.meters.ids

    def snapshot(self) -> dict[str, Any]:
        """Open windows (sparse, keyed by meter id via the row list), frontier and watermark."""
        return {"meters": self.meters.ids, **self._base_snapshot({"meter": len(self.meters)})}

    @classmethod
    def restore(cls, state: dict[str, Any]) -> Self:
        """Rebuild from :meth:`snapshot` output; exact (floats round-trip through JSON)."""
        w = cls(WindowConfig.model_validate(state["config"]))
        w.meters = MeterRows(state["meters"])
        w._base_restore(state, {"meter": len(w.meters)})
        return w
