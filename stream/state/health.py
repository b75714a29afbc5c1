"""Meter health in Redis: the current state and reasons of every meter, queryable by the API.

One hash per meter (state, reasons, since) and one set per state and meter shard, so "all poor
meters" is one ``SMEMBERS`` per shard (:class:`stream.state.keys.MeterKeys` names the keys: with
one shard ``{ns}:health:{meter}`` and ``{ns}:health:state:{state}``). Only changes are written, in
one pipeline per batch.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import redis.asyncio as aioredis

from processors.health import HEALTH_STATES, MeterHealth
from stream.metrics import REDIS_LATENCY
from stream.state.keys import MeterKeys


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class HealthStore:
    def __init__(self, client: aioredis.Redis, keys: MeterKeys | str):
        self.client = client
        self.keys = MeterKeys(keys) if isinstance(keys, str) else keys

    def key(self, meter_id: str) -> str:
        return self.keys.health(meter_id)

    async def save(self, changes: Iterable[MeterHealth]) -> None:
        pipe = self.client.pipeline(transaction=False)
        n = 0
        for h in changes:
            pipe.hset(self.key(h.meter_id), mapping={"state": h.state, "reasons": ",".join(h.reasons), "since": h.since})
            shard = self.keys.shard_of(h.meter_id)
            for state in HEALTH_STATES:
                if state == h.state:
                    pipe.sadd(self.keys.shard_state(shard, state), h.meter_id)
                else:
                    pipe.srem(self.keys.shard_state(shard, state), h.meter_id)
            n += 1
        if n:
            started = time.perf_counter()
            await pipe.execute()
            REDIS_LATENCY.labels("health_save").observe(time.perf_counter() - started)

    async def get(self, meter_id: str) -> dict[str, Any] | None:
        raw: dict[Any, Any] = await self.client.hgetall(self.key(meter_id))
        if not raw:
            return None
        reasons = raw[b"reasons"].decode()
        return {
            "meter_id": meter_id,
            "state": raw[b"state"].decode(),
            "reasons": reasons.split(",") if reasons else [],
            "since": int(raw[b"since"]),
        }

    async def members(self, state: str) -> list[str]:
        """The meters in ``state``, sorted: the union of the shards' sets."""
        pipe = self.client.pipeline(transaction=False)
        for key in self.keys.state_sets(state):
            pipe.smembers(key)
        return sorted({_text(m) for members in await pipe.execute() for m in members})

    async def states(self) -> dict[str, str]:
        """meter → health state, from every shard's state sets (one pipeline)."""
        pipe = self.client.pipeline(transaction=False)
        for state in HEALTH_STATES:
            for key in self.keys.state_sets(state):
                pipe.smembers(key)
        replies = iter(await pipe.execute())
        out: dict[str, str] = {}
        for state in HEALTH_STATES:
            for _ in range(self.keys.shards):
                out.update((_text(m), state) for m in next(replies))
        return out
