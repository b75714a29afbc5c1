"""Outstanding bills in Redis: bounded by the unpaid ones, totals kept as counters.

* ``{ns}:bills:outstanding`` — bill id → ``[amount, 0]`` (JSON) for bills issued and not paid yet;
* ``{ns}:bills:totals`` — ``count`` and ``amount`` of those, updated in the same script (the gauges read
  two fields, never the whole hash);
* ``{ns}:bills:paid:{id}`` — a paid bill's marker, expiring after ``paid_retention_s``: a replayed "issued"
  or "paid" event of that bill (at-least-once delivery) within the retention is recognised and ignored.

So a paid bill leaves the outstanding hash at once, and its marker leaves Redis after the retention:
memory is about 60 bytes per unpaid bill plus 50 per bill paid within the retention.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

_APPLY = """
-- KEYS: outstanding hash, totals hash, then one paid-marker key per bill; ARGV: ttl s, then (id, amount, paid)
local ttl = tonumber(ARGV[1])
local out = {}
for i = 0, #KEYS - 3 do
  local id, amount, paid = ARGV[2 + 3 * i], tonumber(ARGV[3 + 3 * i]), ARGV[4 + 3 * i] == '1'
  local marker = KEYS[3 + i]
  local code = 'dup'
  if redis.call('EXISTS', marker) == 0 then
    if not paid then
      if redis.call('HSETNX', KEYS[1], id, cjson.encode({amount, 0})) == 1 then
        redis.call('HINCRBY', KEYS[2], 'count', 1)
        redis.call('HINCRBYFLOAT', KEYS[2], 'amount', amount)
        code = 'issued'
      end
    else
      redis.call('SET', marker, amount, 'EX', ttl)
      local prev = redis.call('HGET', KEYS[1], id)
      if prev then
        redis.call('HDEL', KEYS[1], id)
        redis.call('HINCRBY', KEYS[2], 'count', -1)
        redis.call('HINCRBYFLOAT', KEYS[2], 'amount', -cjson.decode(prev)[1])
        code = 'paid'
      else
        code = 'paid_unseen'
      end
    end
  end
  out[#out + 1] = code
end
return out
"""


class BillStore:
    """Applies bill events idempotently; see the module docstring for the keys."""

    def __init__(self, client: Any, namespace: str, paid_retention_s: int):
        self.client = client
        self.ns = namespace
        self.outstanding = f"{namespace}:bills:outstanding"
        self.totals = f"{namespace}:bills:totals"
        self.paid_retention_s = paid_retention_s
        self._apply = client.register_script(_APPLY)

    def paid_key(self, bill_id: str) -> str:
        return f"{self.ns}:bills:paid:{bill_id}"

    async def apply(self, bills: Sequence[tuple[str, float, bool]]) -> list[str]:
        """(bill id, amount, paid) events → per event ``issued``, ``paid``, ``paid_unseen`` (a payment whose
        bill was never seen: count it issued and paid) or ``dup`` (a replay: count nothing)."""
        if not bills:
            return []
        args: list[Any] = [self.paid_retention_s]
        for bill_id, amount, paid in bills:
            args += [bill_id, repr(float(amount)), "1" if paid else "0"]
        keys = [self.outstanding, self.totals, *(self.paid_key(b[0]) for b in bills)]
        codes = await self._apply(keys=keys, args=args)
        return [c.decode() if isinstance(c, bytes) else str(c) for c in codes]

    async def outstanding_totals(self) -> tuple[int, float]:
        """Number and amount of bills issued and not paid (two fields; migrates an older hash once)."""
        count, amount = await self.client.hmget(self.totals, ["count", "amount"])
        if count is None:
            return await self._migrate()
        return int(count), round(float(amount or 0.0), 6)

    async def _migrate(self) -> tuple[int, float]:
        """Earlier versions kept paid bills as ``[amount, 1]`` forever: drop them, count the rest once."""
        values = await self.client.hgetall(self.outstanding)
        paid = [k for k, v in values.items() if orjson.loads(v)[1]]
        unpaid = [orjson.loads(v)[0] for k, v in values.items() if not orjson.loads(v)[1]]
        pipe = self.client.pipeline(transaction=False)  # one-time and idempotent; cluster pipelines have no MULTI
        for k in paid:
            key = k.decode() if isinstance(k, bytes) else k
            pipe.set(self.paid_key(key), 1, ex=self.paid_retention_s)
        if paid:
            pipe.hdel(self.outstanding, *paid)
        pipe.hset(self.totals, mapping={"count": len(unpaid), "amount": float(sum(unpaid))})
        await pipe.execute()
        return len(unpaid), float(sum(unpaid))
