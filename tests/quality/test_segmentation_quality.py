"""Segmentation quality against the simulator's ground truth (CI size of ``bench/segmentation.py``).

Two seeded simulator runs of 1 000 meters x 21 days (default faults, 15-minute
readings, no heartbeats: they feed health, not segments), each simulated and
replayed through :class:`processors.backfill.Backfill` (4 partitions, hourly
population/model exchange, the shipped :class:`SegmentationConfig`) in its own
process, so the two cores of CI run them side by side:

* stationary: ARI of the behaviour segments vs the archetypes after 21 days
  >= 0.85; behaviour volatility < 1 % on every day after the first 14 days
  (the model's warm-up: it is seeded once customers have a week of profiles and refitted until
  day 13);
* shift (10 % adopt EV charging on day 7, a Thursday): >= 90 % of them in the
  matching segment (where most true EV customers are) 2 simulated days
  later, and a drift event after the shift.

The full-size figures (10 000 meters) come from ``bench/segmentation.py``.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor

import pytest

from bench.segmentation import Scores, score_run
from processors.backfill import BackfillConfig

METERS = 1000
DAYS = 21
SEED = 1
SHIFT = "7:0.1:ev"  # day 7 = 2026-01-08, a Thursday
WARMUP_DAYS = 14
CONFIG = BackfillConfig(partitions=4, step_s=3600)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Scores]:
    """Both runs at once, one process each (the two cores of CI)."""
    root = tmp_path_factory.mktemp("seg-quality")
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        jobs = {
            name: pool.submit(score_run, root / name, METERS, DAYS, SEED, CONFIG, shift=shift, warmup_days=WARMUP_DAYS)
            for name, shift in (("stationary", None), ("shift", SHIFT))
        }
        return {name: job.result() for name, job in jobs.items()}


def test_behaviour_segments_recover_archetypes(runs: dict[str, Scores]) -> None:
    score = runs["stationary"].ari
    assert score >= 0.85, f"ARI {score:.3f}"


def test_stationary_volatility_below_one_percent_per_day(runs: dict[str, Scores]) -> None:
    vol = runs["stationary"].stationary_volatility
    assert len(vol) >= DAYS - WARMUP_DAYS
    assert max(vol.values()) < 0.01, {str(d): round(v, 4) for d, v in vol.items()}


def test_ev_adopters_move_to_the_ev_segment_within_two_days(runs: dict[str, Scores]) -> None:
    s = runs["shift"].shift
    assert s is not None and s.customers >= 80
    assert s.share_by_day[2] >= 0.90, f"{100 * s.share_by_day[2]:.1f} % in {s.matching} after 2 days"


def test_drift_event_after_the_shift(runs: dict[str, Scores]) -> None:
    s = runs["shift"].shift
    assert s is not None and s.drift_after, "no drift event after the EV shift"
