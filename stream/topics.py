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


async def ensure_topics(settings: Settings, timeout_s: float = 30.0) -> list[str]:
    """Create missing topics; return the names created. Existing topics are left as they are."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.kafka_bootstrap,
        request_timeout_ms=int(timeout_s * 1000),
        **kafka_client_options(settings),
    )
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [
            NewTopic(
                spec.name,
                num_partitions=spec.partitions or settings.partitions,
                replication_factor=1,
                topic_configs={"cleanup.policy": "compact"} if spec.compacted else {},
            )
            for spec in topic_specs(settings)
            if spec.name not in existing
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
