"""Session fixtures: a real Kafka broker and a real Redis server for integration tests.

When a Docker engine answers, testcontainers starts ``apache/kafka`` and
``redis`` images; otherwise the project's own launcher (``meterseg.stack``)
starts a local KRaft broker and ``redis-server`` on test ports, in
``.state/test``. Either way tests get plain addresses and isolate themselves
with unique topic names, app ids and Redis databases.

Set ``METERSEG_TEST_KEEP_STACK=1`` to leave the local test stack running
between pytest runs (faster local iterations); CI stops it at the end.
"""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from meterseg.settings import Settings, StackSettings, TopicNames
from meterseg.stack import LocalStack

REPO = Path(__file__).resolve().parents[1]
#: test-stack ports; METERSEG_TEST_PORT_OFFSET moves them (two checkouts testing on one machine)
_OFFSET = int(os.environ.get("METERSEG_TEST_PORT_OFFSET", "0"))
TEST_PORTS = {
    "kafka_port": 29092 + _OFFSET,
    "kafka_controller_port": 29093 + _OFFSET,
    "redis_port": 26379 + _OFFSET,
    "prometheus_port": 29090 + _OFFSET,
}


@dataclass(frozen=True)
class Services:
    kafka_bootstrap: str
    redis_url: str
    via: str  # "docker" or "local"


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
    state_dir = REPO / ".state" / ("test" if not _OFFSET else f"test-{_OFFSET}")
    return Settings(stack=StackSettings(state_dir=state_dir, kafka_heap="512m", **TEST_PORTS))


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
    stack = LocalStack.from_settings(local_test_settings(), with_prometheus=False, appendonly=False)
    already = all(healthy for _, healthy in stack.status().values())
    stack.up(timeout_s=120)
    try:
        yield Services(stack.kafka.bootstrap, stack.redis.url, "local")
    finally:
        if not already and not os.environ.get("METERSEG_TEST_KEEP_STACK"):
            stack.down()


@pytest.fixture(scope="session")
def kafka_bootstrap(services: Services) -> str:
    """``host:port`` of a real Kafka broker."""
    return services.kafka_bootstrap


@pytest.fixture(scope="session")
def redis_url(services: Services) -> str:
    """URL of a real Redis server (database 0; prefer ``redis_db_url`` for isolation)."""
    return services.redis_url


_db_numbers = itertools.cycle(range(1, 16))


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
    )


@dataclass(frozen=True)
class RunningEngine:
    """A worker fed by a simulated fleet, with a real Prometheus scraping it."""

    settings: Settings
    web_url: str
    metrics_url: str
    prometheus_url: str
    out_dir: Path


@pytest.fixture(scope="session")
def running_engine(services: Services, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningEngine]:
    """Session-wide engine: 400 meters x 3 days (60 days of purchase history), worker, Prometheus.

    Consumers of this fixture read; they must not assume exclusive use of its topics or Redis db.
    """
    import shutil
    import time
    from urllib.request import urlopen

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
    )
    simulate(settings, out, "--meters", "400", "--days", "3", "--seed", "3", "--history-days", "60")
    env = {"METERSEG_INGEST__CLOCK_RATE": "3600", "METERSEG_SEGMENTATION__EXCHANGE_INTERVAL_S": "1"}
    with running_worker(settings, out, **env) as worker:
        prom_port = free_port()
        config = out / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            f"rule_files:\n  - {REPO / 'prometheus' / 'rules'}/*.yml\n"
            "scrape_configs:\n  - job_name: meterseg\n    static_configs:\n"
            f"      - targets: ['127.0.0.1:{worker.metrics_port}']\n"
        )
        prometheus = PrometheusNode(state_dir=out / "prom", port=prom_port, config=config)
        prometheus.up(timeout_s=60)
        try:
            wait_for(lambda: worker.health().get("segmentation", {}).get("changes", 0) > 0, 180, "segment changes")
            wait_for(lambda: worker.health().get("seconds_since_progress", 0) > 3, 120, "engine caught up")

            def scraped() -> bool:
                with urlopen(f"{prometheus.url}/api/v1/query?query=up", timeout=3) as resp:
                    return b'"1"' in resp.read()

            wait_for(scraped, 60, "first scrape")
            time.sleep(3)  # a few scrapes, so rate() windows have two samples
            yield RunningEngine(
                settings=settings,
                web_url=f"http://127.0.0.1:{worker.web_port}",
                metrics_url=f"http://127.0.0.1:{worker.metrics_port}/metrics",
                prometheus_url=prometheus.url,
                out_dir=out,
            )
        finally:
            prometheus.down()
