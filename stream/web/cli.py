"""``meterseg api-spec [--check]``: write (or check) ``contracts/openapi.yaml`` from the API's route table.

Registered by adding ``"stream.web.cli"`` to ``meterseg.cli.COMMAND_MODULES``;
the spec code is imported only when the command runs.
"""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "api-spec",
        help="write contracts/openapi.yaml from the HTTP API's route table",
        description="Regenerate the OpenAPI 3.1 document of the HTTP API; --check exits 1 when the committed file is stale.",
    )
    p.add_argument("--check", action="store_true", help="exit 1 if contracts/openapi.yaml is stale")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from stream.web.openapi import main

    return main(["--check"] if args.check else [])
