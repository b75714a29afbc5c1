"""``/insights``: overlap and differentiators of segments, and suggested segments from a shallow tree.

All three read the cached population (:func:`stream.web.context.load_population`)
and the member sets; the computations are in :mod:`processors.insights`.
Suggestions come back with a ready ``save`` body for ``POST /segments``.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from processors.insights import differentiators, overlap, suggest
from processors.rules import KNOWN_ATTRIBUTES
from stream.web.attributes import ATTRIBUTE_LIST_SCHEMA, ATTRIBUTE_SCHEMA, ATTRIBUTES
from stream.web.context import ApiContext, load_population
from stream.web.errors import ApiError, bad_request
from stream.web.pagination import int_param
from stream.web.routes import SEGMENT_ID_PATTERN, SEGMENT_ID_SCHEMA, ApiRequest, Param, route
from stream.web.segments import member_set, require_segment

TARGET_ALIASES = {"churn_risk": "churn.probability", "monetary": "rfm.monetary_mean", "frequency": "rfm.frequency"}


def _require_data(pop: Any, names: list[str]) -> None:
    """409 ``no_data`` for known attributes no customer has a value for yet (unknown ones fail the schema)."""
    absent = [n for n in names if n not in pop.columns]
    if absent:
        raise ApiError(409, "no_data", f"no customer has a value for {', '.join(absent)} yet",
                       available=sorted(pop.columns))  # fmt: skip


async def _members(ctx: ApiContext, raw: str) -> tuple[str, set[str]]:
    family, seg, _ = await require_segment(ctx, raw)
    return f"{family}:{seg}", await member_set(ctx, family, seg)


@route("GET", "/insights/overlap", summary="Shared members of two segments, counts and shares", tag="insights",
       params=(Param("a", "first segment (family:id)", SEGMENT_ID_SCHEMA, required=True),
               Param("b", "second segment (family:id)", SEGMENT_ID_SCHEMA, required=True)),
       errors=(400, 404),
       response={"type": "object", "properties": {"shared": {"type": "integer"}, "share_of_a": {"type": "number"},
                                                  "share_of_b": {"type": "number"}}})  # fmt: skip
async def overlap_view(ctx: ApiContext, req: ApiRequest) -> Any:
    """Counts, shares of each side and Jaccard index, plus up to 20 shared ids."""
    a, b = req.arg("a"), req.arg("b")
    if not a or not b:
        raise bad_request("both a and b are required (segment ids family:id)", error="missing_parameter")
    (ka, ma), (kb, mb) = await _members(ctx, a), await _members(ctx, b)
    return {"a": ka, "b": kb, **overlap(ma, mb), "shared_sample": sorted(ma & mb)[:20]}


@route("GET", "/insights/differentiators", summary="Attributes that most separate two segments (or one from the rest)",
       tag="insights",
       params=(Param("a", "segment (family:id)", SEGMENT_ID_SCHEMA, required=True),
               Param("b", "other segment; default: every customer not in a", SEGMENT_ID_SCHEMA),
               Param("attributes", "comma-separated attributes (default: all)", ATTRIBUTE_LIST_SCHEMA),
               Param("top", "how many attributes (default 10)", {"type": "integer", "minimum": 1, "maximum": 100})),
       errors=(400, 404, 409),
       response={"type": "object", "properties": {"attributes": {"type": "array"}}})  # fmt: skip
async def differentiators_view(ctx: ApiContext, req: ApiRequest) -> Any:
    """Standardized mean difference (numbers) or total variation distance (categories), with both distributions."""
    a = req.arg("a")
    if not a:
        raise bad_request("a is required (segment id family:id)", error="missing_parameter")
    top = int_param(req.query, "top", 1, 100) or 10
    pop = await load_population(ctx)
    ka, ma = await _members(ctx, a)
    mask_a = pop.mask(ma)
    b = req.arg("b")
    if b:
        kb, mb = await _members(ctx, b)
        mask_b = pop.mask(mb)
    else:
        kb, mask_b = "everyone else", ~mask_a
    attrs_raw = req.arg("attributes")
    attrs = [x.strip() for x in attrs_raw.split(",") if x.strip()] if attrs_raw else None
    if attrs:
        _require_data(pop, attrs)
    if not mask_a.any() or not mask_b.any():
        raise ApiError(409, "empty_segment", "both groups need members in the population")
    skip = {"rfm.segment_name", "behaviour.segment_name"}
    names = attrs or [n for n in sorted(pop.columns) if n not in skip]
    out = await asyncio.to_thread(differentiators, pop, mask_a, mask_b, names)
    return {"a": ka, "b": kb, "size_a": int(mask_a.sum()), "size_b": int(mask_b.sum()),
            "attributes": out[:top]}  # fmt: skip


class SuggestRequest(BaseModel):
    """A target measure or categorical attribute and the attributes that may explain it."""

    model_config = ConfigDict(extra="forbid")

    target: str = Field(description="e.g. rfm.monetary_mean, clv, churn.probability (aliases: monetary, churn_risk)",
                        json_schema_extra={"enum": [*ATTRIBUTES, *TARGET_ALIASES]})  # fmt: skip
    influencers: list[str] = Field(min_length=1, max_length=30, json_schema_extra={"items": dict(ATTRIBUTE_SCHEMA)})
    target_value: str | float | bool | None = Field(
        default=None, description="categorical target: the value of interest"
    )
    max_depth: int = Field(default=3, ge=1, le=3)
    min_leaf: int | None = Field(default=None, ge=1, le=100_000_000,
                                 description="minimum customers per suggestion (default 5 %)")
    min_lift_change: float = Field(default=0.1, ge=0.0, description="only leaves with |lift - 1| at least this")
    within: str | None = Field(default=None, description="learn only over this segment's members (family:id)",
                               pattern=SEGMENT_ID_PATTERN, max_length=200)  # fmt: skip

    @field_validator("target")
    @classmethod
    def _known_target(cls, v: str) -> str:
        if v not in KNOWN_ATTRIBUTES and v not in TARGET_ALIASES:
            raise ValueError(f"unknown attribute {v!r}")
        return v

    @field_validator("influencers")
    @classmethod
    def _known_influencers(cls, v: list[str]) -> list[str]:
        unknown = [n for n in v if n not in KNOWN_ATTRIBUTES]
        if unknown:
            raise ValueError(f"unknown attributes {unknown}")
        return v


_OPS = (("<=", " le "), (">=", " ge "), ("!=", " ne "), ("==", " eq "), ("<", " lt "), (">", " gt "))


def _slug(rule: str) -> str:
    """A segment id for a suggested rule: readable words plus a short hash (distinct for ``<=`` and ``>``).

    >>> _slug("rfm.frequency <= 4") != _slug("rfm.frequency > 4")
    True
    >>> _slug('region == "North"')[:16]
    'region_eq_north_'
    """
    words = rule
    for op, word in _OPS:
        words = words.replace(op, word)
    base = re.sub(r"[^A-Za-z0-9]+", "_", words).strip("_").lower()[:40] or "suggested"
    return f"{base}_{hashlib.sha1(rule.encode()).hexdigest()[:6]}"


@route("POST", "/insights/suggest", summary="Suggested segments where a target is notably above or below the population",
       tag="insights", body=SuggestRequest, errors=(400, 404, 409, 422),
       description=("A shallow decision tree (depth ≤ 3, minimum leaf size) over the influencing attributes: "
                    "regression on a numeric target, classification on a categorical one. Each leaf is a rule "
                    "(the rule language) with size, share and lift, and a `save` body for POST /segments."),
       response={"type": "object", "properties": {"suggestions": {"type": "array"}}})  # fmt: skip
async def suggest_view(ctx: ApiContext, req: ApiRequest) -> Any:
    body = await req.model(SuggestRequest)
    pop = await load_population(ctx)
    target = TARGET_ALIASES.get(body.target, body.target)
    influencers = [n for n in dict.fromkeys(body.influencers) if n != target]  # the target cannot explain itself
    _require_data(pop, [target, *influencers])
    if not influencers:
        return {"target": target, "population": 0, "suggestions": [],
                "note": "no influencer other than the target itself"}  # fmt: skip
    rows = None
    if body.within:
        _, members = await _members(ctx, body.within)
        rows = pop.mask(members)
    col = pop.columns[target]
    if body.target_value is not None and pop.is_numeric(target) and (
        isinstance(body.target_value, bool) or not isinstance(body.target_value, int | float)
    ):  # the column's type comes from the data, so the document cannot say it: the state conflicts
        raise ApiError(409, "target_value_type", f"{target} holds numbers: target_value must be a number")
    present = int((~np.isnan(col)).sum()) if pop.is_numeric(target) else int(sum(v is not None for v in col))
    if present == 0:
        raise ApiError(409, "no_data", f"no customer has a value for {target}")
    found = await asyncio.to_thread(
        lambda: suggest(pop, target, influencers, max_depth=body.max_depth, min_leaf=body.min_leaf,
                        target_value=body.target_value, rows=rows, min_lift_change=body.min_lift_change)
    )  # fmt: skip
    for s in found:
        s["save"] = {"id": _slug(s["rule"]), "name": f"{target} {s['direction']}: {s['rule']}"[:128],
                     "expression": s["rule"], "mode": "dynamic",
                     "description": f"suggested for {target}, lift {s['lift']:.2f}"}  # fmt: skip
    return {"target": target, "population": present, "suggestions": found}
