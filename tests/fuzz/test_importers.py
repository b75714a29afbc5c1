"""Every importer (``meterseg import purchases|monthly|transactions``) on fuzzed files.

Files are made of damaged rows - numbers that are huge, NaN or infinite or
not numbers, dates far in the past and future or not dates, unicode, quotes,
delimiters and line breaks inside fields, too many or too few fields - in
UTF-8, with a BOM, with CRLF, with bytes that are not UTF-8, or entirely
random bytes. Whatever the file:

- the command ends with exit code 0 (all published), 1 (rows rejected) or 2
  with the documented one-line error (``meterseg import: error: ...``, e.g. a
  header that lacks a required column) - never a traceback;
- the books balance: rows read = published + rejected; the report lists every
  rejected row with its line number and a reason; the exit code is 1 exactly
  when rows were rejected;
- every published event satisfies its topic's contract.
"""

from __future__ import annotations

import contextlib
import csv
import io
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context
from pydantic import BaseModel

from meterseg.cli import main
from stream.schemas import Bill, Feedback, Heartbeat, MaintenanceRequest, MeterInfo, Purchase
from tests.fuzz.payloads import FAR_TIMESTAMPS, WEIRD_STRINGS, one_in

FUZZ = settings(
    max_examples=40,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)
CONTRACTS: dict[str, type[BaseModel]] = {
    "customer.purchases": Purchase, "meter.registry": MeterInfo, "customer.bills": Bill,
    "meter.heartbeats": Heartbeat, "meter.maintenance": MaintenanceRequest, "customer.feedback": Feedback,
}  # fmt: skip
SUMMARY = re.compile(r"rows read ([\d,]+), published ([\d,]+), rejected ([\d,]+)")

numbers = st.one_of(
    st.sampled_from(["nan", "NaN", "inf", "-Infinity", "1e309", "9" * 400, "1e-400", "-0", "1_000", "١٢٣", "0x10"]),
    st.sampled_from(["-5", "1.5", "0", "", " ", "$", "1e3", "1,5"]),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(-(10**30), 10**30).map(str),
    st.text(max_size=8),
)
iso_dates = st.one_of(
    st.sampled_from(["2022-09-19 12:00:00", "1997/01/02", "19970101", "31/12/1999", "2022-02-30", "yesterday"]),
    st.sampled_from([str(t) for t in FAR_TIMESTAMPS]),
    st.sampled_from(["0001-01-01", "9999-12-31", "2100-12-31T23:00:00-05:00", "1970-01-01", "1969-12-31"]),
    st.text(max_size=12),
)
rfc_dates = one_in(3).flatmap(lambda iso: iso_dates if iso else RFC_EDGES)
RFC_EDGES = st.one_of(
    st.sampled_from([
        "Mon, 01 Jan 0001 00:00:00 +0100", "Fri, 31 Dec 9999 23:59:59 -0100", "Thu, 01 Jan 1970 00:00:00 +0000",
        "Wed, 31 Dec 1969 23:59:59 +0000", "Sat, 01 Jan 2101 00:00:00 +0000", "Mon, 19 Sep 2022 12:16:01 +9999",
        "Mon, 19 Sep 99999 12:16:01 +0000", "Mon, 19 Sep 2022 12:16:01", "Mon, 32 Sep 2022 25:61:61 +0000",
        "Sat, 01 Jan 2100 00:00:00 +0000", "Tue, 31 Dec 2099 23:59:59 -2359",
    ]),
)  # fmt: skip
texts = st.one_of(st.sampled_from(WEIRD_STRINGS), st.text(max_size=10))


def cell(valid: list[str], nasty: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """Mostly a valid value (so rows get published too), else a nasty one."""
    return one_in(8).flatmap(lambda bad: nasty if bad else st.sampled_from(valid))


customers = cell(["C001", "C002", "C003"], st.sampled_from(["C999", "C 1", "", "Ｃ001", "C001\n", "x" * 65]) | texts)
PURCHASE_COLUMNS = (
    "EventName", "ProductCode", "ProductName", "ProductDescription", "UnitPrice", "Quantity", "CustomerID",
    "Username", "ChannelType", "Address", "City", "State", "Country", "Date",
)  # fmt: skip
PURCHASE_CELLS: dict[str, st.SearchStrategy[str]] = {
    "EventName": cell(["VIEWED", "processed", "PURCHASED"], st.sampled_from(["CLICKED", ""]) | texts),
    "ProductCode": cell(["P1", "PLAN-2", ""], texts), "ProductName": cell(["Top-up 10", "Lamp"], texts),
    "UnitPrice": cell(["12.50", "$9.99", "0", "1e3"], numbers), "Quantity": cell(["1", "3", "2.0"], numbers),
    "CustomerID": customers, "ChannelType": cell(["web", "Mobile App", "In-Store", "call centre"], texts),
    "Date": cell(["Mon, 19 Sep 2022 12:16:01 +0530", "Tue, 20 Sep 2022 08:00:00 -0700"], rfc_dates),
}  # fmt: skip
MONTHLY: dict[str, dict[str, st.SearchStrategy[str]]] = {
    "customer_data.csv": {"CustomerID": customers, "Region": cell(["North", "South", "Région 7"], texts),
                          "InstallationDate": cell(["2020-01-01", "2021-06-30"], iso_dates)},
    "monthly_data.csv": {"CustomerID": customers, "Date": cell(["2022-01-31", "2022-02-28"], iso_dates),
                         "Consumption_kWh": cell(["320.5", "0"], numbers), "Revenue_$": cell(["80.13", "0"], numbers),
                         "MeterStatus": cell(["Good", "fair", "Poor"], texts)},
    "maintenance_data.csv": {"CustomerID": customers, "RequestDate": cell(["2022-01-01"], iso_dates),
                             "ResolutionDate": cell(["", "2022-01-05"], iso_dates),
                             "TechnicianID": cell(["T1", ""], texts)},
    "feedback_data.csv": {"CustomerID": customers, "FeedbackDate": cell(["2022-03-01"], iso_dates),
                          "SatisfactionScore": cell(["1", "4", "5"], numbers)},
}  # fmt: skip
TRANSACTION_CELLS: dict[str, st.SearchStrategy[str]] = {
    "customer": cell(["00001", "00002"], texts),
    "date": cell(["1997-01-01", "19970102"], iso_dates),
    "quantity": cell(["1", "5"], numbers),
    "amount": cell(["11.77", "0"], numbers),
}


@st.composite
def csv_file(draw: st.DrawFn, columns: Sequence[str], cells: dict[str, st.SearchStrategy[str]],
             delimiter: str = ",", header: bool = True) -> bytes:  # fmt: skip
    """A CSV file: a (maybe damaged) header, then rows of fuzzed cells, some of the wrong width, in some encoding."""
    if draw(one_in(30)):
        return draw(st.binary(max_size=300))  # not a CSV at all
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter=delimiter, lineterminator=draw(st.sampled_from(["\n", "\r\n"])))
    names = list(columns)
    if header:
        if draw(one_in(20)):
            names = draw(st.permutations(names))[: draw(st.integers(0, len(names)))]
        writer.writerow([draw(st.sampled_from([n, f" {n} "])) for n in names])
    rows = draw(st.integers(1, 15))
    for _ in range(rows):
        row = [draw(cells.get(c, texts)) for c in columns]
        width = draw(st.sampled_from(["ok"] * 12 + ["short", "long", "blank"]))
        if width == "short":
            row = row[: draw(st.integers(0, len(row) - 1))]
        elif width == "long":
            row += draw(st.lists(texts, min_size=1, max_size=2))
        elif width == "blank":
            row = []
        if delimiter == " ":
            buf.write(" ".join(row) + "\n")
        else:
            writer.writerow(row)
    text = buf.getvalue()
    data = text.encode("utf-8", "surrogatepass")
    damage = draw(st.sampled_from(["none"] * 16 + ["bom", "latin-1", "insert", "insert", "utf-16", "truncate"]))
    if damage == "bom":
        data = b"\xef\xbb\xbf" + data
    elif damage == "latin-1":
        data = text.encode("latin-1", "replace") + "é\n".encode("latin-1")
    elif damage == "insert" and data:
        at = draw(st.integers(0, len(data)))
        data = data[:at] + draw(st.binary(min_size=1, max_size=4)) + data[at:]
    elif damage == "utf-16":
        data = text.encode("utf-16", "surrogatepass")
    elif damage == "truncate":  # a cut after the header (a cut header is one more refused header)
        first = data.find(b"\n") + 1
        data = data[: draw(st.integers(first, max(first, len(data))))]
    return data


def run_import(args: list[str], out: Path) -> tuple[int, str, str]:
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        rc = main(["import", *args, "--sink", "file", "--out", str(out), "--no-progress",
                   "--rejects", str(out / "rejects.csv")])  # fmt: skip
    return rc, stdout.getvalue(), stderr.getvalue()


def tally(what: str) -> None:
    """Count an outcome in hypothesis' statistics (``--hypothesis-show-statistics``)."""
    if currently_in_test_context():
        event(what)


def check_outcome(rc: int, stdout: str, stderr: str, out: Path, main_topic: str | None) -> None:
    """The exit code, the books and the report agree; every published event satisfies its contract."""
    assert "Traceback" not in stderr, stderr
    if rc == 2:
        lines = [line for line in stderr.splitlines() if line.startswith("meterseg import: error:")]
        assert lines, stderr
        assert "header lacks column" in lines[0], lines[0]  # the only unusable input these files can be
        tally("refused: header")
        return
    assert rc in (0, 1), (rc, stdout, stderr)
    found = SUMMARY.search(stdout)
    assert found, stdout
    read, published, rejected = (int(g.replace(",", "")) for g in found.groups())
    assert read == published + rejected
    assert (rc == 1) == (rejected > 0)
    with open(out / "rejects.csv", newline="", encoding="utf-8") as f:
        report = list(csv.DictReader(f))
    assert len(report) == rejected
    for row in report:
        assert int(row["line"]) >= 1 and row["reason"].strip(), row
    tally(f"published {min(published, 3)}{'+' if published > 3 else ''}, rejected {'some' if rejected else 'none'}")
    counts = {}
    for path in out.glob("*.jsonl"):
        topic = path.name.removesuffix(".jsonl")
        lines = path.read_bytes().splitlines()
        counts[topic] = len(lines)
        for line in lines:
            CONTRACTS[topic].model_validate(orjson.loads(line))
    if main_topic is not None:  # one event per published row
        assert counts.get(main_topic, 0) == published


def purchases_file(*dates: str) -> bytes:
    """A purchases CSV whose rows are valid but for the date."""
    rows = [",".join(PURCHASE_COLUMNS)]
    rows += [f'PURCHASED,P1,Lamp,,12.50,1,C001,,web,,,,,"{d}"' for d in dates]
    return "\n".join(rows).encode() + b"\n"


@FUZZ
@given(data=csv_file(PURCHASE_COLUMNS, PURCHASE_CELLS))
@example(data=purchases_file("Fri, 31 Dec 9999 23:59:59 -0100", "Mon, 19 Sep 2022 12:16:01 +0530"))  # overflowed
def test_purchases_importer(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "purchases.csv"
        path.write_bytes(data)
        rc, stdout, stderr = run_import(["purchases", str(path)], Path(tmp) / "out")
        check_outcome(rc, stdout, stderr, Path(tmp) / "out", "customer.purchases")


@pytest.mark.parametrize("layout", ["csv", "whitespace"])
@FUZZ
@given(data=st.data())
def test_transactions_importer(layout: str, data: st.DataObject) -> None:
    columns = ("customer", "date", "quantity", "amount")
    if layout == "csv":
        content = data.draw(csv_file(columns, TRANSACTION_CELLS, delimiter=";"))
        args = ["--delimiter", ";", "--customer-col", "customer", "--date-col", "date", "--amount-col", "amount",
                "--quantity-col", "quantity"]  # fmt: skip
    else:
        content = data.draw(csv_file(columns, TRANSACTION_CELLS, delimiter=" ", header=False))
        args = ["--columns", ",".join(columns), "--delimiter", "whitespace", "--date-format", "%Y%m%d",
                "--customer-col", "customer", "--date-col", "date", "--amount-col", "amount"]  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "tx.txt"
        path.write_bytes(content)
        rc, stdout, stderr = run_import(["transactions", str(path), *args], Path(tmp) / "out")
        check_outcome(rc, stdout, stderr, Path(tmp) / "out", "customer.purchases")


@settings(FUZZ, max_examples=30)
@given(data=st.data())
def test_monthly_importer(data: st.DataObject) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp) / "in"
        directory.mkdir()
        for name, cells in MONTHLY.items():
            if name != "customer_data.csv" and data.draw(one_in(6)):
                continue  # an optional file missing
            (directory / name).write_bytes(data.draw(csv_file(list(cells), cells), label=name))
        rc, stdout, stderr = run_import(["monthly", str(directory)], Path(tmp) / "out")
        check_outcome(rc, stdout, stderr, Path(tmp) / "out", None)


def test_a_row_that_is_not_utf8_is_reported_and_the_import_goes_on(tmp_path: Path) -> None:
    """It used to stop the whole import with exit 2 ('utf-8' codec can't decode ...) and no report."""
    ok = purchases_file("Mon, 19 Sep 2022 12:16:01 +0530").splitlines()
    data = b"\n".join([*ok, ok[1].replace(b"Lamp", "Lampe à pétrole".encode("latin-1")), ok[1]]) + b"\n"
    path = tmp_path / "purchases.csv"
    path.write_bytes(data)
    rc, stdout, stderr = run_import(["purchases", str(path)], tmp_path / "out")
    check_outcome(rc, stdout, stderr, tmp_path / "out", "customer.purchases")
    assert "rows read 3, published 2, rejected 1" in stdout
    with open(tmp_path / "out" / "rejects.csv", newline="", encoding="utf-8") as f:
        (row,) = list(csv.DictReader(f))
    assert row["line"] == "3" and "field 3 is not UTF-8 text (byte 0xe0" in row["reason"], row
    assert "Lampe \ufffd p\ufffdtrole" in row["row"]
