"""``meterseg simulate`` and ``meterseg import``: the simulator and the CSV importers on the command line.

Both publish either to Kafka (the default; bootstrap and topic names from
:class:`meterseg.settings.Settings`, i.e. ``METERSEG_*`` environment
variables, or ``--bootstrap``) or to JSON-Lines files (``--sink file --out DIR``).
Both print a summary at the end; exit codes: 0 done, 1 rows rejected by an
import (everything valid was still published), 2 bad arguments or inputs.

Examples:
    >>> import argparse
    >>> parser = argparse.ArgumentParser(prog="meterseg")
    >>> register(parser.add_subparsers(dest="command"))
    >>> args = parser.parse_args(["simulate", "--meters", "100", "--shift", "1:0.1:ev", "--fault-rate", "spike=0.1"])
    >>> args.meters, args.shift, args.fault_rate, args.sink
    (100, ['1:0.1:ev'], ['spike=0.1'], 'kafka')
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import textwrap
from pathlib import Path
from typing import Any

from meterseg.settings import Settings

log = logging.getLogger(__name__)

EXIT_OK, EXIT_REJECTS, EXIT_USAGE = 0, 1, 2


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults shown after each option; description and examples kept as written."""


def _add_output_options(p: argparse.ArgumentParser, default_out: str) -> None:
    g = p.add_argument_group("output")
    g.add_argument("--sink", choices=("kafka", "file", "null"), default="kafka",
                   help="where events go: Kafka (default), JSON-Lines files in --out (one <topic>.jsonl per "
                        "topic), or nowhere (null: count only, for dry runs)")
    g.add_argument("--out", type=Path, default=Path(default_out),
                   help=f"output directory for file sink, ground truth and reports (default: {default_out})")
    g.add_argument("--bootstrap", default=None,
                   help="Kafka bootstrap servers host:port (default: settings, METERSEG_KAFKA_BOOTSTRAP)")
    g.add_argument("--partitions", type=int, default=None,
                   help="partitions of every topic; must match the engine (default: settings, METERSEG_PARTITIONS)")
    g.add_argument("--no-progress", action="store_true", help="do not show a progress bar on stderr")


def register(subparsers: Any) -> None:
    """Add the ``simulate`` and ``import`` sub-commands to the ``meterseg`` parser."""
    _register_simulate(subparsers)
    _register_import(subparsers)


# ---------------------------------------------------------------------- simulate
def _register_simulate(subparsers: Any) -> None:
    from simulators.archetypes import ALIASES
    from simulators.faults import DEFAULT_RATES, KINDS

    p = subparsers.add_parser(
        "simulate",
        help="simulate a smart-meter fleet (readings, heartbeats, purchases, faults, shifts) with ground truth",
        description=textwrap.fill(
            "Simulate a fleet of smart meters and their customers: interval readings, heartbeats, "
            "registrations, purchases and payments, bills, maintenance and feedback, with injected faults "
            "and scheduled behaviour shifts. Writes a ground-truth JSON of archetypes, faults and shifts. "
            "The same --seed and options give byte-identical output.", 78),
        formatter_class=_Formatter,
        epilog="examples:\n"
               "  meterseg simulate --meters 1000 --days 2 --shift 1:0.1:ev            # into Kafka\n"
               "  meterseg simulate --meters 1000 --days 2 --sink file --out out/sim   # JSON Lines\n"
               "  meterseg simulate --envelope 500 --speed 1440   # head-end batches, a day per minute\n"
               "  meterseg simulate --no-faults --fault-rate stuck=0.05 --shift 3:0.05:stop_purchasing",
    )
    g = p.add_argument_group("fleet")
    g.add_argument("--meters", type=int, default=10_000, help="number of meters (scales to 1 000 000)")
    g.add_argument("--regions", default="North,South,East,West", help="comma-separated region names")
    g.add_argument("--prepaid-share", type=float, default=0.35, help="share of prepaid customers (rest postpaid)")
    g.add_argument("--seed", type=int, default=0, help="random seed; same seed and options => identical output")
    g.add_argument("--profiles", choices=("archetypes", "real"), default="archetypes",
                   help="load shapes: the simulator's archetypes, or published real profiles (BDEW standard "
                        "profiles from demandlib and richardsonpy households; needs the bench extra)")
    g.add_argument("--resolution-wh", type=float, default=1.0,
                   help="real profiles: register resolution in Wh (1 or 10, as real registers report)")
    g.add_argument("--pv-share", type=float, default=0.0, help="real profiles: share of meters with solar export")
    g.add_argument("--stochastic-households", type=float, default=0.25,
                   help="real profiles: share of households drawn from richardsonpy instead of the H0 profile")
    g.add_argument("--profile-noise", type=float, default=0.1,
                   help="real profiles: log-normal noise per interval (0.1 = about 10 %%)")
    g = p.add_argument_group("time")
    g.add_argument("--days", type=int, default=1, help="simulated days to produce")
    g.add_argument("--start", default="2026-01-01",
                   help="simulated start, ISO date/time in UTC on a 15-minute boundary, or 'now'")
    g.add_argument("--interval", type=int, choices=(15, 30, 60), default=15, help="reading interval in minutes")
    g.add_argument("--heartbeat-minutes", type=int, default=15, help="heartbeat period in minutes (0 = none)")
    pace = g.add_mutually_exclusive_group()
    pace.add_argument("--speed", type=float, default=None,
                      help="simulated seconds per wall second, e.g. 1440 = one day per minute; "
                           "None = as fast as possible")
    pace.add_argument("--realtime", action="store_true", help="run in real time (same as --speed 1)")
    g = p.add_argument_group("traffic")
    g.add_argument("--envelope", type=int, default=0, metavar="N",
                   help="publish readings as head-end ReadingBatch envelopes of up to N readings (one partition "
                        "each); 0 = one reading per message")
    g.add_argument("--envelope-format", choices=("rows", "columns"), default="rows",
                   help="envelopes as rows: ReadingBatch / HeartbeatBatch (one JSON object per event); or as "
                        "columns: ReadingBlock / HeartbeatBlock (one list per field, about 35%% of the bytes)")
    g.add_argument("--heartbeat-envelope", type=int, default=0, metavar="N",
                   help="publish heartbeats as head-end HeartbeatBatch envelopes of up to N heartbeats (one "
                        "partition each); 0 = one heartbeat per message")
    g.add_argument("--history-days", type=int, default=0,
                   help="also emit this many days of purchase history before the start (RFM warm-up)")
    g.add_argument("--purchase-rate", type=float, default=1.0, help="multiplier of every customer's purchase rate")
    g.add_argument("--no-ops", action="store_true", help="no bills, maintenance requests or feedback")
    g.add_argument("--chunk", type=int, default=20_000,
                   help="readings serialised and handed to the sink at a time (memory vs overhead)")
    g = p.add_argument_group("faults and shifts")
    g.add_argument("--fault-rate", action="append", default=[], metavar="KIND=RATE",
                   help="expected faults per meter per day for a kind (repeatable; 'all=RATE' sets every kind). "
                        f"Kinds: {', '.join(KINDS)}. Defaults: "
                        + ", ".join(f"{k}={v:g}" for k, v in DEFAULT_RATES.items()))
    g.add_argument("--no-faults", action="store_true", help="inject no faults (then apply any --fault-rate)")
    g.add_argument("--shift", action="append", default=[], metavar="DAY:SHARE:TARGET",
                   help="behaviour shift (repeatable): at DAY a SHARE of customers adopt archetype TARGET "
                        f"({', '.join(ALIASES)} or a full name) or 'stop_purchasing'; e.g. 1:0.1:ev")
    g.add_argument("--ground-truth", type=Path, default=None,
                   help="ground-truth JSON path (None = OUT/ground_truth.json)")
    g.add_argument("--summary-json", type=Path, default=None, help="also write the summary as JSON here (None = do not)")
    _add_output_options(p, "out/sim")
    p.set_defaults(func=run_simulate)


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {}
    if args.bootstrap:
        overrides["kafka_bootstrap"] = args.bootstrap
    if args.partitions is not None:
        if args.partitions < 1:
            raise ValueError("--partitions must be >= 1")
        overrides["partitions"] = args.partitions
    return Settings(**overrides)


def _sink(args: argparse.Namespace, settings: Settings) -> Any:
    from simulators.sinks import FileSink, KafkaSink, NullSink

    if args.sink == "file":
        return FileSink(args.out)
    if args.sink == "null":
        return NullSink()
    from stream.clients.security import kafka_client_options

    return KafkaSink(
        settings.kafka_bootstrap,
        settings.partitions,
        compacted=[settings.topics.registry],
        client_options=kafka_client_options(settings),
    )


def run_simulate(args: argparse.Namespace) -> int:
    from simulators.clock import parse_start
    from simulators.faults import FaultConfig
    from simulators.generator import SimConfig, Simulator, summary_json

    try:
        settings = _settings(args)
        faults = FaultConfig.parse(args.fault_rate, base=FaultConfig.none() if args.no_faults else None)
        real = None
        if args.profiles == "real":
            from simulators.realprofiles import RealProfileSpec

            real = RealProfileSpec(resolution_kwh=args.resolution_wh / 1000.0, pv_share=args.pv_share,
                                   household_stochastic_share=args.stochastic_households, noise=args.profile_noise)
        config = SimConfig(
            meters=args.meters, days=args.days, seed=args.seed, start=parse_start(args.start),
            interval_minutes=args.interval, heartbeat_minutes=args.heartbeat_minutes, envelope=args.envelope,
            heartbeat_envelope=args.heartbeat_envelope, envelope_format=args.envelope_format,
            regions=tuple(r.strip() for r in args.regions.split(",") if r.strip()),
            prepaid_share=args.prepaid_share, faults=faults, shifts=tuple(args.shift),
            speed=1.0 if args.realtime else args.speed, history_days=args.history_days,
            purchase_rate=args.purchase_rate, ops=not args.no_ops, chunk=args.chunk, real_profiles=real,
        )
        sim = Simulator(config, settings)
    except ValueError as exc:
        print(f"meterseg simulate: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    gt = args.ground_truth or args.out / "ground_truth.json"
    try:
        summary = asyncio.run(sim.run(_sink(args, settings), progress=not args.no_progress, ground_truth=gt))
    except (ConnectionError, RuntimeError) as exc:
        print(f"meterseg simulate: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(summary.render())
    if args.summary_json:
        args.summary_json.parent.mkdir(parents=True, exist_ok=True)
        args.summary_json.write_bytes(summary_json(summary))
    return EXIT_OK


# ------------------------------------------------------------------------ import
def _register_import(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "import",
        help="import recorded CSV data (purchases, monthly meter data, transactions)",
        description="Import recorded CSV data as meterseg events. Every row is validated; rejected rows are "
                    "written with line number and reason to a report and the import carries on. "
                    "Event ids are derived from file name and line, so re-importing a file is idempotent "
                    "downstream. Exit code 1 when rows were rejected, 2 on unusable input.",
    )
    sub = p.add_subparsers(dest="format", metavar="FORMAT")
    sub.required = True

    def common(q: argparse.ArgumentParser) -> None:
        q.add_argument("--rejects", type=Path, default=None,
                       help="CSV report of rejected rows (default: OUT/<input name>.rejects.csv)")
        _add_output_options(q, "out/import")

    q = sub.add_parser("purchases", help="purchase events CSV (EventName, ..., CustomerID, ChannelType, Date)",
                       description="Import purchase events: columns EventName (VIEWED/PROCESSED/PURCHASED), "
                                   "ProductCode, ProductName, ProductDescription, UnitPrice, Quantity, CustomerID, "
                                   "Username, ChannelType, Address, City, State, Country, Date (RFC 2822, e.g. "
                                   "'Mon, 19 Sep 2022 12:16:01 +0530'); amount = UnitPrice x Quantity.")
    q.add_argument("file", type=Path, help="the CSV file (with header)")
    common(q)
    q.set_defaults(func=run_import)

    q = sub.add_parser("monthly", help="monthly meter data (customer, monthly, maintenance, feedback files)",
                       description="Import monthly meter data from a directory holding customer_data.csv "
                                   "(required), monthly_data.csv, maintenance_data.csv and feedback_data.csv; "
                                   "see simulators/importers/monthly.py for the mapping to events.")
    q.add_argument("directory", type=Path, help="directory holding the four CSV files")
    q.add_argument("--customers", default="customer_data.csv", help="customer file name within the directory")
    q.add_argument("--monthly", default="monthly_data.csv", help="monthly data file name within the directory")
    q.add_argument("--maintenance", default="maintenance_data.csv", help="maintenance file name")
    q.add_argument("--feedback", default="feedback_data.csv", help="feedback file name")
    q.add_argument("--date-format", default=None,
                   help="strptime format of every date column (default: ISO such as 2022-01-31 and common forms)")
    common(q)
    q.set_defaults(func=run_import)

    q = sub.add_parser("transactions", help="generic transactions (customer, date, amount) for an RFM backfill",
                       description="Import generic transactions as PURCHASED events, e.g. the CDNOW file: "
                                   "--columns customer,date,quantity,amount --date-format %%Y%%m%%d "
                                   "--delimiter whitespace --quantity-col quantity")
    q.add_argument("file", type=Path, help="the transactions file")
    q.add_argument("--customer-col", default="customer_id", help="name of the customer id column")
    q.add_argument("--date-col", default="date", help="name of the date column")
    q.add_argument("--amount-col", default="amount", help="name of the amount column")
    q.add_argument("--quantity-col", default=None, help="name of a quantity column (default: quantity 1)")
    q.add_argument("--columns", default=None,
                   help="comma-separated names of all columns, for files without a header line")
    q.add_argument("--date-format", default=None, help="strptime format of the date column, e.g. %%Y%%m%%d "
                                                       "(default: ISO such as 1997-01-01)")
    q.add_argument("--delimiter", default=",",
                   help="field delimiter: one character, '\\t' for tab, or 'whitespace' for runs of blanks")
    q.add_argument("--kind", default="product", choices=("topup", "bill_payment", "product", "plan"),
                   help="purchase kind of every row")
    q.add_argument("--channel", default="web", choices=("web", "app", "store", "agent"),
                   help="channel of every row")
    common(q)
    q.set_defaults(func=run_import)


def run_import(args: argparse.Namespace) -> int:
    from simulators.importers.base import ImportRun

    try:
        settings = _settings(args)
        job = _import_job(args)
    except (ValueError, FileNotFoundError) as exc:
        print(f"meterseg import: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    name, coroutine_factory = job
    sink = _sink(args, settings)
    run = ImportRun(sink, settings.partitions, progress=not args.no_progress)

    async def go() -> None:
        from simulators.sinks import KafkaSink

        await sink.start()
        try:
            if isinstance(sink, KafkaSink):
                t = settings.topics
                await sink.ensure_topics([t.purchases, t.registry, t.bills, t.heartbeats, t.maintenance, t.feedback])
            await coroutine_factory(run, settings)
        finally:
            await sink.stop()

    try:
        asyncio.run(go())
    except (ValueError, FileNotFoundError, UnicodeDecodeError, ConnectionError, RuntimeError) as exc:
        print(f"meterseg import: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    run.write_report(args.rejects or args.out / f"{name}.rejects.csv")
    print(run.result.render())
    return EXIT_REJECTS if run.result.rejected else EXIT_OK


def _import_job(args: argparse.Namespace) -> tuple[str, Any]:
    """(report name, async function of (run, settings)) for the chosen format; input errors raised early."""
    if args.format == "purchases":
        from simulators.importers.purchases import import_purchases

        path = _existing(args.file)
        return path.name, lambda run, s: import_purchases(path, run, s.topics)
    if args.format == "monthly":
        from simulators.importers.monthly import MonthlyFiles, import_monthly

        if not args.directory.is_dir():
            raise FileNotFoundError(f"{args.directory} is not a directory")
        files = MonthlyFiles.in_directory(args.directory, args.customers, args.monthly, args.maintenance,
                                          args.feedback)
        return args.directory.name or "monthly", lambda run, s: import_monthly(files, run, s.topics,
                                                                               args.date_format)
    from simulators.importers.transactions import TransactionSpec, import_transactions

    path = _existing(args.file)
    delimiter = "\t" if args.delimiter in ("\\t", "tab") else args.delimiter
    if delimiter in ("\\s+", "space", "spaces"):
        delimiter = "whitespace"
    columns = tuple(c.strip() for c in args.columns.split(",")) if args.columns else None
    spec = TransactionSpec(customer_col=args.customer_col, date_col=args.date_col, amount_col=args.amount_col,
                           quantity_col=args.quantity_col, columns=columns, date_format=args.date_format,
                           delimiter=delimiter, kind=args.kind, channel=args.channel)
    return path.name, lambda run, s: import_transactions(path, spec, run, s.topics)


def _existing(path: Path) -> Path:
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found")
    return path
