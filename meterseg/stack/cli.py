"""``meterseg stack up | down | status``."""

from __future__ import annotations

import argparse
import sys
import time

from meterseg.settings import Settings
from meterseg.stack import LocalStack, StackError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "stack",
        help="run the local Kafka (KRaft), Redis and Prometheus",
        description=(
            "Manage the local stack: Apache Kafka in KRaft mode (jars fetched once with Maven), "
            "redis-server and prometheus (Debian packages, installed when missing and running as root). "
            "State lives in METERSEG_STACK__STATE_DIR (default ./.state)."
        ),
    )
    p.add_argument("action", choices=["up", "down", "status"], help="start, stop or inspect the stack")
    p.add_argument("--no-prometheus", action="store_true", help="run only Kafka and Redis")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = Settings()
    stack = LocalStack.from_settings(settings, with_prometheus=not args.no_prometheus)
    try:
        if args.action == "up":
            started = time.monotonic()
            for name, outcome in stack.up(settings.stack.start_timeout_s).items():
                print(f"{name:<11} {outcome}")
            print(f"stack ready in {time.monotonic() - started:.1f} s")
            return print_status(stack)
        if args.action == "down":
            for name, stopped in stack.down().items():
                print(f"{name:<11} {'stopped' if stopped else 'was not running'}")
            return 0
        return print_status(stack)
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def print_status(stack: LocalStack) -> int:
    from stream.clients.security import mask_url

    addresses = {
        "kafka": stack.kafka.bootstrap,
        "redis": mask_url(stack.redis.url),
        "prometheus": stack.prometheus.url if stack.prometheus else "",
    }
    ok = True
    for name, (pid, healthy) in stack.status().items():
        ok &= healthy
        state = "healthy" if healthy else ("running, not answering" if pid else "down")
        print(f"{name:<11} {state:<24} pid={pid or '-':<8} {addresses[name]}")
    return 0 if ok else 3
