"""Imported rows keep one identity wherever they come from, and no CSV line is ever lost silently.

- The same rows in a renamed file get the same event ids (a re-import changes nothing downstream).
- A different file under an earlier file's name gets new ids (nothing is dropped as a "duplicate").
- Identical rows of one file stay separate purchases (the CDNOW history has 215 such rows), also on re-import.
- A source's own transaction id is part of the identity when given.
- A stray quote costs its own line only, reported at that line; the reader goes on (fuzzed with hypothesis):
  rows read = published + rejected, and every line without a quote is published.
"""

from __future__ import annotations

import contextlib
import csv
import io
import re
import shutil
import tempfile
from pathlib import Path

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meterseg.cli import main

DATA = Path(__file__).resolve().parents[1] / "data" / "importers"
SUMMARY = re.compile(r"rows read ([\d,]+), published ([\d,]+), rejected ([\d,]+)")
HEADER = "customer_id,date,amount\n"


def _import(path: Path, out: Path, *extra: str) -> tuple[int, list[dict], dict[int, str], tuple[int, int, int]]:
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        rc = main(["import", "transactions", str(path), *extra, "--sink", "file", "--out", str(out),
                   "--no-progress", "--rejects", str(out / "rejects.csv")])  # fmt: skip
    events_file = out / "customer.purchases.jsonl"
    events = [orjson.loads(x) for x in events_file.read_bytes().splitlines()] if events_file.exists() else []
    with open(out / "rejects.csv", newline="", encoding="utf-8") as f:
        rejects = {int(r["line"]): r["reason"] for r in csv.DictReader(f)}
    found = SUMMARY.search(stdout.getvalue())
    assert found, stdout.getvalue()
    read, published, rejected = (int(g.replace(",", "")) for g in found.groups())
    return rc, events, rejects, (read, published, rejected)


def test_renamed_file_gives_the_same_event_ids(tmp_path: Path) -> None:
    cdnow = ["--columns", "customer,date,quantity,amount", "--customer-col", "customer", "--date-col", "date",
             "--amount-col", "amount", "--quantity-col", "quantity", "--date-format", "%Y%m%d",
             "--delimiter", "whitespace"]  # fmt: skip
    renamed = tmp_path / "history-2024-export.dat"
    shutil.copy(DATA / "cdnow.txt", renamed)
    _, first, _, _ = _import(DATA / "cdnow.txt", tmp_path / "a", *cdnow)
    _, second, _, _ = _import(renamed, tmp_path / "b", *cdnow)
    assert first and [e["event_id"] for e in first] == [e["event_id"] for e in second]
    # the file holds two identical purchases (00003, 1997-01-02, 2 CDs, 20.76): two events, two ids
    same = [e for e in first if e["customer_id"] == "00003"]
    assert len(same) == 2 and same[0]["event_id"] != same[1]["event_id"]
    # moved to other lines (a row inserted above them): still the same ids
    shifted = tmp_path / "shifted.txt"
    shifted.write_text("00009 19970105 1 5.00\n" + (DATA / "cdnow.txt").read_text())
    _, third, _, _ = _import(shifted, tmp_path / "c", *cdnow)
    assert {e["event_id"] for e in first} < {e["event_id"] for e in third}


def test_same_name_with_other_rows_gets_new_ids(tmp_path: Path) -> None:
    path = tmp_path / "purchases.csv"
    path.write_text(HEADER + "A,2023-01-01,1\nB,2023-01-02,2\nC,2023-01-03,3\n")
    _, first, _, _ = _import(path, tmp_path / "a")
    path.write_text(HEADER + "A,2023-02-01,10\nB,2023-02-02,20\nC,2023-01-03,3\n")  # two new rows, one old
    rc, second, rejects, books = _import(path, tmp_path / "b")
    assert rc == 0 and books == (3, 3, 0) and not rejects
    old = {e["event_id"] for e in first}
    assert [e["event_id"] in old for e in second] == [False, False, True]


def test_identical_rows_are_separate_and_reimport_is_stable(tmp_path: Path) -> None:
    path = tmp_path / "tx.csv"
    path.write_text(HEADER + "A,2023-01-01,5\nA,2023-01-01,5.00\nA,2023-01-01,5\n")
    _, first, _, _ = _import(path, tmp_path / "a")
    _, again, _, _ = _import(path, tmp_path / "b")
    ids = [e["event_id"] for e in first]
    assert len(set(ids)) == 3 and ids == [e["event_id"] for e in again]


def test_transaction_id_column_is_part_of_the_identity(tmp_path: Path) -> None:
    path = tmp_path / "tx.csv"
    path.write_text("txn,customer_id,date,amount\nT1,A,2023-01-01,5\nT2,A,2023-01-01,5\n")
    _, events, _, _ = _import(path, tmp_path / "a", "--id-col", "txn")
    path.write_text("txn,customer_id,date,amount\nT2,A,2023-01-01,5\n")
    _, later, _, _ = _import(path, tmp_path / "b", "--id-col", "txn")
    assert len({e["event_id"] for e in events}) == 2 and later[0]["event_id"] == events[1]["event_id"]


def test_stray_quote_costs_its_own_line_only(tmp_path: Path) -> None:
    path = tmp_path / "tx.csv"
    lines = [f"C{i},2023-01-{1 + i % 28:02d},{i}.5" for i in range(200)]
    lines[4] = 'C4,"2023-01-05,4.5'  # an unbalanced quote on line 6 of the file
    path.write_text(HEADER + "\n".join(lines) + "\n")
    rc, events, rejects, books = _import(path, tmp_path / "out")
    assert rc == 1 and books == (200, 199, 1)
    assert list(rejects) == [6] and "unbalanced quote" in rejects[6]
    assert sorted(e["customer_id"] for e in events) == sorted(f"C{i}" for i in range(200) if i != 4)


FUZZ = settings(max_examples=60, derandomize=True, database=None, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])  # fmt: skip
QUOTED = st.sampled_from(['"', '""', '"x', 'x"', '"a,b', '",', ',"', '"\r'])


@FUZZ
@given(st.lists(st.tuples(st.integers(0, 99), st.booleans(), QUOTED, st.integers(0, 30)), min_size=1, max_size=40))
def test_fuzzed_quotes_never_lose_a_row(rows: list[tuple[int, bool, str, int]]) -> None:
    """Rows with quotes put anywhere: the books balance and every line without a quote is published."""
    lines, clean = [], []
    for i, (n, damaged, quote, at) in enumerate(rows):
        text = f"C{n},2023-01-{1 + n % 28:02d},{n}.25"
        if damaged:
            pos = min(at, len(text))
            text = text[:pos] + quote + text[pos:]
        else:
            clean.append(i + 2)  # file line number (after the header)
        lines.append(text)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "tx.csv"
        path.write_text(HEADER + "\n".join(lines) + "\n", newline="")
        _, events, rejects, (read, published, rejected) = _import(path, Path(tmp) / "out")
    assert read == len(rows) and read == published + rejected == len(events) + len(rejects)
    assert not set(clean) & set(rejects)  # a line without a quote is never rejected
    assert all(1 < line <= len(rows) + 1 for line in rejects)
