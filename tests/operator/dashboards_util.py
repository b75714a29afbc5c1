"""Helpers shared by the dashboard tests: the panel queries of the committed dashboards, and a throwaway Prometheus."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
DASHBOARD_DIR = REPO / "grafana" / "dashboards"

# Grafana's built-in variables as a test evaluates them: an instant query at "now" over the last hour.
BUILTINS = {"__range": "1h", "__rate_interval": "1m", "__interval": "1m", "__range_s": "3600", "__interval_ms": "60000"}
_VARIABLE = re.compile(r"\$\{(\w+)(?::[^}]*)?\}|\$(\w+)")


def load_dashboards(dashboard_dir: Path = DASHBOARD_DIR) -> list[dict[str, Any]]:
    return [json.loads(p.read_text(encoding="utf-8")) for p in sorted(Path(dashboard_dir).glob("*.json"))]


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))  # collapsed rows keep their panels inside


def panel_queries(dashboard_dir: Path | str = DASHBOARD_DIR) -> list[tuple[str, str, str]]:
    """Every PromQL expression of every panel: ``(dashboard title, panel title, expr)``, in file and panel order."""
    out: list[tuple[str, str, str]] = []
    for dash in load_dashboards(Path(dashboard_dir)):
        for panel in _panels(dash.get("panels", [])):
            for target in panel.get("targets", []):
                expr = target.get("expr")
                if expr:
                    out.append((dash["title"], panel["title"], expr))
    return out


def variable_queries(dashboard_dir: Path | str = DASHBOARD_DIR) -> list[tuple[str, str, str, str]]:
    """Query variables ``label_values(metric, label)``: ``(dashboard title, variable, metric, label)``."""
    out: list[tuple[str, str, str, str]] = []
    for dash in load_dashboards(Path(dashboard_dir)):
        for var in dash.get("templating", {}).get("list", []):
            if var.get("type") != "query":
                continue
            m = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", var.get("definition", ""))
            if m:
                out.append((dash["title"], var["name"], m.group(1), m.group(2)))
    return out


def label_values(base_url: str, metric: str, label: str, timeout: float = 10.0) -> list[str]:
    """What Grafana's ``label_values(metric, label)`` lists (``/api/v1/label/<label>/values?match[]=metric``)."""
    url = f"{base_url.rstrip('/')}/api/v1/label/{label}/values?" + urllib.parse.urlencode({"match[]": metric})
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return [str(v) for v in json.load(resp)["data"]]


def substitute(expr: str, variables: dict[str, str] | None = None) -> str:
    """Replace Grafana variables: built-ins by fixed windows, template variables (``$region``...) by ``.*``."""
    values = {**BUILTINS, **(variables or {})}

    def repl(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2)
        return values.get(name, ".*")

    return _VARIABLE.sub(repl, expr)


def instant_query(base_url: str, expr: str, timeout: float = 10.0) -> dict[str, Any]:
    """``GET /api/v1/query``; returns the JSON body, also for 4xx answers (bad queries)."""
    url = f"{base_url.rstrip('/')}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return dict(json.load(resp))
    except urllib.error.HTTPError as err:
        return dict(json.load(err))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def local_prometheus(config: str = "global:\n  scrape_interval: 1m\nscrape_configs: []\n",
                     timeout_s: float = 30.0) -> Iterator[str]:
    """A real ``prometheus`` on a free loopback port in a temp dir; yields its base URL."""
    binary = shutil.which("prometheus")
    if binary is None:
        raise FileNotFoundError("prometheus")
    with tempfile.TemporaryDirectory(prefix="meterseg-prom-") as tmp:
        cfg = Path(tmp) / "prometheus.yml"
        cfg.write_text(config)
        port = _free_port()
        log = open(Path(tmp) / "prometheus.log", "wb")  # noqa: SIM115 - closed below
        proc = subprocess.Popen(
            [binary, f"--config.file={cfg}", f"--storage.tsdb.path={Path(tmp) / 'data'}",
             f"--web.listen-address=127.0.0.1:{port}"],
            stdout=log, stderr=subprocess.STDOUT,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + timeout_s
            while True:
                try:
                    with urllib.request.urlopen(f"{base}/-/ready", timeout=1) as resp:
                        if resp.status == 200:
                            break
                except OSError:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    log.flush()
                    raise RuntimeError("prometheus did not start: " + (Path(tmp) / "prometheus.log").read_text()[-2000:])
                time.sleep(0.1)
            yield base
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.close()
