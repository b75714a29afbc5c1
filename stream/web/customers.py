"""``/customers``: one customer's full view, and search by id prefix, region or segment.

The customer view joins what the pipeline keeps in Redis (RFM values and
scores, features, current segments, the last 50 membership changes), the meter
registry (region, tariff, meters) with each meter's health, and the CLV and
churn risk of :mod:`processors.clv` computed from the RFM summary with the
fleet's fitted parameters. ``T_days``, ``days_since_last`` and everything
derived from them (CLV, churn risk, expected purchases) are computed at read
time for one observation time: ``as_of`` if given, else the fleet's merged
event clock (the same for every customer); the ``rfm`` object says which in
``as_of``.
"""

from __future__ import annotations

import bisect
import math
from datetime import UTC, datetime
from typing import Any

import numpy as np
import orjson

from processors import clv as clv_model
from processors.rfm.state import observed_at
from stream.state.customer_codec import FEATURES_FIELDS, RFM_FIELD, decode_features, decode_rfm, rfm_segment_names
from stream.state.health import HealthStore
from stream.web.context import CLV_DISCOUNT, CLV_HORIZON_DAYS, ApiContext, load_population, text
from stream.web.errors import bad_request, not_found
from stream.web.pagination import parse_page, window
from stream.web.routes import PAGE_PARAMS, SEGMENT_ID_SCHEMA, ApiRequest, Param, route
from stream.web.segments import member_set, require_segment

HIST_LIMIT = 50


def current_segments(
    fields: dict[str, Any], history: list[dict[str, Any]], catalogue: dict[str, dict[str, Any]]
) -> list[dict[str, Any]]:
    """The customer's segments (rfm, behaviour, every rule) with the reason and time of the entry.

    >>> current_segments({"seg:rfm": "loyal", "rule:vip": "vip", "rfm": "{}"},
    ...                  [{"family": "rfm", "segment_id": "loyal", "change": "entry", "reason": "score_change",
    ...                    "at": "2026-01-02T00:00:00Z"}], {"rfm:loyal": {"name": "Loyal"}})
    [{'id': 'rfm:loyal', 'family': 'rfm', 'segment_id': 'loyal', 'name': 'Loyal', 'reason': 'score_change', 'since': '2026-01-02T00:00:00Z'}, {'id': 'rule:vip', 'family': 'rule', 'segment_id': 'vip', 'name': None, 'reason': None, 'since': None}]
    """
    out = []
    for field, value in sorted(fields.items()):
        if field.startswith("seg:"):
            family, seg = field[4:], str(value)
        elif field.startswith("rule:"):
            family, seg = "rule", field[5:]
        else:
            continue
        entered = next(
            (
                h
                for h in history
                if h.get("family") == family and h.get("segment_id") == seg and h.get("change") == "entry"
            ),
            None,
        )
        out.append({
            "id": f"{family}:{seg}", "family": family, "segment_id": seg,
            "name": catalogue.get(f"{family}:{seg}", {}).get("name") or (entered or {}).get("segment_name"),
            "reason": (entered or {}).get("reason"), "since": (entered or {}).get("at"),
        })  # fmt: skip
    order = {"rfm": 0, "behaviour": 1, "rule": 2}
    return sorted(out, key=lambda s: (order.get(s["family"], 3), s["segment_id"]))


def parse_as_of(raw: str | None) -> float | None:
    """``as_of`` (epoch seconds or ISO 8601; naive = UTC) as epoch seconds, or a 400.

    >>> parse_as_of("1998-06-30"), parse_as_of("899164800")
    (899164800.0, 899164800.0)
    """
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        try:
            dt = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        except ValueError:
            raise bad_request(f"as_of must be epoch seconds or ISO 8601, got {raw!r}",
                              error="invalid_parameter") from None  # fmt: skip
        value = (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp()
    if not math.isfinite(value) or not 0 <= value < 4_102_444_800:  # 2100-01-01
        raise bad_request("as_of must be a time between 1970 and 2100", error="invalid_parameter")
    return value


def customer_value(model: clv_model.ClvModel | None, rfm: dict[str, Any] | None) -> dict[str, Any] | None:
    if model is None or not rfm:
        return None
    v = clv_model.customer_value(model, rfm, CLV_HORIZON_DAYS, CLV_DISCOUNT)
    return {
        "clv": round(v["clv"], 2),
        "churn_risk": round(v["churn.probability"], 4),
        "p_alive": round(v["p_alive"], 4),
        "expected_purchases_90d": round(v["expected_purchases_90d"], 3),
        "horizon_days": CLV_HORIZON_DAYS,
        "discount_rate_per_30d": CLV_DISCOUNT,
        "model": model.to_json(),
    }


CUSTOMER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "customer_id": {"type": "string"}, "region": {"type": ["string", "null"]},
        "rfm": {"type": ["object", "null"]}, "features": {"type": ["object", "null"]},
        "segments": {"type": "array"}, "history": {"type": "array"}, "meters": {"type": "array"},
        "value": {"type": ["object", "null"], "description": "clv, churn_risk = 1 - P(alive), p_alive"},
    },
}  # fmt: skip


@route("GET", "/customers/{id}", summary="One customer: RFM, features, segments with reasons, history, meters, CLV",
       tag="customers", response=CUSTOMER_SCHEMA, errors=(400, 404),
       params=(Param("as_of", "observation time for T, days since last purchase, CLV and churn (epoch seconds or "
                              "ISO 8601); default: the fleet's event clock"),))  # fmt: skip
async def get_customer(ctx: ApiContext, req: ApiRequest) -> Any:
    """RFM values and scores, features, current segments with the reason for each, history, meters, CLV and churn."""
    cid = req.path["id"]
    as_of = parse_as_of(req.arg("as_of"))
    pipe = ctx.redis.pipeline(transaction=False)
    pipe.hgetall(ctx.keys.customer(cid))
    pipe.lrange(ctx.keys.history(cid), 0, HIST_LIMIT - 1)
    raw, raw_hist = await pipe.execute()
    meta = ctx.directory.customers().get(cid)
    if not raw and meta is None:
        raise not_found(f"customer {cid!r}")
    fields = {text(k): v for k, v in raw.items()}
    catalogue = await ctx.catalogue()
    rfm = decode_rfm(fields.get(RFM_FIELD), cid, rfm_segment_names(catalogue))
    now = await ctx.observation_time(as_of)
    if rfm is not None and now is not None:
        rfm = observed_at(rfm, now)
    features = decode_features(*(fields.get(f) for f in FEATURES_FIELDS))
    history = [orjson.loads(h) for h in raw_hist]
    health = HealthStore(ctx.redis, ctx.meter_keys)
    meters = []
    for mid in meta.meters if meta else ():
        info = ctx.directory.meter_info(mid) or {"meter_id": mid}
        meters.append({**info, "health": await health.get(mid)})
    return {
        "customer_id": cid,
        "region": meta.region if meta else None,
        "tariff": meta.tariff if meta else None,
        "has_export": meta.has_export if meta else None,
        "rfm": rfm,
        "features": features,
        "segments": current_segments(
            {k: text(v) for k, v in fields.items() if k.startswith(("seg:", "rule:"))}, history, catalogue
        ),
        "history": history,
        "meters": meters,
        "value": customer_value(await ctx.clv(), rfm),
    }


@route("GET", "/customers", summary="Search customers by id prefix, region or segment", tag="customers",
       params=(Param("query", "customer id prefix"), Param("region", "only customers of this region"),
               Param("segment", "only members of this segment (family:id)", SEGMENT_ID_SCHEMA), *PAGE_PARAMS),
       errors=(400, 404),
       response={"type": "object", "properties": {"total": {"type": "integer"}, "items": {"type": "array"},
                                                  "next_offset": {"type": ["integer", "null"]}}})  # fmt: skip
async def search_customers(ctx: ApiContext, req: ApiRequest) -> Any:
    """Filters combine (and); results are sorted by id and paged with offset + limit."""
    page = parse_page(req.query)
    if page.cursor is not None:
        raise bad_request("search pages with offset, not cursor", error="invalid_parameter")
    prefix, region, segment = req.arg("query"), req.arg("region"), req.arg("segment")
    if prefix is not None and len(prefix) > 128:
        raise bad_request("query is too long (max 128 characters)", error="invalid_parameter")
    pop = await load_population(ctx)
    rows = np.arange(len(pop))
    if prefix:
        lo = bisect.bisect_left(pop.ids, prefix)
        hi = bisect.bisect_left(pop.ids, prefix + "\U0010ffff")
        rows = rows[lo:hi]
    if region:
        rows = rows[pop.columns["region"][rows] == region]
    if segment:
        family, seg, _ = await require_segment(ctx, segment)
        mask = pop.mask(await member_set(ctx, family, seg))
        rows = rows[mask[rows]]
    ids = [pop.ids[i] for i in rows.tolist()]
    chunk, nxt = window(ids, page)
    index = pop.index
    items = []
    for cid in chunk:
        i = index[cid]
        items.append({
            "customer_id": cid, "region": pop.columns["region"][i],
            "rfm_segment": pop.columns["rfm.segment"][i], "behaviour_segment": pop.columns["behaviour.segment"][i],
        })  # fmt: skip
    return {"total": len(ids), "items": items, "next_offset": nxt}
