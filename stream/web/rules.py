"""Rule segments defined through the API: stored in Redis, applied by every worker's segmentation partitions.

Layout (``ns`` = app id):

* ``{ns}:rules`` — hash segment id → JSON definition (id, name, expression, mode,
  description, source, created_at; static ones also activated_at and size);
* ``{ns}:rules:version`` — incremented on every POST/DELETE;
* ``{ns}:rules:removed`` — set of ids deleted through the API (so workers drop
  them even if they were restored from an old checkpoint).

**Dynamic** segments live in the pipeline: :func:`sync_rule_definitions`, called
from each worker's timer, reads the version and, when it (or the set of owned
partitions) changed, :func:`apply_rule_definitions` adds, replaces or removes
definitions on every owned partition's ``RuleSegmentProcessor``, evaluates an
added definition over the partition's whole in-memory population at once, and
emits the entries/exits like any other change (``segment.changes`` + Redis).
The processors are checkpointed with their definitions, so a restart keeps them.

**Static** segments never enter the pipeline: the API evaluates the rule once
over the current population read from Redis (or takes an explicit member
list, e.g. saved lookalikes), writes the memberships and publishes the
entries itself (:func:`publish_changes`). They never change afterwards.

Definitions from ``METERSEG_SEGMENTATION__RULES_FILE`` are not touched: only
ids present in ``{ns}:rules`` or ``{ns}:rules:removed`` are managed here.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
import redis.asyncio as aioredis

from processors.jsonbytes import dumps
from processors.rules import CustomerAttributes, SegmentDefinition
from processors.segmentation import SegmentationOutput
from processors.segments import SegmentChange
from stream.pipelines.segmentation import change_payload
from stream.state.segments import MembershipStore
from stream.web.context import ApiContext, text

CHUNK = 10_000

_applied: weakref.WeakKeyDictionary[Any, tuple[int, frozenset[int]]] = weakref.WeakKeyDictionary()


def rules_key(ns: str) -> str:
    return f"{ns}:rules"


async def stored_definitions(redis: aioredis.Redis, ns: str) -> tuple[int, dict[str, dict[str, Any]], set[str]]:
    """(version, id → definition, removed ids) from Redis, in one round trip."""
    pipe = redis.pipeline(transaction=False)
    pipe.get(f"{ns}:rules:version")
    pipe.hgetall(rules_key(ns))
    pipe.smembers(f"{ns}:rules:removed")
    version, defs, removed = await pipe.execute()
    return (
        int(version or 0),
        {text(k): orjson.loads(v) for k, v in defs.items()},
        {text(r) for r in removed},
    )


def _now_of(processor: Any) -> datetime:
    clock = processor.clock.now(running=False)
    return datetime.fromtimestamp(clock if clock else time.time(), UTC)


def apply_rule_definitions(
    handler: Any, definitions: Mapping[str, Mapping[str, Any]], removed: Iterable[str] = ()
) -> list[SegmentationOutput]:
    """Bring every owned partition's rule processor in line with the API's definitions.

    ``handler`` is the worker's ``SegmentationHandler`` (``handler.partitions[p].processor``
    is a ``PartitionSegmentation``); ``definitions`` maps id → stored definition
    (only ``mode == "dynamic"`` ones with an expression are applied); ids in
    ``removed`` are dropped (members exit with reason ``segment_removed``).
    Returns the outputs to emit (``handler._emit``); state changes are in the
    processors and go out with the next checkpoint.
    """
    wanted = {
        sid: SegmentDefinition(id=sid, name=d["name"], expression=d["expression"], mode="dynamic",
                               description=d.get("description", ""))
        for sid, d in definitions.items()
        if d.get("mode") == "dynamic" and d.get("expression")
    }  # fmt: skip
    gone = set(removed) - set(wanted)
    outputs: list[SegmentationOutput] = []
    for part in handler.partitions.values():
        proc = part.processor
        rules = proc.rules
        at = _now_of(proc)
        out = SegmentationOutput()
        for sid in sorted(gone & set(rules.definitions)):
            out.changes += proc.book.process(rules.remove(sid, at))
        added = False
        for sid, d in wanted.items():
            current = rules.definitions.get(sid)
            if current is None or current.model_dump() != d.model_dump():
                rules.add(d)
                added = True
        if added and proc.attributes:
            batch = [CustomerAttributes(customer_id=c, at=at, attributes=a) for c, a in sorted(proc.attributes.items())]
            out.changes += proc.book.process(rules.process(batch))
        if out.changes:
            outputs.append(out)
    return outputs


async def sync_rule_definitions(handler: Any, redis: aioredis.Redis, ns: str) -> int:
    """Apply the API's rule definitions when they or the owned partitions changed; returns changes emitted.

    Cheap when nothing changed (one pipelined round trip). Call it from the
    worker's timer before the segmentation handler's ``on_timer``.
    """
    version, definitions, removed = await stored_definitions(redis, ns)
    owned = frozenset(handler.partitions)
    if _applied.get(handler) == (version, owned):
        return 0
    outputs = apply_rule_definitions(handler, definitions, removed)
    if outputs:
        await handler._emit(outputs)
    _applied[handler] = (version, owned)
    return sum(len(o.changes) for o in outputs)


def rule_changes(
    members: Sequence[str], segment_id: str, name: str, change: str, at: datetime, reason: str = "rule"
) -> list[SegmentChange]:
    """Entry (or exit) records of ``members`` for a rule segment."""
    entry = change == "entry"
    return [
        SegmentChange(customer_id=c, family="rule", segment_id=segment_id, segment_name=name,
                      change="entry" if entry else "exit", from_segment=None if entry else segment_id,
                      to_segment=segment_id if entry else None, at=at, reason=reason)
        for c in members
    ]  # fmt: skip


async def publish_changes(ctx: ApiContext, changes: Sequence[SegmentChange], catalogue: dict[str, Any] | None) -> None:
    """Write changes to the Redis projection (chunked pipelines) and publish them on ``segment.changes``."""
    store = MembershipStore(ctx.redis, ctx.ns, ctx.keys.shards)
    for start in range(0, max(len(changes), 1), CHUNK):
        chunk = changes[start : start + CHUNK]
        await store.apply(chunk, catalogue=catalogue if start == 0 else None)
        if ctx.producer is not None and chunk:
            records = [(c.customer_id.encode(), dumps(change_payload(c))) for c in chunk]
            await ctx.producer.send_many(ctx.settings.topics.segment_changes, records)
