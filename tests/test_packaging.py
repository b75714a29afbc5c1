"""The files people without this machine's launcher rely on: docker-compose, Dockerfile, provisioning."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def _compose() -> dict:  # type: ignore[type-arg]
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def test_compose_has_the_whole_stack() -> None:
    services = _compose()["services"]
    assert {"kafka", "redis", "prometheus", "grafana", "worker", "simulator"} <= set(services)
    assert services["kafka"]["image"].startswith("apache/kafka:4.")
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"


def test_compose_references_files_that_exist() -> None:
    for name, service in _compose()["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                assert (REPO / source).exists(), f"{name} mounts missing {source}"
        if "build" in service:
            dockerfile = REPO / service["build"] / "Dockerfile" if isinstance(service["build"], str) else None
            assert dockerfile is not None and dockerfile.exists(), f"{name} builds without a Dockerfile"


def test_dockerfile_copies_existing_paths() -> None:
    for line in (REPO / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (REPO / source).exists(), f"Dockerfile copies missing {source}"


def test_compose_commands_are_real_cli_commands() -> None:
    from meterseg.cli import build_parser

    commands = set(build_parser()._subparsers._group_actions[0].choices)  # type: ignore[union-attr]
    for name in ("worker", "simulator"):
        command = _compose()["services"][name]["command"]
        assert command[0] in commands, f"{name} runs unknown command {command[0]}"
        # the arguments must parse too
        build_parser().parse_args(command)


def test_grafana_provisioning_points_at_prometheus() -> None:
    ds = yaml.safe_load((REPO / "grafana/provisioning/datasources/prometheus.yml").read_text())
    assert ds["datasources"][0]["type"] == "prometheus"
    grafana_env = _compose()["services"]["grafana"]["environment"]
    assert re.match(r"http://prometheus:9090", grafana_env["METERSEG_PROMETHEUS_URL"])


def test_console_script_help() -> None:
    done = subprocess.run([sys.executable, "-m", "meterseg.cli", "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and "stack" in done.stdout


def test_prometheus_configs_pass_promtool() -> None:
    import shutil

    import pytest

    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool missing (apt-get install prometheus)")
    for config in ("prometheus/prometheus.yml", "prometheus/prometheus.docker.yml"):
        done = subprocess.run([promtool, "check", "config", "--syntax-only", config], cwd=REPO, capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr
