"""Faust agents for the low-rate operations topics: maintenance requests, feedback, bills.

These topics carry a few events per customer per month, so plain Faust
agents (micro-batched with ``take``) are the right tool; the hot meter topics
go through the batch consumer instead. Each event updates operator metrics;
bill state lives in Redis (outstanding bills by id) so paid/unpaid is exact
across restarts and re-deliveries. Invalid payloads go to the dead-letter topic.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

import faust
import orjson
from pydantic import BaseModel, ValidationError

from meterseg.settings import Settings
from stream import metrics as m
from stream.schemas import Bill, Feedback, MaintenanceRequest

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)

DeadLetterSink = Callable[[list[tuple[bytes | None, bytes, list[tuple[str, bytes]]]]], Any]


def _parse(model: type[M], values: list[bytes], topic: str, dead: list[Any]) -> list[M]:
    out: list[M] = []
    for value in values:
        try:
            out.append(model.model_validate_json(value))
        except ValidationError as exc:
            reason = "invalid_json" if any(e["type"] == "json_invalid" for e in exc.errors()) else "schema"
            dead.append((None, value, [("reason", reason.encode()), ("error", str(exc).encode()[:1000]),
                                       ("source_topic", topic.encode())]))  # fmt: skip
            m.DEADLETTERED.labels(reason).inc()
    return out


def register_operations(app: faust.App, settings: Settings, engine: Callable[[], Any]) -> None:
    """Attach the operations agents to ``app``; ``engine()`` returns the running Engine (producer, Redis)."""
    topics = settings.topics
    bills_key = f"{settings.app_id}:bills:outstanding"

    async def dead_letter(dead: list[Any]) -> None:
        if dead:
            await engine().producer.send_many(topics.deadletter, dead)

    def region_of(customer_id: str) -> str:
        return str(engine().region_of_customer(customer_id) or "unknown")

    @app.agent(app.topic(topics.maintenance, value_serializer="raw"))
    async def maintenance(stream: faust.StreamT[bytes]) -> None:
        async for values in stream.take(500, within=1.0):
            m.EVENTS_CONSUMED.labels(topics.maintenance).inc(len(values))
            dead: list[Any] = []
            for req in _parse(MaintenanceRequest, values, topics.maintenance, dead):
                region = region_of(req.customer_id)
                if req.resolved_at is None:
                    m.MAINTENANCE_OPENED.labels(region).inc()
                else:
                    m.MAINTENANCE_RESOLVED.labels(region).inc()
                    m.MAINTENANCE_RESOLUTION.observe((req.resolved_at - req.requested_at).total_seconds())
                    m.MAINTENANCE_BY_TECHNICIAN.labels(req.technician_id or "unassigned").inc()
            await dead_letter(dead)

    @app.agent(app.topic(topics.feedback, value_serializer="raw"))
    async def feedback(stream: faust.StreamT[bytes]) -> None:
        async for values in stream.take(500, within=1.0):
            m.EVENTS_CONSUMED.labels(topics.feedback).inc(len(values))
            dead: list[Any] = []
            for fb in _parse(Feedback, values, topics.feedback, dead):
                m.FEEDBACK.labels(str(fb.score)).inc()
            await dead_letter(dead)

    @app.agent(app.topic(topics.bills, value_serializer="raw"))
    async def bills(stream: faust.StreamT[bytes]) -> None:
        async for values in stream.take(500, within=1.0):
            m.EVENTS_CONSUMED.labels(topics.bills).inc(len(values))
            dead: list[Any] = []
            parsed = _parse(Bill, values, topics.bills, dead)
            redis = engine().redis
            pipe = redis.pipeline(transaction=False)
            for bill in parsed:
                if bill.paid_at is None:
                    pipe.hsetnx(bills_key, bill.bill_id, orjson.dumps([bill.amount, 0]))
                else:
                    pipe.hset(bills_key, bill.bill_id, orjson.dumps([bill.amount, 1]))
            previous: list[Any] = []
            if parsed:
                started = time.perf_counter()
                previous = await redis.hmget(bills_key, [b.bill_id for b in parsed])
                await pipe.execute()
                m.REDIS_LATENCY.labels("bills").observe(time.perf_counter() - started)
            for bill, before in zip(parsed, previous, strict=True):
                state = orjson.loads(before) if before else None
                if bill.paid_at is None and state is None:
                    m.BILLS.labels("issued").inc()
                    m.BILLED_AMOUNT.labels("issued").inc(bill.amount)
                elif bill.paid_at is not None and (state is None or state[1] == 0):
                    if state is None:  # payment seen before the bill: count the issue too
                        m.BILLS.labels("issued").inc()
                        m.BILLED_AMOUNT.labels("issued").inc(bill.amount)
                    m.BILLS.labels("paid").inc()
                    m.BILLED_AMOUNT.labels("paid").inc(bill.amount)
            await dead_letter(dead)


async def outstanding_bills(redis: Any, settings: Settings) -> tuple[int, float]:
    """Number and amount of bills issued and not paid (from Redis; for the gauges)."""
    values = await redis.hvals(f"{settings.app_id}:bills:outstanding")
    unpaid = [orjson.loads(v) for v in values]
    unpaid = [v for v in unpaid if v[1] == 0]
    return len(unpaid), float(sum(v[0] for v in unpaid))
