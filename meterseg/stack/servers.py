"""Redis and Prometheus from Debian's packages, run by the stack launcher.

Both bind to 127.0.0.1 and keep their data in the stack's state directory, so
``stack down`` / ``stack up`` keeps Redis state (append-only file) and
Prometheus history.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.error import URLError
from urllib.parse import quote
from urllib.request import urlopen

import yaml

from meterseg.stack.process import ManagedProcess, StackError, ensure_debian_package, port_open, wait_until

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class RedisNode:
    """A local ``redis-server`` with append-only persistence, optionally password- or ACL-protected.

    ``password`` alone sets ``requirepass`` (clients use ``redis://:password@host:port/db``);
    with ``username`` too, the ``default`` user is switched off and an ACL user
    with every permission is created (``redis://username:password@host:port/db``).
    The secrets go into a ``0600`` config file in the state directory, not on
    the command line, where any local user could read them. With ``tls`` the
    server speaks only TLS on ``port`` (certificate signed by a CA made in the
    state directory; clients use ``rediss://`` with ``ssl_ca_certs``).
    """

    state_dir: Path
    port: int = 6379
    appendonly: bool = True
    password: str | None = field(default=None, repr=False)
    username: str | None = None
    tls: bool = False

    @property
    def tls_dir(self) -> Path:
        return self.data_dir / "tls"

    @property
    def url(self) -> str:
        """The client URL, with the credentials if the server has any (mask it before logging)."""
        auth = ""
        if self.password is not None:
            auth = f"{quote(self.username or '', safe='')}:{quote(self.password, safe='')}@"
        if self.tls:
            ca = quote(str((self.tls_dir / "ca.pem").resolve()), safe="/")
            return f"rediss://{auth}127.0.0.1:{self.port}/0?ssl_ca_certs={ca}"
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def _auth_config(self) -> str:
        """``redis.conf`` lines for the credentials (empty without a password)."""
        if self.password is None:
            return ""
        for value in (self.password, self.username or ""):
            if any(c in value for c in '"\\\n\r \t'):
                raise StackError("Redis usernames and passwords here may not contain quotes, backslashes or blanks")
        if self.username is None:
            return f'requirepass "{self.password}"\n'
        return f'user default off\nuser {self.username} on ">{self.password}" ~* &* +@all\n'

    @property
    def data_dir(self) -> Path:
        return self.state_dir / "redis"

    @property
    def process(self) -> ManagedProcess:
        return ManagedProcess(
            name="redis",
            pid_file=self.data_dir / "redis.pid.json",
            log_file=self.data_dir / "redis.log",
            marker=f"127.0.0.1:{self.port}",
        )

    def healthy(self) -> bool:
        import redis

        if not port_open(self.port):
            return False
        client = redis.Redis.from_url(self.url, socket_timeout=2)
        try:
            return bool(client.ping())
        finally:
            client.close()

    def up(self, timeout_s: float = 30.0) -> str:
        proc = self.process
        if proc.read_pid() is not None:
            if wait_until(self.healthy, timeout_s):
                return "already running"
            raise StackError(f"redis-server (pid {proc.read_pid()}) runs but does not answer PING; log: {proc.log_file}")
        if port_open(self.port):
            raise StackError(
                f"port {self.port} is taken by a process this launcher did not start; stop it or set "
                "METERSEG_STACK__REDIS_PORT"
            )
        binary = ensure_debian_package("redis-server", "redis-server")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        conf = self.data_dir / "auth.conf"
        fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(self._auth_config())
        listen = ["--port", str(self.port)]
        if self.tls:
            from meterseg.stack.tls import ensure_tls_files

            tls = ensure_tls_files(self.tls_dir)
            listen = [
                "--port", "0",
                "--tls-port", str(self.port),
                "--tls-cert-file", str(tls.server_cert.resolve()),
                "--tls-key-file", str(tls.server_key.resolve()),
                "--tls-ca-cert-file", str(tls.ca_file.resolve()),
                "--tls-auth-clients", "no",
            ]  # fmt: skip
        argv = [
            binary,
            str(conf.resolve()),
            "--bind", "127.0.0.1",
            *listen,
            "--dir", str(self.data_dir.resolve()),
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", "everysec",
            "--save", "",
            "--daemonize", "no",
            "--protected-mode", "yes",
            "--maxclients", "1000",
        ]  # fmt: skip
        proc.start(argv)
        if not wait_until(lambda: proc.read_pid() is not None and self.healthy(), timeout_s):
            raise StackError(f"redis-server did not answer on port {self.port}; log: {proc.log_file}\n{proc.tail_log()}")
        return "started"

    def down(self) -> bool:
        return self.process.stop(timeout_s=15.0)


@dataclass(frozen=True)
class PrometheusNode:
    """A local ``prometheus`` scraping the engine's metrics endpoints, with the repo's alert rules."""

    state_dir: Path
    port: int = 9090
    config: Path = REPO_ROOT / "prometheus" / "prometheus.yml"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def process(self) -> ManagedProcess:
        return ManagedProcess(
            name="prometheus",
            pid_file=self.state_dir / "prometheus" / "prometheus.pid.json",
            log_file=self.state_dir / "prometheus" / "prometheus.log",
            marker=f"--web.listen-address=127.0.0.1:{self.port}",
        )

    def healthy(self) -> bool:
        try:
            with urlopen(f"{self.url}/-/ready", timeout=2) as resp:
                return bool(resp.status == 200)
        except (URLError, OSError):
            return False

    @property
    def targets_dir(self) -> Path:
        """File service discovery: one JSON file per worker that exists (``register_target``)."""
        return self.state_dir / "prometheus" / "targets"

    def register_target(self, name: str, address: str, labels: dict[str, str] | None = None) -> Path:
        """Let Prometheus scrape ``address`` (``host:port`` of a worker's metrics) until :meth:`unregister_target`.

        Written atomically (rename), read by Prometheus within its ``refresh_interval`` (5 s).
        """
        self.targets_dir.mkdir(parents=True, exist_ok=True)
        path = self.targets_dir / f"{name}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps([{"targets": [address], "labels": labels or {}}]))
        tmp.replace(path)
        return path

    def unregister_target(self, name: str) -> None:
        (self.targets_dir / f"{name}.json").unlink(missing_ok=True)

    def render_config(self) -> Path:
        """``config`` with absolute rule files, this node's own port and file discovery in :attr:`targets_dir`."""
        cfg = yaml.safe_load(self.config.read_text())
        base = self.config.parent.resolve()
        cfg["rule_files"] = [str(base / r) for r in cfg.get("rule_files", [])]
        for job in cfg.get("scrape_configs", []):
            for sd in job.get("file_sd_configs", []):
                sd["files"] = [str(self.targets_dir.resolve() / Path(f).name) for f in sd.get("files", [])]
            if job.get("job_name") == "prometheus":
                job["static_configs"] = [{"targets": [f"127.0.0.1:{self.port}"]}]
        self.targets_dir.mkdir(parents=True, exist_ok=True)
        out = self.state_dir / "prometheus" / "prometheus.yml"
        out.write_text(yaml.safe_dump(cfg, sort_keys=False))
        return out

    def up(self, timeout_s: float = 30.0) -> str:
        proc = self.process
        if proc.read_pid() is not None:
            if wait_until(self.healthy, timeout_s):
                return "already running"
            raise StackError(f"prometheus (pid {proc.read_pid()}) does not answer; log: {proc.log_file}")
        if port_open(self.port):
            raise StackError(
                f"port {self.port} is taken by a process this launcher did not start; stop it or set "
                "METERSEG_STACK__PROMETHEUS_PORT"
            )
        if not self.config.exists():
            raise StackError(f"Prometheus configuration {self.config} is missing")
        binary = ensure_debian_package("prometheus", "prometheus")
        data = self.state_dir / "prometheus" / "data"
        data.mkdir(parents=True, exist_ok=True)
        config = self.render_config()
        argv = [
            binary,
            f"--config.file={config.resolve()}",
            f"--storage.tsdb.path={data.resolve()}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--web.enable-lifecycle",
            "--storage.tsdb.retention.time=15d",
        ]
        proc.start(argv, cwd=config.parent)
        if not wait_until(lambda: proc.read_pid() is not None and self.healthy(), timeout_s):
            raise StackError(f"prometheus did not become ready on port {self.port}; log: {proc.log_file}\n{proc.tail_log()}")
        return "started"

    def down(self) -> bool:
        return self.process.stop(timeout_s=15.0)
