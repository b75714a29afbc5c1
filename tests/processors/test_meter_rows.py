"""MeterRows keeps a meter's row across restores and late registrations, with no id dict of its own."""

from __future__ import annotations

import numpy as np

from processors.columns import EPOCH, MeterRegistry, MeterRows
from stream.schemas import MeterInfo


def _info(meter_id: str) -> MeterInfo:
    return MeterInfo(meter_id=meter_id, customer_id="C", region="N", tariff="prepaid", installed_on=EPOCH)


def test_restored_rows_keep_their_numbers_also_for_meters_registered_later() -> None:
    registry = MeterRegistry([_info("A"), _info("B")])
    rows = MeterRows(["B", "X", "A"])  # restored from a snapshot; X is not registered (yet)
    assert rows.row("X") == 1 and rows.row("A") == 2  # before any registry: from the ids
    assert rows.rows_of(registry, np.array([0, 1, 0])).tolist() == [2, 0, 2]
    assert rows.row("X") == 1 and rows.row("B") == 0 and rows.row("Z") is None
    registry.upsert(_info("C"))
    registry.upsert(_info("X"))  # registers after the restore: keeps row 1, no new row
    assert rows.rows_of(registry, np.array([3, 2, 3])).tolist() == [1, 3, 1]
    assert rows.ids == ["B", "X", "A", "C"] and rows.row("X") == 1 and rows.row("C") == 3


def test_rows_share_the_registry_strings_and_survive_a_rebuilt_registry() -> None:
    restored_id = "".join(["M", "1"])  # a string object of its own, as a decoded snapshot has
    registry = MeterRegistry([_info("M0"), _info("M1")])
    rows = MeterRows([restored_id])
    rows.rows_of(registry, np.array([1]))
    assert rows.ids[0] is registry.meter_ids[1]
    other = MeterRegistry([_info("M1"), _info("M0")])  # another order: the rows follow the ids
    assert rows.rows_of(other, np.array([1, 0])).tolist() == [1, 0]
    assert rows.ids == ["M1", "M0"]
