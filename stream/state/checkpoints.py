"""Partition checkpoints in Redis: processor state and the offsets it reflects, written atomically.

Why state and offsets together: if a worker dies between processing and
committing, Kafka would redeliver records the state already contains
(counted twice) or, committed first, lose them. One ``HSET`` of both fields
is atomic in Redis, so on restart the worker restores the state and resumes
exactly at the offsets that state reflects: nothing lost, nothing counted twice.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
import redis.asyncio as aioredis

from stream.metrics import REDIS_LATENCY

_NUMPY = orjson.OPT_SERIALIZE_NUMPY


class CheckpointStore:
    """Checkpoints under ``{namespace}:ckpt:{pipeline}:{partition}``."""

    def __init__(self, client: aioredis.Redis, namespace: str):
        self.client = client
        self.namespace = namespace

    def key(self, pipeline: str, partition: int) -> str:
        return f"{self.namespace}:ckpt:{pipeline}:{partition}"

    async def save(self, pipeline: str, partition: int, state: Any, offsets: dict[str, int]) -> None:
        """Store ``state`` (JSON-serialisable, numpy allowed) with ``offsets`` (topic → next offset)."""
        mapping: dict[str, bytes] = {"state": orjson.dumps(state, option=_NUMPY), "saved_at": str(time.time()).encode()}
        mapping.update({f"offset:{topic}": str(offset).encode() for topic, offset in offsets.items()})
        started = time.perf_counter()
        await self.client.hset(self.key(pipeline, partition), mapping=mapping)  # type: ignore[arg-type]
        REDIS_LATENCY.labels("checkpoint_save").observe(time.perf_counter() - started)

    async def load(self, pipeline: str, partition: int) -> tuple[Any | None, dict[str, int]]:
        """The last checkpoint's state (or None) and its offsets."""
        started = time.perf_counter()
        raw: dict[Any, Any] = await self.client.hgetall(self.key(pipeline, partition))
        REDIS_LATENCY.labels("checkpoint_load").observe(time.perf_counter() - started)
        if not raw:
            return None, {}
        offsets = {k.decode()[7:]: int(v) for k, v in raw.items() if k.startswith(b"offset:")}
        state = orjson.loads(raw[b"state"]) if b"state" in raw else None
        return state, offsets
