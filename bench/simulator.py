"""Simulator throughput (generation + produce into Kafka) and memory at a million meters.

Figures, each the median of ``--runs`` runs, all in the same process and
against the same broker as the raw-producer baseline (:mod:`bench.baseline`,
batched ``create_batch``/``send_batch``), because shared machines are noisy
and only ratios travel:

* envelope mode: readings per second (readings in ``ReadingBatch`` envelopes
  of ``--envelope`` readings; heartbeats off so the figure is about readings);
* single-reading mode: reading messages per second (heartbeats off);
* single mode with heartbeats every 15 minutes: all messages per second;
* generation alone into a null sink (the ceiling without Kafka).

Then, in a fresh subprocess so the peak RSS is its own: building a fleet of
``--memory-meters`` meters and generating one simulated day into a null sink
(``--memory-interval`` minutes, heartbeats every ``--memory-heartbeat``
minutes), reporting RSS after the build and the peak.

Run: ``.venv/bin/python -m bench.simulator [--meters N] [--runs R] [--skip-memory]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable

from meterseg.settings import Settings, TopicNames
from simulators.generator import SimConfig, Simulator
from simulators.sinks import KafkaSink, NullSink, Sink
from stream.clients.security import kafka_client_options
from stream.memory import proc_status


def _fresh_settings(bootstrap: str) -> Settings:
    suffix = uuid.uuid4().hex[:8]
    topics = TopicNames(**{k: f"bench.{v}.{suffix}" for k, v in TopicNames().model_dump().items()})
    return Settings(kafka_bootstrap=bootstrap, topics=topics)


def _rate(config: SimConfig, bootstrap: str | None, count: Callable[[Simulator, dict[str, int]], int]) -> float:
    settings = _fresh_settings(bootstrap or "127.0.0.1:9092")
    sim = Simulator(config, settings)  # fleet build is not part of the rate
    sink: Sink = NullSink()
    if bootstrap:
        asyncio.run(_create_topics(bootstrap, settings))
        sink = KafkaSink(
            bootstrap,
            settings.partitions,
            compacted=[settings.topics.registry],
            client_options=kafka_client_options(settings),
        )
    summary = asyncio.run(sim.run(sink, progress=False))
    return count(sim, summary.messages) / summary.seconds


async def _create_topics(bootstrap: str, settings: Settings) -> None:
    """Create the run's topics ahead and let leadership settle, so the timed run sees no NotLeader retries."""
    sink = KafkaSink(
        bootstrap,
        settings.partitions,
        compacted=[settings.topics.registry],
        client_options=kafka_client_options(settings),
    )
    await sink.start()
    try:
        await sink.ensure_topics(list(settings.topics.model_dump().values()))
    finally:
        await sink.stop()
    await asyncio.sleep(1.0)


def _median(values: list[float]) -> float:
    return float(statistics.median(values))


def _proc_status_mb(field: str) -> float:
    """A memory figure of this process (VmRSS, VmHWM) in MB (:func:`stream.memory.proc_status`)."""
    return proc_status().get(field, 0) / 1024


def memory_probe(meters: int, interval: int, heartbeat: int, envelope: int) -> dict[str, float]:
    """Build a fleet and generate one day into a null sink; RSS figures in MB (run in a fresh process)."""
    began = time.perf_counter()
    sim = Simulator(SimConfig(meters=meters, days=1, interval_minutes=interval, heartbeat_minutes=heartbeat,
                              envelope=envelope))
    built = time.perf_counter() - began
    rss_built = _proc_status_mb("VmHWM")  # peak so far, i.e. of imports and the build
    summary = asyncio.run(sim.run(NullSink(), progress=False))
    return {
        "meters": meters, "build_s": built, "rss_after_build_mb": rss_built,
        "peak_rss_mb": _proc_status_mb("VmHWM"),
        "day_s": summary.seconds, "messages": summary.total, "readings": summary.readings,
        "fleet_arrays_mb": sim.fleet.nbytes() / 1e6,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--meters", type=int, default=20_000, help="fleet size of the throughput runs")
    parser.add_argument("--runs", type=int, default=3, help="runs per figure (median reported)")
    parser.add_argument("--envelope", type=int, default=500, help="readings per envelope in envelope mode")
    parser.add_argument("--baseline-messages", type=int, default=200_000, help="messages of the baseline runs")
    parser.add_argument("--memory-meters", type=int, default=1_000_000, help="fleet size of the memory probe")
    parser.add_argument("--memory-interval", type=int, default=15, choices=(15, 30, 60),
                        help="reading interval of the memory probe's day")
    parser.add_argument("--memory-heartbeat", type=int, default=0, help="heartbeat period of the memory probe")
    parser.add_argument("--skip-memory", action="store_true", help="skip the memory probe")
    parser.add_argument("--memory-probe", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.memory_probe:
        print(json.dumps(memory_probe(args.memory_meters, args.memory_interval, args.memory_heartbeat, 0)))
        return

    from bench.baseline import measure
    from bench.common import ensure_broker, fmt_rate

    bootstrap = ensure_broker(Settings())
    print(f"simulator bench: {args.meters:,} meters x 1 day, {args.runs} runs per figure, broker {bootstrap}",
          flush=True)
    base = measure(bootstrap, args.baseline_messages, args.runs, verbose=False)
    print(f"baseline batched producer (bench.baseline, {base.payload_bytes} B/msg): {fmt_rate(base.batch_produce)}",
          flush=True)

    def readings(sim: Simulator, _: dict[str, int]) -> int:
        return sim.readings

    def all_messages(_: Simulator, messages: dict[str, int]) -> int:
        return sum(messages.values())

    cases: list[tuple[str, SimConfig, str | None, Callable[[Simulator, dict[str, int]], int], str]] = [
        (f"envelope mode ({args.envelope}/envelope), readings/s",
         SimConfig(meters=args.meters, envelope=args.envelope, heartbeat_minutes=0), bootstrap, readings, "r"),
        ("single-reading mode, readings/s",
         SimConfig(meters=args.meters, heartbeat_minutes=0), bootstrap, readings, "r"),
        ("single mode + heartbeats/15 min, messages/s",
         SimConfig(meters=args.meters, heartbeat_minutes=15), bootstrap, all_messages, "m"),
        ("generation only (null sink, single + heartbeats), messages/s",
         SimConfig(meters=args.meters, heartbeat_minutes=15), None, all_messages, "m"),
    ]
    for label, config, target, count, _ in cases:
        rates = [_rate(config, target, count) for _ in range(args.runs)]
        med = _median(rates)
        runs = ", ".join(f"{r:,.0f}" for r in rates)
        print(f"{label:<62} {fmt_rate(med):>14}  ratio to baseline {med / base.batch_produce:5.2f}  (runs: {runs})",
              flush=True)

    if args.skip_memory:
        return
    print(f"memory probe: {args.memory_meters:,} meters, one day at {args.memory_interval}-minute readings, "
          f"heartbeats {args.memory_heartbeat or 'off'} (fresh process) ...", flush=True)
    out = subprocess.run(
        [sys.executable, "-m", "bench.simulator", "--memory-probe", "--memory-meters", str(args.memory_meters),
         "--memory-interval", str(args.memory_interval), "--memory-heartbeat", str(args.memory_heartbeat)],
        check=True, capture_output=True, text=True,
    )
    probe = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"  fleet build {probe['build_s']:.1f} s, fleet arrays {probe['fleet_arrays_mb']:.0f} MB, "
          f"RSS after build {probe['rss_after_build_mb']:.0f} MB")
    print(f"  one day: {probe['readings']:,} readings, {probe['messages']:,} messages in {probe['day_s']:.0f} s "
          f"({probe['messages'] / probe['day_s']:,.0f} msg/s); peak RSS {probe['peak_rss_mb']:.0f} MB")


if __name__ == "__main__":
    main()
