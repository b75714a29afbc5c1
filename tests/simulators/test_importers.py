"""CSV importers: every valid row published, every bad row reported with its line and reason."""

from __future__ import annotations

import csv
from pathlib import Path

import orjson
import pytest

from meterseg.cli import main
from stream.schemas import Bill, Feedback, Heartbeat, MaintenanceRequest, MeterInfo, Purchase

DATA = Path(__file__).resolve().parents[1] / "data" / "importers"


def _rejects(path: Path) -> dict[int, str]:
    with open(path, newline="") as f:
        return {int(r["line"]): r["reason"] for r in csv.DictReader(f)}


def _jsonl(path: Path) -> list[dict]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def test_purchase_events(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["import", "purchases", str(DATA / "purchases.csv"), "--sink", "file", "--out", str(tmp_path),
               "--no-progress"])
    assert rc == 1  # rows were rejected, the rest published
    out = capsys.readouterr().out
    assert "rows read 18, published 5, rejected 13" in out
    events = [Purchase.model_validate(e) for e in _jsonl(tmp_path / "customer.purchases.jsonl")]
    assert [e.event_type for e in events] == ["VIEWED", "PROCESSED", "PURCHASED", "PURCHASED", "PURCHASED"]
    assert [e.channel for e in events] == ["web", "app", "app", "store", "agent"]
    assert [e.kind for e in events] == ["product", "product", "product", "plan", "topup"]
    assert events[1].amount == pytest.approx(49.8)  # UnitPrice x Quantity
    assert events[0].ts.isoformat() == "2022-09-19T06:46:01+00:00"  # +0530 converted to UTC
    assert events[4].ts.isoformat() == "2022-09-21T22:45:00+00:00"
    rejects = _rejects(tmp_path / "purchases.csv.rejects.csv")
    expected = {
        7: "EventName: 'CLICKED'", 8: "EventName: missing", 9: "UnitPrice: 'abc' is not a number",
        10: "UnitPrice: -5 is below 0", 11: "Quantity: 0 is below 1", 12: "Quantity: '1.5' is not a whole",
        13: "CustomerID: missing", 14: "CustomerID: 'John Doe' is not a valid id", 15: "ChannelType: 'Carrier",
        16: "Date: 'yesterday' is not an RFC 2822", 17: "has no time zone", 18: "expected 14 fields, got 7",
        20: "UnitPrice: 'nan' is not a finite",
    }
    assert set(rejects) == set(expected)
    for line, reason in expected.items():
        assert reason in rejects[line], (line, rejects[line])


def test_reimport_gives_identical_event_ids(tmp_path: Path) -> None:
    for out in ("a", "b"):
        main(["import", "purchases", str(DATA / "purchases.csv"), "--sink", "file", "--out", str(tmp_path / out),
              "--no-progress"])
    a = _jsonl(tmp_path / "a" / "customer.purchases.jsonl")
    b = _jsonl(tmp_path / "b" / "customer.purchases.jsonl")
    assert [e["event_id"] for e in a] == [e["event_id"] for e in b]
    assert len({e["event_id"] for e in a}) == len(a)


def test_monthly_meter_data(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["import", "monthly", str(DATA / "monthly"), "--sink", "file", "--out", str(tmp_path), "--no-progress",
               "--rejects", str(tmp_path / "rejects.csv")])
    assert rc == 1
    assert "rows read 28, published 11, rejected 17" in capsys.readouterr().out
    registry = [MeterInfo.model_validate(e) for e in _jsonl(tmp_path / "meter.registry.jsonl")]
    assert [(m.meter_id, m.region) for m in registry] == [("M-C001", "North"), ("M-C002", "South"),
                                                          ("M-C003", "East")]
    bills = [Bill.model_validate(e) for e in _jsonl(tmp_path / "customer.bills.jsonl")]
    assert [(b.customer_id, b.amount, b.kwh) for b in bills][:2] == [("C001", 80.13, 320.5), ("C001", 72.5, 290.0)]
    assert all(b.paid_at == b.issued_at for b in bills)
    beats = [Heartbeat.model_validate(e) for e in _jsonl(tmp_path / "meter.heartbeats.jsonl")]
    assert [b.status for b in beats] == ["ok", "degraded", "fault", "ok"]
    payments = [Purchase.model_validate(e) for e in _jsonl(tmp_path / "customer.purchases.jsonl")]
    assert len(payments) == 3 and {p.kind for p in payments} == {"bill_payment"}  # zero revenue: no payment
    maint = [MaintenanceRequest.model_validate(e) for e in _jsonl(tmp_path / "meter.maintenance.jsonl")]
    assert [m.resolved_at is None for m in maint] == [False, True]
    fb = [Feedback.model_validate(e) for e in _jsonl(tmp_path / "customer.feedback.jsonl")]
    assert [f.score for f in fb] == [4, 1]
    with open(tmp_path / "rejects.csv", newline="") as f:
        rows = [(r["file"], int(r["line"]), r["reason"]) for r in csv.DictReader(f)]
    reasons = {(file, line): reason for file, line, reason in rows}
    assert len(rows) == 17
    assert "duplicate customer" in reasons[("customer_data.csv", 5)]
    assert "Region: missing" in reasons[("customer_data.csv", 6)]
    assert "not a date" in reasons[("customer_data.csv", 7)]
    assert "not a valid id" in reasons[("customer_data.csv", 8)]
    assert "unknown customer 'C999'" in reasons[("monthly_data.csv", 6)]
    assert "below 0" in reasons[("monthly_data.csv", 7)]
    assert "'ten' is not a number" in reasons[("monthly_data.csv", 8)]
    assert "MeterStatus" in reasons[("monthly_data.csv", 9)]
    assert "expected 5 fields" in reasons[("monthly_data.csv", 11)]
    assert "before RequestDate" in reasons[("maintenance_data.csv", 4)]
    assert "unknown customer" in reasons[("maintenance_data.csv", 6)]
    assert "above 5" in reasons[("feedback_data.csv", 4)]
    assert "whole number" in reasons[("feedback_data.csv", 6)]
    assert "unknown customer 'C888'" in reasons[("feedback_data.csv", 7)]


def test_monthly_needs_the_customer_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "in").mkdir()
    rc = main(["import", "monthly", str(tmp_path / "in"), "--sink", "file", "--out", str(tmp_path / "out")])
    assert rc == 2
    assert "customer_data.csv not found" in capsys.readouterr().err


def test_whitespace_transactions_without_header(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["import", "transactions", str(DATA / "cdnow.txt"), "--columns", "customer,date,quantity,amount",
               "--customer-col", "customer", "--date-col", "date", "--amount-col", "amount",
               "--quantity-col", "quantity", "--date-format", "%Y%m%d", "--delimiter", "whitespace",
               "--sink", "file", "--out", str(tmp_path), "--no-progress"])
    assert rc == 1
    assert "rows read 10, published 5, rejected 5" in capsys.readouterr().out
    events = [Purchase.model_validate(e) for e in _jsonl(tmp_path / "customer.purchases.jsonl")]
    assert [(e.customer_id, e.amount, e.quantity) for e in events] == [
        ("00001", 11.77, 1), ("00002", 12.0, 1), ("00002", 77.0, 5), ("00003", 20.76, 2), ("00003", 20.76, 2)]
    assert {e.event_type for e in events} == {"PURCHASED"}
    assert events[3].ts.isoformat() == "1997-01-02T00:00:00+00:00"
    rejects = _rejects(tmp_path / "cdnow.txt.rejects.csv")
    assert "does not match the date format" in rejects[6]
    assert "below 0" in rejects[7]
    assert "expected 4 fields, got 2" in rejects[8]
    assert "quantity: 0 is below 1" in rejects[9]
    assert "'x' is not a number" in rejects[10]


def test_delimited_transactions_with_header(tmp_path: Path) -> None:
    rc = main(["import", "transactions", str(DATA / "transactions_semicolon.csv"), "--customer-col", "client",
               "--date-col", "day", "--amount-col", "total", "--delimiter", ";", "--sink", "file",
               "--out", str(tmp_path), "--no-progress"])
    assert rc == 1
    events = _jsonl(tmp_path / "customer.purchases.jsonl")
    assert [(e["customer_id"], e["amount"]) for e in events] == [("A-2", 19.99)]
    rejects = _rejects(tmp_path / "transactions_semicolon.csv.rejects.csv")
    assert set(rejects) == {2, 4, 5}
    assert "'10,5' is not a number" in rejects[2]


def test_bad_header_and_options_are_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["import", "transactions", str(DATA / "transactions_semicolon.csv"), "--delimiter", ";",
               "--sink", "file", "--out", str(tmp_path)])
    assert rc == 2
    assert "header lacks column(s) customer_id, date, amount" in capsys.readouterr().err
    rc = main(["import", "transactions", str(DATA / "cdnow.txt"), "--columns", "a,b", "--sink", "file",
               "--out", str(tmp_path)])
    assert rc == 2
    assert "--columns lacks" in capsys.readouterr().err
    rc = main(["import", "purchases", str(tmp_path / "missing.csv"), "--sink", "file", "--out", str(tmp_path)])
    assert rc == 2


def test_unreadable_csv_rows_are_reported_and_skipped(tmp_path: Path) -> None:
    path = tmp_path / "tx.csv"
    path.write_text("customer_id,date,amount\nA,2023-01-01,1\nB,2023-01-02,\"" + "x" * 200_000 + "\"\nC,2023-01-03,3\n")
    rc = main(["import", "transactions", str(path), "--sink", "file", "--out", str(tmp_path / "out"),
               "--no-progress"])
    assert rc == 1
    assert [e["customer_id"] for e in _jsonl(tmp_path / "out" / "customer.purchases.jsonl")] == ["A", "C"]
    rejects = _rejects(tmp_path / "out" / "tx.csv.rejects.csv")
    assert list(rejects) == [3] and "unreadable CSV row" in rejects[3]
