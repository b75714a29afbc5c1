"""Small building blocks shared by the pages: filters, cards, tables, figures and error boxes."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import plotly.graph_objects as go
from dash import dcc, html

from console.client import ConsoleError

T = TypeVar("T")
PALETTE = ("#1f5f99", "#e07b39", "#3a9e5f", "#b8403b", "#7d5ba6", "#8c6d31", "#d06ba8", "#5f6b73")
HEALTH_COLOURS = {"good": "#3a9e5f", "fair": "#e0b339", "poor": "#b8403b"}


@dataclass(frozen=True)
class Filters:
    """The shell's filters: a range of UTC days (event time) and a region (None: all)."""

    start: str | None
    end: str | None
    region: str | None


def _id(id: str | None) -> dict[str, Any]:
    """``id=`` only when given (a component with ``id=None`` would still carry the prop)."""
    return {"id": id} if id else {}


def section(title: str, *children: Any, id: str | None = None, note: str | None = None) -> html.Div:
    head: list[Any] = [html.H3(title)]
    if note:
        head.append(html.P(note, className="note"))
    return html.Div([*head, *children], className="section", **_id(id))


def card(title: str, value: Any, id: str, sub: str | None = None) -> html.Div:
    return html.Div(
        [html.Div(title, className="card-title"), html.Div(value, className="card-value", id=id),
         *([html.Div(sub, className="card-sub")] if sub else [])],
        className="card",
    )  # fmt: skip


def cards(*items: html.Div) -> html.Div:
    return html.Div(list(items), className="cards")


def num(v: Any, digits: int = 0) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    try:
        return f"{float(v):,.{digits}f}"
    except (TypeError, ValueError):
        return str(v)


def duration(seconds: float | None) -> str:
    """A delay an operator reads at a glance: 42 s, 7.5 min, 3.2 h, 12.4 days."""
    if seconds is None or not math.isfinite(seconds):
        return "–"
    for unit, size in (("days", 86_400.0), ("h", 3_600.0), ("min", 60.0)):
        if seconds >= 2 * size:
            return f"{seconds / size:,.1f} {unit}"
    return f"{seconds:.0f} s"


def table(columns: Sequence[str], rows: Iterable[Sequence[Any]], id: str | None = None, empty: str = "none") -> Any:
    body = [html.Tr([html.Td(c) for c in row]) for row in rows]
    if not body:
        return html.P(empty, className="note", **_id(id))
    return html.Table(
        [html.Thead(html.Tr([html.Th(c) for c in columns])), html.Tbody(body)],
        className="grid", **_id(id),
    )  # fmt: skip


def link(text: str, href: str, **kw: Any) -> dcc.Link:
    return dcc.Link(text, href=href, **kw)


def figure(fig: go.Figure, id: str, height: int = 320) -> dcc.Graph:
    fig.update_layout(height=height, margin={"l": 50, "r": 20, "t": 30, "b": 40}, template="plotly_white",
                      legend={"orientation": "h", "y": -0.2}, colorway=list(PALETTE))  # fmt: skip
    return dcc.Graph(figure=fig, id=id, config={"displaylogo": False}, style={"height": f"{height}px"})


def error_box(message: str, id: str | None = None) -> html.Div:
    return html.Div(message, className="error-box", **_id(id))


def guarded(fn: Callable[[], T], fallback: Callable[[str], T]) -> T:
    """``fn()``, or ``fallback(message)`` when the API or Prometheus answers with an error."""
    try:
        return fn()
    except ConsoleError as exc:
        return fallback(str(exc))


CSS = """
body { font-family: system-ui, -apple-system, 'Segoe UI', sans-serif; margin: 0; background: #f4f6f8; color: #1d2731; }
.top { background: #1d2f40; color: white; padding: .6em 1.2em; display: flex; align-items: center; gap: 1.4em; flex-wrap: wrap; }
.top .brand { font-weight: 600; font-size: 1.1em; }
.top a { color: #cfe3f5; text-decoration: none; } .top a.active { color: white; font-weight: 600; border-bottom: 2px solid #e07b39; }
.filters { display: flex; gap: 1em; align-items: center; padding: .6em 1.2em; background: white; border-bottom: 1px solid #dde3e8; flex-wrap: wrap; }
.filters label { font-size: .85em; color: #4a5863; }
#page { padding: 1em 1.2em 3em; }
.section { background: white; border-radius: 6px; padding: .8em 1.1em; margin-bottom: 1em; box-shadow: 0 1px 2px #0001; }
.section h3 { margin: .2em 0 .5em; font-size: 1.05em; }
.note { color: #5a6872; font-size: .85em; margin: .2em 0 .6em; }
.cards { display: flex; gap: .8em; flex-wrap: wrap; margin-bottom: 1em; }
.card { background: white; border-radius: 6px; padding: .7em 1.1em; min-width: 10em; box-shadow: 0 1px 2px #0001; }
.card-title { font-size: .8em; color: #5a6872; text-transform: uppercase; letter-spacing: .03em; }
.card-value { font-size: 1.6em; font-weight: 600; margin-top: .15em; } .card-sub { font-size: .8em; color: #5a6872; }
table.grid { border-collapse: collapse; width: 100%; font-size: .88em; }
table.grid th { text-align: left; background: #eef2f5; padding: .35em .6em; }
table.grid td { border-top: 1px solid #e6ebef; padding: .3em .6em; vertical-align: top; }
.error-box { background: #fdecea; color: #8a1c13; padding: .6em .9em; border-radius: 4px; white-space: pre-wrap; font-family: ui-monospace, monospace; font-size: .9em; }
.ok-box { background: #e8f5ec; color: #1d5b33; padding: .6em .9em; border-radius: 4px; }
.row { display: flex; gap: 1em; flex-wrap: wrap; } .row > * { flex: 1 1 28em; min-width: 0; }
textarea { font-family: ui-monospace, monospace; font-size: .95em; }
button { background: #1f5f99; color: white; border: 0; border-radius: 4px; padding: .4em 1em; cursor: pointer; }
input[type=text] { padding: .35em; }
pre.caret { margin: .3em 0 0; }
"""
