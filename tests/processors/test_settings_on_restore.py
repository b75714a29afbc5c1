"""Settings take effect on restart: a restored partition keeps its state but runs with the current settings
(issue 16, finding 1, ingest side); a setting the state cannot follow is refused, named, with what to do."""

from __future__ import annotations

import orjson
import pytest

from processors.columns import RawMessage
from processors.config_change import ConfigChangeError
from processors.health import HealthConfig
from processors.ingest import IngestConfig, PartitionIngest
from processors.windows import WindowConfig
from tests.processors.test_ingest_support import envelope_payloads, make_registry, make_rows

METERS = 10


def _with_state(config: IngestConfig) -> tuple[PartitionIngest, dict[str, object]]:
    registry = make_registry(METERS)
    ingest = PartitionIngest(registry, config)
    payloads = envelope_payloads(make_rows(METERS, 8), 2 * METERS)
    ingest.process(([RawMessage(v, "meter.readings", 0, i) for i, v in enumerate(payloads)], []), 1_000.0)
    return ingest, orjson.loads(orjson.dumps(ingest.snapshot(), option=orjson.OPT_SERIALIZE_NUMPY))


def test_changed_thresholds_rates_and_limits_take_effect_on_restore() -> None:
    old = IngestConfig(clock_rate=1.0)
    before, state = _with_state(old)
    new = IngestConfig(
        clock_rate=60.0,
        health=HealthConfig(spike_z=9.0, negative_tolerance_kwh=0.5),
        windows=WindowConfig(max_future_s=3600, price_per_kwh={"North": 0.3}),
        align_s=300.0,
    )
    restored = PartitionIngest.restore(state, before.readings.registry, new)  # type: ignore[arg-type]
    assert restored.config == new
    assert restored.health.config.spike_z == 9.0 and restored.health.config.negative_tolerance_kwh == 0.5
    assert restored.windows.config.max_future_s == 3600 and restored.windows.config.price_per_kwh == {"North": 0.3}
    assert restored.reading_clock.rate == 60.0 and restored.heartbeat_clock.rate == 60.0
    assert set(restored.config_changes) >= {
        "clock_rate", "health.spike_z", "health.negative_tolerance_kwh", "windows.max_future_s", "align_s"
    }
    # the state itself came back: the same meters, open windows and totals
    assert restored.totals == before.totals and restored.health.rows.ids == before.health.rows.ids
    assert restored.windows.snapshot()["rings"] == orjson.loads(
        orjson.dumps(before.windows.snapshot()["rings"], option=orjson.OPT_SERIALIZE_NUMPY)
    )


def test_a_setting_that_shapes_the_state_is_refused_with_what_to_do() -> None:
    before, state = _with_state(IngestConfig())
    new = IngestConfig(windows=WindowConfig(meter_sizes_s=(900, 3600)), health=HealthConfig(spike_band_window=16))
    with pytest.raises(ConfigChangeError) as caught:
        PartitionIngest.restore(state, before.readings.registry, new)  # type: ignore[arg-type]
    message = str(caught.value)
    assert "METERSEG_INGEST__WINDOWS__METER_SIZES_S changed from [900, 3600, 86400] to [900, 3600]" in message
    assert "METERSEG_INGEST__HEALTH__SPIKE_BAND_WINDOW changed from 32 to 16" in message
    assert "set it back" in message and "METERSEG_APP_ID" in message


def test_without_current_settings_the_checkpoint_config_is_used() -> None:
    before, state = _with_state(IngestConfig(clock_rate=7.0))
    restored = PartitionIngest.restore(state, before.readings.registry)  # type: ignore[arg-type]
    assert restored.config.clock_rate == 7.0 and restored.config_changes == []


def test_a_checkpoint_from_before_a_rule_existed_restores_with_the_rule_started_afresh() -> None:
    before, state = _with_state(IngestConfig())
    config = state["config"]
    assert isinstance(config, dict)
    health = config["health"]
    del health["day_bands"], health["spike_band_window"]  # settings an older version did not have ...
    health["spike_window"] = 96  # ... and one it had that is gone
    restored = PartitionIngest.restore(state, before.readings.registry, IngestConfig())  # type: ignore[arg-type]
    assert {"health.day_bands", "health.spike_band_window", "health.spike_window"} <= set(restored.config_changes)
