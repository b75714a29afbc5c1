"""Idempotent duplicate removal with bounded memory.

Kafka delivers at least once and Faust may reprocess a batch after a
rebalance; meters and head-ends also resend. A reading is a duplicate when the
same meter already delivered the same interval (``interval_start`` at the
granularity of the shortest interval, 15 minutes by default), or when its
batch envelope's ``batch_id`` was already seen.

Memory per meter is a high-watermark (the latest interval seen) and a ring of
bits, one per interval slot, saying which of the slots up to the
high-watermark were seen: ``words`` 64-bit words, so 64 slots (16 hours at
15 minutes) per word. The horizon (``horizon_s``) must cover the windows'
allowed lateness, because a late reading corrects a closed window and only
an exact duplicate check keeps it from being counted twice: at the default
48 hours that is 3 words, 32 bytes per meter with the high-watermark (for interval
starts on the slot grid, as meters send them).
Anything older than the horizon is rejected ``too_late`` downstream anyway,
so it is passed through and counted in ``beyond_horizon`` rather than
remembered. Batch ids are remembered in a bounded FIFO.

All checks are vectorised: duplicates inside the batch by a stable lexsort on
(meter, interval), duplicates against history by bit tests on the rings;
bit *p* of a meter's ring holds slot ``s`` with ``s % (64 * words) == p``, and
the bits of the slots a new high-watermark passes over are cleared first.

Examples:
    >>> import numpy as np
    >>> from stream.schemas import MeterInfo
    >>> from processors.columns import EPOCH, MeterRegistry, ReadingColumns
    >>> reg = MeterRegistry([MeterInfo(meter_id="M1", customer_id="C1", region="N", tariff="prepaid",
    ...                                installed_on=EPOCH)])
    >>> row = {"meter_id": "M1", "customer_id": "C1", "kwh_import": 0.1, "register_kwh": 1.0,
    ...        "voltage": 230.0, "seq": 0}
    >>> batch = ReadingColumns.from_rows(reg, [{**row, "interval_start": t} for t in (0, 900, 0)])
    >>> d = Deduplicator()
    >>> first = d.process(batch)
    >>> len(first.readings), first.duplicates
    (2, 1)
    >>> d.process(batch).duplicates  # redelivery: all three are duplicates now
    3
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Self

import numpy as np

from processors.columns import I64, MeterRows, ReadingColumns, grow_rows, pack_array, unpack_array

_NONE = np.iinfo(np.int64).min
_BITS = 64


@dataclass(slots=True)
class DedupeResult:
    """Readings that are new, and how many were dropped.

    ``duplicate_index`` holds positions (in the input batch) of dropped readings.
    """

    readings: ReadingColumns
    duplicates: int
    duplicate_index: I64
    beyond_horizon: int = 0


class Deduplicator:
    """Drop repeated (meter, interval) readings and repeated batch envelopes.

    Args:
        granularity_s: width of one interval slot; the shortest interval length (900 s).
        batch_memory: how many envelope ``batch_id`` values to remember (FIFO); 0 disables.
        horizon_s: how far behind a meter's newest interval duplicates are still recognised (at least
            this; rounded up to whole 64-slot words). Default: one word, 16 hours at 15 minutes.
    """

    def __init__(self, granularity_s: int = 900, batch_memory: int = 100_000, horizon_s: int | None = None) -> None:
        if granularity_s <= 0:
            raise ValueError("granularity_s must be positive")
        self.granularity_s = granularity_s
        self.batch_memory = batch_memory
        slots = _BITS if horizon_s is None else -(-horizon_s // granularity_s)
        self.words = max(1, -(-slots // _BITS))
        self.bits = self.words * _BITS
        self.rows = MeterRows()
        self._hw = np.full(0, _NONE, np.int64)
        self._mask = np.zeros(0, np.uint64)  # rows × words, flat
        self._batches: OrderedDict[str, None] = OrderedDict()
        self.horizon_s = granularity_s * self.bits

    def process(self, batch: ReadingColumns) -> DedupeResult:
        """Return the batch without duplicates (first occurrence wins)."""
        n = len(batch)
        dup = np.zeros(n, np.bool_)
        if n == 0:
            return DedupeResult(batch, 0, np.zeros(0, np.int64))
        if self.batch_memory and any(b is not None for b in batch.batch_ids):
            dup |= self._seen_envelopes(batch)
        rows = self.rows.rows_of(batch.registry, batch.meter)
        words, bits = self.words, self.bits
        self._hw = grow_rows(self._hw, len(self.rows), _NONE)
        if len(self._mask) < len(self._hw) * words:  # one ring of `words` per high-watermark slot
            self._mask = np.concatenate([self._mask, np.zeros(len(self._hw) * words - len(self._mask), np.uint64)])
        slot = batch.interval_start // self.granularity_s
        # Inside the batch: the first of equal (row, slot) pairs wins (lexsort is stable).
        order = np.lexsort((slot, rows))
        rs, ss = rows[order], slot[order]
        repeat = np.zeros(n, np.bool_)
        repeat[1:] = (rs[1:] == rs[:-1]) & (ss[1:] == ss[:-1])
        dup[order[repeat]] = True
        # Move each meter's high-watermark first (clearing the bits of the slots it passes over), then judge
        # every reading against it: a block carrying a meter's newest and older intervals is judged as a whole.
        known = self._hw[rows] != _NONE  # before this batch
        before = self._hw[: len(self.rows)].copy()
        np.maximum.at(self._hw, rows[~dup], slot[~dup])
        moved = np.flatnonzero(self._hw[: len(self.rows)] != before)  # no sort: cheaper than np.unique
        self._clear_passed(moved, before[moved], self._hw[moved])
        hw = self._hw[rows]
        age = hw - slot
        in_horizon = age < bits
        beyond = known & ~in_horizon & ~dup
        pos = slot % bits
        flat = rows * words + pos // _BITS
        bit = (pos % _BITS).astype(np.uint64)
        seen = in_horizon & (((self._mask[flat] >> bit) & np.uint64(1)) == 1)
        dup |= seen
        # Remember the new, rememberable readings.
        new = ~dup & in_horizon
        if new.any():
            np.bitwise_or.at(self._mask, flat[new], np.left_shift(np.uint64(1), bit[new]))
        index = np.flatnonzero(dup)
        kept = batch if not len(index) else batch.take(~dup)
        return DedupeResult(kept, len(index), index, int(beyond.sum()))

    def _clear_passed(self, rows: I64, old: I64, new: I64) -> None:
        """Clear the bits of slots ``old + 1 .. new`` of each row (they held slots now beyond the horizon)."""
        had = old != _NONE
        shift = np.where(had, new - np.where(had, old, 0), 0)
        moved = np.flatnonzero(shift > 0)
        if not len(moved):
            return
        words, bits = self.words, self.bits
        full = moved[shift[moved] >= bits]
        if len(full):
            self._mask.reshape(-1, words)[rows[full]] = np.uint64(0)
        part = moved[shift[moved] < bits]
        if len(part):
            k = shift[part]
            first = np.repeat(np.cumsum(k) - k, k)
            offset = np.arange(int(k.sum()), dtype=np.int64) - first
            r = np.repeat(rows[part], k)
            pos = (np.repeat(old[part], k) + 1 + offset) % bits
            flat = r * words + pos // _BITS
            np.bitwise_and.at(self._mask, flat, ~np.left_shift(np.uint64(1), (pos % _BITS).astype(np.uint64)))

    def _seen_envelopes(self, batch: ReadingColumns) -> np.ndarray[Any, np.dtype[np.bool_]]:
        """Mark readings of envelopes whose batch id was seen in an earlier message."""
        repeated = np.zeros(len(batch.batch_ids), np.bool_)
        for i, b in enumerate(batch.batch_ids):
            if b is None:
                continue
            if b in self._batches:
                repeated[i] = True
            else:
                self._batches[b] = None
                if len(self._batches) > self.batch_memory:
                    self._batches.popitem(last=False)
        out: np.ndarray[Any, np.dtype[np.bool_]] = repeated[batch.message]
        return out

    # -- protocol -----------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """Per-meter high-watermarks and masks keyed by meter id, plus remembered batch ids."""
        n = len(self.rows)
        return {
            "granularity_s": self.granularity_s,
            "batch_memory": self.batch_memory,
            "words": self.words,
            "meters": self.rows.ids,
            "hw": pack_array(self._hw[:n]),
            "mask": pack_array(self._mask[: n * self.words]),
            "batches": list(self._batches),
        }

    @classmethod
    def restore(cls, state: dict[str, Any]) -> Self:
        """Rebuild from :meth:`snapshot` output."""
        d = cls(state["granularity_s"], state["batch_memory"])
        d.words = int(state.get("words", 1))
        d.bits = d.words * _BITS
        d.horizon_s = d.granularity_s * d.bits
        d.rows = MeterRows(state["meters"])
        d._hw = unpack_array(state["hw"])
        mask = unpack_array(state["mask"])
        if "words" not in state:  # older checkpoints: bit i = slot hw - i; now bit (slot % 64)
            ring = np.zeros_like(mask)
            for i in range(_BITS):
                on = ((mask >> np.uint64(i)) & np.uint64(1)) == 1
                pos = ((d._hw - i) % _BITS).astype(np.uint64)
                ring[on] |= np.left_shift(np.uint64(1), pos[on])
            mask = ring
        d._mask = np.concatenate([mask, np.zeros(len(d._hw) * d.words - len(mask), np.uint64)])
        d._batches = OrderedDict.fromkeys(state["batches"])
        return d

    def with_horizon(self, horizon_s: int) -> Deduplicator:
        """This state with a ring of at least ``horizon_s`` (a restored checkpoint under a longer lateness).

        Bits of the old ring are moved to their place in the wider one; what the old ring did not
        remember stays unknown (passes once, as before).
        """
        wider = Deduplicator(self.granularity_s, self.batch_memory, horizon_s)
        if wider.words <= self.words:
            return self
        wider.rows, wider._hw, wider._batches = self.rows, self._hw, self._batches
        n = len(self._hw)
        wider._mask = np.zeros(n * wider.words, np.uint64)
        old = self._mask.reshape(-1, self.words)[:n]
        known = self._hw != _NONE
        for back in range(self.bits):  # slot hw - back, if it is in the old ring
            slot = self._hw - back
            p_old = slot % self.bits
            on = known & (((old[np.arange(n), p_old // _BITS] >> (p_old % _BITS).astype(np.uint64)) & np.uint64(1)) == 1)
            if on.any():
                p_new = slot[on] % wider.bits
                flat = np.flatnonzero(on) * wider.words + p_new // _BITS
                np.bitwise_or.at(wider._mask, flat, np.left_shift(np.uint64(1), (p_new % _BITS).astype(np.uint64)))
        return wider
