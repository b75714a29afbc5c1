"""``meterseg demo``: the main job a newcomer runs first.

Brings the local stack up (Kafka, Redis, Prometheus), starts an engine worker
and the fleet simulator, shows progress while the simulated days stream
through, and prints a summary an operator can read: meters, readings/s,
alerts by kind, segments with sizes and recent segment changes, with the
addresses of the metrics, Prometheus and the API. Ctrl-C stops everything it
started (the stack keeps running; ``meterseg stack down`` stops it).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.request import urlopen

from meterseg.settings import Settings
from meterseg.stack import LocalStack, StackError
from simulators.commerce import PRICE_PER_KWH

#: development values of the demo (one local broker); an explicit environment variable wins
DEMO_ENV = {
    "METERSEG_TOPIC_REPLICATION_FACTOR": "1",
    "METERSEG_TOPIC_MIN_INSYNC_REPLICAS": "1",
    "METERSEG_WEB_BIND": "127.0.0.1",
    # tariff revenue in the regional windows (revenue by region and event day): the simulator's price per kWh
    "METERSEG_INGEST__WINDOWS__PRICE_PER_KWH": json.dumps({"prepaid": PRICE_PER_KWH, "postpaid": PRICE_PER_KWH}),
}


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "demo",
        help="run the whole engine on a simulated fleet (stack, worker, simulator, live summary)",
        description=(
            "Start the local stack, an engine worker and the fleet simulator; show progress and a summary "
            "(meters, readings/s, alerts by kind, segments, recent segment changes). Ctrl-C stops what it started."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--meters", type=int, default=2000, help="meters in the simulated fleet")
    p.add_argument("--days", type=int, default=3, help="simulated days")
    p.add_argument("--speed", type=float, default=2880.0, help="simulated seconds per wall second (2880 = a day in 30 s)")
    p.add_argument("--envelope", type=int, default=0, help="readings per head-end envelope (0 = one per message)")
    p.add_argument("--seed", type=int, default=1, help="simulator seed")
    p.add_argument("--history-days", type=int, default=90, help="days of purchase history before the start (RFM)")
    p.add_argument("--keep", action="store_true", help="keep earlier demo data (default: start from empty topics and state)")
    p.add_argument("--exit-when-done", action="store_true", help="exit after the final summary instead of waiting")
    p.add_argument("--log-dir", type=Path, default=None, help="where worker and simulator logs go (default: state dir)")
    p.set_defaults(func=run)


@dataclass
class DemoProcesses:
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    on_stop: list[Callable[[], object]] = field(default_factory=list)

    def stop(self) -> None:
        for hook in self.on_stop:
            with contextlib.suppress(Exception):
                hook()
        for proc in reversed(list(self.procs.values())):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 30
        for name, proc in self.procs.items():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                print(f"  {name} did not stop in time; killing it", flush=True)
                proc.kill()
                proc.wait()


def _get(url: str) -> str:
    with urlopen(url, timeout=3) as resp:
        return str(resp.read().decode())


def _metrics(port: int) -> dict[str, float]:
    """Samples of the worker's metrics endpoint, keyed by the full sample name with labels."""
    out: dict[str, float] = {}
    with contextlib.suppress(Exception):
        for line in _get(f"http://127.0.0.1:{port}/metrics").splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                with contextlib.suppress(ValueError):
                    out[name] = float(value)
    return out


def _sum(samples: dict[str, float], prefix: str, contains: str = "") -> float:
    return sum(v for k, v in samples.items() if k.startswith(prefix) and contains in k)


def _label(sample: str, label: str) -> str:
    """Value of ``label`` in a sample name like ``metric{a="x",b="y"}``."""
    return sample.split(f'{label}="', 1)[1].split('"', 1)[0] if f'{label}="' in sample else ""


def _label_totals(samples: dict[str, float], metric: str, label: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for key, value in samples.items():
        if key.startswith(metric + "{") and f'{label}="' in key:
            name = _label(key, label)
            out[name] = out.get(name, 0.0) + value
    return out


@contextlib.contextmanager
def _processes() -> Iterator[DemoProcesses]:
    procs = DemoProcesses()
    try:
        yield procs
    finally:
        procs.stop()


def run(args: argparse.Namespace) -> int:
    import logging

    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    # the local stack is one broker on this machine: development values, said explicitly (production
    # defaults: replication 3, min.insync.replicas 2, API on every interface)
    for name, value in DEMO_ENV.items():
        os.environ.setdefault(name, value)
    settings = Settings()
    stack = LocalStack.from_settings(settings)
    print("meterseg demo: starting the local stack (the first run fetches Kafka's jars with Maven) ...", flush=True)
    started = time.monotonic()
    try:
        for name, outcome in stack.up(settings.stack.start_timeout_s).items():
            print(f"  {name:<11} {outcome}", flush=True)
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"stack ready in {time.monotonic() - started:.1f} s", flush=True)
    if not args.keep:
        _reset(settings)
    set_clock_frozen(settings, False)  # a new simulation: the engine's clocks follow it again
    log_dir = args.log_dir or Path(settings.stack.state_dir) / "demo"
    log_dir.mkdir(parents=True, exist_ok=True)
    token = demo_api_token(settings, Path(settings.stack.state_dir) / "demo")
    settings = settings.model_copy(update={"api_token": token})
    env = {**os.environ, "METERSEG_INGEST__CLOCK_RATE": str(args.speed), "METERSEG_API_TOKEN": token}
    cli = [sys.executable, "-m", "meterseg.cli"]
    with _processes() as procs:
        try:
            return _run(args, settings, stack, cli, env, log_dir, procs)
        except KeyboardInterrupt:
            print("\nstopping the worker and the simulator ...", flush=True)
            return 130


def set_clock_frozen(settings: Settings, frozen: bool) -> None:
    """Tell the engine its source has finished (``{app}:clock:frozen``: clocks stop at the last event) or not."""
    from stream.clients.redis_client import sync_redis

    client = sync_redis(settings)
    try:
        key = f"{settings.redis_namespace}:clock:frozen"
        if frozen:
            client.set(key, "1")
        else:
            client.delete(key)
    finally:
        client.close()


def demo_api_token(settings: Settings, demo_dir: Path) -> str:
    """The API token of the demo's worker: ``METERSEG_API_TOKEN`` when set to a secret, else a generated one.

    A generated token is kept in ``<state>/demo/api-token`` (mode 0600) and reused by the next demo run, so the
    README's ``export METERSEG_API_TOKEN=$(cat .state/demo/api-token)`` works as pasted.
    """
    import secrets

    from meterseg.settings import DEFAULT_API_TOKEN

    if settings.api_token.strip() and settings.api_token != DEFAULT_API_TOKEN:
        return settings.api_token
    path = demo_dir / "api-token"
    if path.exists() and path.read_text().strip():
        return path.read_text().strip()
    demo_dir.mkdir(parents=True, exist_ok=True)
    token = secrets.token_hex(24)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(token + "\n")
    return token


def _run(
    args: argparse.Namespace,
    settings: Settings,
    stack: LocalStack,
    cli: list[str],
    env: dict[str, str],
    log_dir: Path,
    procs: DemoProcesses,
) -> int:
    worker_log = (log_dir / "worker.log").open("wb")
    procs.procs["worker"] = subprocess.Popen(
        [*cli, "worker", "--loglevel", "warn"], env=env, stdout=worker_log, stderr=subprocess.STDOUT
    )
    print(f"worker starting (log: {log_dir / 'worker.log'}) ...", flush=True)
    if stack.prometheus is not None:  # Prometheus scrapes the workers that exist: this one, while it runs
        stack.prometheus.register_target("demo-worker", f"127.0.0.1:{settings.metrics_port}")
        procs.on_stop.append(lambda: stack.prometheus.unregister_target("demo-worker") if stack.prometheus else None)
    health_url = f"http://127.0.0.1:{settings.web_port}/health"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if procs.procs["worker"].poll() is not None:
            print(f"error: the worker exited; see {log_dir / 'worker.log'}", file=sys.stderr)
            return 1
        with contextlib.suppress(Exception):
            if json.loads(_get(health_url)).get("status") == "ok":
                break
        time.sleep(0.5)
    else:
        print(f"error: the worker did not become healthy; see {log_dir / 'worker.log'}", file=sys.stderr)
        return 1
    console_port = settings.console_port
    if not args.exit_when_done:  # the web console, beside the worker's API (console/)
        console_log = (log_dir / "console.log").open("wb")
        procs.procs["console"] = subprocess.Popen(
            [*cli, "console", "--port", str(console_port)], env=env, stdout=console_log, stderr=subprocess.STDOUT
        )
    print(
        f"API on http://127.0.0.1:{settings.web_port} with token {settings.api_token} "
        f"(metrics on http://127.0.0.1:{settings.metrics_port}/metrics)",
        flush=True,
    )
    sim_log = (log_dir / "simulator.log").open("wb")
    sim_args = [
        "simulate", "--meters", str(args.meters), "--days", str(args.days), "--speed", str(args.speed),
        "--envelope", str(args.envelope), "--seed", str(args.seed), "--no-progress",
        "--history-days", str(args.history_days),
        "--ground-truth", str(log_dir / "truth.json"), "--summary-json", str(log_dir / "simulation.json"),
    ]  # fmt: skip
    procs.procs["simulator"] = subprocess.Popen([*cli, *sim_args], env=env, stdout=sim_log, stderr=subprocess.STDOUT)
    print(
        f"simulating {args.meters:,} meters x {args.days} days at {args.speed:g}x "
        f"(log: {log_dir / 'simulator.log'}); Ctrl-C stops\n",
        flush=True,
    )
    last, last_t = 0.0, time.monotonic()
    sim_done_at: float | None = None
    while True:
        time.sleep(2.0)
        samples = _metrics(settings.metrics_port)
        readings = _sum(samples, "meterseg_readings_processed_total")
        now = time.monotonic()
        rate = (readings - last) / max(now - last_t, 1e-6)
        last, last_t = readings, now
        alerts = _sum(samples, "meterseg_alerts_total", 'action="raised"')
        dead = _sum(samples, "meterseg_deadletter_total")
        changes = _sum(samples, "meterseg_segment_entries_total")
        print(
            f"\r  readings {readings:>12,.0f}  ({rate:>9,.0f}/s)   alerts raised {alerts:>7,.0f}   "
            f"dead letters {dead:>6,.0f}   segment entries {changes:>8,.0f}",
            end="",
            flush=True,
        )
        sim = procs.procs["simulator"]
        if sim.poll() is not None and sim_done_at is None:
            sim_done_at = now
            if sim.returncode != 0:
                print(f"\nerror: the simulator failed; see {log_dir / 'simulator.log'}", file=sys.stderr)
                return 1
        if procs.procs["worker"].poll() is not None:
            print(f"\nerror: the worker exited; see {log_dir / 'worker.log'}", file=sys.stderr)
            return 1
        if sim_done_at is not None:
            # the simulator is done: wait until the worker has caught up (readings stop growing)
            if rate == 0 and now - sim_done_at > 4:
                break
            if now - sim_done_at > 180:
                print("\nthe worker is still catching up; summarising what it has processed so far", flush=True)
                break
    # the fleet has sent everything: stop the engine's clocks at the last event, or the ingest clock would run
    # on at the simulation's speed with nothing arriving and every meter would turn late within a minute
    set_clock_frozen(settings, True)
    print("\n")
    _summary(settings, stack, log_dir, _metrics(settings.metrics_port))
    if args.exit_when_done:
        print(f"\nweb console: `meterseg console`, then http://127.0.0.1:{console_port}/ (sign in with METERSEG_API_TOKEN)")
        return 0
    print("\nThe worker keeps running; Ctrl-C stops it (the stack stays up: `meterseg stack down`).", flush=True)
    print(f"web console  http://127.0.0.1:{console_port}/  (sign in with the API token, METERSEG_API_TOKEN)", flush=True)
    while procs.procs["worker"].poll() is None:
        time.sleep(1.0)
    return 1


def _segments(settings: Settings) -> None:
    """Segments with their sizes (from Redis) and the latest changes (from the segment.changes topic)."""
    import asyncio

    from stream.clients.redis_client import sync_redis
    from stream.state.keys import customer_keys

    ns = settings.redis_namespace
    keys = customer_keys(settings)
    client = sync_redis(settings, decode_responses=True)
    try:
        catalogue = {k: json.loads(v) for k, v in client.hgetall(f"{ns}:segments").items()}
        rows = []
        for entry in catalogue.values():
            size = sum(int(client.scard(k)) for k in keys.members(entry["family"], entry["id"]))
            rows.append((entry["family"], entry["id"], entry.get("name", ""), entry.get("profile", ""), int(size)))
    finally:
        client.close()
    if rows:
        print("segments (family, id, name, size):")
        for family, sid, name, profile, size in sorted(rows, key=lambda r: (r[0], -r[4])):
            extra = f"  [{profile}]" if profile and profile != name else ""
            print(f"  {family:<9} {sid:<20} {name:<34} {size:>7,}{extra}")
    changes = asyncio.run(_tail(settings, settings.topics.segment_changes, 6))
    if changes:
        print("recent segment changes:")
        for c in changes:
            print(f"  {c['ts']} {c['customer_id']:<10} {c['action']:<7} {c['family']}/{c['segment_name']} ({c['reason']})")


async def _tail(settings: Settings, topic: str, n: int) -> list[dict[str, object]]:
    """The last ``n`` records of ``topic`` (by broker timestamp), decoded as JSON."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from stream.clients.consumer import stop_consumer
    from stream.clients.security import kafka_client_options

    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=None,
        enable_auto_commit=False,
        **kafka_client_options(settings),
    )
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()
        parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
        if not parts:
            return []
        consumer.assign(parts)
        ends = await consumer.end_offsets(parts)
        for tp in parts:
            consumer.seek(tp, max(0, ends[tp] - n))
        records = []
        batch = await consumer.getmany(timeout_ms=2000, max_records=n * len(parts))
        for recs in batch.values():
            records += recs
        records.sort(key=lambda r: r.timestamp)
        return [json.loads(r.value) for r in records[-n:] if r.value]
    finally:
        await stop_consumer(consumer)


def _reset(settings: Settings) -> None:
    """Empty the demo's topics and its Redis keys, so every demo run tells the same story."""
    import asyncio

    from stream.clients.redis_client import app_key_patterns, sync_redis
    from stream.topics import delete_topics, ensure_topics

    deleted = asyncio.run(delete_topics(settings))
    client = sync_redis(settings)
    try:
        keys = 0
        for pattern in app_key_patterns(settings):
            for key in client.scan_iter(match=pattern, count=1000):
                client.unlink(key)
                keys += 1
    finally:
        client.close()
    asyncio.run(ensure_topics(settings))
    print(f"fresh start: deleted {len(deleted)} topics and {keys} Redis keys of app {settings.app_id!r} (--keep keeps them)")


def _summary(settings: Settings, stack: LocalStack, log_dir: Path, samples: dict[str, float]) -> None:
    sim = json.loads((log_dir / "simulation.json").read_text()) if (log_dir / "simulation.json").exists() else {}
    wall = sim.get("seconds")
    print("== summary")
    print(f"meters registered      {_sum(samples, 'meterseg_meters_registered'):,.0f}")
    print(f"readings processed     {_sum(samples, 'meterseg_readings_processed_total'):,.0f}")
    if wall:
        print(f"simulation wall time   {wall:.1f} s")
    health = _label_totals(samples, "meterseg_meters", "state")
    print("meters by health       " + ", ".join(f"{k} {v:,.0f}" for k, v in sorted(health.items())))
    raised = {
        k: v
        for k, v in _label_totals(
            {k: v for k, v in samples.items() if 'action="raised"' in k}, "meterseg_alerts_total", "kind"
        ).items()
    }
    print("alerts raised by kind  " + (", ".join(f"{k} {v:,.0f}" for k, v in sorted(raised.items())) or "none"))
    dead = _label_totals(samples, "meterseg_deadletter_total", "reason")
    print("dead letters by reason " + (", ".join(f"{k} {v:,.0f}" for k, v in sorted(dead.items())) or "none"))
    _segments(settings)
    print("\nwhere to look:")
    print(f"  metrics      http://127.0.0.1:{settings.metrics_port}/metrics")
    if stack.prometheus is not None:
        print(f"  Prometheus   {stack.prometheus.url}  (alerts: {stack.prometheus.url}/alerts)")
    api = f"http://127.0.0.1:{settings.web_port}"
    token_file = Path(settings.stack.state_dir) / "demo" / "api-token"
    print(f"  API          {api}  (token: {settings.api_token})")
    if token_file.exists() and token_file.read_text().strip() == settings.api_token:
        print(f"               export METERSEG_API_TOKEN=$(cat {token_file})")
    else:
        print("               the token is your METERSEG_API_TOKEN")
    print(f'               curl -s -H "Authorization: Bearer $METERSEG_API_TOKEN" {api}/segments')
    print(f"  health       {api}/health")
    print(f"  Kafka        {settings.kafka_bootstrap}  (e.g. kcat -C -b {settings.kafka_bootstrap} -t {settings.topics.alerts})")
    print(f"  logs         {log_dir}")
