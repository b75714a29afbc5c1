"""The shard counts of the customer projection and the per-meter state as stored, the check at a worker's start, and the move.

The customer keys and member sets, and the per-meter keys (health, recent windows and alerts, daily
kWh rankings), are named by their shard (:mod:`stream.state.keys`), so the shard count is part of
the data, like the Kafka partition count. ``{ns}:layout`` (hash) records the counts the data was
written with: field ``shards`` the customer keys', ``meter_shards`` the meter keys'. A deployment of
an earlier version has no such key but a segment catalogue, and its data is in one shard (the only
layout there was); a layout without ``meter_shards`` (the version that spread the customer keys
only) has its meter keys in one shard.

A worker checks the settings against it before it starts (:func:`check_layout`): a fresh app
records its count; a mismatch (a deployment upgrading to a Redis Cluster, whose default is
:data:`~stream.state.keys.CLUSTER_SHARDS` shards, or a changed ``METERSEG_REDIS_SHARDS``) stops the
worker with what to do instead of writing a second projection beside the first, which would lose
the old state from every read. ``meterseg reshard-customers`` (:func:`reshard`) moves the keys of
both, customers' and meters' (:func:`reshard_meters`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import redis

from processors.health import HEALTH_STATES
from stream.state.keys import CustomerKeys, MeterKeys

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


def stored_meter_shards(client: redis.Redis, namespace: str) -> int | None:
    """The shard count of the app's per-meter keys: recorded, 1 for data of earlier versions, None if fresh."""
    raw = client.hget(layout_key(namespace), "meter_shards")
    if raw is not None:
        return int(raw)
    one = MeterKeys(namespace, 1)
    earlier = client.exists(layout_key(namespace), f"{namespace}:segments", *(one.shard_state(0, s) for s in HEALTH_STATES))
    return 1 if earlier else None


def check_layout(client: redis.Redis, namespace: str, shards: int) -> None:
    """Record ``shards`` for a fresh app; raise :class:`LayoutMismatch` when the stored data has another count.

    Both the customer projection's count and the meter keys' count are checked (one setting gives both).
    """
    stored, meters = stored_shards(client, namespace), stored_meter_shards(client, namespace)
    for what, count in (("customer projection", stored), ("per-meter state", meters)):
        if count is not None and count != shards:
            # keeping the stored layout is a choice only when both parts are in the same count (one setting)
            keep = f", or set METERSEG_REDIS_SHARDS={count} to keep it as it is" if {stored, meters} <= {count, None} else ""
            raise LayoutMismatch(
                f"the {what} in Redis ({namespace}) is in {count} shard(s), the settings give {shards}: "
                f"stop the workers and run `meterseg reshard-customers` to move it to {shards}{keep} "
                f"(see docs/scaling.md, Redis Cluster)"
            )
    client.hset(layout_key(namespace), mapping={"shards": str(shards), "meter_shards": str(shards)})


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
    """Move the customer hashes, histories and member sets from the stored shard count to ``shards``, then the meter keys.

    Keys move with ``DUMP``/``RESTORE`` (a Redis Cluster cannot rename across slots), members with
    ``SADD`` to the new shard's set before the ``SREM`` from the old one; run with the workers stopped.
    Safe to interrupt and run again: what has moved is found under its new name and left. Returns the
    counts ``customer_keys`` and ``members`` moved and the ``from_shards``, ``to_shards``, and those of
    :func:`reshard_meters` (``meter_keys``, ``meter_members``, ``meter_from_shards``).
    """
    out = _reshard_customers(client, namespace, shards, progress)
    out.update(reshard_meters(client, namespace, shards, lambda counts: progress({**out, **counts}) if progress else None))
    return out


def _reshard_customers(client: redis.Redis, namespace: str, shards: int, progress: Any = None) -> dict[str, int]:
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


def _meter_target(rest: str, new: MeterKeys) -> str | None:
    """The new name of a per-meter key that moves whole (a health hash, windows, alerts); None for a set."""
    if rest.startswith("health:"):
        meter = rest[len("health:") :]
        return None if meter.startswith("state:") else new.health(meter)
    if rest.startswith("meter:"):
        for kind in ("windows", "alerts"):
            if rest.endswith(f":{kind}"):
                meter = rest[len("meter:") : -len(kind) - 1]
                return new.windows(meter) if kind == "windows" else new.alerts(meter)
    return None


def _move_members(client: redis.Redis, key: str, rest: str, new: MeterKeys) -> int:
    """Move the members of a health state set or a kWh ranking to their new shard's key; returns how many moved."""
    moved = 0
    if rest.startswith("health:state:"):
        state = rest[len("health:state:") :]
        for batch in _batches(iter(client.sscan_iter(key, count=1000))):
            placed = [(m, new.shard_state(new.shard_of(_text(m)), state)) for m in batch]
            moving = [(m, t) for m, t in placed if t != key]
            if moving:
                pipe = client.pipeline(transaction=False)
                for m, target in moving:
                    pipe.sadd(target, m)
                pipe.execute()
                client.srem(key, *(m for m, _ in moving))
                moved += len(moving)
        return moved
    day_part = rest[len("kwh:") :]
    region, _, day = day_part.rpartition(":")
    ttl = int(client.pttl(key))
    for batch in _batches(iter(client.zscan_iter(key, count=1000))):
        ranked = [(m, score, new.shard_day(new.shard_of(_text(m)), day, region or None)) for m, score in batch]
        shifting = [(m, score, t) for m, score, t in ranked if t != key]
        if not shifting:
            continue
        pipe = client.pipeline(transaction=False)
        for m, score, target in shifting:
            pipe.zadd(target, {m: score})
        targets = sorted({t for _, _, t in shifting})
        for target in targets:
            pipe.pttl(target)
        replies = pipe.execute()
        if ttl > 0:  # the ranking expires as the old one would (the later expiry where two old keys meet)
            pipe = client.pipeline(transaction=False)
            for target, left in zip(targets, replies[len(shifting) :], strict=True):
                if int(left) < ttl:
                    pipe.pexpire(target, ttl)
            pipe.execute()
        client.zrem(key, *(m for m, _, _ in shifting))
        moved += len(shifting)
    return moved


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def reshard_meters(client: redis.Redis, namespace: str, shards: int, progress: Any = None) -> dict[str, int]:
    """Move the per-meter keys (health, windows, alerts, daily kWh rankings) from their stored shard count to ``shards``.

    A meter's health hash, windows and alerts move whole (``DUMP``/``RESTORE`` with their TTL, then ``DEL``);
    the members of the health state sets and the rankings move one by one to their new shard's key (``SADD``/
    ``ZADD`` before ``SREM``/``ZREM``; a ranking keeps its expiry). Resumable like :func:`reshard`. Returns
    ``meter_keys`` and ``meter_members`` moved and ``meter_from_shards``.
    """
    stored = stored_meter_shards(client, namespace)
    old, new = MeterKeys(namespace, stored or 1), MeterKeys(namespace, shards)
    out = {"meter_from_shards": old.shards, "meter_keys": 0, "meter_members": 0}
    if stored is None or old == new:
        client.hset(layout_key(namespace), "meter_shards", str(shards))
        return out
    client.hset(layout_key(namespace), mapping={"meter_shards": str(old.shards), "meters_moving_to": str(shards)})
    old_prefixes = {old.prefix(k) for k in range(old.shards)}
    scanned = (k for pattern in old.patterns() for k in client.scan_iter(match=pattern, count=1000))
    for batch in _batches(scanned):
        whole: list[tuple[str, str]] = []
        for name in map(_text, batch):
            split = old.split(name)
            if split is None or split[0] not in old_prefixes:
                continue  # a key of the new layout (sharded patterns overlap) or another app's
            rest = split[1]
            target = _meter_target(rest, new)
            if target is None:
                if rest.startswith(("health:state:", "kwh:")):
                    out["meter_members"] += _move_members(client, name, rest, new)
            elif target != name:
                whole.append((name, target))
        if whole:
            pipe = client.pipeline(transaction=False)
            for name, _ in whole:
                pipe.dump(name)
                pipe.pttl(name)
            replies = pipe.execute()
            pipe = client.pipeline(transaction=False)
            for i, (name, target) in enumerate(whole):
                value, ttl = replies[2 * i], int(replies[2 * i + 1])
                if value is not None:
                    pipe.restore(target, max(ttl, 0), value, replace=True)
                    pipe.delete(name)
            pipe.execute()
            out["meter_keys"] += len(whole)
        if progress:
            progress(out)
    client.hset(layout_key(namespace), "meter_shards", str(shards))
    client.hdel(layout_key(namespace), "meters_moving_to")
    return out
