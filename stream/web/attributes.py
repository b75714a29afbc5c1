"""The attribute names the API's insight routes accept, as JSON Schemas the OpenAPI document publishes.

Why enums: a request naming an attribute that does not exist is invalid by the document (400 before the
handler runs), so the document and the server agree; a *known* attribute that no customer has a value for
yet is valid and answered with 409 ``no_data`` (the state, not the request, is the problem).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from processors.rules import KNOWN_ATTRIBUTES

#: known attributes whose values are not numbers
CATEGORICAL_ATTRIBUTES = frozenset(
    {"region", "tariff", "health.state", "has_export", "behaviour.segment", "behaviour.segment_name",
     "rfm.segment", "rfm.segment_name"}
)  # fmt: skip
ATTRIBUTES: tuple[str, ...] = tuple(sorted(KNOWN_ATTRIBUTES))
NUMERIC_ATTRIBUTES: tuple[str, ...] = tuple(a for a in ATTRIBUTES if a not in CATEGORICAL_ATTRIBUTES)
ATTRIBUTE_SCHEMA: Mapping[str, Any] = {"type": "string", "enum": list(ATTRIBUTES)}
NUMERIC_ATTRIBUTE_SCHEMA: Mapping[str, Any] = {"type": "string", "enum": list(NUMERIC_ATTRIBUTES)}
_ONE = "(" + "|".join(re.escape(a) for a in ATTRIBUTES) + ")"
#: a comma-separated list of known attributes (query parameters)
ATTRIBUTE_LIST_SCHEMA: Mapping[str, Any] = {"type": "string", "pattern": f"^{_ONE}(,{_ONE})*$"}
