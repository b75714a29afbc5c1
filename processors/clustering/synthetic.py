"""Synthetic archetype-like daily load profiles, for tests and benchmarks.

Eight household/business archetypes with distinct hourly shapes, levels,
weekday/weekend behaviour and solar export, plus per-customer level spread and
per-day, per-hour noise. Deliberately independent of the project's simulator
(which another engineer owns) so the processors' quality tests do not depend on
it; ``bench/segmentation.py`` scores against the simulator's ground truth.

Examples:
    >>> profiles, labels = generate_profiles(n_customers=16, days=2, seed=1)
    >>> len(profiles), len(labels), len(set(labels.values()))
    (32, 16, 8)
    >>> len(profiles[0].kwh_import)
    24
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import date, timedelta

import numpy as np

from processors.features import DailyProfile


def _bumps(*spec: tuple[float, float, float], base: float = 0.1) -> np.ndarray:
    """Sum of Gaussian bumps (hour, width, height) on a 24-hour grid plus a base, normalised to 1."""
    h = np.arange(24) + 0.5
    y = np.full(24, base)
    for centre, width, height in spec:
        d = np.minimum(np.abs(h - centre), 24 - np.abs(h - centre))  # wrap around midnight
        y += height * np.exp(-0.5 * (d / width) ** 2)
    return y / y.sum()


EV_CHARGING = _bumps((2.0, 1.2, 1.0), base=0.0)
"""Shape of overnight EV charging (no base load): added by ``shift`` and part of ``ev_charger``."""

_COMMUTER_WD = _bumps((7.0, 1.0, 1.0), (19.5, 2.0, 1.6))
_COMMUTER_WE = _bumps((10, 2, 0.8), (19, 2.5, 1.2))

# name -> (weekday shape, weekend shape, mean kWh/day weekday, weekend factor, export kWh/day)
ARCHETYPES: dict[str, tuple[np.ndarray, np.ndarray, float, float, float]] = {
    "commuter": (_COMMUTER_WD, _COMMUTER_WE, 8.0, 1.1, 0.0),
    "home_daytime": (_bumps((13.0, 3.5, 1.5), (19, 2, 0.6)), _bumps((13, 3.5, 1.5), (19, 2, 0.6)), 11.0, 1.0, 0.0),
    "night_shift": (_bumps((2.5, 2.5, 1.8), (15, 1.5, 0.3)), _bumps((2.5, 2.5, 1.2), (14, 3, 0.6)), 9.0, 1.0, 0.0),
    # a commuter household that charges an EV overnight (8 + 11 kWh)
    "ev_charger": ((8 * _COMMUTER_WD + 11 * EV_CHARGING) / 19, (8 * _COMMUTER_WE + 11 * EV_CHARGING) / 19,
                   19.0, 1.05, 0.0),
    "solar_prosumer": (_bumps((7.0, 1.0, 0.8), (20.0, 1.5, 1.8)), _bumps((8, 1, 0.6), (20, 2, 1.5)), 7.0, 1.1, 9.0),
    "electric_heating": (_bumps((7.0, 2.0, 1.0), (19.0, 3.0, 1.0), (3.0, 3.0, 0.6)),
                         _bumps((9, 3, 1.0), (19, 3, 1.0), (3, 3, 0.6)), 32.0, 1.1, 0.0),
    "small_flat": (_bumps((8.0, 2.0, 0.2), (20.0, 3.0, 0.3)), _bumps((11, 3, 0.3), (20, 3, 0.3)), 2.5, 1.0, 0.0),
    "business": (_bumps((13.0, 4.0, 2.0)), _bumps((13, 6, 0.2)), 26.0, 0.15, 0.0),
}


def generate_profiles(
    n_customers: int,
    days: int,
    seed: int = 0,
    start: date = date(2026, 1, 5),
    level_sigma: float = 0.25,
    day_sigma: float = 0.15,
    hour_sigma: float = 0.30,
    shift: Callable[[str, int], bool] | None = None,
    archetypes: Mapping[str, tuple[np.ndarray, np.ndarray, float, float, float]] = ARCHETYPES,
) -> tuple[list[DailyProfile], dict[str, str]]:
    """Daily profiles of ``n_customers`` for ``days`` days, in day order, and their archetype labels.

    Customers are spread evenly over the archetypes. ``shift(customer_id, day_index)``
    returning True adds ~11 kWh of night EV charging to that customer's day.
    """
    rng = np.random.default_rng(seed)
    names = list(archetypes)
    labels = {f"C{i:06d}": names[i % len(names)] for i in range(n_customers)}
    level = {cid: float(rng.lognormal(0.0, level_sigma)) for cid in labels}
    out: list[DailyProfile] = []
    for d in range(days):
        day = start + timedelta(days=d)
        weekday = day.weekday() < 5
        for cid, arch in labels.items():
            wd_shape, we_shape, kwh, we_factor, export = archetypes[arch]
            shape = wd_shape if weekday else we_shape
            total = kwh * level[cid] * (1.0 if weekday else we_factor) * rng.lognormal(0.0, day_sigma)
            hourly = shape * total * rng.lognormal(0.0, hour_sigma, 24)
            if shift is not None and shift(cid, d):
                hourly = hourly + EV_CHARGING * 11.0 * rng.lognormal(0.0, day_sigma)
            exp: tuple[float, ...] | None = None
            if export > 0:
                sun = _bumps((13.0, 2.5, 1.0)) - 0.1 / 24
                exp = tuple(float(v) for v in np.clip(sun, 0, None) * export * rng.lognormal(0, 0.4))
            out.append(DailyProfile(customer_id=cid, day=day, weekday=weekday,
                                    kwh_import=tuple(float(v) for v in hourly), kwh_export=exp))
    return out, labels
