"""Example downstream consumer of ``segment.changes``: rebuild every segment membership from the topic alone.

Each record is one customer entering or leaving one segment (see
``contracts/schemas/segment.changes.json``)::

    {"change_id": "C00042:rfm:champions:entered:loyal>champions:2026-01-05T10:00:00Z#17", "customer_id": "C00042",
     "family": "rfm", "segment_id": "champions", "segment_name": "Champions", "action": "entered",
     "from_segment": "loyal", "to_segment": "champions", "ts": "...", "reason": "score_change", ...}

Records are keyed by customer id, so one customer's changes are in order on
one partition. Applying them per (family, segment_id) yields the memberships
the API serves at ``GET /segments/{family}:{segment_id}/members``:

* ``rule`` family (a customer may be in many rule segments): ``entered`` adds,
  ``exited`` removes;
* ``rfm`` and ``behaviour`` (one segment per customer and family): ``entered``
  *replaces* the customer's current segment in that family; ``exited`` removes
  only if it is the current one.

Delivery is at-least-once: after a worker crash the replayed span is sent
again, possibly re-scored against a different population, so an exit may name
a segment the customer had already left; the replace rule above absorbs it.

Run it (reads from the beginning, prints the sizes, keeps following with ``--follow``)::

    .venv/bin/python examples/segment_changes_consumer.py --bootstrap 127.0.0.1:9092
    .venv/bin/python examples/segment_changes_consumer.py --topic segment.changes --follow --group my-service

Run from this project, it connects like every meterseg client: bootstrap
(``METERSEG_KAFKA_BOOTSTRAP``) and SASL / TLS (``METERSEG_KAFKA_SECURITY__*``)
from :class:`meterseg.settings.Settings`, turned into aiokafka options by
:func:`stream.clients.security.kafka_client_options`. A service without
meterseg calls :func:`rebuild` with its own aiokafka options, e.g.
``security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512", sasl_plain_username=...``.

The same with kcat and jq (no Python), printing the final sizes::

    kcat -C -b 127.0.0.1:9092 -t segment.changes -o beginning -e -q \\
      | jq -rs 'reduce .[] as $c ({}; ($c.family + ":" + $c.segment_id) as $k
                 | if $c.family != "rule" and $c.action == "entered"
                   then (.cur[$c.family + "/" + $c.customer_id]) as $old
                        | (if $old then del(.m[$c.family + ":" + $old][$c.customer_id]) else . end)
                        | .cur[$c.family + "/" + $c.customer_id] = $c.segment_id
                   else . end
                 | if $c.action == "entered" then .m[$k][$c.customer_id] = true
                   else del(.m[$k][$c.customer_id]) end)
               | .m | to_entries[] | "\\(.key)\\t\\(.value | length)"'
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections import defaultdict
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition


class Memberships:
    """(family, segment_id) → member customer ids, from change records."""

    SINGLE = frozenset({"rfm", "behaviour"})

    def __init__(self) -> None:
        self.members: dict[tuple[str, str], set[str]] = defaultdict(set)
        self.current: dict[tuple[str, str], str] = {}  # (family, customer) -> segment, single families
        self.applied = 0

    def apply(self, change: dict[str, object]) -> None:
        family, segment = str(change["family"]), str(change["segment_id"])
        customer = str(change["customer_id"])
        if family in self.SINGLE:
            current = self.current.get((family, customer))
            if change["action"] == "entered":
                if current is not None and current != segment:
                    self.members[(family, current)].discard(customer)
                self.current[(family, customer)] = segment
                self.members[(family, segment)].add(customer)
            else:
                self.members[(family, segment)].discard(customer)
                if current == segment:
                    del self.current[(family, customer)]
        elif change["action"] == "entered":
            self.members[(family, segment)].add(customer)
        else:
            self.members[(family, segment)].discard(customer)
        self.applied += 1

    def sizes(self) -> dict[str, int]:
        return {f"{f}:{s}": len(m) for (f, s), m in sorted(self.members.items()) if m}


async def rebuild(
    bootstrap: str, topic: str, follow: bool = False, group: str | None = None, **client_options: Any
) -> Memberships:
    """Read ``topic`` from the beginning (to its current end unless ``follow``) and rebuild memberships.

    ``client_options``: aiokafka keyword arguments for authentication and encryption (SASL, TLS).
    """
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=group is not None,
        auto_offset_reset="earliest",
        value_deserializer=lambda v: json.loads(v) if v else None,
        **client_options,
    )
    await consumer.start()
    state = Memberships()
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        if not partitions:
            await consumer._client.force_metadata_update()
            partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        if group is None:
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
        else:
            consumer.subscribe([topic])
        ends = await consumer.end_offsets(tps) if tps else {}
        while True:
            batch = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            for records in batch.values():
                for record in records:
                    if record.value is not None:
                        state.apply(record.value)
            if follow:
                if batch:
                    print(f"{state.applied} changes applied; {len(state.sizes())} non-empty segments", flush=True)
                continue
            assigned = consumer.assignment()
            positions = {tp: await consumer.position(tp) for tp in assigned}
            if assigned and all(pos >= ends.get(tp, 0) for tp, pos in positions.items()):
                break
    finally:
        await consumer.stop()
    return state


def main() -> None:
    from meterseg.settings import Settings
    from stream.clients.security import kafka_client_options

    settings = Settings()  # METERSEG_KAFKA_BOOTSTRAP, METERSEG_KAFKA_SECURITY__*, METERSEG_TOPICS__SEGMENT_CHANGES
    parser = argparse.ArgumentParser(description="rebuild segment memberships from segment.changes")
    parser.add_argument("--bootstrap", default=settings.kafka_bootstrap)
    parser.add_argument("--topic", default=settings.topics.segment_changes)
    parser.add_argument("--follow", action="store_true", help="keep consuming after the end")
    parser.add_argument("--group", default=None, help="consumer group (commits offsets); default: none, from the start")
    args = parser.parse_args()
    options = kafka_client_options(settings)
    state = asyncio.run(rebuild(args.bootstrap, args.topic, args.follow, args.group, **options))
    for segment, size in state.sizes().items():
        print(f"{segment}\t{size}")
    print(f"{state.applied} changes applied")


if __name__ == "__main__":
    main()
