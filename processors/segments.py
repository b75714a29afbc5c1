"""Segment membership bookkeeping: change records, diffing, replay, volatility.

Every entry into and exit from a segment becomes one :class:`SegmentChange`
record on ``segment.changes``. The records are self-sufficient: a consumer that
reads only this topic rebuilds every membership with :func:`replay` (entries
add, exits remove). A move between two segments of a single-membership family
(``rfm``, ``behaviour``) is an exit from the old and an entry into the new,
both carrying ``from_segment``/``to_segment``; the ``rule`` family is
multi-membership (a customer can be in many rule segments), so its records
have only the segment concerned on one side.

:class:`MembershipBook` is the in-memory reference of what the stream keeps in
Redis (a set per segment, the current segments per customer) plus the
entry/exit counters behind the volatility metric. It also numbers the
effective changes of its partition (``seq``, 1, 2, 3 ...; checkpointed with
the book): the ``change_id`` on ``segment.changes`` includes it, so two
distinct changes never share an id - even the same transition of the same
customer twice within one second, which the event time alone could not tell
apart - and a replay of the same input from a checkpoint numbers its changes
exactly as the first run did.

Examples:
    >>> from datetime import UTC, datetime
    >>> at = datetime(2026, 1, 6, tzinfo=UTC)
    >>> ch = diff_memberships("C1", "rfm", {"loyal": "Loyal"}, {"champions": "Champions"}, at, "score_change")
    >>> [(c.change, c.segment_id, c.from_segment, c.to_segment) for c in ch]
    [('exit', 'loyal', 'loyal', 'champions'), ('entry', 'champions', 'loyal', 'champions')]
    >>> replay(ch)
    {('C1', 'rfm'): {'champions': 'Champions'}}
    >>> volatility(entries=3, exits=2, size=500)
    0.01
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from processors.clustering.assign import BehaviourChange
from processors.rfm.processor import RfmAssignment

Family = Literal["rfm", "behaviour", "rule"]
ChangeReason = Literal[
    "score_change",  # RFM scores moved the customer to another named segment
    "initial",  # first assignment (first behaviour model assignment)
    "distance_margin",  # behaviour: the new cluster is closer by the margin
    "persistence",  # behaviour: the new cluster stayed closer for `patience` updates
    "drift_reseed",  # behaviour: model re-seeded after a detected drift
    "reseed",  # behaviour: model re-seeded by the owner's periodic refresh
    "rule",  # rule segment: the expression's value changed (dynamic) or activation (static)
    "segment_removed",  # the segment definition was removed: every member exits
]
SINGLE_MEMBERSHIP: frozenset[str] = frozenset({"rfm", "behaviour"})


class SegmentChange(BaseModel):
    """One entry into or exit from a segment (a ``segment.changes`` message)."""

    model_config = ConfigDict(frozen=True)

    customer_id: str
    family: Family
    segment_id: str
    segment_name: str
    change: Literal["entry", "exit"]
    from_segment: str | None
    to_segment: str | None
    at: datetime
    reason: ChangeReason
    model_version: int | None = None
    seq: int | None = None  # position in the partition's sequence of effective changes (MembershipBook)

    @property
    def key(self) -> str:
        """Kafka key: the customer id (keeps a customer's changes in order)."""
        return self.customer_id


def diff_memberships(
    customer_id: str,
    family: Family,
    old: Mapping[str, str],
    new: Mapping[str, str],
    at: datetime,
    reason: ChangeReason,
    model_version: int | None = None,
) -> list[SegmentChange]:
    """Exit and entry records turning ``old`` into ``new`` (segment id -> name); exits first.

    For ``rfm``/``behaviour`` (at most one segment each) ``from_segment`` and
    ``to_segment`` are the customer's segment before and after; for ``rule``
    they name only the segment left or entered.
    """
    single = family in SINGLE_MEMBERSHIP
    before = next(iter(old), None) if single else None
    after = next(iter(new), None) if single else None
    out: list[SegmentChange] = []
    for sid in sorted(set(old) - set(new)):
        out.append(SegmentChange(
            customer_id=customer_id, family=family, segment_id=sid, segment_name=old[sid], change="exit",
            from_segment=sid, to_segment=after, at=at, reason=reason, model_version=model_version,
        ))
    for sid in sorted(set(new) - set(old)):
        out.append(SegmentChange(
            customer_id=customer_id, family=family, segment_id=sid, segment_name=new[sid], change="entry",
            from_segment=before, to_segment=sid, at=at, reason=reason, model_version=model_version,
        ))
    return out


def changes_from_rfm(a: RfmAssignment, model_version: int | None = None) -> list[SegmentChange]:
    """Segment changes implied by an RFM output record (none if the segment did not change)."""
    old = {a.previous_segment_id: a.previous_segment_name or ""} if a.previous_segment_id else {}
    new = {a.segment_id: a.segment_name or ""} if a.segment_id else {}
    return diff_memberships(a.customer_id, "rfm", old, new, a.at, "score_change", model_version)


def changes_from_behaviour(c: BehaviourChange) -> list[SegmentChange]:
    """Segment changes implied by a behaviour assignment change."""
    old = {c.from_id: c.from_name or c.from_id} if c.from_id else {}
    return diff_memberships(c.customer_id, "behaviour", old, {c.to_id: c.to_name}, c.at, c.reason,
                            c.model_version)


def replay(changes: Iterable[SegmentChange]) -> dict[tuple[str, str], dict[str, str]]:
    """Memberships rebuilt from change records alone: (customer, family) -> {segment id: name}."""
    out: dict[tuple[str, str], dict[str, str]] = {}
    for c in changes:
        cur = out.setdefault((c.customer_id, c.family), {})
        if c.change == "entry":
            cur[c.segment_id] = c.segment_name
        else:
            cur.pop(c.segment_id, None)
        if not cur:
            del out[(c.customer_id, c.family)]
    return out


def volatility(entries: int, exits: int, size: float, days: float = 1.0) -> float:
    """(entries + exits) / size per day; 0 for an empty segment with no traffic.

    Examples:
        >>> volatility(0, 0, 0)
        0.0
        >>> round(volatility(10, 10, 400, days=2.0), 4)
        0.025
    """
    if size <= 0:
        return 0.0 if entries + exits == 0 else float("inf")
    return (entries + exits) / size / days


class MembershipBook:
    """Current memberships and per-day entry/exit counts; the reference for the Redis layout.

    ``process(changes)`` applies change records (idempotently: an entry for a
    member or an exit for a non-member is ignored and not counted) and returns
    those that changed something.
    """

    def __init__(self) -> None:
        self.members: dict[tuple[str, str], dict[str, str]] = {}  # (customer, family) -> {seg: name}
        self.sizes: dict[tuple[str, str], int] = defaultdict(int)  # (family, segment) -> members
        self.names: dict[tuple[str, str], str] = {}
        self.counts: dict[tuple[str, str, str], list[int]] = {}  # (family, segment, day) -> [entries, exits]
        self.sequence = 0  # effective changes so far (the last one's seq)

    def process(self, batch: Sequence[SegmentChange]) -> list[SegmentChange]:
        """Apply change records; returns the ones that were effective."""
        out = []
        for c in batch:
            cur = self.members.setdefault((c.customer_id, c.family), {})
            seg = (c.family, c.segment_id)
            if c.change == "entry" and c.segment_id not in cur:
                cur[c.segment_id] = c.segment_name
                self.sizes[seg] += 1
                idx = 0
            elif c.change == "exit" and c.segment_id in cur:
                del cur[c.segment_id]
                self.sizes[seg] -= 1
                idx = 1
            else:
                continue
            self.names[seg] = c.segment_name
            self.counts.setdefault((c.family, c.segment_id, c.at.date().isoformat()), [0, 0])[idx] += 1
            self.sequence += 1
            out.append(c.model_copy(update={"seq": self.sequence}))
        return out

    def segments_of(self, customer_id: str, family: Family) -> dict[str, str]:
        """A customer's current segments in a family."""
        return dict(self.members.get((customer_id, family), {}))

    def volatility(self, day: date) -> dict[tuple[str, str], float]:
        """Per (family, segment): (entries + exits on ``day``) / current size."""
        key = day.isoformat()
        out = {}
        for (family, seg, d), (entries, exits) in self.counts.items():
            if d == key:
                out[(family, seg)] = volatility(entries, exits, self.sizes.get((family, seg), 0))
        return out

    def family_volatility(self, family: Family, day: date) -> float:
        """Fleet-level volatility of a family on a day: all entries + exits / all members."""
        key = day.isoformat()
        moves = sum(e + x for (f, _, d), (e, x) in self.counts.items() if f == family and d == key)
        size = sum(n for (f, _), n in self.sizes.items() if f == family)
        return volatility(moves, 0, size)

    def snapshot(self) -> dict[str, Any]:
        """JSON-serialisable state."""
        return {
            "members": [[c, f, segs] for (c, f), segs in sorted(self.members.items()) if segs],
            "counts": [[f, s, d, v] for (f, s, d), v in sorted(self.counts.items())],
            "names": [[f, s, n] for (f, s), n in sorted(self.names.items())],
            "sequence": self.sequence,
        }

    @classmethod
    def restore(cls, state: Mapping[str, Any]) -> MembershipBook:
        """Inverse of :meth:`snapshot` (sizes are recounted from the members)."""
        b = cls()
        for c, f, segs in state["members"]:
            b.members[(c, f)] = dict(segs)
            for s in segs:
                b.sizes[(f, s)] += 1
        b.counts = {(f, s, d): list(v) for f, s, d, v in state["counts"]}
        b.names = {(f, s): n for f, s, n in state["names"]}
        b.sequence = int(state.get("sequence", 0))
        return b
