"""Topic layout: names from settings, partition counts, retention, and their creation.

Meter topics are keyed by meter id and customer topics by customer id, all
with ``Settings.partitions`` partitions so that readings and heartbeats of a
meter land on the same partition number (co-partitioning) and one worker
owns all of a meter's state. The registry is compacted: the latest
registration of each meter is all a new worker needs to read.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from meterseg.settings import Settings
from stream.clients.security import kafka_client_options

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TopicSpec:
    name: str
    key: str
    payload: str
    compacted: bool = False
    partitions: int | None = None  # None: Settings.partitions
    note: str = ""  # what a consumer must know beyond the payload (the AsyncAPI channel's description)


def topic_specs(settings: Settings) -> list[TopicSpec]:
    """Every topic meterseg reads or writes, with its key and payload model."""
    t = settings.topics
    return [
        TopicSpec(t.readings, "meter id", "Reading, ReadingBatch or ReadingBlock"),
        TopicSpec(t.heartbeats, "meter id", "Heartbeat, HeartbeatBatch or HeartbeatBlock"),
        TopicSpec(t.purchases, "customer id", "Purchase"),
        TopicSpec(t.registry, "meter id", "MeterInfo", compacted=True),
        TopicSpec(t.alerts, "meter id", "MeterAlert"),
        TopicSpec(
            t.windows, "meter id (a batch: its first meter) or region", "ConsumptionWindow or WindowBatch",
            note="every expected window of a meter is emitted when it closes, gaps included (readings 0, "
            "completeness 0); a late reading within the allowed lateness (48 h by default, judged per meter) "
            "emits its windows again with the corrected totals and the next revision: keep the highest revision "
            "per (kind, key, window, window_start)",
        ),
        TopicSpec(t.segment_changes, "customer id", "SegmentChange"),
        TopicSpec(t.model_events, "model id", "ModelEvent", partitions=1),
        TopicSpec(t.maintenance, "customer id", "MaintenanceRequest"),
        TopicSpec(t.feedback, "customer id", "Feedback"),
        TopicSpec(t.bills, "customer id", "Bill"),
        TopicSpec(t.deadletter, "source key", "DeadLetter"),
        TopicSpec(t.profiles, "customer id", "DailyProfile"),
    ]


class TopicLayoutError(RuntimeError):
    """Existing topics whose partition counts would break co-partitioning: the worker must not start on them."""


def copartitioned_groups(settings: Settings) -> dict[str, tuple[str, ...]]:
    """Topics read together, partition by partition, by one pipeline (same key, same partition number).

    Each must have ``Settings.partitions`` partitions: the ingest pipeline joins a meter's readings and
    heartbeats in one partition's state and waits for that many partition frontiers before it emits a
    regional window; the segments pipeline joins a customer's purchases and daily profiles.
    """
    t = settings.topics
    return {"ingest": (t.readings, t.heartbeats), "segments": (t.purchases, t.profiles)}


def copartitioning_problems(settings: Settings, counts: dict[str, int]) -> list[str]:
    """What is wrong with existing topics' partition counts (``counts``: topic → partitions), or nothing.

    Examples:
        >>> s = Settings(partitions=4)
        >>> copartitioning_problems(s, {"meter.readings": 4, "meter.heartbeats": 4})
        []
        >>> copartitioning_problems(s, {"meter.readings": 4, "meter.heartbeats": 8})  # doctest: +ELLIPSIS
        ['ingest pipeline: meter.heartbeats has 8 partitions, meter.readings 4; ...']
    """
    problems = []
    for pipeline, topics in copartitioned_groups(settings).items():
        present = {t: counts[t] for t in topics if t in counts}
        wrong = {t: n for t, n in present.items() if n != settings.partitions}
        if not wrong:
            continue
        listed = ", ".join(f"{t} {'has ' if i == 0 else ''}{n}{' partitions' if i == 0 else ''}"
                           for i, (t, n) in enumerate(sorted(present.items(), key=lambda kv: kv[0] not in wrong)))  # fmt: skip
        problems.append(
            f"{pipeline} pipeline: {listed}; METERSEG_PARTITIONS={settings.partitions} and these topics are read "
            "partition by partition together, so each must have exactly that many"
        )
    return problems


async def partition_counts(admin: AIOKafkaAdminClient, topics: list[str], timeout_s: float = 10.0) -> dict[str, int]:
    """Partition count of each existing topic of ``topics`` (a topic created a moment ago may answer
    LEADER_NOT_AVAILABLE without its partitions for a while: asked again until it answers or ``timeout_s``)."""
    counts: dict[str, int] = {}
    deadline = asyncio.get_running_loop().time() + timeout_s
    pending = list(topics)
    while pending:
        for d in await admin.describe_topics(pending):
            if not d.get("error_code") and d["partitions"]:
                counts[d["topic"]] = len(d["partitions"])
        pending = [t for t in pending if t not in counts]
        if not pending or asyncio.get_running_loop().time() > deadline:
            break
        await asyncio.sleep(0.2)
    return counts


async def replication_plan(admin: AIOKafkaAdminClient, replication_factor: int, min_insync: int) -> tuple[int, int]:
    """(replication factor, min.insync.replicas) for new topics: the settings, capped at the brokers alive.

    Why cap rather than fail: the local stack and the tests run one broker; a production cluster has at
    least the default 3. A cap is logged as a warning that names the setting, so it is never silent.
    """
    cluster = await admin.describe_cluster()
    brokers = max(1, len(cluster.get("brokers") or []))
    rf = replication_factor
    if rf > brokers:
        log.warning(
            "METERSEG_TOPIC_REPLICATION_FACTOR=%d but the cluster has %d broker(s): new topics get replication "
            "factor %d (no copy survives a broker loss); set METERSEG_TOPIC_REPLICATION_FACTOR=%d to say so",
            rf, brokers, brokers, brokers,
        )  # fmt: skip
        rf = brokers
    isr = min(min_insync, rf)
    if isr < min_insync:
        log.warning("min.insync.replicas %d capped at the replication factor %d", min_insync, rf)
    return rf, isr


async def with_cluster_replication(settings: Settings, timeout_s: float = 30.0) -> Settings:
    """``settings`` with the replication factor and min.insync.replicas capped at the brokers alive (logged)."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.kafka_bootstrap,
        request_timeout_ms=int(timeout_s * 1000),
        **kafka_client_options(settings),
    )
    await admin.start()
    try:
        rf, isr = await replication_plan(admin, settings.topic_replication_factor, settings.topic_min_insync_replicas)
    finally:
        await admin.close()
    return settings.model_copy(update={"topic_replication_factor": rf, "topic_min_insync_replicas": isr})


async def ensure_topics(settings: Settings, timeout_s: float = 30.0) -> list[str]:
    """Create missing topics; return the names created.

    New topics get ``METERSEG_TOPIC_REPLICATION_FACTOR`` replicas and ``METERSEG_TOPIC_MIN_INSYNC_REPLICAS``
    (:func:`replication_plan`). Existing topics are left as they are, but their partition counts are checked
    first: :class:`TopicLayoutError` names every co-partitioned topic whose count breaks the layout.
    """
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.kafka_bootstrap,
        request_timeout_ms=int(timeout_s * 1000),
        **kafka_client_options(settings),
    )
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        grouped = [t for topics in copartitioned_groups(settings).values() for t in topics if t in existing]
        problems = copartitioning_problems(settings, await partition_counts(admin, grouped))
        if problems:
            raise TopicLayoutError(
                "existing topics break co-partitioning: " + "; ".join(problems) + ". Set METERSEG_PARTITIONS to "
                "their count, or recreate them (or add partitions with kafka-topics --alter --partitions N, "
                "which moves keys to other partitions: replay from a checkpoint-free state) so all have the same count"
            )
        missing = [spec for spec in topic_specs(settings) if spec.name not in existing]
        rf, isr = (1, 1)
        if missing:
            rf, isr = await replication_plan(admin, settings.topic_replication_factor, settings.topic_min_insync_replicas)
        wanted = [
            NewTopic(
                spec.name,
                num_partitions=spec.partitions or settings.partitions,
                replication_factor=rf,
                topic_configs={
                    "min.insync.replicas": str(isr),
                    **({"cleanup.policy": "compact"} if spec.compacted else {}),
                },
            )
            for spec in missing
        ]
        if wanted:
            # another worker may create them at the same moment
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(wanted)
            log.info("created topics: %s", ", ".join(t.name for t in wanted))
        # wait until metadata shows them, so the first produce does not race creation
        for _ in range(50):
            if {t.name for t in wanted} <= set(await admin.list_topics()):
                break
            await asyncio.sleep(0.1)
        return [t.name for t in wanted]
    finally:
        await admin.close()


async def delete_topics(settings: Settings, timeout_s: float = 30.0) -> list[str]:
    """Delete every meterseg topic of ``settings`` that exists (the demo's fresh start)."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.kafka_bootstrap,
        request_timeout_ms=int(timeout_s * 1000),
        **kafka_client_options(settings),
    )
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        doomed = [spec.name for spec in topic_specs(settings) if spec.name in existing]
        if doomed:
            await admin.delete_topics(doomed)
            for _ in range(100):  # deletion is asynchronous in the broker
                if not set(doomed) & set(await admin.list_topics()):
                    break
                await asyncio.sleep(0.1)
        return doomed
    finally:
        await admin.close()
