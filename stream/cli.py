"""``meterseg worker``: run the engine's agents against Kafka and Redis."""

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

    from stream.topics import ensure_topics

    # topics first: Faust subscribes its agents before the engine service starts
    asyncio.run(ensure_topics(settings))
    metrics.serve(settings.metrics_port)
    logging.getLogger(__name__).info("metrics on http://0.0.0.0:%d/metrics", settings.metrics_port)
    app, _ = build_app(settings)
    worker = Worker(app, loglevel=args.loglevel)
    worker.execute_from_commandline()
    return 0
