"""One observation time for the whole fleet: the segmentation partitions' event clocks, merged.

Each segmentation partition keeps its own event clock (the largest purchase
or profile time it has seen, running on once quiet). Judged partition by
partition, two customers observed "now" would be aged against different
times: after a clean import one partition's clock stopped a day short and its
741 customers kept a T one day too small. So every worker publishes its
partitions' clocks to one Redis hash, ``{ns}:clock`` (field = partition,
value = event time in epoch seconds, written with the wall time it was read
at), and everything that ages a customer - the API's T, days since the last
purchase, CLV, churn risk, and the pipeline's R-score rescoring - uses the
largest of them: :func:`fleet_now`.

Why the largest: event time only moves forward, and a partition that has
seen nothing lately has simply had no events (customers are partitioned by
id, not by time), so the latest clock is the fleet's best idea of "now".
Events too far in the future never reach a clock (they are dead-lettered
``in_future`` first, see ``processors.segmentation``).
"""

from __future__ import annotations

from collections.abc import Mapping

import orjson
import redis.asyncio as aioredis

from processors.jsonbytes import dumps


def clock_key(namespace: str) -> str:
    """The Redis hash of partition clocks."""
    return f"{namespace}:clock"


async def publish_clocks(client: aioredis.Redis, namespace: str, clocks: Mapping[int, float | None]) -> None:
    """Store this worker's partition clocks (``None``: no event yet, nothing written)."""
    values = {str(p): dumps(t) for p, t in clocks.items() if t is not None}
    if values:
        await client.hset(clock_key(namespace), mapping=values)  # type: ignore[arg-type]  # (dict invariance)


async def fleet_now(client: aioredis.Redis, namespace: str) -> float | None:
    """The fleet's observation time: the largest partition clock (``None`` before any event)."""
    raw: dict[bytes | str, bytes | str] = await client.hgetall(clock_key(namespace))
    times = [float(orjson.loads(v)) for v in raw.values()]
    return max(times) if times else None
