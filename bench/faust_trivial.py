"""A trivial Faust agent: the per-event Faust baseline of ``bench/pipeline.py``.

One agent iterates over a topic and only counts the events (no decoding, no
state, no output). It is built with :func:`stream.app.create_app`, i.e. the
project's own Faust configuration (uvloop, raw serialisers, short session
timeout), so the figure shows what Faust itself costs per event on this
machine. When ``--expected`` events have been seen it writes a JSON result
and exits::

    {"events": N, "seconds": S, "rate": N / S, "first_event_at": unix_s, "done_at": unix_s}

``seconds`` runs from the first event to the ``N``-th, so start-up, group
join and partition assignment are excluded.

Run (normally started by ``bench/pipeline.py`` as a subprocess; the topic must
already hold the messages)::

    .venv/bin/python -m bench.faust_trivial --topic T --expected 30000 --result /tmp/r.json \\
        [--bootstrap 127.0.0.1:9092] [--app-id bench-faust-xyz] [--partitions 4]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# the project's app factory selects uvloop through FAUST_LOOP before faust is imported
from meterseg.settings import Settings
from stream.app import create_app


def _parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--topic", required=True, help="source topic (already filled)")
    parser.add_argument("--expected", type=int, required=True, help="events to count before exiting")
    parser.add_argument("--result", type=Path, required=True, help="where to write the JSON result")
    parser.add_argument("--bootstrap", default=None, help="Kafka bootstrap (default: METERSEG_KAFKA_BOOTSTRAP)")
    parser.add_argument("--app-id", default=f"bench-faust-{os.getpid()}", help="Faust app id (consumer group)")
    parser.add_argument("--partitions", type=int, default=4, help="partitions of the source topic")
    parser.add_argument("--timeout", type=float, default=300.0, help="give up after this many seconds")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the counting agent until ``--expected`` events were seen; 0 on success, 1 on timeout."""
    args = _parse(argv)
    overrides: dict[str, Any] = {"app_id": args.app_id, "partitions": args.partitions}
    if args.bootstrap:
        overrides["kafka_bootstrap"] = args.bootstrap
    settings = Settings(**overrides)
    datadir = tempfile.mkdtemp(prefix="faust-trivial-")
    app = create_app(settings, web_enabled=False, datadir=datadir)
    topic = app.topic(args.topic, value_serializer="raw", key_serializer="raw")
    state: dict[str, float] = {"count": 0, "first": 0.0}
    finished = {"ok": False}

    @app.agent(topic)
    async def count(stream: Any) -> None:
        expected = args.expected
        n = 0
        async for _value in stream:
            if n == 0:
                state["first"] = time.time()
            n += 1
            if n == expected:
                done = time.time()
                seconds = done - state["first"]
                args.result.write_text(
                    json.dumps(
                        {
                            "events": n,
                            "seconds": seconds,
                            "rate": n / seconds if seconds > 0 else 0.0,
                            "first_event_at": state["first"],
                            "done_at": done,
                        }
                    )
                )
                finished["ok"] = True
                os.kill(os.getpid(), signal.SIGTERM)  # the worker's own graceful shutdown

    @app.task
    async def give_up() -> None:
        await asyncio.sleep(args.timeout)
        if not finished["ok"]:
            print(f"faust_trivial: timed out after {args.timeout:.0f} s", file=sys.stderr)
            os.kill(os.getpid(), signal.SIGTERM)

    from faust.worker import Worker

    worker = Worker(app, loglevel="warning", quiet=True)
    try:
        with contextlib.suppress(SystemExit):
            worker.execute_from_commandline()
    finally:
        shutil.rmtree(datadir, ignore_errors=True)
    return 0 if finished["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
