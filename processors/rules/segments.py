"""Rule segments: definitions (YAML), static vs dynamic membership, change records.

A :class:`SegmentDefinition` names a rule. *Dynamic* segments are re-evaluated
on every profile change of a customer (:meth:`RuleSegmentProcessor.process`);
*static* segments take a snapshot of the population when activated
(:meth:`RuleSegmentProcessor.activate`) and never change afterwards - "the
customers who were Champions in the North on 1 March", a campaign list.

Definitions file::

    segments:
      - id: north_big_spenders
        name: North big spenders
        expression: region == "North" and rfm.monetary_mean > 138
        mode: dynamic
        description: ...

An invalid expression fails the whole file with the segment id, the line and
column inside the expression, and a caret.

Examples:
    >>> from datetime import UTC, datetime
    >>> defs = load_segment_definitions_text('''
    ... segments:
    ...   - id: north_big
    ...     name: North big spenders
    ...     expression: region == "North" and rfm.monetary_mean > 138
    ... ''')
    >>> proc = RuleSegmentProcessor(defs)
    >>> at = datetime(2026, 1, 6, tzinfo=UTC)
    >>> out = proc.process([CustomerAttributes(customer_id="C1", at=at,
    ...                                         attributes={"region": "North", "rfm.monetary_mean": 150})])
    >>> [(c.change, c.segment_id, c.reason) for c in out]
    [('entry', 'north_big', 'rule')]
    >>> out = proc.process([CustomerAttributes(customer_id="C1", at=at,
    ...                                         attributes={"region": "North", "rfm.monetary_mean": 99})])
    >>> [(c.change, c.segment_id) for c in out]
    [('exit', 'north_big')]
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from processors.rules.language import Rule, RuleSyntaxError, compile_rule
from processors.segments import SegmentChange, diff_memberships


class SegmentDefinition(BaseModel):
    """One rule segment: stable id, display name, expression, static or dynamic."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")
    name: str = Field(min_length=1, max_length=128)
    expression: str = Field(min_length=1, max_length=10_000)
    mode: Literal["static", "dynamic"] = "dynamic"
    description: str = ""
    _rule: Rule | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _compile(self) -> SegmentDefinition:
        try:
            self._rule = compile_rule(self.expression)
        except RuleSyntaxError as e:
            raise ValueError(f"segment {self.id!r}: invalid expression: {e}") from None
        return self

    @property
    def rule(self) -> Rule:
        """The compiled expression."""
        assert self._rule is not None
        return self._rule

    def check_names(self, known_names: Collection[str]) -> None:
        """Refuse attributes outside ``known_names`` (raises :class:`RuleSyntaxError`)."""
        compile_rule(self.expression, known_names)


def parse_segment_definitions(data: Any, known_names: Collection[str] | None = None) -> list[SegmentDefinition]:
    """Definitions from parsed YAML/JSON ``{"segments": [...]}``; duplicate ids are refused."""
    if not isinstance(data, Mapping) or not isinstance(data.get("segments"), list):
        raise ValueError("segment definitions must be a mapping with a 'segments' list")
    defs = [SegmentDefinition.model_validate(d) for d in data["segments"]]
    ids = [d.id for d in defs]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise ValueError(f"duplicate segment ids: {', '.join(dupes)}")
    if known_names is not None:
        for d in defs:
            try:
                d.check_names(known_names)
            except RuleSyntaxError as e:
                raise ValueError(f"segment {d.id!r}: invalid expression: {e}") from None
    return defs


def load_segment_definitions_text(text: str, known_names: Collection[str] | None = None) -> list[SegmentDefinition]:
    """Definitions from YAML text."""
    return parse_segment_definitions(yaml.safe_load(text), known_names)


def load_segment_definitions(path: str | Path, known_names: Collection[str] | None = None) -> list[SegmentDefinition]:
    """Definitions from a YAML file."""
    return load_segment_definitions_text(Path(path).read_text(encoding="utf-8"), known_names)


class CustomerAttributes(BaseModel):
    """Input record: a customer's current attributes after a profile change.

    Keys are flat dotted names (``"rfm.monetary_mean"``) or nested mappings;
    e.g. region, tariff, ``rfm.*`` values and scores, ``features.*``,
    ``health.state``, ``behaviour.segment``.
    """

    model_config = ConfigDict(frozen=True)

    customer_id: str
    at: datetime
    attributes: dict[str, Any]


class RuleSegmentProcessor:
    """Keeps rule-segment memberships and emits ``rule``-family :class:`SegmentChange` records.

    Args:
        definitions: the segments; static ones are empty until :meth:`activate`.
    """

    def __init__(self, definitions: Iterable[SegmentDefinition] = ()) -> None:
        self.definitions: dict[str, SegmentDefinition] = {}
        self.members: dict[str, set[str]] = {}  # segment id -> customer ids
        self.activated: dict[str, str | None] = {}  # static segment id -> activation time (ISO)
        for d in definitions:
            self.add(d)

    def add(self, definition: SegmentDefinition) -> None:
        """Add (or replace) a definition; a replaced dynamic segment re-evaluates on next updates."""
        self.definitions[definition.id] = definition
        self.members.setdefault(definition.id, set())
        if definition.mode == "static":
            self.activated.setdefault(definition.id, None)

    def remove(self, segment_id: str, at: datetime) -> list[SegmentChange]:
        """Drop a definition; every member exits (reason ``segment_removed``)."""
        d = self.definitions.pop(segment_id)
        members = self.members.pop(segment_id, set())
        self.activated.pop(segment_id, None)
        return [
            SegmentChange(customer_id=c, family="rule", segment_id=d.id, segment_name=d.name, change="exit",
                          from_segment=d.id, to_segment=None, at=at, reason="segment_removed")
            for c in sorted(members)
        ]

    def activate(
        self, segment_id: str, population: Mapping[str, Mapping[str, Any]], at: datetime
    ) -> list[SegmentChange]:
        """Freeze a static segment's membership from ``population`` (customer -> attributes)."""
        d = self.definitions[segment_id]
        if d.mode != "static":
            raise ValueError(f"segment {segment_id!r} is dynamic; only static segments are activated")
        new = {c for c, attrs in population.items() if d.rule.matches(attrs)}
        old = self.members.get(segment_id, set())
        self.members[segment_id] = new
        self.activated[segment_id] = at.isoformat()
        out: list[SegmentChange] = []
        for c in sorted(old | new):
            out += diff_memberships(c, "rule", {d.id: d.name} if c in old else {},
                                    {d.id: d.name} if c in new else {}, at, "rule")
        return out

    def segments_of(self, customer_id: str) -> set[str]:
        """Rule segments a customer is in."""
        return {s for s, m in self.members.items() if customer_id in m}

    def process(self, batch: Sequence[CustomerAttributes]) -> list[SegmentChange]:
        """Re-evaluate every dynamic segment for each updated customer; entries and exits."""
        dynamic = [d for d in self.definitions.values() if d.mode == "dynamic"]
        out: list[SegmentChange] = []
        for upd in batch:
            old: dict[str, str] = {}
            new: dict[str, str] = {}
            for d in dynamic:
                members = self.members[d.id]
                if upd.customer_id in members:
                    old[d.id] = d.name
                if d.rule.matches(upd.attributes):
                    new[d.id] = d.name
                    members.add(upd.customer_id)
                else:
                    members.discard(upd.customer_id)
            out += diff_memberships(upd.customer_id, "rule", old, new, upd.at, "rule")
        return out

    def snapshot(self) -> dict[str, Any]:
        """JSON-serialisable state (definitions, members, activation times)."""
        return {
            "definitions": [d.model_dump() for d in self.definitions.values()],
            "members": {s: sorted(m) for s, m in sorted(self.members.items())},
            "activated": dict(sorted(self.activated.items())),
        }

    @classmethod
    def restore(cls, state: Mapping[str, Any]) -> RuleSegmentProcessor:
        """Inverse of :meth:`snapshot`."""
        p = cls(SegmentDefinition.model_validate(d) for d in state["definitions"])
        p.members = {s: set(m) for s, m in state["members"].items()}
        p.activated = dict(state["activated"])
        return p
