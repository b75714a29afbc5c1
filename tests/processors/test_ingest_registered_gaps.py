"""Registered meters that never report: their windows are emitted as gaps by the partition that owns them."""

from __future__ import annotations

from datetime import UTC, datetime

from processors.columns import RawMessage
from processors.ingest import IngestConfig, PartitionIngest
from processors.windows import WindowConfig
from stream.schemas import MeterInfo
from tests.processors.test_ingest_support import T0, envelope_payloads, make_registry, make_rows

HOURS = 6
CONFIG = IngestConfig(windows=WindowConfig(meter_sizes_s=(900, 3600), close_after_s=900), profiles=False)


def _owned(meter_id: str) -> bool:
    """This partition owns the even meters (a stand-in partitioner: the wiring passes Kafka's)."""
    return int(meter_id[1:]) % 2 == 0


def _windows(outs: list[object], meter_id: str) -> list[tuple[int, int, int, int]]:
    """(size, start, readings, expected) of a meter's revision-0 windows."""
    return sorted(
        (c.size_s, int(s), int(n), int(e))
        for out in outs
        for c in out.closed  # type: ignore[attr-defined]
        if c.kind == "meter"
        for k, s, n, e, r in zip(c.keys, c.start, c.count, c.expected, c.revisions, strict=True)
        if k == meter_id and r == 0
    )


def test_a_registered_meter_that_never_reports_gets_a_gap_window_for_each_closed_window() -> None:
    registry = make_registry(6)
    # M4 (owned) and M5 (another partition's) send nothing; M0 and M2 report for HOURS
    rows = [r for r in make_rows(6, 4 * HOURS) if r["meter_id"] in {"M0000000", "M0000002"}]
    msgs = [RawMessage(v, "meter.readings", 0, i) for i, v in enumerate(envelope_payloads(rows, 8))]
    ingest = PartitionIngest(registry, CONFIG, owns=_owned)
    outs = [ingest.process((msgs, [])), ingest.on_timer(wall=0.0, caught_up=False)]
    frontier = ingest.windows.frontier
    expected = sorted(  # from the partition's first reading on
        [(900, s, 0, 1) for s in range(T0, frontier - 900 + 1, 900)]
        + [(3600, s, 0, 4) for s in range(T0, frontier - 3600 + 1, 3600)]
    )
    assert _windows(outs, "M0000004") == expected
    assert len(expected) > 4 * (HOURS - 1)
    assert _windows(outs, "M0000005") == []  # owned by another partition: not this one's to emit
    # a reporting meter of the partition: the same grid with its readings, no gap from its first reading on
    assert [w[:2] for w in _windows(outs, "M0000000")] == [w[:2] for w in expected]


def test_a_meter_registered_later_is_expected_from_then_and_its_late_first_upload_corrects_the_gaps() -> None:
    registry = make_registry(2)
    rows = make_rows(1, 4 * HOURS)
    msgs = [RawMessage(v, "meter.readings", 0, i) for i, v in enumerate(envelope_payloads(rows, 4))]
    ingest = PartitionIngest(registry, CONFIG, owns=lambda m: True)
    half = len(msgs) // 2
    first = ingest.process((msgs[:half], []))
    registry.upsert(MeterInfo(meter_id="M0000009", customer_id="C9", region="North", tariff="prepaid",
                              installed_on=datetime(2020, 1, 1, tzinfo=UTC), interval_minutes=60))  # fmt: skip
    since = ingest.windows.frontier
    later = ingest.process((msgs[half:], []))
    hours = _windows([later], "M0000009")
    assert hours and [w for w in hours if w[0] == 3600] == [
        (3600, s, 0, 1) for s in range(since // 3600 * 3600, ingest.windows.frontier - 3600 + 1, 3600)
    ]
    assert _windows([first], "M0000009") == []
    # its 15-minute windows are expected at its (hourly) interval starts only
    assert {w[1] % 3600 for w in hours if w[0] == 900} == {0}
    # M1 is registered and owned but silent from the start: gap windows from the partition's first reading on
    assert _windows([first, later], "M0000001")[0][1] == T0
    # the meter's head end uploads an hour late: its gap windows are corrected (revision 1)
    hour = max(w[1] for w in hours if w[0] == 3600)
    late = [{**rows[0], "meter_id": "M0000009", "customer_id": "C9", "interval_start": hour, "interval_minutes": 60}]
    out = ingest.process(([RawMessage(v, "meter.readings", 0, 99) for v in envelope_payloads(late, 1, prefix="late")], []))
    assert not out.rejects, [r.reason for r in out.rejects]
    revised = [(c.size_s, int(s), int(n), int(r)) for c in out.closed if c.kind == "meter"
               for k, s, n, r in zip(c.keys, c.start, c.count, c.revisions, strict=True) if k == "M0000009"]  # fmt: skip
    assert (3600, hour, 1, 1) in revised


def test_the_start_does_not_depend_on_the_poll_that_brings_a_meters_first_reading() -> None:
    """A meter first reporting an hour in: gap windows from the partition's start, however the polls are cut."""
    registry = make_registry(2)
    rows = [r for r in make_rows(2, 4 * HOURS) if r["meter_id"] == "M0000000" or r["interval_start"] >= T0 + 3600]
    msgs = [RawMessage(v, "meter.readings", 0, i) for i, v in enumerate(envelope_payloads(rows, 2))]
    results = []
    for cut in (1, 2, 8, len(msgs)):
        ingest = PartitionIngest(registry, CONFIG, owns=lambda m: True)
        outs = [ingest.process((msgs[i : i + cut], [])) for i in range(0, len(msgs), cut)] + [ingest.flush()]
        results.append(_windows(outs, "M0000001"))
    assert results[0][0] == (900, T0, 0, 1)
    assert all(r == results[0] for r in results)


def test_without_ownership_a_silent_meter_stays_unknown() -> None:
    registry = make_registry(2)
    rows = [r for r in make_rows(2, 4 * HOURS) if r["meter_id"] == "M0000000"]
    msgs = [RawMessage(v, "meter.readings", 0, i) for i, v in enumerate(envelope_payloads(rows, 8))]
    ingest = PartitionIngest(registry, CONFIG)
    assert _windows([ingest.process((msgs, []))], "M0000001") == []


def test_a_restored_partition_keeps_expecting_its_silent_meters() -> None:
    registry = make_registry(4)
    rows = [r for r in make_rows(4, 4 * HOURS) if r["meter_id"] == "M0000000"]
    msgs = [RawMessage(v, "meter.readings", 0, i) for i, v in enumerate(envelope_payloads(rows, 4))]
    whole = PartitionIngest(registry, CONFIG, owns=_owned)
    a = whole.process((msgs, []))
    parted = PartitionIngest(registry, CONFIG, owns=_owned)
    b = parted.process((msgs[: len(msgs) // 2], []))
    again = PartitionIngest.restore(parted.snapshot(), registry, owns=_owned)
    c = again.process((msgs[len(msgs) // 2 :], []))
    assert _windows([a], "M0000002") == _windows([b, c], "M0000002") != []
