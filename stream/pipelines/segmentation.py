"""The segmentation pipeline's Kafka side: purchases and daily profiles in, segment changes out.

Purchases and daily profiles are both keyed by customer id, so partition *p*
of each belongs to one worker, which keeps that partition's
:class:`processors.segmentation.PartitionSegmentation`. Across partitions:
RFM population sketches are exchanged through Redis (so every worker scores
against the whole population) and the behaviour model through
:class:`stream.state.model.ModelExchange` (one model for the fleet).

Every membership change goes to ``segment.changes`` (entered/exited, with
family, segment, from/to, reason and model version) and into the Redis
projection the API reads. Checkpoints make state exact across restarts;
changes replayed after a crash carry the same ``change_id``. The partitions'
event clocks are published to Redis and merged into one fleet-wide
observation time (:mod:`stream.state.fleet_clock`), which the RFM rescoring
here and the API's ageing of customers (T, days since last purchase, CLV)
share.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import orjson
from aiokafka import TopicPartition

from meterseg.settings import Settings
from processors.clustering.assign import DETECTOR
from processors.clustering.owner import ModelOwner
from processors.columns import RawMessage
from processors.config_change import ConfigChangeError
from processors.jsonbytes import dumps
from processors.rfm.processor import RfmSketches
from processors.segmentation import PartitionSegmentation, SegmentationConfig, SegmentationOutput
from processors.segments import SegmentChange
from stream import metrics as m
from stream.clients.producer import BatchProducer, KeyValue
from stream.pipelines.base import PartitionedHandler
from stream.state.checkpoints import CheckpointStore
from stream.state.fleet_clock import fleet_now, publish_clocks
from stream.state.model import ModelExchange
from stream.state.segments import MembershipStore

log = logging.getLogger(__name__)

PIPELINE = "segments"

CustomerInfo = Callable[[str], Mapping[str, Any] | None]


def change_payload(c: SegmentChange) -> dict[str, Any]:
    """The ``segment.changes`` wire record of a processor change (see ``stream.schemas.SegmentChange``)."""
    action = "entered" if c.change == "entry" else "exited"
    ts = c.at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    # unique: the partition's change sequence number (checkpointed, so a replay of the same input numbers
    # its changes alike) or, for changes the API makes (static rule segments), the exact time; and a replay
    # after a crash may re-score against another population: the id also names the whole transition (from,
    # to), so records with one id always say the same thing
    tail = f"#{c.seq}" if c.seq is not None else "@" + c.at.astimezone(UTC).isoformat()
    return {
        "schema_version": 1,
        "change_id": f"{c.customer_id}:{c.family}:{c.segment_id}:{action}:{c.from_segment}>{c.to_segment}:{ts}{tail}",
        "customer_id": c.customer_id,
        "family": c.family,
        "segment_id": c.segment_id,
        "segment_name": c.segment_name,
        "action": action,
        "from_segment": c.from_segment,
        "to_segment": c.to_segment,
        "ts": ts,
        "reason": c.reason,
        "model_version": c.model_version,
    }


class SegmentationHandler(PartitionedHandler[PartitionSegmentation]):
    """:class:`~stream.clients.consumer.BatchHandler` of the segmentation pipeline."""

    pipeline = PIPELINE

    def __init__(
        self,
        settings: Settings,
        producer: BatchProducer,
        checkpoints: CheckpointStore,
        customer_info: CustomerInfo,
        checkpoint_interval_s: float = 2.0,
    ):
        super().__init__(checkpoints, checkpoint_interval_s)
        self.settings = settings
        self.config: SegmentationConfig = settings.segmentation
        self.producer = producer
        self.topics = settings.topics
        self.customer_info = customer_info
        self.store = MembershipStore(checkpoints.client, settings.redis_namespace, settings.state_shards)
        self.models = ModelExchange(
            checkpoints.client,
            settings.redis_namespace,
            lambda: ModelOwner(**self.config.owner_kwargs()),
        )  # fmt: skip
        self.totals = {"messages": 0, "deadletter": 0, "duplicates": 0, "changes": 0}
        self._last_exchange = 0.0
        self._size_labels: set[tuple[str, str]] = set()
        self._clocks: dict[int, float | None] = {}
        self.fleet_now: float | None = None
        self._api_rule_ids: set[str] = set()
        self._rfm_renamed = False  # a restore found another RFM map: its names go to the catalogue

    def drift_signals(self) -> list[str]:
        """Names of the drift detectors (a low-cardinality metric label)."""
        return [DETECTOR]

    def new_processor(self, partition: int) -> PartitionSegmentation:
        proc = PartitionSegmentation(self.config)
        proc.set_model(self.models.model)
        return proc

    async def on_assigned(self, partitions: set[TopicPartition]) -> dict[TopicPartition, int]:
        if not {tp.partition for tp in partitions} - set(self.partitions):
            return await super().on_assigned(partitions)  # nothing to restore (a rewind of nothing, or owned)
        # rule segments the API manages: never taken for rules of the settings' file by a restore
        ns = self.settings.redis_namespace
        pipe = self.checkpoints.client.pipeline(transaction=False)
        pipe.hkeys(f"{ns}:rules")
        pipe.smembers(f"{ns}:rules:removed")
        managed, removed = await pipe.execute()
        self._api_rule_ids = {r.decode() if isinstance(r, bytes) else str(r) for r in (*managed, *removed)}
        return await super().on_assigned(partitions)

    def restore_processor(self, partition: int, state: Any) -> PartitionSegmentation:
        # state from the checkpoint, configuration from the settings (ConfigChangeError: one it cannot follow)
        try:
            proc = PartitionSegmentation.restore(state, self.config, self._api_rule_ids)
        except ConfigChangeError as exc:
            log.critical("segments partition %d cannot be restored: %s", partition, exc)
            raise
        if proc.config_changes:
            log.info("segments partition %d restored with changed settings: %s (%d membership changes follow)",
                     partition, ", ".join(proc.config_changes), len(proc.pending.changes))  # fmt: skip
        self._rfm_renamed |= any(c.startswith("rfm_map_file") for c in proc.config_changes)
        proc.set_model(self.models.model)
        return proc

    def resume_processor(self, partition: int, processor: PartitionSegmentation) -> PartitionSegmentation:
        processor.set_model(self.models.model)  # a newer version may have come while it was parked
        return processor

    def snapshot(self, processor: PartitionSegmentation) -> Any:
        return processor.snapshot()

    async def process(self, batches: dict[int, dict[str, list[RawMessage]]]) -> None:
        outputs = []
        for p, by_topic in batches.items():
            purchases = by_topic.get(self.topics.purchases, [])
            profiles = by_topic.get(self.topics.profiles, [])
            static = self._static_attributes(purchases, profiles)
            outputs.append(self.partitions[p].processor.process((purchases, profiles), static=static))
        await self._emit(outputs)

    def _static_attributes(self, *msg_lists: list[RawMessage]) -> dict[str, dict[str, Any]]:
        """Registry attributes (region, tariff, export) of the customers in this batch."""
        out: dict[str, dict[str, Any]] = {}
        for msgs in msg_lists:
            for msg in msgs:
                try:
                    cid = orjson.loads(msg.value).get("customer_id")
                except (orjson.JSONDecodeError, AttributeError):
                    continue
                if isinstance(cid, str) and cid not in out:
                    info = self.customer_info(cid)
                    if info is not None:
                        out[cid] = dict(info)
        return out

    async def on_timer(self, wall: float | None = None, lagging: set[int] | None = None) -> None:
        """Re-score RFM (customers age without events), exchange population and model, publish gauges.

        Proportional to what changed, not to the population: a partition rescores only the customers whose
        scores can have moved (:mod:`processors.rfm.index`; none on an idle tick), and the gauges, refreshed
        with each exchange (``exchange_interval_s``), read counts the processors keep.
        """
        lagging = lagging or set()
        self._clocks = {
            p: part.processor.clock.now(wall, running=p not in lagging) for p, part in self.partitions.items()
        }
        outputs = [
            part.processor.rescore(wall, caught_up=p not in lagging, now=self.fleet_now)
            for p, part in self.partitions.items()
        ]
        await self._emit(outputs)
        now = time.monotonic()
        if now - self._last_exchange >= self.config.exchange_interval_s:
            self._last_exchange = now
            await self._exchange()

    async def _exchange(self) -> None:
        client = self.checkpoints.client
        ns = self.settings.redis_namespace
        # RFM population: publish ours, merge everyone else's
        pipe = client.pipeline(transaction=False)
        for p, part in self.partitions.items():
            pipe.set(f"{ns}:rfm:sketch:{p}", dumps(part.processor.local_sketches().snapshot()))
        await pipe.execute()
        # one observation time for the fleet: ours published, everyone's merged
        await publish_clocks(client, ns, {p: t for p, t in self._clocks.items() if p in self.partitions})
        self.fleet_now = await fleet_now(client, ns)
        raw = await client.mget([f"{ns}:rfm:sketch:{p}" for p in range(self.settings.partitions)])
        sketches = {p: RfmSketches.restore(orjson.loads(r)) for p, r in enumerate(raw) if r}
        for p, part in self.partitions.items():
            others = [s for q, s in sketches.items() if q != p]
            part.processor.set_population(RfmSketches.merged(others) if others else None)
        # behaviour model: statistics to the owner, newest version back
        await self.models.push_stats([part.processor.flush_stats() for part in self.partitions.values()])
        events = await self.models.run_owner()
        model = await self.models.fetch()
        if model is not None:
            await self._emit([part.processor.adopt_model(model) for part in self.partitions.values()])
            catalogue = {
                f"behaviour:{c.id}": {"family": "behaviour", "id": c.id, "name": c.name, "profile": c.profile,
                                       "top_features": c.top_features, "model_version": model.version}
                for c in model.clusters()
            }  # fmt: skip
            await self.store.apply([], catalogue=catalogue)
        if self._rfm_renamed and self.partitions:
            rfm_map = next(iter(self.partitions.values())).processor.rfm.segment_map
            await self.store.apply([], catalogue={f"rfm:{d.id}": {"family": "rfm", "id": d.id, "name": d.name}
                                                  for d in rfm_map.segments})  # fmt: skip
            self._rfm_renamed = False
        if events:
            ts = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            records: list[KeyValue] = [
                (
                    b"behaviour",
                    dumps({
                        "schema_version": 1, "event_id": f"model:{e.version}", "kind": "version",
                        "model_version": e.version, "ts": ts,
                        "detail": {"reason": e.reason, "drifts": e.drifts, "n_updates": e.n_updates,
                                   "profile_day": e.profile_day,
                                   "names": {c.id: c.name for c in e.clusters}},
                    }),
                )
                for e in events
            ]  # fmt: skip
            records += [
                (
                    b"behaviour",
                    dumps({
                        "schema_version": 1, "event_id": f"rename:{e.version}:{r['id']}", "kind": "rename",
                        "model_version": e.version, "ts": ts,
                        "detail": {"segment": r["id"], "from": r["from"], "to": r["to"], "why": r["why"],
                                   "profile_day": e.profile_day},
                    }),
                )
                for e in events
                for r in e.renamed
            ]  # fmt: skip
            await self.producer.send_many(self.topics.model_events, records)
        await self._gauges()

    async def _gauges(self) -> None:
        # counts kept by the processors as records change: O(partitions + segments), not O(customers)
        new = sum(part.processor.rfm.new_customers for part in self.partitions.values())
        returning = sum(part.processor.rfm.returning_customers for part in self.partitions.values())
        m.CUSTOMERS.labels("new").set(new)
        m.CUSTOMERS.labels("returning").set(returning)
        # this worker's partitions only: summed over workers, the dashboards get fleet-wide sizes
        sizes: dict[tuple[str, str], int] = dict.fromkeys(self._size_labels, 0)
        for part in self.partitions.values():
            for key, n in part.processor.book.sizes.items():
                sizes[key] = sizes.get(key, 0) + n
        self._size_labels |= set(sizes)
        for (family, segment), n in sizes.items():
            m.SEGMENT_MEMBERS.labels(family, segment).set(n)
        today = datetime.now(UTC).date()
        for part in self.partitions.values():
            clock = part.processor.clock.now(running=False)
            day = datetime.fromtimestamp(clock, UTC).date() if clock else today
            for (family, segment), ratio in part.processor.book.volatility(day).items():
                m.SEGMENT_VOLATILITY.labels(family, segment).set(ratio)

    async def _emit(self, outputs: list[SegmentationOutput]) -> None:
        changes: list[KeyValue] = []
        deadletters: list[KeyValue] = []
        drift: list[KeyValue] = []
        all_changes: list[SegmentChange] = []
        for out in outputs:
            self.totals["messages"] += out.messages
            self.totals["deadletter"] += len(out.rejects)
            self.totals["duplicates"] += out.duplicates
            if out.duplicates:
                m.DUPLICATES.labels(self.topics.purchases).inc(out.duplicates)
            self.totals["changes"] += len(out.changes)
            for event_type, n in out.purchases.items():
                m.PURCHASES_APPLIED.labels(event_type).inc(n)
            for channel, amount in out.revenue.items():
                m.REVENUE.labels(channel).inc(amount)
            if out.rfm:
                m.PROFILE_UPDATES.labels("rfm").inc(len(out.rfm))
            if out.features:
                m.PROFILE_UPDATES.labels("features").inc(len(out.features))
            for rej in out.rejects:
                deadletters.append((None, rej.payload, rej.headers()))
                m.DEADLETTERED.labels(rej.reason).inc()
            for c in out.changes:
                changes.append((c.customer_id.encode(), dumps(change_payload(c))))
                (m.SEGMENT_ENTRIES if c.change == "entry" else m.SEGMENT_EXITS).labels(c.family, c.segment_id).inc()
            all_changes += out.changes
            for d in out.drift:
                m.DRIFT_EVENTS.labels(d.detector).inc()
                ts = d.at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
                drift.append((
                    b"behaviour",
                    dumps({
                        "schema_version": 1, "event_id": f"drift:{d.detector}:{ts}:{d.n_updates}", "kind": "drift",
                        "model_version": d.model_version, "ts": ts,
                        "detail": {"detector": d.detector, "mean_before": d.mean_before, "mean_after": d.mean_after},
                    }),
                ))  # fmt: skip
            if out.rfm or out.features or out.changes:
                await self.store.apply(out.changes, out.rfm, out.features)
        if deadletters:
            await self.producer.send_many(self.topics.deadletter, deadletters)
        if changes:
            await self.producer.send_many(self.topics.segment_changes, changes)
        if drift:
            await self.producer.send_many(self.topics.model_events, drift)
