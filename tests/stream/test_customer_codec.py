"""The stored customer format (stream.state.customer_codec): exact round trips, old JSON still read, compact in Redis."""

from __future__ import annotations

import asyncio
import math
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import orjson
import pytest
import redis
import redis.asyncio as aioredis
from hypothesis import given, settings
from hypothesis import strategies as st

from meterseg.settings import Settings
from processors.features import WEEKDAY_SHAPE, WEEKEND_SHAPE, CustomerFeatures, FeatureProcessor
from processors.rfm.processor import RfmAssignment, RfmProcessor
from stream.schemas import Purchase
from stream.state.customer_codec import (
    FEATURE_NAMES,
    FEATURES_FIELDS,
    HOURS_FIELD,
    HOURS_LEN,
    MAX_VALUE,
    RFM_FIELD,
    V1,
    V2,
    decode_features,
    decode_hours,
    decode_hours_many,
    decode_rfm,
    encode_features,
    encode_hours,
    encode_rfm,
)
from stream.state.keys import CustomerKeys
from stream.state.segments import MembershipStore, compact_customer_hashes, rfm_object
from stream.web.context import ApiContext, CustomerMeta, Directory, load_population
from stream.web.customers import get_customer
from stream.web.routes import ApiRequest

T0 = datetime(2025, 11, 3, 7, 8, 9, 654321, tzinfo=UTC)


def assignments(spec: list[tuple[int, float, int, float]]) -> list[RfmAssignment]:
    """RFM engine output for purchases given as (customer, hours after T0, kind, amount)."""
    kinds = ("PURCHASED", "VIEWED", "PROCESSED")
    events = [
        Purchase(event_id=f"e{i}", customer_id=f"C{c:07d}", ts=T0 + timedelta(hours=h), event_type=kinds[k],
                 amount=round(amount, 2))
        for i, (c, h, k, amount) in enumerate(spec)
    ]  # fmt: skip
    proc = RfmProcessor()
    out = {a.customer_id: a for a in proc.process(events)}
    out.update({a.customer_id: a for a in proc.rescore(T0 + timedelta(days=60, seconds=0.123456))})
    return list(out.values())


purchases = st.lists(
    st.tuples(
        st.integers(0, 20),
        st.floats(0, 24 * 50, allow_nan=False),
        st.integers(0, 2),
        st.floats(0, 5000, allow_nan=False),
    ),
    min_size=1,
    max_size=60,
)


@settings(max_examples=60, deadline=None)
@given(purchases)
def test_engine_rfm_is_stored_compact_and_read_back_exactly(spec: list[tuple[int, float, int, float]]) -> None:
    for a in assignments(spec):
        value = rfm_object(a)
        raw = encode_rfm(value)
        assert raw[0] == V2, value
        assert len(raw) <= MAX_VALUE  # the default segment ids are at most 18 characters
        names = {a.segment_id: a.segment_name} if a.segment_id else {}
        assert decode_rfm(raw, a.customer_id, names) == value
        assert list(decode_rfm(raw, a.customer_id, names) or {}) == list(value)  # same key order as version 0


finite = st.floats(-1e12, 1e12, allow_nan=False, allow_infinity=False)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(FEATURE_NAMES), finite), st.dates(date(1970, 1, 1), date(2100, 12, 31)))
def test_features_are_stored_compact_and_read_back_exactly(values: dict[str, float], day: date) -> None:
    ordered = {n: values[n] for n in FEATURE_NAMES if n in values}  # the engine's order
    stored = encode_features(day, ordered)
    assert set(stored) == set(FEATURES_FIELDS)
    assert stored["features"][0] == V1 and all(len(v) <= MAX_VALUE for v in stored.values())
    assert decode_features(stored["features"], stored["features2"]) == {"day": day.isoformat(), **ordered}


day_shares = st.lists(st.floats(0, 50, allow_nan=False), min_size=24, max_size=24).filter(lambda v: sum(v) > 0)


@settings(max_examples=200, deadline=None)
@given(day_shares, day_shares)
def test_hourly_shapes_fit_one_small_field_within_half_a_step_of_the_peak(wd: list[float], we: list[float]) -> None:
    shape = {**{n: v / sum(wd) for n, v in zip(WEEKDAY_SHAPE, wd, strict=True)},
             **{n: v / sum(we) for n, v in zip(WEEKEND_SHAPE, we, strict=True)}}  # fmt: skip
    raw = encode_hours(shape)
    assert raw is not None and len(raw) == HOURS_LEN <= MAX_VALUE and raw[0] == V1
    back = decode_hours(raw)
    assert back is not None
    for names, got in zip((WEEKDAY_SHAPE, WEEKEND_SHAPE), back, strict=True):
        given_ = [shape[n] for n in names]
        assert sum(got) == pytest.approx(1.0)
        # quantised against the peak hour, then renormalised: each hour within ~one step of 1/255 of the peak
        assert max(abs(a - b) for a, b in zip(got, given_, strict=True)) <= 1.05 * max(given_) / 255
    many, ok = decode_hours_many([raw, None])
    assert ok.tolist() == [True, False]
    assert many[0].tolist() == pytest.approx([*back[0], *back[1]], abs=1e-6)


def test_the_pipelines_hourly_shapes_are_stored_and_a_bad_one_is_not() -> None:
    fp = FeatureProcessor()
    evening = np.array([0.1] * 18 + [1.0] * 6)
    f = fp.update("C1", date(2026, 1, 5), True, evening)  # a Monday
    assert f is not None and f.shape
    wd, we = decode_hours(encode_hours(f.shape)) or ((), ())
    assert wd == pytest.approx(list(evening / evening.sum()), abs=0.002) and we == pytest.approx(wd)
    assert encode_hours({**f.shape, "weekday_h03": math.nan}) is None
    assert encode_hours({**f.shape, "weekend_h03": -0.1}) is None
    assert encode_hours({k: v for k, v in f.shape.items() if k != "weekend_h23"}) is None
    with pytest.raises(ValueError, match="unknown hours value format"):
        decode_hours(b"\x02" + bytes(48))


def test_version_0_json_is_still_read() -> None:
    old_rfm = {"customer_id": "C1", "first_purchase": "2025-12-27T06:18:03Z", "last_purchase": "2025-12-27T06:18:03Z",
               "n_purchases": 1, "n_purchase_days": 1, "total_spend": 350.0, "monetary_mean": 350.0, "frequency": 0,
               "recency_days": 0, "T_days": 5, "days_since_last": 5.737241979340713, "n_viewed": 1, "n_processed": 1,
               "r_score": 1, "f_score": 1, "m_score": 5, "segment": "lost", "segment_name": "Lost"}  # fmt: skip
    old_features = {"day": "2026-01-01", "mean_daily_kwh": 6.8416, "share_night": 0.11688786248830685}
    # version 0 carries its own segment name: the catalogue is not asked
    assert decode_rfm(orjson.dumps(old_rfm), "C1", {"lost": "Renamed"}) == old_rfm
    assert decode_rfm(orjson.dumps(old_rfm).decode(), "C1", {}) == old_rfm
    # a version-0 features value and a stale second field: the tail is ignored
    assert decode_features(orjson.dumps(old_features), b"\x00\x01") == old_features
    # both versions of the same value read the same
    assert decode_rfm(encode_rfm(old_rfm), "C1", {"lost": "Lost"}) == old_rfm
    new = encode_features("2026-01-01", {k: v for k, v in old_features.items() if k != "day"})
    assert decode_features(*new.values()) == old_features


def test_what_version_1_cannot_carry_exactly_is_stored_as_version_0() -> None:
    bad_rfm = [
        {"customer_id": "C1", "n_purchases": 1},  # fields missing
        {**_valid_rfm(), "monetary_mean": 1.0},  # a derived field that disagrees
        {**_valid_rfm(), "r_score": None},  # some scores only
        {**_valid_rfm(), "days_since_last": math.inf},
        {**_valid_rfm(), "first_purchase": "2025-12-27T06:18:03+02:00"},
        {**_valid_rfm(), "extra": 1},
    ]
    for value in bad_rfm:
        raw = encode_rfm(value)
        assert raw[:1] == b"{" and raw == orjson.dumps(value)  # exactly what version 0 wrote
    assert encode_rfm(_valid_rfm())[0] == V2
    for values in ({"mood": 1.0}, {"share_night": math.nan}, {"share_night": "high"}):
        stored = encode_features("2026-01-01", values)  # type: ignore[arg-type]
        assert stored["features"][:1] == b"{" and stored["features2"] == b""
        assert decode_features(*stored.values()) == orjson.loads(orjson.dumps({"day": "2026-01-01", **values}))
    with pytest.raises(ValueError, match="unknown rfm value format"):
        decode_rfm(b"\x07abc", "C1", {})


def _valid_rfm() -> dict[str, Any]:
    return {"customer_id": "C1", "first_purchase": "2025-12-27T06:18:03.000500Z",
            "last_purchase": "2026-01-02T00:00:00Z", "n_purchases": 2, "n_purchase_days": 2, "total_spend": 10.5,
            "monetary_mean": 5.25, "frequency": 1, "recency_days": 6, "T_days": 9, "days_since_last": 3.25,
            "n_viewed": 0, "n_processed": 0, "first_day_spend": 2.5, "monetary_value": 8.0, "r_score": 3,
            "f_score": 2, "m_score": 1, "segment": "promising",
            "segment_name": "Promising"}  # fmt: skip


@pytest.mark.integration
def test_written_hash_is_a_listpack_and_the_api_reads_both_versions_alike(redis_db_url: str, unique: str) -> None:
    """The engine's writer on a stock-configured Redis, then the API over a new and an old (JSON) customer."""
    ns = f"codec-{unique}"
    settings = Settings(app_id=ns)  # one shard on one server (unless METERSEG_REDIS_SHARDS says otherwise)
    keys = CustomerKeys(ns, settings.state_shards)
    spec = [(1, 0.0, 0, 120.5), (1, 30.0, 0, 80.25), (1, 31.0, 1, 0.0), (2, 5.0, 0, 10.0), (2, 200.0, 2, 0.0)]
    rfm = assignments(spec)
    hourly = {**{n: (1 + h % 5) / 70 for h, n in enumerate(WEEKDAY_SHAPE)}, **{n: 1 / 24 for n in WEEKEND_SHAPE}}
    feats = [CustomerFeatures(customer_id=a.customer_id, day=date(2026, 1, 1), n_days=3,
                              values={n: 0.1 + i / 7 for i, n in enumerate(FEATURE_NAMES)},
                              shape=hourly) for a in rfm]  # fmt: skip

    async def run() -> tuple[dict[str, Any], dict[str, Any], list[Any], list[Any]]:
        client = aioredis.Redis.from_url(redis_db_url)
        try:
            store = MembershipStore(client, ns, keys.shards)
            catalogue = {f"rfm:{a.segment_id}": {"family": "rfm", "id": a.segment_id, "name": a.segment_name}
                         for a in rfm if a.segment_id}  # fmt: skip
            await store.apply([], rfm, feats, catalogue=catalogue)
            new_id, old_id = rfm[0].customer_id, "C9999999"
            # the same customer as an earlier version wrote it: JSON values, no second features field
            old = rfm_object(rfm[0]) | {"customer_id": old_id}
            await client.hset(keys.customer(old_id), mapping={
                RFM_FIELD: orjson.dumps(old), "features": orjson.dumps({"day": feats[0].day, **feats[0].values})})  # fmt: skip
            meta = {c: CustomerMeta("North", "prepaid", False, (f"M{c}",)) for c in (new_id, old_id)}
            ctx = ApiContext(settings, client, Directory(static=meta))

            async def view(cid: str) -> dict[str, Any]:
                out: dict[str, Any] = await get_customer(ctx, ApiRequest(raw=None, path={"id": cid}, query={}))  # type: ignore[arg-type]
                return out

            new_view, old_view = await view(new_id), await view(old_id)
            pop = await load_population(ctx, fresh=True)
            i_new, i_old = pop.ids.index(new_id), pop.ids.index(old_id)
            columns = [k for k in pop.columns if k.startswith(("rfm.", "features."))]
            return new_view, old_view, [pop.columns[k][i_new] for k in columns], [pop.columns[k][i_old] for k in columns]
        finally:
            await client.aclose()

    new_view, old_view, new_cols, old_cols = asyncio.run(run())
    assert new_view["rfm"] == rfm_object(rfm[0])
    assert new_view["features"] == {"day": "2026-01-01", **feats[0].values}
    assert {**old_view["rfm"], "customer_id": new_view["customer_id"]} == new_view["rfm"]
    assert old_view["features"] == new_view["features"]
    assert [str(v) for v in new_cols] == [str(v) for v in old_cols]

    sync = redis.Redis.from_url(redis_db_url)
    try:
        assert sync.config_get("hash-max-listpack-value")["hash-max-listpack-value"] == "64"  # a stock setting
        for a in rfm:
            key = keys.customer(a.customer_id)
            assert sync.object("encoding", key) == b"listpack", sync.hgetall(key)
            # the issue-16 budget (400 B a customer), with the hourly shapes (49 B more than without)
            assert int(sync.memory_usage(key, samples=0) or 0) < 400
            wd, we = decode_hours(sync.hget(key, HOURS_FIELD)) or ((), ())
            assert wd == pytest.approx([hourly[n] for n in WEEKDAY_SHAPE], abs=0.001) and we == pytest.approx([1 / 24] * 24)
        old_key = keys.customer("C9999999")
        assert sync.object("encoding", old_key) == b"hashtable"  # what version 0 cost
        before = sync.hgetall(old_key)
        # the upgrade tool rewrites only that hash, into the compact format, without changing what it says
        counts = compact_customer_hashes(sync, ns, shards=keys.shards)
        assert counts == {"scanned": len(rfm) + 1, "rewritten": 1, "still_hashtable": 0, "skipped": 0}
        after = sync.hgetall(old_key)
        assert sync.object("encoding", old_key) == b"listpack" and after[b"rfm"][0] == V2
        names = {a.segment_id: a.segment_name for a in rfm if a.segment_id}
        assert decode_rfm(after[b"rfm"], "C9999999", names) == old_view["rfm"]
        assert decode_features(after[b"features"], after[b"features2"]) == old_view["features"]
        assert before[b"rfm"][:1] == b"{" and decode_rfm(before[b"rfm"], "C9999999", {}) == old_view["rfm"]
        assert compact_customer_hashes(sync, ns, shards=keys.shards)["rewritten"] == 0  # idempotent
    finally:
        sync.close()


def test_features_of_many_customers_go_in_slices_and_all_land(
    redis_db_url: str, unique: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A day close's features of a whole partition: pipelines of FEATURES_SLICE customers, every hash written."""
    import stream.state.segments as segments

    monkeypatch.setattr(segments, "FEATURES_SLICE", 4)
    ns = f"slices-{unique}"
    feats = [CustomerFeatures(customer_id=f"C{i:04d}", day=date(2026, 1, 2), n_days=2,
                              values={n: (i + j) / 9 for j, n in enumerate(FEATURE_NAMES)}) for i in range(11)]  # fmt: skip

    async def run() -> tuple[int, list[Any]]:
        client = aioredis.Redis.from_url(redis_db_url)
        executed = 0
        real = client.pipeline

        def counted(*args: Any, **kwargs: Any) -> Any:
            pipe = real(*args, **kwargs)
            run_pipe = pipe.execute

            async def execute(*a: Any, **k: Any) -> Any:
                nonlocal executed
                executed += 1
                return await run_pipe(*a, **k)

            pipe.execute = execute  # type: ignore[method-assign]
            return pipe

        client.pipeline = counted  # type: ignore[method-assign]
        try:
            store = MembershipStore(client, ns)
            await store.apply([], (), feats)
            return executed, [await client.hmget(store.customer_key(f.customer_id), FEATURES_FIELDS) for f in feats]
        finally:
            await client.aclose()

    executed, stored = asyncio.run(run())
    assert executed == 3  # 4 + 4 + 3 customers; no pipeline for the (empty) changes
    assert [decode_features(*v) for v in stored] == [{"day": "2026-01-02", **f.values} for f in feats]
