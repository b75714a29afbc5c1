"""Helpers to run the real programs in integration tests: the simulator and a worker process."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.request import urlopen

import redis
from aiokafka import AIOKafkaConsumer, TopicPartition

from meterseg.settings import DEFAULT_API_TOKEN, Settings
from meterseg.stack.ports import free_port
from stream.clients.consumer import stop_consumer
from stream.state.customer_codec import RFM_FIELD, decode_rfm, rfm_segment_names
from stream.state.keys import customer_keys


def settings_env(settings: Settings, **extra: str) -> dict[str, str]:
    """Environment variables that make a child process use ``settings``."""
    env = {
        **os.environ,
        "METERSEG_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "METERSEG_REDIS_URL": settings.redis_url,
        "METERSEG_APP_ID": settings.app_id,
        "METERSEG_PARTITIONS": str(settings.partitions),
        "METERSEG_STACK__STATE_DIR": str(settings.stack.state_dir),
        "METERSEG_API_TOKEN": settings.api_token,
        # the test stack is one broker: development values, said explicitly (production defaults: 3 / 2 / 0.0.0.0)
        "METERSEG_TOPIC_REPLICATION_FACTOR": str(settings.topic_replication_factor),
        "METERSEG_TOPIC_MIN_INSYNC_REPLICAS": str(settings.topic_min_insync_replicas),
        "METERSEG_WEB_BIND": settings.web_bind,
    }
    if settings.api_token == DEFAULT_API_TOKEN:  # tests that never call the API: development mode, said explicitly
        env["METERSEG_API_ALLOW_DEFAULT_TOKEN"] = "true"
    for name, value in settings.topics.model_dump().items():
        env[f"METERSEG_TOPICS__{name.upper()}"] = value
    env.update(extra)
    return env


def simulate(settings: Settings, out_dir: Path, *args: str, **env: str) -> dict[str, Any]:
    """Run ``meterseg simulate`` into Kafka; return its summary (and write ground truth to out_dir)."""
    summary = out_dir / "summary.json"
    done = subprocess.run(
        [
            sys.executable, "-m", "meterseg.cli", "simulate", "--no-progress",
            "--ground-truth", str(out_dir / "truth.json"), "--summary-json", str(summary), *args,
        ],
        env=settings_env(settings, **env),
        capture_output=True,
        text=True,
        timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    result: dict[str, Any] = json.loads(summary.read_text())
    return result


@dataclass
class Worker:
    proc: subprocess.Popen[bytes]
    web_port: int
    metrics_port: int
    log_path: Path

    def health(self) -> dict[str, Any]:
        try:
            with urlopen(f"http://127.0.0.1:{self.web_port}/health", timeout=3) as resp:
                body: dict[str, Any] = json.loads(resp.read())
                return body
        except Exception as exc:  # 503 while starting, or not listening yet
            if hasattr(exc, "read"):
                with contextlib.suppress(Exception):
                    body = json.loads(exc.read())
                    return body
            return {"status": "unreachable"}

    def metrics(self) -> str:
        with urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=3) as resp:
            return str(resp.read().decode())

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]


@contextlib.contextmanager
def running_worker(
    settings: Settings,
    log_dir: Path,
    *,
    metrics_port: int | None = None,
    ready: Callable[[dict[str, Any]], bool] | None = None,
    **env: str,
) -> Iterator[Worker]:
    """A ``meterseg worker`` subprocess; stopped (SIGTERM, then SIGKILL) on exit.

    ``metrics_port``: chosen by the caller, e.g. so Prometheus scrapes the worker from its first second.
    ``ready``: when the worker counts as started, from its ``/health`` (default: status ok).
    """
    web, metrics = free_port(), metrics_port or free_port()
    log_path = log_dir / f"worker-{web}.log"
    with log_path.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "meterseg.cli", "worker", "--web-port", str(web), "--metrics-port", str(metrics)],
            env=settings_env(settings, **env),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    worker = Worker(proc, web, metrics, log_path)
    try:
        started = ready or (lambda h: h.get("status") == "ok")
        wait_for(lambda: started(worker.health()) or proc.poll() is not None, 90, "worker start")
        assert proc.poll() is None, f"worker exited:\n{worker.log_tail()}"
        yield worker
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_for(check: Callable[[], bool], timeout_s: float, what: str, interval_s: float = 0.5) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def read_topic(bootstrap: str, topic: str, timeout_s: float = 30.0) -> list[tuple[bytes | None, bytes, list[tuple[str, bytes]]]]:
    """Every record currently in ``topic`` (key, value, headers), partition by partition."""

    async def _read() -> list[tuple[bytes | None, bytes, list[tuple[str, bytes]]]]:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None)
        await consumer.start()
        try:
            await consumer._client.force_metadata_update()  # metadata of every topic
            parts = consumer.partitions_for_topic(topic) or set()
            if not parts:
                return []
            tps = [TopicPartition(topic, p) for p in sorted(parts)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            ends = await consumer.end_offsets(tps)
            out: list[tuple[bytes | None, bytes, list[tuple[str, bytes]]]] = []
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                positions = [await consumer.position(tp) for tp in tps]
                if all(pos >= ends[tp] for pos, tp in zip(positions, tps, strict=True)):
                    break
                batch = await consumer.getmany(timeout_ms=500, max_records=100_000)
                for records in batch.values():
                    out.extend((r.key, r.value or b"", list(r.headers)) for r in records)
            return out
        finally:
            await stop_consumer(consumer)

    return asyncio.run(_read())


def metric_value(text: str, name: str, labels: dict[str, str] | None = None) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name):
            continue
        head, _, value = line.rpartition(" ")
        metric, _, rest = head.partition("{")
        if metric != name:
            continue
        if labels and not all(f'{k}="{v}"' in rest for k, v in labels.items()):
            continue
        total += float(value)
    return total


def rfm_in_redis(settings: Settings) -> dict[str, dict[str, Any]]:
    """customer id → the ``rfm`` object of its hash, decoded by the API's codec (either stored version)."""
    client = redis.Redis.from_url(settings.redis_url)
    try:
        catalogue = client.hgetall(f"{settings.app_id}:segments")
        names = rfm_segment_names({k.decode(): json.loads(v) for k, v in catalogue.items()})
        out = {}
        keys = customer_keys(settings)
        for pattern in keys.customer_patterns():
            for key in client.scan_iter(match=pattern, count=1000):
                cid = keys.customer_id_of(key.decode())
                if cid is None:
                    continue
                value = decode_rfm(client.hget(key, RFM_FIELD), cid, names)
                if value:
                    out[cid] = value
        return out
    finally:
        client.close()


def memberships_in_redis(settings: Settings) -> dict[tuple[str, str], set[str]]:
    client = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    try:
        out = {}
        for entry in client.hgetall(f"{settings.app_id}:segments").values():
            e = json.loads(entry)
            members = set().union(*(client.smembers(k) for k in customer_keys(settings).members(e["family"], e["id"])))
            if members:
                out[(str(e["family"]), str(e["id"]))] = {str(m) for m in members}
        return out
    finally:
        client.close()


def example_consumer() -> Any:
    """``examples/segment_changes_consumer.py`` as a module (its Memberships is the documented consumer rule)."""
    import importlib.util

    path = Path(__file__).resolve().parents[2] / "examples" / "segment_changes_consumer.py"
    spec = importlib.util.spec_from_file_location("segment_changes_consumer", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
