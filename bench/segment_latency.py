"""Purchase-to-segment-change latency through a live worker (issue 5's p50/p99 figure).

A small seeded fleet with purchase history is streamed into fresh topics and a
worker catches up. Then, for customers currently in a low-recency RFM segment
(Lost, Hibernating, At Risk, About To Sleep), a PURCHASED event dated at the
stream's latest time is produced, paced; each one moves the customer's R score
up, so a ``segment.changes`` entry follows. Latency = broker append time of the
change minus broker append time of the purchase, per customer (first change
after the purchase). Prints p50/p99 and how many purchases led to a change.

Run: ``.venv/bin/python -m bench.segment_latency [--meters 300] [--purchases 150] [--rate 20]``
(uses METERSEG_KAFKA_BOOTSTRAP / METERSEG_REDIS_URL, default the local stack, which it starts if needed).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from aiokafka import AIOKafkaProducer

from bench.common import ensure_broker, kafka_options, percentile, read_records
from meterseg.settings import Settings, TopicNames
from stream.clients.redis_client import app_key_patterns, sync_redis
from stream.state.keys import customer_keys
from stream.topics import delete_topics
from tests.integration.harness import running_worker, simulate, wait_for

LOW_RECENCY = {"lost", "hibernating", "at_risk", "about_to_sleep"}


async def _produce(settings: Settings, customers: list[str], ts: datetime, rate: float) -> dict[str, int]:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, linger_ms=0, **kafka_options(settings))
    await producer.start()
    sent: dict[str, int] = {}
    try:
        for cid in customers:
            value = json.dumps({
                "schema_version": 1, "event_id": f"lat-{uuid.uuid4().hex}", "customer_id": cid,
                "ts": ts.strftime("%Y-%m-%dT%H:%M:%SZ"), "event_type": "PURCHASED", "kind": "product",
                "amount": 250.0, "quantity": 1, "channel": "app",
            }).encode()  # fmt: skip
            meta = await producer.send_and_wait(settings.topics.purchases, value, key=cid.encode())
            sent[cid] = meta.timestamp
            await asyncio.sleep(1.0 / rate)
    finally:
        await producer.stop()
    return sent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--meters", type=int, default=300)
    parser.add_argument("--purchases", type=int, default=150)
    parser.add_argument("--rate", type=float, default=20.0, help="purchases per second")
    args = parser.parse_args()
    base = Settings()
    ensure_broker(base)
    unique = uuid.uuid4().hex[:8]
    settings = Settings(
        app_id=f"latency-{unique}",
        topics=TopicNames(**{k: f"{v}.{unique}" for k, v in TopicNames().model_dump().items()}),
    )
    out = Path(tempfile.mkdtemp(prefix="seglat-"))
    try:
        simulate(settings, out, "--meters", str(args.meters), "--days", "2", "--seed", "9", "--history-days", "60")
        truth = json.loads((out / "truth.json").read_text())
        end = datetime.fromisoformat(truth["end"].replace("Z", "+00:00")).astimezone(UTC)
        env = {"METERSEG_SEGMENTATION__EXCHANGE_INTERVAL_S": "1"}
        with running_worker(settings, out, **env) as worker:
            wait_for(lambda: worker.health().get("segmentation", {}).get("changes", 0) > 0, 180, "segments")
            wait_for(lambda: worker.health().get("seconds_since_progress", 0) > 3, 180, "caught up")
            client = sync_redis(settings, decode_responses=True)
            low: list[str] = []
            for seg in LOW_RECENCY:
                for key in customer_keys(settings).members("rfm", seg):
                    low += sorted(str(m) for m in client.smembers(key))
            client.close()
            customers = low[: args.purchases]
            if not customers:
                raise SystemExit("no customer in a low-recency RFM segment to move")
            print(f"{len(customers)} purchases at {args.rate:g}/s for customers in {sorted(LOW_RECENCY)}", flush=True)
            sent = asyncio.run(_produce(settings, customers, end, args.rate))
            time.sleep(5.0)
            records = read_topic_with_ts(settings, settings.topics.segment_changes)
        latencies = []
        for cid, t_sent in sent.items():
            after = [ts for c, ts in records if c.get("customer_id") == cid and c.get("family") == "rfm" and ts >= t_sent]
            if after:
                latencies.append((min(after) - t_sent) / 1000.0)
        print(f"segment changes after {len(latencies)} of {len(sent)} purchases")
        if latencies:
            print(
                f"purchase-to-segment-change latency: p50 {statistics.median(latencies) * 1000:.0f} ms, "
                f"p99 {percentile(latencies, 0.99) * 1000:.0f} ms (target p99 < 2 s)"
            )
    finally:
        asyncio.run(delete_topics(settings))
        client = sync_redis(settings)
        for pattern in app_key_patterns(settings):
            for key in client.scan_iter(match=pattern, count=1000):
                client.unlink(key)
        client.close()


def read_topic_with_ts(settings: Settings, topic: str) -> list[tuple[dict[str, object], int]]:
    """Every record of ``topic`` as (decoded JSON, broker timestamp ms)."""
    return [(json.loads(value), ts) for ts, value in asyncio.run(read_records(settings, topic))]

if __name__ == "__main__":
    main()
