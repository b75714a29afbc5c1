"""``meterseg stack up | down | status``."""

from __future__ import annotations

import argparse
import shlex
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
            "State lives in METERSEG_STACK__STATE_DIR (default ./.state). With --sasl (or "
            "METERSEG_STACK__KAFKA_SASL=true) the broker also listens with SASL_PLAINTEXT / SCRAM-SHA-512 "
            "on METERSEG_STACK__KAFKA_SASL_PORT (9094), with --tls (METERSEG_STACK__KAFKA_TLS=true) with "
            "SASL_SSL on METERSEG_STACK__KAFKA_SSL_PORT (9095); the SCRAM user is "
            "METERSEG_KAFKA_SECURITY__USERNAME / __PASSWORD."
        ),
    )
    p.add_argument("action", choices=["up", "down", "status"], help="start, stop or inspect the stack")
    p.add_argument("--no-prometheus", action="store_true", help="run only Kafka and Redis")
    p.add_argument(
        "--sasl",
        action="store_true",
        default=None,
        help="add a SASL_PLAINTEXT (SCRAM-SHA-512) listener; the user comes from METERSEG_KAFKA_SECURITY__*",
    )
    p.add_argument(
        "--tls",
        action="store_true",
        default=None,
        help="add a SASL_SSL (SCRAM-SHA-512 over TLS) listener with a CA of its own in <state>/kafka/tls/",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = Settings()
    stack = LocalStack.from_settings(settings, with_prometheus=not args.no_prometheus, sasl=args.sasl, tls=args.tls)
    try:
        if args.action == "up":
            started = time.monotonic()
            for name, outcome in stack.up(settings.stack.start_timeout_s).items():
                print(f"{name:<11} {outcome}")
            print(f"stack ready in {time.monotonic() - started:.1f} s")
            rc = print_status(stack)
            print_client_env(stack, settings)
            return rc
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

    listeners = [stack.kafka.bootstrap]  # and the SASL ones the running (or last) broker was configured with
    listeners += [f"{name.lower()}={address}" for name, address in stack.kafka.configured_listeners().items()
                  if name != "PLAINTEXT"]  # fmt: skip
    addresses = {
        "kafka": " ".join(listeners),
        "redis": mask_url(stack.redis.url),
        "prometheus": stack.prometheus.url if stack.prometheus else "",
    }
    ok = True
    for name, (pid, healthy) in stack.status().items():
        ok &= healthy
        state = "healthy" if healthy else ("running, not answering" if pid else "down")
        print(f"{name:<11} {state:<24} pid={pid or '-':<8} {addresses[name]}")
    return 0 if ok else 3


def print_client_env(stack: LocalStack, settings: Settings) -> None:
    """With SASL listeners: the variables that point the worker, simulator and demo at them (no password)."""
    env = stack.kafka_client_env
    if "METERSEG_KAFKA_SECURITY__PROTOCOL" not in env:
        return
    print("clients (worker, simulator, importers, demo) connect with SCRAM-SHA-512 through:")
    for name, value in env.items():
        print(f"  export {name}={shlex.quote(value)}")
    print(f"  export METERSEG_KAFKA_SECURITY__USERNAME={shlex.quote(settings.kafka_security.username or '')}")
    print("  export METERSEG_KAFKA_SECURITY__PASSWORD=...   # the password the stack was started with")
