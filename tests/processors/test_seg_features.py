"""Load-shape features: definitions, shift response, idempotence, scaler merging."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pytest
from pydantic import ValidationError

from processors.features import (
    LOAD_SHAPE_FEATURES,
    DailyProfile,
    FeatureProcessor,
    RunningScaler,
    _CustomerShape,
)

MONDAY = date(2026, 1, 5)
EVENING = [0.2] * 18 + [1.0] * 6
NIGHT = [1.5] * 6 + [0.2] * 18


def day(d: int, kwh: list[float], export: list[float] | None = None, cid: str = "C1") -> DailyProfile:
    return DailyProfile(customer_id=cid, day=MONDAY + timedelta(days=d), kwh_import=tuple(kwh),
                        kwh_export=None if export is None else tuple(export))


def test_feature_definitions_on_a_known_day() -> None:
    kwh = [0.5] * 6 + [1.0] * 6 + [0.25] * 6 + [2.0] * 6  # 3 + 6 + 1.5 + 12 = 22.5 kWh
    export = [0.0] * 10 + [1.25] * 4 + [0.0] * 10  # 5 kWh
    f = FeatureProcessor().process([day(0, kwh, export)])[0].values
    assert set(LOAD_SHAPE_FEATURES) <= set(f)
    assert f["mean_daily_kwh"] == pytest.approx(22.5)
    assert f["peak_to_average"] == pytest.approx(2.0 / (22.5 / 24))
    assert [f[k] for k in ("share_night", "share_morning", "share_daytime", "share_evening")] == pytest.approx(
        [3 / 22.5, 6 / 22.5, 1.5 / 22.5, 12 / 22.5])
    assert f["export_share"] == pytest.approx(5 / 27.5)
    assert f["weekday_weekend_ratio"] == 1.0 and f["variability"] == 0.0


def test_quarter_hour_profiles_fold_to_hours() -> None:
    quarter = [v / 4 for v in EVENING for _ in range(4)]
    p = DailyProfile(customer_id="C1", day=MONDAY, kwh_import=tuple(quarter))
    assert p.kwh_import == pytest.approx(tuple(EVENING)) and p.weekday is True
    with pytest.raises(ValidationError, match="24, 48 or 96"):
        DailyProfile(customer_id="C1", day=MONDAY, kwh_import=(1.0,) * 23)
    assert DailyProfile(customer_id="C1", day=MONDAY + timedelta(days=5), kwh_import=(1.0,) * 24).weekday is False


def test_weekday_weekend_ratio_is_observed_on_weekends() -> None:
    fp = FeatureProcessor()
    for d in range(7):  # Mon..Sun: 20 kWh on weekdays, 5 kWh at the weekend
        fp.process([day(d, [20 / 24] * 24 if d < 5 else [5 / 24] * 24)])
    assert fp.values("C1")["weekday_weekend_ratio"] == pytest.approx(4.0)
    # a level change on Monday is not read as a weekday/weekend contrast before the weekend
    for d in range(7, 10):
        fp.process([day(d, [40 / 24] * 24)])
    assert fp.values("C1")["weekday_weekend_ratio"] == pytest.approx(4.0)


def test_a_shift_is_fully_visible_on_its_second_day() -> None:
    rng = np.random.default_rng(0)
    fp = FeatureProcessor()
    for d in range(7):
        fp.process([day(d, list(np.array(EVENING) * rng.lognormal(0, 0.1, 24)))])
    assert fp.values("C1")["share_night"] < 0.15
    out = fp.process([day(7, NIGHT)])
    assert not out[0].restarted and out[0].values["share_night"] < 0.6
    out = fp.process([day(8, NIGHT)])
    assert out[0].restarted and out[0].values["share_night"] == pytest.approx(9 / 12.6)
    # without the restart rule, decayed means reach only ~75 % of the new behaviour
    slow = FeatureProcessor(shift_threshold=None)
    for d in range(7):
        slow.process([day(d, EVENING)])
    slow.process([day(7, NIGHT), day(8, NIGHT)])
    assert 0.4 < slow.values("C1")["share_night"] < 0.6


def test_odd_days_and_weekends_do_not_restart() -> None:
    rng = np.random.default_rng(1)
    fp = FeatureProcessor()
    restarts = 0
    for d in range(28):
        weekend = (MONDAY + timedelta(days=d)).weekday() >= 5
        base = np.array(NIGHT if weekend else EVENING)  # a very different weekend profile
        if d == 10:
            base = np.array(NIGHT)  # one odd weekday
        out = fp.process([day(d, list(base * rng.lognormal(0, 0.2, 24)))])
        restarts += out[0].restarted
    assert restarts == 0


def test_redelivered_or_older_days_are_ignored() -> None:
    fp = FeatureProcessor()
    first = fp.process([day(0, EVENING), day(1, NIGHT)])
    assert len(first) == 2
    state = fp.snapshot()
    assert fp.process([day(1, NIGHT), day(0, EVENING)]) == []
    assert fp.snapshot() == state
    assert FeatureProcessor.restore(state).snapshot() == state


def test_rfm_values_join_the_features() -> None:
    fp = FeatureProcessor()
    fp.set_rfm("C1", days_since_last=12, frequency=3, monetary_mean=45.5)
    f = fp.process([day(0, EVENING)])[0]
    assert f.values["rfm.monetary_mean"] == 45.5 and f.vector(["rfm.frequency", "nope"])[0] == 3


def test_running_scaler_merge_equals_single_pass() -> None:
    rng = np.random.default_rng(2)
    x = rng.normal([5, -3, 100], [1, 2, 30], (300, 3))
    whole = RunningScaler(3)
    whole.learn(x)
    parts = [RunningScaler(3) for _ in range(3)]
    for i, p in enumerate(parts):
        p.learn(x[i::3])
    merged = RunningScaler.merged(parts)
    np.testing.assert_allclose(merged.mean, x.mean(axis=0))
    np.testing.assert_allclose(merged.std, x.std(axis=0))
    np.testing.assert_allclose(merged.transform(x), whole.transform(x))
    assert RunningScaler.restore(merged.snapshot()).snapshot() == merged.snapshot()


def test_meters_of_one_customer_sum_into_its_day_in_any_order() -> None:
    def meter_day(d: int, meter: str, kwh: list[float]) -> DailyProfile:
        return DailyProfile(customer_id="C1", meter_id=meter, day=MONDAY + timedelta(days=d), kwh_import=tuple(kwh))

    days = [(d, m, EVENING if m == "M1" else NIGHT) for d in range(4) for m in ("M1", "M2")]
    together = FeatureProcessor()
    together.process([meter_day(d, m, k) for d, m, k in days])
    apart = FeatureProcessor()
    for d, m, k in days[:-2]:
        apart.process([meter_day(d, m, k)])
    apart.process([meter_day(3, "M2", NIGHT)])  # the last day's meters in two batches, reversed
    apart.process([meter_day(3, "M1", EVENING)])
    apart.process([meter_day(3, "M1", EVENING)])  # re-delivered: ignored
    combined = FeatureProcessor()
    for d in range(4):
        combined.process([DailyProfile(customer_id="C1", day=MONDAY + timedelta(days=d),
                                       kwh_import=tuple(a + b for a, b in zip(EVENING, NIGHT, strict=True)))])
    expected = combined.values("C1")
    assert together.values("C1") == pytest.approx(expected)
    assert apart.values("C1") == pytest.approx(expected)
    assert apart.customers["C1"].n_days == 4
    assert FeatureProcessor.restore(apart.snapshot()).snapshot() == apart.snapshot()


def _meter_day(d: int, meter: str, kwh: list[float], export: list[float] | None = None) -> DailyProfile:
    return DailyProfile(customer_id="C1", meter_id=meter, day=MONDAY + timedelta(days=d), kwh_import=tuple(kwh),
                        kwh_export=None if export is None else tuple(export))  # fmt: skip


def test_a_checkpoint_of_the_list_format_amends_the_last_day_alike() -> None:
    """Checkpoints written before the state before the last day was packed keep it as lists: they restore to
    the same amend, for an exporting meter too."""
    solar = [0.0] * 10 + [0.5] * 4 + [0.0] * 10
    proc = FeatureProcessor()
    for d in range(9):  # a week and more, then day 8 amended by M2 after the restore
        proc.process([_meter_day(d, "M1", EVENING, solar)])
        if d < 8:
            proc.process([_meter_day(d, "M2", NIGHT)])
    snap = proc.snapshot()
    old = {**snap, "last_day_parts": {
        c: [_CustomerShape.unpack(np.asarray(v[0])).to_json(), v[1], v[2] if v[2] is not None else [0.0] * 24, v[3]]
        for c, v in snap["last_day_parts"].items()}}  # fmt: skip
    assert isinstance(old["last_day_parts"]["C1"][0][0], list)
    now, before = FeatureProcessor.restore(snap), FeatureProcessor.restore(old)
    assert before.snapshot() == now.snapshot()
    amended = [p.process([_meter_day(8, "M2", NIGHT)])[0] for p in (now, before, proc)]
    assert amended[0] == amended[1] == amended[2]
    assert amended[0].n_days == 9 and proc.last_day_parts["C1"][3] == ("M1", "M2")
    assert proc.last_day_parts["C1"][2] is not None  # M1 exports: the day's export is kept for a third meter


def test_the_state_kept_for_amends_is_packed() -> None:
    """The state before the last day is kept for every customer until its next day: one array each, not
    about 100 Python floats in lists (3.2 KB a customer of new allocations on its second day before, 1.4 KB
    after)."""
    import tracemalloc

    proc = FeatureProcessor()
    n = 2_000
    proc.process([DailyProfile(customer_id=f"C{i}", meter_id=f"M{i}", day=MONDAY, kwh_import=tuple(EVENING))
                  for i in range(n)])  # fmt: skip
    tracemalloc.start()
    try:
        proc.process([DailyProfile(customer_id=f"C{i}", meter_id=f"M{i}", day=MONDAY + timedelta(days=1),
                                   kwh_import=tuple(EVENING)) for i in range(n)])  # fmt: skip
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(proc.last_day_parts) == n
    assert all(v[2] is None for v in proc.last_day_parts.values())  # no export: none kept
    assert held / n < 1_600, f"{held / n:.0f} B per customer"
