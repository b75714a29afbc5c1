"""The sticky co-partitioned assignor: valid, balanced, moving only what must move; on a real broker too."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from hypothesis import given, settings
from hypothesis import strategies as st

from stream.clients.assignor import plan, sticky_task_assignor


def check_valid(tasks: int, result: dict[str, list[int]]) -> None:
    every = sorted(t for ts in result.values() for t in ts)
    assert every == list(range(tasks)), result
    sizes = [len(ts) for ts in result.values()]
    assert max(sizes) - min(sizes) <= 1, result


@given(tasks=st.integers(0, 40), members=st.integers(1, 8), data=st.data())
@settings(max_examples=300, deadline=None)
def test_any_claims_give_a_valid_balanced_assignment(tasks: int, members: int, data: st.DataObject) -> None:
    claims = {f"m{i}": data.draw(st.lists(st.integers(-2, tasks + 2), max_size=tasks + 3)) for i in range(members)}
    check_valid(tasks, plan(tasks, claims))


@given(tasks=st.integers(1, 40), members=st.integers(1, 7), seed=st.integers(0, 2**16))
@settings(max_examples=300, deadline=None)
def test_a_member_joining_or_leaving_moves_only_what_must_move(tasks: int, members: int, seed: int) -> None:
    import random

    rng = random.Random(seed)
    names = [f"w{rng.randrange(10**6):06d}-{i}" for i in range(members)]  # random ids: their order means nothing
    before = plan(tasks, {m: [] for m in names})
    joined = plan(tasks, {**before, "new": []})
    check_valid(tasks, joined)
    moved = sum(1 for m in names for t in before[m] if t not in joined[m])
    assert moved == len(joined["new"])  # only the newcomer's share changed owner
    leaver = rng.choice([*names, "new"])
    left = plan(tasks, {m: ts for m, ts in joined.items() if m != leaver})
    check_valid(tasks, left)
    assert all(set(joined[m]) <= set(left[m]) for m in left)  # everyone kept everything; the leaver's tasks moved


def test_contested_and_unreadable_claims() -> None:
    assert plan(3, {"a": [0, 1, 2], "b": [0]}) == {"a": [1, 2], "b": [0]}  # fewer claims wins a contested task
    cls = sticky_task_assignor()
    assert cls.metadata(["t"]).user_data == b'{"tasks": []}'
    from stream.clients.assignor import _claimed

    assert _claimed(b"not json") == [] and _claimed(b"") == [] and _claimed(b'{"tasks": [3, 1]}') == [3, 1]
    assert sticky_task_assignor() is not cls  # one class (one member's state) per consumer


@pytest.mark.integration
def test_on_a_broker_a_joining_member_takes_tasks_and_nobody_else_moves(kafka_bootstrap: str) -> None:
    """Three consumers join one after the other over two co-partitioned topics of 6 partitions."""

    async def scenario() -> None:
        unique = uuid.uuid4().hex[:8]
        topics = [f"assign-a-{unique}", f"assign-b-{unique}"]
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        await admin.start()
        await admin.create_topics([NewTopic(t, num_partitions=6, replication_factor=1) for t in topics])
        consumers: list[AIOKafkaConsumer] = []

        async def owned() -> list[dict[str, set[int]]]:
            """Each consumer's partitions per topic once the group is stable (every partition once)."""
            for _ in range(300):
                await asyncio.gather(*(c.getmany(timeout_ms=100) for c in consumers))
                got = [{t: {tp.partition for tp in c.assignment() if tp.topic == t} for t in topics} for c in consumers]
                per_topic = [sorted(p for g in got for p in g[t]) for t in topics]
                if all(ps == list(range(6)) for ps in per_topic):
                    return got
            raise AssertionError("the group did not settle")

        try:
            history: list[list[dict[str, set[int]]]] = []
            for _ in range(3):
                c = AIOKafkaConsumer(*topics, bootstrap_servers=kafka_bootstrap, group_id=f"assign-{unique}",
                                     partition_assignment_strategy=(sticky_task_assignor(), RangePartitionAssignor),
                                     session_timeout_ms=10_000, heartbeat_interval_ms=500)  # fmt: skip
                await c.start()
                consumers.append(c)
                history.append(await owned())
            for state in history:
                for mine in state:
                    assert mine[topics[0]] == mine[topics[1]]  # co-partitioned: the same tasks of both topics
            first, second, third = history
            assert sorted(len(m[topics[0]]) for m in third) == [2, 2, 2]
            assert sorted(len(m[topics[0]]) for m in second) == [3, 3] and len(first[0][topics[0]]) == 6
            for i in range(2):
                assert third[i][topics[0]] <= second[i][topics[0]]  # the first two only gave tasks away
        finally:
            await asyncio.gather(*(c.stop() for c in consumers))
            await admin.delete_topics(topics)
            await admin.close()

    asyncio.run(scenario())
