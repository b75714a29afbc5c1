"""`meterseg import readings`: long and wide shapes, DST days, rejects with their line, balance, re-import."""

from __future__ import annotations

import csv
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from meterseg.cli import main
from stream.schemas import MeterInfo, ReadingBlock

REGISTRY = "meter_id,customer_id,region,tariff,interval_minutes\nM1,C1,North,prepaid,15\nM2,C2,South,postpaid,15\n"


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _rejects(path: Path) -> dict[int, str]:
    with open(path, newline="") as f:
        return {int(r["line"]): r["reason"] for r in csv.DictReader(f)}


def _blocks(out: Path) -> list[ReadingBlock]:
    return [ReadingBlock.model_validate_json(line) for line in (out / "meter.readings.jsonl").read_bytes().splitlines()]


def _starts(block: ReadingBlock) -> list[str]:
    return [r.interval_start.strftime("%Y-%m-%dT%H:%M") for r in block.columns.readings()]


def _import(tmp: Path, out: str, *args: str) -> int:
    return main(["import", "readings", *args, "--sink", "file", "--out", str(tmp / out), "--no-progress"])


LONG = """meter_id,interval_start,kwh,kwh_export
M1,2026-03-29T00:00:00,0.25,0
M1,2026-03-29T00:15:00,0.5,0.1
M1,2026-03-29T02:30:00,0.5,0
M1,2026-03-29T03:00:00,abc,0
M9,2026-03-29T03:00:00,0.1,0
M1,2026-03-29T03:07:00,0.1,0
M2,2026-03-29T01:45:00,0.125,0
M2,2026-03-29T03:00:00,0.125,0
M2,2026-03-29T03:15:00,0.125,-1
M2,2026-03-29T03:30:00,0.125
"""


def test_long_rows_in_local_time_with_rejects_on_their_lines(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    registry = _write(tmp_path / "meters.csv", REGISTRY)
    data = _write(tmp_path / "long.csv", LONG)
    rc = _import(tmp_path, "a", str(data), "--registry", str(registry), "--timezone", "Europe/Berlin")
    assert rc == 1
    out = capsys.readouterr().out
    # 2 registry rows + 10 reading rows read; 2 + 4 published; 6 rejected: the books balance
    assert "rows read 12, published 6, rejected 6" in out
    rejects = _rejects(tmp_path / "a" / "long.csv.rejects.csv")
    assert set(rejects) == {4, 5, 6, 7, 10, 11}
    assert "does not exist in Europe/Berlin" in rejects[4]  # 02:30 is skipped by the spring change
    assert "kwh: 'abc' is not a number" in rejects[5]
    assert "unknown meter 'M9'" in rejects[6]
    assert "not on the 15-minute grid" in rejects[7]
    assert "kwh_export: -1 is below 0" in rejects[10]
    assert "expected 4 fields, got 3" in rejects[11]
    infos = [MeterInfo.model_validate_json(v) for v in (tmp_path / "a" / "meter.registry.jsonl").read_bytes().splitlines()]
    assert [i.meter_id for i in infos] == ["M1", "M2"]
    blocks = _blocks(tmp_path / "a")
    assert [(b.columns.meter_id[0], _starts(b)) for b in blocks] == [
        ("M1", ["2026-03-28T23:00", "2026-03-28T23:15"]),  # CET: UTC+1
        ("M2", ["2026-03-29T00:45", "2026-03-29T01:00"]),  # 03:00 local is CEST already: UTC+2
    ]
    m1 = blocks[0].columns.readings()
    assert [r.customer_id for r in m1] == ["C1", "C1"] and [r.register_kwh for r in m1] == [0.25, 0.75]
    assert [r.kwh_export for r in m1] == [0.0, 0.1] and m1[0].seq == m1[1].seq - 1 and m1[0].voltage == 230.0


def _wide(rows: list[tuple[str, str, list[str]]]) -> str:
    head = ["meter_id", "date"] + [f"v{i + 1}" for i in range(100)]
    lines = [",".join(head)]
    for meter, day, values in rows:
        lines.append(",".join([meter, day, *values, *[""] * (100 - len(values))]))
    return "\n".join(lines) + "\n"


def test_wide_days_of_23_24_and_25_hours(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    q = [f"{0.01 * (i % 7 + 1):.2f}" for i in range(100)]
    hole = list(q[:96])
    hole[10] = ""  # a missing quarter hour: nothing published for it (a gap downstream)
    data = _write(tmp_path / "wide.csv", _wide([
        ("M1", "2026-03-29", q[:92]),   # spring change: 23 h
        ("M1", "2026-06-01", q[:96]),
        ("M1", "2026-10-25", q[:100]),  # autumn change: 25 h
        ("M2", "2026-03-29", q[:96]),   # 96 values on a 23-hour day: rejected
        ("M2", "2026-06-01", hole),
        ("M2", "2026-06-02", [*q[:95], "x"]),
        ("M2", "June 3", q[:96]),
    ]))  # fmt: skip
    registry = _write(tmp_path / "meters.csv", REGISTRY)
    rc = _import(tmp_path, "w", str(data), "--shape", "wide", "--registry", str(registry), "--timezone",
                 "Europe/Berlin")  # fmt: skip
    assert rc == 1
    assert "rows read 9, published 6, rejected 3" in capsys.readouterr().out
    rejects = _rejects(tmp_path / "w" / "wide.csv.rejects.csv")
    assert set(rejects) == {5, 7, 8}
    assert "v93: 2026-03-29 has 23 hours in Europe/Berlin, 92 values; found more" in rejects[5]
    assert "v96: 'x' is not a number" in rejects[7] and "date" in rejects[8]
    blocks = _blocks(tmp_path / "w")
    assert [len(b.columns.meter_id) for b in blocks] == [92, 96, 100, 95]
    spring, summer, autumn, holed = blocks
    assert _starts(spring)[0] == "2026-03-28T23:00" and _starts(spring)[-1] == "2026-03-29T21:45"
    assert _starts(summer)[0] == "2026-05-31T22:00" and _starts(summer)[-1] == "2026-06-01T21:45"
    a = [r.interval_start.timestamp() for r in autumn.columns.readings()]
    assert _starts(autumn)[0] == "2026-10-24T22:00" and a == [a[0] + 900 * i for i in range(100)]
    assert "2026-05-31T00:30" not in _starts(holed) and len(set(_starts(holed))) == 95
    assert sum(r.kwh_import for r in spring.columns.readings()) == pytest.approx(sum(float(v) for v in q[:92]))


def test_a_reimport_makes_the_same_blocks_whatever_the_file(tmp_path: Path) -> None:
    registry = _write(tmp_path / "meters.csv", REGISTRY)
    data = _write(tmp_path / "long.csv", LONG)
    again = _write(tmp_path / "copy-of-export.csv", LONG)
    _import(tmp_path, "a", str(data), "--registry", str(registry), "--timezone", "Europe/Berlin")
    _import(tmp_path, "b", str(again), "--registry", str(registry), "--timezone", "Europe/Berlin")
    a, b = _blocks(tmp_path / "a"), _blocks(tmp_path / "b")
    assert [x.model_dump() for x in a] == [x.model_dump() for x in b]
    assert len({x.batch_id for x in a}) == len(a)


def test_without_customer_ids_the_meter_is_unknown_and_bad_options_are_usage_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = _write(tmp_path / "long.csv", "meter_id,interval_start,kwh\nM1,2026-01-01T00:00:00Z,0.5\n")
    assert _import(tmp_path, "a", str(data)) == 1
    assert "unknown meter 'M1'" in next(iter(_rejects(tmp_path / "a" / "long.csv.rejects.csv").values()))
    with_customer = _write(tmp_path / "c.csv", "meter_id,customer_id,interval_start,kwh\nM1,C1,2026-01-01T00:00:00Z,0.5\n")
    assert _import(tmp_path, "b", str(with_customer)) == 0
    assert _import(tmp_path, "c", str(data), "--timezone", "Mars/Olympus") == 2
    assert "unknown time zone" in capsys.readouterr().err
    wide = _write(tmp_path / "w.csv", "meter_id,date,a,b,c\nM1,2026-01-01,1,2,3\n")
    assert _import(tmp_path, "d", str(wide), "--shape", "wide") == 2
    assert "24, 48 or 96 value columns" in capsys.readouterr().err


def _utc(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp())


def test_block_ids_depend_on_content_only() -> None:
    from simulators.importers.readings import block_id

    base = block_id("M1", [_utc("2026-01-01T00:00")], [0.5], [0.0])
    assert base != block_id("M1", [_utc("2026-01-01T00:00")], [0.51], [0.0])
    assert base != block_id("M2", [_utc("2026-01-01T00:00")], [0.5], [0.0])
    assert orjson.dumps(base) == orjson.dumps(block_id("M1", [_utc("2026-01-01T00:00")], [0.5], [0.0]))
