"""Per-region hourly totals: kWh imported, exported, and revenue.

Rows are region names. Revenue has two sources, chosen by configuration:
a tariff price (``WindowConfig.price_per_kwh``: kWh imported × the price of
the meter's tariff), or purchases/payments fed through :meth:`add_revenue`.
Each partition emits *partial* totals for the readings it owns; consumers sum
them (Prometheus counters and the dashboards do so naturally).

Examples:
    >>> from stream.schemas import MeterInfo
    >>> from processors.columns import EPOCH, MeterRegistry, ReadingColumns
    >>> reg = MeterRegistry([MeterInfo(meter_id=m, customer_id="C", region=r, tariff="prepaid",
    ...                                installed_on=EPOCH) for m, r in (("A", "N"), ("B", "S"), ("C", "N"))])
    >>> rows = [{"meter_id": m, "customer_id": "C", "interval_start": 0, "kwh_import": 1.5,
    ...          "register_kwh": 1.0, "voltage": 230.0, "seq": 0} for m in "ABC"]
    >>> w = RegionalTotals(WindowConfig(meter_sizes_s=(), price_per_kwh={"prepaid": 0.2, "postpaid": 0.1}))
    >>> _ = w.process(ReadingColumns.from_rows(reg, rows))
    >>> [(r["key"], r["kwh_in"], round(r["revenue"], 6)) for c in w.flush() for r in c.to_records()]
    [('N', 3.0, 0.6), ('S', 1.5, 0.3)]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Self

import numpy as np

from processors.columns import F64, I64, TARIFFS, MeterRegistry, ReadingColumns
from processors.windows.core import NONE, EventTimeWindows, WindowConfig, WindowRing, demand_kw

__all__ = ["RegionRows", "RegionalTotals", "add_region_chunk"]


class RegionRows:
    """Local rows for region names, mapped from the registry's region codes per batch."""

    def __init__(self, names: Sequence[str] = ()) -> None:
        self.names: list[str] = list(names)
        self._of: dict[str, int] = {n: i for i, n in enumerate(self.names)}
        self._registry: MeterRegistry | None = None
        self._row_of_code = np.zeros(0, np.int64)

    def __len__(self) -> int:
        return len(self.names)

    def row(self, name: str) -> int:
        r = self._of.get(name)
        if r is None:
            r = len(self.names)
            self._of[name] = r
            self.names.append(name)
        return r

    def rows_of(self, registry: MeterRegistry, slots: I64) -> I64:
        if registry is not self._registry or len(self._row_of_code) < len(registry.region_names):
            self._registry = registry
            self._row_of_code = np.array([self.row(n) for n in registry.region_names], np.int64)
        out: I64 = self._row_of_code[registry.region_code[slots]]
        return out


def _prices(config: WindowConfig) -> F64 | None:
    if config.price_per_kwh is None:
        return None
    return np.array([config.price_per_kwh.get(t, 0.0) for t in TARIFFS], np.float64)


def add_region_chunk(
    ring: WindowRing, regions: RegionRows, prices: F64 | None, batch: ReadingColumns, index: I64
) -> None:
    """Add the readings ``index`` of ``batch`` into the regional ring."""
    slots = batch.meter[index]
    rows = regions.rows_of(batch.registry, slots)
    ring.ensure_rows(len(regions))
    kwh_in = batch.kwh_import[index]
    revenue = None if prices is None else kwh_in * prices[batch.registry.tariff_code[slots]]
    interval_s = batch.interval_minutes[index] * 60
    t = batch.interval_start[index]
    ring.add(rows, t, interval_s, kwh_in, batch.kwh_export[index], demand_kw(batch, index), revenue)


class RegionalTotals(EventTimeWindows):
    """Per-region totals of ``config.region_size_s`` (default hourly); meter sizes ignored.

    ``process(ReadingColumns) -> WindowOutput``; :meth:`add_revenue` for
    purchase-fed revenue; ``close_until``/``on_timer``/``flush`` as for meters.
    """

    def __init__(self, config: WindowConfig | None = None) -> None:
        super().__init__(config)
        size = self.config.region_size_s or 3600
        self.regions = RegionRows()
        self._prices = _prices(self.config)
        self.rings = [WindowRing(size, self.ring_length(size, self.config.close_after_s), "region")]

    def _add(self, batch: ReadingColumns, index: I64) -> None:
        add_region_chunk(self.rings[0], self.regions, self._prices, batch, index)

    def _keys(self, ring: WindowRing) -> Sequence[str]:
        return self.regions.names

    def add_revenue(self, regions: Sequence[str], ts: I64, amounts: F64) -> int:
        """Add purchase revenue to the open windows; returns how many amounts were too late (dropped)."""
        return add_revenue(self, self.rings[-1], self.regions, regions, ts, amounts)

    def snapshot(self) -> dict[str, Any]:
        return {"regions": self.regions.names, **self._base_snapshot({"region": len(self.regions)})}

    @classmethod
    def restore(cls, state: dict[str, Any]) -> Self:
        w = cls(WindowConfig.model_validate(state["config"]))
        w.regions = RegionRows(state["regions"])
        w._base_restore(state, {"region": len(w.regions)})
        return w


def add_revenue(
    owner: EventTimeWindows, ring: WindowRing, rows_map: RegionRows, regions: Sequence[str], ts: I64, amounts: F64
) -> int:
    """Purchase revenue into a regional ring, honouring the owner's frontier.

    Amounts whose window already closed, or lies beyond the open windows (the
    readings' watermark has not reached it yet), are dropped and counted in
    the return value, so the caller can dead-letter or re-queue them.
    """
    ts = np.asarray(ts, np.int64)
    amounts = np.asarray(amounts, np.float64)
    if not len(ts):
        return 0
    rows = np.array([rows_map.row(r) for r in regions], np.int64)
    ring.ensure_rows(len(rows_map))
    if owner.frontier == NONE:
        owner.frontier = int(ts.min()) - owner.config.close_after_s
    size = ring.size_s
    w = ts // size
    ok = ((w + 1) * size > owner.frontier) & (w < owner.frontier // size + ring.ring)
    ring.add_revenue(rows[ok], ts[ok], amounts[ok])
    return int((~ok).sum())
