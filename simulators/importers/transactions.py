"""Import generic transaction files for an RFM backfill as ``Purchase`` (PURCHASED) events.

Any file with a customer id, a date and an amount per line will do; the
column names (or, for files without a header, the names of all columns), the
date format and the delimiter are options. The classic CDNOW file, for
instance, is whitespace-separated without a header::

    00001 19970101 1 11.77

and imports with ``--columns customer,date,quantity,amount --date-format %Y%m%d
--delimiter whitespace --quantity-col quantity``.

Each valid line becomes one ``Purchase`` with ``event_type`` PURCHASED,
``kind`` as given (default ``product``), ``ts`` the date at 00:00 UTC (or the
time, if the format has one), ``amount`` the amount column (negative amounts -
returns - are rejected) and ``quantity`` the quantity column if given
(default 1). With ``--id-col`` the source's own transaction id is part of
each row's identity (see ``simulators.importers.base``).

Examples:
    >>> spec = TransactionSpec(customer_col="customer", date_col="date", amount_col="amount",
    ...                        date_format="%Y%m%d")
    >>> cid, value = row_to_purchase(spec, RowIdentity("t"),
    ...                              {"customer": "00001", "date": "19970101", "amount": "11.77"})
    >>> cid, b'"amount":11.77' in value, b'"ts":"1997-01-01T00:00:00Z"' in value
    ('00001', True, True)
"""

from __future__ import annotations

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
from stream.schemas import Purchase


@dataclass(frozen=True)
class TransactionSpec:
    """How to read a transaction file."""

    customer_col: str = "customer_id"
    date_col: str = "date"
    amount_col: str = "amount"
    quantity_col: str | None = None
    columns: tuple[str, ...] | None = None  # names of all columns for header-less files
    date_format: str | None = None
    delimiter: str = ","
    kind: str = "product"
    channel: str = "web"
    id_col: str | None = None  # the source's own transaction id, part of each row's identity

    def __post_init__(self) -> None:
        if self.delimiter != "whitespace" and len(self.delimiter) != 1:
            raise ValueError("delimiter must be one character (use \\t for tabs) or 'whitespace'")
        if self.kind not in ("topup", "bill_payment", "product", "plan"):
            raise ValueError("kind must be one of topup, bill_payment, product, plan")
        if self.channel not in ("web", "app", "store", "agent"):
            raise ValueError("channel must be one of web, app, store, agent")
        needed = [self.customer_col, self.date_col, self.amount_col] + ([self.quantity_col] if self.quantity_col
                                                                        else []) + ([self.id_col] if self.id_col
                                                                                    else [])
        if self.columns is not None:
            missing = [c for c in needed if c not in self.columns]
            if missing:
                raise ValueError(f"--columns lacks {', '.join(missing)} (named by the --*-col options)")

    @property
    def required(self) -> tuple[str, ...]:
        cols = (self.customer_col, self.date_col, self.amount_col)
        return cols + tuple(c for c in (self.quantity_col, self.id_col) if c)


def row_to_purchase(spec: TransactionSpec, ids: RowIdentity, row: dict[str, str]) -> tuple[str, bytes]:
    """(customer id, serialised Purchase) of one row, or :class:`RowError`; the id comes from ``ids``."""
    customer = parse_id(row.get(spec.customer_col), spec.customer_col)
    ts = parse_date(row.get(spec.date_col), spec.date_col, spec.date_format)
    amount = parse_number(row.get(spec.amount_col), spec.amount_col)
    quantity = 1
    if spec.quantity_col:
        quantity = parse_int(row.get(spec.quantity_col), spec.quantity_col, minimum=1, maximum=1_000_000)
    source_id = parse_id(row.get(spec.id_col), spec.id_col) if spec.id_col else None
    content = {
        "customer_id": customer, "ts": iso(ts), "event_type": "PURCHASED", "kind": spec.kind,
        "amount": round(amount, 2), "quantity": quantity, "channel": spec.channel,
    }  # fmt: skip
    value = checked(Purchase, {"event_id": ids.event_id(content, source_id), **content})
    return customer, value


async def import_transactions(path: Path, spec: TransactionSpec, run: ImportRun, topics: TopicNames) -> None:
    """Import one transaction file into ``topics.purchases`` (keyed by customer id)."""
    bar = run.bar(path)
    ids = RowIdentity("t")
    try:
        for line, row, problem in read_rows(path, delimiter=spec.delimiter, fieldnames=spec.columns,
                                            required=spec.required):
            run.result.read += 1
            bar.update(1)
            try:
                if problem:
                    raise RowError(problem)
                customer, value = row_to_purchase(spec, ids, row)
            except RowError as exc:
                run.reject(path, line, str(exc), row)
                continue
            await run.add(topics.purchases, customer, value)
            run.result.published += 1
    finally:
        bar.close()
    await run.flush()
