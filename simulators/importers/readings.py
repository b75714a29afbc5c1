"""Import interval readings from the two CSV shapes utilities export: long and wide.

* **long**: one row per meter and interval, ``meter_id, interval_start, kwh[, kwh_export]``
  (column names are options). ``interval_start`` is ISO; without an offset it is local time in
  ``--timezone`` (default UTC). Every row has the interval length ``--interval`` (15 by default).
* **wide**: one row per meter and day, ``meter_id, date`` and then the day's values in local time
  (``--timezone``), one column per interval: 24, 48 or 96 value columns (hourly, half-hourly,
  quarter-hourly), or 25, 50 or 100 so that the 25-hour day of the autumn daylight-saving change fits.
  A day has as many values as it has intervals in that time zone: 23 hours' worth on the spring
  change, 25 on the autumn one, 24 otherwise; value *j* is the interval starting *j* intervals after
  local midnight in elapsed time, so the UTC instants of a 23- or 25-hour day come out right. An empty
  cell is a missing interval (nothing is published for it: downstream it is a gap window); a row with
  more values than its day has intervals is rejected.

Each meter's rows go out as ``ReadingBlock`` messages (one per wide row, or per run of up to
:data:`BLOCK` consecutive long rows of one meter), keyed by the meter id. What a ``Reading`` needs
and these files do not carry is filled in, documented and deterministic: ``customer_id`` from a
``customer_id`` column or the ``--registry`` file (whose meters are also registered,
``MeterInfo`` on the registry topic); ``voltage`` the meter's nominal voltage (230 V unless the
registry says otherwise: the voltage rule stays quiet); ``register_kwh`` the running sum of the
imported kWh of the meter in file order (files sorted by time per meter give an advancing register);
``seq`` the interval's number since the epoch (so a sequence gap is a time gap).

**Identity is the content.** A block's ``batch_id`` is a hash of the meter, the interval starts and
the values it carries, never of the file name or the line: the same data imported twice, from the same
file or another, makes the same blocks, which the engine drops as duplicate blocks (and, interval by
interval, as repeated (meter, interval) pairs): a re-import changes nothing. The counts balance: rows
read = rows published + rows rejected (per file, the registry file included), and each rejected row
is in the report with its line number in the file and the reason.

Rows are judged like any late upload: a reading more than the allowed lateness (48 h) behind its
meter's newest reading, or whose window closed that long ago, is dead-lettered ``too_late`` by the
engine; load older history into a fresh application or through the backfill.

Examples:
    >>> from zoneinfo import ZoneInfo
    >>> berlin = ZoneInfo("Europe/Berlin")
    >>> [len(day_starts(d, 60, berlin)) for d in ("2026-03-29", "2026-06-01", "2026-10-25")]
    [23, 24, 25]
    >>> [iso(datetime.fromtimestamp(t, UTC))[11:16] for t in day_starts("2026-10-25", 60, berlin)[2:5]]
    ['00:00', '01:00', '02:00']

    (local 02:00 happens twice that day: at 00:00 and 01:00 UTC).
    >>> block_id("M1", [0, 900], [0.25, 0.5], [0.0, 0.0]) == block_id("M1", [0, 900], [0.25, 0.5], [0.0, 0.0])
    True
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from meterseg.settings import TopicNames
from simulators.importers.base import (
    ImportRun,
    RowError,
    checked,
    iso,
    parse_date,
    parse_id,
    parse_number,
    read_rows,
)
from stream.schemas import MeterInfo, ReadingBlock

__all__ = ["BLOCK", "ReadingsSpec", "block_id", "day_starts", "import_readings", "import_registry"]

#: most readings per block of the long shape (a day of quarter hours)
BLOCK = 96
_PER_HOUR = {24: 1, 25: 1, 48: 2, 50: 2, 96: 4, 100: 4}


@dataclass(frozen=True)
class ReadingsSpec:
    """How to read a readings file."""

    shape: Literal["long", "wide"] = "long"
    meter_col: str = "meter_id"
    time_col: str = "interval_start"  # long: the interval start
    date_col: str = "date"  # wide: the local day
    kwh_col: str = "kwh"
    export_col: str = "kwh_export"
    customer_col: str = "customer_id"
    interval_minutes: int = 15  # long only; wide: from the number of value columns
    timezone: str = "UTC"
    delimiter: str = ","
    head_end_id: str = "import"

    def __post_init__(self) -> None:
        if self.shape not in ("long", "wide"):
            raise ValueError("shape must be long or wide")
        if self.interval_minutes not in (15, 30, 60):
            raise ValueError("interval must be 15, 30 or 60 minutes")
        if len(self.delimiter) != 1:
            raise ValueError("delimiter must be one character (use \\t for tabs)")
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {self.timezone!r} (e.g. Europe/Berlin, UTC)") from None

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


def day_starts(day: str | date, interval_minutes: int, zone: ZoneInfo) -> list[int]:
    """UTC epoch seconds of every interval start of a local day: 23, 24 or 25 hours' worth."""
    d = day if isinstance(day, date) else date.fromisoformat(day)
    first = datetime(d.year, d.month, d.day, tzinfo=zone).astimezone(UTC)
    nxt = d + timedelta(days=1)
    last = datetime(nxt.year, nxt.month, nxt.day, tzinfo=zone).astimezone(UTC)
    step = interval_minutes * 60
    return list(range(int(first.timestamp()), int(last.timestamp()), step))


def block_id(meter: str, starts: list[int], kwh: list[float], export: list[float]) -> str:
    """Content identity of a block: the same readings give the same id, whatever file or line they came from."""
    text = f"{meter}|{','.join(map(str, starts))}|{','.join(map(repr, kwh))}|{','.join(map(repr, export))}"
    return "imp-r-" + hashlib.sha1(text.encode()).hexdigest()[:24]


@dataclass
class _Meter:
    customer: str
    voltage: float = 230.0
    register: float = 0.0


@dataclass
class _Pending:
    meter: str = ""
    starts: list[int] = field(default_factory=list)
    kwh: list[float] = field(default_factory=list)
    export: list[float] = field(default_factory=list)
    lines: int = 0  # rows in this block


async def import_registry(path: Path, run: ImportRun, topics: TopicNames, delimiter: str = ",") -> dict[str, _Meter]:
    """Register the meters of a registry CSV; returns meter id -> customer and nominal voltage."""
    meters: dict[str, _Meter] = {}
    bar = run.bar(path)
    try:
        for line, row, problem in read_rows(path, delimiter=delimiter,
                                            required=("meter_id", "customer_id", "region", "tariff")):
            run.result.read += 1
            bar.update(1)
            try:
                if problem:
                    raise RowError(problem)
                meter = parse_id(row.get("meter_id"), "meter_id")
                if meter in meters:
                    raise RowError(f"meter_id: {meter!r} listed twice")
                installed = row.get("installed_on") or "1970-01-01"
                value = checked(MeterInfo, {
                    "meter_id": meter, "customer_id": parse_id(row.get("customer_id"), "customer_id"),
                    "region": (row.get("region") or "").strip(), "tariff": (row.get("tariff") or "").strip(),
                    "installed_on": iso(parse_date(installed, "installed_on")),
                    "interval_minutes": int(parse_number(row.get("interval_minutes") or "15", "interval_minutes")),
                    "has_export": (row.get("has_export") or "").strip().lower() in ("1", "true", "yes"),
                    "nominal_voltage": parse_number(row.get("nominal_voltage") or "230", "nominal_voltage"),
                })  # fmt: skip
            except RowError as exc:
                run.reject(path, line, str(exc), row)
                continue
            info = MeterInfo.model_validate_json(value)
            meters[meter] = _Meter(info.customer_id, info.nominal_voltage)
            await run.add(topics.registry, meter, value)
            run.result.published += 1
    finally:
        bar.close()
    await run.flush()
    return meters


def _local_start(text: str | None, column: str, zone: ZoneInfo) -> int:
    raw = (text or "").strip()
    if not raw:
        raise RowError(f"{column}: missing value")
    try:
        ts = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise RowError(f"{column}: {raw!r} is not an ISO date-time (e.g. 2026-03-29T01:45:00)") from None
    if ts.tzinfo is None:
        local = ts.replace(tzinfo=zone)
        back = local.astimezone(UTC).astimezone(zone).replace(tzinfo=None)
        if back != ts:  # the hour skipped by a spring change does not exist in local time
            raise RowError(f"{column}: {raw} does not exist in {zone.key} (daylight-saving change)")
        ts = local
    if not 1970 <= ts.year <= 2100:
        raise RowError(f"{column}: year {ts.year} is out of range")
    return int(ts.astimezone(UTC).timestamp())


class _Publisher:
    """Turns accepted rows into ReadingBlocks and keeps the register per meter."""

    def __init__(self, spec: ReadingsSpec, run: ImportRun, topics: TopicNames, meters: dict[str, _Meter]) -> None:
        self.spec, self.run, self.topics, self.meters = spec, run, topics, meters

    def meter(self, row: dict[str, str]) -> tuple[str, _Meter]:
        meter = parse_id(row.get(self.spec.meter_col), self.spec.meter_col)
        known = self.meters.get(meter)
        if known is None:
            if self.spec.customer_col in row:
                known = self.meters[meter] = _Meter(parse_id(row.get(self.spec.customer_col), self.spec.customer_col))
            else:
                raise RowError(f"{self.spec.meter_col}: unknown meter {meter!r} (not in the registry file)")
        return meter, known

    async def send(self, block: _Pending, interval_minutes: int) -> None:
        if not block.starts:
            return
        m = self.meters[block.meter]
        registers = []
        for v in block.kwh:
            m.register = round(m.register + v, 6)
            registers.append(m.register)
        step = interval_minutes * 60
        n = len(block.starts)
        value = checked(ReadingBlock, {
            "batch_id": block_id(block.meter, block.starts, block.kwh, block.export),
            "head_end_id": self.spec.head_end_id,
            "sent_at": iso(datetime.fromtimestamp(block.starts[-1] + step, UTC)),
            "columns": {
                "meter_id": [block.meter] * n, "customer_id": [m.customer] * n,
                "interval_start": [iso(datetime.fromtimestamp(t, UTC)) for t in block.starts],
                "interval_minutes": [interval_minutes] * n, "kwh_import": block.kwh, "kwh_export": block.export,
                "register_kwh": registers, "voltage": [m.voltage] * n, "seq": [t // step for t in block.starts],
            },
        })  # fmt: skip
        await self.run.add(self.topics.readings, block.meter, value)
        self.run.result.published += block.lines


async def import_readings(path: Path, spec: ReadingsSpec, run: ImportRun, topics: TopicNames,
                          meters: dict[str, _Meter] | None = None) -> None:  # fmt: skip
    """Import one readings file (long or wide) into ``topics.readings`` as ReadingBlocks."""
    pub = _Publisher(spec, run, topics, {} if meters is None else meters)
    if spec.shape == "long":
        await _import_long(path, spec, run, pub)
    else:
        await _import_wide(path, spec, run, pub)
    await run.flush()


async def _import_long(path: Path, spec: ReadingsSpec, run: ImportRun, pub: _Publisher) -> None:
    zone = spec.zone
    block = _Pending()
    bar = run.bar(path)
    has_export: bool | None = None
    try:
        for line, row, problem in read_rows(path, delimiter=spec.delimiter,
                                            required=(spec.meter_col, spec.time_col, spec.kwh_col)):
            run.result.read += 1
            bar.update(1)
            if has_export is None:
                has_export = spec.export_col in row
            try:
                if problem:
                    raise RowError(problem)
                meter, _ = pub.meter(row)
                start = _local_start(row.get(spec.time_col), spec.time_col, zone)
                if start % (spec.interval_minutes * 60):
                    raise RowError(f"{spec.time_col}: {iso(datetime.fromtimestamp(start, UTC))} is not on the "
                                   f"{spec.interval_minutes}-minute grid")  # fmt: skip
                kwh = parse_number(row.get(spec.kwh_col), spec.kwh_col, minimum=None)
                export = parse_number(row.get(spec.export_col), spec.export_col) if has_export else 0.0
            except RowError as exc:
                run.reject(path, line, str(exc), row)
                continue
            if block.meter != meter or len(block.starts) >= BLOCK:
                await pub.send(block, spec.interval_minutes)
                block = _Pending(meter)
            block.starts.append(start)
            block.kwh.append(kwh)
            block.export.append(export)
            block.lines += 1
        await pub.send(block, spec.interval_minutes)
    finally:
        bar.close()


def _value_columns(header: list[str], spec: ReadingsSpec, path: Path) -> tuple[list[str], int]:
    fixed = {spec.meter_col, spec.date_col, spec.customer_col}
    values = [h for h in header if h not in fixed]
    if len(values) not in _PER_HOUR:
        raise ValueError(f"{path}: a wide file has 24, 48 or 96 value columns (25, 50 or 100 with the 25-hour "
                         f"day's); found {len(values)}: {', '.join(values[:5])}...")  # fmt: skip
    return values, 60 // _PER_HOUR[len(values)]


def _header(path: Path, delimiter: str) -> list[str]:
    with open(path, newline="", encoding="utf-8-sig", errors="surrogateescape") as f:
        return [h.strip() for h in next(csv.reader(f, delimiter=delimiter), [])]


async def _import_wide(path: Path, spec: ReadingsSpec, run: ImportRun, pub: _Publisher) -> None:
    zone = spec.zone
    columns, interval = _value_columns(_header(path, spec.delimiter), spec, path)
    bar = run.bar(path)
    try:
        for line, row, problem in read_rows(path, delimiter=spec.delimiter, required=(spec.meter_col, spec.date_col)):
            run.result.read += 1
            bar.update(1)
            try:
                if problem:
                    raise RowError(problem)
                meter, _ = pub.meter(row)
                day = parse_date(row.get(spec.date_col), spec.date_col).date()
                starts = day_starts(day, interval, zone)
                cells = [(row.get(c) or "").strip() for c in columns]
                extra = [c for c, v in zip(columns[len(starts):], cells[len(starts):], strict=True) if v]
                if extra:
                    raise RowError(f"{extra[0]}: {day} has {len(starts) * interval // 60} hours in {zone.key}, "
                                   f"{len(starts)} values; found more")  # fmt: skip
                block = _Pending(meter, lines=1)
                for c, t, text in zip(columns, starts, cells, strict=False):
                    if text:  # an empty cell: a missing interval (a gap downstream)
                        block.starts.append(t)
                        block.kwh.append(parse_number(text, c, minimum=None))
                        block.export.append(0.0)
                if not block.starts:
                    raise RowError(f"no value for {day}")
            except RowError as exc:
                run.reject(path, line, str(exc), row)
                continue
            await pub.send(block, interval)
    finally:
        bar.close()
