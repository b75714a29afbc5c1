"""The generic suite every :class:`~processors.base.StatefulProcessor` must pass.

For each registered :class:`ProcessorCase` (a factory plus a stream of sample
batches) it checks that

* the processor satisfies the protocol (``process``/``snapshot``/``restore``);
* every snapshot survives an orjson round-trip (JSON-serialisable, no NaN
  or numpy scalars sneaking in) and ``restore`` of it snapshots identically;
* restart safety: for every cut point, processing ``a``, snapshotting,
  restoring and processing ``b`` gives the same outputs (and final state) as
  processing ``a + b`` without interruption;
* determinism: two fresh processors give identical outputs.

To register a processor, append a ``ProcessorCase`` to :data:`CASES` (or to
``EXTRA_CASES`` from another test module imported here). ``step`` lets a
stream contain timer ticks or other calls besides ``process``; ``restore``
overrides ``type(p).restore`` when restoring needs extra arguments.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
import pytest
from test_ingest_support import T0, envelope_payloads, make_registry, make_rows, single_payloads

from processors.base import StatefulProcessor
from processors.columns import HeartbeatColumns, MeterRegistry, RawMessage, ReadingColumns
from processors.decode import HeartbeatDecoder, ReadingDecoder
from processors.dedupe import Deduplicator
from processors.health import HealthConfig, HealthMonitor
from processors.windows import ConsumptionWindows, MeterWindows, RegionalTotals, WindowConfig


def plain(obj: Any) -> Any:
    """Outputs as comparable plain data (dataclasses → dicts, arrays → lists, NaN → 'nan')."""
    if isinstance(obj, MeterRegistry):
        return "<registry>"
    if isinstance(obj, RawMessage):
        return list(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, np.ndarray):
        return plain(obj.tolist())
    if isinstance(obj, dict):
        return {k: plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [plain(v) for v in obj]
    if isinstance(obj, float) and math.isnan(obj):
        return "nan"
    if isinstance(obj, np.generic):
        return plain(obj.item())
    return obj


def _process(p: Any, batch: Any) -> Any:
    return p.process(batch)


@dataclass(frozen=True)
class ProcessorCase:
    """A processor factory and a sample stream to exercise it with."""

    name: str
    factory: Callable[[], Any]
    batches: Callable[[], Sequence[Any]]
    step: Callable[[Any, Any], Any] = _process
    restore: Callable[[Any, Any], Any] | None = None
    """``restore(original_processor, state)``; default ``type(p).restore(state)``."""


# -- sample streams ---------------------------------------------------------------
REG = make_registry(12)


def _reading_columns() -> list[ReadingColumns]:
    """Decoded readings with duplicates, disorder, a backfill and a late straggler."""
    rows = make_rows(12, 30, seed=3)
    for k in (5, 6, 7, 8):
        rows[k * 12 + 2]["kwh_import"] = 0.77  # stuck meter M2
        rows[k * 12 + 2]["register_kwh"] = rows[4 * 12 + 2]["register_kwh"]
    rows[20 * 12 + 3]["kwh_import"] = 30.0  # spike M3
    rows[10 * 12 + 4]["voltage"] = 300.0
    rows[12 * 12 + 1]["kwh_import"] = -1.0
    dec = ReadingDecoder(REG)
    env = envelope_payloads(rows[: 12 * 10], 25)
    singles = single_payloads(rows[12 * 10 :])
    out = [dec.process(env[:2]).readings, dec.process(env[1:4]).readings]  # an envelope redelivered
    out.append(dec.process(env[4:]).readings)
    out += [dec.process(singles[k : k + 40]).readings for k in range(0, len(singles), 40)]
    out.append(dec.process(singles[:5]).readings)  # late duplicates
    return out


def _heartbeats() -> list[HeartbeatColumns]:
    hb = [
        {"meter_id": f"M{m:07d}", "ts": T0 + 900 * k + 60, "status": "fault" if m == 9 else "degraded" if m == 10 and k > 2 else "ok",
         "clock_offset_s": 500.0 if m == 5 and k > 3 else 0.0, "error_codes": ["E1"] if m == 6 and k % 2 else []}
        for k in range(8) for m in range(12)
    ]  # fmt: skip
    return [HeartbeatColumns.from_rows(REG, hb[i : i + 30]) for i in range(0, len(hb), 30)]


def _raw_reading_batches() -> list[list[RawMessage]]:
    rows = make_rows(12, 4, seed=1)
    msgs = [RawMessage(p, "meter.readings", 0, i) for i, p in enumerate(single_payloads(rows))]
    msgs += [RawMessage(b"{nope", "meter.readings", 0, 99), RawMessage(b'{"meter_id": "U1"}', "meter.readings", 0, 100)]
    return [msgs[i : i + 13] for i in range(0, len(msgs), 13)]


def _windows_stream() -> list[Any]:
    cols = [Deduplicator().process(c).readings for c in _reading_columns()]
    return [cols[0], T0 + 3 * 3600, *cols[1:3], T0 + 6 * 3600, *cols[3:]]


def _windows_step(p: Any, batch: Any) -> Any:
    return p.on_timer(batch) if isinstance(batch, int) else p.process(batch)


def _health_stream() -> list[Any]:
    hb = _heartbeats()
    cols = [Deduplicator().process(c).readings for c in _reading_columns()]
    stream: list[Any] = []
    for i, c in enumerate(cols):
        stream.append(c)
        if i < len(hb):
            stream.append(hb[i])
        if i == 3:
            stream.append(T0 + 12 * 3600)  # timer: everyone is silent by then
    return stream


def _health_step(p: Any, batch: Any) -> Any:
    return p.check_silence(batch) if isinstance(batch, int) else p.process(batch)


WCFG = WindowConfig(close_after_s=1800, price_per_kwh={"prepaid": 0.3, "postpaid": 0.2})

CASES: list[ProcessorCase] = [
    ProcessorCase(
        "reading_decoder",
        lambda: ReadingDecoder(REG),
        _raw_reading_batches,
        restore=lambda p, s: ReadingDecoder.restore(s, registry=p.registry),
    ),
    ProcessorCase(
        "heartbeat_decoder",
        lambda: HeartbeatDecoder(REG),
        lambda: [[b'{"meter_id":"M0000001","customer_id":"C","ts":"2026-01-01T00:00:00Z","status":"ok"}', b"[1]"]],
        restore=lambda p, s: HeartbeatDecoder.restore(s, registry=p.registry),
    ),
    ProcessorCase("deduplicator", lambda: Deduplicator(batch_memory=3), _reading_columns),
    ProcessorCase("consumption_windows", lambda: ConsumptionWindows(WCFG), _windows_stream, _windows_step),
    ProcessorCase(
        "meter_windows", lambda: MeterWindows(WindowConfig(close_after_s=0)), _windows_stream, _windows_step
    ),
    ProcessorCase("regional_totals", lambda: RegionalTotals(WCFG), _windows_stream, _windows_step),
    ProcessorCase(
        "health_monitor", lambda: HealthMonitor(HealthConfig(spike_min_history=4)), _health_stream, _health_step
    ),
]

EXTRA_CASES: list[ProcessorCase] = []
"""Other modules may append cases here (they are parametrised too)."""

# segmentation processors (processors/rfm, features, clustering, rules, segments)
from test_seg_cases import seg_cases  # noqa: E402

EXTRA_CASES += seg_cases(ProcessorCase)


def _all() -> list[ProcessorCase]:
    return CASES + EXTRA_CASES


def _restore(case: ProcessorCase, p: Any, state: Any) -> Any:
    return case.restore(p, state) if case.restore else type(p).restore(state)


def _roundtrip(state: Any) -> Any:
    return orjson.loads(orjson.dumps(state))


def _run(case: ProcessorCase, batches: Sequence[Any], cut: int | None) -> tuple[list[Any], Any]:
    p = case.factory()
    outs = []
    for k, b in enumerate(batches):
        if k == cut:
            p = _restore(case, p, _roundtrip(p.snapshot()))
        outs.append(plain(case.step(p, b)))
    return outs, _roundtrip(p.snapshot())


@pytest.mark.parametrize("case", _all(), ids=lambda c: c.name)
def test_speaks_the_protocol(case: ProcessorCase) -> None:
    assert isinstance(case.factory(), StatefulProcessor)


@pytest.mark.parametrize("case", _all(), ids=lambda c: c.name)
def test_snapshots_are_json_and_restore_is_faithful(case: ProcessorCase) -> None:
    p = case.factory()
    for b in case.batches():
        case.step(p, b)
        state = p.snapshot()
        encoded = orjson.dumps(state)  # raises on numpy scalars, non-str keys, objects
        again = _restore(case, p, orjson.loads(encoded)).snapshot()
        assert orjson.dumps(again) == encoded


@pytest.mark.parametrize("case", _all(), ids=lambda c: c.name)
def test_restart_anywhere_equals_uninterrupted(case: ProcessorCase) -> None:
    batches = case.batches()
    straight, final = _run(case, batches, None)
    for cut in range(1, len(batches)):
        outs, state = _run(case, batches, cut)
        assert outs == straight, f"outputs differ after a restart before batch {cut}"
        assert state == final


@pytest.mark.parametrize("case", _all(), ids=lambda c: c.name)
def test_deterministic(case: ProcessorCase) -> None:
    assert _run(case, case.batches(), None) == _run(case, case.batches(), None)


def test_sample_streams_are_not_trivial() -> None:
    """The streams above must actually produce outputs, or the suite proves little."""
    outs, _ = _run(CASES[3], _windows_stream(), None)
    assert sum(len(o["closed"]) for o in outs if isinstance(o, dict)) > 0
    assert any(o.get("corrected") for o in outs if isinstance(o, dict))  # late readings correct closed windows
    assert any(r for o in outs if isinstance(o, dict) for c in o["closed"] for r in c.get("revision", []) or [])
    health, _ = _run(CASES[-1], _health_stream(), None)
    kinds = {a["kind"] for o in health for a in o["alerts"]}
    assert {"stuck_register", "spike", "voltage", "silent", "fault", "clock_skew"} <= kinds
    dd, _ = _run(CASES[2], _reading_columns(), None)
    assert sum(o["duplicates"] for o in dd) > 0
