"""Import monthly meter data (four CSV files of one utility export) as meterseg events.

Files, in the directory given (each name overridable):

* ``customer_data.csv`` - CustomerID, Region, InstallationDate
* ``monthly_data.csv`` - CustomerID, Date, Consumption_kWh, Revenue_$, MeterStatus (Good, Fair, Poor)
* ``maintenance_data.csv`` - CustomerID, RequestDate, ResolutionDate, TechnicianID
* ``feedback_data.csv`` - CustomerID, FeedbackDate, SatisfactionScore (1-5)

Mapping (these exports have one meter per customer and no meter id):

================  =================================================================
customer row      ``MeterInfo`` on the registry topic: meter id ``M-<CustomerID>``,
                  region as given, installed_on = InstallationDate (00:00 UTC),
                  tariff ``postpaid`` (monthly billing with revenue), interval 60,
                  no export
monthly row       ``Bill`` on the bills topic: issued_at = Date, amount = Revenue_$,
                  kwh = Consumption_kWh, paid_at = Date (revenue is money received);
                  plus a ``Purchase`` (PURCHASED, kind bill_payment) with the same
                  amount when Revenue_$ > 0, so RFM sees the payments;
                  plus a ``Heartbeat`` at Date with status Good -> ok,
                  Fair -> degraded, Poor -> fault (error code ``METER_STATUS_<S>``),
                  the only health signal these exports carry
maintenance row   ``MaintenanceRequest`` (requested_at, resolved_at or open when the
                  ResolutionDate is empty, technician), meter ``M-<CustomerID>``
feedback row      ``Feedback`` with score = SatisfactionScore
================  =================================================================

Rows of the three other files must name a customer present in
``customer_data.csv`` (else "unknown customer"); a customer listed twice is
rejected the second time. Dates are ISO (``2022-01-31``) or common forms, or
follow ``--date-format``.

Examples:
    >>> meter_of("C001")
    'M-C001'
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from meterseg.settings import TopicNames
from simulators.importers.base import (
    ImportRun,
    RowError,
    RowIdentity,
    checked,
    iso,
    parse_date,
    parse_id,
    parse_int,
    parse_number,
    read_rows,
)
from stream.schemas import Bill, Feedback, Heartbeat, MaintenanceRequest, MeterInfo, Purchase

log = logging.getLogger(__name__)

STATUS = {"good": ("ok", []), "fair": ("degraded", ["METER_STATUS_FAIR"]), "poor": ("fault", ["METER_STATUS_POOR"])}


@dataclass(frozen=True)
class MonthlyFiles:
    customers: Path
    monthly: Path | None
    maintenance: Path | None
    feedback: Path | None

    @classmethod
    def in_directory(cls, directory: Path, customers: str = "customer_data.csv", monthly: str = "monthly_data.csv",
                     maintenance: str = "maintenance_data.csv", feedback: str = "feedback_data.csv") -> MonthlyFiles:
        cust = directory / customers
        if not cust.is_file():
            raise FileNotFoundError(f"{cust} not found: the customer file is required (it defines the meters)")

        def optional(name: str) -> Path | None:
            p = directory / name
            if not p.is_file():
                log.warning("%s not found; skipping it", p)
                return None
            return p

        return cls(cust, optional(monthly), optional(maintenance), optional(feedback))


def meter_of(customer: str) -> str:
    return f"M-{customer}"


def _known(row: dict[str, str], customers: set[str]) -> str:
    cid = parse_id(row.get("CustomerID"), "CustomerID")
    if cid not in customers:
        raise RowError(f"CustomerID: unknown customer {cid!r} (not in the customer file)")
    return cid


RowHandler = Callable[[int, dict[str, str]], Awaitable[None]]


async def _each(path: Path, run: ImportRun, required: tuple[str, ...], fn: RowHandler) -> None:
    bar = run.bar(path)
    try:
        for line, row, problem in read_rows(path, required=required):
            run.result.read += 1
            bar.update(1)
            try:
                if problem:
                    raise RowError(problem)
                await fn(line, row)
            except RowError as exc:
                run.reject(path, line, str(exc), row)
                continue
            run.result.published += 1
    finally:
        bar.close()


async def import_monthly(files: MonthlyFiles, run: ImportRun, topics: TopicNames,
                         date_format: str | None = None) -> None:
    """Import the four files (customers first: they define which customers exist)."""
    customers: set[str] = set()
    monthly_ids, maintenance_ids, feedback_ids = RowIdentity("mo"), RowIdentity("mr"), RowIdentity("fb")

    async def customer(line: int, row: dict[str, str]) -> None:
        cid = parse_id(row.get("CustomerID"), "CustomerID")
        if cid in customers:
            raise RowError(f"CustomerID: duplicate customer {cid!r}")
        region = (row.get("Region") or "").strip()
        if not region:
            raise RowError("Region: missing value")
        installed = parse_date(row.get("InstallationDate"), "InstallationDate", date_format)
        value = checked(MeterInfo, {
            "meter_id": meter_of(cid), "customer_id": cid, "region": region, "tariff": "postpaid",
            "installed_on": iso(installed), "interval_minutes": 60, "has_export": False,
        })
        customers.add(cid)
        await run.add(topics.registry, meter_of(cid), value)

    async def monthly(line: int, row: dict[str, str]) -> None:
        cid = _known(row, customers)
        ts = parse_date(row.get("Date"), "Date", date_format)
        kwh = parse_number(row.get("Consumption_kWh"), "Consumption_kWh")
        revenue = parse_number(row.get("Revenue_$"), "Revenue_$")
        raw_status = (row.get("MeterStatus") or "").strip()
        if raw_status.lower() not in STATUS:
            raise RowError(f"MeterStatus: {raw_status!r} is not one of Good, Fair, Poor")
        status, codes = STATUS[raw_status.lower()]
        stamp = iso(ts)
        row_id = monthly_ids.digest({"customer_id": cid, "ts": stamp, "kwh": kwh, "revenue": revenue,
                                     "status": status})
        bill = checked(Bill, {"bill_id": f"imp-b-{row_id}", "customer_id": cid,
                              "issued_at": stamp, "amount": round(revenue, 2), "kwh": kwh, "paid_at": stamp})
        beat = checked(Heartbeat, {"meter_id": meter_of(cid), "customer_id": cid, "ts": stamp, "status": status,
                                   "error_codes": codes})
        payment = None
        if revenue > 0:
            payment = checked(Purchase, {"event_id": f"imp-p-{row_id}",
                                         "customer_id": cid, "ts": stamp, "event_type": "PURCHASED",
                                         "kind": "bill_payment", "amount": round(revenue, 2), "quantity": 1})
        await run.add(topics.bills, cid, bill)
        await run.add(topics.heartbeats, meter_of(cid), beat)
        if payment is not None:
            await run.add(topics.purchases, cid, payment)

    async def maintenance(line: int, row: dict[str, str]) -> None:
        cid = _known(row, customers)
        requested = parse_date(row.get("RequestDate"), "RequestDate", date_format)
        resolved = None
        if (row.get("ResolutionDate") or "").strip():
            resolved = parse_date(row.get("ResolutionDate"), "ResolutionDate", date_format)
            if resolved < requested:
                raise RowError("ResolutionDate: before RequestDate")
        tech = (row.get("TechnicianID") or "").strip() or None
        request = {"customer_id": cid, "requested_at": iso(requested), "resolved_at": iso(resolved) if resolved
                   else None, "technician_id": tech}
        value = checked(MaintenanceRequest, {
            "request_id": maintenance_ids.event_id(request), "customer_id": cid,
            "meter_id": meter_of(cid), "requested_at": iso(requested),
            "resolved_at": iso(resolved) if resolved else None, "technician_id": tech,
        })
        await run.add(topics.maintenance, cid, value)

    async def feedback(line: int, row: dict[str, str]) -> None:
        cid = _known(row, customers)
        ts = parse_date(row.get("FeedbackDate"), "FeedbackDate", date_format)
        score = parse_int(row.get("SatisfactionScore"), "SatisfactionScore", minimum=1, maximum=5)
        value = checked(Feedback, {"feedback_id": feedback_ids.event_id({"customer_id": cid, "ts": iso(ts),
                                                                         "score": score}),
                                   "customer_id": cid, "ts": iso(ts), "score": score})
        await run.add(topics.feedback, cid, value)

    await _each(files.customers, run, ("CustomerID", "Region", "InstallationDate"), customer)
    if files.monthly:
        await _each(files.monthly, run, ("CustomerID", "Date", "Consumption_kWh", "Revenue_$", "MeterStatus"),
                    monthly)
    if files.maintenance:
        await _each(files.maintenance, run, ("CustomerID", "RequestDate", "ResolutionDate", "TechnicianID"),
                    maintenance)
    if files.feedback:
        await _each(files.feedback, run, ("CustomerID", "FeedbackDate", "SatisfactionScore"), feedback)
    await run.flush()
