"""A worker end to end on a real Redis Cluster (``METERSEG_REDIS_CLUSTER=true``): ingest, segments, the API.

The app-wide keys are under the hash tag ``{app}`` (regional windows, the model, the catalogue: their
multi-key scripts run in one slot); the customer projection and the member sets are spread over the
shard tags ``{app:s<k>}`` (:mod:`stream.state.keys`), hence over the masters, and the API merges a
segment's shards; the per-meter state (health, windows, alerts, daily rankings) over the meter shard
tags ``{app:m<k>.<salt>}``, and the API merges top consumers and health states over them. See docs/scaling.md "Redis Cluster".
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.request import Request, urlopen

import pytest

from meterseg.settings import Settings, TopicNames
from stream.clients.redis_client import sync_redis
from stream.state.keys import CustomerKeys, MeterKeys, customer_keys, meter_keys
from tests.cluster.conftest import RedisCluster
from tests.conftest import local_test_settings
from tests.integration.harness import running_worker, simulate, wait_for

pytestmark = pytest.mark.integration


def test_worker_runs_on_a_redis_cluster(redis_cluster: RedisCluster, kafka_bootstrap: str, tmp_path: Path) -> None:
    unique = uuid.uuid4().hex[:8]
    settings = Settings(
        app_id=f"cluster-{unique}",
        kafka_bootstrap=kafka_bootstrap,
        redis_url=redis_cluster.url,
        redis_cluster=True,
        api_token=f"tok-{unique}",
        topics=TopicNames(**{k: f"{v}.{unique}" for k, v in TopicNames().model_dump().items()}),
        stack=local_test_settings().stack,
    )
    summary = simulate(settings, tmp_path, "--meters", "60", "--days", "2", "--seed", "6", "--history-days", "45")
    expected = summary["messages"][settings.topics.readings] + summary["messages"][settings.topics.heartbeats]
    env = {"METERSEG_REDIS_CLUSTER": "true", "METERSEG_API_TOKEN": settings.api_token,
           "METERSEG_INGEST__CLOCK_RATE": "3600", "METERSEG_SEGMENTATION__EXCHANGE_INTERVAL_S": "1"}  # fmt: skip
    with running_worker(settings, tmp_path, **env) as worker:
        wait_for(lambda: worker.health().get("totals", {}).get("messages", 0) >= expected, 120, "every reading")
        wait_for(lambda: worker.health().get("segmentation", {}).get("changes", 0) > 0, 120, "segment changes")

        def api(path: str) -> Any:
            req = Request(
                f"http://127.0.0.1:{worker.web_port}{path}", headers={"Authorization": f"Bearer {settings.api_token}"}
            )
            with urlopen(req, timeout=30) as resp:
                return json.loads(resp.read())

        wait_for(lambda: any(s["size"] > 0 for s in api("/segments")["segments"]), 60, "populated segments")
        assert api("/meters/faulty?state=good,fair,poor&limit=1")["total"] > 0
        client = sync_redis(settings)
        try:
            keys = customer_keys(settings)
            # the API's merged answers equal what the shard sets hold (retried: the worker keeps rescoring)
            wait_for(lambda: _sizes_agree(api, client, settings), 60, "segment sizes equal to the shards' sum")
            biggest = max(api("/segments?family=rfm")["segments"], key=lambda s: s["size"])
            family, sid = biggest["id"].split(":", 1)
            wait_for(lambda: _listing_agrees(api, client, keys.members(family, sid), biggest["id"]), 60,
                     "a members listing paged over every shard")  # fmt: skip
            customer = next(
                c for c in (keys.customer_id_of(k.decode()) for p in keys.customer_patterns()
                            for k in client.scan_iter(match=p, count=1000)) if c and client.hget(keys.customer(c), "seg:rfm")
            )  # fmt: skip
            wait_for(lambda: _customer_agrees(api, client, keys, customer), 60, f"customer {customer} as stored")
            wait_for(lambda: _meters_agree(api, client, meter_keys(settings)), 60, "meter health and rankings as stored")
            spread = _spread(client, keys, meter_keys(settings))
        finally:
            client.close()
        assert worker.health()["status"] == "ok", worker.health()
        log_text = worker.log_path.read_text(errors="replace")
    assert "CROSSSLOT" not in log_text and "same key slot" not in log_text
    print(f"customer keys by master: {spread['customers']}; meter keys by master: {spread['meters']}; "
          f"bytes of the app's keys by master: {spread['bytes']}; under the app tag by kind: {spread['app_tag']}")  # fmt: skip
    assert spread["slots"] > 10 and spread["meter_slots"] > 10, spread
    assert len(spread["customers"]) == len(redis_cluster.ports), "customer keys on every master"
    assert len(spread["meters"]) == len(redis_cluster.ports), "meter keys on every master"
    # 60 meters' health, windows and rankings: no master holds more than half of them (one tag: all)
    assert max(spread["meters"].values()) < sum(spread["meters"].values()) / 2, spread


def _sizes_agree(api: Any, client: Any, settings: Settings) -> bool:
    keys = customer_keys(settings)
    listed = {s["id"]: s["size"] for s in api("/segments")["segments"]}
    stored = {k: sum(int(client.scard(key)) for key in keys.members(*k.split(":", 1))) for k in listed}
    return bool(listed) and listed == stored


def _listing_agrees(api: Any, client: Any, shard_sets: list[str], segment: str) -> bool:
    members: list[str] = []
    cursor: str | None = "0"
    while cursor is not None:
        page = api(f"/segments/{segment}/members?limit=7&cursor={cursor}")
        members += page["items"]
        cursor = page["next_cursor"]
    stored = set().union(*({m.decode() for m in client.smembers(k)} for k in shard_sets))
    offset = api(f"/segments/{segment}/members?limit=1000&offset=0")["items"]
    return len(members) == len(set(members)) and set(members) == stored == set(offset) and len(stored) > 0


def _customer_agrees(api: Any, client: Any, keys: CustomerKeys, customer: str) -> bool:
    stored = client.hget(keys.customer(customer), "seg:rfm").decode()
    answer = api(f"/customers/{customer}")
    return answer["customer_id"] == customer and f"rfm:{stored}" in {s["id"] for s in answer["segments"]}


def _meters_agree(api: Any, client: Any, keys: MeterKeys) -> bool:
    """``/fleet/meters`` counts and a day's ``/meters/top`` equal what the meter shards hold."""
    stored = {s: sum(int(client.scard(k)) for k in keys.state_sets(s)) for s in ("good", "fair", "poor")}
    by_state = api("/fleet/meters?limit=1")["by_state"]
    # a registered meter without a health record counts as good: at least the stored good ones
    if (by_state["fair"], by_state["poor"]) != (stored["fair"], stored["poor"]) or by_state["good"] < stored["good"]:
        return False
    day = api("/meters/top?limit=1")["to"]
    if day is None:
        return False
    answer = api(f"/meters/top?from={day}&to={day}&limit=5")["items"]
    scores: dict[str, float] = {}
    for k in keys.days(day):
        scores.update({m.decode(): float(v) for m, v in client.zrange(k, 0, -1, withscores=True)})
    best = sorted(scores.values(), reverse=True)[:5]
    return bool(answer) and [round(v, 3) for v in best] == [i["kwh"] for i in answer]


def _spread(client: Any, keys: CustomerKeys, meters: MeterKeys) -> dict[str, Any]:
    """Customer keys and meter keys, their slots, and bytes of the app's keys, by master."""
    customers: Counter[str] = Counter()
    slots: set[int] = set()
    for pattern in keys.customer_patterns():
        for key in client.scan_iter(match=pattern, count=1000):
            customers[client.get_node_from_key(key).name] += 1
            slots.add(client.keyslot(key))
    per_master: Counter[str] = Counter()
    meter_slots: set[int] = set()
    for pattern in meters.patterns():
        for key in client.scan_iter(match=pattern, count=1000):
            per_master[client.get_node_from_key(key).name] += 1
            meter_slots.add(client.keyslot(key))
    used: Counter[str] = Counter()
    app_tag: Counter[str] = Counter()  # bytes of the keys under the app's one tag, by their kind (region, model ...)
    for pattern in (f"{keys.namespace}:*", f"{{{keys.app}:*"):
        for key in client.scan_iter(match=pattern, count=1000):
            size = int(client.memory_usage(key, samples=0) or 0)
            used[client.get_node_from_key(key).name] += size
            if key.startswith(f"{keys.namespace}:".encode()):
                app_tag[key.decode()[len(keys.namespace) + 1 :].split(":", 1)[0]] += size
    return {"customers": dict(customers), "slots": len(slots), "meters": dict(per_master),
            "meter_slots": len(meter_slots), "bytes": dict(used), "app_tag": dict(app_tag.most_common())}  # fmt: skip
