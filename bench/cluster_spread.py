"""How the customer projection spreads over a Redis Cluster's masters: keys, slots and memory per master.

Writes ``--customers`` customers through the engine's own writer (:class:`stream.state.segments.MembershipStore`:
an rfm and a behaviour entry each, so a customer hash, a history and two member-set entries) and prints, per
master, the customer keys it holds and the growth of its ``used_memory``, with the spread against the mean.
Without ``--url`` it starts a three-master cluster of its own (``redis-server --cluster-enabled yes``,
``redis-cli --cluster create``) in a temporary directory and stops it at the end.

    .venv/bin/python -m bench.cluster_spread --customers 100000
    .venv/bin/python -m bench.cluster_spread --customers 100000 --shards 1   # the earlier one-tag layout
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
from processors.segments import SegmentChange
from stream.clients.redis_client import async_redis, sync_redis
from stream.state.keys import customer_keys
from stream.state.segments import MembershipStore

RFM = ("champions", "loyal", "potential_loyalist", "at_risk", "hibernating", "lost")


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


def _used(client: redis.cluster.RedisCluster) -> dict[str, int]:
    out = {}
    for node in client.get_primaries():
        out[node.name] = int(client.info("memory", target_nodes=node)["used_memory"])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=100_000)
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
        after = _used(client)
        keys = customer_keys(settings)
        per_master: Counter[str] = Counter()
        slots: set[int] = set()
        for pattern in keys.customer_patterns():
            for key in client.scan_iter(match=pattern, count=5000):
                per_master[client.get_node_from_key(key).name] += 1
                slots.add(client.keyslot(key))
        grown = {n: after[n] - before[n] for n in after}
        mean = sum(grown.values()) / len(grown)
        print(f"{args.customers:,} customers, {keys.shards} shard(s), written in {took:.1f} s "
              f"({args.customers / took:,.0f} customers/s); customer keys in {len(slots)} slots")  # fmt: skip
        for name in sorted(grown):
            print(f"  master {name}: {per_master[name]:>9,} customer keys, used_memory +{grown[name] / 1e6:8.2f} MB "
                  f"({(grown[name] - mean) / mean * 100 if mean else 0.0:+.0f} % against the mean)")  # fmt: skip
        for pattern in (f"{settings.redis_namespace}:*", f"{{{settings.app_id}:*"):
            for key in client.scan_iter(match=pattern, count=5000):
                client.delete(key)
        client.close()


if __name__ == "__main__":
    main()
