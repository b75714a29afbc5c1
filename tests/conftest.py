"""Session fixtures: a real Kafka broker and a real Redis server for integration tests.

When a Docker engine answers, testcontainers starts ``apache/kafka`` and
``redis`` images; otherwise the project's own launcher (``meterseg.stack``)
starts a local KRaft broker and ``redis-server`` on test ports, in
``.state/test``. Either way tests get plain addresses and isolate themselves
with unique topic names, app ids and Redis databases.

The local stack's ports are free ports chosen by this process and its state
lives in ``.state/test-run-<pid>`` (:class:`StackPlan`), so test runs on one
machine never collide. ``METERSEG_TEST_PORT_OFFSET=N`` pins them instead to the
fixed test ports plus N (Kafka 29092+N, Redis 26379+N) with state in
``.state/test-N``. Set ``METERSEG_TEST_KEEP_STACK=1`` to leave the local test
stack running between pytest runs (faster local iterations); CI stops it at the end.
"""

from __future__ import annotations

import functools
import itertools
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from meterseg.settings import Settings, StackSettings, TopicNames
from meterseg.stack import LocalStack, StackError
from meterseg.stack.ports import free_port
from meterseg.stack.process import port_open

REPO = Path(__file__).resolve().parents[1]
#: the test stack is one broker on this machine: development values for every Settings() of the tests and
#: every worker they start (the production defaults are replication 3, min.insync 2, API on 0.0.0.0)
DEV_ENV = {
    "METERSEG_TOPIC_REPLICATION_FACTOR": "1",
    "METERSEG_TOPIC_MIN_INSYNC_REPLICAS": "1",
    "METERSEG_WEB_BIND": "127.0.0.1",
}
for _name, _value in DEV_ENV.items():
    os.environ.setdefault(_name, _value)
PORT_NAMES = ("kafka_port", "kafka_controller_port", "redis_port", "prometheus_port")
#: the fixed test ports that ``METERSEG_TEST_PORT_OFFSET=N`` adds N to
FIXED_TEST_PORTS = {"kafka_port": 29092, "kafka_controller_port": 29093, "redis_port": 26379, "prometheus_port": 29090}


@dataclass(frozen=True)
class StackPlan:
    """Where this pytest process's test stack lives: its ports, state directory and how they were chosen.

    - ``METERSEG_TEST_PORT_OFFSET=N`` set: the fixed ports plus N, state in ``.state/test-N``
      (kept for machines whose firewall allows only known ports, and for scripts that stop the stack);
    - otherwise with ``METERSEG_TEST_KEEP_STACK=1``: free ports chosen once and recorded in
      ``.state/test/ports.json``, reused while that stack runs (fast iterations in one checkout);
    - otherwise: free ports chosen by this process, state in ``.state/test-run-<pid>``, removed at the end,
      so any number of test runs (checkouts, CI jobs) share a machine without colliding.
    """

    ports: dict[str, int]
    state_dir: Path
    mode: str  # "offset", "kept" or "private"

    def hint(self) -> str:
        """What to do when a port of this plan is taken (for the error a collision raises)."""
        if self.mode == "offset":
            return (
                f"the test stack's ports are fixed by METERSEG_TEST_PORT_OFFSET={os.environ.get('METERSEG_TEST_PORT_OFFSET')} "
                "(Kafka 29092+N, controller 29093+N, Redis 26379+N): choose another offset, or unset it and "
                "the tests pick free ports themselves (METERSEG_STACK__* variables do not apply to the test stack)"
            )
        return f"the test stack picked free ports that something took meanwhile; run again (ports recorded in {self.state_dir})"


def _free_ports() -> dict[str, int]:
    return {name: free_port() for name in PORT_NAMES}


def _plan_test_stack() -> StackPlan:
    offset = os.environ.get("METERSEG_TEST_PORT_OFFSET", "").strip()
    if offset:
        n = int(offset)
        return StackPlan({k: v + n for k, v in FIXED_TEST_PORTS.items()}, REPO / ".state" / f"test-{n}", "offset")
    if os.environ.get("METERSEG_TEST_KEEP_STACK"):
        state = REPO / ".state" / "test"
        record = state / "ports.json"
        if record.exists():
            ports = {k: int(v) for k, v in json.loads(record.read_text()).items()}
            running = (state / "kafka" / "kafka.pid").exists() or (state / "redis" / "redis.pid.json").exists()
            if running or not any(port_open(p) for p in ports.values()):
                return StackPlan(ports, state, "kept")
        ports = _free_ports()
        state.mkdir(parents=True, exist_ok=True)
        record.write_text(json.dumps(ports))
        return StackPlan(ports, state, "kept")
    return StackPlan(_free_ports(), REPO / ".state" / f"test-run-{os.getpid()}", "private")


@functools.cache
def stack_plan() -> StackPlan:
    """This process's :class:`StackPlan` (chosen once, the same for every caller)."""
    return _plan_test_stack()


def docker_available() -> bool:
    """True if a Docker engine answers (not merely a docker CLI on PATH)."""
    if os.environ.get("METERSEG_TEST_NO_DOCKER"):
        return False
    try:
        import docker

        client = docker.from_env(timeout=3)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:
        return False


def local_test_settings() -> Settings:
    """Settings of the local test stack (ports and state directory of :func:`test_stack_plan`)."""
    plan = stack_plan()
    return Settings(stack=StackSettings(state_dir=plan.state_dir, kafka_heap="512m", **plan.ports))


def start_test_stack(stack: LocalStack, plan: StackPlan) -> None:
    """``stack.up()``, with an error that says what to change in tests when a port is taken."""
    try:
        stack.up(timeout_s=120)
    except StackError as exc:
        if "is taken" not in str(exc):
            raise
        raise StackError(f"{exc.args[0].split('; stop it')[0]}: {plan.hint()}") from exc


@dataclass(frozen=True)
class Services:
    kafka_bootstrap: str
    redis_url: str
    via: str  # "docker" or "local"


@pytest.fixture(scope="session")
def services() -> Iterator[Services]:
    if docker_available():
        from testcontainers.kafka import KafkaContainer
        from testcontainers.redis import RedisContainer

        with KafkaContainer("apache/kafka:4.1.1").with_kraft() as kafka, RedisContainer("redis:7") as redis_c:
            host = redis_c.get_container_host_ip()
            port = redis_c.get_exposed_port(6379)
            yield Services(kafka.get_bootstrap_server(), f"redis://{host}:{port}/0", "docker")
        return
    plan = stack_plan()
    stack = LocalStack.from_settings(local_test_settings(), with_prometheus=False, appendonly=False)
    already = all(healthy for _, healthy in stack.status().values())
    start_test_stack(stack, plan)
    try:
        yield Services(stack.kafka.bootstrap, stack.redis.url, "local")
    finally:
        if not already and not os.environ.get("METERSEG_TEST_KEEP_STACK"):
            stack.down()
            if plan.mode == "private":
                shutil.rmtree(plan.state_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def kafka_bootstrap(services: Services) -> str:
    """``host:port`` of a real Kafka broker."""
    return services.kafka_bootstrap


@pytest.fixture(scope="session")
def redis_url(services: Services) -> str:
    """URL of a real Redis server (database 0; prefer ``redis_db_url`` for isolation)."""
    return services.redis_url


#: databases the session fixtures keep for themselves (running_engine 11, fuzz_run 12, ingest e2e 14): a
#: flushed database per test must never be one of them, or a later test finds the session engine's data gone
SESSION_DBS = (11, 12, 14)
_db_numbers = itertools.cycle([n for n in range(1, 16) if n not in SESSION_DBS])


@pytest.fixture
def redis_db_url(redis_url: str) -> str:
    """A flushed Redis database of its own for one test."""
    import redis

    base, _, _ = redis_url.rpartition("/")
    url = f"{base}/{next(_db_numbers)}"
    client = redis.Redis.from_url(url)
    client.flushdb()
    client.close()
    return url


@pytest.fixture
def unique() -> str:
    """A short unique suffix for topic names and app ids."""
    return uuid.uuid4().hex[:10]


@pytest.fixture
def isolated_settings(kafka_bootstrap: str, redis_db_url: str, unique: str) -> Settings:
    """Settings pointing at the test services, with topic names and app id of this test only."""
    topics = TopicNames(**{k: f"{v}.{unique}" for k, v in TopicNames().model_dump().items()})
    return Settings(
        app_id=f"meterseg-test-{unique}",
        kafka_bootstrap=kafka_bootstrap,
        redis_url=redis_db_url,
        topics=topics,
        stack=local_test_settings().stack,
        api_token=f"test-token-{unique}",
    )


@dataclass(frozen=True)
class RunningEngine:
    """A worker fed by a simulated fleet, with a real Prometheus scraping it."""

    settings: Settings
    web_url: str
    metrics_url: str
    prometheus_url: str
    out_dir: Path
    started_at: float  # epoch seconds when Prometheus started scraping the worker


@pytest.fixture(scope="session")
def running_engine(services: Services, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningEngine]:
    """Session-wide engine: 400 meters x 3 days (60 days of purchase history), worker, Prometheus.

    Consumers of this fixture read; they must not assume exclusive use of its topics or Redis db.
    """
    import time
    from urllib.request import urlopen

    from meterseg.demo import DEMO_ENV
    from meterseg.stack import PrometheusNode
    from tests.integration.harness import free_port, running_worker, simulate, wait_for

    if shutil.which("prometheus") is None and not Path("/usr/bin/prometheus").exists():
        pytest.skip("prometheus is not installed (apt-get install prometheus)")
    out = tmp_path_factory.mktemp("engine")
    unique = uuid.uuid4().hex[:8]
    settings = Settings(
        app_id=f"engine-{unique}",
        kafka_bootstrap=services.kafka_bootstrap,
        redis_url=services.redis_url.rsplit("/", 1)[0] + "/11",
        topics=TopicNames(**{k: f"{v}.{unique}" for k, v in TopicNames().model_dump().items()}),
        stack=local_test_settings().stack,
        api_token=f"test-token-{unique}",
    )
    env = {"METERSEG_INGEST__CLOCK_RATE": "3600", "METERSEG_SEGMENTATION__EXCHANGE_INTERVAL_S": "1",
           # tariff revenue in the regional windows (what the demo sets): revenue by region and event day
           "METERSEG_INGEST__WINDOWS__PRICE_PER_KWH": DEMO_ENV["METERSEG_INGEST__WINDOWS__PRICE_PER_KWH"]}  # fmt: skip
    # Prometheus first, scraping the worker's port from its first second, and the fleet produced only once
    # Prometheus has scraped the idle worker: counters then start at a scraped 0 (as in a deployment that
    # runs before its data arrive), so increase() over the range counts everything the worker consumes.
    # Produced before the first scrape, a backlog consumed in well under a scrape interval left the ratio
    # panels (increase / increase) at 0/0 = NaN.
    metrics_port, prom_port = free_port(), free_port()
    config = out / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        f"rule_files:\n  - {REPO / 'prometheus' / 'rules'}/*.yml\n"
        "scrape_configs:\n  - job_name: meterseg\n    static_configs:\n"
        f"      - targets: ['127.0.0.1:{metrics_port}']\n"
    )
    prometheus = PrometheusNode(state_dir=out / "prom", port=prom_port, config=config)
    prometheus.up(timeout_s=60)
    started_at = time.time()
    try:
        with running_worker(settings, out, metrics_port=metrics_port, **env) as worker:

            def scraped() -> bool:
                with urlopen(f"{prometheus.url}/api/v1/query?query=up", timeout=3) as resp:
                    return b'"1"' in resp.read()

            wait_for(scraped, 60, "first scrape")
            time.sleep(2)  # two scrapes of the idle worker: every counter's first sample is its 0
            simulate(settings, out, "--meters", "400", "--days", "3", "--seed", "3", "--history-days", "60")
            wait_for(lambda: worker.health().get("segmentation", {}).get("changes", 0) > 0, 180, "segment changes")
            wait_for(lambda: worker.health().get("seconds_since_progress", 0) > 3, 120, "engine caught up")
            time.sleep(3)  # a few scrapes, so rate() windows have two samples
            yield RunningEngine(
                settings=settings,
                web_url=f"http://127.0.0.1:{worker.web_port}",
                metrics_url=f"http://127.0.0.1:{worker.metrics_port}/metrics",
                prometheus_url=prometheus.url,
                out_dir=out,
                started_at=started_at,
            )
    finally:
        prometheus.down()
