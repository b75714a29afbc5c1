"""Meter health in Redis: the current state and reasons of every meter, queryable by the API.

One hash per meter (``{ns}:health:{meter}``: state, reasons, since) and one
set per state (``{ns}:health:state:{state}``) so "all poor meters" is one
``SMEMBERS``. Only changes are written, in one pipeline per batch.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import redis.asyncio as aioredis

from processors.health import HEALTH_STATES, MeterHealth
from stream.metrics import REDIS_LATENCY


class HealthStore:
    def __init__(self, client: aioredis.Redis, namespace: str):
        self.client = client
        self.ns = namespace

    def key(self, meter_id: str) -> str:
        return f"{self.ns}:health:{meter_id}"

    def state_key(self, state: str) -> str:
        return f"{self.ns}:health:state:{state}"

    async def save(self, changes: Iterable[MeterHealth]) -> None:
        pipe = self.client.pipeline(transaction=False)
        n = 0
        for h in changes:
            pipe.hset(self.key(h.meter_id), mapping={"state": h.state, "reasons": ",".join(h.reasons), "since": h.since})
            for state in HEALTH_STATES:
                if state == h.state:
                    pipe.sadd(self.state_key(state), h.meter_id)
                else:
                    pipe.srem(self.state_key(state), h.meter_id)
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
        members: set[Any] = await self.client.smembers(self.state_key(state))
        return sorted(m.decode() if isinstance(m, bytes) else m for m in members)
