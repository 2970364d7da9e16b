"""The ML Fleet UI's rule pages: backtest a rule file over a window, and why an alert fired.

``GET /mlinfra/backtest?file=gpu.yaml&start=...&end=...&step=5m`` runs what
``mlinfra rules backtest`` runs (:mod:`mlinfra.rules.backtest`, the local engine over
the store, nothing written) for one file of the fleet's rule folder and shows each
alert's timeline as a chart (pending and firing intervals per alert and label set)
above the table the CLI prints. ``GET /mlinfra/alerts/{alertname}/why`` shows the
stored explanations of an alert's latest transitions (``mlinfra alerts explain``),
read through their owner, :class:`mlinfra.rules.state.StoreAlertStates`::

    view = backtest_view(store, "gpu.yaml", start=t1, end=t2, step=300)
    view["episodes"], view["chart"], view["error"]
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse

from mlinfra.store import MetricsStore

DEFAULT_WINDOW = 24 * 3600.0
DEFAULT_STEP = "5m"
# A page answers within a request: a backtest of more steps is the CLI's job.
MAX_PAGE_STEPS = 20_000
ROW_HEIGHT, LABEL_WIDTH, CHART_WIDTH, AXIS_HEIGHT = 18.0, 260.0, 900.0, 18.0


class PageInputError(ValueError):
    """A query parameter of a rule page that cannot be used; the message says what is accepted."""


def rule_files(rules_dir: Path) -> list[str]:
    """The rule files a page may backtest: ``*.yaml``/``*.yml`` directly in the fleet's rule folder."""
    if not rules_dir.is_dir():
        return []
    return sorted(p.name for p in rules_dir.iterdir() if p.is_file() and p.suffix in (".yaml", ".yml"))


def parse_when(name: str, text: str | None, default: float) -> float:
    """A page's time field: RFC 3339 (``2026-11-01T00:00:00Z``), an HTML ``datetime-local``
    value (``2026-11-01T00:00``, read as UTC), or epoch seconds; ``default`` when empty."""
    if text is None or not text.strip():
        return default
    text = text.strip()
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        if math.isfinite(seconds):
            return seconds
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise PageInputError(
            f"{name} {text!r}: use RFC 3339 (2026-11-01T00:00:00Z), YYYY-MM-DDTHH:MM (UTC) or epoch seconds"
        ) from None
    return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp()


def _iso(t: float | None) -> str:
    return "" if t is None else datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _fmt_labels(labels: Mapping[str, str]) -> str:
    return "{" + ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"


def backtest_view(
    store: MetricsStore,
    rules_dir: Path,
    file: str | None,
    *,
    start: float,
    end: float,
    step_text: str,
) -> dict[str, Any]:
    """Everything the backtest page shows; ``error`` says why there is no result (bad input)."""
    from mlinfra.durations import parse_duration
    from mlinfra.exceptions import MlinfraError
    from mlinfra.promql.engine import LocalEngine
    from mlinfra.rules.backtest import backtest, evaluation_times
    from mlinfra.rules.files import load_rule_file

    files = rule_files(rules_dir)
    view: dict[str, Any] = {
        "files": files,
        "file": file,
        "start": _iso(start),
        "end": _iso(end),
        "step": step_text,
        "rules_dir": str(rules_dir),
        "result": None,
        "episodes": [],
        "chart": "",
        "error": None,
    }
    if not file:
        return view
    try:
        if file not in files:
            raise PageInputError(
                f"file {file!r} is not a rule file of {rules_dir}; one of {', '.join(files)}"
            )
        step = parse_duration(step_text)
        steps = len(evaluation_times(start, end, step))
        if steps > MAX_PAGE_STEPS:
            raise PageInputError(
                f"{steps} evaluations (more than {MAX_PAGE_STEPS} on this page): use a larger step, "
                "a shorter window, or `mlinfra rules backtest`"
            )
        engine = LocalEngine(store)
        groups = load_rule_file(rules_dir / file, engine=engine)
        result = backtest(groups, engine, start=start, end=end, step=step)
    except (ValueError, MlinfraError) as e:
        view["error"] = str(e)
        return view
    view["result"] = result
    view["episodes"] = [
        {
            "alertname": e.alertname,
            "labels": _fmt_labels(e.labels),
            "group": e.group,
            "pending_from": _iso(e.pending_from),
            "firing_from": _iso(e.firing_from) or "-",
            "resolved_at": _iso(e.resolved_at) or "-",
            "value_text": "/".join(
                "-" if v is None else f"{v:g}" for v in (e.pending_value, e.firing_value, e.resolved_value)
            ),
            "fired": e.fired,
        }
        for e in result.episodes
    ]
    view["chart"] = timeline_chart(result.episodes, start=start, end=end)
    return view


def timeline_chart(episodes: Sequence[Any], *, start: float, end: float) -> str:
    """An SVG swimlane per alert and label set: pending bars, firing bars, hover for times and values."""
    lanes: dict[tuple[str, str], list[Any]] = {}
    for e in episodes:
        lanes.setdefault((e.alertname, _fmt_labels(e.labels)), []).append(e)
    height = AXIS_HEIGHT + ROW_HEIGHT * max(1, len(lanes))
    width = LABEL_WIDTH + CHART_WIDTH
    span = (end - start) or 1.0

    def x(t: float) -> float:
        return LABEL_WIDTH + CHART_WIDTH * min(max((t - start) / span, 0.0), 1.0)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="timeline" viewBox="0 0 {width:.0f} {height:.0f}" '
        f'role="img" aria-label="alert timeline from {_iso(start)} to {_iso(end)}">'
    ]
    for t, anchor in ((start, "start"), ((start + end) / 2, "middle"), (end, "end")):
        parts.append(
            f'<text class="chart-axis" x="{x(t):.1f}" y="12" text-anchor="{anchor}">{escape(_iso(t))}</text>'
        )
    if not lanes:
        parts.append(
            f'<text class="chart-empty" x="{x((start + end) / 2):.1f}" y="{AXIS_HEIGHT + 12:.0f}" '
            'text-anchor="middle">no alert went pending in this window</text></svg>'
        )
        return "".join(parts)
    for row, ((alertname, labels), lane) in enumerate(lanes.items()):
        y = AXIS_HEIGHT + row * ROW_HEIGHT
        name = f"{alertname} {labels}"
        parts.append(
            f'<text class="timeline-label" x="2" y="{y + 12:.1f}"><title>{escape(name)}</title>'
            f"{escape(name if len(name) <= 40 else name[:39] + '…')}</text>"
        )
        for e in lane:
            stop = e.resolved_at if e.resolved_at is not None else end
            pending_end = e.firing_from if e.firing_from is not None else stop
            parts.append(
                _bar(
                    "pending",
                    x(e.pending_from),
                    x(pending_end),
                    y,
                    name,
                    e.pending_from,
                    pending_end,
                    e.pending_value,
                )
            )
            if e.firing_from is not None:
                parts.append(
                    _bar("firing", x(e.firing_from), x(stop), y, name, e.firing_from, stop, e.firing_value)
                )
    parts.append("</svg>")
    return "".join(parts)


def _bar(
    state: str, x0: float, x1: float, y: float, name: str, t0: float, t1: float, value: float | None
) -> str:
    shown = "" if value is None else f", value {value:g}"
    title = f"{name}: {state} {_iso(t0)} – {_iso(t1)}{shown}"
    return (
        f'<rect class="timeline-{state}" data-state="{state}" x="{x0:.1f}" y="{y + 3:.1f}" '
        f'width="{max(x1 - x0, 1.5):.1f}" height="{ROW_HEIGHT - 6:.1f}"><title>{escape(title)}</title></rect>'
    )


def why_view(store: MetricsStore, alertname: str, *, at: float, labels: Mapping[str, str]) -> dict[str, Any]:
    """The stored explanations of ``alertname``'s latest transitions at ``at``, those whose labels
    include ``labels`` (the alert row the fleet page links from)."""
    from mlinfra.rules.state import StoreAlertStates

    rows = StoreAlertStates(store).explanations(alertname, at=at)
    wanted = dict(labels)
    rows = [r for r in rows if all(r["labels"].get(k) == v for k, v in wanted.items())]
    for r in rows:
        r["shown_labels"] = _fmt_labels({k: v for k, v in r["labels"].items() if k != "alertname"})
        why = r["explanation"]
        comparison = why.get("comparison")
        if comparison:
            comparison["held"] = r["to_state"] in ("pending", "firing")
    return {"alertname": alertname, "at": _iso(at), "labels": wanted, "rows": rows}


def register(
    app: FastAPI, render: Callable[..., Any], store: Callable[[], MetricsStore], rules_dir: Callable[[], Path]
) -> None:
    """Add the routes to the mlinfra app (``render(template, request, **context)`` is the app's)."""

    @app.get("/backtest", response_class=HTMLResponse)
    def backtest_page(
        request: Request,
        file: str | None = Query(None),
        start: str | None = Query(None),
        end: str | None = Query(None),
        step: str = Query(DEFAULT_STEP),
    ) -> HTMLResponse:
        now = time.time()
        try:
            t1 = parse_when("start", start, now - DEFAULT_WINDOW)
            t0 = parse_when("end", end, now)
        except PageInputError as e:
            raise HTTPException(400, str(e)) from None
        view = backtest_view(store(), rules_dir(), file, start=t1, end=t0, step_text=step)
        status = 400 if view["error"] else 200
        response: HTMLResponse = render("backtest.html", request, bt=view)
        response.status_code = status
        return response

    @app.get("/alerts/{alertname}/why", response_class=HTMLResponse)
    def why_page(
        request: Request, alertname: str, at: str | None = Query(None), labels: str = Query("{}")
    ) -> HTMLResponse:
        try:
            when = parse_when("at", at, time.time())
            wanted = json.loads(labels)
            if not isinstance(wanted, dict):
                raise ValueError("not an object")
        except PageInputError as e:
            raise HTTPException(400, str(e)) from None
        except ValueError:
            raise HTTPException(
                400, f'labels {labels!r}: a JSON object of label values, {{"job": "api"}}'
            ) from None
        view = why_view(store(), alertname, at=when, labels={str(k): str(v) for k, v in wanted.items()})
        response: HTMLResponse = render("why.html", request, why=view)
        return response
