"""Partition checkpoints in Redis: processor state and the offsets it reflects, written atomically.

Why state and offsets together: if a worker dies between processing and
committing, Kafka would redeliver records the state already contains
(counted twice) or, committed first, lose them. So on restart the worker
restores the state and resumes exactly at the offsets that state reflects:
nothing lost, nothing counted twice. The guarantee: **a checkpoint is switched
in one atomic step, and a crash at any point of a save leaves the previous
checkpoint fully usable.**

Layout (a state of a 1 000 000-meter fleet is ~300 MB per partition, too big
for one Redis value to be written, held or freed in one step):

* ``{ns}:ckpt:{pipeline}:{partition}`` — the *head* hash: ``gen`` (the current
  generation id), ``parts``, ``bytes``, ``format``, ``saved_at``,
  ``offset:{topic}`` (next offset per input topic), and ``pending:{gen}``
  entries (generations being written, or replaced ones not yet deleted).
* ``<head>:gen:{gen}:{<head>}`` — one hash per generation: the state as orjson
  bytes, split into parts of :data:`PART_BYTES` under fields ``0``, ``1``, ...
  It starts with the head's name (``{app}:*`` patterns find it) and ends with
  the head's name as a hash tag: on a Redis Cluster it shares the head's slot,
  so the flip script may check it.

A save (1) records ``pending:{gen}`` in the head, (2) writes the parts of a
new generation, one ``HSET`` each (no command moves more than a part, so
Redis and the event loop keep serving others between parts), (3) *flips*: a
Lua script checks that the generation holds all its parts, then sets ``gen``,
``parts`` and the offsets in the head, all at once; (4) deletes the replaced
generation (``UNLINK``). A crash before (3) leaves the head on the previous
generation, untouched; the parts written are garbage, collected by a later
save (``pending`` entries older than :data:`ABANDONED_AFTER_S`, or replaced
ones). A load reads the head, then the parts of its generation; if that
generation was replaced and deleted meanwhile (another writer), it reads the
head again.

Checkpoints written by the previous format (one ``state`` field in the head)
still load; the first save in this format removes that field.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any

import orjson
import redis.asyncio as aioredis

from stream.metrics import REDIS_LATENCY

_NUMPY = orjson.OPT_SERIALIZE_NUMPY
FORMAT = "2"
#: bytes per part: just under 4 MiB, so that a part and Redis' string header fit jemalloc's 4 MiB size class
#: (4 MiB exactly would be stored in 5 MiB)
PART_BYTES = (4 << 20) - 4096
#: parts written per round trip (pipelined) and read per ``HMGET``
PARTS_PER_CALL = 4
#: a generation announced this long ago and never switched to is a crashed save's garbage
ABANDONED_AFTER_S = 300.0
#: a load whose generation keeps being replaced under it gives up after this many tries
LOAD_ATTEMPTS = 5

#: KEYS: head, generation. ARGV: gen, parts, bytes, saved_at, then topic, offset pairs. Returns the replaced gen.
_FLIP = """
local n = redis.call('HLEN', KEYS[2])
if n ~= tonumber(ARGV[2]) then
  return redis.error_reply('ERR checkpoint generation ' .. ARGV[1] .. ' holds ' .. n .. ' of ' .. ARGV[2] .. ' parts')
end
local old = redis.call('HGET', KEYS[1], 'gen')
local drop = {}
for _, f in ipairs(redis.call('HKEYS', KEYS[1])) do
  if f == 'state' or string.sub(f, 1, 7) == 'offset:' then drop[#drop + 1] = f end
end
drop[#drop + 1] = 'pending:' .. ARGV[1]
redis.call('HDEL', KEYS[1], unpack(drop))
local set = {'gen', ARGV[1], 'parts', ARGV[2], 'bytes', ARGV[3], 'saved_at', ARGV[4], 'format', '2'}
for i = 5, #ARGV, 2 do
  set[#set + 1] = 'offset:' .. ARGV[i]
  set[#set + 1] = ARGV[i + 1]
end
if old and old ~= ARGV[1] then set[#set + 1] = 'pending:' .. old; set[#set + 1] = '0' end
redis.call('HSET', KEYS[1], unpack(set))
return old
"""

#: KEYS: head, then generation keys; ARGV: now, abandoned_after_s, then the gen of each generation key.
#: Deletes each generation that is not current and is marked replaced (0) or was announced long ago.
_COLLECT = """
local current = redis.call('HGET', KEYS[1], 'gen')
local now, after = tonumber(ARGV[1]), tonumber(ARGV[2])
local removed = 0
for i = 2, #KEYS do
  local gen = ARGV[i + 1]
  local since = redis.call('HGET', KEYS[1], 'pending:' .. gen)
  if gen ~= current and since and (tonumber(since) == 0 or now - tonumber(since) > after) then
    redis.call('UNLINK', KEYS[i])
    redis.call('HDEL', KEYS[1], 'pending:' .. gen)
    removed = removed + 1
  end
end
return removed
"""


class CheckpointError(RuntimeError):
    """A checkpoint could not be written or read consistently."""


@dataclass(frozen=True)
class SaveStats:
    """What the last :meth:`CheckpointStore.save` cost."""

    encode_s: float  # orjson.dumps of the state
    write_s: float  # Redis: announce, parts, flip, delete of the replaced generation
    bytes: int
    parts: int
    generation: str = ""  # the generation written (its id is in the head's ``gen`` field while it is current)


class CheckpointStore:
    """Checkpoints under ``{namespace}:ckpt:{pipeline}:{partition}`` (see the module docstring)."""

    def __init__(self, client: aioredis.Redis, namespace: str, part_bytes: int = PART_BYTES):
        self.client = client
        self.namespace = namespace
        self.part_bytes = part_bytes
        self.last_save: SaveStats | None = None
        self._flip = client.register_script(_FLIP)
        self._collect = client.register_script(_COLLECT)

    def key(self, pipeline: str, partition: int) -> str:
        """The head hash of a partition's checkpoint."""
        return f"{self.namespace}:ckpt:{pipeline}:{partition}"

    @staticmethod
    def generation_key(head: str, gen: str) -> str:
        """The hash of one generation of the checkpoint whose head is ``head``.

        >>> CheckpointStore.generation_key("fleet:ckpt:ingest:3", "ab12")
        'fleet:ckpt:ingest:3:gen:ab12:{fleet:ckpt:ingest:3}'
        """
        return f"{head}:gen:{gen}:{{{head}}}"

    # -- save ---------------------------------------------------------------------------------------
    async def save(self, pipeline: str, partition: int, state: Any, offsets: dict[str, int]) -> None:
        """Store ``state`` (JSON-serialisable, numpy allowed) with ``offsets`` (topic → next offset)."""
        started = time.perf_counter()
        body = memoryview(orjson.dumps(state, option=_NUMPY))
        del state  # a caller that handed over its only reference frees the snapshot here, not after the write
        encoded = time.perf_counter()
        head = self.key(pipeline, partition)
        gen = secrets.token_hex(8)
        gkey = self.generation_key(head, gen)
        now = time.time()
        fields = await self.client.hgetall(head)
        await self._collect_garbage(head, fields, now)
        await self.client.hset(head, f"pending:{gen}", repr(now))
        parts = [body[i : i + self.part_bytes] for i in range(0, len(body), self.part_bytes)] or [body]
        for first in range(0, len(parts), PARTS_PER_CALL):
            pipe = self.client.pipeline(transaction=False)
            for i in range(first, min(len(parts), first + PARTS_PER_CALL)):
                pipe.hset(gkey, str(i), parts[i])
            await pipe.execute()
        args: list[Any] = [gen, len(parts), len(body), repr(now)]
        for topic, offset in sorted(offsets.items()):
            args += [topic, int(offset)]
        replaced = await self._flip(keys=[head, gkey], args=args)
        if replaced is not None:
            old = replaced.decode() if isinstance(replaced, bytes) else str(replaced)
            await self._collect(keys=[head, self.generation_key(head, old)], args=[time.time(), ABANDONED_AFTER_S, old])
        done = time.perf_counter()
        REDIS_LATENCY.labels("checkpoint_save").observe(done - encoded)
        self.last_save = SaveStats(encoded - started, done - encoded, len(body), len(parts), gen)

    async def generation(self, pipeline: str, partition: int) -> str | None:
        """The id of the partition's current checkpoint generation (None: none, or the previous format).

        One field read: whether the checkpoint is still the one this worker wrote, without reading it.
        """
        gen = await self.client.hget(self.key(pipeline, partition), "gen")
        return gen.decode() if isinstance(gen, bytes) else gen

    async def _collect_garbage(self, head: str, fields: dict[Any, Any], now: float) -> None:
        """Delete generations of crashed saves and replaced generations not deleted yet."""
        current = fields.get(b"gen")
        gens: list[str] = []
        for name, since in fields.items():
            if not name.startswith(b"pending:") or name[8:] == current:
                continue
            if float(since) == 0 or now - float(since) > ABANDONED_AFTER_S:
                gens.append(name[8:].decode())
        if gens:
            keys = [head, *(self.generation_key(head, g) for g in gens)]
            await self._collect(keys=keys, args=[now, ABANDONED_AFTER_S, *gens])

    # -- load ---------------------------------------------------------------------------------------
    async def load(self, pipeline: str, partition: int) -> tuple[Any | None, dict[str, int]]:
        """The last checkpoint's state (or None) and its offsets."""
        started = time.perf_counter()
        head = self.key(pipeline, partition)
        for _ in range(LOAD_ATTEMPTS):
            raw: dict[Any, Any] = await self.client.hgetall(head)
            offsets = {k.decode()[7:]: int(v) for k, v in raw.items() if k.startswith(b"offset:")}
            if b"gen" not in raw:  # nothing yet, or the previous format
                REDIS_LATENCY.labels("checkpoint_load").observe(time.perf_counter() - started)
                state = orjson.loads(raw[b"state"]) if b"state" in raw else None
                return (state, offsets) if raw else (None, {})
            body = await self._read_parts(head, raw[b"gen"].decode(), int(raw[b"parts"]), int(raw[b"bytes"]))
            if body is None:  # replaced and deleted since we read the head
                continue
            REDIS_LATENCY.labels("checkpoint_load").observe(time.perf_counter() - started)
            return orjson.loads(body), offsets
        raise CheckpointError(f"{head}: its generation was replaced during each of {LOAD_ATTEMPTS} reads")

    async def _read_parts(self, head: str, gen: str, n: int, size: int) -> bytearray | None:
        """The parts of a generation, copied into one buffer as they arrive (no second copy of the whole)."""
        gkey = self.generation_key(head, gen)
        body = bytearray(size)
        at = 0
        for first in range(0, n, PARTS_PER_CALL):
            names = [str(i) for i in range(first, min(n, first + PARTS_PER_CALL))]
            got: list[Any] = await self.client.hmget(gkey, names)
            if any(p is None for p in got):
                return None
            for part in got:
                if at + len(part) > size:
                    raise CheckpointError(f"{head}: generation {gen} holds more than the {size} bytes the head says")
                body[at : at + len(part)] = part
                at += len(part)
        if at != size:
            raise CheckpointError(f"{head}: generation {gen} holds {at} bytes, the head says {size}")
        return body

    # -- housekeeping -------------------------------------------------------------------------------
    async def keys(self, pipeline: str, partition: int) -> list[str]:
        """Every key of a partition's checkpoint: the head, the current and any pending generation."""
        head = self.key(pipeline, partition)
        fields: dict[Any, Any] = await self.client.hgetall(head)
        if not fields:
            return []
        gens = {fields[b"gen"].decode()} if b"gen" in fields else set()
        gens |= {k[8:].decode() for k in fields if k.startswith(b"pending:")}
        return [head, *(self.generation_key(head, g) for g in sorted(gens))]

    async def stored_bytes(self, pipeline: str, partition: int) -> int:
        """Redis memory of a partition's checkpoint (``MEMORY USAGE`` of its keys, every field counted)."""
        total = 0
        for key in await self.keys(pipeline, partition):
            total += int(await self.client.memory_usage(key, samples=0) or 0)
        return total

    async def delete(self, pipeline: str, partition: int) -> int:
        """Remove a partition's checkpoint (every generation); the number of keys removed."""
        keys = await self.keys(pipeline, partition)
        return int(await self.client.unlink(*keys)) if keys else 0
