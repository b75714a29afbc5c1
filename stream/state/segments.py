"""Segment memberships and customer profiles in Redis: what the API and analysts read.

Layout (``ns`` = app namespace; ``{c}`` = the customer's shard prefix, :mod:`stream.state.keys`:
``ns`` itself with one shard, the hash tag ``{app:s<k>}`` with several):

* ``{c}:seg:{family}:{segment}`` — the segment's members in that shard (the segment is their union);
* ``{ns}:segments`` — hash ``family:segment`` → JSON (family, id, name, profile ...), the catalogue;
* ``{c}:cust:{customer}`` — hash: ``seg:rfm``, ``seg:behaviour`` (segment ids), ``rule:{id}`` flags,
  ``rfm`` (summary and scores), ``features`` and ``features2`` (the feature values), ``hours`` (the
  hourly weekday and weekend-day shapes), the last four in
  the compact format of :mod:`stream.state.customer_codec` (every value within 63 bytes, so the hash
  keeps Redis' listpack encoding on a stock server; values of earlier versions, JSON, still read);
* ``{c}:cust:{customer}:hist`` — the last :data:`HISTORY` changes (JSON), newest first;
* ``{ns}:seg:sizes:{family}:{segment}`` — sorted set of (day → size) samples for size history
  (fleet-wide sizes, one small key per segment: not sharded).

The membership script of a batch runs once per shard it touches (its keys share the shard's slot).
The other writes of one batch go in one pipeline, except its customers' features: they follow in
pipelines of :data:`FEATURES_SLICE` customers, each run before the next is built (when a day closes,
every customer of a partition gets new features at once). Applying the same change twice
leaves the same sets (SADD/SREM are idempotent); the history may hold a
repeated entry after a crash replay, which is documented as at-least-once.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import orjson
import redis
import redis.asyncio as aioredis

from processors.features import CustomerFeatures
from processors.jsonbytes import dumps
from processors.rfm.processor import RfmAssignment
from processors.segments import SegmentChange
from stream.metrics import REDIS_LATENCY
from stream.slices import SLICE, slices
from stream.state.customer_codec import (
    FEATURES_FIELDS,
    HOURS_FIELD,
    RFM_FIELD,
    decode_features,
    decode_rfm,
    encode_features,
    encode_hours,
    encode_rfm,
    rfm_segment_names,
)
from stream.state.keys import CustomerKeys

HISTORY = 50

SINGLE_FAMILIES = frozenset({"rfm", "behaviour"})

# One customer has one segment per single-membership family (rfm, behaviour). An entry replaces the
# customer's current segment in the family, whatever the record's from_segment says: after a crash, a
# replay may re-score against another population and leave from the one the projection last recorded.
_SINGLE = """
-- KEYS[1]: routes to the shard's slot; ARGV[1]: the shard's key prefix, then (customer, family, segment, change)...
local ns = ARGV[1]
for i = 2, #ARGV, 4 do
  local cust, fam, seg, act = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local ckey = ns .. ':cust:' .. cust
  local field = 'seg:' .. fam
  local current = redis.call('HGET', ckey, field)
  if act == 'entry' then
    if current and current ~= seg then
      redis.call('SREM', ns .. ':seg:' .. fam .. ':' .. current, cust)
    end
    redis.call('SADD', ns .. ':seg:' .. fam .. ':' .. seg, cust)
    redis.call('HSET', ckey, field, seg)
  else
    redis.call('SREM', ns .. ':seg:' .. fam .. ':' .. seg, cust)
    if current == seg then
      redis.call('HDEL', ckey, field)
    end
  end
end
return 1
"""


def rfm_object(a: RfmAssignment) -> dict[str, Any]:
    """The ``rfm`` object of an assignment as the API serves it: the summary, scores, segment and its name."""
    return {
        **a.summary.model_dump(mode="json"),
        "r_score": a.r_score,
        "f_score": a.f_score,
        "m_score": a.m_score,
        "segment": a.segment_id,
        "segment_name": a.segment_name,
    }


#: customers whose features go in one pipeline (:meth:`MembershipStore.apply`, :mod:`stream.slices`)
FEATURES_SLICE = SLICE

_HISTORY = """
-- KEYS: a customer's history list; ARGV: change JSON, length kept
if redis.call('LPOS', KEYS[1], ARGV[1]) then return 0 end
redis.call('LPUSH', KEYS[1], ARGV[1])
redis.call('LTRIM', KEYS[1], 0, tonumber(ARGV[2]) - 1)
return 1
"""


class MembershipStore:
    """Writes and reads the customer projection and the member sets (``shards``: :mod:`stream.state.keys`)."""

    def __init__(self, client: aioredis.Redis, namespace: str, shards: int = 1):
        self.client = client
        self.ns = namespace
        self.keys = CustomerKeys(namespace, shards)

    def members_keys(self, family: str, segment_id: str) -> list[str]:
        return self.keys.members(family, segment_id)

    def customer_key(self, customer_id: str) -> str:
        return self.keys.customer(customer_id)

    @property
    def catalogue_key(self) -> str:
        return f"{self.ns}:segments"

    async def apply(
        self,
        changes: Iterable[SegmentChange],
        rfm: Iterable[RfmAssignment] = (),
        features: Iterable[CustomerFeatures] = (),
        catalogue: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        pipe = self.client.pipeline(transaction=False)
        n = 0
        single: dict[int, list[str]] = {}
        keys = self.keys
        for c in changes:
            n += 1
            shard = keys.shard_of(c.customer_id)
            if c.family in SINGLE_FAMILIES:
                single.setdefault(shard, [keys.prefix(shard)]).extend((c.customer_id, c.family, c.segment_id, c.change))
            elif c.change == "entry":
                pipe.sadd(keys.shard_members(shard, c.family, c.segment_id), c.customer_id)
                pipe.hset(keys.customer(c.customer_id), f"rule:{c.segment_id}", c.segment_id)
            else:
                pipe.srem(keys.shard_members(shard, c.family, c.segment_id), c.customer_id)
                pipe.hdel(keys.customer(c.customer_id), f"rule:{c.segment_id}")
            if c.change == "entry":
                pipe.hsetnx(
                    self.catalogue_key,
                    f"{c.family}:{c.segment_id}",
                    dumps({"family": c.family, "id": c.segment_id, "name": c.segment_name}),
                )
            hist = keys.history(c.customer_id)
            # a replay after a crash re-emits the same change (same customer, segment, time, reason): kept once
            # EVAL, not EVALSHA: a Redis Cluster pipeline does not load scripts on the node first
            pipe.eval(_HISTORY, 1, hist, c.model_dump_json(), HISTORY)
        for a in rfm:
            n += 1
            pipe.hset(
                self.customer_key(a.customer_id),
                RFM_FIELD,
                encode_rfm(rfm_object(a)),
            )
        for key, entry in (catalogue or {}).items():
            n += 1
            pipe.hset(self.catalogue_key, key, dumps(entry))
        started = time.perf_counter()
        if n:
            if single:
                # one script per shard, routed by a key of the shard's slot (every key it touches shares it);
                # before the other writes, as one server would run them
                scripts = self.client.pipeline(transaction=False)
                for shard, args in single.items():
                    scripts.eval(_SINGLE, 1, keys.route(shard), *args)
                await scripts.execute()
            await pipe.execute()
        for block in slices(features, FEATURES_SLICE):
            n += len(block)
            pipe = self.client.pipeline(transaction=False)
            for f in block:
                fields: dict[str, bytes] = encode_features(f.day, f.values)
                hours = encode_hours(f.shape) if f.shape else None
                if hours is not None:
                    fields[HOURS_FIELD] = hours
                pipe.hset(self.customer_key(f.customer_id), mapping=fields)  # type: ignore[arg-type]  # (dict invariance)
            await pipe.execute()
        if n:
            REDIS_LATENCY.labels("segments_apply").observe(time.perf_counter() - started)

    async def members(self, family: str, segment_id: str) -> set[str]:
        """Every member of a segment: the union of its shards' sets."""
        pipe = self.client.pipeline(transaction=False)
        for key in self.members_keys(family, segment_id):
            pipe.smembers(key)
        out: set[str] = set()
        for raw in await pipe.execute():
            out.update(m.decode() if isinstance(m, bytes) else m for m in raw)
        return out

    async def catalogue(self) -> dict[str, dict[str, Any]]:
        raw: dict[Any, Any] = await self.client.hgetall(self.catalogue_key)
        return {(k.decode() if isinstance(k, bytes) else k): orjson.loads(v) for k, v in raw.items()}

    async def sizes(self) -> dict[tuple[str, str], int]:
        """Current size of every catalogued segment (fleet-wide)."""
        cat = await self.catalogue()
        return await segment_sizes(self.client, self.keys, [(e["family"], e["id"]) for e in cat.values()])


async def segment_sizes(
    client: aioredis.Redis, keys: CustomerKeys, segments: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], int]:
    """(family, id) → size: the sum of the segment's shard sets' SCARD, one pipeline for all."""
    ordered = list(dict.fromkeys(segments))
    if not ordered:
        return {}
    pipe = client.pipeline(transaction=False)
    for family, sid in ordered:
        for key in keys.members(family, sid):
            pipe.scard(key)
    counts = [int(n) for n in await pipe.execute()]
    s = keys.shards
    return {seg: sum(counts[i * s : (i + 1) * s]) for i, seg in enumerate(ordered)}


def compact_customer_hashes(client: redis.Redis, namespace: str, count: int = 1000, shards: int = 1) -> dict[str, int]:
    """Rewrite every ``{ns}:cust:{id}`` hash Redis keeps as a ``hashtable`` in the current stored format.

    A hash that once held a value over ``hash-max-listpack-value`` (the JSON values of
    earlier versions) stays a hashtable when its values are rewritten; only a new key is
    a listpack again. Each such hash is re-encoded (:mod:`stream.state.customer_codec`)
    and replaced in one ``WATCH``/``MULTI`` transaction, so a concurrent write by the
    engine is never lost (the key is retried, at most three times). Safe to run beside
    running workers and to run again. Returns the hashes ``scanned``, ``rewritten``,
    ``still_hashtable`` after the rewrite (a value the compact form cannot carry, or many
    ``rule:*`` fields) and ``skipped`` (kept changing under the transaction).
    """
    names = rfm_segment_names(
        {
            (k.decode() if isinstance(k, bytes) else k): orjson.loads(v)
            for k, v in client.hgetall(f"{namespace}:segments").items()
        }
    )
    out = {"scanned": 0, "rewritten": 0, "still_hashtable": 0, "skipped": 0}
    keys = CustomerKeys(namespace, shards)
    for key in (
        k for pattern in keys.customer_patterns() for k in client.scan_iter(match=pattern, count=count, _type="hash")
    ):
        name = key.decode() if isinstance(key, bytes) else str(key)
        customer_id = keys.customer_id_of(name)
        if customer_id is None:
            continue
        out["scanned"] += 1
        for _attempt in range(3):
            try:
                with client.pipeline(transaction=True) as pipe:
                    pipe.watch(key)
                    if pipe.object("encoding", key) != b"hashtable":
                        break
                    fields = {(k.decode() if isinstance(k, bytes) else k): v for k, v in pipe.hgetall(key).items()}
                    new = _recoded(fields, customer_id, names)
                    pipe.multi()
                    pipe.delete(key)
                    pipe.hset(key, mapping=new)  # type: ignore[arg-type]  # (dict invariance)
                    pipe.object("encoding", key)
                    *_, encoding = pipe.execute()
                out["rewritten"] += 1
                out["still_hashtable"] += encoding == b"hashtable"
                break
            except redis.WatchError:
                continue
        else:
            out["skipped"] += 1
    return out


def _recoded(fields: dict[str, Any], customer_id: str, names: dict[str, Any]) -> dict[str, Any]:
    """A customer hash's fields with ``rfm`` and ``features`` in the current stored format (others as they are)."""
    new = {k: v for k, v in fields.items() if k not in (RFM_FIELD, *FEATURES_FIELDS)}
    rfm = decode_rfm(fields.get(RFM_FIELD), customer_id, names)
    if rfm is not None:
        new[RFM_FIELD] = (
            encode_rfm(rfm) if rfm.get("segment_name") == names.get(str(rfm.get("segment"))) else dumps(rfm)
        )
    features = decode_features(*(fields.get(f) for f in FEATURES_FIELDS))
    if features is not None:
        day = features.pop("day")
        new.update(encode_features(day, features))
    return new
