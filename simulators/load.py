"""Interval consumption of the whole fleet, one vectorised draw per interval.

For meter ``m`` of archetype ``a`` in interval ``i`` of a day:
``load = profile[a, weekend, i + jitter[m]] * season[a] * scale[m] * lognormal noise``;
solar prosumers subtract ``generation = daily_pv[a] * bell[i] * pv_scale[m] * cloud[m, day]``.
A reading carries the import ``max(load - generation, 0)`` and the export
``max(generation - load, 0)``, both rounded to 0.1 Wh.

The per-meter ``jitter`` (a few intervals) keeps meters of one archetype from
peaking in lock-step; the noise is sized per archetype. Values are rounded
here, once, so that registers, serialised readings and the ground truth agree
exactly.

Accidental repeats: the engine flags a *stuck* register when the same non-zero
value repeats for three intervals. With 0.1 Wh resolution a near-vacant meter
would do that by chance now and then, and the ground truth would miss it; so a
healthy meter whose value would repeat its previous two is nudged by 0.1 Wh.

Examples:
    >>> from datetime import UTC, datetime
    >>> from simulators.fleet import FleetConfig, build_fleet
    >>> f = build_fleet(FleetConfig(meters=500, seed=3))
    >>> lm = LoadModel(f, datetime(2026, 1, 5, tzinfo=UTC), 15, seed=3)
    >>> imp, exp = lm.interval(0)
    >>> imp.shape, bool((imp >= 0).all() and (exp >= 0).all())
    ((500,), True)
"""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np

from simulators.archetypes import CATALOGUE, profile_table, season_factors, solar_daily_kwh, solar_shape
from simulators.fleet import Fleet

RESOLUTION = 1e-4  # kWh


class LoadModel:
    """Draws the fleet's import/export for consecutive intervals (call with increasing index)."""

    def __init__(self, fleet: Fleet, start: datetime, interval_minutes: int, seed: int) -> None:
        self.fleet = fleet
        self.start = start
        self.interval_minutes = interval_minutes
        self.per_day = 1440 // interval_minutes
        self.table = profile_table(interval_minutes)
        self.solar = solar_shape(interval_minutes)
        self.noise = np.array([a.noise for a in CATALOGUE], dtype=np.float32)
        self.rng = np.random.default_rng(np.random.SeedSequence([seed, 2]))
        self._day = -1
        self._day_table = np.empty((len(CATALOGUE), self.per_day))
        self._pv_daily = np.zeros(len(CATALOGUE))
        self._cloud = np.ones(fleet.n_meters, dtype=np.float32)
        self._meter_arch = fleet.meter_archetype()
        n = fleet.n_meters
        self.prev1 = np.full(n, -1.0)
        self.prev2 = np.full(n, -2.0)
        self._index_base = np.arange(n, dtype=np.int64)

    def refresh_archetypes(self) -> None:
        """Call after a behaviour shift changed ``fleet.archetype``."""
        self._meter_arch = self.fleet.meter_archetype()

    def _begin_day(self, day: int) -> None:
        when = self.start + timedelta(days=day)
        doy = when.timetuple().tm_yday
        weekend = 1 if when.weekday() >= 5 else 0
        self._day_table = self.table[:, weekend, :] * season_factors(doy)[:, None]
        self._pv_daily = solar_daily_kwh(doy)
        self._cloud = self.rng.uniform(0.35, 1.0, size=self.fleet.n_meters).astype(np.float32)
        self._day = day

    def interval(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Import and export kWh of every meter for interval ``index`` since the start (float64, rounded)."""
        day, slot = divmod(index, self.per_day)
        if day != self._day:
            self._begin_day(day)
        arch = self._meter_arch
        fleet = self.fleet
        slots = (slot + fleet.jitter.astype(np.int64)) % self.per_day
        mean = self._day_table[arch, slots] * fleet.scale
        sigma = self.noise[arch]
        z = self.rng.standard_normal(fleet.n_meters, dtype=np.float32)
        load = mean * np.exp(sigma * z - 0.5 * sigma * sigma)
        pv = self._pv_daily[arch] * self.solar[slot]
        if pv.any():
            gen = pv * fleet.pv_scale * self._cloud
            net = load - gen
            imp = np.maximum(net, 0.0)
            exp = np.maximum(-net, 0.0)
        else:
            imp = load.astype(np.float64)
            exp = np.zeros(fleet.n_meters)
        imp = np.round(imp, 4)
        exp = np.round(exp, 4)
        return imp, exp

    def avoid_accidental_repeats(self, imp: np.ndarray, healthy: np.ndarray) -> None:
        """Nudge healthy meters whose value would repeat the previous two (see module doc); update history."""
        rep = (imp == self.prev1) & (self.prev1 == self.prev2) & (imp != 0.0) & healthy
        if rep.any():
            imp[rep] = np.round(imp[rep] + RESOLUTION, 4)
        self.prev2 = self.prev1
        self.prev1 = imp.copy()

    def has_export(self) -> np.ndarray:
        """Meters whose customer is (now) a solar prosumer."""
        return self.fleet.has_export()

    def meter_power_factor(self) -> np.ndarray:
        """Base power factor of every meter (its archetype's)."""
        return np.array([a.power_factor for a in CATALOGUE], dtype=np.float32)[self._meter_arch]

    def expected_daily_kwh(self, day: int) -> np.ndarray:
        """Mean daily import per meter on ``day`` (before solar), for purchase and bill amounts."""
        when = self.start + timedelta(days=day)
        doy = when.timetuple().tm_yday
        daily = np.array([a.daily_kwh for a in CATALOGUE]) * season_factors(doy)
        return daily[self._meter_arch] * self.fleet.scale
