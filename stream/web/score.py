"""``POST /score``: which behaviour segment given features (or a customer's current features) would join.

Reads the fleet model the pipeline publishes in Redis (``{ns}:model``,
:class:`processors.clustering.model.ClusterModel`) and answers with the
nearest cluster and the distance to every cluster. Nothing is written: the
model, memberships and the customer's state stay as they are. Customers'
stored features are the day-level values (``mean_daily_kwh``, the four 6-hour shares, ...): the
model's hourly weekday/weekend shapes are approximated from them
(:func:`processors.features.shape_from_day_values`), so a customer's answer can differ from the
pipeline's, which sees the hourly shapes. The answer ignores hysteresis (the pipeline's margin and patience), so it says where a
customer *would* go, not when the pipeline will move them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
from pydantic import BaseModel, ConfigDict, Field, JsonValue

from processors.clustering.model import ClusterModel, FeatureSpec
from processors.features import LOAD_SHAPE_FEATURES, shape_from_day_values
from stream.state.customer_codec import FEATURES_FIELDS, decode_features
from stream.web.context import ApiContext, text
from stream.web.errors import ApiError, bad_request, not_found
from stream.web.routes import ApiRequest, route

#: the behaviour model's feature names and the day-level ones they are approximated from, bare or prefixed
_NAMES = list(dict.fromkeys([*FeatureSpec().names, *LOAD_SHAPE_FEATURES]))
FEATURE_NAMES: list[JsonValue] = [*_NAMES, *(f"features.{n}" for n in _NAMES)]


class ScoreRequest(BaseModel):
    """Either feature values (names as in the model, ``features.`` prefix optional) or a customer id."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"oneOf": [
        {"required": ["features"], "properties": {"features": {"type": "object"}, "customer_id": {"type": "null"}}},
        {"required": ["customer_id"], "properties": {"customer_id": {"type": "string"}, "features": {"type": "null"}}},
    ]})  # fmt: skip

    features: dict[str, float] | None = Field(
        default=None, description="feature name -> value; missing ones are taken at the fleet average",
        json_schema_extra={"propertyNames": {"enum": FEATURE_NAMES}},
    )
    customer_id: str | None = Field(default=None, max_length=128)


async def fleet_model(ctx: ApiContext) -> ClusterModel:
    raw = await ctx.redis.get(f"{ctx.ns}:model")
    if raw is None:
        raise ApiError(503, "model_not_ready", "no behaviour model has been fitted yet")
    return ClusterModel.restore(orjson.loads(raw))


def score_vector(model: ClusterModel, values: dict[str, float]) -> dict[str, Any]:
    """Nearest cluster and distances to every cluster for one customer's feature values.

    ``values`` may name the model's features or the day-level ones (:data:`LOAD_SHAPE_FEATURES`), from
    which the model's are approximated; a model feature still missing sits at the fleet average.
    """
    given = set(values)
    values = {**shape_from_day_values(values), **values}
    x = model.spec.vector(values)
    for i, name in enumerate(model.spec.names):
        if name not in values:  # a missing feature sits at the fleet average, neutral for every distance
            x[i] = model.scale_mean[i]
    d = model.distances(x)[0]
    order = np.argsort(d)
    infos = {c.id: c for c in model.clusters()}
    best = model.ids[int(order[0])]
    return {
        "model_version": model.version,
        "segment": {"id": f"behaviour:{best}", "segment_id": best, "name": infos[best].name,
                    "profile": infos[best].profile, "distance": round(float(d[order[0]]), 4)},
        "distances": [{"id": f"behaviour:{model.ids[i]}", "name": model.names[i], "distance": round(float(d[i]), 4)}
                      for i in order.tolist()],
        "features_used": {n: values.get(n) for n in model.spec.names},
        "missing": [n for n in dict.fromkeys([*LOAD_SHAPE_FEATURES, *model.spec.names])
                    if n not in given and n not in values],
    }  # fmt: skip


@route("POST", "/score", summary="Behaviour segment for given features or a customer (no state change)",
       tag="score", body=ScoreRequest, errors=(400, 404, 422, 503),
       response={"type": "object", "properties": {"segment": {"type": "object"}, "distances": {"type": "array"},
                                                  "model_version": {"type": "integer"}}})  # fmt: skip
async def score(ctx: ApiContext, req: ApiRequest) -> Any:
    body = await req.model(ScoreRequest)
    if (body.features is None) == (body.customer_id is None):
        raise bad_request("give exactly one of features or customer_id", error="invalid_request")
    model = await fleet_model(ctx)
    known = set(model.spec.names) | set(LOAD_SHAPE_FEATURES)
    if body.features is not None:
        values = {k.removeprefix("features."): v for k, v in body.features.items()}
        unknown = sorted(set(values) - known)
        if unknown:
            raise bad_request(f"unknown features: {', '.join(unknown)}", error="unknown_feature", known=sorted(known))
        if not all(np.isfinite(v) for v in values.values()):
            raise bad_request("feature values must be finite numbers", error="invalid_value")
        out = score_vector(model, values)
    else:
        head, tail, current = await ctx.redis.hmget(
            ctx.keys.customer(body.customer_id), [*FEATURES_FIELDS, "seg:behaviour"]
        )
        feats = decode_features(head, tail)
        if feats is None:
            raise not_found(f"features of customer {body.customer_id!r}")
        values = {k: float(v) for k, v in feats.items() if k in known and isinstance(v, int | float)}
        out = score_vector(model, values)
        out["customer_id"] = body.customer_id
        out["current_segment"] = f"behaviour:{text(current)}" if current else None
    return out
