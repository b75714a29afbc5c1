"""``meterseg worker``: run the engine's agents against Kafka and Redis; ``compact-customers``, ``reshard-customers``."""

from __future__ import annotations

import argparse
import logging

from meterseg.settings import Settings


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "worker",
        help="run an engine worker (ingestion, windows, health, segmentation)",
        description=(
            "Run one worker of the engine. Several workers with the same METERSEG_APP_ID share the "
            "partitions of one consumer group. Settings come from METERSEG_* environment variables."
        ),
    )
    p.add_argument("--metrics-port", type=int, help="Prometheus endpoint port (default METERSEG_METRICS_PORT)")
    p.add_argument("--web-port", type=int, help="HTTP API port (default METERSEG_WEB_PORT)")
    p.add_argument("--loglevel", default="info", choices=["crit", "error", "warn", "info", "debug"])
    p.set_defaults(func=run)
    c = sub.add_parser(
        "compact-customers",
        help="rewrite customer hashes written by earlier versions (JSON values) in the compact stored format",
        description=(
            "Redis keeps a hash that ever held a long value in its large hashtable encoding. This rewrites "
            "every such {ns}:cust:{id} hash of METERSEG_APP_ID in the current format "
            "(stream/state/customer_codec.py), one transaction per key; safe beside running workers."
        ),
    )
    c.set_defaults(func=compact)
    r = sub.add_parser(
        "reshard-customers",
        help="move the customer projection, member sets and per-meter state to the shard count of the settings",
        description=(
            "The customer hashes, histories and segment member sets, and the per-meter keys (health, "
            "recent windows and alerts, daily kWh rankings) are spread over hash-tag shards "
            "(METERSEG_REDIS_SHARDS; 64 on a Redis Cluster, 1 on one server). Data written with another "
            "count (an earlier version: one shard) is moved key by key (DUMP/RESTORE, SADD/SREM, ZADD/ZREM); "
            "a worker refuses to start until it is. Stop the workers first; safe to interrupt and run again."
        ),
    )
    r.set_defaults(func=reshard_customers)


def run(args: argparse.Namespace) -> int:
    from faust.worker import Worker

    from stream import metrics
    from stream.worker import build_app

    overrides = {}
    if args.metrics_port:
        overrides["metrics_port"] = args.metrics_port
    if args.web_port:
        overrides["web_port"] = args.web_port
    settings = Settings(**overrides)
    import asyncio
    import sys

    from stream.topics import TopicLayoutError, ensure_topics, with_cluster_replication
    from stream.web.auth import InsecureApiToken, require_secret_token

    try:
        require_secret_token(settings)
    except InsecureApiToken as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    import redis

    from stream.clients.redis_client import sync_redis
    from stream.state.reshard import LayoutMismatch, check_layout

    client = sync_redis(settings)
    try:
        check_layout(client, settings.redis_namespace, settings.state_shards)
    except LayoutMismatch as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (redis.ConnectionError, redis.TimeoutError) as exc:  # the engine waits for Redis; checked at the next start
        logging.getLogger(__name__).warning("Redis unreachable, the customer key layout is not checked: %s", exc)
    finally:
        client.close()
    # topics first: Faust subscribes its agents before the engine service starts
    try:
        settings = asyncio.run(with_cluster_replication(settings))
        asyncio.run(ensure_topics(settings))
    except TopicLayoutError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    metrics.serve(settings.metrics_port)
    metrics.init_known_labels([], [])  # the known label values at 0 from the first scrape, before any event
    logging.getLogger(__name__).info("metrics on http://0.0.0.0:%d/metrics", settings.metrics_port)
    app, _ = build_app(settings)
    worker = Worker(app, loglevel=args.loglevel)
    worker.execute_from_commandline()
    return 0


def compact(args: argparse.Namespace) -> int:
    from stream.clients.redis_client import sync_redis
    from stream.state.segments import compact_customer_hashes

    settings = Settings()
    client = sync_redis(settings)
    try:
        counts = compact_customer_hashes(client, settings.redis_namespace, shards=settings.state_shards)
    finally:
        client.close()
    print(", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in counts.items()))
    return 0


def reshard_customers(args: argparse.Namespace) -> int:
    import time

    from stream.clients.redis_client import sync_redis
    from stream.state.reshard import reshard

    settings = Settings()
    client = sync_redis(settings)
    last = [time.monotonic()]

    def progress(counts: dict[str, int]) -> None:
        if time.monotonic() - last[0] >= 5.0:
            last[0] = time.monotonic()
            print(f"... {counts['customer_keys']:,} customer keys and {counts['members']:,} members, "
                  f"{counts.get('meter_keys', 0):,} meter keys and {counts.get('meter_members', 0):,} meter entries moved",
                  flush=True)  # fmt: skip

    try:
        counts = reshard(client, settings.redis_namespace, settings.state_shards, progress)
    finally:
        client.close()
    print(f"customer projection of {settings.app_id}: {counts['from_shards']} -> {counts['to_shards']} shard(s); "
          f"{counts['customer_keys']:,} customer keys and {counts['members']:,} segment members moved; "
          f"per-meter state: {counts['meter_from_shards']} -> {counts['to_shards']} shard(s); {counts['meter_keys']:,} "
          f"meter keys and {counts['meter_members']:,} health-state and ranking entries moved")  # fmt: skip
    return 0
