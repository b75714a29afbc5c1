"""What the console reads: the engine's HTTP API (with the session's bearer token) and Prometheus.

Both clients return parsed JSON and raise :class:`ConsoleError` with a message
an operator can act on (the API's own error text, or which service did not
answer), so a page shows the problem instead of failing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import requests

TIMEOUT_S = 15.0


class ConsoleError(Exception):
    """An answer the page cannot use: the API's error, a 401, or a service that does not answer."""

    def __init__(self, message: str, status: int | None = None, body: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = body


@dataclass(frozen=True)
class Api:
    """The engine's HTTP API with one user's token (kept server-side, see :mod:`console.auth`)."""

    base_url: str
    token: str

    def _call(self, method: str, path: str, params: dict[str, Any] | None = None, body: Any = None) -> Any:
        url = self.base_url.rstrip("/") + path
        clean = {k: v for k, v in (params or {}).items() if v not in (None, "")}
        try:
            resp = requests.request(method, url, params=clean, json=body, timeout=TIMEOUT_S,
                                    headers={"Authorization": f"Bearer {self.token}"})  # fmt: skip
        except requests.RequestException as exc:
            raise ConsoleError(f"the engine's API at {self.base_url} does not answer ({type(exc).__name__})") from exc
        if resp.status_code >= 400:
            try:
                payload = resp.json()
            except ValueError:
                payload = {"error": "http", "detail": resp.text[:200]}
            detail = payload.get("detail") if isinstance(payload, dict) else payload
            raise ConsoleError(f"{method} {path}: {resp.status_code} {detail}", resp.status_code, payload)
        if resp.headers.get("Content-Type", "").startswith("application/json"):
            return resp.json()
        return resp.text

    def get(self, path: str, **params: Any) -> Any:
        return self._call("GET", path, params)

    def post(self, path: str, body: Any) -> Any:
        return self._call("POST", path, body=body)

    def stream(self, path: str) -> requests.Response:
        """A streamed GET (the CSV export), for the console to pass through to the browser."""
        url = self.base_url.rstrip("/") + path
        resp = requests.get(url, headers={"Authorization": f"Bearer {self.token}"}, stream=True, timeout=TIMEOUT_S)
        if resp.status_code >= 400:
            raise ConsoleError(f"GET {path}: {resp.status_code}", resp.status_code)
        return resp

    @staticmethod
    def seg_path(segment_id: str) -> str:
        return "/segments/" + quote(segment_id, safe=":")


@dataclass(frozen=True)
class Prometheus:
    """Instant and range queries on Prometheus' HTTP API."""

    base_url: str

    def _query(self, path: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        try:
            resp = requests.get(self.base_url.rstrip("/") + path, params=params, timeout=TIMEOUT_S)
            payload = resp.json()
        except (requests.RequestException, ValueError) as exc:
            raise ConsoleError(f"Prometheus at {self.base_url} does not answer ({type(exc).__name__})") from exc
        if payload.get("status") != "success":
            raise ConsoleError(f"Prometheus: {payload.get('error', 'query failed')}")
        result: list[dict[str, Any]] = payload["data"]["result"]
        return result

    def vector(self, query: str) -> list[tuple[dict[str, str], float]]:
        """(labels, value) of an instant query."""
        return [(r["metric"], float(r["value"][1])) for r in self._query("/api/v1/query", {"query": query})]

    def scalar(self, query: str) -> float | None:
        """The single value of an instant query (None when it has no sample)."""
        rows = self.vector(query)
        return rows[0][1] if rows else None

    def series(
        self, query: str, start: float, end: float, step: float
    ) -> list[tuple[dict[str, str], list[float], list[float]]]:
        """(labels, timestamps, values) of a range query."""
        rows = self._query("/api/v1/query_range", {"query": query, "start": start, "end": end, "step": step})
        return [(r["metric"], [float(t) for t, _ in r["values"]], [float(v) for _, v in r["values"]]) for r in rows]
