"""Segmentation quality against the simulator's ground truth, through the batch backfill.

Two simulator runs written to the file sink (seeded; default faults on;
heartbeats off by default, since they feed health, not segments - ``--heartbeats``
keeps them), each replayed through :class:`processors.backfill.Backfill`
(N ingest + N segmentation partitions, one model owner, population and model
exchange every simulated hour):

1. **stationary** (no shift): adjusted Rand index of the behaviour segments
   against the ground-truth archetypes after the last day; the batch ceiling,
   k-means++ + Lloyd best of 10 (numpy; scikit-learn is not a dependency) on
   the same final feature vectors with the same k; behaviour volatility
   ((entries + exits) / members) per simulated day; drift events (false alarms
   here).
2. **shift** (``--shift DAY:SHARE:ev``): share of the shifted customers in the
   *matching* segment - the behaviour segment most true EV-archetype customers
   (not shifted) occupy at the same instant - 2 simulated days after the shift
   (change records dated up to shift + 2 days: the profiles of the shift day
   and the next one), and whether a drift event fired after the shift.

Plus profile updates/s (segmentation time of polls that carried daily
profiles) and the backfill's overall message rate. Purchase-to-segment-change
latency needs the live engine (Kafka + Redis) and is not measured here.

Usage::

    .venv/bin/python bench/segmentation.py                   # 10 000 meters x 21 days, shift 10 % EV at day 7
    .venv/bin/python bench/segmentation.py --quick           # 1 000 meters x 21 days
    .venv/bin/python bench/segmentation.py --meters 2000 --days 14 --shift-day 8 --repeat 3
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np

from processors.backfill import Backfill, BackfillConfig, BackfillResult, polls_from_directory
from processors.clustering.assign import DriftEvent
from processors.clustering.fitting import seed_kmeanspp
from processors.clustering.metrics import adjusted_rand_index
from processors.clustering.model import FeatureSpec
from processors.segmentation import SegmentationConfig
from processors.segments import SegmentChange
from simulators.groundtruth import GroundTruth

EV = "ev_night_charging"


# -- running ---------------------------------------------------------------------------------------------
def simulate_command(
    out: Path,
    meters: int,
    days: int,
    seed: int,
    *,
    shift: str | None = None,
    faults: bool = True,
    heartbeats: bool = False,
    history_days: int = 30,
    interval: int = 15,
) -> list[str]:
    """The ``meterseg simulate`` command line of one run (file sink)."""
    cmd = [sys.executable, "-m", "meterseg.cli", "simulate", "--meters", str(meters), "--days", str(days),
           "--seed", str(seed), "--sink", "file", "--out", str(out), "--no-progress",
           "--history-days", str(history_days), "--interval", str(interval)]
    if not heartbeats:
        cmd += ["--heartbeat-minutes", "0"]
    if not faults:
        cmd.append("--no-faults")
    if shift:
        cmd += ["--shift", shift]
    return cmd


def simulate(cmd: list[str], *, echo: bool = True) -> None:
    """Run a simulator command (stdout kept quiet unless it fails)."""
    if echo:
        print("$ " + " ".join(shlex.quote(c) for c in cmd[1:]).replace("-m meterseg.cli", "meterseg", 1),
              flush=True)
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"simulator failed ({done.returncode}): {done.stderr[-2000:]}")


@dataclass
class Run:
    """A backfilled simulator run and its ground truth."""

    directory: Path
    truth: GroundTruth
    backfill: Backfill
    result: BackfillResult
    seconds: float

    @property
    def start(self) -> datetime:
        return datetime.fromisoformat(str(self.truth.doc["start"]).replace("Z", "+00:00"))

    @property
    def end(self) -> datetime:
        return datetime.fromisoformat(str(self.truth.doc["end"]).replace("Z", "+00:00"))


def backfill(directory: Path, config: BackfillConfig) -> Run:
    """Replay a file-sink directory through the backfill."""
    t = time.perf_counter()
    bf = Backfill.from_directory(directory, config)
    result = bf.run(polls_from_directory(directory, config.step_s))
    return Run(directory, GroundTruth.load(directory / "ground_truth.json"), bf, result, time.perf_counter() - t)


# -- scoring ------------------------------------------------------------------------------------------------
def behaviour_at(changes: list[SegmentChange], cutoff: datetime) -> dict[str, str]:
    """Behaviour segment of every customer from the change records dated up to ``cutoff``."""
    out: dict[str, str] = {}
    for c in changes:
        if c.family != "behaviour" or c.at > cutoff:
            continue
        if c.change == "entry":
            out[c.customer_id] = c.segment_id
        elif out.get(c.customer_id) == c.segment_id:
            del out[c.customer_id]
    return out


def ari(members: dict[str, str], truth: dict[str, str]) -> float:
    """ARI of behaviour segments against the true archetypes (customers with both)."""
    ids = sorted(set(members) & set(truth))
    return adjusted_rand_index([truth[c] for c in ids], [members[c] for c in ids])


def final_features(run: Run) -> tuple[list[str], np.ndarray]:
    """Every customer's final clustering vector (the model's feature spec, transformed, unscaled)."""
    spec = FeatureSpec()
    ids: list[str] = []
    rows: list[np.ndarray] = []
    for seg in run.backfill.segmentation:
        for cid in sorted(seg.features.customers):
            ids.append(cid)
            rows.append(spec.vector(seg.features.values(cid)))
    return ids, np.array(rows)


def kmeans_ceiling(run: Run, k: int, truth: dict[str, str], n_init: int = 10, seed: int = 0) -> float:
    """ARI of batch k-means++ + Lloyd (best of ``n_init``) on the same final features, standard-scaled."""
    ids, x = final_features(run)
    z = (x - x.mean(axis=0)) / np.where(x.std(axis=0) > 1e-9, x.std(axis=0), 1.0)
    c = seed_kmeanspp(z, k, seed=seed, n_init=n_init)
    d2 = (z * z).sum(1)[:, None] - 2 * z @ c.T + (c * c).sum(1)[None, :]
    labels = d2.argmin(axis=1)
    keep = [i for i, cid in enumerate(ids) if cid in truth]
    return adjusted_rand_index([truth[ids[i]] for i in keep], [int(labels[i]) for i in keep])


def daily_volatility(result: BackfillResult, family: str = "behaviour") -> dict[date, float]:
    """(entries + exits) / members per day, days as the membership book dates them (``at`` of the change).

    A behaviour change from day D's profile is dated the midnight after D, so it counts on D + 1;
    members = customers with a membership of the family at the end of that day (or the final state).
    """
    moves: Counter[date] = Counter(c.at.date() for c in result.changes if c.family == family)
    out: dict[date, float] = {}
    if not moves:
        return out
    last = max([*moves, *result.by_day, datetime.fromtimestamp(result.final.at, UTC).date()])
    day = min(moves)
    while day <= last:
        snap = result.by_day.get(day, result.final)
        size = len(snap.behaviour if family == "behaviour" else snap.rfm)
        out[day] = moves[day] / size if size else float("inf")
        day += timedelta(days=1)
    return out


def drift_label(e: DriftEvent) -> str:
    """``detector@MM-DD`` of the profile day that caused a detection (events are dated at its end)."""
    return f"{e.detector}@{e.at - timedelta(days=1):%m-%d}"


@dataclass
class ShiftScore:
    """How the shifted customers followed their shift."""

    shift_at: datetime
    customers: int
    matching: str | None
    share_by_day: dict[int, float] = field(default_factory=dict)  # days after the shift -> share in matching
    #: drift events from the profiles of the shift day on / before it, as "detector@profile day"
    drift_after: list[str] = field(default_factory=list)
    drift_before: list[str] = field(default_factory=list)


def score_shift(run: Run, within_days: tuple[int, ...] = (1, 2, 3, 4)) -> ShiftScore:
    """Share of the (EV) shift's customers in the matching segment ``d`` days after the shift, and drift."""
    [shift] = [s for s in run.truth.shifts if s["target"] == EV]
    at = datetime.fromisoformat(str(shift["at"]).replace("Z", "+00:00"))
    shifted = set(shift["customers"])
    true_ev = {c for c, a in run.truth.labels_at(run.start).items() if a == EV} - shifted
    score = ShiftScore(at, len(shifted), None)
    for d in within_days:
        cutoff = at + timedelta(days=d)
        members = behaviour_at(run.result.changes, cutoff)
        ev_segments = Counter(members[c] for c in true_ev if c in members)
        if not ev_segments:
            continue
        matching = ev_segments.most_common(1)[0][0]
        if d == 2:
            score.matching = matching
        score.share_by_day[d] = sum(members.get(c) == matching for c in shifted) / max(len(shifted), 1)
    for e in run.result.drift:  # a detection is dated at the end of the profile day that caused it
        label = drift_label(e)
        (score.drift_after if e.at > at else score.drift_before).append(label)
    return score


def stationary_days(vol: dict[date, float], start: datetime, warmup: int, until: datetime | None) -> dict[date, float]:
    """The days of ``vol`` after ``warmup`` simulated days and up to ``until`` (a shift), if any.

    A day is dated as the membership book dates changes: the changes of day D's profile count on D + 1,
    so the day of the shift itself still shows only pre-shift behaviour.
    """
    first = (start + timedelta(days=warmup)).date()
    last = until.date() if until is not None else date.max
    return {d: v for d, v in vol.items() if first <= d <= last}


@dataclass
class Scores:
    """The picklable summary of one scored run (what tests and the bench compare with the targets)."""

    ari: float
    volatility: dict[date, float]
    stationary_volatility: dict[date, float]
    drift: list[str]
    shift: ShiftScore | None
    profiles: int
    profile_seconds: float
    seconds: float


def score_run(
    out: Path,
    meters: int,
    days: int,
    seed: int,
    config: BackfillConfig,
    *,
    shift: str | None = None,
    warmup_days: int = 8,
    interval: int = 15,
    faults: bool = True,
) -> Scores:
    """Simulate into ``out``, backfill, score (a module-level function, so a process pool can run it)."""
    simulate(simulate_command(out, meters, days, seed, shift=shift, interval=interval, faults=faults), echo=False)
    run = backfill(out, config)
    truth = run.truth.labels_at(run.end - timedelta(seconds=1))
    vol = daily_volatility(run.result)
    sh = score_shift(run) if shift else None
    steady = stationary_days(vol, run.start, warmup_days, sh.shift_at if sh else None)
    res = run.result
    return Scores(ari(res.final.behaviour, truth), vol, steady, [drift_label(e) for e in res.drift],
                  sh, res.profiles, res.profile_seconds, run.seconds)


def _fmt_days(vol: dict[date, float]) -> str:
    return " ".join(f"{d:%m-%d}:{100 * v:.2f}%" for d, v in vol.items())


# -- main -------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--meters", type=int, default=10_000)
    p.add_argument("--days", type=int, default=21)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--shift-day", type=int, default=7, help="day of the EV shift (7 = 2026-01-08, a Thursday)")
    p.add_argument("--shift-share", type=float, default=0.1)
    p.add_argument("--partitions", type=int, default=4)
    p.add_argument("--step-s", type=int, default=3600, help="exchange cadence in simulated seconds")
    p.add_argument("--warmup-days", type=int, default=14,
                   help="days excluded from the stationary volatility (the model is seeded after a week, refitted "
                        "until day 13)")
    p.add_argument("--no-faults", action="store_true", help="simulate without faults (default: default fault rates)")
    p.add_argument("--heartbeats", action="store_true", help="also simulate and ingest 15-minute heartbeats")
    p.add_argument("--interval", type=int, default=15, choices=(15, 30, 60))
    p.add_argument("--repeat", type=int, default=1, help="repeat with seeds seed..seed+N-1; medians printed")
    p.add_argument("--quick", action="store_true", help="1 000 meters")
    p.add_argument("--keep", type=Path, default=None, help="simulate into this directory and keep it")
    args = p.parse_args(argv)
    if args.quick:
        args.meters = 1000
    config = BackfillConfig(partitions=args.partitions, step_s=args.step_s, segmentation=SegmentationConfig())
    k = config.segmentation.k
    figures: dict[str, list[float]] = {}

    def keep(name: str, value: float) -> None:
        figures.setdefault(name, []).append(value)

    root = args.keep or Path(tempfile.mkdtemp(prefix="bench-seg-"))
    print(f"segmentation quality: {args.meters} meters x {args.days} days, {args.partitions} partitions, "
          f"exchange every {args.step_s} simulated s, faults {'off' if args.no_faults else 'default'}, "
          f"heartbeats {'on' if args.heartbeats else 'off'}, interval {args.interval} min, k={k}")
    for r in range(args.repeat):
        seed = args.seed + r
        common = dict(faults=not args.no_faults, heartbeats=args.heartbeats, interval=args.interval)
        stat_dir, shift_dir = root / f"stationary-{seed}", root / f"shift-{seed}"
        shift = f"{args.shift_day}:{args.shift_share}:ev"
        t = time.perf_counter()
        simulate(simulate_command(stat_dir, args.meters, args.days, seed, **common))
        simulate(simulate_command(shift_dir, args.meters, args.days, seed, shift=shift, **common))
        print(f"  simulated both runs in {time.perf_counter() - t:.0f} s")

        stat = backfill(stat_dir, config)
        res = stat.result
        truth_end = stat.truth.labels_at(stat.end - timedelta(seconds=1))
        a = ari(res.final.behaviour, truth_end)
        ceiling = kmeans_ceiling(stat, k, truth_end)
        ceiling7 = kmeans_ceiling(stat, len(stat.truth.doc["archetypes"]), truth_end)
        vol = daily_volatility(res)
        steady = stationary_days(vol, stat.start, args.warmup_days, None)
        rfm_vol = stationary_days(daily_volatility(res, "rfm"), stat.start, args.warmup_days, None)
        rate = res.profiles / res.profile_seconds if res.profile_seconds else float("nan")
        print(f"[seed {seed}] stationary run: backfill {stat.seconds:.0f} s ({res.messages / stat.seconds:,.0f} msgs/s; "
              f"ingest {res.ingest_seconds:.0f} s, segmentation {res.segmentation_seconds:.0f} s, "
              f"exchange {res.exchange_seconds:.0f} s), {res.profiles} profiles, {res.purchases} purchase events, "
              f"{len(res.model_events)} model versions, {res.rejects} rejects")
        print(f"  ARI behaviour vs archetypes after {args.days} days: {a:.3f}   (target >= 0.85)")
        print(f"  batch k-means ceiling (k-means++ best of 10, same features): k={k} {ceiling:.3f}, "
              f"k={len(stat.truth.doc['archetypes'])} {ceiling7:.3f}")
        print(f"  behaviour volatility per day: {_fmt_days(vol)}")
        worst = max(steady.values()) if steady else float("nan")
        print(f"  stationary (day >= {args.warmup_days}) behaviour volatility: max {100 * worst:.2f}%/day, "
              f"mean {100 * statistics.fmean(steady.values()) if steady else float('nan'):.2f}%/day   (target < 1 %)")
        print(f"  (RFM volatility, same days, for information: max "
              f"{100 * max(rfm_vol.values()) if rfm_vol else float('nan'):.2f}%/day)")
        print(f"  drift events without any shift: {len(res.drift)} {[drift_label(e) for e in res.drift]}")
        print(f"  profile updates/s (segmentation of polls carrying profiles): {rate:,.0f}")
        keep("ari", a)
        keep("ceiling", ceiling)
        keep("volatility_max", worst)
        keep("profile_rate", rate)

        sh = backfill(shift_dir, config)
        s = score_shift(sh)
        truth_end = sh.truth.labels_at(sh.end - timedelta(seconds=1))
        a2 = ari(sh.result.final.behaviour, truth_end)
        pre = stationary_days(daily_volatility(sh.result), sh.start, args.warmup_days, s.shift_at)
        print(f"[seed {seed}] shift run ({shift}): {s.customers} customers adopt EV on {s.shift_at:%Y-%m-%d}; "
              f"matching segment {s.matching}")
        print("  share in the matching segment, days after the shift: "
              + "  ".join(f"+{d}d {100 * v:.1f}%" for d, v in s.share_by_day.items()) + "   (target >= 90 % at +2d)")
        print(f"  drift events after the shift: {len(s.drift_after)} {s.drift_after[:6]}; before: {s.drift_before}")
        pre_text = f"max {100 * max(pre.values()):.2f}%/day" if pre else "n/a (shift within the warm-up days)"
        print(f"  ARI after {args.days} days vs archetypes at the end: {a2:.3f}; pre-shift stationary volatility "
              f"{pre_text}")
        keep("ev_share_2d", s.share_by_day.get(2, float("nan")))
        keep("drift_after", float(len(s.drift_after) > 0))
    if args.repeat > 1:
        print("medians over seeds: " + ", ".join(f"{n} {statistics.median(v):.3f}" for n, v in figures.items()))
    print("purchase-to-segment-change latency: not measured here (needs the live engine with Kafka and Redis)")
    if args.keep is None:
        import shutil

        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
