"""One interval of the store -> a typed :class:`Report` (no Airflow, no files, no matplotlib).

    >>> from mlinfra.config import load_fleet
    >>> from mlinfra.store import MetricsStore
    >>> store = MetricsStore.from_url("sqlite:///:memory:")
    >>> report = build_report(store, load_fleet(), 1_700_006_400, 1_700_092_800)
    >>> report.status, report.completeness.sweeps_expected, report.completeness.sweeps_found
    ('empty', 288, 0)
    >>> sorted(report.to_dict())[:4]
    ['alerts', 'completeness', 'cost', 'gpus']

The report covers exactly ``[start, end)``: gauges are read from the sweeps in the
interval; counters (requests, latency buckets) add up their increases between
consecutive sweeps whose later sweep is in the interval, the earlier one being at
most one sweep step before ``start`` (so the increase from 23:55 to 00:00 belongs
to the day that starts at 00:00 and no request is counted on two days).

Each sweep stands for one ``step`` (5 minutes, the sweep's schedule): hours of
throttling, energy, GPU- and CPU-hours are sums over the sweeps found. Sweeps that
are missing are listed as gaps in :class:`Completeness` and are *not* filled in:
a day with gaps reports what was seen and says what was not.

The sections are computed by :mod:`mlinfra.reports.model_figures` and
:mod:`mlinfra.reports.gpu_figures` (hosts, alerts and cost here); the
:class:`~mlinfra.reports.report.Report` they fill is :mod:`mlinfra.reports.report`'s.
"""

from __future__ import annotations

import json
import logging
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from mlinfra.reports.figures import finite, maximum, mean, missing_ranges, percentile
from mlinfra.reports.gpu_figures import gpu_figures
from mlinfra.reports.model_figures import model_figures
from mlinfra.reports.report import (
    AlertFigures,
    Completeness,
    CostFigures,
    Gap,
    HostFigures,
    ModelFigures,
    Report,
    finite_or_none,
    iso,
)
from mlinfra.reports.series_reads import read_series
from mlinfra.rules.state import AlertHistory, AlertTransition, StoreAlertStates
from mlinfra.settings import SWEEP_INTERVAL
from mlinfra.store import LabelMatcher, MetricsStore

if TYPE_CHECKING:
    from mlinfra.config import Fleet

log = logging.getLogger(__name__)

DEFAULT_STEP = SWEEP_INTERVAL  # one point per sweep
TOP_LABEL_SETS = 5


# ---------------------------------------------------------------------- building


def build_report(
    store: MetricsStore,
    fleet: Fleet,
    start: float | datetime,
    end: float | datetime,
    *,
    step: float = DEFAULT_STEP,
) -> Report:
    """Aggregate the store over ``[start, end)`` into a :class:`Report`.

    Raises :class:`~mlinfra.exceptions.StoreError` (naming the store's
    connection) when the store cannot be read.
    """
    t0 = start.timestamp() if isinstance(start, datetime) else float(start)
    t1 = end.timestamp() if isinstance(end, datetime) else float(end)
    if t1 <= t0:
        raise ValueError(f"report interval is empty or reversed: start={iso(t0)} end={iso(t1)}")

    sweeps = store.sweeps(t0, t1)
    completeness = _completeness(t0, t1, step, [s.ts for s in sweeps])
    models, model_series, allocated_by_t = model_figures(store, fleet, t0, t1, step)
    gpus, gpu_series, seen_by_t = gpu_figures(store, t0, t1, step)
    hosts = _hosts(store, t0, t1)
    alerts, alert_periods = _alerts(StoreAlertStates(store).transition_history(t0, t1), t0, t1)
    cost = _cost(fleet, models, allocated_by_t, seen_by_t, step)

    if completeness.sweeps_found == 0:
        status = "empty"
        message = (
            f"no sweeps were recorded between {iso(t0)} and {iso(t1)}: there are no metrics for this interval"
        )
    elif completeness.gaps:
        status = "partial"
        missing = completeness.sweeps_expected - completeness.sweeps_found
        message = (
            f"{completeness.sweeps_found} of {completeness.sweeps_expected} sweeps found; "
            f"{missing} missing in {len(completeness.gaps)} gap(s): figures cover the sweeps found only"
        )
    else:
        status = "complete"
        message = f"all {completeness.sweeps_expected} sweeps found"

    return Report(
        start=t0,
        end=t1,
        status=status,
        message=message,
        completeness=completeness,
        models=models,
        gpus=gpus,
        hosts=hosts,
        alerts=alerts,
        cost=cost,
        timeseries={"gpus": gpu_series, **model_series, "alerts_firing": alert_periods},
    )


def _completeness(start: float, end: float, step: float, found: Sequence[float]) -> Completeness:
    slots = math.ceil((end - start) / step - 1e-9)
    gaps = [Gap(a, b, n) for a, b, n in missing_ranges(start, end, step, found)]
    present = slots - sum(g.missing_sweeps for g in gaps)
    return Completeness(
        step_seconds=step,
        sweeps_expected=slots,
        sweeps_found=len(found),
        coverage=present / slots if slots else 0.0,
        gaps=gaps,
    )


def _hosts(store: MetricsStore, start: float, end: float) -> list[HostFigures]:
    cpu: dict[str, list[float]] = defaultdict(list)
    mem_pct: dict[str, list[float]] = defaultdict(list)
    mem_bytes: dict[str, list[float]] = defaultdict(list)
    for labels, pts in read_series(
        store, "ml_cpu_usage_percent", start, end, [LabelMatcher("core", "=", "all")]
    ):
        cpu[labels.get("host", "")].extend(v for _, v in pts)
    for labels, pts in read_series(store, "ml_memory_usage_percent", start, end):
        mem_pct[labels.get("host", "")].extend(v for _, v in pts)
    for labels, pts in read_series(
        store, "ml_memory_usage_bytes", start, end, [LabelMatcher("type", "=", "used")]
    ):
        mem_bytes[labels.get("host", "")].extend(v for _, v in pts)
    return [
        HostFigures(
            host=host,
            samples=len(finite(cpu.get(host, []))),
            cpu_avg_percent=finite_or_none(mean(cpu.get(host, []))),
            cpu_p95_percent=finite_or_none(percentile(cpu.get(host, []), 0.95)),
            memory_peak_percent=finite_or_none(maximum(mem_pct.get(host, []))),
            memory_peak_bytes=finite_or_none(maximum(mem_bytes.get(host, []))),
        )
        for host in sorted(set(cpu) | set(mem_pct) | set(mem_bytes))
    ]


def _alerts(
    history: AlertHistory, start: float, end: float
) -> tuple[list[AlertFigures], dict[str, list[list[float]]]]:
    by_fp: dict[str, list[AlertTransition]] = defaultdict(list)
    first: dict[str, AlertTransition] = {}
    for a in history.before:
        first[a.fingerprint] = a
    for a in history.during:
        by_fp[a.fingerprint].append(a)
    periods: dict[str, list[tuple[float, float]]] = {}
    fired: dict[str, int] = {}
    meta: dict[str, AlertTransition] = {}
    for fp in sorted(set(first) | set(by_fp)):
        since = start if fp in first and first[fp].to_state == "firing" else None
        spans: list[tuple[float, float]] = []
        n = 0
        for a in by_fp.get(fp, []):
            if a.to_state == "firing":
                if since is None:
                    since = a.ts
                if a.from_state != "firing":
                    n += 1
            elif since is not None:
                spans.append((since, a.ts))
                since = None
        if since is not None:
            spans.append((since, end))
        periods[fp], fired[fp] = spans, n
        meta[fp] = (by_fp.get(fp) or [first[fp]])[-1]

    by_alert: dict[str, list[str]] = defaultdict(list)
    for fp, a in meta.items():
        if periods[fp] or fired[fp] or fp in by_fp:
            by_alert[a.alert].append(fp)
    out = []
    unions: dict[str, list[list[float]]] = {}
    for alert in sorted(by_alert):
        fps = by_alert[alert]
        union = _union(s for fp in fps for s in periods[fp])
        label_sets: list[dict[str, Any]] = sorted(
            (
                {
                    "labels": {k: v for k, v in sorted(meta[fp].labels.items()) if k != "alertname"},
                    "fired": fired[fp],
                    "firing_seconds": math.fsum(b - a for a, b in periods[fp]),
                }
                for fp in fps
            ),
            key=_label_set_order,
        )
        out.append(
            AlertFigures(
                alert=alert,
                fired=sum(fired[fp] for fp in fps),
                firing_seconds=math.fsum(b - a for fp in fps for a, b in periods[fp]),
                any_firing_seconds=math.fsum(b - a for a, b in union),
                top_label_sets=label_sets[:TOP_LABEL_SETS],
            )
        )
        unions[alert] = [[a, b] for a, b in union]
    return out, unions


def _label_set_order(d: dict[str, Any]) -> tuple[float, int, str]:
    return (-d["firing_seconds"], -d["fired"], json.dumps(d["labels"], sort_keys=True))


def _union(spans: Iterable[tuple[float, float]]) -> list[tuple[float, float]]:
    merged: list[tuple[float, float]] = []
    for a, b in sorted(spans):
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            merged.append((a, b))
    return merged


def _cost(
    fleet: Fleet,
    models: list[ModelFigures],
    allocated_by_t: dict[float, float],
    seen_by_t: dict[float, float],
    step: float,
) -> CostFigures:
    """Cost from what ran. At each sweep the GPUs charged are the larger of those allocated
    to serving pods and those the GPU collector saw.

    A GPU costs while it is there, allocated or not, and pods may request GPUs on nodes
    no sweep reads; taking the larger per sweep keeps the cost consistent with the
    report's own GPU table (two GPUs seen all day are at least 48 GPU-hours) and adds
    up across intervals. Both totals are in the report, so idle capacity shows.
    """
    allocated = math.fsum(allocated_by_t.values()) * step / 3600.0
    metered = math.fsum(seen_by_t.values()) * step / 3600.0
    gpu_hours = (
        math.fsum(
            max(allocated_by_t.get(t, 0.0), seen_by_t.get(t, 0.0))
            for t in set(allocated_by_t) | set(seen_by_t)
        )
        * step
        / 3600.0
    )
    source = "none" if gpu_hours == 0 else ("allocated" if allocated >= metered else "metered")
    cpu_hours = math.fsum(m.cpu_hours or 0.0 for m in models)
    gpu_cost, cpu_cost = gpu_hours * fleet.cost.gpu_hour, cpu_hours * fleet.cost.cpu_hour
    requests = math.fsum(m.requests for m in models)
    total = gpu_cost + cpu_cost
    return CostFigures(
        currency=fleet.cost.currency,
        gpu_hour_price=fleet.cost.gpu_hour,
        cpu_hour_price=fleet.cost.cpu_hour,
        gpu_hours=gpu_hours,
        cpu_hours=cpu_hours,
        gpu_hours_allocated=allocated,
        gpu_hours_metered=metered,
        gpu_hours_source=source,
        gpu_cost=gpu_cost,
        cpu_cost=cpu_cost,
        total=total,
        requests=requests,
        cost_per_1000_predictions=total / requests * 1000.0 if requests > 0 else None,
    )
