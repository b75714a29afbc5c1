"""Meters that follow published real load profiles instead of the simulator's archetypes.

Our archetypes were written for the engine and the engine was tuned on them: a
quality figure measured on them says little about a utility's fleet. This
module draws interval consumption from two public corpora that install from
PyPI and work offline (test/bench extras, never runtime dependencies):

* the **BDEW standard load profiles** shipped in ``demandlib``
  (``bdew_data/selp_series.csv``): typical days (winter, summer, transition
  period x weekday, Saturday, Sunday) in 15-minute steps for households (H0),
  seven commercial (G0-G6) and three agricultural (L0-L2) profiles, in average
  kW per 1 000 kWh a year; H0 is "dynamised" by BDEW's fourth-order
  day-of-year polynomial;
* **individual stochastic households** from ``richardsonpy`` (an occupancy
  model driving kettles, ovens, lighting at 1-minute resolution), far spikier
  than a standard profile. A full year takes ~11 s per household, so a small
  pool of traces is generated once per machine (cached under
  ``~/.cache/meterseg/richardsonpy``) and each such meter reads its trace from
  its own week offset.

Every meter has an annual consumption (log-normal per family), a time jitter
of a few intervals (standard profiles would otherwise peak in lock-step), a
multiplicative log-normal noise per interval, and its register's resolution:
values are rounded to ``resolution_kwh`` (1 Wh by default, as real registers
report), and, unlike the archetype model, equal consecutive values are left
as they come: at 1 Wh a household's night base load repeats all the time, and
the health rules must cope with that. Meters with solar panels export around
noon (``pv_share``). Profiles are read as UTC.

Family labels (``household``, ``commercial``, ``agricultural``) and profile
names (``h0``, ``g1``, ``rp`` for richardsonpy, ...) go into the ground truth,
so segment quality can be judged against them.

Examples:
    >>> from datetime import UTC, datetime
    >>> from simulators.fleet import FleetConfig, build_fleet
    >>> f = build_fleet(FleetConfig(meters=300, seed=3))
    >>> spec = RealProfileSpec(household_stochastic_share=0.0)
    >>> lm = ProfileLoad(f, datetime(2026, 1, 5, tzinfo=UTC), 15, seed=3, spec=spec)
    >>> imp, exp = lm.interval(0)
    >>> imp.shape, bool((imp >= 0).all()), sorted(set(lm.meter_family_names()))
    ((300,), True, ['agricultural', 'commercial', 'household'])
    >>> bool(np.allclose(imp * 1000, np.round(imp * 1000)))  # whole Wh
    True
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np

from simulators.archetypes import solar_shape
from simulators.fleet import Fleet

log = logging.getLogger(__name__)

BDEW_PROFILES: tuple[str, ...] = ("h0", "g0", "g1", "g2", "g3", "g4", "g5", "g6", "l0", "l1", "l2")
STOCHASTIC = "rp"
PROFILE_NAMES: tuple[str, ...] = (*BDEW_PROFILES, STOCHASTIC)
FAMILIES: tuple[str, ...] = ("household", "commercial", "agricultural")
#: family of every profile name
FAMILY_OF: dict[str, str] = {"h0": "household", STOCHASTIC: "household",
                             **{f"g{i}": "commercial" for i in range(7)}, **{f"l{i}": "agricultural" for i in range(3)}}
#: median annual kWh and log-normal sigma per family (German statistics: a household ~3 000 kWh/a)
ANNUAL_KWH: dict[str, tuple[float, float]] = {"household": (3000.0, 0.45), "commercial": (15000.0, 0.8),
                                              "agricultural": (10000.0, 0.6)}


@dataclass(frozen=True)
class RealProfileSpec:
    """The fleet mix and the measurement model of a real-profile fleet."""

    #: shares of the three families (households include the richardsonpy ones)
    household_share: float = 0.6
    commercial_share: float = 0.25
    agricultural_share: float = 0.15
    #: share of the households that are individual richardsonpy traces instead of the H0 standard profile
    household_stochastic_share: float = 0.25
    #: distinct richardsonpy traces generated (each ~11 s once per machine, then cached)
    stochastic_pool: int = 8
    #: register resolution in kWh (0.001 = 1 Wh; 0.01 = 10 Wh)
    resolution_kwh: float = 0.001
    #: sigma of the multiplicative log-normal noise per interval (0.1 = about 10 %)
    noise: float = 0.1
    #: largest time jitter of a standard profile, in 15-minute intervals either way
    jitter_intervals: int = 2
    #: share of meters with solar panels (export around noon)
    pv_share: float = 0.0
    #: summer daily generation of a PV meter, kWh per kWh of its mean daily consumption
    pv_ratio: float = 1.2

    def __post_init__(self) -> None:
        shares = (self.household_share, self.commercial_share, self.agricultural_share)
        if min(shares) < 0 or sum(shares) <= 0:
            raise ValueError("family shares must be >= 0 and not all 0")
        for name in ("household_stochastic_share", "pv_share"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be within [0, 1]")
        if self.resolution_kwh <= 0 or self.noise < 0 or self.stochastic_pool < 1:
            raise ValueError("resolution must be > 0, noise >= 0 and the stochastic pool >= 1")


def _bdew_table() -> dict[tuple[str, int], np.ndarray]:
    """``(period, day type) -> (11, 96)`` kW per 1 000 kWh/a; day type 0 weekday, 1 Saturday, 2 Sunday."""
    import csv

    import demandlib  # test/bench extra

    path = Path(demandlib.__file__).parent / "bdew" / "bdew_data" / "selp_series.csv"
    rows: dict[tuple[str, int], list[list[float]]] = {}
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        for row in reader:
            wd = int(row["weekday"])
            if wd not in (1, 6, 7):  # Monday stands for every working day (the profiles' weekdays are equal)
                continue
            kind = {1: 0, 6: 1, 7: 2}[wd]
            rows.setdefault((row["period"], kind), []).append([float(row[p]) for p in BDEW_PROFILES])
    return {k: np.asarray(v).T for k, v in rows.items()}


def bdew_period(day: date) -> str:
    """BDEW's season of a day: winter 1 Nov - 20 Mar, summer 15 May - 14 Sep, otherwise transition.

    Examples:
        >>> bdew_period(date(2026, 1, 5)), bdew_period(date(2026, 7, 1)), bdew_period(date(2026, 4, 1))
        ('winter', 'summer', 'transition')
    """
    md = (day.month, day.day)
    if md >= (11, 1) or md <= (3, 20):
        return "winter"
    if (5, 15) <= md <= (9, 14):
        return "summer"
    return "transition"


def h0_dynamisation(day_of_year: int) -> float:
    """BDEW's day-of-year factor of the H0 profile (higher in winter).

    Examples:
        >>> round(h0_dynamisation(1), 3), round(h0_dynamisation(180), 3)
        (1.242, 0.798)
    """
    t = float(day_of_year)
    return round(-3.92e-10 * t**4 + 3.2e-7 * t**3 - 7.02e-5 * t**2 + 2.1e-3 * t + 1.24, 4)


def _stochastic_trace(index: int) -> np.ndarray:
    """One richardsonpy household-year as 15-minute kWh (35 040 values), cached on disk."""
    cache = Path(os.environ.get("METERSEG_CACHE_DIR", Path.home() / ".cache" / "meterseg")) / "richardsonpy"
    path = cache / f"household-{index}.npy"
    if path.exists():
        return np.load(path)
    import random

    import richardsonpy.classes.electric_load as eload  # test/bench extra
    import richardsonpy.classes.occupancy as occupancy
    import richardsonpy.functions.change_resolution as cr
    import richardsonpy.functions.load_radiation as loadrad

    random.seed(1000 + index)
    np.random.seed(1000 + index)
    occupants = 1 + index % 5
    log.info("generating richardsonpy household %d (%d occupants; about 11 s, cached in %s)", index, occupants, cache)
    occ = occupancy.Occupancy(number_occupants=occupants)
    q_direct, q_diffuse = loadrad.get_rad_from_try_path()
    q_direct = cr.change_resolution(q_direct, old_res=3600, new_res=60)
    q_diffuse = cr.change_resolution(q_diffuse, old_res=3600, new_res=60)
    load = eload.ElectricLoad(occ_profile=occ.occupancy, total_nb_occ=occupants, q_direct=q_direct,
                              q_diffuse=q_diffuse, timestep=60)
    watts = np.asarray(load.loadcurve, dtype=np.float64)[: 365 * 1440]
    kwh = watts.reshape(-1, 15).sum(axis=1) * 60.0 / 3.6e6
    cache.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, kwh)
    tmp.replace(path)
    return kwh


class ProfileLoad:
    """Draws a real-profile fleet's import/export for consecutive intervals (same interface as ``LoadModel``)."""

    def __init__(self, fleet: Fleet, start: datetime, interval_minutes: int, seed: int,
                 spec: RealProfileSpec | None = None) -> None:
        self.fleet = fleet
        self.start = start
        self.spec = spec or RealProfileSpec()
        self.interval_minutes = interval_minutes
        self.per_day = 1440 // interval_minutes
        self.step = interval_minutes // 15
        rng = np.random.default_rng(np.random.SeedSequence([seed, 11]))
        self.rng = np.random.default_rng(np.random.SeedSequence([seed, 12]))
        n, sp = fleet.n_meters, self.spec
        # families and profiles per customer (a customer's meters share them)
        shares = np.array([sp.household_share, sp.commercial_share, sp.agricultural_share])
        family_c = rng.choice(3, size=fleet.n_customers, p=shares / shares.sum())
        profile_c = np.empty(fleet.n_customers, dtype=np.int16)
        for f, names in enumerate((("h0",), tuple(f"g{i}" for i in range(7)), tuple(f"l{i}" for i in range(3)))):
            sel = np.flatnonzero(family_c == f)
            profile_c[sel] = [PROFILE_NAMES.index(p) for p in rng.choice(names, size=sel.size)]
        households = np.flatnonzero(family_c == 0)
        stochastic = households[rng.random(households.size) < sp.household_stochastic_share]
        profile_c[stochastic] = PROFILE_NAMES.index(STOCHASTIC)
        self.customer_profile = profile_c
        self.meter_profile = profile_c[fleet.meter_customer]
        median = np.array([ANNUAL_KWH[f][0] for f in FAMILIES])[family_c[fleet.meter_customer]]
        sigma = np.array([ANNUAL_KWH[f][1] for f in FAMILIES])[family_c[fleet.meter_customer]]
        self.annual_kwh = median * np.exp(sigma * rng.standard_normal(n))
        self.jitter = rng.integers(-sp.jitter_intervals, sp.jitter_intervals + 1, size=n)
        self.jitter[self.meter_profile == PROFILE_NAMES.index(STOCHASTIC)] = 0
        self.pv = rng.random(n) < sp.pv_share
        self._pv_shape = solar_shape(interval_minutes)
        # stochastic households: a trace of the pool and a week offset each
        self._stoch = np.flatnonzero(self.meter_profile == PROFILE_NAMES.index(STOCHASTIC))
        self._trace_of = rng.integers(0, sp.stochastic_pool, size=self._stoch.size)
        self._week_of = rng.integers(0, 50, size=self._stoch.size)
        self._traces: dict[int, np.ndarray] = {}
        self._table: dict[tuple[str, int], np.ndarray] | None = None
        self._day = -1
        self._day_mean = np.zeros((n, self.per_day))
        self.prev1 = np.full(n, -1.0)
        self.prev2 = np.full(n, -2.0)
        res = self.spec.resolution_kwh
        fleet.register[:] = np.round(np.round(fleet.register / res) * res, 6)  # registers count whole steps

    # ------------------------------------------------------------- labels
    def meter_family_names(self) -> list[str]:
        return [FAMILY_OF[PROFILE_NAMES[p]] for p in self.meter_profile.tolist()]

    def customer_labels(self) -> dict[str, list[str]]:
        """Per customer: profile name and family (for the ground truth)."""
        names = [PROFILE_NAMES[p] for p in self.customer_profile.tolist()]
        return {"profile": names, "family": [FAMILY_OF[p] for p in names]}

    def has_export(self) -> np.ndarray:
        return self.pv.copy()

    # ------------------------------------------------------------- draws
    def _begin_day(self, day: int) -> None:
        if self._table is None:
            self._table = _bdew_table()
        when = (self.start + timedelta(days=day)).date()
        kind = 2 if when.weekday() == 6 else 1 if when.weekday() == 5 else 0
        doy = when.timetuple().tm_yday
        typical = self._table[(bdew_period(when), kind)].copy()  # (11, 96) kW per 1000 kWh/a
        typical[0] *= h0_dynamisation(doy)
        per_kwh_a = typical * 0.25 / 1000.0  # kWh per 15 min per kWh/a
        n = self.fleet.n_meters
        mean15 = np.zeros((n, 96))
        bdew = np.flatnonzero(self.meter_profile < len(BDEW_PROFILES))
        slots = (np.arange(96)[None, :] - self.jitter[bdew, None]) % 96
        mean15[bdew] = per_kwh_a[self.meter_profile[bdew][:, None], slots] * self.annual_kwh[bdew, None]
        if self._stoch.size:
            for t in np.unique(self._trace_of).tolist():
                if t not in self._traces:
                    trace = _stochastic_trace(int(t))
                    self._traces[t] = trace / trace.sum()  # share of the year per 15 minutes
            for i, m in enumerate(self._stoch.tolist()):
                trace = self._traces[int(self._trace_of[i])]
                d = (doy - 1 + 7 * int(self._week_of[i])) % 364
                mean15[m] = trace[d * 96:(d + 1) * 96] * self.annual_kwh[m]
        self._day_mean = mean15.reshape(n, self.per_day, self.step).sum(axis=2)
        self._pv_daily = np.where(self.pv, self._day_mean.sum(axis=1) * self.spec.pv_ratio
                                  * (0.65 + 0.35 * np.cos(2.0 * np.pi * (doy - 172) / 365.25)), 0.0)
        self._cloud = self.rng.uniform(0.35, 1.0, size=n)
        self._day = day

    def interval(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Import and export kWh of every meter for interval ``index`` since the start (rounded to the register)."""
        day, slot = divmod(index, self.per_day)
        if day != self._day:
            self._begin_day(day)
        sigma = self.spec.noise
        n = self.fleet.n_meters
        load = self._day_mean[:, slot] * np.exp(sigma * self.rng.standard_normal(n) - 0.5 * sigma * sigma)
        gen = self._pv_daily * self._pv_shape[slot] * self._cloud
        net = load - gen
        res = self.spec.resolution_kwh
        imp = np.round(np.maximum(net, 0.0) / res) * res
        exp = np.round(np.maximum(-net, 0.0) / res) * res
        return np.round(imp, 6), np.round(exp, 6)

    def avoid_accidental_repeats(self, imp: np.ndarray, healthy: np.ndarray) -> None:
        """Only keeps the history: real registers repeat values, and the engine must live with it."""
        self.prev2 = self.prev1
        self.prev1 = imp.copy()

    def refresh_archetypes(self) -> None:
        """Behaviour shifts do not apply to real profiles (refused by ``SimConfig``)."""

    def expected_daily_kwh(self, day: int) -> np.ndarray:
        """Mean daily import per meter (for purchase and bill amounts)."""
        return self.annual_kwh / 365.0

    def meter_power_factor(self) -> np.ndarray:
        """Base power factor per meter: households 0.95, commercial 0.9, agricultural 0.85."""
        base = {"household": 0.95, "commercial": 0.9, "agricultural": 0.85}
        return np.array([base[f] for f in self.meter_family_names()], dtype=np.float32)
