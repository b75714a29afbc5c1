"""The ingestion pipeline's Kafka side: per-partition state, outputs, checkpoints.

Thin by design: every decision is made in :class:`processors.ingest.PartitionIngest`;
this module moves bytes between Kafka, the processors and Redis:

1. a poll's records of ``meter.readings`` / ``meter.heartbeats`` (co-partitioned,
   so partition *p* of both belongs to one worker) go to partition *p*'s processor;
2. its outputs are produced — alerts first (an operator waits for them), dead
   letters with their reason in headers, closed windows, profiles — and
   acknowledged by the broker;
3. every ``checkpoint_interval_s`` the processor state and the offsets it
   reflects are written to Redis in one atomic flip (:mod:`stream.state.checkpoints`);
   only then are those offsets committed to Kafka.

A crash replays at most one checkpoint interval: state is restored exactly
(nothing lost or counted twice), outputs of the replayed span are produced
again with the same deterministic ids (at-least-once, deduplicable downstream).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from itertools import chain
from typing import Any

import orjson
from aiokafka import TopicPartition
from aiokafka.partitioner import murmur2

from meterseg.settings import Settings
from processors.columns import MeterRegistry, RawMessage
from processors.config_change import ConfigChangeError
from processors.health import HealthAlert, MeterHealth
from processors.ingest import IngestConfig, IngestOutput, PartitionIngest
from processors.jsonbytes import dumps
from processors.profiles import ClosedProfiles
from processors.windows import NONE, ClosedWindows, size_label
from stream import metrics as m
from stream.clients.producer import BatchProducer, KeyValue
from stream.pipelines.base import PartitionedHandler, PartitionState
from stream.slices import SLICE, slices
from stream.state.checkpoints import CheckpointStore
from stream.state.health import HealthStore
from stream.state.keys import meter_keys
from stream.state.meters import MeterStore
from stream.state.regional import RegionalMerger

log = logging.getLogger(__name__)

PIPELINE = "ingest"


class IngestHandler(PartitionedHandler[PartitionIngest]):
    """:class:`~stream.clients.consumer.BatchHandler` of the ingestion pipeline."""

    pipeline = PIPELINE

    def __init__(
        self,
        settings: Settings,
        registry: MeterRegistry,
        producer: BatchProducer,
        checkpoints: CheckpointStore,
        config: IngestConfig,
        checkpoint_interval_s: float = 2.0,
    ):
        super().__init__(checkpoints, checkpoint_interval_s)
        self.settings = settings
        self.registry = registry
        self.producer = producer
        self.config = config
        self.topics = settings.topics
        self.totals = {"messages": 0, "accepted": 0, "deadletter": 0, "duplicates": 0}
        self.health_store = HealthStore(checkpoints.client, meter_keys(settings))
        self.regional = RegionalMerger(
            checkpoints.client, settings.redis_namespace, settings.partitions, settings.region_revenue_days
        )
        self.meter_store = MeterStore(checkpoints.client, meter_keys(settings), settings.meter_ranking_days)
        #: the consumer's high watermark per topic partition (set by the BatchConsumer): which topic is pending
        self.highwater: Callable[[TopicPartition], int | None] | None = None
        self._fetched: dict[TopicPartition, int] = {}

    def new_processor(self, partition: int) -> PartitionIngest:
        return PartitionIngest(self.registry, self.config, owns=meter_owner(partition, self.settings.partitions))

    def restore_processor(self, partition: int, state: Any) -> PartitionIngest:
        # state from the checkpoint, configuration from the settings (ConfigChangeError: one it cannot follow)
        try:
            proc = PartitionIngest.restore(
                state, self.registry, self.config, owns=meter_owner(partition, self.settings.partitions)
            )
        except ConfigChangeError as exc:
            log.critical("ingest partition %d cannot be restored: %s", partition, exc)
            raise
        if proc.config_changes:
            log.info("ingest partition %d restored with changed settings: %s", partition, ", ".join(proc.config_changes))
        return proc

    def snapshot(self, processor: PartitionIngest) -> Any:
        return processor.snapshot()

    async def process(self, batches: dict[int, dict[str, list[RawMessage]]]) -> None:
        for p, by_topic in batches.items():
            for topic, msgs in by_topic.items():
                self._fetched[TopicPartition(topic, p)] = msgs[-1].offset + 1
        outputs = [
            (
                p,
                self.partitions[p].processor.process(
                    (by_topic.get(self.topics.readings, []), by_topic.get(self.topics.heartbeats, [])),
                    pending=self._pending(p),
                ),
            )
            for p, by_topic in batches.items()
        ]
        await self._emit(outputs)

    async def on_assigned(self, partitions: set[TopicPartition]) -> dict[TopicPartition, int]:
        for tp in partitions:  # (re)assigned or rewound: the consumer resumes at the checkpoint's offsets
            self._fetched.pop(tp, None)
        return await super().on_assigned(partitions)

    def _pending(self, partition: int) -> set[str]:
        """Which input topics of a partition still have messages on the broker beyond what was fetched."""
        if self.highwater is None:
            return set()
        out = set()
        for name, topic in (("readings", self.topics.readings), ("heartbeats", self.topics.heartbeats)):
            tp = TopicPartition(topic, partition)
            high = self.highwater(tp)
            fetched = self._fetched.get(tp, self.partitions[partition].offsets.get(topic, 0))
            if high is not None and high > fetched:
                out.add(name)
        return out

    def held_partitions(self) -> set[TopicPartition]:
        """Topic partitions whose held-back messages exceed ``hold_max_bytes``: paused until the other catches up.

        Below the bound the topic keeps being read (pausing and resuming costs
        fetch round trips); never both topics of one partition (the consumer
        would stop reading it).
        """
        out: set[TopicPartition] = set()
        for p, part in self.partitions.items():
            held = part.processor.held()
            if len(held) == 1 and part.processor.held_bytes() > self.config.hold_max_bytes:
                out.add(TopicPartition(next(iter(held)), p))
        return out

    def checkpoint_offsets(self, part: PartitionState[PartitionIngest]) -> dict[str, int]:
        offsets = dict(part.offsets)
        for topic, first in part.processor.held().items():
            offsets[topic] = min(offsets.get(topic, first), first)
        return offsets

    async def on_timer(self, wall: float | None = None, lagging: set[int] | None = None) -> None:
        """Close windows and find silent meters by the event clock, even with no new events.

        ``lagging``: partitions whose consumer is behind; their clock must not run on.
        """
        lagging = lagging or set()
        outputs = []
        for p, part in self.partitions.items():
            if part.processor.held():  # held back for the other topic: released once it has nothing to read
                outputs.append((p, part.processor.process(([], []), wall, pending=self._pending(p))))
            outputs.append((p, part.processor.on_timer(wall, caught_up=p not in lagging)))
        # a caught-up partition that never had a reading has no frontier: it moves with the fleet's, or no
        # regional window would ever be final (issue: regional totals stalled by one idle partition)
        await self.regional.advance_idle(
            p for p, part in self.partitions.items() if p not in lagging and part.processor.windows.frontier == NONE
        )
        await self._emit(outputs)
        spread, missing = await self.regional.frontier_spread()
        m.REGION_FRONTIER_SPREAD.set(spread)
        m.REGION_FRONTIER_MISSING.set(missing)
        self._update_gauges()

    async def _emit(self, outputs: list[tuple[int, IngestOutput]]) -> None:
        deadletters: list[KeyValue] = []
        windows: list[KeyValue] = []
        alerts: list[KeyValue] = []
        health: dict[str, MeterHealth] = {}
        profiles: list[ClosedProfiles] = []
        daily: list[ClosedWindows] = []
        alert_payloads: list[dict[str, Any]] = []
        for p, out in outputs:
            self._count(out)
            part = self.partitions.get(p)
            if part is not None:
                frontier = part.processor.windows.frontier
                regional = [c for c in out.closed if c.kind == "region"]
                if regional or frontier != NONE:
                    await self.regional.save(p, int(frontier), regional)
            for rej in out.rejects:
                deadletters.append((rej.meter_id.encode() if rej.meter_id else None, rej.payload, rej.headers()))
                m.DEADLETTERED.labels(rej.reason).inc()
            for closed in out.closed:
                if closed.kind == "region":
                    continue  # merged across partitions below
                label = f"{closed.kind}_{size_label(closed.size_s)}"
                m.WINDOWS_EMITTED.labels(label).inc(len(closed))
                revised = closed.revisions > 0
                m.WINDOWS_REVISED.labels(label).inc(int(revised.sum()))
                m.GAP_WINDOWS.labels(label).inc(int(((closed.count == 0) & ~revised).sum()))
                windows += self._window_messages(p, closed)
                if closed.size_s == 86_400:
                    daily.append(closed)
            for alert in out.alerts:
                payload = self._alert_payload(alert)
                alert_payloads.append(payload)
                alerts.append((alert.meter_id.encode(), dumps(payload)))
                m.ALERTS.labels(alert.kind, alert.status).inc()
            for change in out.health_changes:
                health[change.meter_id] = change
            m.observe_many(m.LATENCY.labels("event_time"), out.event_latency_s)
            m.observe_many(m.LATENCY.labels("append_time"), out.append_latency_s)
            if len(out.profiles):
                profiles.append(out.profiles)
        claimed = await self.regional.claim_ready()
        for _, rec in claimed:
            before = rec.pop("previous") or {}  # a correction: the counters grow by the difference only
            windows.append((rec["key"].encode(), dumps(rec)))
            m.WINDOWS_EMITTED.labels(f"region_{rec['window']}").inc()
            if rec["revision"]:
                m.WINDOWS_REVISED.labels(f"region_{rec['window']}").inc()
            m.REGION_KWH.labels(rec["key"], "import").inc(max(rec["kwh_in"] - before.get("kwh_in", 0.0), 0.0))
            m.REGION_KWH.labels(rec["key"], "export").inc(max(rec["kwh_out"] - before.get("kwh_out", 0.0), 0.0))
            m.REGION_REVENUE.labels(rec["key"]).inc(
                max((rec.get("revenue") or 0.0) - (before.get("revenue") or 0.0), 0.0)
            )
        # alerts first: an operator waits for them, and at a new event day the closed windows of every meter
        # of the partition (tens of thousands of records) would otherwise go out ahead of them
        if alerts:
            await self.producer.send_many(self.topics.alerts, alerts)
        if deadletters:
            await self.producer.send_many(self.topics.deadletter, deadletters)
        if windows:
            await self.producer.send_many(self.topics.windows, windows)
        if claimed:
            await self.regional.confirm(claimed)
        # a day's profiles and daily records go out a slice at a time: when the day closes for every meter of a
        # partition at once, all of them built before the first is sent held tens of MB per partition
        for block in slices(chain.from_iterable(p.messages() for p in profiles)):
            await self.producer.send_many(self.topics.profiles, block)
        if health:
            await self.health_store.save(health.values())
        if daily or alert_payloads:
            await self.meter_store.save(daily_records(daily, self._region), alert_payloads)

    def _window_messages(self, partition: int, closed: ClosedWindows) -> list[KeyValue]:
        """``consumption.windows`` messages: :class:`~stream.schemas.WindowBatch` columns, or one per window.

        A batch is keyed by its first meter id; every meter of one ingest
        partition hashes to the same partition, so the batch lands where its
        single records would have. The batch id is deterministic (a replay
        after a crash re-sends the same id for the same first window).
        """
        size = self.settings.window_batch_size
        if size <= 1:
            return [(rec["key"].encode(), dumps(rec)) for rec in closed.to_records()]
        out: list[KeyValue] = []
        for lo in range(0, len(closed), size):
            cols = closed.to_columns(lo, lo + size)
            first = cols["key"][0]
            batch_id = f"{partition}:{cols['window']}:{cols['window_start'][0]}:{first}:{len(cols['key'])}"
            top = int(cols["revision"].max())
            if top:  # corrections: not the same batch as a first emission starting with the same window
                batch_id += f":r{top}"
            payload = {"schema_version": 1, "batch_id": batch_id, **cols}
            out.append((first.encode(), dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY)))
        return out

    def _region(self, meter_id: str) -> str | None:
        slot = self.registry.slot(meter_id)
        return None if slot is None else self.registry.region_names[int(self.registry.region_code[slot])]

    def _alert_payload(self, alert: HealthAlert) -> dict[str, Any]:
        slot = self.registry.slot(alert.meter_id)
        return {
            "schema_version": 1,
            "alert_id": f"{alert.meter_id}:{alert.kind}:{alert.status}:{alert.at}",
            "meter_id": alert.meter_id,
            "customer_id": self.registry.customer_ids[slot] if slot is not None else None,
            "kind": alert.kind,
            "action": alert.status,
            "health": alert.health,
            "reasons": list(alert.reasons),
            "ts": _iso(alert.at),
            "detail": "" if alert.value is None else f"value={alert.value:.6g}",
        }

    def _count(self, out: IngestOutput) -> None:
        self.totals["messages"] += out.messages
        self.totals["accepted"] += out.accepted
        self.totals["deadletter"] += len(out.rejects)
        self.totals["duplicates"] += out.duplicates
        m.READINGS_PROCESSED.inc(out.accepted_readings)
        m.LATE_READINGS_COUNTED.inc(out.corrected_readings)
        m.HEARTBEATS_PROCESSED.inc(out.accepted_heartbeats)
        if out.duplicates:
            m.DUPLICATES.labels(self.topics.readings).inc(out.duplicates)

    def _update_gauges(self) -> None:
        for kind in ("messages", "accepted", "deadletter", "duplicates"):
            m.INGEST_STATE_MESSAGES.labels(kind).set(sum(p.processor.totals[kind] for p in self.partitions.values()))
        counts: dict[str, int] = {"good": 0, "fair": 0, "poor": 0}
        late = 0
        for part in self.partitions.values():
            for state, n in part.processor.health_counts().items():
                counts[state] = counts.get(state, 0) + n
            late += part.processor.late_count()
        for state, n in counts.items():
            m.METERS_BY_HEALTH.labels(state).set(n)
        m.METERS_LATE.set(late)


def meter_owner(partition: int, partitions: int) -> Callable[[str], bool]:
    """Whether a meter's readings land on ``partition``: Kafka's default partitioner (murmur2) of its id.

    Readings and heartbeats are keyed by meter id (a block by its first meter, and a block holds
    the meters of one partition), so this is the set of registered meters whose windows, gaps
    included, this partition emits.

    Examples:
        >>> owners = [meter_owner(p, 4) for p in range(4)]
        >>> [sum(o(f"M{i:05d}") for i in range(100)) for o in owners] == [
        ...     sum((murmur2(f"M{i:05d}".encode()) & 0x7FFFFFFF) % 4 == p for i in range(100)) for p in range(4)]
        True
    """

    def owns(meter_id: str) -> bool:
        return (int(murmur2(meter_id.encode())) & 0x7FFFFFFF) % partitions == partition

    return owns


def daily_records(
    daily: Iterable[ClosedWindows], region: Callable[[str], str | None], size: int = SLICE
) -> Iterator[tuple[dict[str, Any], str | None]]:
    """Each closed window's record with its meter's region, the records built ``size`` at a time.

    >>> import numpy as np
    >>> one = np.ones(3, np.int64)
    >>> day = ClosedWindows("meter", 86_400, ["M1", "M2", "M3"], np.zeros(3, np.int64), one, one, np.ones(3),
    ...                     np.zeros(3), np.ones(3), np.ones(3), np.ones(3), np.zeros(3))
    >>> [(rec["key"], r) for rec, r in daily_records([day], {"M2": "North"}.get, size=2)]
    [('M1', None), ('M2', 'North'), ('M3', None)]
    """
    for closed in daily:
        for lo in range(0, len(closed), size):
            for rec in closed.to_records(lo, lo + size):
                yield rec, region(rec["key"])


def _iso(epoch_s: int) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
