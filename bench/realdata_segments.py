"""Behaviour segments on real load profiles, through the live worker, beside a batch ceiling.

A fleet of meters following published real profiles (``meterseg simulate --profiles real``:
the BDEW standard load profiles of demandlib - households H0, commercial G0-G6, agricultural
L0-L2 - and richardsonpy households; families and profiles in the ground truth) is streamed
into fresh Kafka topics as column blocks, paced (``--speed`` simulated seconds per wall
second), while one ``meterseg worker`` with default settings consumes it. Then:

* **quality**: the final behaviour memberships (rebuilt from ``segment.changes`` alone) against
  the families (household / commercial / agricultural) and the 12 profiles: ARI, NMI, purity;
  beside a **batch ceiling** - k-means++ best of 10 (scipy seeding, Lloyd) with the engine's k on
  the engine's own final clustering features, read from the worker's checkpoints in Redis (the
  same features, computed in the same run);
* **calm** (the fleet is stationary: nobody changes behaviour): behaviour moves
  ((entries + exits) / members) per day after ``--warmup-days``, customers that returned within a
  week to a segment they had left, drift events on ``model.events``;
* **names**: distinct names per segment over the run (``segment_name`` of its changes) and the
  renames announced on ``model.events``; the final catalogue (name, profile in units, size);
* ``--plot PNG``: each segment's load shape by hour, weekday and weekend (matplotlib), from the
  final model of this run (README's picture: ``--plot docs/behaviour_segments.png``);
* ``--simulator-figures``: the archetype simulator's gates from ``bench/segmentation.py`` (ARI,
  EV adopters in the matching segment 2 days after the shift, drift after it), backfilled.

Usage (tune on seed 1, report on seed 2)::

    .venv/bin/python -m bench.realdata_segments                        # 3 000 meters x 28 days, seed 2
    .venv/bin/python -m bench.realdata_segments --seed 1 --meters 1000 --days 21
    .venv/bin/python -m bench.realdata_segments --plot docs/behaviour_segments.png --simulator-figures

Needs the bench extra (demandlib, richardsonpy, matplotlib for ``--plot``). Uses
``METERSEG_KAFKA_BOOTSTRAP`` / ``METERSEG_REDIS_URL`` (default: the local stack, started if needed).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import math
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import ensure_broker
from meterseg.settings import Settings, TopicNames
from processors.clustering.fitting import seed_kmeanspp
from processors.clustering.metrics import adjusted_rand_index
from processors.clustering.model import FeatureSpec
from processors.segmentation import PartitionSegmentation
from stream.clients.redis_client import app_key_patterns, sync_redis
from stream.topics import delete_topics
from tests.integration.harness import read_topic, running_worker, settings_env, wait_for

try:  # the NMI and purity arrived with this bench; the BEFORE run computes them here
    from processors.clustering.metrics import normalized_mutual_info, purity
except ImportError:  # pragma: no cover - older code
    from processors.clustering.metrics import contingency

    def normalized_mutual_info(a: Any, b: Any) -> float:
        t = contingency(a, b).astype(float)
        p = t / t.sum()
        pi, pj = p.sum(1), p.sum(0)
        nz = p > 0
        mi = float((p[nz] * np.log(p[nz] / np.outer(pi, pj)[nz])).sum())
        h = [float(-(q[q > 0] * np.log(q[q > 0])).sum()) for q in (pi, pj)]
        return mi / (sum(h) / 2)

    def purity(a: Any, b: Any) -> float:
        t = contingency(a, b)
        return float(t.max(axis=0).sum() / t.sum())


@dataclass
class Outcome:
    """What one live run measured."""

    families: dict[str, str]
    profiles: dict[str, str]
    members: dict[str, str]
    ceiling_labels: dict[str, int]
    changes: list[dict[str, Any]]
    events: list[dict[str, Any]]
    catalogue: dict[str, dict[str, Any]]
    start: date
    k: int
    seconds: float
    model: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _simulate(settings: Settings, out: Path, args: argparse.Namespace) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "meterseg.cli", "simulate", "--no-progress", "--profiles", "real",
           "--meters", str(args.meters), "--days", str(args.days), "--seed", str(args.seed),
           "--interval", str(args.interval), "--heartbeat-minutes", "0", "--history-days", "30",
           "--envelope", "1000", "--envelope-format", "columns", "--pv-share", str(args.pv_share),
           "--speed", str(args.speed), "--ground-truth", str(out / "truth.json")]
    print("$ meterseg " + " ".join(cmd[4:]), flush=True)
    log = (out / "simulate.log").open("wb")
    return subprocess.Popen(cmd, env=settings_env(settings), stdout=log, stderr=subprocess.STDOUT)


def _lag_zero(metrics: str) -> bool:
    lag = [line for line in metrics.splitlines() if line.startswith("meterseg_consumer_lag_messages{")]
    return bool(lag) and all(float(line.rsplit(" ", 1)[1]) == 0 for line in lag)


def _checkpoint_features(settings: Settings) -> tuple[list[str], np.ndarray, int, dict[str, Any] | None]:
    """Every customer's final clustering vector, from the segmentation partitions' checkpoints in Redis."""
    from stream.clients.redis_client import async_redis
    from stream.state.checkpoints import CheckpointStore

    async def _load() -> list[Any]:
        client = async_redis(settings)
        try:
            store = CheckpointStore(client, settings.redis_namespace)
            return [(await store.load("segments", p))[0] for p in range(settings.partitions)]
        finally:
            await client.aclose()

    spec = FeatureSpec()
    ids: list[str] = []
    rows: list[np.ndarray] = []
    k = settings.segmentation.k
    model = None
    for state in asyncio.run(_load()):
        if state is None:
            continue
        seg = PartitionSegmentation.restore(state)
        model = seg.assigner.model.snapshot() if seg.assigner.model is not None else model
        for cid in sorted(seg.features.customers):
            f = seg.features
            values = f.current(cid).clustering_values() if hasattr(f, "current") else f.values(cid)
            ids.append(cid)
            rows.append(spec.vector(values))
    return ids, np.array(rows), k, model


def ceiling(x: np.ndarray, k: int, spec: FeatureSpec, n_init: int = 10) -> np.ndarray:
    """Labels of batch k-means++ (best of ``n_init``) on standard-scaled ``x``, the engine's feature weighting."""
    std = x.std(axis=0)
    std = np.where(std > 1e-9, std, 1.0)
    if hasattr(spec, "effective_std"):
        std = spec.effective_std(std)
    z = (x - x.mean(axis=0)) / std
    c = seed_kmeanspp(z, k, seed=0, n_init=n_init)
    return np.asarray(((z * z).sum(1)[:, None] - 2 * z @ c.T + (c * c).sum(1)[None, :]).argmin(axis=1))


def live_run(args: argparse.Namespace, base: Settings | None = None) -> Outcome:
    """Stream the fleet through a live worker; ``base`` (default: the environment's settings) names broker and Redis."""
    if base is None:
        base = Settings()
        ensure_broker(base)
    unique = uuid.uuid4().hex[:8]
    settings = base.model_copy(update={
        "app_id": f"realseg-{unique}",
        "topics": TopicNames(**{k: f"{v}.{unique}" for k, v in TopicNames().model_dump().items()}),
    })
    out = Path(tempfile.mkdtemp(prefix="realseg-"))
    env = {"METERSEG_INGEST__CLOCK_RATE": str(args.speed), "METERSEG_SEGMENTATION__EXCHANGE_INTERVAL_S": "1"}
    t0 = time.perf_counter()
    try:
        with running_worker(settings, out, **env) as worker:
            sim = _simulate(settings, out, args)
            while sim.poll() is None:
                time.sleep(5)
                h = worker.health()
                print(f"  ... {time.perf_counter() - t0:5.0f} s  model v{h.get('model_version', '?')}  "
                      f"segmentation {h.get('segmentation', {})}", flush=True)
            if sim.returncode != 0:
                raise RuntimeError(f"simulator failed: {(out / 'simulate.log').read_text()[-2000:]}")
            wait_for(lambda: _lag_zero(worker.metrics()), 600, "worker caught up")
            wait_for(lambda: worker.health().get("seconds_since_progress", 0) > 8, 300, "quiet stream")
            time.sleep(3)  # a last model exchange and checkpoint
            ids, x, k, model = _checkpoint_features(settings)
        seconds = time.perf_counter() - t0
        changes = [json.loads(v) for _, v, _ in read_topic(settings.kafka_bootstrap, settings.topics.segment_changes)]
        events = [json.loads(v) for _, v, _ in read_topic(settings.kafka_bootstrap, settings.topics.model_events)]
        if getattr(args, "dump", None):
            args.dump.mkdir(parents=True, exist_ok=True)
            for name, records in (("segment.changes", changes), ("model.events", events)):
                (args.dump / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
            shutil.copy(out / "truth.json", args.dump / "truth.json")
        client = sync_redis(settings, decode_responses=True)
        catalogue = {key: json.loads(v) for key, v in client.hgetall(f"{settings.redis_namespace}:segments").items()}
        client.close()
        truth = json.loads((out / "truth.json").read_text())
        cids = truth["customers"]["ids"]
        rp = truth["real_profiles"]["customers"]
        families = dict(zip(cids, rp["family"], strict=True))
        profiles = dict(zip(cids, rp["profile"], strict=True))
        members: dict[str, str] = {}
        for c in changes:
            if c["family"] != "behaviour":
                continue
            if c["action"] == "entered":
                members[c["customer_id"]] = c["segment_id"]
            elif members.get(c["customer_id"]) == c["segment_id"]:
                del members[c["customer_id"]]
        labels = ceiling(x, k, FeatureSpec()) if len(x) else np.zeros(0, dtype=int)
        start = datetime.fromisoformat(truth["start"].replace("Z", "+00:00")).date()
        return Outcome(families, profiles, members, dict(zip(ids, labels.tolist(), strict=True)), changes, events,
                       catalogue, start, k, seconds, model)
    finally:
        asyncio.run(delete_topics(settings))
        client = sync_redis(settings)
        for pattern in app_key_patterns(settings):
            for key in client.scan_iter(match=pattern, count=1000):
                client.unlink(key)
        client.close()


# -- figures -----------------------------------------------------------------------------------------------
def quality(truth: dict[str, str], labels: dict[str, Any]) -> tuple[float, float, float, int]:
    ids = sorted(set(truth) & set(labels))
    a, b = [truth[c] for c in ids], [str(labels[c]) for c in ids]
    return adjusted_rand_index(a, b), normalized_mutual_info(a, b), purity(a, b), len(ids)


def calm(o: Outcome, warmup_days: int) -> dict[str, Any]:
    """Moves per day after the warm-up, returns within a week, drift events, names per segment."""
    moves: collections.Counter[date] = collections.Counter()
    history: dict[str, list[tuple[date, str]]] = collections.defaultdict(list)
    names: dict[str, list[str]] = collections.defaultdict(list)  # per segment: its names, model version by version
    for e in o.events:
        if e.get("kind") != "version":
            continue
        for sid, name in e["detail"].get("names", {}).items():
            if not names[sid] or names[sid][-1] != name:
                names[sid].append(name)
    seen: dict[str, set[str]] = collections.defaultdict(set)  # names change records carried
    for c in o.changes:
        if c["family"] != "behaviour":
            continue
        day = datetime.fromisoformat(c["ts"].replace("Z", "+00:00")).date()
        if c["action"] == "entered":
            history[c["customer_id"]].append((day, c["segment_id"]))
            if c["from_segment"] is not None:
                moves[day] += 1
        if c.get("segment_name"):
            seen[c["segment_id"]].add(c["segment_name"])
    size = max(len(o.members), 1)
    last = max([*moves, o.start + timedelta(days=warmup_days)])
    first = o.start + timedelta(days=warmup_days)
    per_day = {first + timedelta(days=i): moves[first + timedelta(days=i)] / size
               for i in range((last - first).days + 1)}
    returns = 0
    for seq in history.values():
        for i in range(2, len(seq)):
            day, seg = seq[i]
            left = [d for d, s in seq[:i] if s == seg]
            if left and day >= first and (day - seq[i - 1][0]).days <= 7 and seg != seq[i - 1][1]:
                returns += 1
    drift = [e for e in o.events if e.get("kind") == "drift"]
    renames = [e for e in o.events if e.get("kind") == "rename"]
    versions = [e for e in o.events if e.get("kind") == "version"]
    return {"per_day": per_day, "returns": returns, "drift": drift, "names": names, "seen": seen, "renames": renames,
            "versions": versions, "moved": sum(1 for seq in history.values() if len(seq) > 1)}


def plot(model: dict[str, Any], sizes: dict[str, int], path: Path) -> None:
    """Each segment's load shape by hour (weekday, weekend) in kWh per hour, from the model's centroids."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from processors.features import WEEKDAY_SHAPE, WEEKEND_SHAPE

    names = model["spec"]["names"]
    ids = model["ids"]
    cols = 2
    rows = math.ceil(len(ids) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(11, 2.3 * rows), sharex=True, squeeze=False)
    order = sorted(range(len(ids)), key=lambda j: (len(ids[j]), ids[j]))  # B1, B2, ..., B10
    for panel, j in enumerate(order):
        cid = ids[j]
        ax = axes[panel // cols][panel % cols]
        c = dict(zip(names, model["centroids"][j], strict=True))
        kwh = 10 ** c["log10_daily_kwh"]
        ratio = math.exp(c["weekday_weekend_ratio"])
        wd = np.array([c[n] for n in WEEKDAY_SHAPE]) * kwh
        we = np.array([c[n] for n in WEEKEND_SHAPE]) * kwh / max(ratio, 1e-3)
        hours = np.arange(24) + 0.5
        ax.step(hours, wd, where="mid", label="weekday", color="tab:blue")
        ax.step(hours, we, where="mid", label="weekend", color="tab:orange")
        ax.set_title(f"{cid} ({sizes.get(cid, 0)} customers): {model['names'][j]}", fontsize=8)
        ax.set_xlim(0, 24)
        ax.set_xticks(range(0, 25, 3))
        ax.set_ylabel("kWh per hour", fontsize=7)
        ax.tick_params(labelsize=7)
        if panel == 0:
            ax.legend(fontsize=7)
    for j in range(len(ids), rows * cols):
        axes[j // cols][j % cols].axis("off")
    fig.suptitle("Behaviour segments of a real-profile fleet: load shape by hour (UTC), weekday and weekend", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    print(f"wrote {path}")


def report(o: Outcome, args: argparse.Namespace) -> dict[str, float]:
    figures: dict[str, float] = {}
    print(f"live run: {len(o.families)} customers, {args.days} days, k={o.k}, {o.seconds:.0f} s")
    for label, truth in (("family", o.families), ("profile", o.profiles)):
        a, n, p, count = quality(truth, o.members)
        ca, cn, cp, _ = quality(truth, o.ceiling_labels)
        print(f"  vs {label:7s} ({count} customers): engine ARI {a:.3f} NMI {n:.3f} purity {p:.3f} | "
              f"batch k-means++ ceiling ARI {ca:.3f} NMI {cn:.3f} purity {cp:.3f} | "
              f"ratio NMI {n / cn if cn else float('nan'):.3f} purity {p / cp if cp else float('nan'):.3f}"
              f"   (target >= 0.95)")
        figures.update({f"{label}_ari": a, f"{label}_nmi": n, f"{label}_purity": p,
                        f"{label}_ceiling_nmi": cn, f"{label}_ceiling_purity": cp})
    c = calm(o, args.warmup_days)
    vol = c["per_day"]
    worst = max(vol.values()) if vol else float("nan")
    mean = float(np.mean(list(vol.values()))) if vol else float("nan")
    print(f"  customers changing behaviour segment per day after day {args.warmup_days}: max {100 * worst:.2f} %, "
          f"mean {100 * mean:.2f} %   (target <= 0.5 %; (entries + exits) / members is twice that)")
    print("    " + " ".join(f"{d:%m-%d}:{100 * v:.2f}%" for d, v in vol.items()))
    print(f"  customers that ever moved: {c['moved']}; returns after day {args.warmup_days} to a segment left before, "
          f"within 7 days of the previous move: {c['returns']}   (target 0)")
    print(f"  drift events on this stationary fleet: {len(c['drift'])}   (target 0) "
          f"{[e.get('ts') for e in c['drift']][:8]}")
    after = (o.start + timedelta(days=args.warmup_days)).isoformat()
    late = [e for e in c["renames"] if str(e["detail"].get("profile_day", "")) >= after]
    print(f"  model versions: {len(c['versions'])}; renames announced: {len(c['renames'])}, after day "
          f"{args.warmup_days}: {len(late)} {[(e['detail'].get('segment'), e['detail'].get('to')) for e in late][:6]}")
    most = max((len(v) - 1 for v in c["names"].values()), default=0)
    print(f"  name changes per segment across model versions: max {most} "
          f"{ {s: len(v) - 1 for s, v in sorted(c['names'].items())} }")
    print(f"  distinct names per segment in segment.changes: "
          f"{ {s: len(v) for s, v in sorted(c['seen'].items())} }  (partitions switch model versions a few "
          f"seconds apart: records of both names around a rename)")
    sizes = collections.Counter(o.members.values())
    print("  segments (final catalogue):")
    for _key, e in sorted(o.catalogue.items()):
        if e.get("family") != "behaviour":
            continue
        fams = collections.Counter(o.families.get(cid) for cid, s in o.members.items() if s == e["id"])
        top = ", ".join(f"{f} {n}" for f, n in fams.most_common(3))
        print(f"    {e['id']:4s} {sizes.get(e['id'], 0):5d}  {e.get('name')!s:60.60s} | {top}")
    figures.update({"volatility_max": worst, "returns": float(c["returns"]), "drift": float(len(c["drift"])),
                    "name_changes_max": float(most)})
    if args.plot and o.model is not None:
        plot(o.model, dict(sizes), args.plot)
    return figures


def simulator_figures(args: argparse.Namespace) -> None:
    """The archetype simulator's gates (bench/segmentation.py), backfilled at ``--sim-meters``."""
    from bench.segmentation import score_run
    from processors.backfill import BackfillConfig

    root = Path(tempfile.mkdtemp(prefix="realseg-sim-"))
    config = BackfillConfig(partitions=4, step_s=3600)
    stat = score_run(root / "stationary", args.sim_meters, 21, args.seed, config, warmup_days=14)
    shift = score_run(root / "shift", args.sim_meters, 21, args.seed, config, shift="7:0.1:ev", warmup_days=14)
    s = shift.shift
    assert s is not None
    print(f"simulator (archetypes, {args.sim_meters} meters x 21 days, seed {args.seed}, backfill): ARI {stat.ari:.3f} "
          f"(target >= 0.85); stationary volatility max "
          f"{100 * max(stat.stationary_volatility.values(), default=float('nan')):.2f} %/day; drift without shift "
          f"{len(stat.drift)}; EV adopters in the matching segment after 2 days {100 * s.share_by_day.get(2, 0):.1f} % "
          f"(target >= 90 %); drift after the shift: {len(s.drift_after)}")


def parser() -> argparse.ArgumentParser:
    """The bench's options (the CI test builds its reduced run from them)."""
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--meters", type=int, default=3000)
    p.add_argument("--days", type=int, default=28)
    p.add_argument("--seed", type=int, default=2, help="report seed (tune on 1)")
    p.add_argument("--interval", type=int, default=15, choices=(15, 30, 60))
    p.add_argument("--speed", type=float, default=8640.0, help="simulated seconds per wall second (8640: a day in 10 s)")
    p.add_argument("--pv-share", type=float, default=0.1)
    p.add_argument("--warmup-days", type=int, default=14,
                   help="days before the calm figures count (a week of features, then the first model's week)")
    p.add_argument("--dump", type=Path, default=None,
                   help="write the run's segment.changes, model.events and ground truth (JSON lines) here")
    p.add_argument("--plot", type=Path, default=None, help="write each segment's load shape (PNG) here")
    p.add_argument("--simulator-figures", action="store_true", help="also the archetype simulator's gates")
    p.add_argument("--sim-meters", type=int, default=1000)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    report(live_run(args), args)
    if args.simulator_figures:
        simulator_figures(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
