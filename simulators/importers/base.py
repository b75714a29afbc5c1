"""What every CSV importer shares: row reading, validation bookkeeping, publishing, reports.

An import must never stop at a bad row - recorded data is messy and an
operator wants everything valid loaded plus a precise list of what was not.
So each importer turns a row into events or raises :class:`RowError` with a
reason; :class:`ImportRun` counts rows read/published/rejected, writes the
rejected rows (file, line number, reason, raw row) to a CSV report, shows a
progress bar and publishes events through a sink, keyed and partitioned
exactly like the simulator (meter id for meter topics, customer id for
customer topics, Kafka's murmur2 partitioner).

**Row identity.** The event id of an imported row is a hash of what the row
*says*, never of where it sits (:class:`RowIdentity`): the event kind, the
source's own transaction id when the file has one (``--id-col``), the
normalised event content (customer, time, amount, ... - the event as
published, without its id) and the *occurrence index* of that content within
the file (0 for its first occurrence, 1 for an identical second row, ...).
So the same purchase imported again, under any file name or at any line,
gets the same id and the engine's idempotent processing ignores it; a
different row always gets a new id; and identical rows within one file stay
separate purchases, as the file says (the CDNOW history has 215 such rows).
The rule in one line: *id = hash(kind, source id, content, k)* where *k*
counts the earlier rows of the same file with the same kind, source id and
content.

**Every line is accounted for.** :func:`read_rows` reads one physical line
per row (a quoted field may not span lines): a line with an unbalanced quote
or any other CSV error is reported at its own line number and the reader goes
on with the next line, so one stray ``"`` costs one row, never the rest of
the file. Rows read = published + rejected, always.

Examples:
    >>> ids = RowIdentity("p")
    >>> a, b = ids.event_id({"customer_id": "C1", "amount": 5.0}), ids.event_id({"amount": 5.0, "customer_id": "C1"})
    >>> a != b   # an identical second row is a second purchase
    True
    >>> again = RowIdentity("p")   # the same file again, under any name: the same ids
    >>> [again.event_id({"customer_id": "C1", "amount": 5.0}) for _ in range(2)] == [a, b]
    True
    >>> RowIdentity("p").event_id({"customer_id": "C1", "amount": 5.0}, source_id="T-17") != a
    True
    >>> parse_number("12.50", "UnitPrice")
    12.5
    >>> parse_number("abc", "UnitPrice")
    Traceback (most recent call last):
    ...
    simulators.importers.base.RowError: UnitPrice: 'abc' is not a number
    >>> parse_number("1_000", "UnitPrice")
    Traceback (most recent call last):
    ...
    simulators.importers.base.RowError: UnitPrice: '1_000' is not a number
    >>> parse_date("2022-09-19").isoformat()
    '2022-09-19T00:00:00+00:00'
"""

from __future__ import annotations

import csv
import hashlib
import logging
import math
import re
import sys
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from pydantic import BaseModel, ValidationError

from simulators.encode import dumps
from simulators.partition import partition_for
from simulators.sinks import Message, Sink

log = logging.getLogger(__name__)

ID_PATTERN = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


class RowError(ValueError):
    """A row cannot be imported; the message is the reason written to the report."""


@dataclass(frozen=True)
class Reject:
    file: str
    line: int
    reason: str
    raw: str


@dataclass
class ImportResult:
    """Counts of one import (all files of it)."""

    read: int = 0
    published: int = 0
    rejected: int = 0
    rejects: list[Reject] = field(default_factory=list)
    messages: Counter[str] = field(default_factory=Counter)
    report: Path | None = None

    def render(self) -> str:
        lines = [f"rows read {self.read:,}, published {self.published:,}, rejected {self.rejected:,}"]
        lines += [f"  {topic:<28} {n:>10,} messages" for topic, n in sorted(self.messages.items())]
        if self.report is not None:
            lines.append(f"rejected rows: {self.report}" if self.rejected else "no rejected rows")
        return "\n".join(lines)


# --------------------------------------------------------------------- parsing
class RowIdentity:
    """Content-based event ids for the rows of one source file (see the module docstring).

    One instance per file and event kind: it counts how often each
    (source id, content) was seen, so identical rows get occurrence indexes
    0, 1, 2 ... in file order. Memory: 16 bytes of digest per distinct row.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._seen: Counter[bytes] = Counter()

    def event_id(self, content: Mapping[str, Any], source_id: str | None = None) -> str:
        """The id of the next row with this ``content`` (the event without its id) and ``source_id``."""
        return f"imp-{self.kind}-{self.digest(content, source_id)}"

    def digest(self, content: Mapping[str, Any], source_id: str | None = None) -> str:
        """The identity of the next row with this content (hex), for a row that makes several events."""
        canonical = orjson.dumps(content, option=orjson.OPT_SORT_KEYS)
        key = hashlib.blake2b(
            self.kind.encode() + b"\0" + (source_id or "").encode() + b"\0" + canonical, digest_size=16
        ).digest()
        occurrence = self._seen[key]
        self._seen[key] += 1
        return hashlib.blake2b(key + occurrence.to_bytes(8, "big"), digest_size=12).hexdigest()


_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|[+-]?(inf|infinity|nan)", re.ASCII | re.IGNORECASE)


def parse_number(text: str | None, column: str, *, minimum: float | None = 0.0) -> float:
    """A finite number (a leading ``$`` tolerated; decimal point only, no thousands separators)."""
    raw = (text or "").strip().lstrip("$")
    if not raw:
        raise RowError(f"{column}: missing value")
    if not _NUMBER.fullmatch(raw):  # float() alone would take 1_000 and non-ASCII digits such as ١٢
        raise RowError(f"{column}: {text!r} is not a number")
    try:
        value = float(raw)
    except ValueError:
        raise RowError(f"{column}: {text!r} is not a number") from None
    if not math.isfinite(value):
        raise RowError(f"{column}: {text!r} is not a finite number")
    if minimum is not None and value < minimum:
        raise RowError(f"{column}: {value:g} is below {minimum:g}")
    return value


def parse_int(text: str | None, column: str, *, minimum: int | None = None, maximum: int | None = None) -> int:
    """An integer (``3`` or ``3.0``); fractional values are refused."""
    value = parse_number(text, column, minimum=None)
    if value != int(value):
        raise RowError(f"{column}: {text!r} is not a whole number")
    out = int(value)
    if minimum is not None and out < minimum:
        raise RowError(f"{column}: {out} is below {minimum}")
    if maximum is not None and out > maximum:
        raise RowError(f"{column}: {out} is above {maximum}")
    return out


def parse_id(text: str | None, column: str) -> str:
    raw = (text or "").strip()
    if not raw:
        raise RowError(f"{column}: missing value")
    if not ID_PATTERN.match(raw):
        raise RowError(f"{column}: {raw!r} is not a valid id (letters, digits and _.:- only, at most 64)")
    return raw


_DATE_FORMATS = ("%Y-%m-%d", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y/%m/%d", "%d/%m/%Y", "%Y%m%d")


def parse_date(text: str | None, column: str = "date", fmt: str | None = None) -> datetime:
    """A date or date-time; naive values are taken as UTC. ``fmt`` is a strptime format; else ISO and common forms."""
    raw = (text or "").strip()
    if not raw:
        raise RowError(f"{column}: missing value")
    ts: datetime | None = None
    if fmt:
        try:
            ts = datetime.strptime(raw, fmt)
        except ValueError:
            raise RowError(f"{column}: {raw!r} does not match the date format {fmt!r}") from None
    else:
        try:
            ts = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        except ValueError:
            for candidate in _DATE_FORMATS:
                try:
                    ts = datetime.strptime(raw, candidate)
                    break
                except ValueError:
                    continue
        if ts is None:
            raise RowError(f"{column}: {raw!r} is not a date (expected e.g. 2022-09-19)")
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    if not 1970 <= ts.year <= 2100:
        raise RowError(f"{column}: year {ts.year} is out of range")
    return ts.astimezone(UTC)


def iso(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def checked(model: type[BaseModel], data: dict[str, Any]) -> bytes:
    """Validate ``data`` against an event contract and serialise it; contract errors become row errors."""
    try:
        event = model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise RowError(f"{where}: {first['msg']}") from None
    return dumps(event.model_dump(mode="json"))


# ----------------------------------------------------------------------- rows
def count_lines(path: Path) -> int:
    with open(path, "rb") as f:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))


def read_rows(
    path: Path, *, delimiter: str = ",", fieldnames: Sequence[str] | None = None, required: Sequence[str] = ()
) -> Iterator[tuple[int, dict[str, str], str | None]]:
    """Yield ``(line number, row, problem)`` for every non-blank line after the header.

    ``problem`` is set for a line with a wrong number of fields, bytes that are
    not UTF-8, an unbalanced quote or any other CSV error (such a row is
    reported like any bad row; the import carries on with the next line).
    One physical line is one row: a quoted field may not contain a line
    break, so a stray ``"`` can never swallow the lines after it.

    ``delimiter`` ``"whitespace"`` splits on runs of blanks. Without
    ``fieldnames`` the first line is the header, and a header missing a
    ``required`` column is an error for the whole file (raised, not rejected).
    """
    # undecodable bytes become lone surrogates (U+DC80-U+DCFF) instead of stopping the whole file
    with open(path, newline="", encoding="utf-8-sig", errors="surrogateescape") as f:
        names = list(fieldnames) if fieldnames else None
        for number, text in enumerate(_physical_lines(f), start=1):
            if not text.strip():
                continue
            if delimiter == "whitespace":
                parts = text.split()
                problem = None
            else:
                parts, problem = _parse_line(text, delimiter)
            if names is None:  # a header that is not valid CSV is judged by the columns it names
                names = [h.strip() for h in (text.split(delimiter) if problem else parts)]
                _check_header(path, names, required)
                continue
            if problem is None and all(not p.strip() for p in parts):
                continue
            problem = problem or _encoding_problem(parts) or _width_problem(len(parts), len(names))
            yield number, dict(zip(names, parts, strict=False)), problem


def _physical_lines(f: Any) -> Iterator[str]:
    """Lines ended by ``\\n`` (a ``\\r\\n`` ending loses its ``\\r``); a lone ``\\r`` is no line break here."""
    pending = ""
    for chunk in iter(lambda: f.read(1 << 16), ""):
        pending += chunk
        *lines, pending = pending.split("\n")
        for line in lines:
            yield line[:-1] if line.endswith("\r") else line
    if pending:
        yield pending[:-1] if pending.endswith("\r") else pending


def _parse_line(text: str, delimiter: str) -> tuple[list[str], str | None]:
    """The fields of one line, or the reason it is not one valid CSV record."""
    try:
        parts = next(csv.reader([text], delimiter=delimiter, strict=True), [])
    except csv.Error as exc:
        reason = str(exc)
        if "unexpected end of data" in reason or "newline inside string" in reason:
            reason = "unbalanced quote (a quoted field must end on its own line)"
        return [], f"unreadable CSV row: {reason}"
    return parts, None


def _width_problem(got: int, expected: int) -> str | None:
    return None if got == expected else f"expected {expected} fields, got {got}"


_UNDECODABLE = re.compile("[\udc80-\udcff]")


def _encoding_problem(parts: Sequence[str]) -> str | None:
    """The first byte that is not UTF-8 (read with ``surrogateescape``), as a row problem."""
    for i, part in enumerate(parts):
        found = _UNDECODABLE.search(part)
        if found:
            byte = ord(found.group()) - 0xDC00
            return f"field {i + 1} is not UTF-8 text (byte 0x{byte:02x} at character {found.start() + 1})"
    return None


def printable(text: str) -> str:
    """``text`` with undecodable bytes (``surrogateescape``) as U+FFFD, so it can be written as UTF-8."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _check_header(path: Path, header: Sequence[str], required: Sequence[str]) -> None:
    missing = [c for c in required if c not in header]
    if missing:
        found = printable(", ".join(header))
        raise ValueError(f"{path}: header lacks column(s) {', '.join(missing)}; found {found[:500]}")


# ------------------------------------------------------------------ publishing
class ImportRun:
    """Publishes events of one import through a sink and keeps the books."""

    def __init__(self, sink: Sink, partitions: int, *, progress: bool = True, flush_every: int = 5000) -> None:
        self.sink = sink
        self.partitions = partitions
        self.progress = progress
        self.flush_every = flush_every
        self.result = ImportResult()
        self._buffer: dict[tuple[str, int], list[Message]] = {}
        self._buffered = 0

    async def add(self, topic: str, key: str, value: bytes) -> None:
        kb = key.encode()
        self._buffer.setdefault((topic, partition_for(kb, self.partitions)), []).append((kb, value))
        self._buffered += 1
        if self._buffered >= self.flush_every:
            await self.flush()

    async def flush(self) -> None:
        for (topic, p), msgs in self._buffer.items():
            await self.sink.send(topic, p, msgs)
            self.result.messages[topic] += len(msgs)
        self._buffer.clear()
        self._buffered = 0

    def reject(self, path: Path, line: int, reason: str, row: dict[str, str] | None) -> None:
        raw = "" if row is None else "|".join(str(v) for v in row.values())
        self.result.rejects.append(Reject(path.name, line, printable(reason), printable(raw[:500])))
        self.result.rejected += 1

    def bar(self, path: Path) -> Any:
        from tqdm import tqdm

        return tqdm(total=max(count_lines(path) - 1, 0), unit="row", desc=path.name, file=sys.stderr,
                    disable=not self.progress, dynamic_ncols=True)

    def write_report(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["file", "line", "reason", "row"])
            for r in self.result.rejects:
                w.writerow([r.file, r.line, r.reason, r.raw])
        self.result.report = path
        if self.result.rejected:
            log.warning("%d rows rejected; see %s", self.result.rejected, path)
        return path
