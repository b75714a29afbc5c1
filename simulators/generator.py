"""The simulator's interval loop: fleet -> readings, heartbeats, purchases, operations -> a sink.

One pass per tick of the simulated clock (see :mod:`simulators.clock`):

1. on a new simulated day: apply the behaviour shifts due that day, re-register
   meters that adopted solar, draw the day's purchases and operations events;
2. when a reading interval ends: draw the fleet's consumption (one numpy draw),
   apply the faults active in that interval, update registers, serialise
   readings per partition in chunks (one reading per message, or ``ReadingBatch``
   envelopes per head end) and hand them to the sink;
3. when a heartbeat is due: the same for heartbeats;
4. release customer-side events whose time stamp has been reached.

Meters are grouped by Kafka partition once at start (murmur2 of the meter id,
as Kafka's default partitioner), so every list handed to the sink is already
one partition's and envelopes only hold meters of one partition, keyed by the
first meter's id: a consumer sees every reading of a meter on one partition
whatever the mode.

Random streams are independent per concern (fleet, load, faults, shifts,
commerce, wire noise), all derived from ``seed``; with the same configuration
the produced bytes are identical, whatever the sink, speed or chunk size.

Examples:
    >>> import asyncio
    >>> from simulators.sinks import NullSink
    >>> sim = Simulator(SimConfig(meters=200, days=1, seed=7))
    >>> summary = asyncio.run(sim.run(NullSink(), progress=False))
    >>> summary.messages["meter.readings"] >= 200 * 96 - 400, summary.messages["meter.registry"]
    (True, 200)
"""

from __future__ import annotations

import heapq
import logging
import math
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from meterseg.settings import Settings, TopicNames
from simulators import groundtruth
from simulators.archetypes import ARCHETYPE_NAMES, CATALOGUE
from simulators.clock import SimClock
from simulators.commerce import Commerce, Timed
from simulators.encode import (
    HEARTBEAT_BLOCK_FIELDS,
    REGISTRY_TEMPLATE,
    block,
    dumps,
    envelope,
    heartbeat_template,
    iso,
    iso_str,
    reading_template,
)
from simulators.faults import HEARTBEAT_KINDS, KINDS, OUTAGE_KINDS, ActiveFaults, Fault, FaultConfig, schedule_faults
from simulators.fleet import ENGAGEMENT, FIRMWARES, Fleet, FleetConfig, build_fleet
from simulators.load import LoadModel
from simulators.partition import partition_for
from simulators.realprofiles import ProfileLoad, RealProfileSpec
from simulators.shifts import STOP_PURCHASING, Shift
from simulators.sinks import KafkaSink, Message, Sink

log = logging.getLogger(__name__)

DEFAULT_START = datetime(2026, 1, 1, tzinfo=UTC)
#: largest envelope we allow: ~230 bytes per reading must stay under the broker's 1 MB message limit
MAX_ENVELOPE = 3000
VALUE_FAULTS = frozenset({"stuck", "spike", "negative", "zero_run"})


@dataclass(frozen=True)
class SimConfig:
    """Everything that determines a run's output (besides topic names and partition count)."""

    meters: int = 10_000
    days: int = 1
    seed: int = 0
    start: datetime = DEFAULT_START
    interval_minutes: int = 15
    heartbeat_minutes: int = 15
    envelope: int = 0
    heartbeat_envelope: int = 0
    envelope_format: str = "rows"  # "rows": ReadingBatch; "columns": ReadingBlock
    regions: tuple[str, ...] = ("North", "South", "East", "West")
    prepaid_share: float = 0.35
    faults: FaultConfig = field(default_factory=FaultConfig)
    shifts: tuple[str, ...] = ()
    speed: float | None = None
    history_days: int = 0
    purchase_rate: float = 1.0
    ops: bool = True
    chunk: int = 20_000
    #: None: the archetypes of :mod:`simulators.archetypes`; else meters follow real published profiles
    #: (:mod:`simulators.realprofiles`; needs the bench/test extras demandlib and richardsonpy)
    real_profiles: RealProfileSpec | None = None

    def __post_init__(self) -> None:
        if self.interval_minutes not in (15, 30, 60):
            raise ValueError("interval must be 15, 30 or 60 minutes")
        if self.heartbeat_minutes < 0 or (self.heartbeat_minutes and 1440 % self.heartbeat_minutes):
            raise ValueError("heartbeat period must be 0 (off) or divide a day, e.g. 5, 15, 60")
        if not 0 <= self.envelope <= MAX_ENVELOPE:
            raise ValueError(f"envelope size must be within [0, {MAX_ENVELOPE}] (0 = one reading per message)")
        if self.envelope_format not in ("rows", "columns"):
            raise ValueError(f"envelope format must be 'rows' or 'columns', not {self.envelope_format!r}")
        if not 0 <= self.heartbeat_envelope <= MAX_ENVELOPE:
            raise ValueError(f"heartbeat envelope size must be within [0, {MAX_ENVELOPE}] (0 = one per message)")
        if self.days < 1:
            raise ValueError("days must be >= 1")
        if self.history_days < 0:
            raise ValueError("history days must be >= 0")
        if self.purchase_rate < 0:
            raise ValueError("purchase rate must be >= 0")
        if self.chunk < 1:
            raise ValueError("chunk must be >= 1")
        for s in self.shifts:
            Shift.parse(s)
        if self.real_profiles is not None and self.shifts:
            raise ValueError("behaviour shifts move customers between archetypes; real-profile fleets have none")


@dataclass
class Summary:
    """What a run produced (printed at the end, and stored in the ground truth)."""

    messages: dict[str, int]
    readings: int
    faults: dict[str, int]
    shifts: list[dict[str, Any]]
    seconds: float  # generation and delivery (from the first registration to the last acknowledgement)
    setup_seconds: float = 0.0  # connecting, creating topics, writing the ground truth
    ground_truth: Path | None = None
    heartbeats: int = 0  # heartbeats sent (one per message, or inside HeartbeatBatch envelopes)

    @property
    def total(self) -> int:
        return sum(self.messages.values())

    def render(self) -> str:
        lines = [f"produced {self.total:,} messages ({self.readings:,} readings, {self.heartbeats:,} heartbeats) "
                 f"in {self.seconds:.1f} s "
                 f"({self.total / max(self.seconds, 1e-9):,.0f} msg/s, "
                 f"{self.readings / max(self.seconds, 1e-9):,.0f} readings/s)"]
        lines += [f"  {topic:<28} {n:>12,}" for topic, n in sorted(self.messages.items())]
        lines.append("faults injected: " + (", ".join(f"{k}={v}" for k, v in self.faults.items() if v) or "none"))
        if self.shifts:
            lines += [f"shift: day {s['day']} ({s['at']}): {len(s['customers'])} customers -> {s['target']}"
                      for s in self.shifts]
        else:
            lines.append("shifts scheduled: none")
        if self.ground_truth:
            lines.append(f"ground truth: {self.ground_truth}")
        return "\n".join(lines)


class Simulator:
    """Builds the fleet and schedules at construction; :meth:`run` produces everything to a sink."""

    def __init__(self, config: SimConfig, settings: Settings | None = None) -> None:
        self.config = config
        self.settings = settings or Settings()
        self.topics: TopicNames = self.settings.topics
        cfg = config
        self.fleet: Fleet = build_fleet(
            FleetConfig(meters=cfg.meters, seed=cfg.seed, regions=cfg.regions, prepaid_share=cfg.prepaid_share,
                        days=cfg.days),
            partitions=self.settings.partitions,
        )
        fl = self.fleet
        self.initial_archetype = fl.archetype.copy()
        self.shifts = sorted((Shift.parse(s) for s in cfg.shifts), key=lambda s: s.day)
        self.stop_day = np.full(fl.n_customers, 10**9, dtype=np.int64)  # day a customer stops buying
        self._plan_shifts()
        self.load: LoadModel | ProfileLoad = (
            ProfileLoad(fl, cfg.start, cfg.interval_minutes, cfg.seed, cfg.real_profiles)
            if cfg.real_profiles is not None else LoadModel(fl, cfg.start, cfg.interval_minutes, cfg.seed))
        ever_export = self._ever_export()
        self.faults: list[Fault] = schedule_faults(
            cfg.faults, meters=fl.n_meters, days=cfg.days, interval_minutes=cfg.interval_minutes, seed=cfg.seed,
            no_negative=ever_export, heartbeat_minutes=cfg.heartbeat_minutes,
        )
        self.commerce = Commerce(fl, cfg.start, cfg.seed, self.faults, purchase_rate=cfg.purchase_rate, ops=cfg.ops)
        self.wire_rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, 5]))
        self.fault_rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, 7]))
        tick = math.gcd(cfg.interval_minutes, cfg.heartbeat_minutes) if cfg.heartbeat_minutes \
            else cfg.interval_minutes
        self.clock = SimClock(cfg.start, cfg.days, tick, cfg.speed)
        # per-meter python lists: formatting needs bytes objects, building them once is cheaper
        self.mid: list[bytes] = fl.meter_ids.tolist()
        self.mcid: list[bytes] = fl.customer_ids[fl.meter_customer].tolist()
        self.fw: list[bytes] = [FIRMWARES[i] for i in fl.firmware.tolist()]
        self._reading_faults = ActiveFaults(self.faults)
        self._hb_faults = ActiveFaults(self.faults, HEARTBEAT_KINDS)
        self._stuck_value: dict[int, float] = {}
        self._stuck_register: dict[int, float] = {}
        self._held: dict[int, list[tuple[int, bytes, bytes]]] = defaultdict(list)
        self._heap: list[tuple[int, int, Timed]] = []
        self._day = -1
        self.readings = 0
        self.heartbeats_sent = 0
        self.fault_counts = {k: 0 for k in KINDS}
        for f in self.faults:
            self.fault_counts[f.kind] += 1

    # ------------------------------------------------------------------ planning
    def _plan_shifts(self) -> None:
        """Choose the customers of every shift up front (eligibility evolves shift by shift)."""
        arch = self.fleet.archetype.copy()
        stopped = np.zeros(self.fleet.n_customers, dtype=bool)
        self.changes: list[tuple[int, np.ndarray, np.ndarray, int]] = []  # day, customers, from, to
        for number, shift in enumerate(self.shifts):
            if shift.target == STOP_PURCHASING:
                shift.customers = shift.choose(self.config.seed, number, ~stopped)
                stopped[shift.customers] = True
                self.stop_day[shift.customers] = np.minimum(self.stop_day[shift.customers], shift.day)
            else:
                to = ARCHETYPE_NAMES.index(shift.target)
                shift.customers = shift.choose(self.config.seed, number, arch != to)
                self.changes.append((shift.day, shift.customers, arch[shift.customers].copy(), to))
                arch[shift.customers] = to
            if shift.day >= self.config.days:
                log.warning("shift at day %d is beyond the simulated %d days; it will not take effect",
                            shift.day, self.config.days)

    def _ever_export(self) -> np.ndarray:
        if isinstance(self.load, ProfileLoad):
            return self.load.has_export()
        solar = np.array([a.solar_kwh > 0 for a in CATALOGUE])
        ever = solar[self.fleet.archetype]
        for _day, customers, _from, to in self.changes:
            if solar[to]:
                ever[customers] = True
        return ever[self.fleet.meter_customer]

    # ----------------------------------------------------------------- helpers
    async def _send(self, sink: Sink, topic: str, partition: int, messages: list[Message]) -> None:
        if messages:
            await sink.send(topic, partition, messages)

    def _registry_value(self, m: int, has_export: bool) -> bytes:
        fl = self.fleet
        c = int(fl.meter_customer[m])
        installed = iso(self.config.start + timedelta(days=int(fl.installed_day[m])))
        return REGISTRY_TEMPLATE % (
            self.mid[m], self.mcid[m], self.config.regions[int(fl.region[c])].encode(),
            b"prepaid" if fl.prepaid[c] else b"postpaid", installed, self.config.interval_minutes,
            b"true" if has_export else b"false",
        )

    async def _registry(self, sink: Sink, meters: np.ndarray) -> None:
        fl = self.fleet
        export = self.load.has_export()
        for p in range(fl.partitions):
            sel = meters[fl.meter_partition[meters] == p]
            for a in range(0, sel.size, self.config.chunk):
                part = sel[a:a + self.config.chunk].tolist()
                await self._send(sink, self.topics.registry, p,
                                 [(self.mid[m], self._registry_value(m, bool(export[m]))) for m in part])

    # ---------------------------------------------------------------- day start
    async def _begin_day(self, day: int, sink: Sink) -> None:
        fl = self.fleet
        changed = False
        for d, customers, _from, to in self.changes:
            if d == day and customers.size:
                fl.archetype[customers] = to
                changed = True
                if CATALOGUE[to].solar_kwh > 0:
                    meters = np.flatnonzero(np.isin(fl.meter_customer, customers))
                    await self._registry(sink, meters)
        if changed:
            self.load.refresh_archetypes()
        self._schedule(self.commerce.day_events(day, self.load.expected_daily_kwh(day), self.stop_day <= day))
        self._day = day

    def _schedule(self, events: list[Timed]) -> None:
        for e in events:
            heapq.heappush(self._heap, (e.ts_s, e.order, e))

    async def _release(self, sink: Sink, until_s: int) -> None:
        """Send customer-side events due by ``until_s`` (seconds since start), in time order."""
        topics = {"purchases": self.topics.purchases, "bills": self.topics.bills,
                  "maintenance": self.topics.maintenance, "feedback": self.topics.feedback}
        out: dict[tuple[str, int], list[Message]] = {}
        fl = self.fleet
        while self._heap and self._heap[0][0] <= until_s:
            _, _, e = heapq.heappop(self._heap)
            if e.payment and self.stop_day[e.customer] * 86400 <= e.ts_s:
                continue  # this customer stopped purchasing (behaviour shift)
            p = int(fl.customer_partition[e.customer])
            out.setdefault((topics[e.topic], p), []).append((fl.customer_ids[e.customer].tobytes(), e.value))
        for (topic, p), msgs in out.items():
            await self._send(sink, topic, p, msgs)

    # ----------------------------------------------------------------- readings
    def _fragment(self, tpl: bytes, m: int, imp: np.ndarray, exp: np.ndarray, reg: np.ndarray,
                  volt: np.ndarray, pf: np.ndarray) -> bytes:
        return tpl % (self.mid[m], self.mcid[m], imp[m], exp[m], reg[m], volt[m], pf[m])

    def _malformed(self, variant: str, m: int, j: int, frag: bytes, imp: float) -> tuple[bytes, bytes, int]:
        """(key, value, partition) of a malformed message cloned from meter ``m``'s reading."""
        fl = self.fleet
        key = self.mid[m]
        part = int(fl.meter_partition[m])
        start = iso_str(self.config.start + timedelta(minutes=j * self.config.interval_minutes))
        if variant == "invalid_json":
            return key, frag[: len(frag) // 2], part
        doc: dict[str, Any] = {
            "schema_version": 1, "meter_id": key.decode(), "customer_id": self.mcid[m].decode(),
            "interval_start": start, "interval_minutes": self.config.interval_minutes,
            "kwh_import": imp, "kwh_export": 0.0, "register_kwh": float(fl.register[m]),
            "voltage": 230.0, "power_factor": 0.95, "seq": j,
        }
        if variant == "missing_field":
            del doc["kwh_import"]
            del doc["interval_start"]
        elif variant == "wrong_type":
            doc["kwh_import"] = "n/a"
            doc["seq"] = "seventeen"
        else:  # unknown_meter
            key = b"U" + key[1:]
            doc["meter_id"] = key.decode()
            part = partition_for(key, fl.partitions)
        return key, dumps(doc), part

    async def _readings(self, sink: Sink, j: int, sent_at: datetime) -> None:
        cfg = self.config
        fl = self.fleet
        n = fl.n_meters
        s_min = j * cfg.interval_minutes
        imp, exp = self.load.interval(j)
        active = self._reading_faults.at(s_min)
        send = np.ones(n, dtype=bool)
        value_faulty = np.zeros(n, dtype=bool)
        volt = np.round(230.0 + fl.voltage_offset + self.wire_rng.normal(0.0, 0.8, size=n).astype(np.float32), 1)
        frozen: list[int] = []
        duplicates: list[int] = []
        held_now: list[tuple[int, int]] = []
        malformed: list[tuple[int, str]] = []
        for f in active:
            m = f.meter
            if f.kind in OUTAGE_KINDS:
                send[m] = False
            elif f.kind == "stuck":
                if m not in self._stuck_value:
                    first = max(float(imp[m]), 0.0123)
                    if first == self.load.prev1[m]:  # the frozen run must start exactly at the fault
                        first = round(first + 0.0001, 4)
                    self._stuck_value[m] = first
                    self._stuck_register[m] = float(fl.register[m])
                imp[m] = self._stuck_value[m]
                frozen.append(m)
                value_faulty[m] = True
            elif f.kind == "spike":
                imp[m] = round(float(imp[m]) * f.detail["factor"] + 0.5, 4)
                value_faulty[m] = True
            elif f.kind == "negative":
                imp[m] = -round(abs(float(imp[m])) + 0.05, 4)
                value_faulty[m] = True
            elif f.kind == "zero_run":  # a dead register: nothing measured either way, the register stands still
                imp[m] = 0.0
                exp[m] = 0.0
                value_faulty[m] = True
            elif f.kind == "voltage":
                lo, hi = (266.0, 285.0) if f.detail["direction"] == "high" else (175.0, 194.0)
                volt[m] = round(float(self.fault_rng.uniform(lo, hi)), 1)
            elif f.kind == "duplicate":
                duplicates.append(m)
            elif f.kind == "out_of_order":
                send[m] = False
                held_now.append((m, j + f.detail["delay_intervals"]))
            elif f.kind == "late_upload":  # the whole block goes out together, delay_intervals after its last
                send[m] = False
                held_now.append((m, f.end_min // cfg.interval_minutes - 1 + f.detail["delay_intervals"]))
            elif f.kind == "malformed":
                malformed.append((m, f.detail["variant"]))
        for m in list(self._stuck_value):
            if m not in frozen:
                del self._stuck_value[m]
                del self._stuck_register[m]
        self.load.avoid_accidental_repeats(imp, ~value_faulty)
        fl.register += imp
        for m in frozen:
            fl.register[m] = self._stuck_register[m]
        reg = np.round(fl.register, 4)
        pf = np.clip(self.load.meter_power_factor() + self.wire_rng.normal(0.0, 0.015, size=n).astype(
            np.float32), 0.5, 1.0).round(3)
        tpl = reading_template(iso(cfg.start + timedelta(minutes=s_min)), cfg.interval_minutes, j)

        # message-level faults: extra or displaced fragments per partition
        tail: dict[int, list[tuple[bytes, bytes]]] = defaultdict(list)
        singles: dict[int, list[Message]] = defaultdict(list)
        for m, due in held_now:
            self._held[due].append((int(fl.meter_partition[m]), self.mid[m],
                                    self._fragment(tpl, m, imp, exp, reg, volt, pf)))
        for m in duplicates:
            tail[int(fl.meter_partition[m])].append((self.mid[m], self._fragment(tpl, m, imp, exp, reg, volt, pf)))
        for p, key, frag in self._held.pop(j, []):
            tail[p].append((key, frag))
        for m, variant in malformed:
            key, value, p = self._malformed(variant, m, j, self._fragment(tpl, m, imp, exp, reg, volt, pf),
                                            float(imp[m]))
            singles[p].append((key, value))

        mid, mcid = self.mid, self.mcid
        topic = self.topics.readings
        batch = cfg.envelope
        wrap = block if cfg.envelope_format == "columns" else envelope
        chunk = max(batch, cfg.chunk // batch * batch) if batch else cfg.chunk
        sent_b = iso(sent_at)
        for p, members in enumerate(fl.by_partition):
            sel = members[send[members]]
            pieces = [sel[a:a + chunk] for a in range(0, sel.size, chunk)] or [sel]
            for number, piece in enumerate(pieces):
                # python floats per chunk only: whole-fleet lists would cost ~30 MB per column at 1 M meters
                frags = [(mid[m], tpl % (mid[m], mcid[m], a, b, c, d, e)) for m, a, b, c, d, e in zip(
                    piece.tolist(), imp[piece].tolist(), exp[piece].tolist(), reg[piece].tolist(),
                    volt[piece].tolist(), pf[piece].tolist(), strict=True)]
                if number == len(pieces) - 1:
                    frags.extend(tail.get(p, ()))
                self.readings += len(frags)
                if not batch:
                    await self._send(sink, topic, p, frags)
                    continue
                msgs: list[Message] = []
                for a in range(0, len(frags), batch):
                    group = frags[a:a + batch]
                    bid = f"sim{cfg.seed}-{cfg.start:%Y%m%d%H%M}-r{j}-p{p}-{number}-{a // batch}".encode()
                    msgs.append((group[0][0], wrap(bid, b"hes-p%d" % p, sent_b, [g[1] for g in group])))
                await self._send(sink, topic, p, msgs)
            await self._send(sink, topic, p, singles.get(p, []))

    # --------------------------------------------------------------- heartbeats
    async def _heartbeats(self, sink: Sink, t_min: int) -> None:
        fl = self.fleet
        n = fl.n_meters
        rng = self.wire_rng
        ts = self.config.start + timedelta(minutes=t_min)
        tpl = heartbeat_template(iso(ts))
        send = np.ones(n, dtype=bool)
        status: dict[int, tuple[bytes, bytes]] = {}
        offset = rng.normal(0.0, 0.3, size=n).round(2)
        for f in self._hb_faults.at(t_min):
            if f.kind in OUTAGE_KINDS:
                send[f.meter] = False
            elif f.kind == "voltage":
                status[f.meter] = (b"degraded", b'"E_VOLTAGE"')
            elif f.kind == "clock_skew":
                offset[f.meter] = f.detail["clock_offset_s"]
        signal = np.clip(fl.signal + rng.normal(0.0, 2.0, size=n).astype(np.float32), -120.0, -30.0).round(1)
        battery = np.clip(fl.battery - np.float32(t_min / 1440.0 * 0.02), 0.0, 100.0).round(1)
        mid, mcid, fw = self.mid, self.mcid, self.fw
        ok = (b"ok", b"")
        topic = self.topics.heartbeats
        batch = self.config.heartbeat_envelope
        chunk = max(batch, self.config.chunk // batch * batch) if batch else self.config.chunk
        ts_b = iso(ts)
        for p, members in enumerate(fl.by_partition):
            sel = members[send[members]]
            for number, a in enumerate(range(0, sel.size, chunk)):
                piece = sel[a:a + chunk]
                msgs: list[Message] = []
                for m, sig, bat, off in zip(piece.tolist(), signal[piece].tolist(), battery[piece].tolist(),
                                            offset[piece].tolist(), strict=True):
                    st, codes = status.get(m, ok)
                    msgs.append((mid[m], tpl % (mid[m], mcid[m], st, codes, sig, bat, fw[m], off)))
                if batch:  # head-end blocks: keyed by their first meter (all of one partition)
                    bid = f"sim{self.config.seed}-{self.config.start:%Y%m%d%H%M}-h{t_min}-p{p}-{number}-".encode()
                    if self.config.envelope_format == "columns":
                        msgs = [(msgs[b][0], block(bid + b"%d" % (b // batch), b"hes-p%d" % p, ts_b,
                                                   [v for _, v in msgs[b:b + batch]], HEARTBEAT_BLOCK_FIELDS))
                                for b in range(0, len(msgs), batch)]
                    else:
                        msgs = [(msgs[b][0], envelope(bid + b"%d" % (b // batch), b"hes-p%d" % p, ts_b,
                                                      [v for _, v in msgs[b:b + batch]], items=b"heartbeats"))
                                for b in range(0, len(msgs), batch)]
                self.heartbeats_sent += len(piece)
                await self._send(sink, topic, p, msgs)

    # --------------------------------------------------------------------- run
    async def run(self, sink: Sink, *, progress: bool = True, ground_truth: Path | str | None = None) -> Summary:
        """Produce the whole run into ``sink`` (started and stopped here) and return the summary."""
        cfg = self.config
        connecting = time.perf_counter()
        t = self.topics
        await sink.start()
        try:
            if isinstance(sink, KafkaSink):
                await sink.ensure_topics([t.readings, t.heartbeats, t.purchases, t.registry, t.maintenance,
                                          t.feedback, t.bills])
            if ground_truth is not None:
                groundtruth.write(self.ground_truth(), ground_truth)
            began = time.perf_counter()  # rates exclude connecting, creating topics and the ground truth
            await self._registry(sink, np.arange(self.fleet.n_meters))
            for day in range(-cfg.history_days, 0):
                self._schedule(self.commerce.day_events(day, self.load.expected_daily_kwh(0),
                                                        np.zeros(self.fleet.n_customers, dtype=bool)))
            await self._loop(sink, progress)
            await sink.flush()
            seconds = time.perf_counter() - began
        finally:
            await sink.stop()
        summary = Summary(
            messages=dict(sorted(sink.counts.items())),
            readings=self.readings,
            heartbeats=self.heartbeats_sent,
            faults=dict(self.fault_counts),
            shifts=self._shift_docs(),
            seconds=seconds,
            setup_seconds=began - connecting,
        )
        if ground_truth is not None:
            doc = self.ground_truth()
            doc["counts"] = {"messages": summary.messages, "readings": summary.readings, "faults": summary.faults}
            summary.ground_truth = groundtruth.write(doc, ground_truth)
        log.info("simulation done: %d messages in %.1f s", summary.total, summary.seconds)
        return summary

    async def _loop(self, sink: Sink, progress: bool) -> None:
        from tqdm import tqdm

        cfg = self.config
        clock = self.clock
        tick = clock.tick_minutes
        bar = tqdm(total=clock.ticks, unit="tick", file=sys.stderr, disable=not progress, dynamic_ncols=True,
                   desc="simulating")
        clock.restart_wall()
        try:
            for k in range(1, clock.ticks + 1):
                t_min = k * tick
                day = (t_min * 60 - 1) // 86400
                if day != self._day:
                    await self._begin_day(day, sink)
                if t_min % cfg.interval_minutes == 0:
                    await self._readings(sink, t_min // cfg.interval_minutes - 1, clock.at(k))
                if cfg.heartbeat_minutes and t_min % cfg.heartbeat_minutes == 0:
                    await self._heartbeats(sink, t_min)
                await self._release(sink, t_min * 60)
                bar.update(1)
                if k % 16 == 0:
                    bar.set_postfix_str(f"{clock.at(k):%Y-%m-%d %H:%M} {sum(sink.counts.values()):,} msgs",
                                        refresh=False)
                await clock.pace(k)
        finally:
            bar.close()

    # ------------------------------------------------------------- ground truth
    def _shift_docs(self) -> list[dict[str, Any]]:
        cids = self.fleet.customer_ids
        return [{"day": s.day, "at": iso_str(self.config.start + timedelta(days=s.day)), "share": s.share,
                 "target": s.target, "customers": [c.decode() for c in cids[s.customers].tolist()]}
                for s in self.shifts]

    def ground_truth(self) -> dict[str, Any]:
        """The ground-truth document (see :mod:`simulators.groundtruth`); known in full before the run."""
        cfg = self.config
        fl = self.fleet
        cids = fl.customer_ids
        changes = []
        for day, customers, before, to in self.changes:
            at = iso_str(cfg.start + timedelta(days=day))
            changes += [{"at": at, "customer_id": cids[c].decode(), "from": ARCHETYPE_NAMES[int(b)],
                         "to": ARCHETYPE_NAMES[to]} for c, b in zip(customers.tolist(), before.tolist(), strict=True)]
        stopped = []
        for s in self.shifts:
            if s.target == STOP_PURCHASING:
                at = iso_str(cfg.start + timedelta(days=s.day))
                stopped += [{"at": at, "customer_id": cids[c].decode()} for c in s.customers.tolist()]
        faults = []
        for f in self.faults:
            doc: dict[str, Any] = {
                "kind": f.kind,
                "meter_id": self.mid[f.meter].decode(),
                "customer_id": self.mcid[f.meter].decode(),
                "start": iso_str(cfg.start + timedelta(minutes=f.start_min)),
                "end": iso_str(cfg.start + timedelta(minutes=f.end_min)),
                **f.detail,
            }
            if f.kind == "malformed" and f.detail["variant"] == "unknown_meter":
                doc["meter_id_sent"] = "U" + doc["meter_id"][1:]
            if f.kind == "out_of_order":
                doc["delivered_after"] = iso_str(cfg.start + timedelta(
                    minutes=f.start_min + f.detail["delay_intervals"] * cfg.interval_minutes))
            elif f.kind == "late_upload":
                doc["delivered_after"] = iso_str(cfg.start + timedelta(
                    minutes=f.end_min + (f.detail["delay_intervals"] - 1) * cfg.interval_minutes))
            faults.append(doc)
        return {
            "format": "meterseg-ground-truth",
            "version": 1,
            "seed": cfg.seed,
            "start": iso_str(cfg.start),
            "end": iso_str(cfg.start + timedelta(days=cfg.days)),
            "days": cfg.days,
            "interval_minutes": cfg.interval_minutes,
            "heartbeat_minutes": cfg.heartbeat_minutes,
            "envelope": cfg.envelope,
            "heartbeat_envelope": cfg.heartbeat_envelope,
            "envelope_format": cfg.envelope_format,
            "archetypes": list(ARCHETYPE_NAMES),
            "engagement_classes": list(ENGAGEMENT),
            "regions": list(cfg.regions),
            "meters": {"ids": [m.decode() for m in self.mid], "customer": fl.meter_customer},
            "customers": {
                "ids": [c.decode() for c in cids.tolist()],
                "archetype": self.initial_archetype,
                "engagement": fl.engagement,
                "region": fl.region,
                "tariff": ["prepaid" if p else "postpaid" for p in fl.prepaid.tolist()],
            },
            "archetype_changes": changes,
            "purchasing_stopped": stopped,
            "faults": faults,
            "shifts": self._shift_docs(),
            **self._profile_doc(),
        }

    def _profile_doc(self) -> dict[str, Any]:
        """Real-profile fleets: every customer's published profile and family (the labels segments are judged by)."""
        if not isinstance(self.load, ProfileLoad):
            return {}
        spec = self.load.spec
        return {"real_profiles": {"spec": {k: getattr(spec, k) for k in spec.__dataclass_fields__},
                                  "customers": self.load.customer_labels(),
                                  "meter_annual_kwh": np.round(self.load.annual_kwh, 1),
                                  "meter_pv": self.load.pv}}


def summary_json(summary: Summary) -> bytes:
    """Machine-readable summary (``--summary-json``)."""
    return orjson.dumps({"messages": summary.messages, "readings": summary.readings,
                         "heartbeats": summary.heartbeats, "faults": summary.faults,
                         "shifts": [{k: v for k, v in s.items() if k != "customers"} | {"customers": len(s["customers"])}
                                    for s in summary.shifts],
                         "seconds": round(summary.seconds, 3)}, option=orjson.OPT_INDENT_2)
