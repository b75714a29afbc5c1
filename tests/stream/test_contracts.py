"""The committed contracts match the models, and real payloads validate against them."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import jsonschema
import pytest
import yaml

from stream import contracts
from stream.schemas import Heartbeat, Reading, ReadingBatch

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_committed_contracts_are_current() -> None:
    assert contracts.stale() == [], "run `meterseg contracts` and commit contracts/"


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
        {"meter_id": "M1", "customer_id": "C1", "interval_start": "2026-01-01T00:00:00Z", "register_kwh": 1, "voltage": 1, "seq": 1},
        {"meter_id": "M1", "customer_id": "C1", "interval_start": "2026-01-01T00:00:00Z", "kwh_import": "x",
         "register_kwh": 1, "voltage": 1, "seq": 1},
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
