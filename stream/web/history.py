"""Segment size over time and daily entries/exits (volatility), kept in Redis for the API.

* :func:`sample_sizes` — one sample per segment per ``interval_s`` bucket in
  ``{ns}:seg:sizes:{family}:{segment}`` (sorted set, one per segment, not sharded; score = bucket start
  epoch seconds, member = ``"{bucket}:{size}"``), trimmed to the last
  ``keep`` samples. Idempotent per bucket (a second sample in the same
  bucket replaces the first), so every worker may call it.
* :func:`record_moves` — each worker writes its own partitions' entry/exit
  counts of the last two days (from the partitions' ``MembershipBook``) into
  ``{ns}:seg:moves`` (one field per partition), so volatility =
  (entries + exits) / size is fleet-wide whatever worker answers.

Both are meant for the engine's timer (see the wiring notes in ``docs/api.md``);
the API also adds a live "now" point to every history and merges its own
worker's live counts, so it answers sensibly before the timer is wired.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import orjson
import redis.asyncio as aioredis

from processors.jsonbytes import dumps
from stream.state.keys import CustomerKeys
from stream.state.segments import segment_sizes
from stream.web.context import text

DEFAULT_INTERVAL_S = 60.0
DEFAULT_KEEP = 10_080  # a week of minutes


def sizes_key(ns: str, family: str, segment_id: str) -> str:
    return f"{ns}:seg:sizes:{family}:{segment_id}"


async def sample_sizes(
    redis: aioredis.Redis,
    ns: str,
    now: float | None = None,
    interval_s: float = DEFAULT_INTERVAL_S,
    keep: int = DEFAULT_KEEP,
    shards: int = 1,
) -> int:
    """Store the current size of every catalogued segment (and API rule segment); returns segments sampled.

    A size is the sum over the segment's shard sets (``shards``, :mod:`stream.state.keys`).
    """
    now = time.time() if now is None else now
    bucket = int(now // interval_s * interval_s)
    pipe = redis.pipeline(transaction=False)
    pipe.hgetall(f"{ns}:segments")
    pipe.hkeys(f"{ns}:rules")
    catalogue, rule_ids = await pipe.execute()
    segments: set[tuple[str, str]] = {(text(k).partition(":")[0], text(k).partition(":")[2]) for k in catalogue}
    segments |= {("rule", text(r)) for r in rule_ids}
    ordered = sorted(segments)
    by_segment = await segment_sizes(redis, CustomerKeys(ns, shards), ordered)
    sizes = [by_segment[s] for s in ordered]
    pipe = redis.pipeline(transaction=False)
    for (family, sid), size in zip(ordered, sizes, strict=True):
        key = sizes_key(ns, family, sid)
        pipe.zremrangebyscore(key, bucket, bucket)
        pipe.zadd(key, {f"{bucket}:{int(size)}": bucket})
        pipe.zremrangebyrank(key, 0, -(keep + 1))
    if ordered:
        await pipe.execute()
    return len(ordered)


async def size_history(
    redis: aioredis.Redis, ns: str, family: str, segment_id: str, since: float | None = None, limit: int = 1000
) -> list[dict[str, Any]]:
    """Stored samples ``[{"ts": epoch_s, "size": n}]`` oldest first (the last ``limit`` after ``since``)."""
    rows = await redis.zrevrangebyscore(
        sizes_key(ns, family, segment_id), "+inf", since if since is not None else "-inf", start=0, num=limit
    )
    out = []
    for member in reversed(rows):
        ts, _, size = text(member).partition(":")
        out.append({"ts": int(ts), "size": int(size)})
    return out


def local_moves(handler: Any) -> dict[int, dict[str, dict[str, list[int]]]]:
    """partition → day → ``"family:segment"`` → [entries, exits] from this worker's partitions (last 2 days)."""
    out: dict[int, dict[str, dict[str, list[int]]]] = {}
    for p, part in list(handler.partitions.items()):
        by_day: dict[str, dict[str, list[int]]] = {}
        for (family, seg, day), counts in part.processor.book.counts.items():
            by_day.setdefault(day, {})[f"{family}:{seg}"] = list(counts)
        recent = sorted(by_day)[-2:]
        out[p] = {d: by_day[d] for d in recent}
    return out


async def record_moves(handler: Any, redis: aioredis.Redis, ns: str) -> None:
    """Publish this worker's per-partition daily entry/exit counts to ``{ns}:seg:moves``."""
    moves = local_moves(handler)
    if moves:
        await redis.hset(f"{ns}:seg:moves", mapping={str(p): dumps(v) for p, v in moves.items()})


async def fleet_moves(
    redis: aioredis.Redis, ns: str, handler: Any = None
) -> tuple[str | None, dict[str, tuple[int, int]]]:
    """(latest day, ``"family:segment"`` → (entries, exits) that day) over every partition.

    Redis holds what the workers recorded; this worker's partitions are taken live.
    """
    raw: Mapping[Any, Any] = await redis.hgetall(f"{ns}:seg:moves")
    per_partition: dict[int, dict[str, dict[str, list[int]]]] = {int(text(k)): orjson.loads(v) for k, v in raw.items()}
    if handler is not None:
        per_partition.update(local_moves(handler))
    days = {d for v in per_partition.values() for d in v}
    if not days:
        return None, {}
    day = max(days)
    total: dict[str, list[int]] = {}
    for v in per_partition.values():
        for seg, (entries, exits) in v.get(day, {}).items():
            t = total.setdefault(seg, [0, 0])
            t[0] += entries
            t[1] += exits
    return day, {k: (e, x) for k, (e, x) in total.items()}
