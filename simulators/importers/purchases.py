"""Import recorded purchase events (e-commerce style CSV) as ``Purchase`` events.

Expected columns (header required, extra columns ignored)::

    EventName, ProductCode, ProductName, ProductDescription, UnitPrice, Quantity,
    CustomerID, Username, ChannelType, Address, City, State, Country, Date

Mapping: ``EventName`` (VIEWED, PROCESSED, PURCHASED; case-insensitive) ->
``event_type``; ``amount = UnitPrice x Quantity`` (rounded to cents);
``Date`` in RFC 2822 form (``Mon, 19 Sep 2022 12:16:01 +0530``, converted to
UTC; a date without zone is refused rather than guessed); ``ChannelType`` ->
``channel`` (web/online/website/e-commerce -> web, app/mobile -> app,
store/in-store/retail/shop/offline -> store, agent/call centre/phone/sales ->
agent); ``ProductCode`` -> ``product_code``; ``kind`` is ``product``
(``plan`` when the product code or name starts with "plan", ``topup`` when it
mentions top-up). An optional ``TransactionID`` column, when the file has
one, is part of each row's identity (``simulators.importers.base``). Personal columns (Username, Address, ...) are not published.

Examples:
    >>> channel_of("Mobile App"), channel_of("In-Store"), channel_of("Call Center")
    ('app', 'store', 'agent')
    >>> parse_rfc2822("Mon, 19 Sep 2022 12:16:01 +0530").isoformat()
    '2022-09-19T06:46:01+00:00'
"""

from __future__ import annotations

import email.utils
from datetime import UTC, datetime
from pathlib import Path

from meterseg.settings import TopicNames
from simulators.importers.base import (
    ImportRun,
    RowError,
    RowIdentity,
    checked,
    iso,
    parse_id,
    parse_int,
    parse_number,
    read_rows,
)
from stream.schemas import Purchase

COLUMNS: tuple[str, ...] = (
    "EventName", "ProductCode", "ProductName", "ProductDescription", "UnitPrice", "Quantity", "CustomerID",
    "Username", "ChannelType", "Address", "City", "State", "Country", "Date",
)
REQUIRED: tuple[str, ...] = ("EventName", "UnitPrice", "Quantity", "CustomerID", "ChannelType", "Date")
ID_COLUMN = "TransactionID"
"""Optional column: the source's own transaction id, part of each row's identity when present."""
EVENT_NAMES = frozenset({"VIEWED", "PROCESSED", "PURCHASED"})

_CHANNELS: dict[str, str] = {
    "web": "web", "online": "web", "website": "web", "e-commerce": "web", "ecommerce": "web", "internet": "web",
    "app": "app", "mobile": "app", "mobile app": "app", "mobileapp": "app", "ios": "app", "android": "app",
    "store": "store", "in-store": "store", "instore": "store", "in store": "store", "retail": "store",
    "shop": "store", "offline": "store", "branch": "store",
    "agent": "agent", "call center": "agent", "call centre": "agent", "phone": "agent", "sales": "agent",
    "telesales": "agent", "field agent": "agent",
}


def channel_of(text: str | None) -> str:
    key = " ".join((text or "").strip().lower().replace("_", " ").split())
    if not key:
        raise RowError("ChannelType: missing value")
    try:
        return _CHANNELS[key]
    except KeyError:
        raise RowError(f"ChannelType: {text!r} is not a known channel (web, app, store, agent or synonyms)") from None


def parse_rfc2822(text: str | None) -> datetime:
    raw = (text or "").strip()
    if not raw:
        raise RowError("Date: missing value")
    try:
        ts = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError):
        raise RowError(f"Date: {raw!r} is not an RFC 2822 date (e.g. Mon, 19 Sep 2022 12:16:01 +0530)") from None
    if ts.tzinfo is None:
        raise RowError(f"Date: {raw!r} has no time zone offset")
    try:  # e.g. 31 Dec 9999 23:59:59 -0100 is the year 10000 in UTC
        utc = ts.astimezone(UTC)
    except OverflowError:
        raise RowError(f"Date: {raw!r} is out of range") from None
    if not 1970 <= utc.year <= 2100:
        raise RowError(f"Date: year {utc.year} is out of range")
    return utc


def _kind(code: str, name: str) -> str:
    text = f"{code} {name}".strip().lower()
    if text.startswith("plan"):
        return "plan"
    if "top-up" in text or "topup" in text or "top up" in text:
        return "topup"
    return "product"


def row_to_purchase(ids: RowIdentity, row: dict[str, str]) -> tuple[str, bytes]:
    """(customer id, serialised Purchase) of one row, or :class:`RowError`."""
    name = (row.get("EventName") or "").strip().upper()
    if not name:
        raise RowError("EventName: missing value")
    if name not in EVENT_NAMES:
        raise RowError(f"EventName: {row.get('EventName')!r} is not one of VIEWED, PROCESSED, PURCHASED")
    price = parse_number(row.get("UnitPrice"), "UnitPrice")
    quantity = parse_int(row.get("Quantity"), "Quantity", minimum=1, maximum=1_000_000)
    customer = parse_id(row.get("CustomerID"), "CustomerID")
    channel = channel_of(row.get("ChannelType"))
    ts = parse_rfc2822(row.get("Date"))
    code = (row.get("ProductCode") or "").strip() or None
    source_id = parse_id(row.get(ID_COLUMN), ID_COLUMN) if ID_COLUMN in row else None
    content = {
        "customer_id": customer,
        "ts": iso(ts),
        "event_type": name,
        "kind": _kind(code or "", row.get("ProductName") or ""),
        "product_code": code,
        "amount": round(price * quantity, 2),
        "quantity": quantity,
        "channel": channel,
    }
    return customer, checked(Purchase, {"event_id": ids.event_id(content, source_id), **content})


async def import_purchases(path: Path, run: ImportRun, topics: TopicNames) -> None:
    """Import one purchase-events CSV into ``topics.purchases`` (keyed by customer id)."""
    bar = run.bar(path)
    ids = RowIdentity("p")
    try:
        for line, row, problem in read_rows(path, required=REQUIRED):
            run.result.read += 1
            bar.update(1)
            try:
                if problem:
                    raise RowError(problem)
                customer, value = row_to_purchase(ids, row)
            except RowError as exc:
                run.reject(path, line, str(exc), row)
                continue
            await run.add(topics.purchases, customer, value)
            run.result.published += 1
    finally:
        bar.close()
    await run.flush()
