"""PartitionIngest as the worker drives it: readings and heartbeats of one partition per poll.

The two topics are consumed side by side, not in lockstep: replaying a
backlog, one poll can bring hours of one topic and minutes of the other. These
tests check that the partition's health judgement does not depend on that pace.
"""

from __future__ import annotations

import orjson
import pytest

from processors.columns import RawMessage
from processors.ingest import IngestConfig, PartitionIngest
from tests.processors.test_ingest_support import T0, envelope_payloads, iso, make_registry, make_rows

METERS = 20
HOURS = 8


def _heartbeats(hours: range) -> list[bytes]:
    return [
        orjson.dumps(
            {"meter_id": f"M{m:07d}", "customer_id": f"C{m:07d}", "ts": iso(T0 + 3600 * (h + 1)), "status": "ok"}
        )
        for h in hours
        for m in range(METERS)
    ]


def _raw(payloads: list[bytes], topic: str) -> list[RawMessage]:
    return [RawMessage(v, topic, 0, i) for i, v in enumerate(payloads)]


def _silent(outs: list[object]) -> list[tuple[str, str]]:
    return [(a.meter_id, a.status) for out in outs for a in out.alerts if a.kind == "silent"]  # type: ignore[attr-defined]


@pytest.mark.parametrize("ahead", ["readings", "heartbeats"])
def test_one_topic_running_hours_ahead_makes_no_meter_silent(ahead: str) -> None:
    """Eight hours of one topic arrive in the first poll, the other an hour per poll (or, readings, from the second)."""
    registry = make_registry(METERS)
    readings = envelope_payloads(make_rows(METERS, 4 * HOURS), 4 * METERS)  # one envelope per hour
    heartbeats = _heartbeats(range(HOURS))
    ingest = PartitionIngest(registry, IngestConfig())
    wall = 1_000.0
    outs = []
    for h in range(HOURS + 1):
        if ahead == "readings":
            batch = (readings if h == 0 else [], heartbeats[h * METERS : (h + 1) * METERS] if h < HOURS else [])
        else:
            # the first poll: no readings, and it ends half-way through the last hour's heartbeats
            cut = len(heartbeats) - METERS // 2
            batch = (
                readings[h - 1 : h] if h else [],
                heartbeats[:cut] if h == 0 else heartbeats[cut:] if h == 1 else [],
            )
        outs.append(ingest.process((_raw(batch[0], "meter.readings"), _raw(batch[1], "meter.heartbeats")), wall))
        outs.append(ingest.on_timer(wall, caught_up=False))
        wall += 0.1
    assert sum(out.accepted_readings for out in outs) == METERS * 4 * HOURS
    assert sum(out.accepted_heartbeats for out in outs) == METERS * HOURS
    assert _silent(outs) == []


def test_a_meter_that_stops_is_still_found_silent() -> None:
    """The slower clock delays nothing when both topics keep pace: a quiet meter is raised once."""
    registry = make_registry(METERS)
    quiet_from = T0 + 7200
    rows = make_rows(METERS, 4 * HOURS)
    ingest = PartitionIngest(registry, IngestConfig())
    outs = []
    for h in range(HOURS):
        hour = [
            r for r in rows
            if T0 + 3600 * h <= r["interval_start"] < T0 + 3600 * (h + 1)
            and not (r["meter_id"] == "M0000003" and r["interval_start"] >= quiet_from)
        ]  # fmt: skip
        beats = [b for b in _heartbeats(range(h, h + 1)) if b"M0000003" not in b or T0 + 3600 * (h + 1) < quiet_from]
        batch = (
            _raw(envelope_payloads(hour, len(hour), prefix=f"h{h}-"), "meter.readings"),
            _raw(beats, "meter.heartbeats"),
        )
        outs.append(ingest.process(batch, 1_000.0))
    assert _silent(outs) == [("M0000003", "raised")]


def test_a_fleet_without_heartbeats_is_judged_by_its_readings() -> None:
    registry = make_registry(METERS)
    rows = [
        r
        for r in make_rows(METERS, 4 * HOURS)
        if not (r["meter_id"] == "M0000005" and r["interval_start"] >= T0 + 3600)
    ]
    ingest = PartitionIngest(registry, IngestConfig())
    outs = [ingest.process((_raw(envelope_payloads(rows, 50), "meter.readings"), []), 1_000.0)]
    # while a topic has delivered nothing, only a caught-up consumer may judge without it
    assert _silent(outs) == [] and ingest.silence_now(1_000.0, running=False) is None
    outs.append(ingest.on_timer(1_000.0, caught_up=True))
    assert ingest.silence_now(1_000.0, caught_up=True) == ingest.reading_clock.now(1_000.0)
    assert _silent(outs) == [("M0000005", "raised")]


def test_a_large_poll_in_pieces_gives_what_it_gives_whole() -> None:
    """``chunk_bytes`` splits a poll for speed; state and outputs are those of the whole poll at once."""
    registry = make_registry(METERS)
    rows = make_rows(METERS, 4 * HOURS)
    rows[20 * METERS + 3]["kwh_import"] = 99.0  # a spike, so alerts are compared too
    readings = _raw([*envelope_payloads(rows, 50), b"{broken"], "meter.readings")
    heartbeats = _raw(_heartbeats(range(HOURS)), "meter.heartbeats")
    whole = PartitionIngest(registry, IngestConfig())
    pieces = PartitionIngest(registry, IngestConfig(chunk_bytes=4096))
    a, b = whole.process((readings, heartbeats), 1_000.0), pieces.process((readings, heartbeats), 1_000.0)
    assert (a.messages, a.accepted, a.duplicates, len(a.rejects)) == (
        b.messages,
        b.accepted,
        b.duplicates,
        len(b.rejects),
    )
    assert [(x.meter_id, x.kind, x.status, x.at) for x in a.alerts] == [
        (x.meter_id, x.kind, x.status, x.at) for x in b.alerts
    ]
    assert any(x.kind == "spike" for x in a.alerts)

    def windows(out: object) -> list[tuple[str, int, int, float]]:
        return sorted(
            (k, c.size_s, int(s), float(v))
            for c in out.closed  # type: ignore[attr-defined]
            for k, s, v in zip(c.keys, c.start, c.kwh_in, strict=True)
        )

    assert windows(a) == windows(b) and windows(a)
    snap_a, snap_b = whole.snapshot(), pieces.snapshot()
    snap_a["config"] = snap_b["config"] = None
    assert snap_a == snap_b


def test_the_topic_ahead_waits_for_the_other_and_a_gap_is_still_found() -> None:
    """Heartbeats eight hours ahead while readings are pending: held back, then released in step.

    M0000003 is silent (no reading, no heartbeat) from 02:00 to 05:00. Read at
    their own pace, its 05:00 heartbeat would be seen before the readings' clock
    passes 02:45 and hide the gap; held back until the readings catch up, the
    gap is raised once and cleared once.
    """
    registry = make_registry(METERS)
    gap = range(T0 + 7200, T0 + 5 * 3600)
    rows = [r for r in make_rows(METERS, 4 * HOURS) if not (r["meter_id"] == "M0000003" and r["interval_start"] in gap)]
    beats = [
        b
        for b in _heartbeats(range(HOURS))
        if not (b"M0000003" in b and orjson.loads(b)["ts"] in {iso(t) for t in gap})
    ]
    readings = _raw(envelope_payloads(rows, 4 * METERS - 4), "meter.readings")
    heartbeats = _raw(beats, "meter.heartbeats")
    ingest = PartitionIngest(registry, IngestConfig())
    outs = [ingest.process((readings[:1], heartbeats), 1_000.0, pending={"readings"})]
    assert set(ingest.held()) == {"meter.heartbeats"} and ingest.held()["meter.heartbeats"] > 0
    for k in range(1, len(readings)):
        outs.append(
            ingest.process((readings[k : k + 1], []), 1_000.0, pending={"readings"} if k + 1 < len(readings) else set())
        )
    assert ingest.held() == {}
    assert sum(o.messages for o in outs) == len(readings) + len(heartbeats)
    assert sum(o.accepted_heartbeats for o in outs) == len(heartbeats)
    assert _silent(outs) == [("M0000003", "raised"), ("M0000003", "cleared")]


def test_held_messages_are_released_by_the_timer_once_the_other_topic_is_read() -> None:
    registry = make_registry(METERS)
    readings = _raw(envelope_payloads(make_rows(METERS, 8), 4 * METERS), "meter.readings")
    ingest = PartitionIngest(registry, IngestConfig())
    out = ingest.process((readings, _raw(_heartbeats(range(1)), "meter.heartbeats")), 1_000.0, pending={"heartbeats"})
    assert ingest.held() == {"meter.readings": 1} and out.accepted_readings == 4 * METERS
    late = ingest.on_timer(1_000.0, caught_up=True)
    assert ingest.held() == {} and late.accepted_readings == 4 * METERS and late.messages == 1


def test_each_reading_is_judged_once_whatever_the_heartbeats_in_its_poll() -> None:
    """A poll whose readings share one slice while its heartbeats span two: the readings count once.

    (They were fed to the health rules once per heartbeat slice, so a finding
    cleared after fewer clean readings than configured, depending on the cut.)
    """
    registry = make_registry(METERS)
    rows = make_rows(METERS, 4 * HOURS)
    for r in rows:
        if r["meter_id"] == "M0000003" and T0 + 3 * 3600 <= r["interval_start"] < T0 + 4 * 3600 + 1800:
            r["voltage"] = 290.0

    def run(mixed: bool) -> list[tuple[str, str, str, int]]:
        ingest = PartitionIngest(registry, IngestConfig())
        alerts = []
        for k in range(4 * HOURS):
            interval = [r for r in rows if r["interval_start"] == T0 + 900 * k]
            readings = _raw(envelope_payloads(interval, len(interval), prefix=f"i{k}-"), "meter.readings")
            # the heartbeats of the hour before and of this hour: two slices
            hb = _raw(_heartbeats(range(max(k // 4 - 1, 0), k // 4 + 1)) if k % 4 == 3 else [], "meter.heartbeats")
            if mixed:
                outs = [ingest.process((readings, hb), 1_000.0)]
            else:
                outs = [ingest.process((readings, []), 1_000.0), ingest.process(([], hb), 1_000.0)]
            alerts += [(a.meter_id, a.kind, a.status, a.at) for out in outs for a in out.alerts if a.kind != "silent"]
        return alerts

    clean = run(mixed=False)
    assert [(m, k, s) for m, k, s, _ in clean] == [
        ("M0000003", "voltage", "raised"),
        ("M0000003", "voltage", "cleared"),
    ]
    assert run(mixed=True) == clean
