"""A :class:`~mlinfra.reports.report.Report` -> ``report.json``, ``report.csv``, ``report.html``.

(A report built from a store with samples is needed: ``tests/reports/test_render.py`` runs this.)

    >>> files = render_all(report)  # doctest: +SKIP
    >>> json.loads(files["report.json"])["status"]  # doctest: +SKIP
    'complete'

``report.json`` is deterministic: the same data gives the same bytes (sorted keys,
no wall-clock time inside, floats rounded to 10 significant digits). The HTML
embeds its charts as PNG (matplotlib's Agg backend, imported on first use so that
parsing a DAG never loads matplotlib).
"""

from __future__ import annotations

import base64
import csv
import io
import json
import math
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlinfra.reports.report import Report

JSON_NAME, CSV_NAME, HTML_NAME = "report.json", "report.csv", "report.html"
CSV_COLUMNS = ("section", "entity", "metric", "value", "unit")


def render_json(report: Report) -> bytes:
    return (json.dumps(report.to_dict(), sort_keys=True, indent=2, allow_nan=False) + "\n").encode()


_CURRENCY = "<currency>"  # stands for the report's currency in the unit tables below
_MODEL_UNITS = {
    "requests": "requests",
    "errors": "requests",
    "error_rate": "ratio",
    "latency_p50_ms": "ms",
    "latency_p95_ms": "ms",
    "latency_p99_ms": "ms",
    "availability": "ratio",
    "replicas_min": "replicas",
    "replicas_avg": "replicas",
    "replicas_max": "replicas",
    "gpu_hours": "h",
    "cpu_hours": "h",
    "cost": _CURRENCY,
    "cost_per_1000_predictions": _CURRENCY,
    "scale_ups": "events",
    "scale_downs": "events",
}
_GPU_UNITS = {
    "samples": "sweeps",
    "down_sweeps": "sweeps",
    "utilization_avg": "%",
    "utilization_p95": "%",
    "utilization_max": "%",
    "memory_peak_bytes": "bytes",
    "memory_total_bytes": "bytes",
    "temperature_max_celsius": "C",
    "throttle_seconds": "s",
    "power_avg_watts": "W",
    "energy_wh": "Wh",
}
_HOST_UNITS = {
    "samples": "sweeps",
    "cpu_avg_percent": "%",
    "cpu_p95_percent": "%",
    "memory_peak_percent": "%",
    "memory_peak_bytes": "bytes",
}
_COST_FIGURES = (
    "gpu_hours",
    "cpu_hours",
    "gpu_cost",
    "cpu_cost",
    "total",
    "requests",
    "cost_per_1000_predictions",
)

CsvRow = tuple[str, str, str, Any, str]


def _csv_rows(data: dict[str, Any]) -> Iterator[CsvRow]:
    """Every figure of ``report.to_dict()`` as a row, section by section."""
    yield from _interval_rows(data)
    yield from _model_rows(data["models"], data["cost"]["currency"])
    yield from _gpu_rows(data["gpus"])
    yield from _host_rows(data["hosts"])
    yield from _alert_rows(data["alerts"])
    yield from _cost_rows(data["cost"])


def _interval_rows(data: dict[str, Any]) -> Iterator[CsvRow]:
    yield ("interval", "", "start", data["interval"]["start"], "")
    yield ("interval", "", "end", data["interval"]["end"], "")
    yield ("interval", "", "status", data["status"], "")
    c = data["completeness"]
    yield ("completeness", "", "sweeps_expected", c["sweeps_expected"], "sweeps")
    yield ("completeness", "", "sweeps_found", c["sweeps_found"], "sweeps")
    yield ("completeness", "", "coverage", c["coverage"], "ratio")
    for g in c["gaps"]:
        yield (
            "completeness",
            f"{g['start']}/{g['end']}",
            "gap_missing_sweeps",
            g["missing_sweeps"],
            "sweeps",
        )


def _model_rows(models: list[dict[str, Any]], currency: str) -> Iterator[CsvRow]:
    for m in models:
        for k, unit in _MODEL_UNITS.items():
            yield ("model", m["name"], k, m[k], currency if unit == _CURRENCY else unit)
        yield ("model", m["name"], "deployments", len(m["deployments"]), "deployments")
        for outcome, n in sorted(m["deployment_outcomes"].items()):
            yield ("model", m["name"], f"deployments_{outcome}", n, "deployments")


def _gpu_rows(gpus: list[dict[str, Any]]) -> Iterator[CsvRow]:
    for g in gpus:
        entity = f"{g['host']}:{g['gpu_id']}"
        for k, unit in _GPU_UNITS.items():
            yield ("gpu", entity, k, g[k], unit)
        for reason, seconds in sorted(g["clock_event_seconds"].items()):
            yield ("gpu", entity, f"clock_event_{reason}_seconds", seconds, "s")


def _host_rows(hosts: list[dict[str, Any]]) -> Iterator[CsvRow]:
    for h in hosts:
        for k, unit in _HOST_UNITS.items():
            yield ("host", h["host"], k, h[k], unit)


def _alert_rows(alerts: list[dict[str, Any]]) -> Iterator[CsvRow]:
    for a in alerts:
        yield ("alert", a["alert"], "fired", a["fired"], "times")
        yield ("alert", a["alert"], "firing_seconds", a["firing_seconds"], "s")
        yield ("alert", a["alert"], "any_firing_seconds", a["any_firing_seconds"], "s")


def _cost_rows(cost: dict[str, Any]) -> Iterator[CsvRow]:
    for k in _COST_FIGURES:
        unit = "h" if k.endswith("hours") else ("requests" if k == "requests" else cost["currency"])
        yield ("cost", "fleet", k, cost[k], unit)


def render_csv(report: Report) -> bytes:
    """Long format, one figure a row: ``section,entity,metric,value,unit`` (empty value = no data)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in _csv_rows(report.to_dict()):
        writer.writerow(["" if v is None else v for v in row])
    return buf.getvalue().encode()


# ---------------------------------------------------------------------- charts


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    # No "Software"/date metadata: the same report draws the same bytes.
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight", metadata={"Software": None})
    _plt().close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _times(ts: list[float]) -> list[datetime]:
    return [datetime.fromtimestamp(t, UTC) for t in ts]


def _with_breaks(ts: list[float], values: list[Any], step: float) -> tuple[list[datetime], list[float]]:
    """Insert a NaN where sweeps are missing, so a line is broken at a gap instead of bridging it."""
    xs: list[float] = []
    ys: list[float] = []
    for i, (t, v) in enumerate(zip(ts, values, strict=True)):
        if i and t - ts[i - 1] > 1.5 * step:
            xs.append(ts[i - 1] + step)
            ys.append(math.nan)
        xs.append(t)
        ys.append(math.nan if v is None else float(v))
    return _times(xs), ys


def _time_axis(ax: Any, data: dict[str, Any]) -> None:
    import matplotlib.dates as mdates

    start = datetime.fromisoformat(data["interval"]["start"].replace("Z", "+00:00"))
    end = datetime.fromisoformat(data["interval"]["end"].replace("Z", "+00:00"))
    ax.set_xlim(start, end)
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M", tz=UTC))
    ax.grid(True, alpha=0.3)
    for g in data["completeness"]["gaps"]:
        a = datetime.fromisoformat(g["start"].replace("Z", "+00:00"))
        b = datetime.fromisoformat(g["end"].replace("Z", "+00:00"))
        ax.axvspan(a, b, color="0.85", zorder=0, label="_gap")


def _gap_note(data: dict[str, Any]) -> str:
    return "  (grey: no sweeps recorded)" if data["completeness"]["gaps"] else ""


def chart_gpu(data: dict[str, Any]) -> str | None:
    series = data["timeseries"]["gpus"]
    if not series:
        return None
    plt = _plt()
    step = data["completeness"]["step_seconds"]
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(11, 6.5), sharex=True)
    totals = {f"{g['host']}:{g['gpu_id']}": g.get("memory_total_bytes") for g in data["gpus"]}
    for name, s in sorted(series.items()):
        ax1.plot(*_with_breaks(s["t"], s["utilization_percent"], step), label=name, linewidth=1.2)
        # Percent of the GPU's memory on a fixed 0-100 scale: GiB on an auto scale made
        # a 3 % change fill the chart.
        total = totals.get(name)
        mem = [None if v is None or not total else 100.0 * v / total for v in s["memory_used_bytes"]]
        ax2.plot(*_with_breaks(s["t"], mem, step), label=name, linewidth=1.2)
    ax1.set_title(f"GPU utilization and memory over the day (UTC){_gap_note(data)}")
    ax1.set_ylabel("utilization (%)")
    ax1.set_ylim(0, 105)
    ax2.set_ylabel("memory used (% of total)")
    ax2.set_ylim(0, 105)
    ax2.set_xlabel("time (UTC)")
    for ax in (ax1, ax2):
        _time_axis(ax, data)
    ax1.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, title="host:gpu")
    return _png(fig)


def chart_latency(data: dict[str, Any]) -> str | None:
    models = [m for m in data["models"] if m["latency_p50_ms"] is not None]
    if not models:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(11, max(2.5, 0.55 * len(models) + 1.2)))
    height = 0.26
    colors = {"p50": "#4c9be8", "p95": "#f0a030", "p99": "#d9534f"}
    for i, m in enumerate(models):
        for j, (key, label) in enumerate(
            (("latency_p50_ms", "p50"), ("latency_p95_ms", "p95"), ("latency_p99_ms", "p99"))
        ):
            ax.barh(
                i + (j - 1) * height, m[key], height, color=colors[label], label=label if i == 0 else None
            )
        if m["slo_p99_latency_ms"] is not None:
            ax.plot(
                [m["slo_p99_latency_ms"]] * 2,
                [i - 1.6 * height, i + 1.6 * height],
                color="black",
                linewidth=2,
                label="p99 SLO" if i == 0 else None,
            )
    ax.set_yticks(range(len(models)), [m["name"] for m in models])
    ax.invert_yaxis()
    ax.set_xlabel("request latency (ms, from TF Serving's histogram)")
    ax.set_title("Latency percentiles per model over the interval")
    ax.grid(True, axis="x", alpha=0.3)
    ax.legend(loc="lower right", fontsize=9)
    return _png(fig)


def chart_replicas_alerts(data: dict[str, Any]) -> str | None:
    replicas = data["timeseries"]["replicas"]
    alerts = data["timeseries"]["alerts_firing"]
    if not replicas and not alerts:
        return None
    plt = _plt()
    import matplotlib.dates as mdates

    step = data["completeness"]["step_seconds"]
    rows = max(1, len(alerts))
    fig, (ax1, ax2) = plt.subplots(
        2,
        1,
        figsize=(11, 5 + 0.3 * rows),
        sharex=True,
        gridspec_kw={"height_ratios": [3, max(1.2, 0.4 * rows)]},
    )
    from matplotlib.ticker import MaxNLocator

    cmap = plt.get_cmap("tab10")
    for i, (name, s) in enumerate(sorted(replicas.items())):
        color = cmap(i % 10)
        xs, ys = _with_breaks(s["t"], s["desired"], step)
        ax1.step(xs, ys, where="post", label=f"{name} desired", linewidth=1.8, color=color)
        xs, ys = _with_breaks(s["t"], s["available"], step)
        ax1.step(xs, ys, where="post", linestyle=":", linewidth=1.0, color=color, label=f"{name} available")
    ax1.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax1.set_ylabel("replicas")
    ax1.set_title(f"Replicas vs firing alerts (UTC){_gap_note(data)}")
    if replicas:
        ax1.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    for i, (_alert, spans) in enumerate(sorted(alerts.items())):
        bars = [
            (datetime.fromtimestamp(a, UTC), datetime.fromtimestamp(b, UTC) - datetime.fromtimestamp(a, UTC))
            for a, b in spans
        ]
        ax2.broken_barh(
            [(mdates.date2num(a), d.total_seconds() / 86400) for a, d in bars],
            (i - 0.4, 0.8),
            color=cmap(i % 10),
        )
    ax2.set_yticks(range(len(alerts)), sorted(alerts) or [])
    ax2.set_ylim(-0.6, rows - 0.4)
    ax2.set_xlabel("time (UTC)")
    ax2.set_ylabel("firing")
    if not alerts:
        ax2.text(0.5, 0.5, "no alert fired", transform=ax2.transAxes, ha="center", va="center", color="0.4")
    for ax in (ax1, ax2):
        _time_axis(ax, data)
    return _png(fig)


CHARTS: tuple[tuple[str, Callable[[dict[str, Any]], str | None]], ...] = (
    ("GPU utilization and memory", chart_gpu),
    ("Latency percentiles per model", chart_latency),
    ("Replicas vs alerts", chart_replicas_alerts),
)


# ---------------------------------------------------------------------- html

_TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>mlinfra report {{ d.interval.start }} – {{ d.interval.end }}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1200px; color: #222; }
h1 { font-size: 1.5rem; } h2 { margin-top: 2rem; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: .5rem 0; font-size: .9rem; }
th, td { border: 1px solid #ddd; padding: .25rem .6rem; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #f4f4f4; }
.status { display: inline-block; padding: .2rem .6rem; border-radius: .3rem; color: #fff; }
.complete { background: #2e7d32; } .partial { background: #ef6c00; } .empty { background: #757575; }
.empty-section { color: #777; font-style: italic; }
img { max-width: 100%; }
</style></head><body>
<h1>Fleet report {{ d.interval.start }} – {{ d.interval.end }}</h1>
<p id="interval">Data interval <b>[{{ d.interval.start }}, {{ d.interval.end }})</b> UTC{% if run_id %},
written by run <code>{{ run_id }}</code>{% if run_id.startswith("backfill__") or run_id.startswith("scheduled__") %}
(a run's name carries its logical date, which for this daily schedule is the end of the day it reports){% endif %}{% endif %}.</p>
<p><span class="status {{ d.status }}">{{ d.status }}</span> {{ d.message }}</p>
<h2>Data completeness</h2>
<p>{{ d.completeness.sweeps_found }} of {{ d.completeness.sweeps_expected }} sweeps
(every {{ d.completeness.step_seconds|int }} s), coverage {{ pct(d.completeness.coverage) }}.</p>
{% if d.completeness.gaps %}<table><tr><th>gap from</th><th>to</th><th>missing sweeps</th></tr>
{% for g in d.completeness.gaps %}<tr><td>{{ g.start }}</td><td>{{ g.end }}</td><td>{{ g.missing_sweeps }}</td></tr>{% endfor %}
</table>{% else %}<p class="empty-section">No gaps.</p>{% endif %}
{% for title, png in charts %}<h2>{{ title }}</h2>
{% if png %}<img alt="{{ title }}" src="data:image/png;base64,{{ png }}">{% else %}<p class="empty-section">No data for this chart.</p>{% endif %}
{% endfor %}
<h2>Models</h2>
{% if d.models %}<table><tr><th>model</th><th>requests</th><th>error rate</th><th>p50 ms</th><th>p95 ms</th><th>p99 ms</th>
<th>p99 SLO ms</th><th>availability</th><th>replicas min/avg/max</th><th>deploys</th><th>scale events</th>
<th>cost ({{ d.cost.currency }})</th><th>per 1,000 predictions</th></tr>
{% for m in d.models %}<tr><td>{{ m.name }}</td><td>{{ num(m.requests, 0) }}</td><td>{{ pct(m.error_rate, 3) }}</td>
<td>{{ num(m.latency_p50_ms) }}</td><td>{{ num(m.latency_p95_ms) }}</td><td>{{ num(m.latency_p99_ms) }}</td>
<td>{{ num(m.slo_p99_latency_ms) }}</td><td>{{ pct(m.availability) }}</td>
<td>{{ num(m.replicas_min, 0) }} / {{ num(m.replicas_avg, 2) }} / {{ num(m.replicas_max, 0) }}</td>
<td>{% for o, n in m.deployment_outcomes.items() %}{{ n }} {{ o }}{% if not loop.last %}, {% endif %}{% else %}–{% endfor %}</td>
<td>{{ m.scale_events|length }} ({{ m.scale_ups }} up, {{ m.scale_downs }} down)</td>
<td>{{ num(m.cost, 2) }}</td><td>{{ num(m.cost_per_1000_predictions, 4) }}</td></tr>{% endfor %}
</table>{% else %}<p class="empty-section">No models.</p>{% endif %}
<h3>Deployments</h3>
{% set deps = [] %}{% for m in d.models %}{% for x in m.deployments %}{% set _ = deps.append((m.name, x)) %}{% endfor %}{% endfor %}
{% if deps %}<table><tr><th>model</th><th>version</th><th>outcome</th><th>started</th><th>ended</th><th>by</th><th>reason</th></tr>
{% for name, x in deps %}<tr><td>{{ name }}</td><td>{{ x.version }}</td><td>{{ x.outcome }}</td><td>{{ x.started_at or "–" }}</td>
<td>{{ x.ended_at or "–" }}</td><td>{{ x.triggered_by or "–" }}</td><td>{{ x.reason or "" }}</td></tr>{% endfor %}
</table>{% else %}<p class="empty-section">No deployments recorded in this interval.</p>{% endif %}
<h3>Scale events</h3>
{% set scales = [] %}{% for m in d.models %}{% for x in m.scale_events %}{% set _ = scales.append((m.name, x)) %}{% endfor %}{% endfor %}
{% if scales %}<table><tr><th>model</th><th>at</th><th>from</th><th>to</th><th>trigger</th><th>dry run</th><th>outcome</th><th>reason</th></tr>
{% for name, x in scales %}<tr><td>{{ name }}</td><td>{{ x.at }}</td><td>{{ x.from_replicas }}</td><td>{{ x.to_replicas }}</td>
<td>{{ x.trigger or "–" }}</td><td>{{ "yes" if x.dry_run else "no" }}</td><td>{{ x.outcome or "–" }}</td>
<td>{{ x.reason or "" }}</td></tr>{% endfor %}
</table>{% else %}<p class="empty-section">No scale events recorded in this interval.</p>{% endif %}
<h2>GPUs</h2>
{% if d.gpus %}<table><tr><th>host:gpu</th><th>name</th><th>sweeps</th><th>down</th><th>util avg %</th><th>p95 %</th><th>max %</th>
<th>memory peak %</th><th>memory peak GiB</th><th>temp max °C</th><th>throttled</th><th>power avg W</th><th>energy Wh</th></tr>
{% for g in d.gpus %}<tr><td>{{ g.host }}:{{ g.gpu_id }}</td><td>{{ g.name or "–" }}</td><td>{{ g.samples }}</td><td>{{ g.down_sweeps }}</td>
<td>{{ num(g.utilization_avg) }}</td><td>{{ num(g.utilization_p95) }}</td><td>{{ num(g.utilization_max) }}</td>
<td>{{ num(share(g.memory_peak_bytes, g.memory_total_bytes)) }}</td><td>{{ num(gib(g.memory_peak_bytes), 2) }}</td><td>{{ num(g.temperature_max_celsius, 0) }}</td><td>{{ dur(g.throttle_seconds) }}</td>
<td>{{ num(g.power_avg_watts) }}</td><td>{{ num(g.energy_wh, 0) }}</td></tr>{% endfor %}
</table>{% else %}<p class="empty-section">No GPU samples in this interval.</p>{% endif %}
<h2>Hosts</h2>
{% if d.hosts %}<table><tr><th>host</th><th>sweeps</th><th>CPU avg %</th><th>CPU p95 %</th><th>memory peak %</th><th>memory peak GiB</th></tr>
{% for h in d.hosts %}<tr><td>{{ h.host }}</td><td>{{ h.samples }}</td><td>{{ num(h.cpu_avg_percent) }}</td><td>{{ num(h.cpu_p95_percent) }}</td>
<td>{{ num(h.memory_peak_percent) }}</td><td>{{ num(gib(h.memory_peak_bytes), 2) }}</td></tr>{% endfor %}
</table>{% else %}<p class="empty-section">No host samples in this interval.</p>{% endif %}
<h2>Alerts</h2>
{% if d.alerts %}<table><tr><th>alert</th><th>fired</th><th>time firing (sum over label sets)</th><th>time with any firing</th><th>top label sets</th></tr>
{% for a in d.alerts %}<tr><td>{{ a.alert }}</td><td>{{ a.fired }}</td><td>{{ dur(a.firing_seconds) }}</td><td>{{ dur(a.any_firing_seconds) }}</td>
<td>{% for s in a.top_label_sets %}{{ labels(s.labels) }} ({{ s.fired }}×, {{ dur(s.firing_seconds) }}){% if not loop.last %}<br>{% endif %}{% endfor %}</td></tr>{% endfor %}
</table>{% else %}<p class="empty-section">No alert was pending or firing in this interval.</p>{% endif %}
<h2>Cost</h2>
<table><tr><th></th><th>hours</th><th>price / h</th><th>cost ({{ d.cost.currency }})</th></tr>
<tr><td>GPU ({{ d.cost.gpu_hours_source }})</td><td>{{ num(d.cost.gpu_hours, 2) }}</td><td>{{ d.cost.gpu_hour_price }}</td><td>{{ num(d.cost.gpu_cost, 2) }}</td></tr>
<tr><td>CPU</td><td>{{ num(d.cost.cpu_hours, 2) }}</td><td>{{ d.cost.cpu_hour_price }}</td><td>{{ num(d.cost.cpu_cost, 2) }}</td></tr>
<tr><th>total</th><td></td><td></td><th>{{ num(d.cost.total, 2) }}</th></tr></table>
<p id="gpu-hours">GPU-hours charged: at each sweep, the larger of the GPUs allocated to serving pods
({{ num(d.cost.gpu_hours_allocated, 2) }} GPU-hours over the interval) and the GPUs the GPU table above saw
({{ num(d.cost.gpu_hours_metered, 2) }} GPU-hours): a GPU costs while it is there, allocated or not.</p>
<p>{{ num(d.cost.requests, 0) }} predictions;
cost per 1,000 predictions: {{ num(d.cost.cost_per_1000_predictions, 4) }} {{ d.cost.currency }}.</p>
</body></html>
"""


def _num(v: Any, digits: int = 1) -> str:
    if v is None:
        return "–"
    return f"{v:,.{digits}f}"


def _pct(v: Any, digits: int = 2) -> str:
    return "–" if v is None else f"{v * 100:.{digits}f}%"


def _dur(seconds: Any) -> str:
    if not seconds:
        return "0m"
    minutes = round(seconds / 60)
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m"


def render_html(report: Report, *, run_id: str | None = None) -> bytes:
    """The report page; ``run_id`` (the run that wrote it) is printed next to its data interval."""
    import jinja2

    data = report.to_dict()
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    template = env.from_string(_TEMPLATE)
    html = template.render(
        d=data,
        charts=[(title, fn(data)) for title, fn in CHARTS],
        num=_num,
        pct=_pct,
        dur=_dur,
        gib=lambda v: None if v is None else v / 2**30,
        share=lambda v, total: None if v is None or not total else 100.0 * v / total,
        run_id=run_id,
        labels=lambda d: ", ".join(f'{k}="{v}"' for k, v in d.items()) or "(no labels)",
    )
    return html.encode()


def render_all(report: Report, *, run_id: str | None = None) -> dict[str, bytes]:
    """File name -> content, in the order they should be published (JSON last: it is the commit).

    ``run_id`` goes into the HTML only: the JSON stays identical for identical data.
    """
    return {
        CSV_NAME: render_csv(report),
        HTML_NAME: render_html(report, run_id=run_id),
        JSON_NAME: render_json(report),
    }
