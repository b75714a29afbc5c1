"""Foundation end-to-end tests on a real broker and a real Redis server."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
import redis
from aiokafka import AIOKafkaProducer

from meterseg.settings import Settings

pytestmark = pytest.mark.integration
APPS = Path(__file__).parent / "apps"


async def _produce(bootstrap: str, topic: str, n: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20)
    await producer.start()
    try:
        futures = [
            await producer.send(topic, orjson.dumps({"id": i, "meter_id": f"M{i % 97:06d}"}), key=b"M%06d" % (i % 97))
            for i in range(n)
        ]
        await producer.flush()
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


def test_faust_agent_counts_every_message_exactly_once(isolated_settings: Settings, unique: str) -> None:
    n = 3000
    topic = f"count.{unique}"
    key = f"count:{unique}"
    asyncio.run(_produce(isolated_settings.kafka_bootstrap, topic, n))
    env = {
        **os.environ,
        "METERSEG_KAFKA_BOOTSTRAP": isolated_settings.kafka_bootstrap,
        "METERSEG_REDIS_URL": isolated_settings.redis_url,
        "METERSEG_APP_ID": isolated_settings.app_id,
        "METERSEG_STACK__STATE_DIR": str(isolated_settings.stack.state_dir),
        "COUNT_TOPIC": topic,
        "COUNT_KEY": key,
    }
    worker = subprocess.Popen(
        [sys.executable, str(APPS / "counter.py"), "worker", "-l", "warn", "--without-web"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    client = redis.Redis.from_url(isolated_settings.redis_url)
    try:
        deadline = time.monotonic() + 90
        count = 0
        while time.monotonic() < deadline and worker.poll() is None:
            count = int(client.scard(key))
            if count >= n:
                break
            time.sleep(0.3)
        time.sleep(1.0)  # anything beyond n would show up now
        members = {int(m) for m in client.smembers(key)}
    finally:
        worker.terminate()
        try:
            out, _ = worker.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
            out, _ = worker.communicate()
        client.close()
    assert members == set(range(n)), f"got {len(members)} of {n}; worker output:\n{out.decode()[-3000:]}"


@pytest.mark.skipif(shutil.which("kcat") is None, reason="kcat not installed (apt-get install kcat)")
def test_kcat_produces_and_consumes(kafka_bootstrap: str, unique: str) -> None:
    topic = f"kcat.{unique}"
    lines = [f"M{i:06d}:reading-{i}" for i in range(50)]
    subprocess.run(
        ["kcat", "-P", "-b", kafka_bootstrap, "-t", topic, "-K", ":"],
        input="\n".join(lines) + "\n",
        text=True,
        check=True,
        timeout=30,
    )
    done = subprocess.run(
        ["kcat", "-C", "-b", kafka_bootstrap, "-t", topic, "-e", "-q", "-f", "%k:%s\n"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    assert sorted(done.stdout.split()) == sorted(lines)
