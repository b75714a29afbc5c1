"""The catalogue of hidden load shapes (archetypes) a simulated customer follows.

The engine's behaviour segments are scored against these labels, so the
archetypes must differ in *shape* (when in the day, week and year energy is
used, whether it is exported), not only in volume: each archetype is a
weekday and a weekend hourly profile, a daily energy, a seasonal amplitude and
a noise level. Every meter also has its own volume scale, so two archetypes
with the same daily energy remain separable only by shape - the property we
want the clustering to learn.

Profiles are stored per hour and interpolated (periodically, at interval
mid-points) to the reading interval, so 15-, 30- and 60-minute meters of one
archetype describe the same day.

Examples:
    >>> len(CATALOGUE) >= 7
    True
    >>> t = profile_table(15)
    >>> t.shape == (len(CATALOGUE), 2, 96)
    True
    >>> w = index_of("daytime_away_worker")
    >>> round(float(t[w, 0].sum()), 6) == CATALOGUE[w].daily_kwh
    True
    >>> h = index_of("electric_heating")
    >>> bool(season_factors(15)[h] > 1.5 > 0.5 > season_factors(196)[h])
    True
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Archetype:
    """One load shape. Hourly profiles are relative weights; ``daily_kwh`` scales them."""

    name: str
    weekday: tuple[float, ...]
    weekend: tuple[float, ...]
    daily_kwh: float
    #: seasonal swing: factor ``1 + season_amp * cos(2*pi*(doy - 15)/365.25)`` (winter peak if > 0)
    season_amp: float
    #: lognormal sigma of the multiplicative per-interval noise
    noise: float
    power_factor: float
    #: summer-peak daily solar generation in kWh (0 = no panels)
    solar_kwh: float = 0.0
    #: share of the default fleet mix
    weight: float = 0.1
    #: how likely a customer of this archetype buys something on a given day (relative)
    purchase_affinity: float = 1.0

    def __post_init__(self) -> None:
        if len(self.weekday) != 24 or len(self.weekend) != 24:
            raise ValueError(f"archetype {self.name}: hourly profiles need 24 values")


_NIGHT = (0.3, 0.25, 0.22, 0.22, 0.22, 0.3)

CATALOGUE: tuple[Archetype, ...] = (
    Archetype(
        "daytime_away_worker",
        weekday=(*_NIGHT, 0.9, 1.5, 0.8, 0.25, 0.2, 0.2, 0.2, 0.2, 0.2, 0.25, 0.5, 1.1, 1.7, 1.9, 1.7, 1.4, 0.9, 0.5),
        weekend=(*_NIGHT, 0.4, 0.7, 1.0, 1.1, 1.0, 1.0, 1.1, 1.0, 0.9, 0.9, 1.0, 1.2, 1.5, 1.6, 1.5, 1.3, 0.9, 0.5),
        daily_kwh=8.0, season_amp=0.15, noise=0.35, power_factor=0.95, weight=0.26,
    ),
    Archetype(
        "home_all_day",
        weekday=(0.35, 0.3, 0.28, 0.28, 0.28, 0.35, 0.6, 0.9, 1.1, 1.2, 1.2, 1.3,
                 1.4, 1.3, 1.2, 1.2, 1.3, 1.5, 1.6, 1.5, 1.3, 1.1, 0.8, 0.5),
        weekend=(0.35, 0.3, 0.28, 0.28, 0.28, 0.3, 0.5, 0.8, 1.1, 1.2, 1.2, 1.3,
                 1.4, 1.3, 1.2, 1.2, 1.3, 1.5, 1.6, 1.5, 1.3, 1.1, 0.8, 0.5),
        daily_kwh=11.0, season_amp=0.15, noise=0.3, power_factor=0.95, weight=0.2,
    ),
    Archetype(
        "ev_night_charging",
        weekday=(3.6, 3.8, 3.8, 3.4, 2.2, 0.8, 0.9, 1.2, 0.6, 0.25, 0.2, 0.2,
                 0.2, 0.2, 0.2, 0.25, 0.5, 1.0, 1.5, 1.7, 1.5, 1.3, 1.6, 3.0),
        weekend=(2.4, 2.6, 2.6, 2.2, 1.4, 0.5, 0.4, 0.7, 1.0, 1.1, 1.0, 1.0,
                 1.1, 1.0, 0.9, 0.9, 1.0, 1.2, 1.5, 1.6, 1.5, 1.3, 1.2, 2.0),
        daily_kwh=22.0, season_amp=0.1, noise=0.25, power_factor=0.97, weight=0.08, purchase_affinity=1.4,
    ),
    Archetype(
        "electric_heating",
        weekday=(0.9, 0.8, 0.8, 0.8, 0.9, 1.3, 2.0, 2.2, 1.4, 0.8, 0.7, 0.7,
                 0.7, 0.7, 0.7, 0.8, 1.1, 1.8, 2.1, 2.1, 1.9, 1.6, 1.3, 1.0),
        weekend=(0.9, 0.8, 0.8, 0.8, 0.9, 1.0, 1.4, 1.8, 1.8, 1.4, 1.2, 1.1,
                 1.1, 1.1, 1.1, 1.2, 1.4, 1.8, 2.1, 2.1, 1.9, 1.6, 1.3, 1.0),
        daily_kwh=16.0, season_amp=0.75, noise=0.2, power_factor=0.99, weight=0.12,
    ),
    Archetype(
        "solar_prosumer",
        weekday=(0.35, 0.3, 0.28, 0.28, 0.28, 0.35, 0.9, 1.3, 1.0, 0.8, 0.8, 0.8,
                 0.8, 0.8, 0.8, 0.9, 1.1, 1.5, 1.8, 1.8, 1.6, 1.3, 0.9, 0.5),
        weekend=(0.35, 0.3, 0.28, 0.28, 0.28, 0.3, 0.5, 0.9, 1.1, 1.1, 1.1, 1.1,
                 1.1, 1.1, 1.0, 1.0, 1.2, 1.5, 1.7, 1.7, 1.5, 1.3, 0.9, 0.5),
        daily_kwh=10.0, season_amp=0.1, noise=0.3, power_factor=0.93, solar_kwh=22.0, weight=0.1,
        purchase_affinity=1.3,
    ),
    Archetype(
        "small_business",
        weekday=(0.15, 0.15, 0.15, 0.15, 0.15, 0.2, 0.5, 1.4, 2.0, 2.1, 2.1, 2.1,
                 2.0, 2.1, 2.1, 2.0, 1.9, 1.4, 0.6, 0.25, 0.2, 0.15, 0.15, 0.15),
        weekend=(0.15,) * 24,
        daily_kwh=30.0, season_amp=0.1, noise=0.15, power_factor=0.88, weight=0.12, purchase_affinity=0.8,
    ),
    Archetype(
        "near_vacant",
        weekday=(1.0,) * 24,
        weekend=(1.0,) * 24,
        daily_kwh=1.2, season_amp=0.05, noise=0.08, power_factor=0.9, weight=0.12, purchase_affinity=0.15,
    ),
)

ARCHETYPE_NAMES: tuple[str, ...] = tuple(a.name for a in CATALOGUE)

#: short aliases accepted on the command line (``--shift 3:0.1:ev``)
ALIASES: dict[str, str] = {
    "worker": "daytime_away_worker",
    "home": "home_all_day",
    "ev": "ev_night_charging",
    "heating": "electric_heating",
    "solar": "solar_prosumer",
    "business": "small_business",
    "vacant": "near_vacant",
}


def index_of(name: str) -> int:
    """Index of an archetype by name or alias; a clear error lists the valid names."""
    full = ALIASES.get(name, name)
    try:
        return ARCHETYPE_NAMES.index(full)
    except ValueError:
        valid = ", ".join([*ARCHETYPE_NAMES, *ALIASES])
        raise ValueError(f"unknown archetype {name!r}; choose one of: {valid}") from None


def _to_intervals(hourly: tuple[float, ...], interval_minutes: int) -> np.ndarray:
    """Hourly weights sampled periodically at the mid-point of each interval, normalised to sum 1."""
    per_day = 1440 // interval_minutes
    mids = (np.arange(per_day) + 0.5) * interval_minutes / 60.0 - 0.5  # hour centres sit at h + 0.5
    values = np.interp(mids, np.arange(24), np.asarray(hourly, dtype=np.float64), period=24)
    return values / values.sum()


def profile_table(interval_minutes: int) -> np.ndarray:
    """Mean kWh per interval, shape ``(archetypes, 2, intervals_per_day)``; axis 1 is weekday/weekend."""
    if interval_minutes not in (15, 30, 60):
        raise ValueError("interval_minutes must be 15, 30 or 60")
    per_day = 1440 // interval_minutes
    table = np.empty((len(CATALOGUE), 2, per_day), dtype=np.float64)
    for i, a in enumerate(CATALOGUE):
        table[i, 0] = _to_intervals(a.weekday, interval_minutes) * a.daily_kwh
        table[i, 1] = _to_intervals(a.weekend, interval_minutes) * a.daily_kwh
    return table


def season_factors(day_of_year: int) -> np.ndarray:
    """Per-archetype consumption factor on a day of the year (northern hemisphere, winter peak mid-January)."""
    amp = np.array([a.season_amp for a in CATALOGUE])
    return 1.0 + amp * np.cos(2.0 * np.pi * (day_of_year - 15) / 365.25)


def solar_shape(interval_minutes: int) -> np.ndarray:
    """Share of a day's solar generation in each interval (a bell between 06:00 and 18:00 UTC)."""
    per_day = 1440 // interval_minutes
    hours = (np.arange(per_day) + 0.5) * interval_minutes / 60.0
    bell = np.clip(np.sin(np.pi * (hours - 6.0) / 12.0), 0.0, None) ** 1.5
    return bell / bell.sum()


def solar_daily_kwh(day_of_year: int) -> np.ndarray:
    """Per-archetype daily generation on a day of the year (summer peak, a third of it in winter)."""
    peak = np.array([a.solar_kwh for a in CATALOGUE])
    return peak * (0.65 + 0.35 * np.cos(2.0 * np.pi * (day_of_year - 172) / 365.25))


def default_weights() -> np.ndarray:
    """The default archetype mix of a fleet (sums to 1)."""
    w = np.array([a.weight for a in CATALOGUE], dtype=np.float64)
    return w / w.sum()
