"""Faust agents for the low-rate operations topics: maintenance requests, feedback, bills.

These topics carry a few events per customer per month, so plain Faust
agents (micro-batched with ``take``) are the right tool; the hot meter topics
go through the batch consumer instead. Each event updates operator metrics;
bill state lives in Redis (outstanding bills by id) so paid/unpaid is exact
across restarts and re-deliveries. Invalid payloads go to the dead-letter topic with their reason and
source (topic, partition, offset), like the pipelines' dead letters; every consumed event is either
applied (``meterseg_events_applied_total``) or dead-lettered.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import faust
from pydantic import BaseModel, ValidationError

from meterseg.settings import Settings
from processors.columns import RawMessage, Reject, RejectReason
from stream import metrics as m
from stream.schemas import Bill, Feedback, MaintenanceRequest
from stream.state.bills import BillStore

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)


def parse_events(model: type[M], msgs: Sequence[RawMessage], rejects: list[Reject]) -> list[M]:
    """The messages that satisfy ``model``; every other one becomes a :class:`Reject` with reason and source.

    Conservation: ``len(parsed) + (rejects added) == len(msgs)``; a reject names
    its topic, partition and offset like the pipelines' dead letters do.

    Examples:
        >>> rejects: list[Reject] = []
        >>> ok = b'{"feedback_id": "f1", "customer_id": "C1", "ts": "2026-01-01T00:00:00Z", "score": 4}'
        >>> [f.score for f in parse_events(Feedback, [RawMessage(ok, "customer.feedback", 0, 0),
        ...                                            RawMessage(b"{", "customer.feedback", 0, 1)], rejects)]
        [4]
        >>> [(r.reason, r.offset) for r in rejects]
        [('invalid_json', 1)]
    """
    out: list[M] = []
    for msg in msgs:
        try:
            out.append(model.model_validate_json(msg.value))
        except ValidationError as exc:
            reason: RejectReason = (
                "invalid_json" if any(e["type"] == "json_invalid" for e in exc.errors()) else "schema"
            )
            text = "; ".join(
                f"{'.'.join(str(x) for x in e['loc']) or 'payload'}: {e['msg']}"
                for e in exc.errors(include_url=False)[:5]
            )
            rejects.append(Reject(reason, text, msg.value, msg.topic, msg.partition, msg.offset))
            m.DEADLETTERED.labels(reason).inc()
    return out


def _messages(events: Sequence[Any]) -> list[RawMessage]:
    """Faust events as :class:`RawMessage` (a tombstone's value is empty: not JSON, dead-lettered)."""
    return [
        RawMessage(
            e.value or b"",
            e.message.topic,
            e.message.partition,
            e.message.offset,
            int(e.message.timestamp * 1000) if e.message.timestamp else -1,
        )
        for e in events
    ]


def register_operations(app: faust.App, settings: Settings, engine: Callable[[], Any]) -> None:
    """Attach the operations agents to ``app``; ``engine()`` returns the running Engine (producer, Redis)."""
    topics = settings.topics
    technicians: set[str] = set()  # technician ids given their own label so far (bounded)

    async def dead_letter(rejects: list[Reject]) -> None:
        if rejects:
            await engine().producer.send_many(topics.deadletter, [(None, r.payload, r.headers()) for r in rejects])

    def region_of(customer_id: str) -> str:
        return str(engine().region_of_customer(customer_id) or "unknown")

    def received(topic: str, events: Sequence[Any], parsed: int) -> None:
        m.EVENTS_CONSUMED.labels(topic).inc(len(events))
        m.EVENTS_APPLIED.labels(topic).inc(parsed)

    @app.agent(app.topic(topics.maintenance, value_serializer="raw"))
    async def maintenance(stream: faust.StreamT[bytes]) -> None:
        async for events in stream.take_events(500, within=1.0):  # type: ignore[attr-defined]
            dead: list[Reject] = []
            parsed = parse_events(MaintenanceRequest, _messages(events), dead)
            for req in parsed:
                region = region_of(req.customer_id)
                if req.resolved_at is None:
                    m.MAINTENANCE_OPENED.labels(region).inc()
                else:
                    m.MAINTENANCE_RESOLVED.labels(region).inc()
                    m.MAINTENANCE_RESOLUTION.observe((req.resolved_at - req.requested_at).total_seconds())
                    m.MAINTENANCE_BY_TECHNICIAN.labels(
                        technician_label(technicians, req.technician_id, settings.max_technician_labels)
                    ).inc()
            received(topics.maintenance, events, len(parsed))
            await dead_letter(dead)

    @app.agent(app.topic(topics.feedback, value_serializer="raw"))
    async def feedback(stream: faust.StreamT[bytes]) -> None:
        async for events in stream.take_events(500, within=1.0):  # type: ignore[attr-defined]
            dead: list[Reject] = []
            parsed = parse_events(Feedback, _messages(events), dead)
            for fb in parsed:
                m.FEEDBACK.labels(str(fb.score)).inc()
            received(topics.feedback, events, len(parsed))
            await dead_letter(dead)

    @app.agent(app.topic(topics.bills, value_serializer="raw"))
    async def bills(stream: faust.StreamT[bytes]) -> None:
        async for events in stream.take_events(500, within=1.0):  # type: ignore[attr-defined]
            dead: list[Reject] = []
            parsed = parse_events(Bill, _messages(events), dead)
            store = BillStore(engine().redis, settings.redis_namespace, settings.bills_paid_retention_s)
            started = time.perf_counter()
            codes = await store.apply([(b.bill_id, b.amount, b.paid_at is not None) for b in parsed])
            if parsed:
                m.REDIS_LATENCY.labels("bills").observe(time.perf_counter() - started)
            for bill, code in zip(parsed, codes, strict=True):
                if code in ("issued", "paid_unseen"):  # a payment seen before its bill counts the issue too
                    m.BILLS.labels("issued").inc()
                    m.BILLED_AMOUNT.labels("issued").inc(bill.amount)
                if code in ("paid", "paid_unseen"):
                    m.BILLS.labels("paid").inc()
                    m.BILLED_AMOUNT.labels("paid").inc(bill.amount)
            received(topics.bills, events, len(parsed))
            await dead_letter(dead)


async def outstanding_bills(redis: Any, settings: Settings) -> tuple[int, float]:
    """Number and amount of bills issued and not paid (two counters in Redis; for the gauges)."""
    return await BillStore(redis, settings.redis_namespace, settings.bills_paid_retention_s).outstanding_totals()


def technician_label(seen: set[str], technician_id: str | None, limit: int) -> str:
    """The ``technician`` label of a resolved request: the id for the first ``limit`` technicians seen by
    this worker, ``other`` beyond (a label value per id would grow the series without bound).

    >>> seen: set[str] = set()
    >>> [technician_label(seen, t, 2) for t in ("T1", "T2", "T3", "T1", None)]
    ['T1', 'T2', 'other', 'T1', 'unassigned']
    """
    if not technician_id:
        return "unassigned"
    if technician_id in seen:
        return technician_id
    if len(seen) < limit:
        seen.add(technician_id)
        return technician_id
    return "other"
