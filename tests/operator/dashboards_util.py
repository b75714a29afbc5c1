"""Helpers shared by the dashboard tests: the panel queries of the committed dashboards, and a throwaway Prometheus."""

from __future__ import annotations

import json
import math
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
from dataclasses import dataclass
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


def free_port() -> int:
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
        port = free_port()
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


# -- synthetic metrics: every series of stream.metrics, with the label values the queries ask for -------------------
_MATCHER = re.compile(r'(\w+)\s*(=~|=)\s*"([^"]*)"')


def queried_label_values(exprs: list[str]) -> dict[str, list[str]]:
    """Literal label values the queries match on (``state="poor"``, ``score=~"1|2"``), per label name."""
    values: dict[str, set[str]] = {}
    for expr in exprs:
        for label, op, value in _MATCHER.findall(expr):
            options = value.split("|") if op == "=~" else [value]
            values.setdefault(label, set()).update(o for o in options if o and "$" not in o and "*" not in o)
    return {k: sorted(v) for k, v in values.items()}


def serve_synthetic_metrics(port: int, label_values: dict[str, list[str]], seconds: float = 120.0) -> None:
    """Expose every metric of ``stream.metrics`` on ``port`` with moving values until ``seconds`` pass (a subprocess)."""
    import itertools
    import random

    from prometheus_client import Counter, Gauge, Histogram, start_http_server

    from stream.metrics import REGISTRY

    children: list[Any] = []
    collectors: list[Any] = list(REGISTRY._collector_to_names)
    for collector in collectors:
        names = getattr(collector, "_labelnames", ())
        if not names:
            children.append(collector)
            continue
        choices = [label_values.get(n) or ["a", "b"] for n in names]
        children += [collector.labels(*combo) for combo in itertools.islice(itertools.product(*choices), 64)]
    start_http_server(port, addr="127.0.0.1", registry=REGISTRY)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        now = time.time()
        for child in children:
            if isinstance(child, Counter):
                child.inc(random.randint(1, 10))
            elif isinstance(child, Histogram):
                child.observe(random.uniform(0.001, 100))
            elif isinstance(child, Gauge):
                child.set(now if "timestamp" in getattr(child, "_name", "") else random.randint(1, 100))
        time.sleep(0.2)


# -- evaluating every query of the dashboards against a Prometheus with data -------------------------------------
def _problem(body: dict[str, Any]) -> str | None:
    """Why a query answer is not data, or None when it is."""
    if body.get("status") != "success":
        return f"error: {body.get('errorType')}: {body.get('error')}"
    if not body.get("data", {}).get("result"):
        return "empty result"
    return None


def _only_nan(body: dict[str, Any]) -> bool:
    data = body.get("data", {})
    if data.get("resultType") != "vector":
        return False
    return all(math.isnan(float(s["value"][1])) for s in data.get("result") or [])


def range_has_number(base_url: str, expr: str, seconds: float, timeout: float = 10.0) -> bool:
    """Whether ``expr`` answers a finite number at some step of the last ``seconds`` (a time-series panel
    over that range would draw something): ``GET /api/v1/query_range``, step 2 s."""
    end = time.time()
    url = f"{base_url.rstrip('/')}/api/v1/query_range?" + urllib.parse.urlencode(
        {"query": expr, "start": end - seconds, "end": end, "step": "2"}
    )
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        body = json.load(resp)
    return any(math.isfinite(float(v)) for series in body.get("data", {}).get("result", []) for _, v in series["values"])


@dataclass
class Evaluation:
    queries: int
    problems: list[str]  # "dashboard / panel: why\n    expr", sorted
    nan_only: list[str]  # panels whose answer is only NaN (0/0 on a quiet window)


def evaluate_dashboards(base_url: str, retry_for_s: float = 60.0, retry_every_s: float = 5.0,
                        dashboard_dir: Path | str = DASHBOARD_DIR, run_s: float | None = None) -> Evaluation:
    """Every panel query (instant, at now, variables substituted) and every query variable against ``base_url``.

    Empty answers are re-tried for ``retry_for_s`` (the first scrapes may not cover a rate window yet); errors
    are not (waiting does not fix a bad query).
    """
    queries = panel_queries(dashboard_dir)
    pending = {(dash, panel, expr): substitute(expr) for dash, panel, expr in queries}
    problems: dict[tuple[str, str, str], str] = {}
    nan_only: set[str] = set()
    deadline = time.monotonic() + retry_for_s
    while True:
        problems = {}
        for key, query in pending.items():
            body = instant_query(base_url, query)
            problem = _problem(body)
            if problem is not None:
                problems[key] = problem
            elif _only_nan(body) and not (run_s and range_has_number(base_url, query, run_s)):
                # NaN now (0/0 on a window that is quiet now) and, with ``run_s``, at every step of the run
                nan_only.add(f"{key[0]} / {key[1]}")
        if not problems or time.monotonic() > deadline or all(p.startswith("error") for p in problems.values()):
            break
        pending = {k: v for k, v in pending.items() if k in problems}
        time.sleep(retry_every_s)
    for dash, name, metric, label in variable_queries(dashboard_dir):
        if not label_values(base_url, metric, label):
            problems[(dash, f"variable ${name}", f"label_values({metric}, {label})")] = "no values"
    report = [f"{dash} / {panel}: {problem}\n    {expr}" for (dash, panel, expr), problem in sorted(problems.items())]
    return Evaluation(len(queries), report, sorted(nan_only))
