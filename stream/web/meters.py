"""``/meters``: top consumers over a date range, faulty meters, and one meter's health, windows and alerts."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import orjson

from processors.health import HEALTH_STATES
from stream.state.health import HealthStore
from stream.state.meters import MeterStore
from stream.web.context import ApiContext, text
from stream.web.errors import bad_request, not_found
from stream.web.pagination import int_param, parse_page, window
from stream.web.routes import PAGE_PARAMS, ApiRequest, Param, route

MAX_RANGE_DAYS = 366
FAULTY_STATES = ("poor",)


def _date(raw: str | None, name: str) -> date | None:
    if raw is None:
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise bad_request(f"{name} must be a date YYYY-MM-DD, got {raw!r}", error="invalid_parameter") from None


def _shift(day: date, days: int) -> date:
    """``day`` moved by ``days``; 400 beyond the calendar (from=9999-12-31 has no week after it)."""
    try:
        return day + timedelta(days=days)
    except OverflowError:
        raise bad_request(f"{day.isoformat()} {days:+d} days is out of range", error="invalid_parameter") from None


async def latest_day(ctx: ApiContext) -> date | None:
    """The latest UTC day with a daily ranking (``{p}:kwh:YYYY-MM-DD`` of any meter shard)."""
    latest: str | None = None
    async for key in ctx.redis.scan_iter(match=ctx.meter_keys.day_pattern(), count=1000):
        day = text(key).rsplit(":", 1)[1]
        latest = day if latest is None or day > latest else latest
    return date.fromisoformat(latest) if latest else None


@route("GET", "/meters/top", summary="Top consumers (kWh imported) over a date range", tag="meters",
       params=(Param("region", "only meters of this region"),
               Param("from", "first UTC day, YYYY-MM-DD (default: 6 days before `to`)", {"type": "string", "format": "date"}),
               Param("to", "last UTC day, YYYY-MM-DD (default: the latest day with data)", {"type": "string", "format": "date"}),
               Param("limit", "how many (1–1000, default 10)", {"type": "integer", "minimum": 1, "maximum": 1000})),
       response={"type": "object", "properties": {"items": {"type": "array"}}})  # fmt: skip
async def top(ctx: ApiContext, req: ApiRequest) -> Any:
    """Sum of closed daily windows per meter over [from, to], largest first."""
    last = _date(req.arg("to"), "to")
    first = _date(req.arg("from"), "from")
    limit = int_param(req.query, "limit", 1, 1000) or 10
    if last is None:
        last = _shift(first, 6) if first else await latest_day(ctx)
        if last is None:
            return {"from": None, "to": None, "region": req.arg("region"), "items": []}
    first = first or _shift(last, -6)
    if first > last:
        raise bad_request("from must not be after to", error="invalid_parameter")
    if (last - first).days + 1 > MAX_RANGE_DAYS:
        raise bad_request(f"at most {MAX_RANGE_DAYS} days", error="invalid_parameter")
    region = req.arg("region")
    rows = await MeterStore(ctx.redis, ctx.meter_keys).top(first, last, region, limit)
    items = []
    for meter, kwh in rows:
        cid = ctx.directory.customer_of(meter)
        items.append({"meter_id": meter, "customer_id": cid, "kwh": round(kwh, 3)})
    return {"from": first.isoformat(), "to": last.isoformat(), "region": region, "items": items}


@route("GET", "/meters/faulty", summary="Meters whose health is poor (or the given states)", tag="meters",
       params=(Param("state", "comma-separated health states (default: poor)",
                     {"type": "string", "pattern": "^(good|fair|poor)(,(good|fair|poor))*$"}), *PAGE_PARAMS),
       response={"type": "object", "properties": {"total": {"type": "integer"}, "items": {"type": "array"}}})  # fmt: skip
async def faulty(ctx: ApiContext, req: ApiRequest) -> Any:
    """Meters failing validation rules, with the reasons, sorted by meter id."""
    states = tuple((req.arg("state") or ",".join(FAULTY_STATES)).split(","))
    bad = [s for s in states if s not in HEALTH_STATES]
    if bad:
        raise bad_request(f"unknown states {bad}; known: {', '.join(HEALTH_STATES)}", error="invalid_parameter")
    page = parse_page(req.query)
    health = HealthStore(ctx.redis, ctx.meter_keys)
    ids = sorted({m for s in states for m in await health.members(s)})
    chunk, nxt = window(ids, page)
    pipe = ctx.redis.pipeline(transaction=False)
    for mid in chunk:
        pipe.hgetall(health.key(mid))
    items = []
    for mid, raw in zip(chunk, await pipe.execute() if chunk else [], strict=True):
        reasons = text(raw.get(b"reasons", b""))
        items.append({"meter_id": mid, "customer_id": ctx.directory.customer_of(mid),
                      "state": text(raw.get(b"state", b"")), "reasons": reasons.split(",") if reasons else [],
                      "since": int(raw[b"since"]) if b"since" in raw else None})  # fmt: skip
    return {"states": list(states), "total": len(ids), "items": items, "next_offset": nxt}


@route("GET", "/meters/{id}", summary="One meter: registry facts, health with reasons, recent windows and alerts",
       tag="meters", errors=(404,))  # fmt: skip
async def get_meter(ctx: ApiContext, req: ApiRequest) -> Any:
    mid = req.path["id"]
    info = ctx.directory.meter_info(mid)
    health = await HealthStore(ctx.redis, ctx.meter_keys).get(mid)
    pipe = ctx.redis.pipeline(transaction=False)
    pipe.lrange(ctx.meter_keys.windows(mid), 0, -1)
    pipe.lrange(ctx.meter_keys.alerts(mid), 0, -1)
    windows, alerts = await pipe.execute()
    if info is None and health is None and not windows and not alerts:
        raise not_found(f"meter {mid!r}")
    return {
        "meter_id": mid,
        "registry": info,
        "health": health,
        "windows": [orjson.loads(w) for w in windows],
        "alerts": [orjson.loads(a) for a in alerts],
    }
