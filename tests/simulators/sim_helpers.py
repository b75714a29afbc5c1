"""Shared helpers of the simulator tests: run a small simulation into files and read it back."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from meterseg.settings import Settings
from simulators.faults import FaultConfig
from simulators.generator import SimConfig, Simulator, Summary
from simulators.groundtruth import GroundTruth
from simulators.sinks import FileSink

TOPICS = Settings().topics


@dataclass
class Run:
    out: Path
    summary: Summary
    gt: GroundTruth
    config: SimConfig

    def lines(self, topic: str) -> list[bytes]:
        path = self.out / f"{topic}.jsonl"
        return path.read_bytes().splitlines() if path.exists() else []

    def events(self, topic: str) -> list[dict[str, Any]]:
        return [orjson.loads(line) for line in self.lines(topic)]


def simulate(out: Path, **overrides: Any) -> Run:
    config = SimConfig(**overrides)
    gt_path = out / "ground_truth.json"
    summary = asyncio.run(Simulator(config).run(FileSink(out), progress=False, ground_truth=gt_path))
    return Run(out, summary, GroundTruth.load(gt_path), config)


def busy_config(**overrides: Any) -> dict[str, Any]:
    """A small fleet with every fault kind at a high rate and two shifts."""
    base: dict[str, Any] = dict(
        meters=300, days=2, seed=11, faults=FaultConfig.parse(["all=0.04"]),
        shifts=("1:0.2:ev", "1:0.1:stop_purchasing"), heartbeat_minutes=15,
    )
    base.update(overrides)
    return base


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def minutes(start: datetime, when: str) -> int:
    return int((ts(when) - start) / timedelta(minutes=1))
