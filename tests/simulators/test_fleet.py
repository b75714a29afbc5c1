"""Fleet, archetypes, partitioning, faults and shifts configuration."""

from __future__ import annotations

import asyncio
import random
import time
from collections import defaultdict
from datetime import UTC, datetime

import numpy as np
import orjson
import pytest
from aiokafka.partitioner import murmur2
from sim_helpers import TOPICS, simulate

from simulators.archetypes import ARCHETYPE_NAMES, CATALOGUE, index_of, profile_table
from simulators.clock import SimClock, parse_start
from simulators.faults import FaultConfig
from simulators.fleet import FleetConfig, build_fleet
from simulators.generator import SimConfig, Simulator
from simulators.partition import murmur2_fixed, partition_for, partitions_fixed
from simulators.shifts import Shift
from simulators.sinks import NullSink


def test_vectorised_murmur2_matches_kafka() -> None:
    rnd = random.Random(5)
    for length in range(1, 17):
        keys = [bytes(rnd.randrange(1, 256) for _ in range(length)) for _ in range(300)]
        assert [int(h) for h in murmur2_fixed(keys)] == [murmur2(k) for k in keys]
    ids = [f"M{i:07d}".encode() for i in range(1000)]
    assert partitions_fixed(ids, 6).tolist() == [partition_for(k, 6) for k in ids]
    with pytest.raises(ValueError, match="equal length"):
        murmur2_fixed([b"a", b"bb"])


def test_fleet_is_arrays_and_deterministic() -> None:
    a = build_fleet(FleetConfig(meters=5000, seed=3))
    b = build_fleet(FleetConfig(meters=5000, seed=3))
    assert np.array_equal(a.archetype, b.archetype) and np.array_equal(a.scale, b.scale)
    assert a.n_customers < a.n_meters  # some customers own two meters
    assert set(np.unique(a.archetype).tolist()) == set(range(len(CATALOGUE)))
    assert sorted(np.concatenate(a.by_partition).tolist()) == list(range(5000))
    assert a.nbytes() < 5000 * 120


@pytest.mark.parametrize("bad", [dict(meters=0), dict(regions=()), dict(prepaid_share=2.0)])
def test_fleet_config_errors(bad: dict) -> None:
    with pytest.raises(ValueError):
        FleetConfig(**bad)


def test_profiles_are_daily_energy_and_catalogue_is_complete() -> None:
    assert len(CATALOGUE) >= 7
    for minutes in (15, 30, 60):
        table = profile_table(minutes)
        assert np.allclose(table.sum(axis=2), np.array([[a.daily_kwh] * 2 for a in CATALOGUE]))
    assert index_of("ev") == ARCHETYPE_NAMES.index("ev_night_charging")
    with pytest.raises(ValueError, match="unknown archetype"):
        index_of("spaceship")


def test_archetypes_are_separable_by_shape(tmp_path) -> None:
    """Nearest-centroid on volume-normalised hourly net profiles of one day recovers the hidden archetype."""
    run = simulate(tmp_path, meters=1400, days=1, seed=4, faults=FaultConfig.none(), heartbeat_minutes=0, ops=False)
    profiles: dict[str, np.ndarray] = defaultdict(lambda: np.zeros(24))
    for r in run.events(TOPICS.readings):
        hour = int(r["interval_start"][11:13])
        profiles[r["customer_id"]][hour] += r["kwh_import"] - r["kwh_export"]
    labels = run.gt.labels_at(run.config.start)
    cids = sorted(profiles)
    x = np.array([profiles[c] / np.abs(profiles[c]).mean() for c in cids])  # volume removed
    y = np.array([ARCHETYPE_NAMES.index(labels[c]) for c in cids])
    train, test = np.arange(len(cids)) % 2 == 0, np.arange(len(cids)) % 2 == 1
    centroids = np.array([x[train & (y == k)].mean(axis=0) for k in range(len(CATALOGUE))])
    predicted = np.argmin(((x[test][:, None, :] - centroids[None]) ** 2).sum(axis=2), axis=1)
    accuracy = float((predicted == y[test]).mean())
    assert accuracy > 0.9, accuracy
    solar = ARCHETYPE_NAMES.index("solar_prosumer")
    assert (x[y == solar][:, 10:14].sum(axis=1) < 0).mean() > 0.4  # net export around midday (January)


def test_fault_and_shift_parsing_errors() -> None:
    with pytest.raises(ValueError, match="unknown fault kind"):
        FaultConfig.parse(["wobble=0.1"])
    with pytest.raises(ValueError, match="KIND=RATE"):
        FaultConfig.parse(["stuck"])
    with pytest.raises(ValueError, match="not a number"):
        FaultConfig.parse(["stuck=x"])
    assert set(FaultConfig.parse(["all=0.5"]).rates.values()) == {0.5}
    with pytest.raises(ValueError, match="DAY:SHARE:TARGET"):
        Shift.parse("3:ev")
    with pytest.raises(ValueError, match="SHARE"):
        Shift.parse("3:1.5:ev")
    with pytest.raises(ValueError, match="unknown archetype"):
        Shift.parse("3:0.1:rocket")
    with pytest.raises(ValueError, match="envelope"):
        SimConfig(envelope=100_000)
    with pytest.raises(ValueError, match="15-minute"):
        parse_start("2026-01-01T00:07")


def test_solar_adopters_are_reregistered(tmp_path) -> None:
    run = simulate(tmp_path, meters=200, days=2, seed=2, shifts=("1:0.2:solar",), heartbeat_minutes=0,
                   faults=FaultConfig.none())
    registry = run.events(TOPICS.registry)
    adopters = set(run.gt.shifts[0]["customers"])
    later = registry[200:]
    assert later and {r["customer_id"] for r in later} == adopters
    assert all(r["has_export"] for r in later)
    # no "negative" fault may ever hit a meter that exports at some point
    run2 = simulate(tmp_path / "neg", meters=200, days=2, seed=2, shifts=("1:0.5:solar",), heartbeat_minutes=0,
                    faults=FaultConfig.parse(["negative=0.5"], base=FaultConfig.none()))
    adopters2 = set(run2.gt.shifts[0]["customers"])
    solar_now = {c for c, a in run2.gt.labels_at(run2.config.start).items() if a == "solar_prosumer"}
    assert not [f for f in run2.gt.faults if f["customer_id"] in adopters2 | solar_now]


def test_intervals_of_30_and_60_minutes(tmp_path) -> None:
    run = simulate(tmp_path, meters=50, days=1, interval_minutes=60, heartbeat_minutes=15,
                   faults=FaultConfig.none())
    readings = run.events(TOPICS.readings)
    assert len(readings) == 50 * 24 and {r["interval_minutes"] for r in readings} == {60}
    assert len(run.lines(TOPICS.heartbeats)) == 50 * 96


def test_speed_paces_the_clock() -> None:
    clock = SimClock(datetime(2026, 1, 1, tzinfo=UTC), days=1, tick_minutes=15, speed=86400 / 0.6)
    sim = Simulator(SimConfig(meters=20, days=1, speed=86400 / 0.6, heartbeat_minutes=0))
    assert sim.clock.ticks == clock.ticks == 96
    began = time.perf_counter()
    asyncio.run(sim.run(NullSink(), progress=False))
    assert time.perf_counter() - began >= 0.55


def test_history_days_emit_past_purchases(tmp_path) -> None:
    run = simulate(tmp_path, meters=300, days=1, history_days=20, heartbeat_minutes=0, faults=FaultConfig.none())
    stamps = [orjson.loads(line)["ts"] for line in run.lines(TOPICS.purchases)]
    assert min(stamps) < "2026-01-01" and max(stamps) >= "2026-01-01"
