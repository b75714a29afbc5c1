"""The real-profile fleet: published shapes, register resolution, labels in the ground truth."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import numpy as np
import pytest

from simulators.faults import FaultConfig
from simulators.fleet import FleetConfig, build_fleet
from simulators.generator import SimConfig, Simulator
from simulators.realprofiles import FAMILY_OF, ProfileLoad, RealProfileSpec
from simulators.sinks import NullSink

START = datetime(2026, 1, 5, tzinfo=UTC)  # a Monday


def _week(spec: RealProfileSpec, meters: int = 400) -> tuple[ProfileLoad, np.ndarray]:
    fleet = build_fleet(FleetConfig(meters=meters, seed=5))
    load = ProfileLoad(fleet, START, 15, seed=5, spec=spec)
    return load, np.stack([load.interval(j)[0] for j in range(7 * 96)], axis=1)


def test_values_are_whole_register_steps_and_follow_the_annual_consumption() -> None:
    for res in (0.001, 0.01):
        load, week = _week(RealProfileSpec(household_stochastic_share=0.0, resolution_kwh=res))
        steps = week / res
        assert np.allclose(steps, np.round(steps), atol=1e-6)
        daily = week.sum(axis=1) / 7
        ratio = daily / (load.annual_kwh / 365.0)
        # a January week of standard profiles: within a factor of two of the yearly mean, for every meter
        assert 0.5 < float(np.median(ratio)) < 2.0 and (ratio > 0.2).all(), np.percentile(ratio, [0, 50, 100])


def test_families_differ_in_shape_commercial_peaks_on_weekdays_and_households_in_the_evening() -> None:
    load, week = _week(RealProfileSpec(household_stochastic_share=0.0))
    fam = np.array(load.meter_family_names())
    weekday = week[:, : 5 * 96].reshape(len(fam), 5, 96).mean(axis=1)
    sunday = week[:, 6 * 96:].sum(axis=1)
    commercial, household = fam == "commercial", fam == "household"
    assert commercial.any() and household.any() and (fam == "agricultural").any()
    # households use more on a Sunday than on an average weekday; commercial customers far less
    assert np.median(sunday[household] / weekday[household].sum(axis=1)) > 1.0
    assert np.median(sunday[commercial] / weekday[commercial].sum(axis=1)) < 0.8
    evening = slice(17 * 4, 21 * 4)
    share = weekday[:, evening].sum(axis=1) / weekday.sum(axis=1)
    assert np.median(share[household]) > np.median(share[commercial])


def test_equal_consecutive_values_are_left_as_real_registers_report_them() -> None:
    _load, week = _week(RealProfileSpec(household_stochastic_share=0.0))
    runs = (week[:, 2:] == week[:, 1:-1]) & (week[:, 1:-1] == week[:, :-2]) & (week[:, 2:] > 0)
    assert runs.any(axis=1).sum() > 0  # at 1 Wh a night base load repeats: the health rules must live with it


def test_pv_meters_export_around_noon_only() -> None:
    fleet = build_fleet(FleetConfig(meters=200, seed=2))
    load = ProfileLoad(fleet, datetime(2026, 6, 1, tzinfo=UTC), 15, seed=2,
                       spec=RealProfileSpec(household_stochastic_share=0.0, pv_share=0.5))
    exports = np.stack([load.interval(j)[1] for j in range(96)], axis=1)
    assert exports[~load.pv].sum() == 0 and exports[load.pv].sum() > 0
    assert exports[:, :5 * 4].sum() == 0  # nothing before 05:00 UTC


def test_simulator_with_real_profiles_labels_every_customer_and_refuses_shifts() -> None:
    spec = RealProfileSpec(household_stochastic_share=0.0)
    sim = Simulator(SimConfig(meters=150, days=1, seed=4, faults=FaultConfig.none(), ops=False, real_profiles=spec))
    asyncio.run(sim.run(NullSink(), progress=False))
    gt = sim.ground_truth()
    labels = gt["real_profiles"]["customers"]
    assert len(labels["family"]) == len(gt["customers"]["ids"])
    assert all(FAMILY_OF[p] == f for p, f in zip(labels["profile"], labels["family"], strict=True))
    with pytest.raises(ValueError, match="real-profile"):
        SimConfig(meters=10, real_profiles=spec, shifts=("1:0.1:ev",))
