"""The shard count of the customer projection as stored, the check at a worker's start, and the move to another.

The customer keys and member sets are named by their shard (:mod:`stream.state.keys`), so the
shard count is part of the data, like the Kafka partition count. ``{ns}:layout`` (hash, field
``shards``) records the count the data was written with; a deployment of an earlier version has no
such key but a segment catalogue, and its data is in one shard (the only layout there was).

A worker checks the settings against it before it starts (:func:`check_layout`): a fresh app
records its count; a mismatch (a deployment upgrading to a Redis Cluster, whose default is
:data:`~stream.state.keys.CLUSTER_SHARDS` shards, or a changed ``METERSEG_REDIS_SHARDS``) stops the
worker with what to do instead of writing a second projection beside the first, which would lose
the old state from every read. ``meterseg reshard-customers`` (:func:`reshard`) moves the keys.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import redis

from stream.state.keys import CustomerKeys

BATCH = 500


class LayoutMismatch(RuntimeError):
    """The customer projection in Redis has another shard count than the settings give."""


def layout_key(namespace: str) -> str:
    return f"{namespace}:layout"


def stored_shards(client: redis.Redis, namespace: str) -> int | None:
    """The shard count the app's customer projection is in: recorded, 1 for data of earlier versions, None if fresh."""
    raw = client.hget(layout_key(namespace), "shards")
    if raw is not None:
        return int(raw)
    return 1 if client.exists(f"{namespace}:segments") else None


def check_layout(client: redis.Redis, namespace: str, shards: int) -> None:
    """Record ``shards`` for a fresh app; raise :class:`LayoutMismatch` when the stored data has another count."""
    stored = stored_shards(client, namespace)
    if stored is not None and stored != shards:
        raise LayoutMismatch(
            f"the customer projection in Redis ({namespace}) is in {stored} shard(s), the settings give {shards}: "
            f"stop the workers and run `meterseg reshard-customers` to move it to {shards}, or set "
            f"METERSEG_REDIS_SHARDS={stored} to keep it as it is (see docs/scaling.md, Redis Cluster)"
        )
    client.hset(layout_key(namespace), "shards", str(shards))


def _segments(client: redis.Redis, namespace: str) -> list[tuple[str, str]]:
    """Every segment that may have member sets: the catalogue, the API's rule segments and removed ones."""
    out: set[tuple[str, str]] = set()
    for k in client.hkeys(f"{namespace}:segments"):
        family, _, sid = (k.decode() if isinstance(k, bytes) else str(k)).partition(":")
        out.add((family, sid))
    for k in [*client.hkeys(f"{namespace}:rules"), *client.smembers(f"{namespace}:rules:removed")]:
        out.add(("rule", k.decode() if isinstance(k, bytes) else str(k)))
    return sorted(out)


def _batches(items: Iterator[Any], size: int = BATCH) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _target(key: str, new: CustomerKeys) -> str | None:
    """The name a customer hash or history key has in the new layout (None: not a customer key)."""
    _, sep, rest = key.partition(":cust:")
    if not sep:
        return None
    return new.history(rest[: -len(":hist")]) if rest.endswith(":hist") else new.customer(rest)


def reshard(client: redis.Redis, namespace: str, shards: int, progress: Any = None) -> dict[str, int]:
    """Move the customer hashes, histories and member sets from the stored shard count to ``shards``.

    Keys move with ``DUMP``/``RESTORE`` (a Redis Cluster cannot rename across slots), members with
    ``SADD`` to the new shard's set before the ``SREM`` from the old one; run with the workers stopped.
    Safe to interrupt and run again: what has moved is found under its new name and left. Returns the
    counts ``customer_keys`` and ``members`` moved and the ``from_shards``, ``to_shards``.
    """
    stored = stored_shards(client, namespace)
    old = CustomerKeys(namespace, stored or 1)
    new = CustomerKeys(namespace, shards)
    out = {"from_shards": old.shards, "to_shards": shards, "customer_keys": 0, "members": 0}
    if stored is None or old == new:
        client.hset(layout_key(namespace), "shards", str(shards))
        return out
    # a marker first: an interrupted move is resumed (the old layout is still the one to read from)
    client.hset(layout_key(namespace), mapping={"shards": str(old.shards), "moving_to": str(shards)})
    scanned = (k for pattern in old.customer_patterns() for k in client.scan_iter(match=pattern, count=1000))
    for batch in _batches(scanned):
        names = [k.decode() if isinstance(k, bytes) else str(k) for k in batch]
        moves = [(n, t) for n in names if (t := _target(n, new)) is not None and t != n]
        if not moves:
            continue
        pipe = client.pipeline(transaction=False)
        for name, _ in moves:
            pipe.dump(name)
        dumps = pipe.execute()
        pipe = client.pipeline(transaction=False)
        for (name, target), value in zip(moves, dumps, strict=True):
            if value is not None:
                pipe.restore(target, 0, value, replace=True)
                pipe.delete(name)
        pipe.execute()
        out["customer_keys"] += len(moves)
        if progress:
            progress(out)
    for family, sid in _segments(client, namespace):
        for key in old.members(family, sid):
            for batch in _batches(iter(client.sscan_iter(key, count=1000))):
                members = [m.decode() if isinstance(m, bytes) else str(m) for m in batch]
                moving = [(m, new.shard_members(new.shard_of(m), family, sid)) for m in members]
                moving = [(m, t) for m, t in moving if t != key]
                if not moving:
                    continue
                pipe = client.pipeline(transaction=False)
                for m, target in moving:
                    pipe.sadd(target, m)
                pipe.execute()
                client.srem(key, *(m for m, _ in moving))
                out["members"] += len(moving)
            # an old set left empty is gone (Redis drops empty sets): nothing to delete
        if progress:
            progress(out)
    client.hset(layout_key(namespace), "shards", str(shards))
    client.hdel(layout_key(namespace), "moving_to")
    return out
