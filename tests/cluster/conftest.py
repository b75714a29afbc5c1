"""A real Redis Cluster for the tests: three masters (``redis-server --cluster-enabled yes``) on free ports.

Started by the test session itself in pytest's tmp directory (no replicas:
the tests are about slots and routing, not failover), formed with
``redis-cli --cluster create``, and stopped at the end. Never the session
stack's Redis.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from meterseg.stack.process import ensure_debian_package
from tests.integration.harness import free_port

MASTERS = 3


@dataclass(frozen=True)
class RedisCluster:
    ports: tuple[int, ...]

    @property
    def url(self) -> str:
        """Any node: clients learn the rest from it."""
        return f"redis://127.0.0.1:{self.ports[0]}/0"


def _client_port() -> int:
    """A free port Redis accepts for a cluster node (at most 55535, whatever the cluster bus port)."""
    while True:
        port = free_port()
        if port <= 55535:
            return port


def _ask(port: int, *command: str) -> object:
    client = redis.Redis(port=port, decode_responses=True, socket_timeout=5)
    try:
        return client.execute_command(*command)
    finally:
        client.close()


def _wait(check: object, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if check():  # type: ignore[operator]
                return
        except (redis.ConnectionError, redis.ResponseError):
            pass
        time.sleep(0.2)
    raise RuntimeError(f"Redis Cluster: timed out waiting for {what}")


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    server = ensure_debian_package("redis-server", "redis-server")
    cli = shutil.which("redis-cli")
    if cli is None:
        pytest.skip("redis-cli is not installed (Debian package redis-tools)")
    state: Path = tmp_path_factory.mktemp("redis-cluster")
    ports = tuple(_client_port() for _ in range(MASTERS))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for port in ports:
            node_dir = state / str(port)
            node_dir.mkdir()
            with (node_dir / "redis.log").open("wb") as log:
                argv = [server, "--port", str(port), "--bind", "127.0.0.1", "--protected-mode", "yes",
                        "--cluster-enabled", "yes", "--cluster-port", str(free_port()),
                        "--cluster-config-file", "nodes.conf",
                        "--cluster-node-timeout", "5000", "--dir", str(node_dir),
                        "--appendonly", "no", "--save", "", "--daemonize", "no"]  # fmt: skip
                procs.append(subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL))
        for port in ports:
            _wait(lambda port=port: _ask(port, "PING"), 20, f"node {port}")
        created = subprocess.run(
            [cli, "--cluster", "create", *[f"127.0.0.1:{p}" for p in ports], "--cluster-replicas", "0",
             "--cluster-yes"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert created.returncode == 0, created.stdout + created.stderr

        def formed() -> bool:
            return all("cluster_state:ok" in str(_ask(port, "CLUSTER", "INFO")) for port in ports)

        _wait(formed, 30, "cluster_state:ok on every node")
        yield RedisCluster(ports)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
