"""One partition's ingestion, composed: decode → deduplicate → windows → health → daily profiles.

The stream side hands each poll's raw readings and heartbeats of one
partition to :meth:`PartitionIngest.process` and gets back everything to
publish; :meth:`PartitionIngest.on_timer` does what must happen without new
events (closing windows, finding silent meters) by the :class:`~processors.clock.EventClock`.
The whole state snapshots to JSON, so a restart resumes exactly.

Order matters: duplicates are dropped before the windows (so a redelivered
reading is not summed twice; the deduplicator's horizon covers the windows'
allowed lateness, because a late reading *corrects* a closed window and is
emitted again with a revision), and the windows' lateness check runs before
the health rules (so a reading too late for the totals does not move a
meter's health either; it goes to the dead-letter topic with reason
``too_late``).

Examples:
    >>> from stream.schemas import MeterInfo
    >>> from processors.columns import EPOCH, MeterRegistry, RawMessage
    >>> import orjson
    >>> reg = MeterRegistry([MeterInfo(meter_id="M1", customer_id="C1", region="North",
    ...                                tariff="prepaid", installed_on=EPOCH)])
    >>> def reading(k: int) -> RawMessage:
    ...     return RawMessage(orjson.dumps({"meter_id": "M1", "customer_id": "C1",
    ...         "interval_start": f"2026-01-01T{k // 4:02d}:{15 * (k % 4):02d}:00Z", "kwh_import": 0.25,
    ...         "register_kwh": 100 + 0.25 * k, "voltage": 231.0, "seq": k}), "meter.readings", 0, k)
    >>> ingest = PartitionIngest(reg, IngestConfig())
    >>> out = ingest.process(([reading(k) for k in range(8)] + [reading(3)], []))
    >>> out.accepted_readings, out.duplicates, len(out.rejects)
    (8, 1, 0)
    >>> out = ingest.process(([RawMessage(b"{not json", "meter.readings", 0, 9)], []))
    >>> [r.reason for r in out.rejects]
    ['invalid_json']
    >>> again = PartitionIngest.restore(ingest.snapshot(), reg)
    >>> again.snapshot() == ingest.snapshot()
    True
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any, Self

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from processors.clock import EventClock
from processors.columns import (
    HeartbeatColumns,
    MeterRegistry,
    RawMessage,
    ReadingColumns,
    Reject,
    concat_heartbeats,
)
from processors.config_change import check_followable
from processors.decode import HeartbeatDecoder, ReadingDecoder
from processors.dedupe import Deduplicator
from processors.health import HealthAlert, HealthConfig, HealthMonitor, HealthOutput, MeterHealth
from processors.health.state import bit
from processors.profiles import ClosedProfiles, DailyProfileBuilder
from processors.windows import ClosedWindows, ConsumptionWindows, WindowConfig

IngestBatch = tuple[list[RawMessage], list[RawMessage]]
"""(readings messages, heartbeat messages) of one partition and poll."""

_LATENCY_SAMPLE = 256
_SILENT_BIT = bit("silent")


#: settings that shape the checkpointed state (open windows' sizes and span, the spike history's length)
STATE_SHAPING_SETTINGS = (
    "windows.meter_sizes_s", "windows.region_size_s", "windows.close_after_s",
    "health.day_bands", "health.spike_band_window", "health.spike_peak_days", "health.stuck_level_bands",
)

class IngestConfig(BaseModel):
    """Windows, health thresholds and the event clock of the ingestion pipeline."""

    model_config = ConfigDict(frozen=True)

    windows: WindowConfig = Field(default_factory=WindowConfig)
    health: HealthConfig = Field(default_factory=HealthConfig)
    clock_rate: float = Field(
        default=1.0,
        gt=0.0,
        description="event seconds per wall second while no newer event arrives (the simulator's speed-up)",
    )
    clock_idle_s: float = Field(
        default=5.0, ge=0.0, description="wall seconds without newer events before the event clock runs on its own"
    )
    profiles: bool = Field(default=True, description="build daily load profiles for behaviour features")
    align_s: float = Field(
        default=900.0,
        ge=0.0,
        description="event seconds one input topic may run ahead of the other (still unread) one before it waits",
    )
    hold_max_bytes: int = Field(
        default=8 * 1024 * 1024,
        ge=0,
        description="held-back bytes of a partition beyond which its consumer pauses the topic that runs ahead",
    )
    chunk_bytes: int = Field(
        default=512 * 1024,
        ge=1024,
        description="a poll bigger than this (message bytes per topic) is processed in pieces of about this size",
    )


@dataclass(slots=True)
class IngestOutput:
    """Everything one call caused. Units: a reading or heartbeat; a message that cannot be parsed counts as one."""

    messages: int = 0
    accepted_readings: int = 0
    accepted_heartbeats: int = 0
    duplicates: int = 0
    corrected_readings: int = 0
    """late readings (their window had closed) that still counted: their windows were emitted again, revised"""
    rejects: list[Reject] = field(default_factory=list)
    closed: list[ClosedWindows] = field(default_factory=list)
    alerts: list[HealthAlert] = field(default_factory=list)
    health_changes: list[MeterHealth] = field(default_factory=list)
    profiles: ClosedProfiles = field(default_factory=ClosedProfiles)
    event_latency_s: list[float] = field(default_factory=list)
    append_latency_s: list[float] = field(default_factory=list)

    @property
    def accepted(self) -> int:
        return self.accepted_readings + self.accepted_heartbeats

    def absorb(self, other: IngestOutput) -> None:
        """Append another call's output to this one (the later call's items after this one's)."""
        self.messages += other.messages
        self.accepted_readings += other.accepted_readings
        self.accepted_heartbeats += other.accepted_heartbeats
        self.duplicates += other.duplicates
        self.corrected_readings += other.corrected_readings
        self.rejects += other.rejects
        self.closed += other.closed
        self.alerts += other.alerts
        self.health_changes += other.health_changes
        self.profiles += other.profiles
        self.event_latency_s += other.event_latency_s
        self.append_latency_s += other.append_latency_s


def _max_per_message(n: int, message: np.ndarray | None, values: np.ndarray | None) -> np.ndarray:
    """Largest value per message index (``-inf`` for a message without one).

    Decoded columns keep their messages in order, so the maximum is taken per
    run of equal indexes with ``reduceat`` (``np.maximum.at`` cost a tenth of
    the processing of an enveloped poll); unordered input falls back to it.

    Examples:
        >>> _max_per_message(4, np.array([0, 0, 2]), np.array([5, 7, 1])).tolist()
        [7.0, -inf, 1.0, -inf]
        >>> _max_per_message(3, np.array([2, 0, 2]), np.array([5, 7, 1])).tolist()
        [7.0, -inf, 5.0]
    """
    out = np.full(n, -np.inf)
    if message is None or values is None or not len(message):
        return out
    steps = np.diff(message)
    if (steps >= 0).all():
        starts = np.concatenate(([0], np.flatnonzero(steps) + 1))
        out[message[starts]] = np.maximum.reduceat(values, starts)
    else:
        np.maximum.at(out, message, values)
    return out


def _pieces(msgs: list[RawMessage], chunk_bytes: int) -> int:
    """How many pieces of about ``chunk_bytes`` the messages' payloads make."""
    if len(msgs) < 2:
        return 1
    return 1 + sum(map(len, [m.value for m in msgs])) // chunk_bytes


class PartitionIngest:
    """The ingestion state of one partition (implements :class:`~processors.base.StatefulProcessor`).

    Parameters:
        registry: the fleet, shared by every partition of the worker (not part of the snapshot).
        config: windows, health and clock settings.
        owns: which meter ids this partition owns (their readings are keyed to it: Kafka's partitioner,
            computed by the wiring, which knows the partition and the partition count). Given, every
            registered meter it owns has expected windows, gaps included, even before (or without) a
            reading, and meters registered later are taken in as the registry grows
            (:meth:`~processors.windows.ConsumptionWindows.expect`). ``None``: a meter's grid starts at
            its first reading.
    """

    def __init__(
        self, registry: MeterRegistry, config: IngestConfig | None = None, owns: Callable[[str], bool] | None = None
    ) -> None:
        self.registry = registry
        self.config = config or IngestConfig()
        self.config_changes: list[str] = []  # settings that differ from the restored checkpoint's (restore)
        self.owns = owns
        self._registry_seen = 0
        """registry slots below this were checked for ownership (the registry is append-only)"""
        self.readings = ReadingDecoder(registry)
        self.heartbeats = HeartbeatDecoder(registry)
        self.dedupe = Deduplicator(granularity_s=900, horizon_s=self._dedupe_horizon())
        self.windows = ConsumptionWindows(self.config.windows)
        self.health = HealthMonitor(self.config.health)
        self.profiles = DailyProfileBuilder()
        # one clock per input topic: windows close by the readings' clock only (heartbeats carry no
        # energy); silence is judged at the *slower* of the two (see :meth:`silence_now`)
        self.totals: dict[str, int] = {"messages": 0, "accepted": 0, "deadletter": 0, "duplicates": 0}
        """Units taken into this state (survive restarts with it): conservation is checked on these."""
        self.reading_clock = EventClock(self.config.clock_rate, self.config.clock_idle_s)
        self.heartbeat_clock = EventClock(self.config.clock_rate, self.config.clock_idle_s)
        # messages held back by the alignment (not in the state, nor in its snapshot: see held())
        self._held_r: list[RawMessage] = []
        self._held_h: list[RawMessage] = []
        self._held_r_decoded: tuple[ReadingColumns, list[Reject]] | None = None
        self._held_h_decoded: tuple[HeartbeatColumns, list[Reject]] | None = None

    def _dedupe_horizon(self) -> int:
        """Duplicates must be recognised as far back as a late reading may still correct a window."""
        w = self.config.windows
        return max(w.allowed_lateness_s, w.close_after_s, 64 * 900)

    # -- processing ---------------------------------------------------------------------------
    def process(self, batch: IngestBatch, wall: float | None = None, *, pending: Collection[str] = ()) -> IngestOutput:
        """Process one poll of readings and heartbeat messages.

        ``pending``: the input topics (``"readings"``, ``"heartbeats"``) that
        still have unread messages on the broker for this partition. The two
        topics are consumed side by side, not in step: replaying a backlog, one
        poll can bring hours of one and minutes of the other. Messages of the
        topic that is ahead by more than ``align_s`` of event time, while the
        other still has messages to read, are *held back* (see :meth:`held`):
        processed once the other topic has caught up or has nothing more to
        read. The health rules then see both topics in event-time order, so a
        meter's silence is neither invented (its messages on the other topic
        not read yet) nor hidden (its later messages read too early). Callers
        that pass everything at once (tests, backfills) leave ``pending`` empty.

        A large poll (a consumer catching up returns megabytes per partition) is
        processed in consecutive pieces of about ``chunk_bytes``: the outputs
        are the same (poll boundaries are arbitrary anyway), but tens of
        thousands of parsed readings alive at once cost more in cache misses
        and garbage-collector passes than the work itself (measured about 1.5x
        slower at 40 envelopes per call than at 4).
        """
        wall = time.time() if wall is None else wall
        reading_msgs, heartbeat_msgs = batch
        pieces = max(_pieces(reading_msgs, self.config.chunk_bytes), _pieces(heartbeat_msgs, self.config.chunk_bytes))
        if pieces <= 1:
            return self._process(reading_msgs, heartbeat_msgs, wall, pending)
        out = IngestOutput()
        nr, nh = len(reading_msgs), len(heartbeat_msgs)
        for i in range(pieces):
            # held-back messages go first in each call (order is kept); the new part is decoded alone
            r_part = reading_msgs[i * nr // pieces : (i + 1) * nr // pieces]
            h_part = heartbeat_msgs[i * nh // pieces : (i + 1) * nh // pieces]
            # a piece is a poll of its own: the rest of each topic is still to read
            still = set(pending) if i == pieces - 1 else {"readings", "heartbeats"}
            out.absorb(self._process(r_part, h_part, wall, still))
        return out

    def held_bytes(self) -> int:
        """Payload bytes of the messages held back (what a consumer should bound by pausing the topic)."""
        return sum(map(len, [m.value for m in self._held_r])) + sum(map(len, [m.value for m in self._held_h]))

    def held(self) -> dict[str, int]:
        """Topic -> offset of the first message held back (not yet in this state; a checkpoint resumes there)."""
        return {msgs[0].topic: msgs[0].offset for msgs in (self._held_r, self._held_h) if msgs}

    def _expect_registered(self) -> None:
        """Hand the windows the registered meters this partition owns that it has not checked yet."""
        n = len(self.registry)
        if self.owns is None or n <= self._registry_seen:
            return
        ids, owns = self.registry.meter_ids, self.owns
        slots = np.array([s for s in range(self._registry_seen, n) if owns(ids[s])], np.int64)
        self._registry_seen = n
        self.windows.expect(self.registry, slots)

    def _process(
        self, reading_msgs: list[RawMessage], heartbeat_msgs: list[RawMessage], wall: float, pending: Collection[str]
    ) -> IngestOutput:
        self._expect_registered()
        r_cached, h_cached = self._held_r_decoded, self._held_h_decoded
        self._held_r_decoded = self._held_h_decoded = None
        r_new, h_new = reading_msgs, heartbeat_msgs
        if self._held_r:
            reading_msgs, self._held_r = self._held_r + reading_msgs, []
        if self._held_h:
            heartbeat_msgs, self._held_h = self._held_h + heartbeat_msgs, []
        r_cols: ReadingColumns | None = None
        h_cols: HeartbeatColumns | None = None
        r_rejects: list[Reject] = []
        h_rejects: list[Reject] = []
        # messages held back were decoded when they arrived: decode only what is new
        if r_cached is not None and len(r_cached[0].sources) == len(reading_msgs) - len(r_new):
            r_cols, r_rejects = r_cached
            if r_new:
                dr = self.readings.process(r_new)
                r_cols, r_rejects = ReadingColumns.concat([r_cols, dr.readings]), r_rejects + dr.rejects
        elif reading_msgs:
            dr = self.readings.process(reading_msgs)
            r_cols, r_rejects = dr.readings, dr.rejects
        if h_cached is not None and len(h_cached[0].sources) == len(heartbeat_msgs) - len(h_new):
            h_cols, h_rejects = h_cached
            if h_new:
                dh = self.heartbeats.process(h_new)
                h_cols, h_rejects = concat_heartbeats([h_cols, dh.heartbeats]), h_rejects + dh.rejects
        elif heartbeat_msgs:
            dh = self.heartbeats.process(heartbeat_msgs)
            h_cols, h_rejects = dh.heartbeats, dh.rejects
        if pending:
            r_cut, h_cut = self._alignment(r_cols, len(reading_msgs), h_cols, len(heartbeat_msgs), pending)
            if r_cut < len(reading_msgs) and r_cols is not None:
                first = reading_msgs[r_cut].offset
                later = r_cols.message >= r_cut
                ids = list(r_cols.batch_ids)
                held = r_cols.take(later)
                held.message, held.sources, held.batch_ids = held.message - r_cut, reading_msgs[r_cut:], ids[r_cut:]
                self._held_r_decoded = (held, [r for r in r_rejects if r.offset >= first])
                r_cols, r_rejects = r_cols.take(~later), [r for r in r_rejects if r.offset < first]
                # the held envelopes' batch ids are not seen yet (the deduplicator remembers every id it is shown)
                r_cols.batch_ids = ids[:r_cut] + [None] * (len(ids) - r_cut)
                reading_msgs, self._held_r = reading_msgs[:r_cut], reading_msgs[r_cut:]
            if h_cut < len(heartbeat_msgs) and h_cols is not None:
                first = heartbeat_msgs[h_cut].offset
                later = h_cols.message >= h_cut
                held_h = h_cols.take(later)
                held_h.message, held_h.sources = held_h.message - h_cut, heartbeat_msgs[h_cut:]
                self._held_h_decoded = (held_h, [r for r in h_rejects if r.offset >= first])
                h_cols, h_rejects = h_cols.take(~later), [r for r in h_rejects if r.offset < first]
                heartbeat_msgs, self._held_h = heartbeat_msgs[:h_cut], heartbeat_msgs[h_cut:]
        out = IngestOutput(messages=len(reading_msgs) + len(heartbeat_msgs))
        out.rejects += r_rejects + h_rejects
        readings = self._readings(r_cols, reading_msgs, out, wall) if r_cols is not None else None
        if h_cols is not None:
            out.accepted_heartbeats += len(h_cols)
        self._health_in_time_order(readings, h_cols, out, wall)
        self._count(out)
        return out

    def _alignment(
        self,
        readings: ReadingColumns | None,
        n_readings: int,
        heartbeats: HeartbeatColumns | None,
        n_heartbeats: int,
        pending: Collection[str],
    ) -> tuple[int, int]:
        """Where to cut each topic's messages: the topic ahead of the other (still pending) by over ``align_s``."""
        r_per_msg = _max_per_message(
            n_readings,
            None if readings is None else readings.message,
            None if readings is None else readings.interval_start + readings.interval_minutes * 60,
        )
        h_per_msg = _max_per_message(
            n_heartbeats, None if heartbeats is None else heartbeats.message, None if heartbeats is None else heartbeats.ts
        )
        r_seen = self.reading_clock.now(running=False)
        h_seen = self.heartbeat_clock.now(running=False)
        r_max = max(float(r_per_msg.max(initial=-np.inf)), -np.inf if r_seen is None else r_seen)
        h_max = max(float(h_per_msg.max(initial=-np.inf)), -np.inf if h_seen is None else h_seen)
        align = self.config.align_s
        r_cut, h_cut = n_readings, n_heartbeats
        if "heartbeats" in pending and r_max > h_max + align:
            beyond = np.flatnonzero(r_per_msg > h_max + align)
            r_cut = int(beyond[0]) if len(beyond) else n_readings
        elif "readings" in pending and h_max > r_max + align:
            beyond = np.flatnonzero(h_per_msg > r_max + align)
            h_cut = int(beyond[0]) if len(beyond) else n_heartbeats
        return r_cut, h_cut

    def _count(self, out: IngestOutput) -> None:
        t = self.totals
        t["messages"] += out.messages
        t["accepted"] += out.accepted
        t["deadletter"] += len(out.rejects)
        t["duplicates"] += out.duplicates

    def _readings(
        self, decoded: ReadingColumns, msgs: list[RawMessage], out: IngestOutput, wall: float
    ) -> ReadingColumns:
        """Deduplicate and window decoded readings; return the readings the health rules should see."""
        deduped = self.dedupe.process(decoded)
        out.duplicates += deduped.duplicates
        windowed = self.windows.process(deduped.readings)
        out.corrected_readings += windowed.corrected
        out.rejects += windowed.rejects
        accepted: ReadingColumns = windowed.accepted
        out.accepted_readings += len(accepted)
        self._closed(windowed.closed, out)
        if len(accepted):
            ends = accepted.interval_start + accepted.interval_minutes * 60
            sample = ends[:: max(1, len(ends) // _LATENCY_SAMPLE)]
            out.event_latency_s += (wall - sample).astype(float).tolist()
        stamps = np.fromiter((m.timestamp_ms for m in msgs if m.timestamp_ms > 0), np.int64)
        if len(stamps):
            sample = stamps[:: max(1, len(stamps) // _LATENCY_SAMPLE)]
            out.append_latency_s += (wall - sample / 1000.0).tolist()
        return accepted

    def _health_in_time_order(
        self, readings: ReadingColumns | None, heartbeats: HeartbeatColumns | None, out: IngestOutput, wall: float
    ) -> None:
        """Feed the health rules slice by slice of event time, checking silence after each slice.

        A live stream brings one interval per poll, but a replayed backlog can
        bring hours: judged all at once, a meter's outage inside the batch would
        be hidden by its own later readings. Slicing by interval makes a replay
        behave like the live stream it records (a live batch is one slice).
        """
        r_time = readings.interval_start if readings is not None and len(readings) else np.zeros(0, np.int64)
        h_time = heartbeats.ts if heartbeats is not None and len(heartbeats) else np.zeros(0, np.int64)
        if not len(r_time) and not len(h_time):
            self._check_silence(self.silence_now(wall, running=False), out)
            return
        width = self.dedupe.granularity_s
        r_slice, h_slice = r_time // width, h_time // width
        r_many = len(r_slice) > 0 and bool(r_slice.min() != r_slice.max())
        h_many = len(h_slice) > 0 and bool(h_slice.min() != h_slice.max())
        for s in np.unique(np.concatenate([r_slice, h_slice])):
            if readings is not None and len(r_time) and (r_many or r_slice[0] == s):
                # (all readings in one slice: they belong to that slice only, not to every slice of the heartbeats)
                part = readings.take(r_slice == s) if r_many else readings
                if len(part):
                    self._absorb(self.health.process(part), out)
                    ends = part.interval_start + part.interval_minutes * 60
                    self.reading_clock.observe(float(ends.max()), wall)
            if heartbeats is not None and len(h_time) and (h_many or h_slice[0] == s):
                hpart = heartbeats.take(h_slice == s) if h_many else heartbeats
                if len(hpart):
                    self._absorb(self.health.process(hpart), out)
                    self.heartbeat_clock.observe(float(hpart.ts.max()), wall)
            self._check_silence(self.silence_now(wall, running=False), out)

    def silence_now(self, wall: float | None = None, *, running: bool = True, caught_up: bool = False) -> float | None:
        """The time silence is judged at: the slower of the readings' and the heartbeats' clocks.

        Why the slower: the two topics are consumed side by side but not at the
        same pace. Replaying a backlog, one poll can bring hours of one topic
        and minutes of the other; judged at the faster clock, every meter whose
        other messages are simply not read yet would look silent, then recover
        a poll later (an alert storm: raised and cleared for every meter). For
        the same reason a topic that has delivered nothing yet holds the
        judgement back, unless the consumer is ``caught_up`` (then the topic
        is really empty, e.g. a fleet without heartbeats, and the other clock
        alone decides).
        """
        times = [c.now(wall, running=running) for c in (self.reading_clock, self.heartbeat_clock)]
        known = [t for t in times if t is not None]
        if not known or (len(known) < len(times) and not caught_up):
            return None
        return min(known)

    def _check_silence(self, now: float | None, out: IngestOutput) -> None:
        if now is not None:
            self._absorb(self.health.check_silence(int(now)), out)

    @staticmethod
    def _absorb(health: HealthOutput, out: IngestOutput) -> None:
        out.alerts += health.alerts
        out.health_changes += health.changes

    def _closed(self, closed: list[ClosedWindows], out: IngestOutput) -> None:
        if not closed:
            return
        out.closed += closed
        if self.config.profiles:
            # daily profiles take each window once, as first emitted, and not the gaps (a day without a
            # reading makes no profile); corrections and gap windows go to consumption.windows only
            first = [c.take((c.revisions == 0) & (c.count > 0)) for c in closed if c.kind == "meter"]
            out.profiles += self.profiles.process([c for c in first if len(c)], self._customer_of)

    def on_timer(self, wall: float | None = None, *, caught_up: bool = True) -> IngestOutput:
        """Close windows and raise ``silent`` by the event clock, with or without new events.

        ``caught_up``: the consumer has read everything there is; only then may
        the clock run on past the last event (a lagging consumer's quiet is not
        the stream's). Caught up, messages held back by the alignment are
        processed first: the topic they waited for has nothing more to read.
        """
        out = IngestOutput()
        self._expect_registered()
        if caught_up and (self._held_r or self._held_h):
            out.absorb(self._process([], [], time.time() if wall is None else wall, ()))
        reading_now = self.reading_clock.now(wall, running=caught_up)
        if reading_now is not None:
            self._closed(self.windows.on_timer(reading_now), out)
        silence = IngestOutput()
        self._check_silence(self.silence_now(wall, running=caught_up, caught_up=caught_up), silence)
        self._count(silence)
        out.absorb(silence)
        return out

    def flush(self) -> IngestOutput:
        """Process what is held back and close every open window (end of a backfill)."""
        out = IngestOutput()
        self._expect_registered()
        if self._held_r or self._held_h:
            out.absorb(self._process([], [], time.time(), ()))
        self._closed(self.windows.flush(), out)
        return out

    # -- queries ------------------------------------------------------------------------------
    def health_counts(self) -> dict[str, int]:
        return self.health.counts()

    def late_count(self) -> int:
        active = self.health.machine.active[: len(self.health.rows)].astype(np.int64)
        return int(np.count_nonzero(active & _SILENT_BIT))

    def _customer_of(self, meter_id: str) -> str | None:
        slot = self.registry.slot(meter_id)
        return None if slot is None else self.registry.customer_ids[slot]

    # -- protocol -----------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        return {
            "config": self.config.model_dump(mode="json"),
            "dedupe": self.dedupe.snapshot(),
            "windows": self.windows.snapshot(),
            "health": self.health.snapshot(),
            "profiles": self.profiles.snapshot(),
            "reading_clock": self.reading_clock.snapshot(),
            "heartbeat_clock": self.heartbeat_clock.snapshot(),
            "totals": dict(self.totals),
        }

    @classmethod
    def restore(
        cls,
        state: dict[str, Any],
        registry: MeterRegistry | None = None,
        config: IngestConfig | None = None,
        owns: Callable[[str], bool] | None = None,
    ) -> Self:
        """The checkpointed state with ``config`` (the current settings; default: the checkpoint's own).

        Thresholds, rates and limits follow the new config (``config_changes`` lists them); a change the
        state cannot follow (:data:`STATE_SHAPING_SETTINGS`) raises :class:`ConfigChangeError` naming it.
        A checkpoint from before late corrections is read with :meth:`WindowConfig.from_checkpoint`.
        """
        stored = dict(state["config"])
        if isinstance(stored.get("windows"), dict):  # a checkpoint from before corrections: see from_checkpoint
            stored["windows"] = WindowConfig.from_checkpoint(stored["windows"]).model_dump(mode="json")
        current = IngestConfig.model_validate(stored) if config is None else config
        changes = check_followable(stored, current.model_dump(mode="json"), STATE_SHAPING_SETTINGS, "METERSEG_INGEST__")
        # (owned meters not started yet are taken in again from the registry on the next call)
        ingest = cls(registry if registry is not None else MeterRegistry(), current, owns)
        ingest.config_changes = changes
        ingest.dedupe = Deduplicator.restore(state["dedupe"]).with_horizon(ingest._dedupe_horizon())
        ingest.windows = ConsumptionWindows.restore({**state["windows"], "config": current.windows.model_dump(mode="json")})
        ingest.health = HealthMonitor.restore({**state["health"], "config": current.health.model_dump(mode="json")})
        ingest.profiles = DailyProfileBuilder.restore(state["profiles"])
        ingest.reading_clock = EventClock.restore(state["reading_clock"])
        if "heartbeat_clock" in state:  # checkpoints before it had one shared "clock": start the heartbeats' afresh
            ingest.heartbeat_clock = EventClock.restore(state["heartbeat_clock"])
        for clock in (ingest.reading_clock, ingest.heartbeat_clock):  # the rate is a setting, not state
            clock.rate, clock.idle_after_s = current.clock_rate, current.clock_idle_s
        ingest.totals = {**ingest.totals, **state.get("totals", {})}
        return ingest
