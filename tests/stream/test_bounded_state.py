"""Redis structures stay bounded (issue 16, finding 7), on a real Redis.

- paid bills leave the outstanding hash at once; their replay markers expire; replays count nothing twice;
  the gauges read two counters, not the whole hash;
- a replayed segment change does not duplicate a customer's history;
- the kWh rankings keep ``Settings.meter_ranking_days`` days;
- the technician label is bounded.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
import redis.asyncio as aioredis

from meterseg.settings import Settings
from processors.segments import SegmentChange
from stream.agents.operations import technician_label
from stream.state.bills import BillStore
from stream.state.meters import MeterStore
from stream.state.segments import MembershipStore

pytestmark = pytest.mark.integration


@pytest.fixture
async def client(redis_db_url: str) -> AsyncIterator[aioredis.Redis]:
    c = aioredis.Redis.from_url(redis_db_url)
    try:
        yield c
    finally:
        await c.aclose()


async def test_paid_bills_leave_redis_and_replays_count_once(client: aioredis.Redis) -> None:
    ns = f"bills-{uuid.uuid4().hex[:6]}"
    store = BillStore(client, ns, paid_retention_s=3600)
    events = [(f"B{i}", 10.0 + i, False) for i in range(100)] + [(f"B{i}", 10.0 + i, True) for i in range(90)]
    codes = await store.apply(events)
    assert codes.count("issued") == 100 and codes.count("paid") == 90
    assert await client.hlen(f"{ns}:bills:outstanding") == 10  # only the unpaid ones
    assert await store.outstanding_totals() == (10, float(sum(10.0 + i for i in range(90, 100))))
    assert await store.apply(events) == ["dup"] * len(events)  # a replay of the whole span
    assert await store.outstanding_totals() == (10, float(sum(10.0 + i for i in range(90, 100))))
    ttl = await client.ttl(store.paid_key("B3"))
    assert 0 < ttl <= 3600  # the paid marker leaves Redis after the retention
    assert await store.apply([("B200", 5.0, True)]) == ["paid_unseen"]  # payment before its bill
    assert await client.hlen(f"{ns}:bills:outstanding") == 10


async def test_older_outstanding_hash_is_migrated_once(client: aioredis.Redis) -> None:
    ns = f"bills-{uuid.uuid4().hex[:6]}"
    await client.hset(f"{ns}:bills:outstanding", mapping={"A": "[5.0, 0]", "B": "[7.0, 1]", "C": "[1.5, 0]"})
    store = BillStore(client, ns, paid_retention_s=600)
    assert await store.outstanding_totals() == (2, 6.5)
    assert sorted(await client.hkeys(f"{ns}:bills:outstanding")) == [b"A", b"C"]
    assert await store.apply([("B", 7.0, False)]) == ["dup"]  # B was paid: its replayed issue is ignored


def _change(customer: str, segment: str) -> SegmentChange:
    return SegmentChange.model_validate({
        "customer_id": customer, "family": "rfm", "segment_id": segment, "segment_name": segment.title(),
        "change": "entry", "from_segment": None, "to_segment": segment,
        "at": datetime(2026, 1, 5, tzinfo=UTC), "reason": "score_change",
    })  # fmt: skip


async def test_replayed_changes_do_not_duplicate_history(client: aioredis.Redis) -> None:
    ns = f"hist-{uuid.uuid4().hex[:6]}"
    store = MembershipStore(client, ns)
    changes = [_change("C1", "loyal"), _change("C1", "champions")]
    await store.apply(changes)
    await store.apply(changes)  # the at-least-once replay after a crash
    assert await client.llen(store.keys.history("C1")) == 2


async def test_kwh_rankings_keep_the_configured_days(client: aioredis.Redis) -> None:
    ns = f"kwh-{uuid.uuid4().hex[:6]}"
    days = Settings(meter_ranking_days=30).meter_ranking_days
    store = MeterStore(client, ns, keep_days=days)
    rec = {"key": "M1", "window_start": "2026-01-05T00:00:00+00:00", "kwh_in": 4.2}
    await store.save([(rec, "North")])
    ttl = await client.ttl(store.day_key("2026-01-05"))
    assert 29 * 86_400 < ttl <= 30 * 86_400


def test_technician_label_values_are_bounded() -> None:
    seen: set[str] = set()
    labels = {technician_label(seen, f"T{i}", 50) for i in range(10_000)}
    assert len(labels) == 51 and "other" in labels
