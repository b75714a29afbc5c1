"""What every API handler works with: Redis, the meter registry, the producer, and the population.

:class:`ApiContext` is built once per worker from the running engine (or, in
``bench/api.py``, from a bare Redis client and a synthetic directory), so the
handlers never reach into the engine themselves.

The **population** (:func:`load_population`) is every customer's attributes
as columns, read from the Redis projection the segmentation pipeline writes
(``{ns}:cust:{id}`` ``rfm``/``features``/``seg:*`` fields, decoded by
:mod:`stream.state.customer_codec`) and the meter registry (region, tariff,
export, meters, worst meter health), with the CLV and churn risk of
:mod:`processors.clv` added. Every customer is aged against one observation
time, :meth:`ApiContext.observation_time` (an explicit ``as_of``, else the
fleet's merged event clock, :mod:`stream.state.fleet_clock`): ``T_days`` and
``days_since_last`` are recomputed at read time
(:func:`processors.rfm.state.observed_at`), never taken as frozen when the
customer's record was last written. It is what static rule
segments activate over, what insights and lookalikes compare, and it uses
exactly the attribute names of the rule language
(``processors.rules.attributes``). It is cached for :attr:`ApiContext.population_ttl_s`
seconds: analysts' queries in a burst share one read (about a second at
100 000 customers, see ``bench/api.py``).
"""

from __future__ import annotations

import asyncio
import math
import operator
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import orjson
import redis.asyncio as aioredis

from meterseg.settings import Settings
from processors import clv as clv_model
from processors.columns import TARIFFS, MeterRegistry
from processors.features import LOAD_SHAPE_FEATURES
from processors.health import HEALTH_STATES
from processors.insights import Population
from processors.jsonbytes import dumps
from processors.rfm.state import observed_at
from stream.state.customer_codec import (
    FEATURES_FIELDS,
    HOURS_FIELD,
    RFM_FIELD,
    decode_features,
    decode_hours_many,
    decode_rfm,
    rfm_segment_names,
)
from stream.state.fleet_clock import fleet_now
from stream.state.health import HealthStore
from stream.state.keys import CustomerKeys, MeterKeys, customer_keys, meter_keys
from stream.state.segments import MembershipStore

RFM_NUMERIC: tuple[str, ...] = (
    "n_purchases", "n_purchase_days", "frequency", "recency_days", "T_days", "days_since_last",
    "total_spend", "monetary_mean", "monetary_value", "n_viewed", "n_processed", "r_score", "f_score", "m_score",
)  # fmt: skip
RFM_CATEGORICAL: tuple[str, ...] = ("segment", "segment_name")
CHUNK = 5_000
CLV_REFIT_S = 3_600.0
CLV_MIN_CUSTOMERS = 20
CLV_HORIZON_DAYS = 360.0  # 12 periods of 30 days: lifetimes' customer_lifetime_value(time=12, freq="D")
CLV_REFIT_CHANGE = 0.01  # refit before CLV_REFIT_S when the population changed by more than this share
CLV_DISCOUNT = 0.01


@dataclass
class CustomerPopulation(Population):
    """The population with every customer's hourly load shapes beside the attribute columns.

    ``hours[i]`` holds customer *i*'s 24 weekday shares then 24 weekend-day shares
    (each half sums to 1; stored ``hours`` field, :func:`stream.state.customer_codec.decode_hours_many`),
    ``has_hours[i]`` whether the customer has them. They are not rule attributes (48 columns of
    shares would drown the differentiators and lookalikes), so they stay out of ``columns``.
    """

    hours: np.ndarray = field(default_factory=lambda: np.zeros((0, 48), dtype=np.float32))
    has_hours: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.bool_))


def text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


@dataclass(frozen=True, slots=True)
class CustomerMeta:
    """A customer's registry facts: region, tariff, export of the first meter, and every meter id."""

    region: str
    tariff: str
    has_export: bool
    meters: tuple[str, ...]


class Producer(Protocol):
    async def send_many(self, topic: str, records: Any) -> Any: ...


class Directory:
    """Customer → :class:`CustomerMeta` and meter → customer, rebuilt when the registry changes."""

    def __init__(self, registry: MeterRegistry | None = None, static: Mapping[str, CustomerMeta] | None = None):
        self.registry = registry
        self._version = -1
        self._customers: dict[str, CustomerMeta] = dict(static or {})
        self._meter_customer: dict[str, str] = {m: c for c, meta in self._customers.items() for m in meta.meters}

    def _refresh(self) -> None:
        reg = self.registry
        if reg is None or reg.version == self._version:
            return
        n = len(reg)
        regions = [reg.region_names[i] for i in reg.region_code[:n].tolist()]
        tariffs = [TARIFFS[i] for i in reg.tariff_code[:n].tolist()]
        export = reg.has_export[:n].tolist()
        meters: dict[str, list[str]] = {}
        first: dict[str, int] = {}
        for slot, (cid, mid) in enumerate(zip(reg.customer_ids[:n], reg.meter_ids[:n], strict=True)):
            meters.setdefault(cid, []).append(mid)
            first.setdefault(cid, slot)
        self._customers = {
            c: CustomerMeta(regions[s], tariffs[s], bool(export[s]), tuple(meters[c])) for c, s in first.items()
        }
        self._meter_customer = {m: c for c, ms in meters.items() for m in ms}
        self._version = reg.version

    def customers(self) -> Mapping[str, CustomerMeta]:
        self._refresh()
        return self._customers

    def customer_of(self, meter_id: str) -> str | None:
        self._refresh()
        return self._meter_customer.get(meter_id)

    def meter_info(self, meter_id: str) -> dict[str, Any] | None:
        reg = self.registry
        if reg is None:
            cid = self.customer_of(meter_id)
            if cid is None:
                return None
            meta = self._customers[cid]
            return {"meter_id": meter_id, "customer_id": cid, "region": meta.region, "tariff": meta.tariff,
                    "has_export": meta.has_export}  # fmt: skip
        slot = reg.slot(meter_id)
        return None if slot is None else reg.info(slot)


@dataclass
class ApiContext:
    """Everything a handler needs; ``engine`` is the running Engine when served by a worker."""

    settings: Settings
    redis: aioredis.Redis
    directory: Directory
    producer: Producer | None = None
    engine: Any = None
    population_ttl_s: float = 10.0
    _population: tuple[float, CustomerPopulation] | None = field(default=None, repr=False)
    _population_lock: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)
    _clv: tuple[float, clv_model.ClvModel | None] | None = field(default=None, repr=False)

    @property
    def ns(self) -> str:
        return self.settings.redis_namespace

    @property
    def keys(self) -> CustomerKeys:
        """Key names of the customer projection and member sets (spread by shard, :mod:`stream.state.keys`)."""
        return customer_keys(self.settings)

    @property
    def meter_keys(self) -> MeterKeys:
        """Key names of the per-meter state: health, windows, alerts, daily rankings (spread by meter shard)."""
        return meter_keys(self.settings)

    @classmethod
    def from_engine(cls, settings: Settings, engine: Any) -> ApiContext:
        return cls(settings, engine.redis, Directory(engine.registry_follower.registry), engine.producer, engine)

    def invalidate(self) -> None:
        """Forget the cached population (after a write that changes memberships)."""
        self._population = None

    # -- catalogue ----------------------------------------------------------------------------
    async def catalogue(self) -> dict[str, dict[str, Any]]:
        """The segment catalogue (``family:id`` → entry) the pipeline keeps."""
        return await MembershipStore(self.redis, self.ns, self.settings.state_shards).catalogue()

    async def rule_definitions(self) -> dict[str, dict[str, Any]]:
        raw: dict[Any, Any] = await self.redis.hgetall(f"{self.ns}:rules")
        return {text(k): orjson.loads(v) for k, v in raw.items()}

    # -- observation time ---------------------------------------------------------------------------
    async def observation_time(self, as_of: float | None = None) -> float | None:
        """``as_of`` if given, else the fleet's event clock (None before any purchase or profile)."""
        return as_of if as_of is not None else await fleet_now(self.redis, self.ns)

    # -- CLV --------------------------------------------------------------------------------------
    async def clv(self, pop_rfm: Mapping[str, np.ndarray] | None = None) -> clv_model.ClvModel | None:
        """The fitted CLV model: Redis ``{ns}:clv:model`` if fresh, else refitted on ``pop_rfm`` and stored.

        Fresh means fitted within :data:`CLV_REFIT_S` on a population whose
        size differs by at most :data:`CLV_REFIT_CHANGE` from ``pop_rfm``'s (so
        an import is reflected as soon as the population is read again).
        """
        now = time.time()
        eligible = int(clv_rows(pop_rfm).sum()) if pop_rfm is not None else None
        if self._clv is not None and now - self._clv[0] < 60.0 and _same_population(self._clv[1], eligible):
            return self._clv[1]
        raw = await self.redis.get(f"{self.ns}:clv:model")
        if raw is not None:
            stored = orjson.loads(raw)
            fresh = now - float(stored["fitted_at"]) < CLV_REFIT_S
            if pop_rfm is None or (fresh and _same_population(clv_model.ClvModel.from_json(stored["model"]), eligible)):
                restored = clv_model.ClvModel.from_json(stored["model"])
                self._clv = (now, restored)
                return restored
        if pop_rfm is None:
            return None
        model = await asyncio.to_thread(fit_clv, pop_rfm)
        if model is not None:
            await self.redis.set(f"{self.ns}:clv:model", dumps({"fitted_at": now, "model": model.to_json()}))
        self._clv = (now, model)
        return model


async def stored_clv_model(redis: aioredis.Redis, ns: str) -> clv_model.ClvModel | None:
    """The CLV model the API last fitted (``{ns}:clv:model``), for the pipeline to apply per customer."""
    raw = await redis.get(f"{ns}:clv:model")
    return None if raw is None else clv_model.ClvModel.from_json(orjson.loads(raw)["model"])


def _same_population(model: clv_model.ClvModel | None, eligible: int | None) -> bool:
    if model is None or eligible is None:
        return eligible is None
    return abs(eligible - model.n_customers) <= CLV_REFIT_CHANGE * max(model.n_customers, 1)


CLV_INPUTS: tuple[str, ...] = ("frequency", "recency_days", "T_days", "monetary_value")
"""The RFM columns CLV is fitted on and applied to (lifetimes' frequency, recency, T, monetary_value)."""


def clv_rows(cols: Mapping[str, np.ndarray]) -> np.ndarray:
    """Rows a CLV fit can use: all four inputs known, 0 < T, recency <= T, recency > 0 for repeaters."""
    x, tx, t_, m = (cols[f"rfm.{k}"] for k in CLV_INPUTS)
    ok = ~(np.isnan(x) | np.isnan(tx) | np.isnan(t_) | np.isnan(m)) & (t_ > 0) & (tx <= t_)
    ok &= (x == 0) | (tx > 0)
    out: np.ndarray = ok
    return out


def fit_clv(cols: Mapping[str, np.ndarray]) -> clv_model.ClvModel | None:
    """BG/NBD + Gamma-Gamma on the population's RFM columns; None when there are too few customers."""
    x, tx, t_, m = (cols[f"rfm.{k}"] for k in CLV_INPUTS)
    ok = clv_rows(cols)
    if ok.sum() < CLV_MIN_CUSTOMERS:
        return None
    try:
        return clv_model.fit(x[ok], tx[ok], t_[ok], m[ok])
    except ValueError:
        return None


def value_columns(model: clv_model.ClvModel | None, cols: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``clv`` and ``churn.probability`` for every row (NaN without a model or an RFM summary)."""
    n = len(cols["rfm.frequency"])
    out = {"clv": np.full(n, np.nan), "churn.probability": np.full(n, np.nan)}
    if model is None:
        return out
    x, tx, t_, m = (cols[f"rfm.{k}"] for k in CLV_INPUTS)
    ok = ~(np.isnan(x) | np.isnan(tx) | np.isnan(t_) | np.isnan(m))
    if ok.any():
        out["clv"][ok] = clv_model.clv(model, x[ok], tx[ok], t_[ok], m[ok], CLV_HORIZON_DAYS, CLV_DISCOUNT)
        out["churn.probability"][ok] = clv_model.churn_risk(model.bgnbd, x[ok], tx[ok], t_[ok])
    return out


async def population_ids(ctx: ApiContext, catalogue: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Every known customer: registry customers plus members of the rfm and behaviour segments."""
    segments = [(e["family"], e["id"]) for e in catalogue.values() if e.get("family") in ("rfm", "behaviour")]
    ids: set[str] = set(ctx.directory.customers())
    if segments:
        # one SUNION per shard: a shard's sets share a slot, the shards do not (merged here)
        pipe = ctx.redis.pipeline(transaction=False)
        for shard in range(ctx.keys.shards):
            pipe.sunion([ctx.keys.shard_members(shard, family, sid) for family, sid in segments])
        for members in await pipe.execute():
            ids.update(text(m) for m in members)
    return sorted(ids)


_HMGET_MANY = """
local out = {}
for i, key in ipairs(KEYS) do
  out[i] = redis.call('HMGET', key, unpack(ARGV))
end
return out
"""


async def read_customers(
    redis: aioredis.Redis, keys: CustomerKeys | str, ids: Sequence[str], fields: Sequence[str]
) -> list[list[Any]]:
    """``HMGET {c}:cust:{id} fields...`` for every id (in order), a Lua script per shard and chunk of :data:`CHUNK` ids.

    One script call instead of a pipeline of HMGETs: redis-py spends ~40 µs per
    pipelined command packing and parsing, the script's one nested reply is
    parsed by hiredis at once (about 5x faster at 100 000 customers). A script's
    keys must share a slot on a Redis Cluster: the ids are grouped by shard
    (``keys``: :class:`CustomerKeys`, or a namespace for the one-shard layout).
    """
    if isinstance(keys, str):
        keys = CustomerKeys(keys)
    out: list[list[Any]] = [[] for _ in ids]
    if keys.shards == 1:
        script = redis.register_script(_HMGET_MANY)
        for start in range(0, len(ids), CHUNK):
            chunk = [keys.customer(cid) for cid in ids[start : start + CHUNK]]
            out[start : start + len(chunk)] = await script(keys=chunk, args=list(fields))
        return out
    pipe = redis.pipeline(transaction=False)
    slots: list[list[int]] = []
    for positions in keys.by_shard(ids).values():
        for start in range(0, len(positions), CHUNK):
            part = positions[start : start + CHUNK]
            slots.append(part)
            pipe.eval(_HMGET_MANY, len(part), *(keys.customer(ids[i]) for i in part), *fields)
    for part, rows in zip(slots, await pipe.execute() if slots else [], strict=True):
        for i, row in zip(part, rows, strict=True):
            out[i] = row
    return out


async def meter_health(redis: aioredis.Redis, keys: MeterKeys | str) -> dict[str, str]:
    """meter → health state, from the per-state sets of every meter shard (``keys``: a namespace for one shard)."""
    return await HealthStore(redis, keys).states()


def _columns(records: list[dict[str, Any]], keys: Sequence[str], prefix: str) -> dict[str, np.ndarray]:
    """Numeric columns ``prefix + key`` from dicts: one ``itemgetter`` call per record when all keys are present."""
    getter = operator.itemgetter(*keys)
    rows: list[Any] = []
    try:
        rows = [getter(r) if r else _NANS[len(keys)] for r in records]
        table = np.array(rows, dtype=np.float64).reshape(len(records), len(keys))
        return {f"{prefix}{k}": table[:, j].copy() for j, k in enumerate(keys)}
    except (KeyError, TypeError, ValueError):  # a record without some key, or a non-number: the slow path
        return {f"{prefix}{k}": _floats([r.get(k) for r in records]) for k in keys}


_NANS: dict[int, tuple[float, ...]] = {n: (math.nan,) * n for n in range(1, 64)}


def _floats(values: list[Any]) -> np.ndarray:
    """float64 column; None (or anything not a number) becomes NaN."""
    try:
        return np.array(values, dtype=np.float64)  # fast path: numbers and None (-> nan)
    except (TypeError, ValueError):
        return np.array([v if isinstance(v, int | float) else np.nan for v in values], dtype=np.float64)


async def load_population(ctx: ApiContext, fresh: bool = False) -> CustomerPopulation:
    """The cached population (see module doc), aged at the fleet's event clock; ``fresh`` forces a re-read."""
    async with ctx._population_lock:
        now = time.monotonic()
        if not fresh and ctx._population is not None and now - ctx._population[0] < ctx.population_ttl_s:
            return ctx._population[1]
        pop = await _read_population(ctx)
        ctx._population = (time.monotonic(), pop)
        return pop


async def _read_population(ctx: ApiContext) -> CustomerPopulation:
    """Read from Redis on the event loop; parse and compute in a thread, so the worker's consumers keep polling."""
    catalogue = await ctx.catalogue()
    ids = await population_ids(ctx, catalogue)
    rows = await read_customers(ctx.redis, ctx.keys, ids, (RFM_FIELD, *FEATURES_FIELDS, "seg:behaviour", HOURS_FIELD))
    states = await meter_health(ctx.redis, ctx.meter_keys)
    meta = ctx.directory.customers()
    now = await ctx.observation_time()
    cols = await asyncio.to_thread(_build_columns, ids, rows, catalogue, meta, states, now)
    model = await ctx.clv(cols)
    cols.update(await asyncio.to_thread(value_columns, model, cols))
    hours, has_hours = await asyncio.to_thread(decode_hours_many, [r[4] for r in rows])
    return CustomerPopulation(ids, cols, hours=hours, has_hours=has_hours)


def _build_columns(
    ids: Sequence[str],
    rows: Sequence[Sequence[Any]],
    catalogue: Mapping[str, Mapping[str, Any]],
    meta: Mapping[str, CustomerMeta],
    states: Mapping[str, str],
    now: float | None = None,
) -> dict[str, np.ndarray]:
    empty: dict[str, Any] = {}
    segment_names = rfm_segment_names(catalogue)
    rfms = [decode_rfm(r[0], cid, segment_names) or empty for cid, r in zip(ids, rows, strict=True)]
    if now is not None:
        rfms = [observed_at(r, now) if r else r for r in rfms]
    feats = [decode_features(r[1], r[2]) or empty for r in rows]
    cols: dict[str, np.ndarray] = {}
    cols.update(_columns(rfms, RFM_NUMERIC, "rfm."))
    for k in RFM_CATEGORICAL:
        cols[f"rfm.{k}"] = np.array([r.get(k) for r in rfms], dtype=object)
    cols.update(_columns(feats, LOAD_SHAPE_FEATURES, "features."))
    behaviour = np.array([text(r[3]) if r[3] else None for r in rows], dtype=object)
    names = {e["id"]: e.get("name") for e in catalogue.values() if e.get("family") == "behaviour"}
    cols["behaviour.segment"] = behaviour
    cols["behaviour.segment_name"] = np.array([names.get(b) if b else None for b in behaviour], dtype=object)
    metas = [meta.get(cid) for cid in ids]
    rank = {s: i for i, s in enumerate(HEALTH_STATES)}
    cols["region"] = np.array([m.region if m else None for m in metas], dtype=object)
    cols["tariff"] = np.array([m.tariff if m else None for m in metas], dtype=object)
    cols["has_export"] = np.array([m.has_export if m else None for m in metas], dtype=object)
    cols["health.state"] = np.array(
        [
            max((states[x] for x in m.meters if x in states), key=rank.__getitem__, default=None) if m else None
            for m in metas
        ],
        dtype=object,
    )
    return cols


def attribute_names(pop: Population) -> list[str]:
    return sorted(pop.columns)


def numeric_attributes(pop: Population, names: Iterable[str] | None = None) -> list[str]:
    return [n for n in (names or pop.columns) if n in pop.columns and pop.is_numeric(n)]


Getter = Callable[[], Any]
