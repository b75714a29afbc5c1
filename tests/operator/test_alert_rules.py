"""Prometheus configuration and alert rules: promtool checks and the rule unit tests (no broker needed)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
PROM = REPO / "prometheus"
RULES = PROM / "rules" / "meterseg.yml"
RULE_TESTS = PROM / "tests" / "rules_test.yml"

REQUIRED_ALERTS = {
    "MeterSegWorkerDown",
    "MeterSegLateMeterSurge",
    "MeterSegFaultyShareHigh",
    "MeterSegDeadLetterRate",
    "MeterSegConsumerLagGrowing",
    "MeterSegNoEventsReceived",
    "MeterSegDriftDetected",
}


def _promtool() -> str:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool missing (apt-get install prometheus)")
    return promtool


def _run(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run([_promtool(), *args], cwd=cwd, capture_output=True, text=True, timeout=60)


def _rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(RULES.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def test_promtool_check_rules() -> None:
    done = _run("check", "rules", *(str(p) for p in sorted((PROM / "rules").glob("*.yml"))))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


@pytest.mark.parametrize("config", ["prometheus.yml", "prometheus.docker.yml"])
def test_promtool_check_config(config: str) -> None:
    # run from prometheus/ so that `rule_files: rules/*.yml` resolves and the rules are checked too
    done = _run("check", "config", config, cwd=PROM)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "rule files found" in done.stdout and "SUCCESS: 0 rule files" not in done.stdout


def test_promtool_rule_unit_tests() -> None:
    done = _run("test", "rules", str(RULE_TESTS.relative_to(REPO)))
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_required_alert_exists_with_runbook() -> None:
    alerts = {r["alert"]: r for r in _rules() if "alert" in r}
    assert set(alerts) >= REQUIRED_ALERTS, REQUIRED_ALERTS - set(alerts)
    for name, rule in alerts.items():
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, name
        assert rule["annotations"]["summary"] and len(rule["annotations"]["runbook"]) > 80, name
        assert re.fullmatch(r"\d+[smh]", str(rule.get("for", "0m"))), name


def test_every_alert_is_unit_tested_firing_and_not_firing() -> None:
    alerts = {r["alert"] for r in _rules() if "alert" in r}
    doc = yaml.safe_load(RULE_TESTS.read_text())
    firing: set[str] = set()
    quiet: set[str] = set()
    for case in doc["tests"]:
        for check in case.get("alert_rule_test", []):
            (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    assert alerts <= firing, f"never tested firing: {alerts - firing}"
    assert alerts <= quiet, f"never tested quiet: {alerts - quiet}"


def test_rules_use_only_metrics_of_stream_metrics() -> None:
    from stream.metrics import REGISTRY

    known = {"up"}
    for collector in REGISTRY._collector_to_names:
        known |= set(REGISTRY._collector_to_names[collector])
    used = {name for r in _rules() for name in re.findall(r"\b(?:meterseg_\w+|up)\b(?=\s*[{\[)\s])", r["expr"] + " ")}
    assert used and used <= known, used - known
