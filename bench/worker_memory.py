"""Worker memory per meter, in-process: what a worker's state holds per meter it owns, and which part holds it.

The same code the live worker runs on its partitions — :class:`~processors.ingest.PartitionIngest`
(decode → dedupe → windows → health → daily profiles) and
:class:`~processors.segmentation.PartitionSegmentation` (RFM, features, memberships) — fed the
simulator's own output (``meterseg simulate --sink file``, the arguments of ``bench/scale.py``:
``--days`` (1) day of readings every ``--interval`` (60) minutes in ``ReadingBlock`` column blocks of
1 000, a heartbeat every 360 minutes in ``HeartbeatBlock`` columns, ``--history-days`` (7) days of purchase
history, default fault rates; a customer's RFM state grows with its history). The fleet is simulated for ``--partitions`` (4) partitions and the worker owns
``--own`` (2) of them, as one of two workers of ``bench/scale.py`` does: it reads the whole registry
(every worker does), the ingest messages and purchases of its partitions only. The segmentation gets each batch's registry attributes (region, tariff,
export) through the engine's index of every registered customer, as in the worker. With ``--days 2`` or
more, the first day closes while the next day's readings arrive, and its daily profiles go to the
segmentation partitions the worker owns, as through the live profiles topic: the load-shape features are
then held too, for the customers whose meters this worker also ingests (about half of its customers; the
live worker gets the other half's profiles from the other worker's meters, so this understates the
features), and with ``--days 1`` no day closes, so none are. The live worker's RSS after a day close is the
figure to size by (docs/scaling.md).

Each fleet size runs in a fresh subprocess, so its RSS owes nothing to the previous size. Printed per
size: RSS after the imports, after loading the registry, after ingest, after segmentation, after
encoding every partition's checkpoint (as the worker does every few seconds) and after glibc's
``malloc_trim`` (``VmRSS``, and the peak ``VmHWM``), and the retained size of each state component (a deep walk of its objects:
containers, strings, numpy buffers, counted once each — what a pympler ``asizeof`` reports), in bytes per
meter the worker *owns* (the registry also per registered meter). The last lines give the slope between
the two largest sizes — the memory a worker needs per additional owned meter, without the fixed cost
of the interpreter and libraries.

It measures the processors, not the wiring: the live worker adds Kafka clients and their fetch
buffers, the Redis client, the web API and its fleet directory, the registry follower, and the
heap its checkpoints and backlog batches leave behind. ``bench/scale.py`` remains the end-to-end figure (its RSS includes everything; its slope
per meter is higher, see docs/scaling.md). ``--trace`` adds tracemalloc's allocation sites of what is
still held (in a second, traced run).

Run (from the repository root)::

    .venv/bin/python -m bench.worker_memory                       # 5 000 and 50 000 meters, ~2 minutes
    .venv/bin/python -m bench.worker_memory --meters 5000 20000 100000
"""

from __future__ import annotations

import argparse
import gc
import heapq
import json
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import orjson  # noqa: E402

from meterseg.cli import main as meterseg_main  # noqa: E402
from processors.columns import MeterRegistry, RawMessage  # noqa: E402
from processors.ingest import IngestConfig, PartitionIngest  # noqa: E402
from processors.segmentation import PartitionSegmentation  # noqa: E402
from simulators.partition import partition_for  # noqa: E402
from stream.memory import proc_status as rss_kb  # noqa: E402
from stream.memory import release_free_memory  # noqa: E402
from stream.schemas import MeterInfo  # noqa: E402

TARGET_BYTES_PER_METER = 2048


def deep_size(root: object, seen: set[int] | None = None) -> int:
    """Bytes retained by ``root`` and everything it reaches (each object once; ``seen`` shares them across calls).

    Numpy arrays count their buffer when they own it (``sys.getsizeof`` does); a view counts its base.
    Modules, classes and functions are not followed (they are not per-meter state).

    Examples:
        >>> deep_size(np.zeros(1000)) >= 8000
        True
        >>> shared = "x" * 1000
        >>> seen: set[int] = set()
        >>> deep_size([shared], seen) > 1000, deep_size([shared], seen) < 1000
        (True, True)
    """
    seen = set() if seen is None else seen
    total = 0
    stack: list[object] = [root]
    skip = (type, type(sys), type(deep_size), type(len))
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, skip):
            continue
        seen.add(id(obj))
        total += sys.getsizeof(obj)
        if isinstance(obj, np.ndarray):
            if obj.base is not None:
                stack.append(obj.base)
            continue
        if isinstance(obj, (str, bytes, int, float, bool, complex)) or obj is None:
            continue
        if isinstance(obj, dict):
            stack.extend(obj.keys())
            stack.extend(obj.values())
        elif isinstance(obj, (list, tuple, set, frozenset)):
            stack.extend(obj)
        d = getattr(obj, "__dict__", None)
        if d is not None:
            stack.append(d)
        for cls in type(obj).__mro__:
            for name in getattr(cls, "__slots__", ()):
                if hasattr(obj, name) and name not in ("__dict__", "__weakref__"):
                    stack.append(getattr(obj, name))
    return total


def _lines(path: Path) -> list[bytes]:
    with path.open("rb") as f:
        return [line.rstrip(b"\n") for line in f]


def _partition_of_block(value: bytes, partitions: int) -> int:
    """Partition of a message: a block's first meter (a block holds one partition's meters), a single reading's
    meter; partition 0 for what cannot be parsed (the simulator's malformed messages)."""
    try:
        doc = orjson.loads(value)
        key = doc["columns"]["meter_id"][0] if "columns" in doc else doc["meter_id"]
    except (orjson.JSONDecodeError, KeyError, IndexError, TypeError):
        return 0
    return partition_for(str(key).encode(), partitions)


def _customer_partition(value: bytes, partitions: int) -> int:
    try:
        return partition_for(str(orjson.loads(value)["customer_id"]).encode(), partitions)
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return 0


def simulate(out: Path, meters: int, args: argparse.Namespace) -> None:
    sim = ["simulate", "--sink", "file", "--out", str(out), "--ground-truth", str(out / "truth.json"),
           "--meters", str(meters), "--days", str(args.days), "--interval", str(args.interval),
           "--heartbeat-minutes", "360", "--envelope", "1000", "--envelope-format", "columns",
           "--heartbeat-envelope", "1000", "--history-days", str(args.history_days), "--seed", str(args.seed),
           "--partitions", str(args.partitions), "--no-ops", "--no-progress"]  # fmt: skip
    if meterseg_main(sim) != 0:
        raise RuntimeError("simulator failed")


def _merged(sim_dir: Path, topics: Sequence[str]) -> Iterator[tuple[str, int, bytes]]:
    """(topic, offset, message) of the topics' files merged by ``sent_at`` (the order a head end sends in)."""

    def read(topic: str) -> Iterator[tuple[bytes, str, int, bytes]]:
        with (sim_dir / f"{topic}.jsonl").open("rb") as f:
            for offset, line in enumerate(f):
                at = line.find(b'"sent_at":"')
                yield line[at + 11 : at + 31] if at >= 0 else b"", topic, offset, line.rstrip(b"\n")

    for _at, topic, offset, value in heapq.merge(*(read(t) for t in topics), key=lambda x: x[0]):
        yield topic, offset, value


def _polls(msgs: list[RawMessage], size: int) -> Iterable[list[RawMessage]]:
    for i in range(0, len(msgs), size):
        yield msgs[i : i + size]


def measure_one(sim_dir: Path, partitions: int, own: int, trace: bool = False) -> dict[str, Any]:
    """One fleet size in this process: RSS steps and component sizes (the subprocess side).

    ``trace``: also the allocation sites (``tracemalloc``, a line each) of what is still allocated at the end.
    """
    owned = set(range(own))
    gc.collect()
    rss: dict[str, dict[str, int]] = {"imports": rss_kb()}
    if trace:
        tracemalloc.start(1)
    reg_lines = _lines(sim_dir / "meter.registry.jsonl")
    registry = MeterRegistry(MeterInfo.model_validate_json(b) for b in reg_lines)
    del reg_lines
    gc.collect()
    rss["registry"] = rss_kb()

    from stream.pipelines.ingest import meter_owner  # the wiring's ownership test (murmur2 of the meter id)

    owned_meters = sum(partition_for(m.encode(), partitions) in owned for m in registry.meter_ids)
    ingests = {p: PartitionIngest(registry, IngestConfig(), owns=meter_owner(p, partitions)) for p in owned}
    segs = {p: PartitionSegmentation() for p in owned}
    # the registry attributes the worker adds per customer of a batch (stream/engine.py customer_info: the
    # customer's first meter, found through an index of every registered customer, which the worker keeps)
    customer_slot: dict[str, int] = {}
    for slot, cid in enumerate(registry.customer_ids):
        customer_slot.setdefault(cid, slot)

    def static_of(poll: list[RawMessage]) -> dict[str, dict[str, Any]]:
        static = {}
        for m in poll:
            cid = orjson.loads(m.value).get("customer_id")
            if isinstance(cid, str) and cid in customer_slot and cid not in static:
                info = registry.info(customer_slot[cid])
                static[cid] = {"region": info["region"], "tariff": info["tariff"], "has_export": info["has_export"]}
        return static

    started = time.perf_counter()
    profiles_n = 0
    # one message per call, both topics merged in send order, read from the files as they go (as from Kafka:
    # the input is never all in memory, so the RSS after ingest is the state's, not the input's). A day that
    # closes (with --days 2 and more) sends its daily profiles to the segmentation partition of their customer
    # when this worker owns it, as the live worker's profiles topic does.
    for topic, offset, value in _merged(sim_dir, ("meter.readings", "meter.heartbeats")):
        p = _partition_of_block(value, partitions)
        if p in ingests:
            msg = [RawMessage(value, topic, p, offset)]
            out = ingests[p].process((msg, []) if topic == "meter.readings" else ([], msg), wall=0.0)
            if len(out.profiles):
                routed: dict[int, list[RawMessage]] = {}
                for customer, body in out.profiles.messages():
                    to = partition_for(customer, partitions)
                    if to in segs:
                        routed.setdefault(to, []).append(RawMessage(body, "meterseg.profiles", to, profiles_n))
                        profiles_n += 1
                del out
                for to, msgs in routed.items():
                    segs[to].process(([], msgs), static=static_of(msgs), wall=0.0)
    ingest_s = time.perf_counter() - started
    readings_n = sum(i.totals["accepted"] for i in ingests.values())
    gc.collect()
    rss["ingest"] = rss_kb()

    purchases = [RawMessage(v, "customer.purchases", 0, i)
                 for i, v in enumerate(_lines(sim_dir / "customer.purchases.jsonl"))
                 if _customer_partition(v, partitions) in owned]  # fmt: skip
    for p, seg in segs.items():
        mine = [m for m in purchases if _customer_partition(m.value, partitions) == p]
        for poll in _polls(mine, 500):
            seg.process((poll, []), static=static_of(poll), wall=0.0)
        seg.rescore(0.0, caught_up=True)
    purchase_n = len(purchases)
    del purchases
    gc.collect()
    rss["segmentation"] = rss_kb()
    # what the worker does every few seconds: snapshot and encode each partition's state (the JSON is dropped)
    checkpoint = sum(len(orjson.dumps(i.snapshot(), option=orjson.OPT_SERIALIZE_NUMPY)) for i in ingests.values())
    checkpoint += sum(len(orjson.dumps(s.snapshot(), option=orjson.OPT_SERIALIZE_NUMPY)) for s in segs.values())
    gc.collect()
    rss["checkpoint"] = rss_kb()
    if release_free_memory():
        rss["malloc_trim"] = rss_kb()

    sites: list[tuple[str, int]] = []
    if trace:
        gc.collect()
        stats = tracemalloc.take_snapshot().statistics("lineno")
        tracemalloc.stop()
        sites = [(str(st.traceback[0]).replace(str(REPO) + "/", ""), st.size) for st in stats[:25]]
    seen: set[int] = set()
    parts: dict[str, int] = {"registry": deep_size(registry, seen), "engine.customer_slot": deep_size(customer_slot, seen)}
    names = ("readings", "heartbeats", "dedupe", "windows", "health", "profiles")
    for name in names:
        parts[f"ingest.{name}"] = sum(deep_size(getattr(i, name), seen) for i in ingests.values())
    parts["ingest.other"] = sum(deep_size(i, seen) for i in ingests.values())
    for name in ("rfm", "features", "assigner", "rules", "book", "attributes"):
        parts[f"segmentation.{name}"] = sum(deep_size(getattr(s, name), seen) for s in segs.values())
    parts["segmentation.other"] = sum(deep_size(s, seen) for s in segs.values())
    # what the state components hold, one level down (the largest attributes)
    detail: dict[str, int] = {}
    registry_objects: set[int] = set()
    deep_size(registry, registry_objects)  # attributes reach the registry (and its id strings): not theirs
    for name in ("windows", "health", "dedupe", "profiles"):
        for ingest in ingests.values():
            comp = getattr(ingest, name)
            for attr, value in vars(comp).items() if hasattr(comp, "__dict__") else ():
                key = f"ingest.{name}.{attr}"
                detail[key] = detail.get(key, 0) + deep_size(value, set(registry_objects))
    for name in ("rfm", "features", "assigner", "book"):
        for seg in segs.values():
            comp = getattr(seg, name)
            for attr, value in vars(comp).items() if hasattr(comp, "__dict__") else ():
                key = f"segmentation.{name}.{attr}"
                detail[key] = detail.get(key, 0) + deep_size(value, set(registry_objects))
    return {"registered": len(registry), "owned": owned_meters, "accepted": readings_n, "purchases": purchase_n,
            "profiles": profiles_n,
            "ingest_s": ingest_s, "rss": rss, "parts": parts, "detail": detail, "checkpoint": checkpoint,
            "sites": sites}  # fmt: skip


def report(rows: list[dict[str, Any]], top: int) -> None:
    for row in rows:
        n, owned = row["registered"], row["owned"]
        rss = row["rss"]
        print(f"\n== {n:,} registered meters, {owned:,} owned ({row['accepted']:,} readings and heartbeats accepted, "
              f"{row['purchases']:,} purchases, {row.get('profiles', 0):,} daily profiles of a closed day; ingest "
              f"{row['ingest_s']:.1f} s) ==")  # fmt: skip
        prev = None
        for step, kb in rss.items():
            grow = "" if prev is None else f"  (+{(kb['VmRSS'] - prev) * 1024 / owned:,.0f} B per owned meter)"
            print(f"  RSS after {step:<13} {kb['VmRSS'] / 1024:8.1f} MB  peak {kb['VmHWM'] / 1024:8.1f} MB{grow}")
            prev = kb["VmRSS"]
        total = sum(row["parts"].values())
        print(f"  retained state {total / 1e6:,.1f} MB = {total / owned:,.0f} B per owned meter "
              f"(checkpoint JSON of the partitions {row['checkpoint'] / owned:,.0f} B per owned meter)")  # fmt: skip
        for name, b in sorted(row["parts"].items(), key=lambda kv: -kv[1]):
            extra = f"  ({b / n:,.0f} B per registered meter)" if name == "registry" else ""
            print(f"    {name:<28} {b / owned:>9,.0f} B per owned meter{extra}")
        if row.get("sites"):
            print("    allocation sites still holding memory (tracemalloc, RSS figures above are without it):")
            for site, b in row["sites"][:top]:
                print(f"      {site:<60} {b / owned:>9,.0f} B per owned meter")
        print("    largest attributes:")
        for name, b in sorted(row["detail"].items(), key=lambda kv: -kv[1])[:top]:
            print(f"      {name:<44} {b / owned:>9,.0f} B per owned meter")
    if len(rows) >= 2:
        a, b = rows[-2], rows[-1]
        d_owned = b["owned"] - a["owned"]
        d_rss = (b["rss"]["segmentation"]["VmRSS"] - a["rss"]["segmentation"]["VmRSS"]) * 1024
        last = "checkpoint" if "checkpoint" in b["rss"] and "checkpoint" in a["rss"] else "segmentation"
        d_hwm = (b["rss"][last]["VmHWM"] - a["rss"][last]["VmHWM"]) * 1024  # peak: checkpoint encoding included
        d_state = sum(b["parts"].values()) - sum(a["parts"].values())
        print(f"\n== slope {a['owned']:,} -> {b['owned']:,} owned meters ==")
        print(f"  RSS  {d_rss / d_owned:,.0f} B per owned meter (peak, checkpoints encoded: {d_hwm / d_owned:,.0f} B); "
              f"retained state {d_state / d_owned:,.0f} B per owned meter; target <= {TARGET_BYTES_PER_METER:,} B")  # fmt: skip
        print(f"  => {d_rss / d_owned * 1e6 / 1e9:,.2f} GB of RSS per million owned meters (target <= 2 GB)")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--meters", type=int, nargs="+", default=[5_000, 50_000], help="fleet sizes (registered meters)")
    p.add_argument("--days", type=int, default=1)
    p.add_argument("--history-days", type=int, default=7, help="days of purchase history before the readings")
    p.add_argument("--interval", type=int, default=60, choices=(15, 30, 60))
    p.add_argument("--partitions", type=int, default=4, help="partitions of the fleet")
    p.add_argument("--own", type=int, default=2, help="partitions this worker owns (0 .. own-1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--top", type=int, default=12, help="largest state attributes to list")
    p.add_argument("--trace", action="store_true", help="also list allocation sites (tracemalloc, in a 2nd run)")
    p.add_argument("--json", type=Path, help="also write the figures here")
    p.add_argument("--one", type=Path, help=argparse.SUPPRESS)  # internal: measure one simulated fleet, print JSON
    args = p.parse_args(argv)
    if args.one is not None:
        print(json.dumps(measure_one(args.one, args.partitions, args.own, args.trace)))
        return 0
    rows = []
    for meters in sorted(args.meters):
        with tempfile.TemporaryDirectory(prefix="worker-memory-") as tmp:
            simulate(Path(tmp), meters, args)
            done = subprocess.run([sys.executable, "-m", "bench.worker_memory", "--one", tmp, "--partitions",
                                   str(args.partitions), "--own", str(args.own)],
                                  cwd=REPO, check=True, capture_output=True, text=True)  # fmt: skip
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
            if args.trace:  # a run of its own: tracing costs memory and time, the RSS figures are untraced
                traced = subprocess.run([sys.executable, "-m", "bench.worker_memory", "--one", tmp, "--partitions",
                                         str(args.partitions), "--own", str(args.own), "--trace"],
                                        cwd=REPO, check=True, capture_output=True, text=True)  # fmt: skip
                rows[-1]["sites"] = json.loads(traced.stdout.strip().splitlines()[-1])["sites"]
    report(rows, args.top)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
