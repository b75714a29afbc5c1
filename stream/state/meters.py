"""Per-meter views in Redis for the API: daily consumption rankings, recent daily windows, recent alerts.

Key names from :class:`stream.state.keys.MeterKeys` (``{p}`` is the namespace with one shard, else the
hash tag of the meter's shard, so a cluster spreads them over its masters):

* ``{p}:kwh:{day}`` and ``{p}:kwh:{region}:{day}`` — sorted sets meter → kWh imported that UTC day, one
  per meter shard (``ZADD`` of the closed daily window: a replayed window overwrites, never adds),
  expiring after ``Settings.meter_ranking_days`` (default :data:`KEEP_DAYS`); top consumers over a range
  are a ``ZUNIONSTORE`` of the days in each shard, whose top N the reader merges (a meter's days are all
  in its own shard, so the merged top N is the top N of the whole fleet);
* ``{p}:meter:{id}:windows`` — the last :data:`RECENT` closed daily windows (JSON), newest first; a
  corrected day (``revision`` > 0, a late upload counted) replaces its earlier record in place;
* ``{p}:meter:{id}:alerts`` — the last :data:`RECENT_ALERTS` alerts (JSON), newest first.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Iterable
from datetime import date, timedelta
from itertools import chain
from typing import Any

import redis.asyncio as aioredis

from processors.jsonbytes import dumps
from stream.metrics import REDIS_LATENCY
from stream.slices import SLICE, slices
from stream.state.keys import MeterKeys

KEEP_DAYS = 400
RECENT = 14
RECENT_ALERTS = 20


_REVISE = """
-- KEYS: the meter's recent windows list; ARGV: window_start, record. Replace the record of that day in place.
local items = redis.call('LRANGE', KEYS[1], 0, -1)
for i, item in ipairs(items) do
  local ok, rec = pcall(cjson.decode, item)
  if ok and rec['window_start'] == ARGV[1] then
    redis.call('LSET', KEYS[1], i - 1, ARGV[2])
    return 1
  end
end
return 0
"""


class MeterStore:
    def __init__(self, client: aioredis.Redis, keys: MeterKeys | str, keep_days: int = KEEP_DAYS):
        self.client = client
        self.keys = MeterKeys(keys) if isinstance(keys, str) else keys
        self.keep_days = keep_days  # Settings.meter_ranking_days

    def day_key(self, day: str, region: str | None = None, shard: int = 0) -> str:
        """One shard's ranking of a day (with one shard: the day's ranking)."""
        return self.keys.shard_day(shard, day, region)

    async def save(
        self,
        daily_windows: Iterable[tuple[dict[str, Any], str | None]],
        alerts: Iterable[dict[str, Any]] = (),
        *,
        slice_size: int = SLICE,
    ) -> None:
        """Store closed daily meter windows (with the meter's region) and alert payloads.

        One pipeline per ``slice_size`` records (:mod:`stream.slices`), each run before the next is built,
        so a caller passing generators holds one slice at a time. A slice's ranking entries go out as one
        ``ZADD`` (and one ``EXPIRE``) per ranking key rather than per meter: when a day closes for every
        meter of a partition that is four commands per meter fewer (two for a meter without a region).
        Every command only sets what its records say (``ZADD`` overwrites a meter's score, a list push),
        so a crash between slices leaves what a replay of the same records rewrites.
        """
        records = chain(((rec, region, None) for rec, region in daily_windows), ((None, None, a) for a in alerts))
        for block in slices(records, slice_size):
            pipe = self.client.pipeline(transaction=False)
            ranks: dict[str, dict[str, float]] = {}
            for rec, region, alert in block:
                if alert is not None:
                    akey = self.keys.alerts(alert["meter_id"])
                    pipe.lpush(akey, dumps(alert))
                    pipe.ltrim(akey, 0, RECENT_ALERTS - 1)
                if rec is None:
                    continue
                day = rec["window_start"][:10]
                meter = rec["key"]
                shard = self.keys.shard_of(meter)
                ranks.setdefault(self.day_key(day, None, shard), {})[meter] = rec["kwh_in"]
                if region:
                    ranks.setdefault(self.day_key(day, region, shard), {})[meter] = rec["kwh_in"]
                wkey = self.keys.windows(meter)
                if rec.get("revision"):
                    # EVAL, not a registered script: redis-py's cluster pipeline does not load a script on the
                    # node of a key (NoScriptError); a corrected day is rare and the script short
                    pipe.eval(_REVISE, 1, wkey, rec["window_start"], dumps(rec))
                else:
                    pipe.lpush(wkey, dumps(rec))
                    pipe.ltrim(wkey, 0, RECENT - 1)
            for key, scores in ranks.items():
                pipe.zadd(key, scores)
                pipe.expire(key, self.keep_days * 86_400)
            started = time.perf_counter()
            await pipe.execute()
            REDIS_LATENCY.labels("meters_save").observe(time.perf_counter() - started)

    async def top(self, first: date, last: date, region: str | None = None, limit: int = 10) -> list[tuple[str, float]]:
        """Meters with the most kWh imported from ``first`` to ``last`` (inclusive), optionally in one region.

        One ``ZUNIONSTORE`` of the days per shard (its keys share the shard's slot) into a temporary key of
        that shard, its top ``limit`` read back; the shards' tops are merged here.
        """
        days = [(first + timedelta(days=i)).isoformat() for i in range((last - first).days + 1)]
        if not days:
            return []
        stamp = time.monotonic_ns()
        # one pipeline, no MULTI: the temporary keys are this call's own, and redis-py's Redis Cluster client
        # cannot queue ZUNIONSTORE in a transaction from a running event loop; the expiry removes a
        # temporary key should the DEL not run
        pipe = self.client.pipeline(transaction=False)
        for shard in range(self.keys.shards):
            tmp = f"{self.keys.prefix(shard)}:tmp:top:{stamp}"
            pipe.zunionstore(tmp, [self.day_key(d, region, shard) for d in days])
            pipe.expire(tmp, 60)
            pipe.zrevrange(tmp, 0, limit - 1, withscores=True)
            pipe.delete(tmp)
        replies = await pipe.execute()
        rows = [row for shard in range(self.keys.shards) for row in replies[4 * shard + 2]]
        best = heapq.nlargest(limit, rows, key=lambda r: (float(r[1]), r[0]))
        return [(m.decode() if isinstance(m, bytes) else m, float(s)) for m, s in best]
