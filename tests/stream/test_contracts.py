"""The committed contracts match the models, and real payloads validate against them."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import jsonschema
import pytest
import yaml

from stream import contracts
from stream.schemas import ConsumptionWindow, Heartbeat, Reading, ReadingBatch, WindowBatch, window_records

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_committed_contracts_are_current() -> None:
    assert contracts.stale() == [], "run `meterseg contracts` and commit contracts/"


def test_alert_kinds_are_the_health_rules() -> None:
    from typing import get_args

    from processors.health.config import KINDS
    from stream.schemas import AlertKind

    assert set(get_args(AlertKind)) == set(KINDS)
    schema = _schema("meter.alerts")
    kinds = json.dumps(schema)
    assert all(f'"{k}"' in kinds for k in KINDS)


def _schema(topic: str) -> dict:  # type: ignore[type-arg]
    return json.loads((contracts.CONTRACTS / "schemas" / f"{topic}.json").read_text())


def test_reading_and_envelope_validate_against_the_readings_schema() -> None:
    reading = Reading(
        meter_id="M1", customer_id="C1", interval_start=T0, kwh_import=0.2, register_kwh=5.0, voltage=230.0, seq=1
    )
    batch = ReadingBatch(batch_id="b1", sent_at=T0, readings=[reading])
    schema = _schema("meter.readings")
    for payload in (reading, batch):
        jsonschema.validate(json.loads(payload.model_dump_json()), schema)


@pytest.mark.parametrize(
    "bad",
    [
        {
            "meter_id": "M1",
            "customer_id": "C1",
            "interval_start": "2026-01-01T00:00:00Z",
            "register_kwh": 1,
            "voltage": 1,
            "seq": 1,
        },
        {
            "meter_id": "M1",
            "customer_id": "C1",
            "interval_start": "2026-01-01T00:00:00Z",
            "kwh_import": "x",
            "register_kwh": 1,
            "voltage": 1,
            "seq": 1,
        },
    ],
)
def test_schema_rejects_what_the_model_rejects(bad: dict) -> None:  # type: ignore[type-arg]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, _schema("meter.readings"))


def test_heartbeat_schema_and_asyncapi_document() -> None:
    hb = Heartbeat(meter_id="M1", customer_id="C1", ts=T0, status="ok")
    jsonschema.validate(json.loads(hb.model_dump_json()), _schema("meter.heartbeats"))
    doc = yaml.safe_load((contracts.CONTRACTS / "asyncapi.yaml").read_text())
    assert doc["asyncapi"].startswith("3.")
    addresses = {c["address"] for c in doc["channels"].values()}
    assert {"meter.readings", "segment.changes", "meterseg.deadletter"} <= addresses
    for op in doc["operations"].values():
        assert op["channel"]["$ref"].removeprefix("#/channels/") in doc["channels"]
    for msg in doc["components"]["messages"].values():
        assert msg["payload"]["$ref"].removeprefix("#/components/schemas/") in doc["components"]["schemas"]


def _closed_windows(kind: str) -> Any:
    import numpy as np

    from processors.windows import ClosedWindows

    n = 5
    return ClosedWindows(
        kind,  # type: ignore[arg-type]
        3600,
        [f"M{i}" for i in range(n)],
        start=np.array([0, 0, 3600, 3600, 7200], np.int64),
        count=np.array([4, 3, 0, 4, 2], np.int64),
        expected=np.array([4, 4, 4, -1, 4], np.int64) if kind == "meter" else np.full(n, -1, np.int64),
        kwh_in=np.array([1.0, 0.1 + 0.2, 0.0, 2.5, 1e-9]),
        kwh_out=np.zeros(n),
        kw_min=np.array([0.5, 0.1, np.nan, 1.0, 0.0]),
        kw_max=np.array([1.5, 0.9, np.nan, 3.0, 0.0]),
        kw_mean=np.array([1.0, 0.4, 0.0, 2.5, 0.0]),
        revenue=np.zeros(n),
    )


@pytest.mark.parametrize("kind", ["meter", "region"])
def test_window_batch_columns_carry_exactly_the_single_records(kind: str) -> None:
    """A columnar WindowBatch, through JSON, gives back the records one message per window would carry."""
    import orjson

    closed = _closed_windows(kind)
    payload = {"schema_version": 1, "batch_id": "p0:1h:x", **closed.to_columns()}
    wire = json.loads(orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY))
    jsonschema.validate(wire, _schema("consumption.windows"))
    WindowBatch.model_validate(wire)
    singles = [{"schema_version": 1, **{k: v for k, v in r.items() if k != "revenue"}} for r in closed.to_records()]
    assert window_records(wire) == singles
    for record in window_records(wire):
        ConsumptionWindow.model_validate(record)
    assert len(closed.to_columns(3, 1000)["window_start"]) == 2  # the last batch: what is left
    head = closed.to_columns(1, 3)
    assert head["key"] == ["M1", "M2"] and head["window_start"] == ["1970-01-01T00:00:00Z", "1970-01-01T01:00:00Z"]


def test_window_batch_columns_must_line_up() -> None:
    with pytest.raises(ValueError, match="kwh_in has 1 entries, key has 2"):
        two: dict[str, Any] = {"readings": [1, 1], "expected": [4, 4], "window_start": [T0, T0], "window_end": [T0, T0]}
        nothing = {name: [None, None] for name in ("completeness", "min_kw", "max_kw", "mean_kw")}
        bad = {"batch_id": "b", "window": "1h", "key": ["M1", "M2"], "kwh_in": [1.0], "kwh_out": [0, 0]}
        WindowBatch.model_validate({**bad, **two, **nothing})
