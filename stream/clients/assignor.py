"""Sticky, co-partitioned partition assignment: a rebalance moves only the partitions it must.

A worker's pipeline consumes several co-partitioned topics (a meter's readings and heartbeats are
keyed by meter id, so partition ``p`` of both belongs to one *task* ``p``), and its state is per
task. Kafka's range assignor keeps tasks together, but it lays the members out in member-id order,
and member ids are random: when a third worker joins a group of two, most tasks change owner and
each moved task is checkpointed, handed over and restored (``bench/rebalance.py`` measured 3 of 4
tasks moving). Kafka Streams solves this with a task assignor that remembers the previous owners;
this one does the same for our consumers:

* a **task** is a partition number; a member assigned task ``t`` gets partition ``t`` of every topic
  it subscribes that has one, so co-partitioned topics stay together;
* every member's join metadata carries the tasks it owns (:attr:`StickyTaskAssignor.owned`, set on
  each assignment), and :func:`plan` keeps each member's tasks up to its fair share, then hands out
  only the tasks that are free: balanced (owners differ by at most one task), each task once.

A member claiming a task another member also claims (a member the group expelled and that has not
yet noticed) loses it to the member with fewer claims, then to the lower member id: the assignment
stays valid, only its stickiness suffers. Correctness of the state never depends on stickiness: a
task kept in memory is reused only if its checkpoint is still the one its worker wrote
(``stream/pipelines/base.py``).

aiokafka calls assignors as classes, so the state of a member lives on the class:
:func:`sticky_task_assignor` makes a class per consumer. The range assignor stays listed after it,
so a group of old (range-only) and new workers still agrees on a protocol during a rolling upgrade.

Examples:
    >>> plan(4, {"a": [0, 1], "b": [2, 3], "c": []})
    {'a': [0, 1], 'b': [2], 'c': [3]}
    >>> plan(4, {"a": [0, 1], "b": [2]})     # c left: only its task moves
    {'a': [0, 1], 'b': [2, 3]}
    >>> plan(4, {"x": [], "y": []})           # a new group: in task order
    {'x': [0, 1], 'y': [2, 3]}
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar

from aiokafka.cluster import ClusterMetadata
from aiokafka.coordinator.assignors.abstract import AbstractPartitionAssignor
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment, ConsumerProtocolMemberMetadata

log = logging.getLogger(__name__)


def plan(tasks: int, claims: Mapping[str, Sequence[int]]) -> dict[str, list[int]]:
    """Tasks ``0..tasks-1`` over the members of ``claims`` (member -> tasks it owns now), moving as few as possible.

    Balanced: the ``tasks % n`` members that keep the most get ``tasks // n + 1`` tasks, the others
    ``tasks // n``. Each member keeps its claimed tasks up to that share; the rest go, lowest task
    first, to the members under their share (in member-id order).
    """
    members = sorted(claims)
    if not members:
        return {}
    owner: dict[int, str] = {}
    for m in sorted(members, key=lambda m: (len(claims[m]), m)):  # contested: fewer claims, then lower id, wins
        for t in claims[m]:
            if 0 <= t < tasks and t not in owner:
                owner[t] = m
    held: dict[str, list[int]] = {m: sorted(t for t, o in owner.items() if o == m) for m in members}
    base, extra = divmod(tasks, len(members))
    by_claims = sorted(members, key=lambda m: (-len(held[m]), m))
    share = {m: base + (1 if i < extra else 0) for i, m in enumerate(by_claims)}
    out = {m: held[m][: share[m]] for m in members}
    kept = {t for ts in out.values() for t in ts}
    free = iter(t for t in range(tasks) if t not in kept)
    for m in members:
        while len(out[m]) < share[m]:
            out[m].append(next(free))
        out[m].sort()
    return out


class StickyTaskAssignor(AbstractPartitionAssignor):
    """Co-partitioned sticky assignment (see the module docstring); use :func:`sticky_task_assignor`."""

    name = "meterseg-sticky-tasks"
    version = 0
    owned: ClassVar[tuple[int, ...]] = ()

    @classmethod
    def assign(
        cls, cluster: ClusterMetadata, members: Mapping[str, ConsumerProtocolMemberMetadata]
    ) -> dict[str, ConsumerProtocolMemberAssignment]:
        counts: dict[str, int] = {}
        for meta in members.values():
            for topic in meta.subscription:
                parts = cluster.partitions_for_topic(topic)
                if parts is None:
                    log.warning("no partition metadata for topic %s", topic)
                    continue
                counts[topic] = len(parts)
        tasks = max(counts.values(), default=0)
        result = plan(tasks, {m: _claimed(meta.user_data) for m, meta in members.items()})
        out: dict[str, ConsumerProtocolMemberAssignment] = {}
        for m, meta in members.items():
            mine = [(topic, [t for t in result[m] if t < counts[topic]]) for topic in sorted(meta.subscription)
                    if topic in counts]  # fmt: skip
            out[m] = ConsumerProtocolMemberAssignment(cls.version, mine, b"")
        return out

    @classmethod
    def metadata(cls, topics: Iterable[str]) -> ConsumerProtocolMemberMetadata:
        user_data = json.dumps({"tasks": list(cls.owned)}).encode()
        return ConsumerProtocolMemberMetadata(cls.version, sorted(topics), user_data)

    @classmethod
    def on_assignment(cls, assignment: ConsumerProtocolMemberAssignment) -> None:
        cls.owned = tuple(sorted({tp.partition for tp in assignment.partitions()}))


def _claimed(user_data: bytes | None) -> list[int]:
    """The tasks a member says it owns; none if it sent nothing readable (an older worker, a fresh one)."""
    if not user_data:
        return []
    try:
        parsed: Any = json.loads(user_data)
        return [int(t) for t in parsed["tasks"]]
    except (ValueError, KeyError, TypeError):
        log.warning("unreadable sticky-assignment metadata from a group member: its tasks are reassigned")
        return []


def sticky_task_assignor() -> type[StickyTaskAssignor]:
    """A fresh assignor class for one consumer (aiokafka keeps an assignor's state on its class)."""
    return type("StickyTaskAssignor", (StickyTaskAssignor,), {"owned": ()})
