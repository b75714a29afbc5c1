"""API rule definitions reach the segmentation partitions: added, evaluated over the partition, replaced, removed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis

from processors.columns import RawMessage
from processors.segmentation import PartitionSegmentation, SegmentationConfig, SegmentationOutput
from stream.web.rules import apply_rule_definitions, sync_rule_definitions


@dataclass
class _Part:
    processor: PartitionSegmentation


class _Handler:
    """The two things the sync needs from a SegmentationHandler: partitions and _emit."""

    def __init__(self, parts: dict[int, PartitionSegmentation]) -> None:
        self.partitions = {p: _Part(proc) for p, proc in parts.items()}
        self.emitted: list[SegmentationOutput] = []

    async def _emit(self, outputs: list[SegmentationOutput]) -> None:
        self.emitted += outputs


def _partition(customers: dict[str, tuple[str, float]]) -> PartitionSegmentation:
    seg = PartitionSegmentation(SegmentationConfig())
    msgs = [
        RawMessage(orjson.dumps({"event_id": f"e{i}", "customer_id": c, "ts": "2026-01-05T10:00:00Z",
                                 "event_type": "PURCHASED", "amount": amount}), "customer.purchases", 0, i)
        for i, (c, (_, amount)) in enumerate(sorted(customers.items()))
    ]  # fmt: skip
    static = {c: {"region": region, "tariff": "prepaid", "has_export": False} for c, (region, _) in customers.items()}
    seg.process((msgs, []), static=static)
    return seg


def _rule_changes(outputs: list[SegmentationOutput]) -> set[tuple[str, str, str, str]]:
    return {(c.customer_id, c.segment_id, c.change, c.reason) for o in outputs for c in o.changes if c.family == "rule"}


def test_apply_adds_evaluates_replaces_and_removes() -> None:
    p0 = _partition({"C1": ("North", 200.0), "C2": ("South", 300.0)})
    p1 = _partition({"C3": ("North", 50.0)})
    handler = _Handler({0: p0, 1: p1})
    north: dict[str, dict[str, Any]] = {"north": {"name": "North", "expression": 'region == "North"', "mode": "dynamic"},
             "list": {"name": "Static list", "expression": None, "mode": "static"}}  # fmt: skip
    out = apply_rule_definitions(handler, north)
    assert _rule_changes(out) == {("C1", "north", "entry", "rule"), ("C3", "north", "entry", "rule")}
    assert "list" not in p0.rules.definitions  # static segments stay API-side
    assert apply_rule_definitions(handler, north) == []  # idempotent
    # later updates of a customer are evaluated by the pipeline itself
    assert p0.rules.segments_of("C1") == {"north"}
    replaced: dict[str, dict[str, Any]] = {
        "north": {"name": "North", "expression": 'region == "North" and rfm.total_spend > 100', "mode": "dynamic"}
    }
    assert _rule_changes(apply_rule_definitions(handler, replaced)) == {("C3", "north", "exit", "rule")}
    gone = apply_rule_definitions(handler, {}, removed={"north"})
    assert _rule_changes(gone) == {("C1", "north", "exit", "segment_removed")}
    assert "north" not in p0.rules.definitions
    # a restored partition keeps API definitions in its checkpoint
    again = apply_rule_definitions(handler, north)
    restored = PartitionSegmentation.restore(p0.snapshot())
    assert "north" in restored.rules.definitions and _rule_changes(again)


@pytest.mark.integration
async def test_sync_reads_redis_once_per_version(redis_db_url: str) -> None:
    client = aioredis.Redis.from_url(redis_db_url)
    ns = "sync"
    handler = _Handler({0: _partition({"C1": ("North", 200.0)})})
    try:
        assert await sync_rule_definitions(handler, client, ns) == 0
        await client.hset(f"{ns}:rules", "north", orjson.dumps({"name": "N", "expression": 'region == "North"',
                                                                "mode": "dynamic"}))  # fmt: skip
        assert await sync_rule_definitions(handler, client, ns) == 0  # version unchanged: not re-read
        await client.incr(f"{ns}:rules:version")
        assert await sync_rule_definitions(handler, client, ns) == 1
        assert _rule_changes(handler.emitted) == {("C1", "north", "entry", "rule")}
        handler.partitions[1] = _Part(_partition({"C9": ("North", 1.0)}))  # a new partition assigned
        assert await sync_rule_definitions(handler, client, ns) == 1
    finally:
        await client.aclose()
