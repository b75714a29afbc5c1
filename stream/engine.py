"""The engine service a worker runs inside its Faust app.

Starts, in order: topics (created if missing), Redis, the batching producer,
the meter registry (read to the end before anything else), then the batch
consumers of the pipelines. A timer drives what must happen without new
events: closing windows, finding silent meters, publishing lag and liveness.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import numpy as np
from mode import Service

from meterseg.settings import Settings
from processors.clock import EventClock
from stream import metrics as m
from stream.agents.operations import outstanding_bills
from stream.clients.consumer import BatchConsumer
from stream.clients.producer import BatchProducer
from stream.clients.redis_client import async_redis
from stream.clients.security import check_redis, kafka_client_options
from stream.memory import HeapTrimmer
from stream.pipelines.ingest import IngestHandler
from stream.pipelines.segmentation import SegmentationHandler
from stream.registry import RegistryFollower
from stream.runtime import tune_gc
from stream.state.checkpoints import CheckpointStore
from stream.topics import ensure_topics
from stream.web.history import record_moves, sample_sizes
from stream.web.rules import sync_rule_definitions

log = logging.getLogger(__name__)


class Engine(Service):
    """Owns the clients and pipelines of one worker."""

    settings: Settings  # set by :func:`engine_class`

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        s = self.settings
        self.redis = async_redis(s)  # one server, or a Redis Cluster (METERSEG_REDIS_CLUSTER)
        kafka_options = kafka_client_options(s)
        self.producer = BatchProducer(s.kafka_bootstrap, acks=s.producer_acks, **kafka_options)
        self.registry_follower = RegistryFollower(
            s.kafka_bootstrap, s.topics.registry, on_invalid=self._invalid_registration, **kafka_options
        )
        # checkpoints are per partition and self-contained (no command mixes them with other keys): named by
        # the plain app id they spread over a Redis Cluster's masters, unlike the shared state under
        # settings.redis_namespace, which must stay in one slot
        self.checkpoints = CheckpointStore(self.redis, s.app_id)
        self.ingest = IngestHandler(
            s,
            self.registry_follower.registry,
            self.producer,
            self.checkpoints,
            s.ingest,
            checkpoint_interval_s=s.checkpoint_interval_s,
        )
        self.ingest_consumer = BatchConsumer(
            s.kafka_bootstrap,
            f"{s.app_id}-ingest",
            [s.topics.readings, s.topics.heartbeats],
            self.ingest,
            max_records=s.ingest_poll_records,
            **kafka_options,
        )
        self.segmentation = SegmentationHandler(
            s, self.producer, self.checkpoints, self.customer_info, checkpoint_interval_s=s.checkpoint_interval_s
        )
        self.segment_consumer = BatchConsumer(
            s.kafka_bootstrap,
            f"{s.app_id}-segments",
            [s.topics.purchases, s.topics.profiles],
            self.segmentation,
            max_records=5_000,
            **kafka_options,
        )
        self.consumers = {"ingest": self.ingest_consumer, "segments": self.segment_consumer}
        self.started_at = time.time()
        # liveness beyond "the consumer polls" (see :meth:`health`), all monotonic seconds
        started = time.monotonic()
        self.last_tick = started  # the 1 s timer's last completed run
        self.heap = HeapTrimmer(s.heap_trim_interval_s)  # free heap pages back to the system (slow tick)
        self.clock_frozen = False  # {app}:clock:frozen: the source has finished, clocks stop running on
        self.timer_ok = dict.fromkeys(self.consumers, started)  # each pipeline's last successful timer step
        self.lag = dict.fromkeys(self.consumers, 0)  # records behind, as of the last tick
        self.waiting_since: dict[str, float | None] = dict.fromkeys(self.consumers)  # since when lag > 0
        self._customer_slot: dict[str, int] = {}
        self._regions_version = -1
        self._gauged_registry = -1  # registry version the meters-registered gauges show
        self._invalid_registrations: list[tuple[bytes, str, int, int]] = []

    def _invalid_registration(self, value: bytes, error: str, partition: int, offset: int) -> None:
        self._invalid_registrations.append((value, error, partition, offset))

    async def on_start(self) -> None:
        s = self.settings
        created = await ensure_topics(s)
        if created:
            log.info("created %d topics", len(created))
        await check_redis(self.redis, s.redis_url)  # a clear error when Redis wants a password
        await self.producer.start()
        await self.registry_follower.start()
        await self.registry_follower.catch_up()
        self.registry_follower.follow()
        m.init_known_labels(
            list(self.registry_follower.registry.region_names),
            list(self.segmentation.drift_signals()),
        )
        self.ingest.before_batch = self.registry_follower.sync
        self.segmentation.before_batch = self.registry_follower.sync
        await self.ingest_consumer.start()
        await self.segment_consumer.start()
        tune_gc()
        log.info(
            "engine started: %d meters known, consuming %s as group %s-ingest",
            len(self.registry_follower.registry),
            ", ".join(self.ingest_consumer.topics),
            s.app_id,
        )

    async def on_stop(self) -> None:
        await self.segment_consumer.stop()
        await self.ingest_consumer.stop()
        await self.registry_follower.stop()
        await self.producer.stop()
        await self.redis.aclose()

    @Service.timer(1.0)
    async def _tick(self) -> None:
        # Every part is guarded: an outage (Redis or Kafka down) must not crash the service (mode
        # would stop the whole worker); the part is retried at the next tick.
        now = time.time()
        try:
            await self._apply_clock_freeze()
        except Exception as exc:
            self._timer_error("clock freeze", exc)
        for name, consumer in self.consumers.items():
            try:
                lag = await consumer.lag()
            except Exception as exc:
                self._timer_error(f"{name} lag", exc)
                lag = {}
            lagging = {tp.partition for tp, n in lag.items() if n > 0}
            lagging |= {tp.partition for tp in consumer.assignment if tp not in lag}  # nothing fetched yet
            handler = self.ingest if name == "ingest" else self.segmentation

            async def step(handler: Any = handler, name: str = name, lagging: set[int] = lagging) -> None:
                if name == "segments":
                    # rule segments defined through the API reach every owned partition
                    await sync_rule_definitions(self.segmentation, self.redis, self.settings.redis_namespace)
                await handler.on_timer(lagging=lagging)

            self._note_lag(name, lag)
            failing = consumer.failing_since
            if failing is not None and self.lag[name] == 0 and consumer.last_progress > failing:
                consumer.failing_since = None  # caught up after the failure: nothing is left failing
            if await consumer.run_exclusive(f"{name} timer", step):
                self.timer_ok[name] = time.monotonic()
            else:
                m.TIMER_ERRORS.labels(f"{name}_timer").inc()
            m.LAST_POLL.labels(name).set(now - (time.monotonic() - consumer.last_poll))
            m.LAST_PROGRESS.labels(name).set(now - (time.monotonic() - consumer.last_progress))
            for tp, n in lag.items():
                m.CONSUMER_LAG.labels(tp.topic, str(tp.partition)).set(n)
        try:
            await self._flush_invalid_registrations()
        except Exception as exc:
            self._timer_error("invalid registrations", exc)
        registry = self.registry_follower.registry
        if len(registry) and registry.version != self._gauged_registry:  # O(meters): only when it changed
            self._gauged_registry = registry.version
            counts = np.bincount(registry.region_code, minlength=len(registry.region_names))
            for region, n in zip(registry.region_names, counts.tolist(), strict=True):
                m.METERS_REGISTERED.labels(region).set(n)
        self.last_tick = time.monotonic()

    async def _apply_clock_freeze(self) -> None:
        """Stop (or resume) every event clock's running-on as ``{app}:clock:frozen`` says (``meterseg demo``
        sets it once its simulated fleet has sent everything, so the picture stays as the summary told)."""
        frozen = bool(await self.redis.exists(f"{self.settings.redis_namespace}:clock:frozen"))
        if frozen != self.clock_frozen:
            log.info("event clocks %s", "frozen: the source has finished" if frozen else "running on again")
        self.clock_frozen = frozen
        for handler in (self.ingest, self.segmentation):
            for part in getattr(handler, "partitions", {}).values():
                owner = getattr(part, "processor", part)
                for value in vars(owner).values():
                    if isinstance(value, EventClock):
                        value.freeze(frozen)

    def _note_lag(self, name: str, lag: dict[Any, int]) -> None:
        """Remember the consumer's lag and since when records have been waiting (for :meth:`health`)."""
        if not lag:
            return  # unknown (nothing fetched yet, or the lag query failed): keep what we knew
        total = sum(lag.values())
        self.lag[name] = total
        if total == 0:
            self.waiting_since[name] = None
        elif self.waiting_since[name] is None:
            self.waiting_since[name] = time.monotonic()

    async def _flush_invalid_registrations(self) -> None:
        if not self._invalid_registrations:
            return
        bad, self._invalid_registrations = self._invalid_registrations, []
        records = [
            (
                None,
                value,
                [
                    ("reason", b"schema"),
                    ("error", error.encode()[:1000]),
                    ("source_topic", self.settings.topics.registry.encode()),
                    ("source_partition", str(p).encode()),
                    ("source_offset", str(o).encode()),
                    ("record", b"-1"),
                ],
            )
            for value, error, p, o in bad
        ]
        await self.producer.send_many(self.settings.topics.deadletter, records)
        m.DEADLETTERED.labels("schema").inc(len(records))

    def customer_info(self, customer_id: str) -> dict[str, Any] | None:
        """Registry attributes of a customer's (first) meter: region, tariff, has_export."""
        registry = self.registry_follower.registry
        if self._regions_version != registry.version:
            self._customer_slot = {}
            for i, cid in enumerate(registry.customer_ids):
                self._customer_slot.setdefault(cid, i)
            self._regions_version = registry.version
        found = self._customer_slot.get(customer_id)
        if found is None:
            return None
        info = registry.info(found)
        return {"region": info["region"], "tariff": info["tariff"], "has_export": info["has_export"]}

    def region_of_customer(self, customer_id: str) -> str | None:
        """Region of a customer's (first) meter, from the registry."""
        info = self.customer_info(customer_id)
        return None if info is None else str(info["region"])

    @Service.timer(5.0)
    async def _slow_tick(self) -> None:
        if self.heap.due():
            released, took = self.heap.trim()
            m.HEAP_RELEASED.inc(released)
            if took > 0.1:
                log.info("heap trim gave back %.0f MB in %.2f s", released / 1e6, took)
        try:
            await sample_sizes(self.redis, self.settings.redis_namespace, shards=self.settings.state_shards)
            await record_moves(self.segmentation, self.redis, self.settings.redis_namespace)
            count, amount = await outstanding_bills(self.redis, self.settings)
            m.BILLS_OUTSTANDING.set(count)
            m.BILLS_OUTSTANDING_AMOUNT.set(amount)
        except Exception as exc:
            self._timer_error("slow tick", exc)

    def _timer_error(self, part: str, exc: Exception) -> None:
        log.warning("timer part %r failed (%s: %s); retrying at the next tick", part, type(exc).__name__, exc)
        m.TIMER_ERRORS.labels(part.replace(" ", "_")).inc()

    def stall_reasons(self, now: float | None = None) -> list[str]:
        """Why the worker is not doing its work, each for longer than ``settings.liveness_timeout_s``; [] if live.

        - a consumer has not polled (its loop hangs, e.g. a batch waits on a frozen Redis);
        - records wait (lag > 0) and no batch has been processed since they came or since the last
          progress, whichever is later (the loop polls, but every batch fails or is dropped);
        - batches keep failing although the consumer polls, and nothing was checkpointed since the first
          failure (every batch fails, or each rewind to the checkpoint fails again before the next one):
          for longer than the limit and than two checkpoint intervals (one failure heals by the next
          checkpoint, or when the consumer has caught up after it: see :meth:`_tick`);
        - a pipeline's timer step keeps failing (windows stop closing, silent meters go unnoticed);
        - the timer itself has not completed a tick (hung, or stopped), so nothing above is refreshed;
        - at once: a partition's checkpoint refused a changed setting (``ConfigChangeError``; its
          partitions are not processed until the setting is set back or the app starts afresh).
        """
        now = time.monotonic() if now is None else now
        limit = self.settings.liveness_timeout_s
        failing_limit = max(limit, 2 * self.settings.checkpoint_interval_s)
        reasons = []
        for name, c in self.consumers.items():
            if c.refused is not None:  # at once: no wait makes a refused checkpoint heal
                reasons.append(f"{name}: a partition's checkpoint refuses the settings: {c.refused}")
            if now - c.last_poll > limit:
                reasons.append(f"{name}: no poll for {now - c.last_poll:.0f} s")
            waiting = self.waiting_since[name]
            if waiting is not None and now - max(waiting, c.last_progress) > limit:
                reasons.append(
                    f"{name}: {self.lag[name]} records waiting, no batch processed for "
                    f"{now - max(waiting, c.last_progress):.0f} s"
                )
            failing = c.failing_since
            if failing is not None and now - failing > failing_limit:
                reasons.append(
                    f"{name}: batches failing for {now - failing:.0f} s with nothing checkpointed "
                    f"({c.failures} failures so far, last {c.last_error})"
                )
            if now - self.timer_ok[name] > limit:
                reasons.append(f"{name}: timer step failing for {now - self.timer_ok[name]:.0f} s")
        if now - self.last_tick > limit:
            reasons.append(f"timer: no tick for {now - self.last_tick:.0f} s")
        return reasons

    def health(self) -> dict[str, Any]:
        """Liveness and progress, for ``/health`` and operators (``stalled`` with its reasons: see :meth:`stall_reasons`)."""
        now = time.monotonic()
        consumer = self.ingest_consumer
        since_poll = max(now - c.last_poll for c in self.consumers.values())
        reasons = self.stall_reasons(now)
        return {
            "status": "stalled" if reasons else "ok",
            "stalled": reasons,
            "uptime_s": round(time.time() - self.started_at, 1),
            "meters_known": len(self.registry_follower.registry),
            "partitions": sorted(f"{tp.topic}[{tp.partition}]" for c in self.consumers.values() for tp in c.assignment),
            "seconds_since_poll": round(since_poll, 2),
            "seconds_since_progress": round(now - consumer.last_progress, 2),
            "seconds_since_tick": round(now - self.last_tick, 2),
            "clock_frozen": self.clock_frozen,
            "totals": dict(self.ingest.totals),
            "segmentation": dict(self.segmentation.totals),
            "model_version": self.segmentation.models.model.version if self.segmentation.models.model else 0,
        }

    async def wait_idle(self, timeout_s: float = 60.0) -> None:
        """Wait until the consumers have caught up (tests, demo)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            lag = await self.ingest_consumer.lag()
            if lag and not any(lag.values()):
                return
            await asyncio.sleep(0.2)


def engine_class(settings: Settings) -> type[Engine]:
    """An :class:`Engine` subclass bound to ``settings`` (Faust instantiates services itself)."""
    return type("BoundEngine", (Engine,), {"settings": settings})

