"""Consumption windows: per-meter tumbling windows and per-region totals sharing one frontier.

:class:`ConsumptionWindows` is what the stream agent uses: the meter windows
and the regional totals decide lateness together, so a reading is either in
every total or in none (``too_late``), and the regional kWh equal the sum of
the meter windows' kWh exactly.

Examples:
    >>> from stream.schemas import MeterInfo
    >>> from processors.columns import EPOCH, MeterRegistry, ReadingColumns
    >>> reg = MeterRegistry([MeterInfo(meter_id="M1", customer_id="C1", region="N",
    ...                                tariff="prepaid", installed_on=EPOCH)])
    >>> row = {"meter_id": "M1", "customer_id": "C1", "kwh_import": 0.25, "register_kwh": 1.0,
    ...        "voltage": 230.0, "seq": 0}
    >>> w = ConsumptionWindows(WindowConfig(close_after_s=900, allowed_lateness_s=0))
    >>> out = w.process(ReadingColumns.from_rows(reg, [{**row, "interval_start": 7200}]))
    >>> late = w.process(ReadingColumns.from_rows(reg, [{**row, "interval_start": 5400}]))
    >>> late.too_late, late.rejects[0].reason
    (1, 'too_late')
    >>> sorted({(c.kind, c.size_s) for c in w.on_timer(7200 + 86400 + 1800)})
    [('meter', 900), ('meter', 3600), ('meter', 86400), ('region', 3600)]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Self

from processors.columns import F64, I64, MeterRows, ReadingColumns
from processors.windows.core import (
    NONE,
    ClosedWindows,
    EventTimeWindows,
    WindowConfig,
    WindowOutput,
    WindowRing,
    size_label,
)
from processors.windows.regional import RegionalTotals, RegionRows, _prices, add_region_chunk, add_revenue
from processors.windows.revisions import ClosedStore, MeterLedger, MeterRevisions
from processors.windows.tumbling import add_meter_chunk

__all__ = [
    "NONE",
    "ClosedWindows",
    "ConsumptionWindows",
    "EventTimeWindows",
    "MeterWindows",
    "RegionalTotals",
    "WindowConfig",
    "WindowOutput",
    "WindowRing",
    "size_label",
]


class ConsumptionWindows(MeterRevisions, EventTimeWindows):
    """Per-meter windows of ``meter_sizes_s`` plus regional totals of ``region_size_s`` (if set).

    ``process(ReadingColumns) -> WindowOutput``; ``close_until(epoch_s)``,
    ``on_timer(now)``, ``flush()`` ``-> list[ClosedWindows]``;
    ``add_revenue(regions, ts, amounts) -> dropped count``. Late readings,
    corrections and gap windows: :mod:`processors.windows.revisions`.
    """

    def __init__(self, config: WindowConfig | None = None) -> None:
        super().__init__(config)
        cfg = self.config
        self.meters = MeterRows()
        self.regions = RegionRows()
        self._prices = _prices(cfg)
        self.meter_rings = [WindowRing(s, self.ring_length(s, cfg.close_after_s), "meter") for s in cfg.meter_sizes_s]
        self.region_ring = (
            WindowRing(cfg.region_size_s, self.ring_length(cfg.region_size_s, cfg.close_after_s), "region")
            if cfg.region_size_s
            else None
        )
        self.rings = [*self.meter_rings, *([self.region_ring] if self.region_ring else [])]
        self.ledger = MeterLedger()
        self.store = ClosedStore()
        self._swept = NONE
        self._pending = {}

    def _add(self, batch: ReadingColumns, index: I64) -> None:
        if self.meter_rings:
            add_meter_chunk(self.meter_rings, self.meters, batch, index)
        if self.region_ring is not None:
            add_region_chunk(self.region_ring, self.regions, self._prices, batch, index)

    def _keys(self, ring: WindowRing) -> Sequence[str]:
        return self.regions.names if ring.kind == "region" else self.meters.ids

    def _region_rows(self, batch: ReadingColumns, index: I64) -> tuple[I64, F64 | None]:
        slots = batch.meter[index]
        rows = self.regions.rows_of(batch.registry, slots)
        return rows, None if self._prices is None else self._prices[batch.registry.tariff_code[slots]]

    def _region_names(self) -> Sequence[str]:
        return self.regions.names

    def add_revenue(self, regions: Sequence[str], ts: I64, amounts: F64) -> int:
        """Purchase revenue into the regional windows; returns the number dropped (late or too early)."""
        if self.region_ring is None:
            raise ValueError("regional totals are disabled (region_size_s is None)")
        return add_revenue(self, self.region_ring, self.regions, regions, ts, amounts)

    def snapshot(self) -> dict[str, Any]:
        """Open windows of every ring, frontier and watermark, keyed by meter ids and region names."""
        return {
            "meters": self.meters.ids,
            "regions": self.regions.names,
            **self._base_snapshot({"meter": len(self.meters), "region": len(self.regions)}),
            "ledger": self.ledger.snapshot(len(self.meters)),
            "store": self.store.snapshot(),
            "swept": None if self._swept == NONE else int(self._swept),
        }

    @classmethod
    def restore(cls, state: dict[str, Any]) -> Self:
        """Rebuild from :meth:`snapshot` output."""
        w = cls(WindowConfig.from_checkpoint(state["config"]))
        w.meters = MeterRows(state["meters"])
        w.regions = RegionRows(state["regions"])
        w._base_restore(state, {"meter": len(w.meters), "region": len(w.regions)})
        w.meter_rings = [r for r in w.rings if r.kind == "meter"]
        w.region_ring = next((r for r in w.rings if r.kind == "region"), None)
        w.ledger = MeterLedger.restore(state.get("ledger"), len(w.meters))  # older checkpoints: none
        w.store = ClosedStore.restore(state.get("store"))
        w._swept = NONE if state.get("swept") is None else int(state["swept"])
        return w


class MeterWindows(ConsumptionWindows):
    """Per-meter windows only (``region_size_s`` ignored): :class:`ConsumptionWindows` without regions.

    Examples:
        >>> from stream.schemas import MeterInfo
        >>> from processors.columns import EPOCH, MeterRegistry, ReadingColumns
        >>> reg = MeterRegistry([MeterInfo(meter_id="M1", customer_id="C1", region="N",
        ...                                tariff="prepaid", installed_on=EPOCH)])
        >>> rows = [{"meter_id": "M1", "customer_id": "C1", "interval_start": 900 * k, "kwh_import": 0.5,
        ...          "register_kwh": 1.0, "voltage": 230.0, "seq": k} for k in range(4)]
        >>> w = MeterWindows(WindowConfig(meter_sizes_s=(900, 3600), close_after_s=0))
        >>> out = w.process(ReadingColumns.from_rows(reg, rows))
        >>> [(c.size_s, c.start.tolist()) for c in out.closed]   # the last 15 min window is still open
        [(900, [0, 900, 1800])]
        >>> hour = [c for c in w.close_until(3600) if c.size_s == 3600][0].to_records()[0]
        >>> hour["kwh_in"], hour["readings"], hour["expected"], hour["completeness"], hour["max_kw"]
        (2.0, 4, 4, 1.0, 2.0)
    """

    def __init__(self, config: WindowConfig | None = None) -> None:
        super().__init__((config or WindowConfig()).model_copy(update={"region_size_s": None}))
