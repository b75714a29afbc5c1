"""Partition checkpoints in Redis: processor state and the offsets it reflects, switched atomically.

Why state and offsets together: if a worker dies between processing and
committing, Kafka would redeliver records the state already contains
(counted twice) or, committed first, lose them. So on restart the worker
restores the state and resumes exactly at the offsets that state reflects:
nothing lost, nothing counted twice. The guarantee: **a checkpoint is switched
in one atomic step, and a crash at any point of a save leaves the previous
checkpoint fully usable.**

Why chunks: a partition's state grows with its meters and customers (hundreds
of MB at a million meters), but between two checkpoints only what the last
few seconds touched changed. The state is cut into content-addressed chunks
(:mod:`stream.state.chunking`): a save writes the chunks not stored yet and
deletes the ones no longer referenced, so the bytes written follow the change,
not the size (``meterseg_checkpoint_bytes_total{kind="written"}`` against
``{kind="state"}``).

Layout (format 3):

* ``{ns}:ckpt:{pipeline}:{partition}`` — the *head* hash: ``gen`` (the id of
  the current checkpoint), ``skeleton`` (the state with its large values
  replaced by the ids of their chunks), ``chunks`` (how many it references),
  ``bytes`` (the state's size), ``format``, ``saved_at``, ``offset:{topic}``
  (next offset per input topic).
* ``<head>:chunks:{<head>}`` — one hash of every chunk, id → bytes. It ends
  with the head's name as a hash tag: on a Redis Cluster it shares the head's
  slot, so one script may touch both.

A save (1) writes the new chunks (a few MiB per round trip; a chunk not
referenced by the current skeleton changes nothing, so this may take as long
as it needs), then (2) *flips*: one Lua script checks that the head is still
at the generation this store last read or wrote (**fencing**: a worker that
lost the partition, a zombie, cannot overwrite its new owner's checkpoint),
that the new chunks are all there, deletes the chunks no longer referenced and
sets skeleton, generation and offsets, all at once. A crash before (2) leaves
the previous checkpoint whole; the chunks it wrote are collected by the next
save (it finds more chunks stored than referenced). A load reads the head,
then the chunks it names; if one was deleted meanwhile (another writer
flipped), it reads the head again.

Checkpoints of the earlier formats (2: the whole state as orjson bytes in
parts of a generation hash ``<head>:gen:{gen}:{<head>}``; 1: one ``state``
field) still load; the first save in format 3 removes them in its flip.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
import redis.asyncio as aioredis

from processors.jsonbytes import dumps, dumps_transient
from stream.metrics import REDIS_LATENCY
from stream.state.chunking import join, referenced, split_snapshot

_NUMPY = orjson.OPT_SERIALIZE_NUMPY
FORMAT = "3"
#: bytes of chunks written per round trip (one ``HSET``)
WRITE_BYTES = 4 << 20
#: parts of a format-2 checkpoint read per ``HMGET``
LEGACY_PARTS_PER_CALL = 4
#: chunk ids read per ``HMGET``
READ_IDS = 512
#: a load whose chunks keep being replaced under it gives up after this many tries
LOAD_ATTEMPTS = 5

#: KEYS: head, chunks, then format-2 generation keys to remove. ARGV: expected gen ('' for none), gen, skeleton,
#: chunks, bytes, saved_at, then n and the new chunk ids, m and the chunk ids to delete, then topic, offset pairs.
_FLIP = """
local cur = redis.call('HGET', KEYS[1], 'gen') or ''
if cur ~= ARGV[1] then
  return redis.error_reply('FENCED ' .. KEYS[1] .. ' is at generation "' .. cur .. '", not "' .. ARGV[1] ..
    '": another worker checkpointed this partition since this one read it')
end
local i = 7
local n = tonumber(ARGV[i])
for j = i + 1, i + n do
  if redis.call('HEXISTS', KEYS[2], ARGV[j]) == 0 then
    return redis.error_reply('ERR checkpoint chunk ' .. ARGV[j] .. ' of ' .. KEYS[1] .. ' is missing')
  end
end
i = i + n + 1
local m = tonumber(ARGV[i])
for first = i + 1, i + m, 1000 do
  redis.call('HDEL', KEYS[2], unpack(ARGV, first, math.min(i + m, first + 999)))
end
i = i + m + 1
for k = 3, #KEYS do redis.call('UNLINK', KEYS[k]) end
local drop = {}
for _, f in ipairs(redis.call('HKEYS', KEYS[1])) do
  if f == 'state' or f == 'parts' or string.sub(f, 1, 7) == 'offset:' or string.sub(f, 1, 8) == 'pending:' then
    drop[#drop + 1] = f
  end
end
if #drop > 0 then redis.call('HDEL', KEYS[1], unpack(drop)) end
local set = {'gen', ARGV[2], 'skeleton', ARGV[3], 'chunks', ARGV[4], 'bytes', ARGV[5], 'saved_at', ARGV[6],
  'format', '3'}
for k = i, #ARGV, 2 do
  set[#set + 1] = 'offset:' .. ARGV[k]
  set[#set + 1] = ARGV[k + 1]
end
redis.call('HSET', KEYS[1], unpack(set))
return cur
"""


class CheckpointError(RuntimeError):
    """A checkpoint could not be written or read consistently."""


class CheckpointFenced(CheckpointError):
    """Another worker checkpointed the partition since this store read or wrote it: this one lost it."""


@dataclass(frozen=True)
class SaveStats:
    """What the last :meth:`CheckpointStore.save` cost."""

    encode_s: float  # snapshot cut into chunks (orjson and hashing)
    write_s: float  # Redis: the new chunks and the flip
    bytes: int  # the state's size: skeleton and every chunk it references
    parts: int  # chunks the state references
    generation: str = ""  # the generation written (its id is in the head's ``gen`` field while it is current)
    written: int = 0  # bytes written: the new chunks and the skeleton


@dataclass
class _Known:
    """What this store last read or wrote of a partition: its generation and the chunks it references."""

    gen: str
    ids: set[str] = field(default_factory=set)


class CheckpointStore:
    """Checkpoints under ``{namespace}:ckpt:{pipeline}:{partition}`` (see the module docstring).

    One store per worker: it remembers, per partition, the generation it last read or wrote and the chunks
    that generation references, so that a save writes only the chunks not stored yet and is fenced against
    a checkpoint written by anyone else since.
    """

    def __init__(self, client: aioredis.Redis, namespace: str, write_bytes: int = WRITE_BYTES):
        self.client = client
        self.namespace = namespace
        self.write_bytes = write_bytes
        self.last_save: SaveStats | None = None
        self._flip = client.register_script(_FLIP)
        self._known: dict[tuple[str, int], _Known] = {}

    def key(self, pipeline: str, partition: int) -> str:
        """The head hash of a partition's checkpoint."""
        return f"{self.namespace}:ckpt:{pipeline}:{partition}"

    @staticmethod
    def chunks_key(head: str) -> str:
        """The hash of the chunks of the checkpoint whose head is ``head`` (same cluster slot as the head).

        >>> CheckpointStore.chunks_key("fleet:ckpt:ingest:3")
        'fleet:ckpt:ingest:3:chunks:{fleet:ckpt:ingest:3}'
        """
        return f"{head}:chunks:{{{head}}}"

    @staticmethod
    def generation_key(head: str, gen: str) -> str:
        """The hash of one generation of a format-2 checkpoint (read, and removed by the next save).

        >>> CheckpointStore.generation_key("fleet:ckpt:ingest:3", "ab12")
        'fleet:ckpt:ingest:3:gen:ab12:{fleet:ckpt:ingest:3}'
        """
        return f"{head}:gen:{gen}:{{{head}}}"

    # -- save ---------------------------------------------------------------------------------------
    async def save(self, pipeline: str, partition: int, state: Any, offsets: dict[str, int]) -> None:
        """Store ``state`` (JSON-serialisable, numpy allowed) with ``offsets`` (topic → next offset).

        Raises :class:`CheckpointFenced` when another worker checkpointed the partition since this store
        last read or wrote it (nothing is changed then).
        """
        started = time.perf_counter()
        known = self._known.get((pipeline, partition))
        have = known.ids if known is not None else set()
        split = split_snapshot(state, stored=have)  # the bytes of chunks already stored are not kept
        del state  # a caller that handed over its only reference frees the snapshot here, not after the write
        skeleton = dumps(split.skeleton, option=_NUMPY)
        refs = split.ids
        encoded = time.perf_counter()
        head = self.key(pipeline, partition)
        ckey = self.chunks_key(head)
        pipe = self.client.pipeline(transaction=False)
        pipe.hmget(head, ["gen", "format"])
        pipe.hkeys(head)
        pipe.hlen(ckey)
        (cur, fmt), head_fields, stored = await pipe.execute()
        cur = cur.decode() if cur is not None else ""
        if known is not None and known.gen != cur:
            raise CheckpointFenced(f"{head} is at generation {cur!r}, not {known.gen!r}: another worker "
                                   "checkpointed this partition since this one read it")  # fmt: skip
        new = list(split.chunks)
        gone = have - refs
        if stored != len(have):  # chunks of a crashed save, or a store that never read this partition
            stored_ids: list[Any] = await self.client.hkeys(ckey)
            gone |= {k.decode() for k in stored_ids} - refs - have
        written = len(skeleton)
        batch: list[str] = []
        size = 0
        for cid in new:
            batch.append(cid)
            size += len(split.chunks[cid])
            if size >= self.write_bytes:
                await self._write(ckey, batch, split.chunks)
                written, batch, size = written + size, [], 0
        if batch:
            await self._write(ckey, batch, split.chunks)
            written += size
        legacy = self._legacy_keys(head, cur, fmt, head_fields)
        gen = secrets.token_hex(8)
        # a store that never read the partition is fenced against what it found at the start of this save
        expected = cur if known is None else known.gen
        args: list[Any] = [expected, gen, skeleton, len(refs), len(skeleton) + split.chunk_bytes, repr(time.time()),
                           len(new), *new, len(gone), *gone]  # fmt: skip
        for topic, offset in sorted(offsets.items()):
            args += [topic, int(offset)]
        try:
            await self._flip(keys=[head, ckey, *legacy], args=args)
        except aioredis.ResponseError as exc:
            if str(exc).startswith("FENCED"):
                raise CheckpointFenced(str(exc)) from None
            raise CheckpointError(f"{head}: {exc}") from exc
        self._known[(pipeline, partition)] = _Known(gen, refs)
        done = time.perf_counter()
        REDIS_LATENCY.labels("checkpoint_save").observe(done - encoded)
        self.last_save = SaveStats(encoded - started, done - encoded, len(skeleton) + split.chunk_bytes, len(refs),
                                   gen, written)  # fmt: skip

    async def _write(self, ckey: str, ids: list[str], chunks: dict[str, bytes]) -> None:
        await self.client.hset(ckey, mapping={cid: chunks[cid] for cid in ids})

    def _legacy_keys(self, head: str, cur: str, fmt: bytes | None, fields: list[bytes]) -> list[str]:
        """Generation keys of a format-2 checkpoint under ``head`` (removed by the flip)."""
        gens = {f[8:].decode() for f in fields if f.startswith(b"pending:")}
        if cur and fmt != FORMAT.encode():
            gens.add(cur)
        return [self.generation_key(head, g) for g in sorted(gens)]

    async def generation(self, pipeline: str, partition: int) -> str | None:
        """The id of the partition's current checkpoint generation (None: none, or the first format).

        One field read: whether the checkpoint is still the one this worker wrote, without reading it.
        """
        gen = await self.client.hget(self.key(pipeline, partition), "gen")
        return gen.decode() if isinstance(gen, bytes) else gen

    # -- load ---------------------------------------------------------------------------------------
    async def load(self, pipeline: str, partition: int) -> tuple[Any | None, dict[str, int]]:
        """The last checkpoint's state (or None) and its offsets; the next save is fenced against it."""
        started = time.perf_counter()
        head = self.key(pipeline, partition)
        for _ in range(LOAD_ATTEMPTS):
            raw: dict[Any, Any] = await self.client.hgetall(head)
            offsets = {k.decode()[7:]: int(v) for k, v in raw.items() if k.startswith(b"offset:")}
            gen = raw[b"gen"].decode() if b"gen" in raw else ""
            if raw.get(b"format") == FORMAT.encode():
                got = await self._read_chunks(head, orjson.loads(raw[b"skeleton"]), int(raw[b"bytes"]))
                if got is None:  # a chunk was deleted since we read the head: another writer flipped
                    continue
                state, ids = got
            elif b"gen" in raw:  # format 2
                body = await self._read_parts(head, gen, int(raw[b"parts"]), int(raw[b"bytes"]))
                if body is None:
                    continue
                state, ids = orjson.loads(body), set()
            else:  # nothing yet, or format 1
                state, ids = (orjson.loads(raw[b"state"]) if b"state" in raw else None), set()
            REDIS_LATENCY.labels("checkpoint_load").observe(time.perf_counter() - started)
            self._known[(pipeline, partition)] = _Known(gen, ids)
            return (state, offsets) if raw else (None, {})
        raise CheckpointError(f"{head}: its chunks were replaced during each of {LOAD_ATTEMPTS} reads")

    async def _read_chunks(self, head: str, skeleton: Any, size: int) -> tuple[Any, set[str]] | None:
        """The state a format-3 skeleton stands for, and its chunk ids; None if a chunk is gone."""
        ckey = self.chunks_key(head)
        chunks: dict[str, bytes] = {}
        wanted = sorted(referenced(skeleton))
        while wanted:
            for first in range(0, len(wanted), READ_IDS):
                ids = wanted[first : first + READ_IDS]
                got: list[Any] = await self.client.hmget(ckey, ids)
                if any(c is None for c in got):
                    return None
                chunks.update(zip(ids, got, strict=True))
            wanted = sorted(referenced(skeleton, chunks) - chunks.keys())  # the ids the manifests name
        state = join(skeleton, chunks)
        total = len(dumps_transient(skeleton)) + sum(len(c) for c in chunks.values())
        if total != size:
            raise CheckpointError(f"{head}: its chunks and skeleton hold {total} bytes, the head says {size}")
        return state, set(chunks)

    async def _read_parts(self, head: str, gen: str, n: int, size: int) -> bytearray | None:
        """The parts of a format-2 generation, copied into one buffer as they arrive."""
        gkey = self.generation_key(head, gen)
        body = bytearray(size)
        at = 0
        for first in range(0, n, LEGACY_PARTS_PER_CALL):
            names = [str(i) for i in range(first, min(n, first + LEGACY_PARTS_PER_CALL))]
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
        """Every key of a partition's checkpoint: the head, its chunks and any format-2 generation."""
        head = self.key(pipeline, partition)
        fields: list[Any] = await self.client.hkeys(head)
        if not fields:
            return []
        got: list[Any] = await self.client.hmget(head, ["gen", "format"])
        cur, fmt = got
        out = [head, *self._legacy_keys(head, cur.decode() if cur else "", fmt, fields)]
        if await self.client.exists(self.chunks_key(head)):
            out.append(self.chunks_key(head))
        return out

    async def stored_bytes(self, pipeline: str, partition: int) -> int:
        """Redis memory of a partition's checkpoint (``MEMORY USAGE`` of its keys, every field counted)."""
        total = 0
        for key in await self.keys(pipeline, partition):
            total += int(await self.client.memory_usage(key, samples=0) or 0)
        return total

    async def delete(self, pipeline: str, partition: int) -> int:
        """Remove a partition's checkpoint (head, chunks, any earlier generation); the number of keys removed."""
        self._known.pop((pipeline, partition), None)
        keys = await self.keys(pipeline, partition)
        return int(await self.client.unlink(*keys)) if keys else 0
