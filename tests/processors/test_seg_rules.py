"""Rule language: valid expressions, dict == columnar evaluation, every error kind with its position."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processors.rules import (
    CustomerAttributes,
    RuleSegmentProcessor,
    RuleSyntaxError,
    compile_rule,
    load_segment_definitions,
    load_segment_definitions_text,
)

ROWS: list[dict[str, Any]] = [
    {"region": "North", "tariff": "prepaid", "rfm.monetary_mean": 150.0, "rfm.r_score": 5, "health.state": "ok",
     "has_export": True},
    {"region": "South", "tariff": "postpaid", "rfm.monetary_mean": 90.0, "rfm.r_score": 1, "health.state": "fault",
     "has_export": False},
    {"region": "North", "tariff": "postpaid", "rfm.monetary_mean": 138.0, "rfm.r_score": 3, "health.state": None,
     "has_export": False},
    {"region": None, "tariff": "prepaid", "rfm.monetary_mean": None, "rfm.r_score": 2, "health.state": "degraded",
     "has_export": True},
]  # fmt: skip

CASES = [
    ('region == "North" and rfm.monetary_mean > 138', [True, False, False, False]),
    ("rfm.monetary_mean >= 138", [True, False, True, False]),
    ('region != "North"', [False, True, False, True]),
    ("rfm.monetary_mean != 90", [True, False, True, True]),
    ('region == "North" or rfm.r_score <= 2', [True, True, True, True]),
    ('not (region == "North")', [False, True, False, True]),
    ('tariff in ["prepaid", "x"] and not health.state in ["fault"]', [True, False, False, True]),
    ('health.state not in ["ok", "fault"]', [False, False, False, True]),
    ("health.state == null", [False, False, True, False]),
    ("health.state != null", [True, True, False, True]),
    ("rfm.monetary_mean == null", [False, False, False, True]),
    ('has_export and region == "North"', [True, False, False, False]),
    ("has_export == true", [True, False, False, True]),
    ("NOT has_export", [False, True, True, False]),
    ("rfm.r_score in [1, 2, 3] and (rfm.monetary_mean < 100 or rfm.monetary_mean > 140)",
     [False, True, False, False]),
    ('region < "O"', [True, False, True, False]),
    ('rfm.r_score > "3"', [False, False, False, False]),  # number vs string: false, not an error
    ("unknown.attr > 1 or rfm.r_score == 5.0", [True, False, False, False]),
    ("rfm.r_score >= -1e3 and rfm.r_score < 4.5", [False, True, True, True]),
    ('region == "No\\"rth"', [False, False, False, False]),
    ("rfm.r_score in []", [False, False, False, False]),
    ("rfm.r_score in [5,]", [True, False, False, False]),
]  # fmt: skip


def columns(rows: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """Rows as columns: numbers as float with NaN for missing, others as object arrays."""
    out: dict[str, np.ndarray] = {}
    for key in rows[0]:
        vals = [r.get(key) for r in rows]
        if all(v is None or (isinstance(v, int | float) and not isinstance(v, bool)) for v in vals):
            out[key] = np.array([np.nan if v is None else float(v) for v in vals])
        else:
            arr = np.empty(len(vals), dtype=object)
            arr[:] = vals
            out[key] = arr
    return out


@pytest.mark.parametrize(("text", "expected"), CASES)
def test_valid_expressions_on_dicts_and_columns(text: str, expected: list[bool]) -> None:
    rule = compile_rule(text)
    assert [rule.matches(r) for r in ROWS] == expected
    assert rule.mask(columns(ROWS)).tolist() == expected
    # the canonical source compiles to an equivalent rule
    again = compile_rule(rule.source)
    assert again.ast == rule.ast


def test_nested_and_flat_attributes_agree() -> None:
    rule = compile_rule("rfm.r_score >= 4 and features.share_night > 0.4")
    assert rule.matches({"rfm": {"r_score": 4}, "features": {"share_night": 0.5}})
    assert rule.matches({"rfm.r_score": 4, "features.share_night": 0.5})
    assert rule.names == {"rfm.r_score", "features.share_night"}


def test_precedence_not_and_or() -> None:
    # not > and > or: "a or b and not c" == "a or (b and (not c))"
    rule = compile_rule("x == 1 or y == 1 and not z == 1")
    assert rule.matches({"x": 1, "y": 0, "z": 1})
    assert rule.matches({"x": 0, "y": 1, "z": 0})
    assert not rule.matches({"x": 0, "y": 1, "z": 1})
    assert rule.source == "x == 1 or y == 1 and not (z == 1)"


ERRORS = [
    # (text, kind, line, column, message fragment)
    ('region = "North"', "unexpected_character", 1, 8, "did you mean '=='"),
    ("a ! b", "unexpected_character", 1, 3, "did you mean '!=' or 'not'"),
    ("a == 1 && b == 2", "unexpected_character", 1, 8, "use 'and'"),
    ("a == 1 @ 2", "unexpected_character", 1, 8, "unexpected character '@'"),
    ('region == "North', "unterminated_string", 1, 11, "unterminated string"),
    ('region == "a\\q"', "unexpected_character", 1, 13, "unknown escape"),
    ("x > 1.2.3", "invalid_number", 1, 5, "invalid number '1.2.3'"),
    ("x > 12abc", "invalid_number", 1, 5, "invalid number"),
    ("rfm. > 1", "unexpected_character", 1, 4, "cannot end with '.'"),
    ("x >", "unexpected_end", 1, 4, "expected a value"),
    ("(x > 1", "unexpected_end", 1, 1, "expected ')' to close"),
    ("(x > 1 y", "unexpected_token", 1, 8, "expected ')'"),
    ("x > 1)", "trailing_input", 1, 6, "')' without a matching '('"),
    ("x > 1 y < 2", "trailing_input", 1, 7, "missing 'and'/'or'"),
    ("x and or y", "unexpected_token", 1, 7, "expected a value, a name"),
    ("x in (1, 2)", "unexpected_token", 1, 6, "'[' to start a list"),
    ("x in [1, y]", "invalid_list", 1, 10, "list items must be literals"),
    ("x in [1 2]", "unexpected_token", 1, 9, "expected ',' or ']'"),
    ("x in [1,", "unexpected_end", 1, 9, "a literal or ']'"),
    ('1 < "a"', "type_mismatch", 1, 3, "cannot compare"),
    ("x < null", "type_mismatch", 1, 5, "cannot be ordered"),
    ("", "empty", 1, 1, "empty rule"),
    ('region == "North"\n  and\n  rfm.score >> 3', "unexpected_token", 3, 14, "expected a value"),
]


@pytest.mark.parametrize(("text", "kind", "line", "column", "fragment"), ERRORS)
def test_every_error_kind_names_its_position(text: str, kind: str, line: int, column: int, fragment: str) -> None:
    with pytest.raises(RuleSyntaxError) as info:
        compile_rule(text)
    err = info.value
    assert (err.kind, err.line, err.column) == (kind, line, column), str(err)
    assert fragment in str(err)
    assert f"line {line}, column {column}" in str(err)
    caret_line = str(err).splitlines()[-1]
    assert caret_line.index("^") == column - 1 + 2  # two-space indent before the source line


def test_unknown_attribute_with_known_names() -> None:
    with pytest.raises(RuleSyntaxError) as info:
        compile_rule('region == "North" and rfm.monetry_mean > 1', known_names={"region", "rfm.monetary_mean"})
    assert info.value.kind == "unknown_attribute" and info.value.column == 23
    assert "rfm.monetry_mean" in str(info.value)


def test_never_evaluates_python() -> None:
    # a call is not part of the language: it is a syntax error, not an evaluation
    with pytest.raises(RuleSyntaxError) as info:
        compile_rule("__import__('os').system('true')")
    assert info.value.kind == "unexpected_character" and info.value.column == 17
    # dunder-looking names are just attribute paths, read from the given mapping only
    rule = compile_rule("x.__class__ == 1")
    assert rule.matches({"x": 5}) is False and rule.matches({"x.__class__": 1}) is True


values = st.one_of(st.none(), st.integers(-5, 5).map(float), st.sampled_from(["North", "South", "a"]))


@settings(max_examples=100, deadline=None)
@given(st.lists(st.fixed_dictionaries({"a": values, "b": values}), min_size=1, max_size=12),
       st.sampled_from([t for t, _ in CASES] + ["a < b", "a == b or not a != 1", 'a in [1, "North", null]',
                                                  "b not in [2, 3] and a >= -1"]))
def test_columnar_equals_row_by_row(rows: list[dict[str, Any]], text: str) -> None:
    rule = compile_rule(text)
    cols = {k: np.array([r[k] for r in rows], dtype=object) for k in ("a", "b")}
    assert rule.mask(cols, len(rows)).tolist() == [rule.matches(r) for r in rows]


YAML = """
segments:
  - id: north_big
    name: North big spenders
    expression: region == "North" and rfm.monetary_mean > 138
    description: The example from the issue
  - id: campaign
    name: Spring campaign list
    expression: rfm.r_score >= 4
    mode: static
"""


def test_definitions_load_and_static_segments_freeze(tmp_path: Path) -> None:
    path = tmp_path / "segments.yaml"
    path.write_text(YAML)
    defs = load_segment_definitions(path)
    assert [(d.id, d.mode) for d in defs] == [("north_big", "dynamic"), ("campaign", "static")]
    proc = RuleSegmentProcessor(defs)
    t = datetime(2026, 3, 1, tzinfo=UTC)
    population = {f"C{i}": {"region": "North", "rfm.monetary_mean": 100.0 + 20 * i, "rfm.r_score": i} for i in range(6)}
    entries = proc.activate("campaign", population, t)
    assert {c.customer_id for c in entries} == {"C4", "C5"} and all(c.change == "entry" for c in entries)
    # C4's score drops: it stays in the static list, but dynamic segments follow it
    out = proc.process([CustomerAttributes(customer_id="C4", at=t,
                                           attributes={"region": "North", "rfm.monetary_mean": 100.0, "rfm.r_score": 1})])
    assert proc.segments_of("C4") == {"campaign"}
    assert [(c.change, c.segment_id) for c in out] == [("exit", "north_big")] or out == []
    out = proc.process([CustomerAttributes(customer_id="C0", at=t, attributes={"region": "North",
                                           "rfm.monetary_mean": 200.0, "rfm.r_score": 5})])
    assert [(c.change, c.segment_id, c.to_segment) for c in out] == [("entry", "north_big", "north_big")]
    assert proc.segments_of("C0") == {"north_big"}  # a static list does not grow after activation
    removed = proc.remove("campaign", t)
    assert {c.customer_id for c in removed} == {"C4", "C5"} and all(c.reason == "segment_removed" for c in removed)
    assert RuleSegmentProcessor.restore(proc.snapshot()).snapshot() == proc.snapshot()


def test_invalid_definition_names_segment_and_position() -> None:
    bad = YAML.replace('region == "North" and', 'region == "North" an')
    with pytest.raises(ValueError, match=r"segment 'north_big': invalid expression: line 1, column 19"):
        load_segment_definitions_text(bad)
    with pytest.raises(ValueError, match="duplicate segment ids: north_big"):
        load_segment_definitions_text(YAML.replace("id: campaign", "id: north_big"))
    with pytest.raises(ValueError, match=r"unknown attribute 'rfm\.r_score'"):
        load_segment_definitions_text(YAML, known_names={"region", "rfm.monetary_mean"})
    with pytest.raises(ValueError, match="mode"):
        load_segment_definitions_text(YAML.replace("mode: static", "mode: sometimes"))


def test_attributes_from_processor_outputs_satisfy_rules() -> None:
    from processors.features import DailyProfile, FeatureProcessor
    from processors.rfm import RfmProcessor
    from processors.rules import KNOWN_ATTRIBUTES, feature_attributes, registry_attributes, rfm_attributes
    from stream.schemas import Purchase

    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    a = RfmProcessor().process([Purchase(event_id="e1", customer_id="C1", ts=t0, event_type="PURCHASED",
                                         amount=150.0)])[0]
    f = FeatureProcessor().process([DailyProfile(
        customer_id="C1", day=date(2026, 1, 5), kwh_import=(1.0,) * 24)])[0]
    attrs = {**registry_attributes("North", "prepaid", False), **rfm_attributes(a), **feature_attributes(f)}
    assert set(attrs) <= KNOWN_ATTRIBUTES
    rule = compile_rule('region == "North" and rfm.monetary_mean > 138 and features.share_night >= 0.25 and '
                        "rfm.r_score >= 1 and rfm.segment != null", known_names=KNOWN_ATTRIBUTES)
    assert rule.matches(attrs)
