"""Segmentation end to end: simulator → Kafka → worker → Redis memberships and segment.changes.

A small seeded fleet with purchase history streams through a real worker,
which is killed with SIGKILL half-way through and restarted. Afterwards:
RFM state in Redis equals a batch recomputation from the purchase topic,
the memberships rebuilt from ``segment.changes`` alone equal the Redis sets,
and re-publishing every purchase changes nothing.
"""

from __future__ import annotations

import asyncio
import json
import signal
import uuid
from typing import Any

import pytest

from meterseg.settings import Settings, TopicNames
from processors.rfm.state import recompute
from stream.clients.producer import BatchProducer
from stream.schemas import Purchase
from tests.conftest import Services, local_test_settings
from tests.integration.harness import (
    example_consumer,
    memberships_in_redis,
    read_topic,
    rfm_in_redis,
    running_worker,
    simulate,
    wait_for,
)

pytestmark = pytest.mark.integration

METERS = 300


#: what a change id names; a replay may attach other metadata (reason, model version)
TRANSITION = ("customer_id", "family", "segment_id", "action", "from_segment", "to_segment", "ts")


def _settings(services: Services, db: int) -> Settings:
    unique = uuid.uuid4().hex[:8]
    return Settings(
        app_id=f"seg-e2e-{unique}",
        kafka_bootstrap=services.kafka_bootstrap,
        redis_url=services.redis_url.rsplit("/", 1)[0] + f"/{db}",
        topics=TopicNames(**{k: f"{v}.{unique}" for k, v in TopicNames().model_dump().items()}),
        stack=local_test_settings().stack,
    )


@pytest.fixture(scope="module")
def seg_run(tmp_path_factory: pytest.TempPathFactory, services: Services) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("seg")
    settings = _settings(services, 13)
    # 9 days: the behaviour model is seeded once customers have a week of profiles
    simulate(settings, out, "--meters", str(METERS), "--days", "9", "--seed", "5", "--history-days", "60")
    purchases = [v for _, v, _ in read_topic(settings.kafka_bootstrap, settings.topics.purchases)]
    env = {"METERSEG_INGEST__CLOCK_RATE": "3600", "METERSEG_SEGMENTATION__EXCHANGE_INTERVAL_S": "1"}
    with running_worker(settings, out, **env) as worker:
        # kill -9 once the segmentation pipeline is part-way through the purchases
        wait_for(lambda: worker.health().get("segmentation", {}).get("messages", 0) > 0, 120, "first purchases")
        worker.proc.send_signal(signal.SIGKILL)
        worker.proc.wait()
    with running_worker(settings, out, **env) as worker:
        wait_for(lambda: _lag_zero(worker.metrics()), 180, "segmentation caught up")
        wait_for(lambda: worker.health().get("seconds_since_progress", 0) > 3, 60, "quiet stream")
        # the behaviour model is seeded once the last closed days give a week of profiles (event clock)
        wait_for(lambda: worker.health().get("model_version", 0) >= 1, 120, "behaviour model seeded")
        wait_for(lambda: worker.health().get("seconds_since_progress", 0) > 3, 60, "quiet stream")
        before_replay = rfm_in_redis(settings)
        memberships = memberships_in_redis(settings)
        changes_before = len(read_topic(settings.kafka_bootstrap, settings.topics.segment_changes))
        # publish every purchase again: nothing may change
        asyncio.run(_republish(settings, purchases))
        wait_for(lambda: _lag_zero(worker.metrics()), 120, "replay consumed")
        after_replay = rfm_in_redis(settings)
        changes_after = read_topic(settings.kafka_bootstrap, settings.topics.segment_changes)
    return {
        "settings": settings,
        "purchases": purchases,
        "rfm": before_replay,
        "rfm_after_replay": after_replay,
        "memberships": memberships,
        "changes_before": changes_before,
        "changes": [json.loads(v) for _, v, _ in changes_after],
        "out": out,
    }


def _lag_zero(metrics: str) -> bool:
    lag = [line for line in metrics.splitlines() if line.startswith("meterseg_consumer_lag_messages{")]
    seg = [line for line in lag if "purchases" in line or "profiles" in line]
    return bool(seg) and all(float(line.rsplit(" ", 1)[1]) == 0 for line in seg)


async def _republish(settings: Settings, values: list[bytes]) -> None:
    producer = BatchProducer(settings.kafka_bootstrap)
    await producer.start()
    try:
        await producer.send_many(
            settings.topics.purchases, [(json.loads(v)["customer_id"].encode(), v) for v in values]
        )
    finally:
        await producer.stop()


def test_rfm_in_redis_equals_batch_recompute_after_kill_and_restart(seg_run: dict[str, Any]) -> None:
    events = [Purchase.model_validate_json(v) for v in seg_run["purchases"]]
    truth = recompute(events)
    got = seg_run["rfm"]
    buyers = {cid for cid, rec in truth.items() if rec.n_purchases or rec.n_viewed or rec.n_processed}
    assert buyers and set(got) == buyers
    for cid in buyers:
        rec, red = truth[cid], got[cid]
        assert red["n_purchases"] == rec.n_purchases, cid
        assert red["n_purchase_days"] == rec.n_purchase_days, cid
        assert red["frequency"] == rec.frequency, cid
        assert red["recency_days"] == rec.recency_days, cid
        assert red["total_spend"] == pytest.approx(rec.total_spend, abs=1e-9), cid
        assert red["monetary_mean"] == pytest.approx(rec.monetary_mean, abs=1e-9), cid
        assert (red["n_viewed"], red["n_processed"]) == (rec.n_viewed, rec.n_processed), cid


def test_replaying_every_purchase_changes_nothing(seg_run: dict[str, Any]) -> None:
    assert seg_run["rfm_after_replay"] == seg_run["rfm"]
    replayed = [c for c in seg_run["changes"][seg_run["changes_before"]:] if c["family"] == "rfm"]
    # a replay may only re-score (population unchanged): no RFM change may come from the duplicates
    assert replayed == []


def test_segment_changes_alone_rebuild_the_memberships(seg_run: dict[str, Any]) -> None:
    """The documented consumer (examples/segment_changes_consumer.py) rebuilds Redis' memberships.

    The run includes a kill -9, so the topic holds a replayed span: the consumer's rule that an entry
    replaces the customer's current rfm/behaviour segment must absorb it.
    """
    example = example_consumer()
    state = example.Memberships()
    for c in seg_run["changes"][: seg_run["changes_before"]]:
        state.apply(c)
    rebuilt = {k: v for k, v in state.members.items() if v}
    assert rebuilt == seg_run["memberships"]
    families = {family for family, _ in seg_run["memberships"]}
    assert {"rfm", "behaviour"} <= families


def test_every_change_is_well_formed(seg_run: dict[str, Any]) -> None:
    from stream.schemas import SegmentChange

    for c in seg_run["changes"]:
        SegmentChange.model_validate(c)
    # after the kill, the replayed span may publish a change again (at-least-once): same id, same content
    by_id: dict[str, dict[str, Any]] = {}
    for c in seg_run["changes"]:
        first = by_id.setdefault(c["change_id"], c)
        assert all(first[k] == c[k] for k in TRANSITION), c["change_id"]
