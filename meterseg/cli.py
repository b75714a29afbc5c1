"""The ``meterseg`` command line: one entry point, one sub-command per job.

Each area registers its own sub-commands (``register(subparsers)``) so this
module stays a table of contents: the stack launcher, the simulator and
importers, and the engine's worker and demo.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

#: modules that contribute sub-commands, in help order; each has ``register(subparsers)``
COMMAND_MODULES: tuple[str, ...] = (
    "meterseg.stack.cli",
    "meterseg.demo",
    "stream.contracts",
    "simulators.cli",
    "stream.cli",
    "stream.web.cli",
    "console.cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="meterseg",
        description="Streaming smart-meter ingestion and incremental customer segmentation.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        rc = args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
