"""``meterseg demo``: the main job a newcomer runs first.

It brings the local stack up (Kafka, Redis, Prometheus), checks that every
part answers and prints where each one is. Later stages (workers, simulated
fleet, live summary) plug in here as they land.
"""

from __future__ import annotations

import argparse
import sys
import time

from meterseg.settings import Settings
from meterseg.stack import LocalStack, StackError
from meterseg.stack.cli import print_status


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "demo",
        help="bring the local stack up and run the engine on a simulated fleet",
        description="Start Kafka, Redis and Prometheus locally and show that they are healthy.",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = Settings()
    stack = LocalStack.from_settings(settings)
    print("meterseg demo: starting the local stack (first run fetches Kafka's jars with Maven) ...", flush=True)
    started = time.monotonic()
    try:
        for name, outcome in stack.up(settings.stack.start_timeout_s).items():
            print(f"  {name:<11} {outcome}", flush=True)
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"stack ready in {time.monotonic() - started:.1f} s\n")
    rc = print_status(stack)
    print("\nStop it with: .venv/bin/meterseg stack down")
    return rc
