"""The ``simulate`` and ``import`` sub-commands: help texts, a file run with summary and ground truth."""

from __future__ import annotations

import re
from pathlib import Path

import orjson
import pytest

from meterseg.cli import build_parser, main


def _help(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exc:
        main([*argv, "--help"])
    assert exc.value.code == 0
    return capsys.readouterr().out


def _options(parser_help: str) -> list[str]:
    return sorted(set(re.findall(r"^\s+(--[a-z-]+)", parser_help, flags=re.M)))


def test_every_option_is_described(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["simulate"], ["import", "purchases"], ["import", "monthly"], ["import", "transactions"]):
        text = _help(argv, capsys)
        sub = build_parser()._subparsers._group_actions[0].choices[argv[0]]  # type: ignore[union-attr]
        if len(argv) > 1:
            sub = sub._subparsers._group_actions[0].choices[argv[1]]  # type: ignore[union-attr]
        for action in sub._actions:
            if action.option_strings and action.dest != "help":
                assert action.help, (argv, action.option_strings)
        assert "--sink" in _options(text)
    text = _help(["import"], capsys)
    for name in ("purchases", "monthly", "transactions"):
        assert name in text


def test_simulate_to_files_prints_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["simulate", "--meters", "100", "--days", "2", "--shift", "1:0.1:ev", "--fault-rate", "all=0.02",
               "--sink", "file", "--out", str(tmp_path), "--no-progress", "--summary-json",
               str(tmp_path / "summary.json")])
    assert rc == 0
    out = capsys.readouterr().out
    assert "meter.readings" in out and "faults injected:" in out and "ev_night_charging" in out
    summary = orjson.loads((tmp_path / "summary.json").read_bytes())
    gt = orjson.loads((tmp_path / "ground_truth.json").read_bytes())
    assert summary["messages"] == gt["counts"]["messages"]
    lines = (tmp_path / "meter.readings.jsonl").read_bytes().count(b"\n")
    assert lines == summary["messages"]["meter.readings"]


def test_simulate_rejects_bad_arguments(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", "--shift", "x", "--sink", "null"]) == 2
    assert "DAY:SHARE:TARGET" in capsys.readouterr().err
    assert main(["simulate", "--fault-rate", "bogus=1", "--sink", "null"]) == 2
    assert "unknown fault kind" in capsys.readouterr().err
    assert main(["simulate", "--meters", "10", "--sink", "kafka", "--bootstrap", "127.0.0.1:1",
                 "--out", str(tmp_path), "--no-progress"]) == 2
    assert "cannot reach Kafka" in capsys.readouterr().err
