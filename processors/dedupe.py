"""Idempotent duplicate removal with bounded memory.

Kafka delivers at least once and Faust may reprocess a batch after a
rebalance; meters and head-ends also resend. A reading is a duplicate when the
same meter already delivered the same interval (``interval_start`` at the
granularity of the shortest interval, 15 minutes by default), or when its
batch envelope's ``batch_id`` was already seen.

Memory per meter is two integers: a high-watermark (the latest interval seen)
and a 64-bit mask of which of the 64 intervals up to the high-watermark were
seen, i.e. 16 hours at 15 minutes. That horizon should exceed the windows'
allowed lateness: anything older is rejected ``too_late`` downstream anyway,
so it is passed through and counted in ``beyond_horizon`` rather than
remembered. Batch ids are remembered in a bounded FIFO.

All checks are vectorised: duplicates inside the batch by a stable lexsort on
(meter, interval), duplicates against history by bit tests on the masks.

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
    """

    def __init__(self, granularity_s: int = 900, batch_memory: int = 100_000) -> None:
        if granularity_s <= 0:
            raise ValueError("granularity_s must be positive")
        self.granularity_s = granularity_s
        self.batch_memory = batch_memory
        self.rows = MeterRows()
        self._hw = np.full(0, _NONE, np.int64)
        self._mask = np.zeros(0, np.uint64)
        self._batches: OrderedDict[str, None] = OrderedDict()
        self.horizon_s = granularity_s * _BITS

    def process(self, batch: ReadingColumns) -> DedupeResult:
        """Return the batch without duplicates (first occurrence wins)."""
        n = len(batch)
        dup = np.zeros(n, np.bool_)
        if n == 0:
            return DedupeResult(batch, 0, np.zeros(0, np.int64))
        if self.batch_memory and any(b is not None for b in batch.batch_ids):
            dup |= self._seen_envelopes(batch)
        rows = self.rows.rows_of(batch.registry, batch.meter)
        self._hw = grow_rows(self._hw, len(self.rows), _NONE)
        self._mask = grow_rows(self._mask, len(self.rows), 0)
        slot = batch.interval_start // self.granularity_s
        # Inside the batch: the first of equal (row, slot) pairs wins (lexsort is stable).
        order = np.lexsort((slot, rows))
        rs, ss = rows[order], slot[order]
        repeat = np.zeros(n, np.bool_)
        repeat[1:] = (rs[1:] == rs[:-1]) & (ss[1:] == ss[:-1])
        dup[order[repeat]] = True
        # Against history.
        hw = self._hw[rows]
        age = hw - slot
        known = (hw != _NONE) & (age >= 0)
        in_horizon = known & (age < _BITS)
        beyond = known & (age >= _BITS) & ~dup
        bit = np.where(in_horizon, age, 0).astype(np.uint64)
        seen = in_horizon & (((self._mask[rows] >> bit) & np.uint64(1)) == 1)
        dup |= seen
        # Update the state with the new, rememberable readings.
        new = ~dup & ~beyond
        nr, ns = rows[new], slot[new]
        if len(nr):
            old_hw = self._hw.copy()
            np.maximum.at(self._hw, nr, ns)
            touched = np.unique(nr)
            shift = self._hw[touched] - old_hw[touched]
            had = old_hw[touched] != _NONE
            m = self._mask[touched]
            keep = had & (shift < _BITS)
            m = np.where(keep, m << np.where(keep, shift, 0).astype(np.uint64), np.uint64(0))
            self._mask[touched] = m
            age_new = self._hw[nr] - ns
            fits = age_new < _BITS  # older siblings of a big jump fall out of the horizon
            bits = np.left_shift(np.uint64(1), age_new[fits].astype(np.uint64))
            np.bitwise_or.at(self._mask, nr[fits], bits)
        index = np.flatnonzero(dup)
        kept = batch if not len(index) else batch.take(~dup)
        return DedupeResult(kept, len(index), index, int(beyond.sum()))

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
            "meters": self.rows.ids,
            "hw": pack_array(self._hw[:n]),
            "mask": pack_array(self._mask[:n]),
            "batches": list(self._batches),
        }

    @classmethod
    def restore(cls, state: dict[str, Any]) -> Self:
        """Rebuild from :meth:`snapshot` output."""
        d = cls(state["granularity_s"], state["batch_memory"])
        d.rows = MeterRows(state["meters"])
        d._hw = unpack_array(state["hw"])
        d._mask = unpack_array(state["mask"])
        d._batches = OrderedDict.fromkeys(state["batches"])
        return d
