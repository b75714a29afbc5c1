"""Per-meter views in Redis for the API: daily consumption rankings, recent daily windows, recent alerts.

* ``{ns}:kwh:{day}`` and ``{ns}:kwh:{region}:{day}`` — sorted sets meter → kWh imported that UTC day
  (``ZADD`` of the closed daily window: a replayed window overwrites, never adds), expiring after
  ``Settings.meter_ranking_days`` (default :data:`KEEP_DAYS`); top consumers over a range are a ``ZUNIONSTORE`` of the days;
* ``{ns}:meter:{id}:windows`` — the last :data:`RECENT` closed daily windows (JSON), newest first; a
  corrected day (``revision`` > 0, a late upload counted) replaces its earlier record in place;
* ``{ns}:meter:{id}:alerts`` — the last :data:`RECENT_ALERTS` alerts (JSON), newest first.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import date, timedelta
from typing import Any

import orjson
import redis.asyncio as aioredis

from stream.metrics import REDIS_LATENCY

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
    def __init__(self, client: aioredis.Redis, namespace: str, keep_days: int = KEEP_DAYS):
        self.client = client
        self.ns = namespace
        self._revise = client.register_script(_REVISE)
        self.keep_days = keep_days  # Settings.meter_ranking_days

    def day_key(self, day: str, region: str | None = None) -> str:
        return f"{self.ns}:kwh:{region}:{day}" if region else f"{self.ns}:kwh:{day}"

    async def save(
        self,
        daily_windows: Iterable[tuple[dict[str, Any], str | None]],
        alerts: Iterable[dict[str, Any]] = (),
    ) -> None:
        """Store closed daily meter windows (with the meter's region) and alert payloads."""
        pipe = self.client.pipeline(transaction=False)
        n = 0
        for rec, region in daily_windows:
            day = rec["window_start"][:10]
            meter = rec["key"]
            for key in (self.day_key(day), *([self.day_key(day, region)] if region else [])):
                pipe.zadd(key, {meter: rec["kwh_in"]})
                pipe.expire(key, self.keep_days * 86_400)
            wkey = f"{self.ns}:meter:{meter}:windows"
            if rec.get("revision"):
                await self._revise(keys=[wkey], args=[rec["window_start"], orjson.dumps(rec)], client=pipe)
            else:
                pipe.lpush(wkey, orjson.dumps(rec))
                pipe.ltrim(wkey, 0, RECENT - 1)
            n += 1
        for alert in alerts:
            akey = f"{self.ns}:meter:{alert['meter_id']}:alerts"
            pipe.lpush(akey, orjson.dumps(alert))
            pipe.ltrim(akey, 0, RECENT_ALERTS - 1)
            n += 1
        if n:
            started = time.perf_counter()
            await pipe.execute()
            REDIS_LATENCY.labels("meters_save").observe(time.perf_counter() - started)

    async def top(self, first: date, last: date, region: str | None = None, limit: int = 10) -> list[tuple[str, float]]:
        """Meters with the most kWh imported from ``first`` to ``last`` (inclusive), optionally in one region."""
        days = [(first + timedelta(days=i)).isoformat() for i in range((last - first).days + 1)]
        keys = [self.day_key(d, region) for d in days]
        if not keys:
            return []
        tmp = f"{self.ns}:tmp:top:{time.monotonic_ns()}"
        # one pipeline, no MULTI: the temporary key is this call's own, and redis-py's Redis Cluster client
        # cannot queue ZUNIONSTORE in a transaction from a running event loop; the expiry removes the
        # temporary key should the DEL not run
        pipe = self.client.pipeline(transaction=False)
        pipe.zunionstore(tmp, keys)
        pipe.expire(tmp, 60)
        pipe.zrevrange(tmp, 0, limit - 1, withscores=True)
        pipe.delete(tmp)
        _, _, rows, _ = await pipe.execute()
        return [(m.decode() if isinstance(m, bytes) else m, float(s)) for m, s in rows]
