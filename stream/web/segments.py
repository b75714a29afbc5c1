"""``/segments``: list, inspect, page, export, size history, define and delete segments, expand by lookalikes.

Segment ids in URLs are ``{family}:{id}`` - ``rfm:champions``,
``behaviour:B3``, ``rule:north_big`` - the same key as the catalogue hash
``{ns}:segments`` and the member set ``{ns}:seg:{family}:{id}``, so an id
read from ``segment.changes`` (family + segment_id) addresses the API
directly. Segments created through the API are always ``rule:`` segments;
their own id may use letters, digits, ``_``, ``-`` and ``.``.
"""

from __future__ import annotations

import asyncio
import csv
import io
import logging
import math
import re
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal

import numpy as np
import orjson
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, field_validator

from processors.clustering.model import FeatureSpec
from processors.features import LOAD_SHAPE_FEATURES
from processors.insights import Population, lookalikes
from processors.jsonbytes import dumps
from processors.rfm.state import observed_at
from processors.rules import KNOWN_ATTRIBUTES, compile_rule
from stream.state.customer_codec import RFM_FIELD, decode_rfm, rfm_segment_names
from stream.state.segments import MembershipStore, segment_sizes
from stream.web import history as hist
from stream.web.attributes import NUMERIC_ATTRIBUTE_SCHEMA, NUMERIC_ATTRIBUTES
from stream.web.context import (
    CLV_INPUTS,
    ApiContext,
    CustomerMeta,
    load_population,
    numeric_attributes,
    read_customers,
    text,
    value_columns,
)
from stream.web.errors import ApiError, bad_request, not_found
from stream.web.pagination import int_param, parse_page, window
from stream.web.routes import (
    PAGE_PARAMS_CURSOR,
    RULE_SEGMENT_ID_SCHEMA,
    SEGMENT_ID_PATTERN,
    SEGMENT_ID_SCHEMA,
    ApiRequest,
    Param,
    route,
)
from stream.web.rules import publish_changes, rule_changes, rules_key

log = logging.getLogger(__name__)

FAMILIES: tuple[str, ...] = ("rfm", "behaviour", "rule")
ID_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"
SEGMENT_PARAM = "segment id as family:id, e.g. rfm:champions, behaviour:B1, rule:north_big"
EXPORT_COLUMNS: tuple[str, ...] = (
    "customer_id", "region", "tariff", "rfm_segment", "behaviour_segment", "r_score", "f_score", "m_score",
    "frequency", "recency_days", "T_days", "days_since_last", "monetary_mean", "monetary_value", "total_spend",
    "clv", "churn_probability",
)  # fmt: skip
EXPORT_CHUNK = 5_000


def parse_segment_id(raw: str) -> tuple[str, str]:
    """``family:id`` → (family, id); 400 on a malformed id.

    >>> parse_segment_id("rfm:champions")
    ('rfm', 'champions')
    >>> parse_segment_id("champions")
    Traceback (most recent call last):
    ...
    stream.web.errors.ApiError: 400 invalid_segment_id: segment ids are family:id with family one of rfm, behaviour, rule; got 'champions'
    """
    family, sep, seg = raw.partition(":")
    if not sep or family not in FAMILIES or not seg or len(raw) > 200:
        raise bad_request(
            f"segment ids are family:id with family one of {', '.join(FAMILIES)}; got {raw!r}",
            error="invalid_segment_id",
        )
    return family, seg


async def member_set(ctx: ApiContext, family: str, seg: str) -> set[str]:
    """Every member of a segment (one SMEMBERS per shard, merged)."""
    return await MembershipStore(ctx.redis, ctx.ns, ctx.keys.shards).members(family, seg)


async def segment_size(ctx: ApiContext, family: str, seg: str) -> int:
    """A segment's size: the sum over its shards."""
    return (await segment_sizes(ctx.redis, ctx.keys, [(family, seg)]))[(family, seg)]


async def segment_entries(ctx: ApiContext) -> dict[str, dict[str, Any]]:
    """Catalogue entries merged with API rule definitions, keyed ``family:id``."""
    entries = {k: dict(v) for k, v in (await ctx.catalogue()).items()}
    for sid, d in (await ctx.rule_definitions()).items():
        entry = entries.setdefault(f"rule:{sid}", {"family": "rule", "id": sid})
        entry.update(name=d["name"], definition={k: d.get(k) for k in ("expression", "mode", "description", "source",
                                                                       "created_at", "activated_at")})  # fmt: skip
    return entries


async def require_segment(ctx: ApiContext, raw: str) -> tuple[str, str, dict[str, Any]]:
    """(family, id, entry) of an existing segment; 400 malformed, 404 unknown."""
    family, seg = parse_segment_id(raw)
    entries = await segment_entries(ctx)
    entry = entries.get(f"{family}:{seg}")
    if entry is None:
        raise not_found(f"segment {raw!r}")
    return family, seg, entry


async def describe(ctx: ApiContext, entries: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Segments with size and volatility (entries + exits on the latest day with moves / size)."""
    keys = sorted(entries)
    by_id = await segment_sizes(ctx.redis, ctx.keys, [(k.partition(":")[0], k.partition(":")[2]) for k in keys])
    sizes = [by_id[(k.partition(":")[0], k.partition(":")[2])] for k in keys]
    handler = getattr(ctx.engine, "segmentation", None)
    day, moves = await hist.fleet_moves(ctx.redis, ctx.ns, handler)
    out = []
    for k, size in zip(keys, sizes, strict=True):
        e = entries[k]
        entries_n, exits_n = moves.get(k, (0, 0))
        size = int(size)
        item = {
            "id": k,
            "family": e.get("family"),
            "segment_id": e.get("id"),
            "name": e.get("name"),
            "size": size,
            "volatility": {
                "day": day,
                "entries": entries_n,
                "exits": exits_n,
                "ratio": round((entries_n + exits_n) / size, 4) if size else (0.0 if not entries_n + exits_n else None),
            },
        }
        for extra in ("profile", "top_features", "model_version", "definition"):
            if extra in e:
                item[extra] = e[extra]
        out.append(item)
    return out


SEGMENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "id": {"type": "string"}, "family": {"type": "string"}, "segment_id": {"type": "string"},
        "name": {"type": ["string", "null"]}, "size": {"type": "integer"},
        "volatility": {"type": "object"}, "profile": {"type": "string"}, "definition": {"type": "object"},
    },
}  # fmt: skip


@route("GET", "/segments", summary="Every segment with family, definition or profile, size and volatility",
       tag="segments", response={"type": "object", "properties": {"segments": {"type": "array", "items": SEGMENT_SCHEMA}}},
       params=(Param("family", "only this family (rfm, behaviour, rule)", {"type": "string", "enum": list(FAMILIES)}),))  # fmt: skip
async def list_segments(ctx: ApiContext, req: ApiRequest) -> Any:
    """All segments: rfm and behaviour from the catalogue, rule segments with their definition."""
    family = req.arg("family")
    if family is not None and family not in FAMILIES:
        raise bad_request(f"family must be one of {', '.join(FAMILIES)}", error="invalid_parameter")
    entries = await segment_entries(ctx)
    if family:
        entries = {k: v for k, v in entries.items() if v.get("family") == family}
    return {"segments": await describe(ctx, entries)}


@route("GET", "/segments/{id}", summary="One segment", tag="segments", response=SEGMENT_SCHEMA, errors=(400, 404),
       path_schemas={"id": SEGMENT_ID_SCHEMA})  # fmt: skip
async def get_segment(ctx: ApiContext, req: ApiRequest) -> Any:
    """One segment with size, volatility and its definition (rule) or profile (behaviour)."""
    family, seg, entry = await require_segment(ctx, req.path["id"])
    return (await describe(ctx, {f"{family}:{seg}": entry}))[0]


@route("GET", "/segments/{id}/members", summary="Members of a segment (paginated)", tag="segments",
       params=PAGE_PARAMS_CURSOR, errors=(400, 404), path_schemas={"id": SEGMENT_ID_SCHEMA},
       response={"type": "object", "properties": {"items": {"type": "array", "items": {"type": "string"}},
                                                  "next_cursor": {"type": ["string", "null"]},
                                                  "next_offset": {"type": ["integer", "null"]}}})  # fmt: skip
async def members(ctx: ApiContext, req: ApiRequest) -> Any:
    """Customer ids: ``cursor`` pages (SSCAN, O(page), shard after shard) by default, ``offset`` pages in sorted order."""
    # a segment is one set per shard (stream.state.keys): the cursor carries the shard and the shard's SSCAN
    # cursor (sscan_cursor * shards + shard; with one shard, Redis' own cursor as before)
    family, seg, _ = await require_segment(ctx, req.path["id"])
    page = parse_page(req.query)
    keys = ctx.keys.members(family, seg)
    size = await segment_size(ctx, family, seg)
    if page.offset is not None:
        listed, nxt = window(sorted(await member_set(ctx, family, seg)), page)
        return {"segment": f"{family}:{seg}", "size": size, "items": listed, "next_offset": nxt}
    cursor, shard = divmod(page.cursor or 0, len(keys))
    items: list[str] = []
    while shard < len(keys):
        cursor, chunk = await ctx.redis.sscan(keys[shard], cursor, count=page.limit)
        items.extend(text(m) for m in chunk)
        if cursor == 0:
            shard += 1
        if len(items) >= page.limit:
            break
    more = shard < len(keys)
    return {"segment": f"{family}:{seg}", "size": size, "items": items,
            "next_cursor": str(cursor * len(keys) + shard) if more else None}  # fmt: skip


def _num(v: Any) -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return ""
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


@route("GET", "/segments/{id}/export.csv", summary="Members with their attributes as CSV (streamed)",
       tag="segments", content_type="text/csv", errors=(400, 404), path_schemas={"id": SEGMENT_ID_SCHEMA},
       response={"type": "string", "description": "CSV: " + ",".join(EXPORT_COLUMNS)})  # fmt: skip
async def export_csv(ctx: ApiContext, req: ApiRequest) -> Any:
    """Streams a chunked CSV read with SSCAN, one pipelined HMGET per chunk: memory stays O(chunk) at any size."""
    family, seg, _ = await require_segment(ctx, req.path["id"])
    keys = ctx.keys.members(family, seg)
    model = await ctx.clv()
    meta = ctx.directory.customers()
    resp = web.StreamResponse(
        status=200,
        headers={"Content-Type": "text/csv; charset=utf-8",
                 "Content-Disposition": f'attachment; filename="{family}_{seg}.csv"'},
    )  # fmt: skip
    resp.enable_chunked_encoding()
    await resp.prepare(req.raw)
    try:
        await _stream_rows(ctx, resp, keys, model, meta)
    except Exception:  # the status line is sent: all we can do is log and cut the connection
        log.exception("export of %s:%s failed mid-stream", family, seg)
        resp.force_close()
        return resp
    await resp.write_eof()
    return resp


async def _stream_rows(
    ctx: ApiContext, resp: web.StreamResponse, keys: list[str], model: Any, meta: Mapping[str, CustomerMeta]
) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(EXPORT_COLUMNS)
    cursor, shard = 0, 0
    seen: set[str] = set()
    segment_names = rfm_segment_names(await ctx.catalogue())
    now = await ctx.observation_time()
    while shard < len(keys):
        cursor, chunk = await ctx.redis.sscan(keys[shard], cursor, count=EXPORT_CHUNK)
        ids = [c for c in (text(m) for m in chunk) if c not in seen]
        seen.update(ids)
        if ids:
            rows = await read_customers(ctx.redis, ctx.keys, ids, (RFM_FIELD, "seg:behaviour"))
            rfms = [decode_rfm(r[0], cid, segment_names) or {} for cid, r in zip(ids, rows, strict=True)]
            if now is not None:
                rfms = [observed_at(r, now) if r else r for r in rfms]
            cols = {f"rfm.{k}": np.array([float(r.get(k, np.nan) if r.get(k) is not None else np.nan) for r in rfms])
                    for k in CLV_INPUTS}  # fmt: skip
            values = value_columns(model, cols)
            for i, (cid, rfm, row) in enumerate(zip(ids, rfms, rows, strict=True)):
                m: CustomerMeta | None = meta.get(cid)
                writer.writerow([
                    cid, m.region if m else "", m.tariff if m else "", rfm.get("segment", ""),
                    text(row[1]) if row[1] else "", _num(rfm.get("r_score")), _num(rfm.get("f_score")),
                    _num(rfm.get("m_score")), _num(rfm.get("frequency")), _num(rfm.get("recency_days")),
                    _num(rfm.get("T_days")), _num(rfm.get("days_since_last")), _num(rfm.get("monetary_mean")),
                    _num(rfm.get("monetary_value")), _num(rfm.get("total_spend")), _num(float(values["clv"][i])),
                    _num(float(values["churn.probability"][i])),
                ])  # fmt: skip
            await resp.write(buf.getvalue().encode())
            buf.seek(0)
            buf.truncate()
        elif buf.tell():
            await resp.write(buf.getvalue().encode())
            buf.seek(0)
            buf.truncate()
        if cursor == 0:
            shard += 1
    if buf.tell():
        await resp.write(buf.getvalue().encode())


#: ``since``: epoch seconds, an RFC 3339 date-time or a date (checked against this before the handler runs)
SINCE_SCHEMA = {"anyOf": [
    {"type": "string", "pattern": "^-?[0-9]{1,12}(\\.[0-9]{1,9})?$"},
    {"type": "string", "format": "date-time",
     "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})$"},
    {"type": "string", "format": "date", "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$"},
]}  # fmt: skip


@route("GET", "/segments/{id}/history", summary="Size of a segment over time", tag="segments", errors=(400, 404),
       path_schemas={"id": SEGMENT_ID_SCHEMA},
       params=(Param("since", "only samples at or after this time (epoch seconds, or an RFC 3339 date-time or date)",
                     SINCE_SCHEMA),
               Param("limit", "at most this many (latest) samples, default 1000",
                     {"type": "integer", "minimum": 1, "maximum": 10080})),
       response={"type": "object", "properties": {"samples": {"type": "array"}, "now": {"type": "object"}}})  # fmt: skip
async def history(ctx: ApiContext, req: ApiRequest) -> Any:
    """Stored size samples (one per minute while the sampler runs) plus the live size now."""
    family, seg, _ = await require_segment(ctx, req.path["id"])
    since = _parse_time(req.arg("since"))
    limit = int_param(req.query, "limit", 1, 10_080) or 1000
    samples = await hist.size_history(ctx.redis, ctx.ns, family, seg, since, limit)
    size = await segment_size(ctx, family, seg)
    return {"segment": f"{family}:{seg}", "interval_s": hist.DEFAULT_INTERVAL_S, "samples": samples,
            "now": {"ts": int(time.time()), "size": size}}  # fmt: skip


def _parse_time(raw: str | None) -> float | None:
    """``since`` (already checked against :data:`SINCE_SCHEMA`) as epoch seconds."""
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        pass
    else:
        if not math.isfinite(value):
            raise bad_request("since must be a finite time", error="invalid_parameter")
        return value
    # RFC 3339 allows t/z in lower case and a leap second (:60), which datetime does not read
    text = re.sub(r"(\.[0-9]{6})[0-9]+", r"\1", raw.upper().replace("Z", "+00:00").replace(":60", ":59"))
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise bad_request(f"since must be epoch seconds or ISO 8601, got {raw!r}", error="invalid_parameter") from None
    return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp()


# -- definitions -----------------------------------------------------------------------------------
class SegmentCreate(BaseModel):
    """A rule segment: an expression (static or dynamic) or, for a static segment, an explicit member list."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"oneOf": [
        {"required": ["expression"], "properties": {"expression": {"type": "string"}, "members": {"type": "null"}}},
        {"required": ["members", "mode"],
         "properties": {"members": {"type": "array"}, "expression": {"type": "null"}, "mode": {"const": "static"}}},
    ]})  # fmt: skip

    id: str = Field(pattern=ID_PATTERN, description="the new segment is addressed as rule:{id}")
    name: str = Field(min_length=1, max_length=128)
    expression: str | None = Field(default=None, min_length=1, max_length=10_000,
                                   description='rule language, e.g. region == "North" and clv > 500')  # fmt: skip
    members: list[str] | None = Field(default=None, description="static only: explicit customer ids")
    mode: Literal["static", "dynamic"] = "dynamic"
    description: str = Field(default="", max_length=2_000)


async def create_rule_segment(ctx: ApiContext, body: SegmentCreate, source: str = "api") -> dict[str, Any]:
    """Validate, store and (static) activate a rule segment; the answer of ``POST /segments``."""
    if (body.expression is None) == (body.members is None):
        raise bad_request("give exactly one of expression or members", error="invalid_definition")
    if body.members is not None and body.mode != "static":
        raise bad_request("a member list defines a static segment: set mode to static", error="invalid_definition")
    if body.expression is not None:
        try:
            compile_rule(body.expression, known_names=KNOWN_ATTRIBUTES)  # RuleSyntaxError -> 400 with position
        except RecursionError:  # the parser recurses per nesting level: ((((...)))) or not not not ...
            raise bad_request("the expression is nested too deeply", error="invalid_rule", kind="too_deep") from None
    existing = await segment_entries(ctx)
    if f"rule:{body.id}" in existing:
        raise ApiError(409, "conflict", f"segment rule:{body.id} already exists; DELETE it first")
    if body.mode == "static" and await ctx.redis.sismember(f"{ctx.ns}:rules:removed", body.id):
        # the workers may still be removing the dynamic segment of that id (its exits would hit the new members)
        raise ApiError(409, "conflict", f"rule:{body.id} was a dynamic segment; give the static one another id")
    now = datetime.now(UTC)
    definition: dict[str, Any] = {
        "id": body.id, "name": body.name, "expression": body.expression, "mode": body.mode,
        "description": body.description, "source": source, "created_at": now.isoformat(),
    }  # fmt: skip
    catalogue = {"family": "rule", "id": body.id, "name": body.name, "mode": body.mode}
    size: int | None = None
    unknown = 0
    if body.mode == "static":
        pop = await load_population(ctx, fresh=True)
        if body.expression is not None:
            mask = compile_rule(body.expression).mask(pop.columns, len(pop))
            chosen = [pop.ids[i] for i in np.nonzero(mask)[0].tolist()]
        else:
            known = pop.index
            wanted = sorted(set(body.members or []))
            chosen = [c for c in wanted if c in known]
            unknown = len(wanted) - len(chosen)
        definition.update(activated_at=now.isoformat(), size=len(chosen))
        await ctx.redis.hset(rules_key(ctx.ns), body.id, dumps(definition))
        await publish_changes(
            ctx, rule_changes(chosen, body.id, body.name, "entry", now), {f"rule:{body.id}": catalogue}
        )
        size = len(chosen)
    else:
        pipe = ctx.redis.pipeline(transaction=True)
        pipe.hset(rules_key(ctx.ns), body.id, dumps(definition))
        pipe.srem(f"{ctx.ns}:rules:removed", body.id)
        pipe.hset(f"{ctx.ns}:segments", f"rule:{body.id}", dumps(catalogue))
        pipe.incr(f"{ctx.ns}:rules:version")
        await pipe.execute()
    ctx.invalidate()
    out: dict[str, Any] = {"id": f"rule:{body.id}", "definition": definition,
                           "status": "active" if body.mode == "static" else "pending"}  # fmt: skip
    if size is not None:
        out["size"] = size
    if unknown:
        out["unknown_members"] = unknown
    return out


@route("POST", "/segments", summary="Define a rule segment (static or dynamic)", tag="segments",
       body=SegmentCreate, status=201, errors=(400, 409, 422),
       description=("Validated with the rule language against the known attributes (400 with line, column and "
                    "caret on error). A static segment is evaluated once over the current population and never "
                    "changes; a dynamic one is picked up by every worker's segmentation partitions within a "
                    "timer tick (status pending until then) and follows each customer's changes."))  # fmt: skip
async def create_segment(ctx: ApiContext, req: ApiRequest) -> Any:
    body = await req.model(SegmentCreate)
    return await create_rule_segment(ctx, body)


@route("DELETE", "/segments/{id}", summary="Delete a rule segment defined through the API", tag="segments",
       errors=(400, 404), path_schemas={"id": RULE_SEGMENT_ID_SCHEMA})  # fmt: skip
async def delete_segment(ctx: ApiContext, req: ApiRequest) -> Any:
    """Members exit (published on segment.changes); rfm and behaviour segments cannot be deleted."""
    family, seg = parse_segment_id(req.path["id"])
    if family != "rule":
        raise bad_request(f"only rule segments can be deleted; {family} segments come from the models",
                          error="not_deletable")  # fmt: skip
    raw = await ctx.redis.hget(rules_key(ctx.ns), seg)
    if raw is None:
        if f"rule:{seg}" in await ctx.catalogue():
            raise bad_request("this rule segment comes from the rules file, not the API; edit the file",
                              error="not_deletable")  # fmt: skip
        raise not_found(f"segment rule:{seg}")
    definition = orjson.loads(raw)
    members_now = sorted(await member_set(ctx, "rule", seg))
    now = datetime.now(UTC)
    static = definition.get("mode") == "static"
    if static:
        await publish_changes(
            ctx, rule_changes(members_now, seg, definition["name"], "exit", now, "segment_removed"), None
        )
    # dynamic: every worker drops the definition on its next timer tick and its members exit through the
    # pipeline (segment.changes + this projection), which keeps the partitions' books and Redis in step
    pipe = ctx.redis.pipeline(transaction=True)
    pipe.hdel(rules_key(ctx.ns), seg)
    pipe.hdel(f"{ctx.ns}:segments", f"rule:{seg}")
    if not static:
        pipe.sadd(f"{ctx.ns}:rules:removed", seg)
    pipe.incr(f"{ctx.ns}:rules:version")
    await pipe.execute()
    if static:  # the member sets, one per shard, each in its own slot: outside the transaction above
        pipe = ctx.redis.pipeline(transaction=False)
        for key in ctx.keys.members("rule", seg):
            pipe.delete(key)
        await pipe.execute()
    ctx.invalidate()
    return {
        "deleted": f"rule:{seg}",
        "mode": definition.get("mode"),
        "members_removed" if static else "members_exiting": len(members_now),
    }


# -- lookalikes ---------------------------------------------------------------------------------
class SaveAs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(pattern=ID_PATTERN)
    name: str = Field(min_length=1, max_length=128)
    description: str = Field(default="", max_length=2_000)


class ExpandRequest(BaseModel):
    """Lookalike search around a segment."""

    model_config = ConfigDict(extra="forbid")

    features: list[str] | None = Field(default=None, min_length=1, max_length=64,
                                       description="numeric attributes to compare on; default: the behaviour model's",
                                       json_schema_extra={"items": dict(NUMERIC_ATTRIBUTE_SCHEMA)})  # fmt: skip
    within: str | None = Field(default=None, description="only candidates inside this other segment (family:id)",
                               pattern=SEGMENT_ID_PATTERN, max_length=200)  # fmt: skip

    @field_validator("features")
    @classmethod
    def _numeric_features(cls, v: list[str] | None) -> list[str] | None:
        unknown = [n for n in v or () if n not in NUMERIC_ATTRIBUTES]
        if unknown:
            raise ValueError(f"not numeric attributes {unknown}")
        return v
    method: Literal["euclidean", "cosine"] = "euclidean"
    max_share: float = Field(default=0.2, gt=0.0, le=1.0, description="cap: at most this share of all customers")
    min_score: float = Field(default=0.55, ge=0.0, le=1.0)
    limit: int = Field(default=100, ge=1, le=1000, description="results returned (all found are counted and saved)")
    save_as: SaveAs | None = Field(default=None, description="save every lookalike found as a static rule segment")


def default_features(ctx: ApiContext, pop: Population) -> list[str]:
    """The behaviour model's features as population attributes (or the load-shape ones and RFM)."""
    names = [*FeatureSpec().names, "rfm.days_since_last", "rfm.frequency", "rfm.monetary_mean"]
    out = [n if n.startswith("rfm.") else f"features.{n}" for n in names]
    return [n for n in out if n in pop.columns] or [f"features.{n}" for n in LOAD_SHAPE_FEATURES]


@route("POST", "/segments/{id}/expand", summary="Lookalike customers outside a segment", tag="segments",
       body=ExpandRequest, errors=(400, 404, 409, 422), path_schemas={"id": SEGMENT_ID_SCHEMA},
       description=("Customers outside the segment (or inside `within`) ranked by similarity in 0–1 to the "
                    "segment's centroid on standardized features: very similar ≥ 0.85, similar ≥ 0.7, somewhat "
                    "similar ≥ 0.55, less similar below (only with a min_score under 0.55); at most max_share of "
                    "all customers. `save_as` stores them as a static rule segment. 409 `empty_segment`: the "
                    "segment has no members to expand from; 409 `conflict`: `save_as.id` is taken."))  # fmt: skip
async def expand(ctx: ApiContext, req: ApiRequest) -> Any:
    family, seg, _ = await require_segment(ctx, req.path["id"])
    body = await req.model(ExpandRequest)
    pop = await load_population(ctx)
    features = body.features or default_features(ctx, pop)
    numeric = set(numeric_attributes(pop))
    bad = [f for f in features if f not in numeric]
    if bad:  # numeric by name (the schema checked that), but no customer has a value yet
        raise ApiError(409, "no_data", f"no customer has a value for {', '.join(bad)} yet", available=sorted(numeric))
    seed = pop.mask(await member_set(ctx, family, seg))
    if not seed.any():
        raise ApiError(409, "empty_segment", f"segment {family}:{seg} has no members to expand from")
    candidates = None
    if body.within:
        wf, ws, _ = await require_segment(ctx, body.within)
        candidates = pop.mask(await member_set(ctx, wf, ws))
    found = await asyncio.to_thread(
        lambda: lookalikes(pop, seed, features, candidates=candidates, method=body.method,
                           max_share=body.max_share, min_score=body.min_score)
    )  # fmt: skip
    results = found.pop("results")
    out: dict[str, Any] = {
        "segment": f"{family}:{seg}",
        "found": len(results),
        **found,
        "results": results[: body.limit],
    }
    if body.save_as is not None:
        saved = await create_rule_segment(
            ctx,
            SegmentCreate(id=body.save_as.id, name=body.save_as.name, mode="static",
                          members=[r["customer_id"] for r in results],
                          description=body.save_as.description or f"lookalikes of {family}:{seg}"),
            source=f"expand:{family}:{seg}",
        )  # fmt: skip
        out["saved"] = {"id": saved["id"], "size": saved.get("size")}
    return out
