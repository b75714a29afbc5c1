"""Batch backfill: replay recorded raw messages through the stream's processors, without Kafka or Redis.

The live worker runs :class:`~processors.ingest.PartitionIngest` per meter
partition and :class:`~processors.segmentation.PartitionSegmentation` per
customer partition, and every few wall seconds exchanges two things across
partitions (``stream/pipelines/segmentation.py``): the RFM population sketches
(each partition scores against the merged sketches of the others) and the
fleet behaviour model (every partition's :class:`~processors.clustering.model.ClusterStats`
to one :class:`~processors.clustering.model.ModelOwner`, its new version back to
every partition). :class:`Backfill` drives the very same objects over a
recorded stream - a simulator file-sink directory (:func:`polls_from_directory`)
or any iterables of raw message values (:func:`polls_from_streams`) - so a batch
backfill and the stream compute the same memberships. It is the
"reusable for batch backfills" path of the processors.

How the replay is cut and wired:

* **Every shape the stream accepts.** A message is read as JSON once, as the
  stream's decoders will read it: a single reading or heartbeat, a batch
  envelope (``readings`` / ``heartbeats``) or a column block (``columns``).
  Its *key* is what a producer keys it by on Kafka (the meter id; a block's
  or an envelope's first meter; a purchase's or profile's customer id) and
  its *event time* the latest time it carries (a block is sent once its last
  interval is there). A message that is not JSON, or carries no time, travels
  with its predecessor and is dead-lettered by the decoders as on the wire.
* **Polls.** Each topic is read in its recorded (production) order and cut
  at event-time boundaries every ``step_s`` (default one simulated hour): a
  poll holds, per topic, the messages up to the first one whose event time
  is at or after the boundary. Late and out-of-order messages therefore
  arrive late, as they did on the wire.
* **Partitions.** Messages go to the partition of their key under
  ``BackfillConfig.partitioner`` (default :func:`~processors.clustering.fleet.partition_of`,
  crc32, a stable stand-in). Give it Kafka's default partitioner (murmur2,
  ``simulators.partition.partition_for``) and every partition sees exactly
  the messages, in the same order, that the live worker's partition sees:
  then the backfill's windows are the live worker's
  (``tests/integration/test_backfill_equals_live.py``). Daily profiles, as the
  stream keys them, and purchases go to the segmentation partition of their
  customer id. Each poll: ingest every partition, then
  feed its daily profiles (serialised exactly as the stream publishes them)
  with the poll's purchases to segmentation, with the registry attributes
  (region, tariff, export) of the customers in the batch as ``static``.
* **Exchange cadence.** After every poll, i.e. at every simulated
  ``step_s`` boundary (one hour by default, ``86_400`` for once a day), each
  partition is re-scored (:meth:`PartitionSegmentation.rescore` at its event
  clock, as the stream's timer does), then the population exchange
  (``set_population`` with the merged sketches of the *other* partitions)
  and the model exchange (``flush_stats`` of every partition -> one
  ``ModelOwner.process`` -> ``set_model`` everywhere) run, in the stream's
  order. This stands in for the stream's every-``exchange_interval_s`` wall
  exchange; since daily profiles arrive once per simulated day (when the
  daily windows close, an allowed lateness after midnight), an hourly
  exchange already applies every day's statistics before the next day.
* **Registry.** The fleet is loaded up front from the registry messages
  (the last registration of a meter wins, e.g. ``has_export`` after a solar
  shift): the file sink records no time for a re-registration.
* **End.** :meth:`Backfill.finish` closes every open window
  (:meth:`PartitionIngest.flush`) so the last day's profiles are folded,
  then exchanges once more.

Outputs (:class:`BackfillResult`): the behaviour and RFM membership of every
customer at the end of each simulated day and at the end, every effective
:class:`~processors.segments.SegmentChange`, drift events, model versions,
and counters/timings for benchmarks.

Example (a tiny simulated fleet; the simulator writes the file sink; the behaviour model is seeded once
customers have a week of profiles):
    >>> import asyncio, tempfile
    >>> from pathlib import Path
    >>> from simulators.generator import SimConfig, Simulator
    >>> from simulators.faults import FaultConfig
    >>> from simulators.sinks import FileSink
    >>> d = Path(tempfile.mkdtemp())
    >>> sim = Simulator(SimConfig(meters=60, days=9, seed=3, faults=FaultConfig.none(), heartbeat_minutes=0,
    ...                           history_days=20))
    >>> _ = asyncio.run(sim.run(FileSink(d), progress=False))
    >>> cfg = BackfillConfig(partitions=2, segmentation=SegmentationConfig(k=4, min_seed_samples=16))
    >>> bf = Backfill.from_directory(d, cfg)
    >>> result = bf.run(polls_from_directory(d))
    >>> [str(day) for day in result.days[-3:]]   # purchase history (20 days) comes first
    ['2026-01-07', '2026-01-08', '2026-01-09']
    >>> result.profiles, len(result.final.behaviour), result.model_versions[-1] >= 2   # 60 meters, 59 customers
    (540, 59, True)
    >>> {c.family for c in result.changes} == {"behaviour", "rfm"}
    True
    >>> sorted(set(result.final.behaviour.values()))   # k = 4 behaviour segments with stable ids
    ['B1', 'B2', 'B3', 'B4']
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import IO, Any, Protocol

import orjson

from processors.clustering.assign import DriftEvent
from processors.clustering.fleet import partition_of
from processors.clustering.owner import ModelEvent, ModelOwner
from processors.columns import MeterRegistry, RawMessage
from processors.ingest import IngestConfig, IngestOutput, PartitionIngest
from processors.profiles import ClosedProfiles
from processors.rfm.processor import RfmSketches
from processors.segmentation import PartitionSegmentation, SegmentationConfig, SegmentationOutput
from processors.segments import SegmentChange
from stream.schemas import MeterInfo


class TopicNames(Protocol):
    """Topic names the replay reads (``meterseg.settings.TopicNames`` qualifies); see :class:`Topics`."""

    @property
    def readings(self) -> str: ...
    @property
    def heartbeats(self) -> str: ...
    @property
    def purchases(self) -> str: ...
    @property
    def registry(self) -> str: ...


@dataclass(frozen=True, slots=True)
class Topics:
    """The default topic names (as in ``meterseg.settings.TopicNames``; processors do not import settings)."""

    readings: str = "meter.readings"
    heartbeats: str = "meter.heartbeats"
    purchases: str = "customer.purchases"
    registry: str = "meter.registry"


__all__ = [
    "Backfill",
    "BackfillConfig",
    "BackfillResult",
    "Memberships",
    "Poll",
    "TopicNames",
    "Topics",
    "polls_from_directory",
    "polls_from_streams",
    "registry_from_lines",
]

_RECORDS = {"readings": ("readings", "interval_start", "meter_id"), "heartbeats": ("heartbeats", "ts", "meter_id"),
            "purchases": ("", "ts", "customer_id"), "profiles": ("", "day", "customer_id")}  # fmt: skip
"""per stream: the list of an envelope, the time field, the key field"""


# -- polls ----------------------------------------------------------------------------------------------
@dataclass(slots=True)
class Poll:
    """The messages of every topic up to one exchange boundary (``until``, epoch seconds)."""

    until: float
    readings: list[RawMessage] = field(default_factory=list)
    heartbeats: list[RawMessage] = field(default_factory=list)
    purchases: list[RawMessage] = field(default_factory=list)
    #: already-built daily profiles (e.g. a recorded ``meterseg.profiles`` topic), straight to segmentation
    profiles: list[RawMessage] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.readings) + len(self.heartbeats) + len(self.purchases) + len(self.profiles)


@dataclass(frozen=True, slots=True)
class Routing:
    """What the backfill needs of a raw message: its key (as a producer keys it) and its latest event time."""

    key: str | None
    time: float | None


class _Router:
    """Key and event time of raw values of one stream, whatever their shape; ISO strings cached (they repeat)."""

    def __init__(self, stream: str) -> None:
        self.envelope, self.time_field, self.key_field = _RECORDS[stream]
        self.cache: dict[str, float | None] = {}

    def _time(self, text: Any) -> float | None:
        if not isinstance(text, str):
            return None
        t = self.cache.get(text, -1.0)
        if t == -1.0:
            try:
                t = datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
            except ValueError:
                t = None
            if len(self.cache) > 100_000:
                self.cache.clear()
            self.cache[text] = t
        return t

    def __call__(self, value: bytes) -> Routing:
        try:
            obj = orjson.loads(value)
        except orjson.JSONDecodeError:
            return Routing(None, None)
        if not isinstance(obj, dict):
            return Routing(None, None)
        cols = obj.get("columns")
        if self.key_field not in obj and isinstance(cols, dict):  # a column block
            keys, times = cols.get(self.key_field), cols.get(self.time_field)
        elif self.envelope and self.key_field not in obj and isinstance(obj.get(self.envelope), list):
            records = [r for r in obj[self.envelope] if isinstance(r, dict)]
            keys = [r.get(self.key_field) for r in records]
            times = [r.get(self.time_field) for r in records]
        else:
            keys, times = [obj.get(self.key_field)], [obj.get(self.time_field)]
        key = keys[0] if isinstance(keys, list) and keys and isinstance(keys[0], str) else None
        parsed = [t for t in map(self._time, times if isinstance(times, list) else []) if t is not None]
        return Routing(key, max(parsed) if parsed else None)


def polls_from_streams(
    streams: Mapping[str, Iterable[bytes]],
    step_s: int = 3600,
    *,
    topics: TopicNames | None = None,
    start: float | None = None,
) -> Iterator[Poll]:
    """Cut recorded topics into polls at every ``step_s`` of event time.

    ``streams`` maps ``"readings"``, ``"heartbeats"`` and ``"purchases"`` (any
    subset) to the raw message values in recorded order. ``start`` is the
    first boundary's origin (default: the earliest event time, floored to
    ``step_s``); purchase history before the load data simply arrives in the
    first polls. Iteration ends when every stream is exhausted.
    """
    names = topics or Topics()
    topic_of = {"readings": names.readings, "heartbeats": names.heartbeats, "purchases": names.purchases}
    unknown = set(streams) - set(topic_of)
    if unknown:
        raise ValueError(f"unknown stream(s) {sorted(unknown)}; expected readings, heartbeats, purchases")
    iters = {k: iter(v) for k, v in streams.items()}
    routers = {k: _Router(k) for k in iters}
    heads: dict[str, tuple[float, bytes, str | None] | None] = {}
    last_time: dict[str, float] = {}
    offsets = dict.fromkeys(iters, 0)

    def advance(k: str) -> None:
        for value in iters[k]:
            value = value.rstrip(b"\r\n")
            if not value:
                continue
            route = routers[k](value)
            if route.time is None:
                t = last_time.get(k, float("-inf"))
            else:
                t = last_time[k] = route.time
            heads[k] = (t, value, route.key)
            return
        heads[k] = None

    for k in iters:
        advance(k)
    firsts = [h[0] for h in heads.values() if h is not None and h[0] != float("-inf")]
    if not firsts:
        return
    origin = (min(firsts) // step_s) * step_s if start is None else start
    until = origin + step_s
    while any(h is not None for h in heads.values()):
        poll = Poll(until)
        for k in iters:
            out: list[RawMessage] = getattr(poll, k)
            head = heads[k]
            while head is not None and head[0] < until:
                out.append(RawMessage(head[1], topic_of[k], 0, offsets[k], key=head[2]))
                offsets[k] += 1
                advance(k)
                head = heads[k]
        yield poll
        until += step_s


def _lines(path: Path) -> Iterator[bytes]:
    if not path.exists():
        return
    f: IO[bytes]
    with path.open("rb", buffering=1 << 20) as f:
        yield from f


def polls_from_directory(directory: Path | str, step_s: int = 3600, topics: TopicNames | None = None) -> Iterator[Poll]:
    """Polls of a simulator file-sink directory (``<topic>.jsonl`` per topic, one message value a line)."""
    d = Path(directory)
    names = topics or Topics()
    streams = {
        "readings": _lines(d / f"{names.readings}.jsonl"),
        "heartbeats": _lines(d / f"{names.heartbeats}.jsonl"),
        "purchases": _lines(d / f"{names.purchases}.jsonl"),
    }
    return polls_from_streams(streams, step_s, topics=names)


def registry_from_lines(lines: Iterable[bytes]) -> MeterRegistry:
    """A :class:`MeterRegistry` from registry message values (invalid ones skipped; the last one of a meter wins)."""
    registry = MeterRegistry()
    for line in lines:
        line = line.strip()
        if line:
            try:
                registry.upsert(MeterInfo.model_validate_json(line))
            except ValueError:
                continue
    return registry


# -- results -------------------------------------------------------------------------------------------
@dataclass(slots=True)
class Memberships:
    """Behaviour and RFM segment ids of every customer at one instant (``at``, epoch seconds)."""

    at: float
    behaviour: dict[str, str] = field(default_factory=dict)
    rfm: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class BackfillResult:
    """What a backfill produced.

    ``by_day[d]`` is the state at the end of simulated day ``d`` (midnight
    after it): the daily profiles of the days *before* ``d`` are folded in
    (day ``d``'s own profile closes with its daily window, an allowed
    lateness after that midnight). ``final`` is the state after the last
    windows were flushed.
    """

    by_day: dict[date, Memberships] = field(default_factory=dict)
    final: Memberships = field(default_factory=lambda: Memberships(0.0))
    changes: list[SegmentChange] = field(default_factory=list)
    drift: list[DriftEvent] = field(default_factory=list)
    model_events: list[ModelEvent] = field(default_factory=list)
    windows: list[dict[str, Any]] = field(default_factory=list)
    """with ``keep_outputs``: every closed or corrected window, as ``consumption.windows`` records; regional
    ones are each partition's partial (with its ``partition``), which the stream merges fleet-wide"""
    deadletters: list[tuple[str, bytes]] = field(default_factory=list)
    """with ``keep_outputs``: (reason, payload) of every dead letter"""
    messages: int = 0
    readings: int = 0
    profiles: int = 0
    purchases: int = 0
    rejects: int = 0
    ingest_seconds: float = 0.0
    segmentation_seconds: float = 0.0
    profile_seconds: float = 0.0
    exchange_seconds: float = 0.0

    @property
    def days(self) -> list[date]:
        """Simulated days with a membership snapshot, in order."""
        return sorted(self.by_day)

    @property
    def model_versions(self) -> list[int]:
        """Every model version the owner emitted, in order."""
        return [e.version for e in self.model_events]


@dataclass(frozen=True, slots=True)
class BackfillConfig:
    """Partitions, exchange cadence and the processors' configurations (the stream's settings)."""

    partitions: int = 4
    step_s: int = 3600
    ingest: IngestConfig = field(default_factory=IngestConfig)
    segmentation: SegmentationConfig = field(default_factory=SegmentationConfig)
    owner_seed: int = 0
    #: partition of a key among ``partitions``; Kafka's murmur2 (simulators.partition.partition_for) to match a
    #: live worker exactly, the default crc32 is only stable
    partitioner: Callable[[str, int], int] = partition_of
    #: keep every closed window (records), dead letter and alert in the result (tests, comparisons)
    keep_outputs: bool = False


# -- the runner ----------------------------------------------------------------------------------------
class Backfill:
    """N ingest partitions, N segmentation partitions and one model owner, driven poll by poll.

    Use :meth:`run` on an iterable of :class:`Poll` (it calls :meth:`finish`), or
    :meth:`process` poll by poll and :meth:`finish` at the end.
    """

    def __init__(self, registry: MeterRegistry, config: BackfillConfig | None = None) -> None:
        self.config = cfg = config or BackfillConfig()
        if cfg.partitions < 1:
            raise ValueError("partitions must be >= 1")
        self.registry = registry
        # each partition expects the registered meters the partitioner gives it, as the live worker does
        self.ingest = [PartitionIngest(registry, cfg.ingest, owns=self._owner(p)) for p in range(cfg.partitions)]
        self.segmentation = [PartitionSegmentation(cfg.segmentation) for _ in range(cfg.partitions)]
        seg = cfg.segmentation
        # as the stream builds it (stream/pipelines/segmentation.py)
        self.owner = ModelOwner(**seg.owner_kwargs(), seed=cfg.owner_seed)
        self.result = BackfillResult()
        self._static: dict[str, dict[str, Any]] = {}
        for slot in range(len(registry)):
            info = registry.info(slot)
            self._static.setdefault(info["customer_id"], {
                "region": info["region"], "tariff": info["tariff"], "has_export": info["has_export"],
            })
        self._day: date | None = None
        self._routers: dict[str, _Router] = {}

    @classmethod
    def from_directory(cls, directory: Path | str, config: BackfillConfig | None = None,
                       topics: TopicNames | None = None) -> Backfill:
        """A backfill over the fleet registered in a file-sink directory."""
        names = topics or Topics()
        return cls(registry_from_lines(_lines(Path(directory) / f"{names.registry}.jsonl")), config)

    # -- driving ------------------------------------------------------------------------------------
    def run(self, polls: Iterable[Poll]) -> BackfillResult:
        """Process every poll, then :meth:`finish`."""
        for poll in polls:
            self.process(poll)
        return self.finish()

    def process(self, poll: Poll) -> None:
        """One poll: ingest, segmentation, then the exchange at its boundary."""
        n = self.config.partitions
        wall = poll.until
        res = self.result
        res.messages += len(poll)
        t0 = time.perf_counter()
        readings: list[list[RawMessage]] = [[] for _ in range(n)]
        heartbeats: list[list[RawMessage]] = [[] for _ in range(n)]
        for msg in poll.readings:
            readings[self._partition(msg, "readings")].append(msg)
        for msg in poll.heartbeats:
            heartbeats[self._partition(msg, "heartbeats")].append(msg)
        profiles: list[list[RawMessage]] = [[] for _ in range(n)]
        for p in range(n):
            if not readings[p] and not heartbeats[p]:
                continue
            out = self.ingest[p].process((readings[p], heartbeats[p]), wall=wall)
            res.readings += out.accepted_readings
            res.rejects += len(out.rejects)
            self._keep(out, p)
            self._route_profiles(out.profiles, profiles)
        for msg in poll.profiles:
            profiles[self._partition(msg, "profiles")].append(msg)
        t1 = time.perf_counter()
        res.ingest_seconds += t1 - t0
        purchases: list[list[RawMessage]] = [[] for _ in range(n)]
        for msg in poll.purchases:
            purchases[self._partition(msg, "purchases")].append(msg)
        self._segment(purchases, profiles, wall)
        self._exchange(wall)
        self._snapshot_days(poll.until)

    def finish(self) -> BackfillResult:
        """Close every open window, fold the last profiles, exchange, and take the final memberships."""
        n = self.config.partitions
        profiles: list[list[RawMessage]] = [[] for _ in range(n)]
        for p, ing in enumerate(self.ingest):
            out = ing.flush()
            self._keep(out, p)
            self._route_profiles(out.profiles, profiles)
        clocks = [c for s in self.segmentation if (c := s.clock.now(running=False)) is not None]
        wall = max(clocks) if clocks else 0.0
        self._segment([[] for _ in range(n)], profiles, wall)
        self._exchange(wall)
        self.result.final = self._memberships(wall)
        return self.result

    # -- steps --------------------------------------------------------------------------------------
    def _partition(self, msg: RawMessage, stream: str) -> int:
        """Partition of a message by its key (read from the value when the poll did not carry it); 0 without one."""
        n = self.config.partitions
        if n == 1:
            return 0
        key = msg.key if msg.key is not None else self._routers.setdefault(stream, _Router(stream))(msg.value).key
        return 0 if key is None else self.config.partitioner(key, n)

    def _owner(self, partition: int) -> Callable[[str], bool]:
        """Whether a meter's messages are routed to ``partition`` (see :meth:`_partition`)."""
        n, partitioner = self.config.partitions, self.config.partitioner
        return lambda meter_id: n == 1 or partitioner(meter_id, n) == partition

    def _keep(self, out: IngestOutput, partition: int) -> None:
        if self.config.keep_outputs:
            self.result.windows += [r for c in out.closed if c.kind == "meter" for r in c.to_records()]
            self.result.windows += [{**r, "partition": partition} for c in out.closed if c.kind == "region"
                                    for r in c.to_records()]  # fmt: skip
            self.result.deadletters += [(r.reason, r.payload) for r in out.rejects]

    def _route_profiles(self, found: ClosedProfiles, into: list[list[RawMessage]]) -> None:
        n = self.config.partitions
        for key, value in found.messages():  # the messages the live ingest pipeline sends
            p = self.config.partitioner(key.decode(), n)
            into[p].append(RawMessage(value, "meterseg.profiles", p, len(into[p])))

    def _segment(self, purchases: list[list[RawMessage]], profiles: list[list[RawMessage]], wall: float) -> None:
        res = self.result
        for p, seg in enumerate(self.segmentation):
            if not purchases[p] and not profiles[p]:
                continue
            static = {c: self._static[c] for c in _customers(purchases[p], profiles[p]) if c in self._static}
            t = time.perf_counter()
            out = seg.process((purchases[p], profiles[p]), static=static, wall=wall)
            dt = time.perf_counter() - t
            res.segmentation_seconds += dt
            if profiles[p]:
                res.profile_seconds += dt
            self._absorb(out)

    def _absorb(self, out: SegmentationOutput) -> None:
        res = self.result
        res.profiles += out.profiles
        res.purchases += sum(out.purchases.values())
        res.rejects += len(out.rejects)
        res.changes += out.changes
        res.drift += out.drift

    def _exchange(self, wall: float) -> None:
        """Re-score, then population and model exchange (the stream's timer, once per poll)."""
        t = time.perf_counter()
        # one observation time for every partition, as the stream's fleet clock (stream/state/fleet_clock.py)
        clocks = [c for c in (seg.clock.now(running=False) for seg in self.segmentation) if c is not None]
        fleet_now = max(clocks) if clocks else None
        for seg in self.segmentation:
            self._absorb(seg.rescore(wall, caught_up=False, now=fleet_now))
        sketches = [seg.local_sketches() for seg in self.segmentation]
        for p, seg in enumerate(self.segmentation):
            others = [s for q, s in enumerate(sketches) if q != p]
            seg.set_population(RfmSketches.merged(others) if others else None)
        events = self.owner.process([seg.flush_stats() for seg in self.segmentation])
        if self.owner.model is not None:
            for seg in self.segmentation:
                seg.set_model(self.owner.model)
        self.result.model_events += events
        self.result.exchange_seconds += time.perf_counter() - t

    def _snapshot_days(self, until: float) -> None:
        """At a midnight boundary, record the memberships of the day that just ended."""
        moment = datetime.fromtimestamp(until, UTC)
        if moment.hour or moment.minute or moment.second:
            return
        self.result.by_day[(moment - timedelta(days=1)).date()] = self._memberships(until)

    def _memberships(self, at: float) -> Memberships:
        out = Memberships(at)
        for seg in self.segmentation:
            for (cid, family), segs in seg.book.members.items():
                if not segs:
                    continue
                if family == "behaviour":
                    out.behaviour[cid] = next(iter(segs))
                elif family == "rfm":
                    out.rfm[cid] = next(iter(segs))
        return out


def _customers(*lists: list[RawMessage]) -> set[str]:
    out: set[str] = set()
    router = _Router("purchases")
    for msgs in lists:
        for m in msgs:
            cid = m.key if m.key is not None else router(m.value).key
            if cid is not None:
                out.add(cid)
    return out
