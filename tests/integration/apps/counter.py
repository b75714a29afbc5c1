"""A minimal Faust worker for the foundation end-to-end test.

It consumes ``COUNT_TOPIC`` and records every message's id in a Redis set
(``SADD`` is idempotent, so a redelivery cannot inflate the count).
"""

from __future__ import annotations

import os

import orjson
import redis.asyncio as aioredis

from meterseg.settings import Settings
from stream.app import create_app

settings = Settings()
app = create_app(settings, web_enabled=False)
topic = app.topic(os.environ["COUNT_TOPIC"], value_serializer="raw")
KEY = os.environ["COUNT_KEY"]


@app.agent(topic)
async def count(stream):  # type: ignore[no-untyped-def]
    client = aioredis.Redis.from_url(settings.redis_url)
    async for values in stream.take(500, within=0.2):
        ids = [orjson.loads(v)["id"] for v in values]
        await client.sadd(KEY, *ids)


if __name__ == "__main__":
    app.main()
