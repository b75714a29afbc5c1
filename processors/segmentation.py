"""One customer partition's segmentation, composed: RFM → features → behaviour clusters → rule segments.

Input per poll: the partition's purchase events and daily load profiles
(both keyed by customer id, so co-partitioned). Output: every segment entry
and exit (``rfm``, ``behaviour`` and ``rule`` families), drift events, and the
per-customer records the stream side mirrors into Redis for the API.

What crosses partitions is not decided here: the RFM population (sketches
of the other partitions, :meth:`PartitionSegmentation.set_population`) and the
fleet-wide behaviour model (:meth:`PartitionSegmentation.set_model`, with
:meth:`PartitionSegmentation.flush_stats` feeding its single owner).

Examples:
    >>> from datetime import UTC, date, datetime
    >>> import orjson
    >>> from processors.columns import RawMessage
    >>> from processors.features import DailyProfile
    >>> seg = PartitionSegmentation(SegmentationConfig(rules_text='''
    ... segments:
    ...   - id: big_north
    ...     name: Big spenders in the North
    ...     expression: region == "North" and rfm.total_spend > 100
    ... '''))
    >>> buy = orjson.dumps({"event_id": "e1", "customer_id": "C1", "ts": "2026-01-05T10:00:00Z",
    ...                     "event_type": "PURCHASED", "amount": 150.0})
    >>> out = seg.process(([RawMessage(buy, "customer.purchases", 0, 0)], []),
    ...                   static={"C1": {"region": "North", "tariff": "prepaid", "has_export": False}})
    >>> sorted((c.family, c.segment_id, c.change) for c in out.changes)  # a population of one scores lowest
    [('rfm', 'lost', 'entry'), ('rule', 'big_north', 'entry')]
    >>> seg.process(([RawMessage(buy, "customer.purchases", 0, 1)], [])).changes   # re-delivery
    []
    >>> again = PartitionSegmentation.restore(seg.snapshot())
    >>> again.snapshot() == seg.snapshot()
    True
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Self, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from processors.clock import EventClock
from processors.clustering.assign import BehaviourAssigner, BehaviourChange, DriftEvent
from processors.clustering.model import ClusterModel, ClusterStats
from processors.columns import RawMessage, Reject, RejectReason
from processors.config_change import check_followable
from processors.features import CustomerFeatures, DailyProfile, FeatureProcessor
from processors.rfm.processor import RfmAssignment, RfmProcessor, RfmSketches
from processors.rfm.segment_map import RfmSegmentMap
from processors.rules.attributes import behaviour_attributes, feature_attributes, rfm_attributes
from processors.rules.segments import (
    CustomerAttributes,
    RuleSegmentProcessor,
    SegmentDefinition,
    load_segment_definitions,
    load_segment_definitions_text,
)
from processors.segments import MembershipBook, SegmentChange, changes_from_behaviour, changes_from_rfm
from stream.schemas import Purchase

M = TypeVar("M", bound=BaseModel)

SegmentationBatch = tuple[list[RawMessage], list[RawMessage]]
"""(purchase messages, daily-profile messages) of one partition and poll."""

STATE_SHAPING_SETTINGS = ("k",)
"""Settings a checkpointed partition cannot follow (refused on restore, see :meth:`PartitionSegmentation.restore`).

``k``: the fleet model's clusters, every partition's behaviour memberships and their drift history are built
on k clusters; the shared model is re-seeded by its owner only, so a partition cannot change k by itself.
Everything else follows at once: hysteresis, dwell and drift settings apply to the next assignment; the RFM
map re-names customers at once; ``lost_after_days`` applies at the next rescore; the rules file's definitions
replace those of the checkpoint (members enter and exit at once); the RFM sketches' resolutions are not
settings (the local sketches are rebuilt from the exact records on restore anyway).
"""


class SegmentationConfig(BaseModel):
    """Options of the segmentation pipeline (RFM, features, behaviour clusters, rules)."""

    model_config = ConfigDict(frozen=True)

    k: int = Field(
        default=10,
        ge=2,
        le=64,
        description="behaviour clusters (fixed: segments are a catalogue analysts act on, not a discovery; "
        "README 'Behaviour segments' gives the measured ceiling per k behind the default)",
    )
    margin: float = Field(
        default=0.5, ge=0.0, description="relative distance margin for an immediate move (0.5: on 1 500 real-profile "
        "meters, seed 1, 0.25 moved 0.5-1.4 % of a stationary fleet a day, 0.35 0.5-1.0 %, 0.5 0.1-0.75 %; a "
        "behaviour change still moves at once: its features restart next to its new cluster)"
    )
    patience: int = Field(default=4, ge=1, description="updates a closer cluster must persist to move otherwise")
    persist_margin: float = Field(
        default=0.25, ge=0.0, lt=1.0, description="relative margin a cluster must be closer by, ``patience`` "
        "updates in a row, for a move without the full margin (boundary customers stay put)"
    )
    min_dwell_days: int = Field(
        default=7,
        ge=0,
        description="days a customer stays in a behaviour segment before it may move again without a behaviour "
        "change (a feature restart waives it): no return to a left segment within a week",
    )
    change_grace_days: int = Field(default=3, ge=0, description="days after a behaviour change with no dwell")
    halflife_days: float = Field(
        default=7.0,
        gt=0.0,
        description="feature half-life in days (7: a week of load shape, so weekends do not move customers; "
        "real shifts still show within two weekdays through the features' shift rule)",
    )
    lost_after_days: float | None = Field(
        default=90.0,
        gt=0.0,
        description="absolute silence horizon: a customer without a purchase for longer gets R = 1, so never an "
        "active RFM segment whatever the population does (None: R is relative to the population only). 90 days: "
        "three missed monthly bill payments, or months without a prepaid top-up (most top up every 1-4 weeks)",
    )
    max_future_s: float | None = Field(
        default=7 * 86_400.0,
        ge=0.0,
        description="purchases dated more than this after their broker timestamp are dead-lettered (in_future) and "
        "move no clock (a purchase dated 2099 would otherwise age every customer of its partition by decades)",
    )
    max_past_s: float | None = Field(
        default=None,
        ge=0.0,
        description="purchases dated more than this before their broker timestamp are dead-lettered (too_late); "
        "None: any age (historical imports, e.g. CDNOW's 1997 purchases, are decades old)",
    )
    rfm_map_file: str | None = Field(default=None, description="YAML (R, F) → segment map; None: the shipped map")
    rules_file: str | None = Field(default=None, description="YAML rule-segment definitions loaded at start")
    rules_text: str | None = Field(default=None, description="inline rule definitions (tests)")
    model_halflife_updates: float = Field(
        default=20000.0, gt=0.0, description="forgetting of the model's guarded online step, in profile updates"
    )
    min_seed_samples: int = Field(
        default=512, ge=8, description="sampled vectors of established customers (a week seen) before the first model"
    )
    seeder: Literal["kmeans++", "river_kmeans"] = Field(
        default="kmeans++", description="(re-)fitting clusterer: scipy k-means with k-means++ seeding, or river's KMeans"
    )
    sample_cap: int = Field(default=4096, ge=16, description="vectors the owner keeps for (re-)fitting (per flush too)")
    seed_n_init: int = Field(default=8, ge=1, description="k-means++ runs per (re-)fit, lowest inertia wins")
    refresh_every_days: float = Field(default=1.0, ge=0.0, description="profile days between refits (0: never)")
    refresh_until_days: float = Field(
        default=11.0, ge=0.0, description="refits only in the first days of profiles (0: always): the first model "
        "comes after a week, refits reach the batch optimum as features mature; later the guarded online step "
        "follows and memberships stay calm"
    )
    refresh_gain: float = Field(default=0.05, ge=0.0, lt=1.0, description="inertia gain a refit must bring")
    match_radius: float = Field(
        default=0.0, ge=0.0, description="a refitted centroid keeps its matched id within this fraction of the "
        "distance to the old centroid's nearest neighbour (0: every matched cluster keeps its id)"
    )
    rename_radius: float = Field(
        default=0.5, ge=0.0, description="a segment's name may change only after its centroid moved this fraction "
        "of the distance to its nearest neighbour from where it was named"
    )
    small_share: float = Field(
        default=0.01, ge=0.0, lt=1.0, description="a segment under this share of customers is marked small, not named"
    )
    drift_delta: float = Field(
        default=0.01, ge=0.0, description="daily share of customers changing behaviour tolerated above its mean"
    )
    drift_threshold: float = Field(
        default=0.03, gt=0.0, description="cumulative excess share (PageHinkley threshold) that is a drift"
    )
    exchange_interval_s: float = Field(default=3.0, gt=0.0, description="how often population and model sync")
    clock_rate: float = Field(default=1.0, gt=0.0)
    clock_idle_s: float = Field(default=5.0, ge=0.0)

    def owner_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of the fleet's :class:`~processors.clustering.model.ModelOwner` (stream and backfill)."""
        return {
            "k": self.k, "halflife_updates": self.model_halflife_updates, "min_seed_samples": self.min_seed_samples,
            "sample_cap": self.sample_cap, "refresh_every": 0, "refresh_every_days": self.refresh_every_days,
            "refresh_until_days": self.refresh_until_days,
            "refresh_gain": self.refresh_gain, "seeder": self.seeder, "seed_n_init": self.seed_n_init,
            "match_radius": self.match_radius, "guard_online": True, "name_freeze_updates": 0.0,
            "rename_radius": self.rename_radius, "small_share": self.small_share,
        }


@dataclass(slots=True)
class SegmentationOutput:
    """What one call caused."""

    messages: int = 0
    purchases: dict[str, int] = field(default_factory=dict)  # event type -> applied
    duplicates: int = 0  # purchases whose event id was applied before (re-delivery, re-import)
    revenue: dict[str, float] = field(default_factory=dict)  # channel -> amount PURCHASED
    profiles: int = 0
    rejects: list[Reject] = field(default_factory=list)
    changes: list[SegmentChange] = field(default_factory=list)
    drift: list[DriftEvent] = field(default_factory=list)
    rfm: list[RfmAssignment] = field(default_factory=list)
    features: list[CustomerFeatures] = field(default_factory=list)
    behaviour: list[BehaviourChange] = field(default_factory=list)


class PartitionSegmentation:
    """Segmentation state of one customer partition (a :class:`~processors.base.StatefulProcessor`)."""

    def __init__(self, config: SegmentationConfig | None = None) -> None:
        self.config = config = config or SegmentationConfig()
        seg_map = RfmSegmentMap.load(config.rfm_map_file) if config.rfm_map_file else None
        self.rfm = RfmProcessor(seg_map, lost_after_days=config.lost_after_days)
        self.features = FeatureProcessor(halflife_days=config.halflife_days)
        self.assigner = BehaviourAssigner(
            margin=config.margin, patience=config.patience, persist_margin=config.persist_margin,
            min_dwell_days=config.min_dwell_days,
            change_grace_days=config.change_grace_days, drift_delta=config.drift_delta,
            drift_threshold=config.drift_threshold, sample_cap=config.sample_cap,
        )
        definitions = _configured_rules(config)
        self.rules = RuleSegmentProcessor(definitions)
        self.rule_file_ids = {d.id for d in definitions}  # rules from the settings (not the API's)
        self.book = MembershipBook()
        self.attributes: dict[str, dict[str, Any]] = {}
        self.clock = EventClock(config.clock_rate, config.clock_idle_s)
        self.config_changes: list[str] = []  # settings that differ from the restored checkpoint's (restore)
        # what a restore with changed settings caused (memberships, RFM records), out with the next output
        self.pending = SegmentationOutput()

    # -- processing ---------------------------------------------------------------------------
    def process(
        self,
        batch: SegmentationBatch,
        static: Mapping[str, Mapping[str, Any]] | None = None,
        wall: float | None = None,
    ) -> SegmentationOutput:
        """Apply purchases and daily profiles; ``static`` adds per-customer attributes (region, tariff, health)."""
        purchase_msgs, profile_msgs = batch
        out = self._take_pending(SegmentationOutput(messages=len(purchase_msgs) + len(profile_msgs)))
        touched: set[str] = set()
        purchases = self._plausible(purchase_msgs, out.rejects)
        if purchases:
            self.clock.observe(max(p.ts.timestamp() for p in purchases), wall)
            # purchase and revenue metrics count each event id once, as RFM does (a re-import changes none)
            fresh: set[tuple[str, str]] = set()
            for p in purchases:
                known = self.rfm.customers.get(p.customer_id)
                if (known is not None and known.has_seen(p.event_id)) or (p.customer_id, p.event_id) in fresh:
                    out.duplicates += 1
                    continue
                fresh.add((p.customer_id, p.event_id))
                out.purchases[p.event_type] = out.purchases.get(p.event_type, 0) + 1
                if p.event_type == "PURCHASED":
                    out.revenue[p.channel] = out.revenue.get(p.channel, 0.0) + p.amount
            for a in self.rfm.process(purchases):
                self._absorb_rfm(a, out, touched)
        profiles = _decode(DailyProfile, profile_msgs, out.rejects)
        if profiles:
            out.profiles = len(profiles)
            day_end = max(datetime.combine(p.day, datetime.min.time(), tzinfo=UTC) for p in profiles)
            self.clock.observe(day_end.timestamp() + 86_400, wall)
            feats = self.features.process(profiles)
            out.features += feats
            for f in feats:
                self.attributes.setdefault(f.customer_id, {}).update(feature_attributes(f))
                touched.add(f.customer_id)
            self._assign(feats, out, touched)
        for cid, attrs in (static or {}).items():
            current = self.attributes.setdefault(cid, {})
            if any(current.get(k) != v for k, v in attrs.items()):
                current.update(attrs)
                touched.add(cid)
        self._rules(touched, out)
        return out

    def _take_pending(self, out: SegmentationOutput) -> SegmentationOutput:
        out.changes, out.rfm = self.pending.changes, self.pending.rfm
        self.pending = SegmentationOutput()
        return out

    def _plausible(self, msgs: list[RawMessage], rejects: list[Reject]) -> list[Purchase]:
        """Decoded purchases, less those dated beyond the configured skew from their broker timestamp."""
        out: list[Purchase] = []
        future, past = self.config.max_future_s, self.config.max_past_s
        for msg, p in zip(*_decode_with_messages(Purchase, msgs, rejects), strict=True):
            if msg.timestamp_ms >= 0:
                skew = p.ts.timestamp() - msg.timestamp_ms / 1000.0
                if future is not None and skew > future:
                    rejects.append(Reject("in_future", f"purchase time {p.ts.isoformat()} is more than {future:g} s "
                                          "after the broker timestamp", msg.value, msg.topic, msg.partition,
                                          msg.offset))  # fmt: skip
                    continue
                if past is not None and -skew > past:
                    rejects.append(Reject("too_late", f"purchase time {p.ts.isoformat()} is more than {past:g} s "
                                          "before the broker timestamp", msg.value, msg.topic, msg.partition,
                                          msg.offset))  # fmt: skip
                    continue
            out.append(p)
        return out

    def rescore(
        self, wall: float | None = None, *, caught_up: bool = True, now: float | None = None
    ) -> SegmentationOutput:
        """Re-score RFM against the population at the event clock's now (customers age into At Risk, Lost).

        ``now`` is the fleet's observation time (the partitions' clocks merged); the later of it and this
        partition's own clock is used, so every partition ages its customers alike.
        """
        out = self._take_pending(SegmentationOutput())
        own = self.clock.now(wall, running=caught_up)
        if own is None and now is None:
            return out
        now = max(t for t in (own, now) if t is not None)
        touched: set[str] = set()
        for a in self.rfm.rescore(datetime.fromtimestamp(now, UTC)):
            self._absorb_rfm(a, out, touched)
        self._rules(touched, out)
        return out

    def _absorb_rfm(self, a: RfmAssignment, out: SegmentationOutput, touched: set[str]) -> None:
        out.rfm.append(a)
        self.attributes.setdefault(a.customer_id, {}).update(rfm_attributes(a))
        s = a.summary
        if s.days_since_last is not None:
            self.features.set_rfm(a.customer_id, s.days_since_last, float(s.frequency), s.monetary_mean)
        out.changes += self.book.process(changes_from_rfm(a))  # the behaviour model does not bear on RFM
        touched.add(a.customer_id)

    def _rules(self, touched: set[str], out: SegmentationOutput) -> None:
        if not touched or not self.rules.definitions:
            return
        at = datetime.fromtimestamp(self.clock.now(running=False) or 0.0, UTC)
        batch = [CustomerAttributes(customer_id=c, at=at, attributes=self.attributes[c]) for c in sorted(touched)]
        out.changes += self.book.process(self.rules.process(batch))

    # -- fleet-wide exchange ---------------------------------------------------------------------
    @property
    def model_version(self) -> int | None:
        return self.assigner.model.version if self.assigner.model is not None else None

    def set_model(self, model: ClusterModel | None) -> None:
        self.assigner.set_model(model)

    def adopt_model(self, model: ClusterModel | None) -> SegmentationOutput:
        """Swap in a fleet model; the *first* one assigns every customer with features at once.

        Without this, customers whose profiles arrived before the model was seeded would wait
        for their next daily profile (a day) for a behaviour segment.
        """
        first = self.assigner.model is None
        self.set_model(model)
        out = SegmentationOutput()
        if not first or self.assigner.model is None:
            return out
        current = [
            self.features.current(cid)
            for cid, st in sorted(self.features.customers.items())
            if st.n_days > 0 and st.last_day > 0
        ]
        touched: set[str] = set()
        self._assign(current, out, touched)
        self._rules(touched, out)
        return out

    def _assign(self, features: list[CustomerFeatures], out: SegmentationOutput, touched: set[str]) -> None:
        """Behaviour assignment of updated features: membership changes and drift events."""
        for item in self.assigner.process(features):
            if isinstance(item, DriftEvent):
                out.drift.append(item)
                continue
            out.behaviour.append(item)
            self.attributes.setdefault(item.customer_id, {}).update(behaviour_attributes(item))
            out.changes += self.book.process(changes_from_behaviour(item))
            touched.add(item.customer_id)

    def flush_stats(self) -> ClusterStats:
        return self.assigner.flush_stats()

    def local_sketches(self) -> RfmSketches:
        return self.rfm.local_sketches()

    def set_population(self, others: RfmSketches | None) -> None:
        """The merged RFM sketches of every *other* partition (fleet-wide scores)."""
        self.rfm.set_peers(others)

    # -- protocol -----------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        state = {
            "config": self.config.model_dump(mode="json"),
            "rfm": self.rfm.snapshot(),
            "features": self.features.snapshot(),
            "assigner": self.assigner.snapshot(),
            "rules": self.rules.snapshot(),
            "rule_file_ids": sorted(self.rule_file_ids),
            "book": self.book.snapshot(),
            "attributes": self.attributes,
            "clock": self.clock.snapshot(),
        }
        if self.pending.changes or self.pending.rfm:  # a restore's changes not out yet: out after the next one
            state["pending"] = {"changes": [c.model_dump(mode="json") for c in self.pending.changes],
                                "rfm": [a.model_dump(mode="json") for a in self.pending.rfm]}
        return state

    @classmethod
    def restore(
        cls, state: dict[str, Any], config: SegmentationConfig | None = None, api_rule_ids: Collection[str] = ()
    ) -> Self:
        """The checkpointed state with ``config`` (the current settings; default: the checkpoint's own).

        Thresholds, hysteresis, dwell, drift, the RFM map and ``lost_after_days``, the rules file and the
        clock follow the new config (``config_changes`` lists what changed); a change the state cannot follow
        (:data:`STATE_SHAPING_SETTINGS`) raises :class:`~processors.config_change.ConfigChangeError` naming it.
        What a change does to memberships (a new RFM map re-names customers, a changed rule re-evaluates
        everyone, a rule gone from the file lets its members exit) goes out with the next output.

        ``api_rule_ids``: rule segments managed through the API (``{ns}:rules``), never taken for rules of
        the file; only needed for a checkpoint from before ``rule_file_ids`` was kept.
        """
        stored = dict(state["config"])
        current = SegmentationConfig.model_validate(stored) if config is None else config
        changes = check_followable(
            stored, current.model_dump(mode="json"), STATE_SHAPING_SETTINGS, "METERSEG_SEGMENTATION__"
        )
        seg = cls(current)  # the current map and rules files, read (a bad file fails here, at start)
        seg.config_changes = changes
        rfm = state["rfm"]
        previous_map = RfmSegmentMap.from_dict(rfm["config"]["segment_map"])
        seg.rfm = RfmProcessor.restore({**rfm, "config": {**rfm["config"], "segment_map": seg.rfm.segment_map.to_dict(),
                                                          "lost_after_days": current.lost_after_days}})  # fmt: skip
        seg.features = FeatureProcessor.restore({**state["features"], "halflife_days": current.halflife_days})
        assigner = state["assigner"]
        seg.assigner = BehaviourAssigner.restore({**assigner, "config": {**assigner["config"], **_assigner_settings(current)}})
        seg.book = MembershipBook.restore(state["book"])
        seg.attributes = {c: dict(a) for c, a in state["attributes"].items()}
        seg.clock = EventClock.restore(state["clock"])
        seg.clock.rate, seg.clock.idle_after_s = current.clock_rate, current.clock_idle_s  # a setting, not state
        seg.rules = RuleSegmentProcessor.restore(state["rules"])
        if "pending" in state:
            seg.pending.changes = [SegmentChange.model_validate(c) for c in state["pending"]["changes"]]
            seg.pending.rfm = [RfmAssignment.model_validate(a) for a in state["pending"]["rfm"]]
        touched: set[str] = set()
        if previous_map.to_dict() != seg.rfm.segment_map.to_dict():
            seg.config_changes.append("rfm_map_file (the segment map)")
            for a in seg.rfm.remap(previous_map):
                seg._absorb_rfm(a, seg.pending, touched)
        kept = set(state["rule_file_ids"]) if "rule_file_ids" in state else set(seg.rules.definitions) - set(api_rule_ids)
        touched |= seg._follow_rules(_configured_rules(current), kept)
        seg._rules(touched, seg.pending)
        return seg

    def _follow_rules(self, definitions: list[SegmentDefinition], previous_ids: set[str]) -> set[str]:
        """Make the rules of the settings those of the restored state; the customers to re-evaluate."""
        wanted = {d.id: d for d in definitions}
        at = datetime.fromtimestamp(self.clock.now(running=False) or 0.0, UTC)
        for sid in sorted(previous_ids - set(wanted)):
            if sid in self.rules.definitions:
                self.config_changes.append(f"rules_file (segment {sid} removed)")
                self.pending.changes += self.book.process(self.rules.remove(sid, at))
        changed = False
        for sid, d in wanted.items():
            known = self.rules.definitions.get(sid)
            if known is None or known.model_dump() != d.model_dump():
                self.config_changes.append(f"rules_file (segment {sid} {'added' if known is None else 'changed'})")
                self.rules.add(d)
                changed = True
        self.rule_file_ids = set(wanted)
        return set(self.attributes) if changed else set()


def _configured_rules(config: SegmentationConfig) -> list[SegmentDefinition]:
    """The rule definitions the settings name (inline text, else the file, else none)."""
    if config.rules_text:
        return load_segment_definitions_text(config.rules_text)
    if config.rules_file:
        return load_segment_definitions(config.rules_file)
    return []


def _assigner_settings(config: SegmentationConfig) -> dict[str, Any]:
    """The behaviour assigner's settings (hysteresis, dwell, drift) as its checkpoint names them."""
    return {"margin": config.margin, "patience": config.patience, "persist_margin": config.persist_margin,
            "min_dwell_days": config.min_dwell_days, "change_grace_days": config.change_grace_days,
            "drift_delta": config.drift_delta, "drift_threshold": config.drift_threshold,
            "sample_cap": config.sample_cap}  # fmt: skip


def _decode(model: type[M], msgs: list[RawMessage], rejects: list[Reject]) -> list[M]:
    return _decode_with_messages(model, msgs, rejects)[1]


def _decode_with_messages(
    model: type[M], msgs: list[RawMessage], rejects: list[Reject]
) -> tuple[list[RawMessage], list[M]]:
    """(messages that decoded, their models); the others become ``rejects``."""
    kept: list[RawMessage] = []
    out: list[M] = []
    for msg in msgs:
        try:
            out.append(model.model_validate_json(msg.value))
            kept.append(msg)
        except ValidationError as exc:
            reason: RejectReason = (
                "invalid_json" if any(e["type"] == "json_invalid" for e in exc.errors()) else "schema"
            )
            rejects.append(Reject(reason, str(exc).splitlines()[0][:500], msg.value, msg.topic, msg.partition, msg.offset))
    return kept, out
