"""Checkpoint cost against change: what a save writes when part of a partition changed, now and before.

The worker's own processors (:class:`~processors.ingest.PartitionIngest`,
:class:`~processors.segmentation.PartitionSegmentation`) are fed the simulator's output
(``meterseg simulate --sink file``: ``--meters`` meters, one day of hourly readings in ``ReadingBlock``
column blocks of ``--block`` meters, a heartbeat block every 6 h, 7 days of purchase history) for
partition 0 of 4, and checkpointed through :class:`~stream.state.checkpoints.CheckpointStore` on a
real Redis:

* **ingest**: the day's messages up to a few blocks into its middle tick (the base), a checkpoint;
  then for each ``--steps`` value k: the base restored and checkpointed, k more reading messages and a
  checkpoint. Printed per step: the share of the partition's meters those messages touched, the bytes the save wrote (new chunks and the skeleton) against the state's size,
  and the save's time (snapshot, chunking, Redis). Beside it, measured in the same run on the same
  state, what the earlier checkpoint format did on *every* checkpoint: the whole state encoded with
  orjson and written in parts of 4 MiB (``HSET`` four parts per round trip).
* **segments**: 90 % of the purchase events (the base), a checkpoint, then for each
  ``--purchase-steps`` value k: the base restored and checkpointed, k more purchases, a rescore and a
  checkpoint.
* **restore**: the last checkpoint loaded by a fresh store (every chunk read, the state joined)
  against the whole body read back and decoded (the earlier format).

Rows of a partition's columns are in the order meters first reported: a head end's block of
meters sits in neighbouring rows, so a block touches few chunks of each column. Meters reporting
in a random order across the whole partition would touch more (see docs/scaling.md).

Run (from the repository root; Redis of ``METERSEG_REDIS_URL``, or ``--redis-url``)::

    .venv/bin/python -m bench.checkpoint_delta                         # 100 000 meters, ~3 minutes
    .venv/bin/python -m bench.checkpoint_delta --meters 20000 --steps 1 5 20
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import orjson  # noqa: E402
import redis.asyncio as aioredis  # noqa: E402

from bench.worker_memory import _customer_partition, _lines, _merged, _partition_of_block  # noqa: E402
from meterseg.cli import main as meterseg_main  # noqa: E402
from meterseg.settings import Settings  # noqa: E402
from processors.columns import MeterRegistry, RawMessage  # noqa: E402
from processors.ingest import IngestConfig, PartitionIngest  # noqa: E402
from processors.segmentation import PartitionSegmentation  # noqa: E402
from stream.pipelines.ingest import meter_owner  # noqa: E402
from stream.schemas import MeterInfo  # noqa: E402
from stream.state.checkpoints import CheckpointStore  # noqa: E402

PARTITIONS = 4
#: the earlier format's part size and parts per round trip
WHOLE_PART = (4 << 20) - 4096
WHOLE_PER_CALL = 4


def simulate(out: Path, args: argparse.Namespace) -> None:
    sim = ["simulate", "--sink", "file", "--out", str(out), "--meters", str(args.meters), "--days", "1",
           "--interval", "60", "--heartbeat-minutes", "360", "--envelope", str(args.block), "--envelope-format",
           "columns", "--heartbeat-envelope", str(args.block), "--history-days", "7", "--seed", str(args.seed),
           "--partitions", str(PARTITIONS), "--no-ops", "--no-progress"]  # fmt: skip
    if meterseg_main(sim) != 0:
        raise RuntimeError("simulator failed")


async def save_whole(client: aioredis.Redis, key: str, state: Any) -> tuple[float, int]:
    """The earlier format's write of ``state``: orjson of the whole, then parts of 4 MiB; seconds and bytes."""
    started = time.perf_counter()
    body = memoryview(orjson.dumps(state, option=orjson.OPT_SERIALIZE_NUMPY))
    parts = [body[i : i + WHOLE_PART] for i in range(0, len(body), WHOLE_PART)] or [body]
    for first in range(0, len(parts), WHOLE_PER_CALL):
        pipe = client.pipeline(transaction=False)
        for i in range(first, min(len(parts), first + WHOLE_PER_CALL)):
            pipe.hset(key, str(i), bytes(parts[i]))
        await pipe.execute()
    return time.perf_counter() - started, len(body)


async def load_whole(client: aioredis.Redis, key: str) -> float:
    started = time.perf_counter()
    raw: dict[bytes, bytes] = await client.hgetall(key)  # type: ignore[misc]
    orjson.loads(b"".join(raw[str(i).encode()] for i in range(len(raw))))
    return time.perf_counter() - started


class Bench:
    def __init__(self, client: aioredis.Redis, namespace: str) -> None:
        self.client = client
        self.store = CheckpointStore(client, namespace)
        self.namespace = namespace

    async def checkpoint(self, pipeline: str, proc: Any, label: str, touched: str, partition: int = 0) -> None:
        started = time.perf_counter()
        snap = proc.snapshot()
        snapshot_s = time.perf_counter() - started
        await self.store.save(pipeline, partition, snap, {"t": 1})
        s = self.store.last_save
        assert s is not None
        whole = f"{self.namespace}:whole:{pipeline}:{partition}"
        await self.client.unlink(whole)  # the earlier format wrote each checkpoint to a fresh generation key
        whole_s, whole_b = await save_whole(self.client, whole, snap)
        print(f"  {label:<22}{touched:>12}{s.bytes / 1e6:>10.1f}{s.written / 1e6:>11.2f}{s.written / s.bytes:>9.1%}"
              f"{snapshot_s:>11.2f}{s.encode_s:>10.2f}{s.write_s:>9.2f}{whole_b / 1e6:>12.1f}{whole_s:>11.2f}",
              flush=True)  # fmt: skip

    async def restore(self, pipeline: str) -> None:
        fresh = CheckpointStore(self.client, self.namespace)
        started = time.perf_counter()
        await fresh.load(pipeline, 0)
        chunks_s = time.perf_counter() - started
        whole_s = await load_whole(self.client, f"{self.namespace}:whole:{pipeline}:0")
        print(f"  restore (read + decode): chunks {chunks_s:.2f} s, whole body (earlier format) {whole_s:.2f} s",
              flush=True)  # fmt: skip


HEADER = (f"  {'step':<22}{'touched':>12}{'state MB':>10}{'written MB':>11}{'share':>9}{'snapshot s':>11}"
          f"{'chunks s':>10}{'Redis s':>9}{'whole MB':>12}{'whole s':>11}")  # fmt: skip


async def run(sim: Path, args: argparse.Namespace, redis_url: str) -> None:
    client = aioredis.Redis.from_url(redis_url)
    bench = Bench(client, f"bench-delta-{uuid.uuid4().hex[:6]}")
    try:
        registry = MeterRegistry(MeterInfo.model_validate_json(b) for b in _lines(sim / "meter.registry.jsonl"))
        ingest = PartitionIngest(registry, IngestConfig(), owns=meter_owner(0, PARTITIONS))
        # both topics in send order (as a head end sends and the worker reads them: a partition's readings are
        # held back until its heartbeats have reached the same time)
        msgs = [(t, o, v) for t, o, v in _merged(sim, ("meter.readings", "meter.heartbeats"))
                if _partition_of_block(v, PARTITIONS) == 0]  # fmt: skip

        def feed(proc: PartitionIngest, batch: list[tuple[str, int, bytes]]) -> set[str]:
            meters: set[str] = set()
            for topic, offset, v in batch:
                m = [RawMessage(v, topic, 0, offset)]
                proc.process((m, []) if topic == "meter.readings" else ([], m), wall=0.0)
                with contextlib.suppress(orjson.JSONDecodeError, TypeError, KeyError):  # malformed
                    doc = orjson.loads(v)
                    meters.update(doc["columns"]["meter_id"] if "columns" in doc else [doc["meter_id"]])
            return meters

        # the base: a few messages into the tick nearest the middle of the day (that tick's first block closed
        # the previous hour's windows of every meter); each step starts from this base, restored
        sent = [v[v.find(b'"sent_at":"') + 11 :][:20] for _, _, v in msgs]
        ticks = [i for i in range(1, len(sent)) if sent[i] != sent[i - 1]]
        base = min(ticks, key=lambda i: abs(i - len(msgs) // 2)) + 5
        feed(ingest, msgs[:base])
        owned = len(ingest.health.rows)
        print(f"\ningest, partition 0: {owned:,} meters, {len(msgs):,} reading and heartbeat messages (blocks of up "
              f"to {args.block}) in the day; the base: the first {base:,}, 5 into a tick", flush=True)  # fmt: skip
        print(HEADER, flush=True)
        await bench.checkpoint("ingest", ingest, "first checkpoint", "all")
        base_state = ingest.snapshot()
        del ingest
        for n, k in enumerate(args.steps, start=1):
            proc = PartitionIngest.restore(base_state, registry, IngestConfig(), owns=meter_owner(0, PARTITIONS))
            await bench.store.save("ingest", n, base_state, {"t": 0})  # the base, checkpointed
            meters = feed(proc, msgs[base : base + k])
            await bench.checkpoint("ingest", proc, f"base +{k} messages", f"{len(meters) / owned:.1%}", n)
        del base_state
        await bench.restore("ingest")

        purchases = [v for v in _lines(sim / "customer.purchases.jsonl") if _customer_partition(v, PARTITIONS) == 0]
        seg = PartitionSegmentation()
        warm = int(len(purchases) * 0.9)
        for a in range(0, warm, 500):
            seg.process(([RawMessage(v, "customer.purchases", 0, a + i) for i, v in
                          enumerate(purchases[a : min(warm, a + 500)])], []), wall=0.0)  # fmt: skip
        seg.rescore(0.0, caught_up=True)
        customers = len(seg.rfm.customers)
        print(f"\nsegments, partition 0: {customers:,} customers with purchases, {len(purchases):,} purchase events; "
              "90 % processed", flush=True)  # fmt: skip
        print(HEADER, flush=True)
        await bench.checkpoint("segments", seg, "first checkpoint", "all")
        base_state = seg.snapshot()
        del seg
        for n, k in enumerate(args.purchase_steps, start=1):
            proc = PartitionSegmentation.restore(base_state)
            await bench.store.save("segments", n, base_state, {"t": 0})
            batch = purchases[warm : warm + k]
            buyers = {orjson.loads(v).get("customer_id") for v in batch}
            proc.process(([RawMessage(v, "customer.purchases", 0, warm + i) for i, v in enumerate(batch)], []), wall=0.0)
            proc.rescore(0.0, caught_up=True)
            await bench.checkpoint("segments", proc, f"base +{len(batch)} purchases", f"{len(buyers) / customers:.1%}", n)
        await bench.restore("segments")
    finally:
        keys = [k async for k in client.scan_iter(match=f"{bench.namespace}*", count=1000)]
        if keys:
            await client.unlink(*keys)
        await client.aclose()


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--meters", type=int, default=100_000)
    p.add_argument("--block", type=int, default=100, help="meters per reading block")
    p.add_argument("--steps", type=int, nargs="+", default=[1, 10, 50, 200], help="reading messages between checkpoints")
    p.add_argument("--purchase-steps", type=int, nargs="+", default=[1, 10, 100, 1000])
    p.add_argument("--seed", type=int, default=3)
    p.add_argument("--redis-url", default=Settings().redis_url)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="checkpoint-delta-") as tmp:
        began = time.perf_counter()
        simulate(Path(tmp), args)
        print(f"simulated {args.meters:,} meters in {time.perf_counter() - began:.0f} s", flush=True)
        asyncio.run(run(Path(tmp), args, args.redis_url))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
