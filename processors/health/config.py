"""Thresholds of the meter health rules, as one pydantic model (settable from settings/env).

Defaults follow the utility VEE conventions summarised in the shared README
(voltage within ±10 % of nominal, frozen register over 3 intervals) where
those hold on real load data, and were calibrated where they do not (equal
values at 1 Wh resolution, household peaks, zero readings): on a fleet built
from the BDEW standard load profiles and richardsonpy households with 10 %
noise, rounded to 1 Wh, tuned on one seed and checked on another
(``bench/realdata_meters.py``). Each field says why its value.

Examples:
    >>> HealthConfig().voltage_tolerance, HealthConfig(spike_z=12).spike_z
    (0.1, 12.0)
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

KINDS: tuple[str, ...] = (
    "negative_consumption",
    "spike",
    "stuck_register",
    "voltage",
    "clock_skew",
    "fault",
    "degraded",
    "error_codes",
    "sequence_gap",
    "silent",
    "dead_register",
)
"""Finding kinds; the bit of kind ``k`` in a meter's active mask is ``1 << KINDS.index(k)``."""

EVENT_KINDS: tuple[str, ...] = ("negative_consumption", "spike", "voltage", "sequence_gap")
"""Findings raised by one reading and cleared after ``clear_after`` clean readings (hysteresis)."""

Severity = Literal["fair", "poor"]


class HealthConfig(BaseModel):
    """Rule thresholds and the severity of each finding kind."""

    model_config = ConfigDict(frozen=True)

    negative_tolerance_kwh: float = Field(default=0.0, ge=0.0, description="kwh_import below -this is negative")
    day_bands: int = Field(
        default=6,
        ge=1,
        le=96,
        description="time-of-day bands (of 24/day_bands hours, UTC) in which the spike and dead-register rules "
        "compare a meter with itself: 4-hour bands separate night, morning, midday and evening behaviour while "
        "filling with a day or two of readings",
    )
    spike_band_window: int = Field(
        default=32,
        ge=4,
        description="recent values kept per meter and time-of-day band: 32 = two days of a 4-hour band at 15 min, "
        "so yesterday's cooking peak is in today's evening history",
    )
    spike_band_min_history: int = Field(
        default=12,
        ge=3,
        description="band values needed before the band is the reference (fewer: the meter's whole history with the "
        "warm-up ratio); 12 = most of one day's band",
    )
    spike_min_history: int = Field(default=3, ge=3, description="values needed at all before any spike is judged")
    spike_warmup: int = Field(
        default=32,
        ge=0,
        description="with fewer values than this (a meter's first 8 hours at 15 min) the band and weekly "
        "references do not exist yet: the warm-up test applies instead. Longer warm-ups missed first-day spikes "
        "of the archetype fleet (3x a morning's maximum is a lot for a meter that has not had its evening yet)",
    )
    spike_peak_days: int = Field(
        default=7, ge=1, description="days of daily maxima kept per meter: a week holds its weekly habits"
    )
    spike_ratio_peak: float = Field(
        default=2.0,
        ge=0.0,
        description="towering: x above this multiple of the meter's largest value of the last spike_peak_days days, "
        "at any hour: real households move their peaks around the day (an oven at 17:00 one day, 20:00 the next); "
        "1.3 let richardsonpy households' peaks through (after their first day their false alarms were 1.1-2.5x "
        "the week's maximum), "
        "higher ratios missed more first-day spikes of the archetype fleet (smooth loads, where only this test "
        "finds a spike whose neighbours are not idle: recall 0.952 at 2, 0.944 at 3 on the simulator's gate)",
    )
    spike_isolated_ratio: float = Field(
        default=15.0,
        gt=0.0,
        description="isolated: x at least this multiple of both neighbours (each floored at spike_min_level_kwh), "
        "i.e. the previous interval and, on confirmation, the next. A spike as the simulator injects it (as a "
        "corrupted or mis-scaled register value shows) is 20-50x the interval it replaces; a richardsonpy "
        "household's own appliance peaks are rarely 15x both neighbours (99 % of its 5x jumps stay under 11x the "
        "larger neighbour on the tuning seed), and a real peak often spreads into the next interval (an oven, a "
        "shower, a washing machine heating)",
    )
    spike_isolated_peak: float = Field(
        default=0.7,
        ge=0.0,
        description="isolated: x above this multiple of the meter's largest value of the last spike_peak_days days. "
        "Below 1 on purpose: an injected spike sits on whatever the interval held, so on a near-idle interval of "
        "a household whose weekly peak is ~1 kWh it can stay just under that peak (on the tuning seed injected "
        "spikes were 0.86x the week's maximum at the 1st percentile, 13x at the median), while a household's "
        "isolated kettle or oven peaks mostly sit well below its weekly maximum (median 0.36x)",
    )
    spike_z: float = Field(
        default=5.0, gt=0.0, description="modified z-score 0.6745 (x - median) / MAD above which (Iglewicz-Hoaglin "
        "use 3.5 for outliers; 5 leaves room for skewed household bands)",
    )
    spike_ratio_max: float = Field(
        default=1.5,
        ge=0.0,
        description="towering: x above this multiple of the band's largest recent value: a household's own daily "
        "peaks stay below 1.5x each other, injected spikes (20-50x an interval) do not",
    )
    spike_jump_ratio: float = Field(
        default=5.0,
        ge=0.0,
        description="every spike: x above this multiple of the previous interval, floored at spike_min_level_kwh (the "
        "classic VEE spike check against the neighbours; a cheap filter, most readings stop here)",
    )
    spike_warmup_ratio_max: float = Field(
        default=3.0,
        ge=0.0,
        description="warm-up: x above this multiple of everything the meter sent so far. A compromise: a "
        "household's first kettle is 3-10x its first hours (false alarms in its first day), while 10x missed a "
        "third of the first day's spikes on the archetype fleet",
    )
    spike_warmup_towering: float = Field(
        default=10.0,
        ge=0.0,
        description="warm-up, towering: x above this multiple of everything the meter sent so far, without the "
        "isolated test (an isolated candidate needs spike_warmup_ratio_max only). Households' first kettles and "
        "showers reach up to 30x their first quiet hours, so only the isolated path is trusted for them; smooth "
        "loads (the archetype fleet, BDEW commercial) need this path for their first hours' spikes",
    )
    spike_min_level_kwh: float = Field(
        default=0.03,
        ge=0.0,
        description="floor of both neighbours' values in the jump and fall tests: 30 Wh (120 W over 15 minutes, an "
        "idle household). A ratio against an idle interval means nothing (a kettle after a quiet night is 100x "
        "the night's 3 Wh). No reading under spike_isolated_ratio x this (0.45 kWh: 1.8 kW for 15 minutes, within "
        "any household's range) is judged a spike at all",
    )
    spike_confirm: bool = Field(
        default=True,
        description="raise a spike only when the next interval falls back below 1/spike_fall_ratio of it "
        "(one interval later, far fewer false alarms on ramps)",
    )
    spike_fall_ratio: float = Field(
        default=3.0,
        gt=0.0,
        description="towering: the next interval (floored at spike_min_level_kwh) must fall below x / this (an "
        "isolated candidate must fall below x / spike_isolated_ratio)",
    )
    spike_exclude: bool = Field(default=True, description="keep spike candidates out of the references")
    spike_min_mad_kwh: float = Field(
        default=0.01, gt=0.0, description="MAD floor: 10 Wh, a few register steps (a flat history is not zero spread)"
    )
    stuck_intervals: int = Field(
        default=3,
        ge=2,
        description="readings in a row with the register frozen under load (impossible for a healthy meter at any "
        "resolution, so the VEE convention of 3 holds); also the shortest repeated-value run",
    )
    stuck_level_bands: int = Field(
        default=12, ge=1, description="level bands (powers of two of 1 Wh, up to 2 kWh+) of the equal-value rates"
    )
    stuck_run_probability: float = Field(
        default=1e-9,
        gt=0.0,
        lt=1.0,
        description="a run of equal values is evidence when its probability under the meter's own equal rate at "
        "that level is below this: ~3 000 readings per meter-month, so 1e-9 keeps chance runs far below the "
        "target of 5 flagged clean meters per 1 000 per month even where the rate is underestimated",
    )
    stuck_min_pairs: int = Field(
        default=96,
        ge=0,
        description="consecutive non-zero pairs a meter must have sent before an equal-value run counts (a day at "
        "15 min): on its first hours a household's rate of equal values is not known yet",
    )
    stuck_prior_equal: float = Field(default=1.0, ge=0.0, description="pseudo-count of equal pairs per level band")
    stuck_prior_pairs: float = Field(
        default=4.0, gt=0.0, description="pseudo-count of pairs per level band (a new level starts at p = 1/4)"
    )
    dead_min_intervals: int = Field(
        default=4,
        ge=2,
        description="shortest zero run called a dead register: one hour of a 15-minute meter, so a meter that "
        "never reads zero is flagged within the hour",
    )
    dead_evidence_decades: float = Field(
        default=8.0,
        gt=0.0,
        description="-log10 of the run's probability under the meter's own zero rates per time-of-day band: "
        "1e-8 per run, for the same reason as stuck_run_probability",
    )
    dead_prior_zero: float = Field(default=0.5, ge=0.0, description="pseudo-count of zero readings per band")
    dead_prior_readings: float = Field(
        default=1.0, gt=0.0, description="pseudo-count of readings per band (a new meter starts at p0 = 1/2)"
    )
    voltage_tolerance: float = Field(default=0.10, gt=0.0, lt=1.0, description="fraction of nominal voltage")
    clock_skew_s: float = Field(default=120.0, gt=0.0)
    sequence_gap_min: int = Field(
        default=1,
        ge=1,
        description="missing sequence numbers, still missing after the grace, that make a gap: any lost reading "
        "(reorderings are absorbed by the grace, not by a larger minimum)",
    )
    sequence_gap_grace_s: int = Field(
        default=3600,
        ge=0,
        description="event seconds a skipped reading may still arrive (reordering); keep >= the windows' allowed "
        "lateness (default 3600), past which a late reading is dead-lettered anyway",
    )
    silent_intervals: float = Field(
        default=3.0,
        gt=0.0,
        description="k: silent once k expected intervals of the meter's grid have ended with no sign of life "
        "(3 x 15 min: a 1-hour outage is found 45 minutes in)",
    )
    clear_after: int = Field(default=4, ge=1, description="clean readings that clear an event-type finding")
    severity: dict[str, Severity] = Field(
        default_factory=lambda: {  # type: ignore[arg-type]
            "negative_consumption": "poor",
            "spike": "fair",
            "stuck_register": "poor",
            "voltage": "fair",
            "clock_skew": "fair",
            "fault": "poor",
            "degraded": "fair",
            "error_codes": "fair",
            "sequence_gap": "fair",
            "silent": "poor",
            "dead_register": "poor",
        }
    )

    def poor_mask(self) -> int:
        """Bit mask of the kinds that make a meter ``poor``."""
        return sum(1 << i for i, k in enumerate(KINDS) if self.severity.get(k, "fair") == "poor")
