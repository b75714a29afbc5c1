"""How the customer projection and the per-meter state spread over a Redis Cluster's masters: keys, slots, memory.

Writes ``--customers`` customers through the engine's own writer (:class:`stream.state.segments.MembershipStore`:
an rfm and a behaviour entry each, so a customer hash, a history and two member-set entries), then ``--meters``
meters' per-meter state through the ingest pipeline's writers (:class:`stream.state.meters.MeterStore`,
:class:`stream.state.health.HealthStore`): ``--days`` closed daily windows each (the day's kWh rankings, overall
and by region, and the recent-windows list), a health record each (a tenth fair, a tenth poor) and three alerts
for a tenth of them, records shaped as the worker's. It prints, per master, the customer and meter keys it holds
and the growth of its ``used_memory`` per phase and in all, with the spread against the mean. Without ``--url``
it starts a three-master cluster of its own (``redis-server --cluster-enabled yes``, ``redis-cli --cluster
create``) in a temporary directory and stops it at the end.

    .venv/bin/python -m bench.cluster_spread                                 # 100 000 customers, 10 000 meters x 30 days
    .venv/bin/python -m bench.cluster_spread --customers 100000 --meters 0 --shards 1   # the earlier one-tag layout
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import redis

from meterseg.settings import Settings
from processors.health import MeterHealth
from processors.segments import SegmentChange
from stream.clients.redis_client import async_redis, sync_redis
from stream.state.health import HealthStore
from stream.state.keys import customer_keys, meter_keys
from stream.state.meters import MeterStore
from stream.state.segments import MembershipStore

RFM = ("champions", "loyal", "potential_loyalist", "at_risk", "hibernating", "lost")
REGIONS = ("North", "South", "East", "West", "Central")
DAY0 = datetime(2026, 1, 1, tzinfo=UTC)
STATES = ("good",) * 8 + ("fair", "poor")


def _port() -> int:
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port <= 55535:  # a cluster node's bus port is port + 10000
            return port


@contextlib.contextmanager
def local_cluster(masters: int = 3) -> Iterator[str]:
    """A fresh cluster of ``masters`` masters on free ports; yields a node's URL."""
    server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    if not server or not cli:
        raise SystemExit("redis-server and redis-cli are needed (Debian packages redis-server, redis-tools)")
    ports = [_port() for _ in range(masters)]
    procs = []
    with tempfile.TemporaryDirectory() as tmp:
        try:
            for port in ports:
                (Path(tmp) / str(port)).mkdir()
                procs.append(subprocess.Popen(
                    [server, "--port", str(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
                     "--cluster-config-file", "nodes.conf", "--dir", str(Path(tmp) / str(port)),
                     "--appendonly", "no", "--save", ""],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))  # fmt: skip
            for port in ports:
                for _ in range(100):
                    with contextlib.suppress(redis.ConnectionError):
                        if redis.Redis(port=port).ping():
                            break
                    time.sleep(0.1)
            subprocess.run([cli, "--cluster", "create", *[f"127.0.0.1:{p}" for p in ports], "--cluster-replicas", "0",
                            "--cluster-yes"], check=True, capture_output=True, timeout=60)  # fmt: skip
            for port in ports:
                for _ in range(100):
                    if "cluster_state:ok" in str(redis.Redis(port=port).execute_command("CLUSTER", "INFO")):
                        break
                    time.sleep(0.2)
            yield f"redis://127.0.0.1:{ports[0]}/0"
        finally:
            for proc in procs:
                proc.terminate()
                proc.wait(timeout=15)


def _change(customer: str, family: str, segment: str) -> SegmentChange:
    return SegmentChange.model_validate({
        "customer_id": customer, "family": family, "segment_id": segment, "segment_name": segment,
        "change": "entry", "from_segment": None, "to_segment": segment,
        "at": datetime(2026, 1, 5, tzinfo=UTC), "reason": "score_change",
    })  # fmt: skip


async def _write(settings: Settings, customers: int, batch: int = 2000) -> None:
    client = async_redis(settings)
    try:
        store = MembershipStore(client, settings.redis_namespace, settings.state_shards)
        for start in range(0, customers, batch):
            ids = [f"C{i:08d}" for i in range(start, min(customers, start + batch))]
            await store.apply([c for i, cid in enumerate(ids) for c in (
                _change(cid, "rfm", RFM[(start + i) % len(RFM)]), _change(cid, "behaviour", f"B{(start + i) % 5 + 1}"))])  # fmt: skip
    finally:
        await client.aclose()


def _window(meter: str, day: int, i: int) -> dict[str, object]:
    """A closed daily meter window as the worker emits it (stream.pipelines.ingest, ``ClosedWindows.to_records``)."""
    start = DAY0.timestamp() + day * 86_400
    kwh = round(4.0 + (i * 7919 + day * 104_729) % 1_700 / 100, 3)
    return {"kind": "meter", "key": meter, "window": "1d",
            "window_start": datetime.fromtimestamp(start, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "window_end": datetime.fromtimestamp(start + 86_400, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "kwh_in": kwh, "kwh_out": 0.0, "readings": 96, "expected": 96, "completeness": 1.0,
            "min_kw": 0.05, "max_kw": round(kwh / 6, 3), "mean_kw": round(kwh / 24, 3), "revision": 0}  # fmt: skip


def _alert(meter: str, k: int) -> dict[str, object]:
    return {"schema_version": 1, "alert_id": f"{meter}:spike:raised:{1_767_225_600 + k}", "meter_id": meter,
            "customer_id": "C" + meter[1:], "kind": "spike", "action": "raised", "health": "fair",
            "reasons": ["spike"], "ts": "2026-01-05T01:20:13Z", "detail": "value=31.2"}  # fmt: skip


async def _write_meters(settings: Settings, meters: int, days: int, batch: int = 500) -> None:
    client = async_redis(settings)
    try:
        keys = meter_keys(settings)
        store, health = MeterStore(client, keys), HealthStore(client, keys)
        for start in range(0, meters, batch):
            ids = [(i, f"M{i:08d}") for i in range(start, min(meters, start + batch))]
            await health.save([MeterHealth(m, STATES[i % 10], () if i % 10 < 8 else ("spike",), 1_767_225_600)
                               for i, m in ids])  # fmt: skip
            for day in range(days):
                alerts = [_alert(m, day) for i, m in ids if i % 10 == 0 and day < 3]
                await store.save([(_window(m, day, i), REGIONS[i % len(REGIONS)]) for i, m in ids], alerts)
    finally:
        await client.aclose()


def _used(client: redis.cluster.RedisCluster) -> dict[str, int]:
    out = {}
    for node in client.get_primaries():
        out[node.name] = int(client.info("memory", target_nodes=node)["used_memory"])
    return out


def _count(client: redis.cluster.RedisCluster, patterns: list[str]) -> tuple[Counter[str], set[int]]:
    per_master: Counter[str] = Counter()
    slots: set[int] = set()
    for pattern in patterns:
        for key in client.scan_iter(match=pattern, count=5000):
            per_master[client.get_node_from_key(key).name] += 1
            slots.add(client.keyslot(key))
    return per_master, slots


def _spread(grown: dict[str, int]) -> tuple[float, float]:
    """(lowest, highest) growth against the mean, in %."""
    mean = sum(grown.values()) / len(grown)
    return tuple((v - mean) / mean * 100 if mean else 0.0 for v in (min(grown.values()), max(grown.values())))  # type: ignore[return-value]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--meters", type=int, default=10_000)
    parser.add_argument("--days", type=int, default=30, help="closed daily windows per meter")
    parser.add_argument("--shards", type=int, default=None, help="default: the cluster default (64)")
    parser.add_argument("--url", default=None, help="a node of an existing cluster (default: start one)")
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        url = args.url or stack.enter_context(local_cluster())
        settings = Settings(app_id=f"spread-{uuid.uuid4().hex[:6]}", redis_url=url, redis_cluster=True,
                            redis_shards=args.shards)  # fmt: skip
        client = sync_redis(settings)
        before = _used(client)
        started = time.perf_counter()
        asyncio.run(_write(settings, args.customers))
        took = time.perf_counter() - started
        middle = _used(client)
        started = time.perf_counter()
        if args.meters:
            asyncio.run(_write_meters(settings, args.meters, args.days))
        took_meters = time.perf_counter() - started
        after = _used(client)
        keys = customer_keys(settings)
        customers, slots = _count(client, keys.customer_patterns())
        meters, meter_slots = _count(client, meter_keys(settings).patterns())
        phases = {"customers": {n: middle[n] - before[n] for n in after},
                  "meters": {n: after[n] - middle[n] for n in after},
                  "in all": {n: after[n] - before[n] for n in after}}  # fmt: skip
        print(f"{args.customers:,} customers, {keys.shards} shard(s), written in {took:.1f} s "
              f"({args.customers / max(took, 1e-9):,.0f} customers/s); customer keys in {len(slots)} slots")  # fmt: skip
        print(f"{args.meters:,} meters x {args.days} days, written in {took_meters:.1f} s; meter keys in "
              f"{len(meter_slots)} slots")  # fmt: skip
        for name in sorted(after):
            print(f"  master {name}: {customers[name]:>9,} customer keys, {meters[name]:>9,} meter keys; used_memory "
                  + ", ".join(f"{phases[p][name] / 1e6:+.2f} MB {p}" for p in phases))  # fmt: skip
        for phase, grown in phases.items():
            low, high = _spread(grown)
            print(f"  used_memory growth, {phase}: {sum(grown.values()) / 1e6:,.1f} MB, per master {low:+.0f} % .. "
                  f"{high:+.0f} % of the mean")  # fmt: skip
        for pattern in (f"{settings.redis_namespace}:*", f"{{{settings.app_id}:*"):
            for key in client.scan_iter(match=pattern, count=5000):
                client.delete(key)
        client.close()


if __name__ == "__main__":
    main()
