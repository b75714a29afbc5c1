"""Fleet-wide regional totals from per-partition partial windows, merged in Redis.

Readings are partitioned by meter, so every partition holds a *partial* sum
for each region and hour. Each partition stores its partial under its own
field (``HSET`` — idempotent, a replay overwrites rather than adds) and
reports its event-time frontier; a region-hour is final once every
partition's frontier has passed its end. One Lua script picks the final
windows and deletes them atomically, so exactly one worker emits each, once.
A "done" marker (kept :data:`DONE_TTL_S`) makes a late replay of an already
emitted window a no-op instead of a second, partial emission.

Corrections: a late reading that still counts (within the allowed lateness)
revises its partition's partial of an already emitted region-hour. The
partials of every partition are kept after the emission (as long as the done
marker), so the revised partial is merged with the others' and the window is
emitted again, once every partition has passed its end, with the next
``revision`` (a counter per window); the Prometheus counters get the
difference from what was emitted before.

Revenue per event day: confirming an emission also books the window's
revenue into ``{ns}:region:revenue:{YYYY-MM-DD}`` (a hash region → amount,
the UTC day of the window's start), so revenue can be read for a range of
event days (``GET /fleet/revenue``) and not only since the workers started,
as the counters run. A correction replaces the window's earlier amount: the
script adds the difference between the totals being confirmed and those
confirmed before (``emitted:``), read inside the same script, so confirming
the same totals twice (a claim that expired while its first claimant was
still producing) adds nothing. Unlike the counters, the difference may be
negative. The days are indexed in ``{ns}:region:revenue:days`` (epoch day);
only the latest ``revenue_days`` event days are kept
(``Settings.region_revenue_days``), older ones are deleted as newer ones
arrive: about 20 B per region and day.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from datetime import date, datetime
from typing import Any

import orjson
import redis.asyncio as aioredis

from processors.jsonbytes import dumps
from processors.windows import ClosedWindows
from stream.metrics import REDIS_LATENCY

DONE_TTL_S = 7 * 86_400
REVENUE_DAYS = 400
"""Default of ``Settings.region_revenue_days``: event days of revenue per region kept."""
_EPOCH_DAY = date(1970, 1, 1)

_SAVE = """
-- KEYS: pending zset, frontier hash; ARGV: prefix, partition, frontier, then quads (member, end, json, revised)
-- A window already emitted takes only corrections (revised = 1): a replay of its first partial is a no-op.
local prefix, partition = ARGV[1], ARGV[2]
redis.call('HSET', KEYS[2], partition, ARGV[3])
for i = 4, #ARGV, 4 do
  local member = ARGV[i]
  if ARGV[i + 3] == '1' or redis.call('EXISTS', prefix .. 'done:' .. member) == 0 then
    redis.call('HSET', prefix .. 'part:' .. member, partition, ARGV[i + 2])
    redis.call('ZADD', KEYS[1], ARGV[i + 1], member)
  end
end
return 1
"""

_CLAIM = """
-- KEYS: pending zset, frontier hash; ARGV: prefix, partitions, claim ttl ms, worker
-- Final windows are claimed (not yet removed): they stay pending until the claimant has produced
-- them and confirms; a claimant that dies lets its claim expire and another worker emits them.
local prefix = ARGV[1]
local frontiers = redis.call('HVALS', KEYS[2])
if #frontiers < tonumber(ARGV[2]) then return {} end
local low = nil
for _, f in ipairs(frontiers) do
  local v = tonumber(f)
  if low == nil or v < low then low = v end
end
local ready = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', low)
local out = {}
for _, member in ipairs(ready) do
  if redis.call('SET', prefix .. 'claim:' .. member, ARGV[4], 'NX', 'PX', ARGV[3]) then
    out[#out + 1] = {member, redis.call('HVALS', prefix .. 'part:' .. member),
                     redis.call('GET', prefix .. 'rev:' .. member) or '0',
                     redis.call('GET', prefix .. 'emitted:' .. member) or ''}
  end
end
return out
"""

_CONFIRM = """
-- KEYS: pending zset; ARGV: prefix, done ttl s, event days of revenue kept, then quintuples (member produced,
-- its emitted totals as JSON, its UTC day YYYY-MM-DD, that day's epoch day number, its region)
-- The partials stay (with the done marker) so that a correction is merged with the other partitions'.
-- Revenue per event day and region grows by the difference from the totals confirmed before.
local prefix, keep = ARGV[1], tonumber(ARGV[3])
local days = prefix .. 'revenue:days'
for i = 4, #ARGV, 5 do
  local member = ARGV[i]
  local before = redis.call('GET', prefix .. 'emitted:' .. member)
  local old = 0
  if before then old = tonumber(cjson.decode(before)['revenue']) or 0 end
  local new = tonumber(cjson.decode(ARGV[i + 1])['revenue']) or 0
  if new ~= old then
    redis.call('HINCRBYFLOAT', prefix .. 'revenue:' .. ARGV[i + 2], ARGV[i + 4], string.format('%.17g', new - old))
    redis.call('ZADD', days, ARGV[i + 3], ARGV[i + 2])
  end
  redis.call('EXPIRE', prefix .. 'part:' .. member, ARGV[2])
  redis.call('ZREM', KEYS[1], member)
  redis.call('SET', prefix .. 'done:' .. member, 1, 'EX', ARGV[2])
  redis.call('INCR', prefix .. 'rev:' .. member)
  redis.call('EXPIRE', prefix .. 'rev:' .. member, ARGV[2])
  redis.call('SET', prefix .. 'emitted:' .. member, ARGV[i + 1], 'EX', ARGV[2])
  redis.call('DEL', prefix .. 'claim:' .. member)
end
local newest = redis.call('ZRANGE', days, -1, -1, 'WITHSCORES')
if #newest == 2 then
  local cut = tonumber(newest[2]) - keep
  for _, day in ipairs(redis.call('ZRANGEBYSCORE', days, '-inf', cut)) do
    redis.call('DEL', prefix .. 'revenue:' .. day)
    redis.call('ZREM', days, day)
  end
end
return 1
"""

_IDLE = """
-- KEYS: frontier hash; ARGV: partitions that are caught up and have no frontier of their own
-- An idle partition (no readings, nothing left to read) holds no partial for any window the others have
-- passed: it advances to the fleet's frontier, so regional windows are not held back by it forever.
local high = nil
for _, f in ipairs(redis.call('HVALS', KEYS[1])) do
  local v = tonumber(f)
  if high == nil or v > high then high = v end
end
if high == nil then return 0 end
local moved = 0
for i = 1, #ARGV do
  local own = tonumber(redis.call('HGET', KEYS[1], ARGV[i]) or '-1e308')
  if own < high then
    redis.call('HSET', KEYS[1], ARGV[i], high)
    moved = moved + 1
  end
end
return moved
"""

CLAIM_MS = 30_000


class RegionalMerger:
    """Merges per-partition regional windows into one record per region and window."""

    def __init__(self, client: aioredis.Redis, namespace: str, partitions: int, revenue_days: int = REVENUE_DAYS):
        self.client = client
        self.revenue_days = revenue_days
        self.prefix = f"{namespace}:region:"
        self.pending = f"{namespace}:region:pending"
        self.frontiers = f"{namespace}:region:frontier"
        self.partitions = partitions
        self._save = client.register_script(_SAVE)
        self._claim = client.register_script(_CLAIM)
        self._confirm = client.register_script(_CONFIRM)
        self._idle = client.register_script(_IDLE)
        self.worker = uuid.uuid4().hex[:12]

    async def advance_idle(self, partitions: Iterable[int]) -> int:
        """Move caught-up partitions without a frontier of their own to the fleet's frontier (how many moved)."""
        idle = list(partitions)
        if not idle:
            return 0
        return int(await self._idle(keys=[self.frontiers], args=idle))

    async def frontier_spread(self) -> tuple[float, int]:
        """(seconds between the most and least advanced partition frontier, partitions without a frontier):
        a regional window is final only once every partition has passed it, so either one growing means
        regional totals have stalled fleet-wide."""
        values = [float(v) for v in await self.client.hvals(self.frontiers)]
        if not values:
            return 0.0, self.partitions
        return max(values) - min(values), max(0, self.partitions - len(values))

    async def save(self, partition: int, frontier: int, closed: Iterable[ClosedWindows]) -> None:
        """Store this partition's closed regional windows and its frontier (epoch s)."""
        args: list[Any] = [self.prefix, partition, frontier]
        for cw in closed:
            if cw.kind != "region":
                continue
            for rec in cw.to_records():
                member = f"{rec['key']}|{rec['window']}|{rec['window_start']}"
                args += [member, _epoch(rec["window_end"]), dumps(rec), 1 if rec["revision"] else 0]
        started = time.perf_counter()
        await self._save(keys=[self.pending, self.frontiers], args=args)
        REDIS_LATENCY.labels("regional_save").observe(time.perf_counter() - started)

    async def claim_ready(self) -> list[tuple[str, dict[str, Any]]]:
        """Final regional windows (every partition past their end) this worker now emits: (member, record).

        Produce them, then :meth:`confirm`; unconfirmed claims expire after :data:`CLAIM_MS` and the
        windows are claimed again (at-least-once, same content), so a crash between the two loses nothing.
        A record's ``revision`` counts its earlier emissions; ``previous`` (not part of the record sent)
        holds the totals emitted before, for counters that must grow by the difference only.
        """
        started = time.perf_counter()
        rows = await self._claim(
            keys=[self.pending, self.frontiers], args=[self.prefix, self.partitions, CLAIM_MS, self.worker]
        )
        REDIS_LATENCY.labels("regional_emit").observe(time.perf_counter() - started)
        out = []
        for m, parts, rev, emitted in rows:
            rec = merge_partials([orjson.loads(p) for p in parts])
            rec["revision"] = int(rev)
            rec["previous"] = orjson.loads(emitted) if emitted else None
            out.append((m.decode() if isinstance(m, bytes) else m, rec))
        return out

    async def confirm(self, claimed: list[tuple[str, dict[str, Any]]]) -> None:
        """The claimed windows were produced: retire them (a late replay of them is then a no-op)."""
        if claimed:
            args: list[Any] = [self.prefix, DONE_TTL_S, self.revenue_days]
            for member, rec in claimed:
                day = date.fromisoformat(str(rec["window_start"])[:10])
                args += [member, dumps({k: rec.get(k) or 0.0 for k in ("kwh_in", "kwh_out", "revenue")}),
                         day.isoformat(), (day - _EPOCH_DAY).days, rec["key"]]  # fmt: skip
            await self._confirm(keys=[self.pending], args=args)


async def revenue_by_day(
    client: aioredis.Redis, namespace: str, days: Iterable[date], region: str | None = None
) -> dict[str, dict[str, float]]:
    """Revenue booked per event day and region (day ISO → region → amount), for ``days`` (absent days: {}).

    Amounts are rounded to 1e-6 (the float sums of many windows otherwise show 1e-12 residues).
    """
    wanted = [d.isoformat() for d in days]
    pipe = client.pipeline(transaction=False)
    for d in wanted:
        pipe.hgetall(f"{namespace}:region:revenue:{d}")
    out: dict[str, dict[str, float]] = {}
    for d, raw in zip(wanted, await pipe.execute() if wanted else [], strict=True):
        amounts = {(k.decode() if isinstance(k, bytes) else str(k)): round(float(v), 6) for k, v in raw.items()}
        out[d] = {r: v for r, v in sorted(amounts.items()) if region is None or r == region}
    return out


async def revenue_days(client: aioredis.Redis, namespace: str) -> tuple[date, date] | None:
    """The first and last event day with booked revenue still kept, or None."""
    key = f"{namespace}:region:revenue:days"
    ends: list[Any] = [*(await client.zrange(key, 0, 0)), *(await client.zrange(key, -1, -1))]
    if len(ends) != 2:
        return None
    first, last = (date.fromisoformat(e.decode() if isinstance(e, bytes) else str(e)) for e in ends)
    return first, last


def merge_partials(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """One regional window from partition partials: sums, min of minima, max of maxima, weighted mean."""
    first = parts[0]
    readings = sum(int(p["readings"]) for p in parts)
    mins = [p["min_kw"] for p in parts if p.get("min_kw") is not None]
    maxs = [p["max_kw"] for p in parts if p.get("max_kw") is not None]
    weighted = sum((p.get("mean_kw") or 0.0) * int(p["readings"]) for p in parts)
    return {
        **first,
        "kwh_in": sum(float(p["kwh_in"]) for p in parts),
        "kwh_out": sum(float(p["kwh_out"]) for p in parts),
        "revenue": sum(float(p.get("revenue") or 0.0) for p in parts),
        "readings": readings,
        "min_kw": min(mins) if mins else None,
        "max_kw": max(maxs) if maxs else None,
        "mean_kw": weighted / readings if readings else None,
    }


def _epoch(iso: str) -> int:
    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp())
