"""A real single-node Apache Kafka (KRaft combined mode) provisioned from Maven Central.

Why Maven: these machines have Java 17 and Maven but no Docker engine and no
Kafka package, while Maven Central serves Kafka's own jars. We resolve
``org.apache.kafka:kafka_2.13`` with a log4j2 binding once into a per-version
cache directory, format the KRaft storage on first start and run
``kafka.Kafka`` with a capped heap. Tests and ``meterseg stack up`` both go
through this module, so what CI proves is what an operator runs.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from meterseg.stack.process import ManagedProcess, StackError, port_open, wait_until

log = logging.getLogger(__name__)

LOG4J_VERSION = "2.24.3"

_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>meterseg.local</groupId><artifactId>kafka-runtime</artifactId><version>1</version>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId>
      <version>{kafka}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId>
      <version>{log4j}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId>
      <version>{log4j}</version></dependency>
  </dependencies>
</project>
"""

_LOG4J2 = """status = warn
appender.file.type = RollingFile
appender.file.name = FILE
appender.file.fileName = {log_dir}/server.log
appender.file.filePattern = {log_dir}/server.log.%i
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
appender.file.policies.type = Policies
appender.file.policies.size.type = SizeBasedTriggeringPolicy
appender.file.policies.size.size = 20MB
appender.file.strategy.type = DefaultRolloverStrategy
appender.file.strategy.max = 3
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = FILE
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.controller.name = org.apache.kafka.controller
logger.controller.level = WARN
"""


@dataclass(frozen=True)
class KafkaNode:
    """Where one local Kafka node keeps its jars, data and logs, and the ports it listens on.

    The ``PLAINTEXT`` listener on ``port`` is always there (the local stack's
    default, and what the health check uses). With ``sasl_port`` the node also
    listens with ``SASL_PLAINTEXT`` (SCRAM-SHA-512) on that port, and with
    ``ssl_port`` with ``SASL_SSL`` (SCRAM-SHA-512 over TLS, with a certificate
    signed by a CA made in the state directory: :attr:`tls_ca_file`). The SCRAM
    users ``scram_users`` (name to password) are written into the metadata log
    when the storage is formatted, i.e. on the node's first start; a node
    whose storage predates them gets them (or their new password) from
    :meth:`upsert_scram_users` once it runs (``up`` does both).
    """

    version: str
    cache_dir: Path
    state_dir: Path
    port: int = 9092
    controller_port: int = 9093
    heap: str = "640m"
    partitions: int = 4
    sasl_port: int | None = None
    ssl_port: int | None = None
    scram_users: Mapping[str, str] = field(default_factory=dict, repr=False)

    @property
    def libs_dir(self) -> Path:
        return self.cache_dir / f"kafka-{self.version}" / "libs"

    @property
    def data_dir(self) -> Path:
        return self.state_dir / "kafka" / "data"

    @property
    def config_file(self) -> Path:
        return self.state_dir / "kafka" / "server.properties"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def sasl_bootstrap(self) -> str | None:
        """``host:port`` of the SASL_PLAINTEXT (SCRAM-SHA-512) listener, if the node has one."""
        return None if self.sasl_port is None else f"127.0.0.1:{self.sasl_port}"

    @property
    def ssl_bootstrap(self) -> str | None:
        """``host:port`` of the SASL_SSL (SCRAM-SHA-512 over TLS) listener, if the node has one."""
        return None if self.ssl_port is None else f"127.0.0.1:{self.ssl_port}"

    @property
    def tls_ca_file(self) -> Path:
        """The CA certificate (PEM) clients of the TLS listener trust (exists once the node was configured)."""
        return self.state_dir / "kafka" / "tls" / "ca.pem"

    @property
    def process(self) -> ManagedProcess:
        return ManagedProcess(
            name="kafka",
            pid_file=self.state_dir / "kafka" / "kafka.pid",
            log_file=self.state_dir / "kafka" / "logs" / "stdout.log",
            marker=f"meterseg-kafka={self.data_dir.resolve()}",
        )

    # -- provisioning -------------------------------------------------------------------------
    def ensure_jars(self) -> Path:
        """Resolve Kafka's jars with Maven into the per-version cache (once)."""
        done_marker = self.libs_dir / ".complete"
        if done_marker.exists():
            return self.libs_dir
        mvn = shutil.which("mvn")
        if mvn is None:
            raise StackError("Maven (mvn) is needed to fetch Kafka's jars; run: sudo apt-get install -y maven")
        if shutil.which("java") is None:
            raise StackError("Java 17+ is needed to run Kafka; run: sudo apt-get install -y openjdk-17-jre-headless")
        work = self.libs_dir.parent
        work.mkdir(parents=True, exist_ok=True)
        (work / "pom.xml").write_text(_POM.format(kafka=self.version, log4j=LOG4J_VERSION))
        tmp = work / "libs.partial"
        shutil.rmtree(tmp, ignore_errors=True)
        log.info("resolving Apache Kafka %s jars with Maven into %s (first run only)", self.version, work)
        started = time.monotonic()
        done = subprocess.run(
            [mvn, "-q", "-B", "dependency:copy-dependencies", f"-DoutputDirectory={tmp}", "-DincludeScope=runtime"],
            cwd=work,
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise StackError(f"Maven could not resolve Kafka {self.version}:\n{(done.stdout + done.stderr)[-2000:]}")
        shutil.rmtree(self.libs_dir, ignore_errors=True)
        tmp.rename(self.libs_dir)
        done_marker.write_text(self.version)
        log.info("Kafka jars ready in %.1f s", time.monotonic() - started)
        return self.libs_dir

    def write_config(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log_dir = (self.state_dir / "kafka" / "logs").resolve()
        log_dir.mkdir(parents=True, exist_ok=True)
        listeners = [f"PLAINTEXT://127.0.0.1:{self.port}"]
        protocol_map = ["PLAINTEXT:PLAINTEXT", "CONTROLLER:PLAINTEXT"]
        if self.sasl_port is not None:
            listeners.append(f"SASL_PLAINTEXT://127.0.0.1:{self.sasl_port}")
            protocol_map.append("SASL_PLAINTEXT:SASL_PLAINTEXT")
        if self.ssl_port is not None:
            listeners.append(f"SASL_SSL://127.0.0.1:{self.ssl_port}")
            protocol_map.append("SASL_SSL:SASL_SSL")
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{self.controller_port}",
            "listeners": ",".join([*listeners, f"CONTROLLER://127.0.0.1:{self.controller_port}"]),
            "advertised.listeners": ",".join(listeners),
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": ",".join(protocol_map),
            "log.dirs": str(self.data_dir.resolve()),
            # one node: every internal topic has one replica
            "num.partitions": str(self.partitions),
            "default.replication.factor": "1",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "8",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "min.insync.replicas": "1",
            # a new consumer group starts at once instead of waiting for more members
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "true",
            "delete.topic.enable": "true",
            "num.network.threads": "2",
            "num.io.threads": "4",
            "log.retention.hours": "168",
            "log.segment.bytes": str(256 * 1024 * 1024),
            "message.max.bytes": str(16 * 1024 * 1024),
        }
        # SCRAM on the SASL listeners only; the broker's own (inter-broker, controller) traffic stays PLAINTEXT
        for port, listener in ((self.sasl_port, "sasl_plaintext"), (self.ssl_port, "sasl_ssl")):
            if port is not None:
                props[f"listener.name.{listener}.sasl.enabled.mechanisms"] = "SCRAM-SHA-512"
                props[f"listener.name.{listener}.scram-sha-512.sasl.jaas.config"] = (
                    "org.apache.kafka.common.security.scram.ScramLoginModule required;"
                )
        if self.ssl_port is not None:
            from meterseg.stack.tls import ensure_tls_files

            tls = ensure_tls_files(self.tls_ca_file.parent)
            props["listener.name.sasl_ssl.ssl.keystore.type"] = "PEM"
            props["listener.name.sasl_ssl.ssl.keystore.location"] = str(tls.server_pem.resolve())
        self.config_file.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        (self.state_dir / "kafka" / "log4j2.properties").write_text(_LOG4J2.format(log_dir=log_dir))

    def _java(self, *args: str, heap: str = "256m") -> list[str]:
        return [
            "java",
            f"-Xmx{heap}",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={(self.state_dir / 'kafka' / 'log4j2.properties').resolve()}",
            "-cp",
            f"{self.libs_dir.resolve()}/*",
            *args,
        ]

    def format_storage(self) -> bool:
        """Format the KRaft log directory on first start (never again: it would lose data); True if it did."""
        if (self.data_dir / "meta.properties").exists():
            return False
        cluster_id = uuid.uuid4().hex[:22]
        scram: list[str] = []
        for name, password in self.scram_users.items():
            _check_scram(name, password)
            scram += ["--add-scram", f'SCRAM-SHA-512=[name={name},password="{password}"]']
        done = subprocess.run(
            self._java("kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(self.config_file), *scram),
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            output = done.stdout + done.stderr
            for password in self.scram_users.values():
                output = output.replace(password, "***")
            raise StackError(f"formatting Kafka storage in {self.data_dir} failed:\n{output}")
        return True

    def upsert_scram_users(self) -> None:
        """Create or update :attr:`scram_users` on the running broker (storage formatted before they were named).

        Kafka's own ``ConfigCommand`` through the PLAINTEXT listener, the credentials read from a
        ``0600`` file (``--add-config-file``) rather than the command line, which other local users can read.
        """
        secret_file = self.state_dir / "kafka" / "scram-user.properties"
        try:
            for name, password in self.scram_users.items():
                _check_scram(name, password)
                fd = os.open(secret_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "w") as out:
                    out.write(f"SCRAM-SHA-512=iterations=8192,password={password}\n")  # a file takes no [ ]
                done = subprocess.run(
                    self._java(
                        "kafka.admin.ConfigCommand", "--bootstrap-server", self.bootstrap, "--alter",
                        "--entity-type", "users", "--entity-name", name, "--add-config-file", str(secret_file),
                    ),
                    capture_output=True,
                    text=True,
                )  # fmt: skip
                if done.returncode != 0:
                    output = (done.stdout + done.stderr).replace(password, "***")  # it may echo the credential
                    raise StackError(f"could not create the SCRAM user {name!r}:\n{output[-1500:]}")
        finally:
            secret_file.unlink(missing_ok=True)

    def configured_listeners(self) -> dict[str, str]:
        """Listener name (``PLAINTEXT``, ``SASL_PLAINTEXT``, ``SASL_SSL``) to ``host:port``, as last configured."""
        try:
            text = self.config_file.read_text()
        except FileNotFoundError:
            return {}
        for line in text.splitlines():
            if line.startswith("advertised.listeners="):
                pairs = (item.split("://", 1) for item in line.split("=", 1)[1].split(",") if "://" in item)
                return {name: address for name, address in pairs}
        return {}

    @property
    def wanted_listeners(self) -> set[str]:
        wanted = {"PLAINTEXT"}
        if self.sasl_port is not None:
            wanted.add("SASL_PLAINTEXT")
        if self.ssl_port is not None:
            wanted.add("SASL_SSL")
        return wanted

    # -- lifecycle ----------------------------------------------------------------------------
    def healthy(self) -> bool:
        """True if the broker answers a metadata request (and its SASL listeners accept connections)."""
        extra = [p for p in (self.sasl_port, self.ssl_port) if p is not None]
        return port_open(self.port) and all(port_open(p) for p in extra) and asyncio.run(_metadata_ok(self.bootstrap))

    def up(self, timeout_s: float = 90.0) -> str:
        proc = self.process
        secured = self.sasl_port is not None or self.ssl_port is not None
        if secured and not self.scram_users:
            raise StackError(
                "the broker's SASL listeners need a SCRAM user: set METERSEG_KAFKA_SECURITY__USERNAME and "
                "METERSEG_KAFKA_SECURITY__PASSWORD (the variables the worker and the simulator read too)"
            )
        if proc.read_pid() is not None:
            missing = self.wanted_listeners - set(self.configured_listeners())
            if missing:
                raise StackError(
                    f"Kafka (pid {proc.read_pid()}) runs without the {', '.join(sorted(missing))} listener; "
                    "stop it (`meterseg stack down`) and start it again with the listeners wanted"
                )
            if wait_until(self.healthy, timeout_s):
                if secured:
                    self.upsert_scram_users()
                return "already running"
            raise StackError(f"Kafka (pid {proc.read_pid()}) runs but does not answer; log: {proc.log_file}")
        for port, variable in (
            (self.port, "KAFKA_PORT"), (self.sasl_port, "KAFKA_SASL_PORT"), (self.ssl_port, "KAFKA_SSL_PORT")
        ):  # fmt: skip
            if port is not None and port_open(port):
                raise StackError(
                    f"port {port} is taken by a process this launcher did not start; stop it or set "
                    f"METERSEG_STACK__{variable}"
                )
        self.ensure_jars()
        self.write_config()
        formatted = self.format_storage()
        argv = self._java("kafka.Kafka", str(self.config_file), heap=self.heap)
        argv.insert(1, f"-Xms{self.heap}")
        argv.insert(1, f"-D{proc.marker}")
        proc.start(argv)
        if not wait_until(lambda: proc.read_pid() is not None and self.healthy(), timeout_s, 0.5):
            alive = proc.read_pid() is not None
            raise StackError(
                f"Kafka did not answer on {self.bootstrap} within {timeout_s:.0f} s "
                f"({'still starting' if alive else 'process exited'}); logs: {proc.log_file} and "
                f"{proc.log_file.parent / 'server.log'}\n{proc.tail_log()}"
            )
        if secured and not formatted:
            self.upsert_scram_users()  # the storage predates these users: add (or update) them now
        return "started"

    def down(self) -> bool:
        return self.process.stop(timeout_s=30.0)


def _check_scram(name: str, password: str) -> None:
    if not name or any(c in name + password for c in ',="[]\\\n'):
        raise StackError(f'SCRAM user {name!r}: names and passwords may not contain , = " [ ] \\ or newlines')


async def _metadata_ok(bootstrap: str) -> bool:
    from aiokafka import AIOKafkaClient

    client = AIOKafkaClient(bootstrap_servers=bootstrap, request_timeout_ms=3000, metadata_max_age_ms=1000)
    try:
        await asyncio.wait_for(client.bootstrap(), timeout=5)
        return True
    except Exception:
        return False
    finally:
        await client.close()
