"""The ground-truth document of a simulator run, and a small reader for scorers.

The engine's detections and segments are scored against this file, so it
lists exactly what was produced: the fleet (which meter belongs to which
customer), every customer's archetype over time, every injected fault with
its window and every behaviour shift with the customers concerned.

Layout (JSON, written with orjson; columnar so a million customers stay small)::

    {"format": "meterseg-ground-truth", "version": 1,
     "seed", "start", "end", "days", "interval_minutes", "heartbeat_minutes", "envelope",
     "archetypes": [names...], "engagement_classes": [names...], "regions": [names...],
     "meters": {"ids": [...], "customer": [customer index...]},
     "customers": {"ids": [...], "archetype": [index at start...], "engagement": [index...],
                   "region": [index...], "tariff": ["prepaid"|"postpaid"...]},
     "archetype_changes": [{"at", "customer_id", "from", "to"}...],
     "purchasing_stopped": [{"at", "customer_id"}...],
     "faults": [{"kind", "meter_id", "customer_id", "start", "end", ...detail}...],
     "shifts": [{"day", "at", "share", "target", "customers": [ids...]}...],
     "counts": {"messages": {topic: n}, "faults": {kind: n}}}

Fault windows are ``[start, end)`` in UTC: a reading is affected when its
``interval_start`` is in the window, a heartbeat when its ``ts`` is (see
:mod:`simulators.faults` for what each kind looks like on the wire).

Examples:
    >>> gt = GroundTruth({"start": "2026-01-01T00:00:00Z", "archetypes": ["a", "b"],
    ...     "customers": {"ids": ["C1"], "archetype": [0]},
    ...     "archetype_changes": [{"at": "2026-01-02T00:00:00Z", "customer_id": "C1", "from": "a", "to": "b"}],
    ...     "faults": [], "shifts": []})
    >>> gt.archetype_at("C1", "2026-01-01T12:00:00Z"), gt.archetype_at("C1", "2026-01-02T00:00:00Z")
    ('a', 'b')
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson


def _parse(ts: str | datetime) -> datetime:
    if isinstance(ts, datetime):
        return ts.astimezone(UTC)
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).astimezone(UTC)


class GroundTruth:
    """Read access to a ground-truth document (for tests and scorers)."""

    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc
        names = doc["archetypes"]
        cust = doc["customers"]
        self._initial = {cid: names[a] for cid, a in zip(cust["ids"], cust["archetype"], strict=True)}
        self._changes: dict[str, list[tuple[datetime, str]]] = {}
        for ch in doc.get("archetype_changes", []):
            self._changes.setdefault(ch["customer_id"], []).append((_parse(ch["at"]), ch["to"]))

    @classmethod
    def load(cls, path: Path | str) -> GroundTruth:
        return cls(orjson.loads(Path(path).read_bytes()))

    @property
    def faults(self) -> list[dict[str, Any]]:
        return list(self.doc["faults"])

    @property
    def shifts(self) -> list[dict[str, Any]]:
        return list(self.doc["shifts"])

    def archetype_at(self, customer_id: str, ts: str | datetime) -> str:
        """The hidden archetype of a customer at an instant."""
        when = _parse(ts)
        current = self._initial[customer_id]
        for at, to in self._changes.get(customer_id, []):
            if at <= when:
                current = to
        return current

    def labels_at(self, ts: str | datetime) -> dict[str, str]:
        """Every customer's archetype at an instant (for ARI against behaviour segments)."""
        return {cid: self.archetype_at(cid, ts) for cid in self._initial}

    def faults_of(self, meter_id: str) -> list[dict[str, Any]]:
        return [f for f in self.doc["faults"] if f["meter_id"] == meter_id]


def write(doc: dict[str, Any], path: Path | str) -> Path:
    """Write a ground-truth document (numpy arrays allowed) atomically."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_suffix(p.suffix + ".tmp")
    tmp.write_bytes(orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY))
    tmp.replace(p)
    return p
