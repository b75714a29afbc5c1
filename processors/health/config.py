"""Thresholds of the meter health rules, as one pydantic model (settable from settings/env).

Defaults follow the utility VEE conventions summarised in the shared README
(stuck = same non-zero value for 3 or more intervals, voltage within ±10 % of
nominal) and the fault shapes the simulator injects; tune them against the
simulator's ground truth.

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
)
"""Finding kinds; the bit of kind ``k`` in a meter's active mask is ``1 << KINDS.index(k)``."""

EVENT_KINDS: tuple[str, ...] = ("negative_consumption", "spike", "voltage", "sequence_gap")
"""Findings raised by one reading and cleared after ``clear_after`` clean readings (hysteresis)."""

Severity = Literal["fair", "poor"]


class HealthConfig(BaseModel):
    """Rule thresholds and the severity of each finding kind."""

    model_config = ConfigDict(frozen=True)

    negative_tolerance_kwh: float = Field(default=0.0, ge=0.0, description="kwh_import below -this is negative")
    spike_window: int = Field(default=96, ge=8, description="recent readings per meter kept for median/MAD")
    spike_min_history: int = Field(default=3, ge=3)
    spike_z: float = Field(default=5.0, gt=0.0, description="robust z-score 0.6745 (x - median) / MAD above which")
    spike_ratio_p95: float = Field(
        default=1.5, ge=0.0, description="... and x above this multiple of the history's 95th percentile"
    )
    spike_jump_ratio: float = Field(
        default=5.0, ge=0.0, description="... and x above this multiple of the previous interval (VEE spike check)"
    )
    spike_warmup: int = Field(default=32, ge=0, description="history shorter than this is a warm-up ...")
    spike_warmup_ratio_max: float = Field(
        default=3.0, ge=0.0, description="... in which x must also exceed this multiple of the history's maximum"
    )
    spike_min_level_kwh: float = Field(default=0.05, ge=0.0, description="floor of the previous interval's value")
    spike_confirm: bool = Field(
        default=True,
        description="raise a spike only when the next interval falls back below 1/spike_fall_ratio of it "
        "(one interval later, far fewer false alarms on ramps)",
    )
    spike_fall_ratio: float = Field(default=3.0, gt=0.0)
    spike_min_mad_kwh: float = Field(default=0.01, gt=0.0, description="MAD floor (a flat history is not zero spread)")
    stuck_intervals: int = Field(default=3, ge=2, description="same non-zero value this many intervals in a row")
    voltage_tolerance: float = Field(default=0.10, gt=0.0, lt=1.0, description="fraction of nominal voltage")
    clock_skew_s: float = Field(default=120.0, gt=0.0)
    sequence_gap_min: int = Field(
        default=2, ge=1, description="missing sequence numbers that make a gap (1 flags single reorderings too)"
    )
    silent_intervals: float = Field(default=3.0, gt=0.0, description="k: silent after k expected intervals")
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
        }
    )

    def poor_mask(self) -> int:
        """Bit mask of the kinds that make a meter ``poor``."""
        return sum(1 << i for i, k in enumerate(KINDS) if self.severity.get(k, "fair") == "poor")
