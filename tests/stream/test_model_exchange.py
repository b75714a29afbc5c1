"""The fleet model's exchange through Redis: an owner state written by an older version is re-seeded, not read."""

from __future__ import annotations

import uuid

import numpy as np
import orjson
import pytest
import redis.asyncio as aioredis

from processors.clustering.model import ClusterStats, FeatureSpec
from processors.clustering.owner import ModelOwner
from stream.state.model import ModelExchange
from tests.conftest import Services

pytestmark = pytest.mark.integration


async def test_outdated_owner_state_reseeds_with_ids_and_versions_continuing(services: Services) -> None:
    client = aioredis.Redis.from_url(services.redis_url.rsplit("/", 1)[0] + "/12")
    ns = f"mx-{uuid.uuid4().hex[:8]}"
    spec = FeatureSpec()
    try:
        # what a format-1 owner left: no "format", an older model at version 17, ids up to B8
        await client.set(f"{ns}:model:owner_state", orjson.dumps({"config": {"k": 8}, "next_number": 9,
                                                                  "model": {"version": 17}}))
        exchange = ModelExchange(client, ns, lambda: ModelOwner(k=2, spec=spec, min_seed_samples=16))
        stats = ClusterStats.empty(spec)
        x = np.random.default_rng(1).random((40, len(spec.names)))
        stats.scaler.learn(x)
        stats.add_sample(x)
        await exchange.push_stats([stats])
        events = await exchange.run_owner()
        assert [e.version for e in events] == [18] and {c.id for c in events[0].clusters} == {"B9", "B10"}
        stored = orjson.loads(await client.get(f"{ns}:model:owner_state"))
        assert stored["format"] == 2 and stored["next_number"] == 11
    finally:
        keys = [k async for k in client.scan_iter(match=f"{ns}:*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()
