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
"""

from __future__ import annotations

import json
import logging
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from mlinfra.deploy.records import DeploymentRecords
from mlinfra.promql.gonum import parse_le
from mlinfra.reports.figures import (
    Point,
    counter_deltas,
    cpu_quantity,
    finite,
    histogram_quantile,
    maximum,
    mean,
    minimum,
    missing_ranges,
    percentile,
)
from mlinfra.rules.state import AlertHistory, AlertTransition, StoreAlertStates
from mlinfra.samples import canonical_labels
from mlinfra.scaling.records import ScaleEvent, ScaleRecords
from mlinfra.settings import SWEEP_INTERVAL
from mlinfra.store import LabelMatcher, MetricsStore

if TYPE_CHECKING:
    from mlinfra.config import Fleet

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
DEFAULT_STEP = SWEEP_INTERVAL  # one point per sweep
TOP_LABEL_SETS = 5
# Clock event reasons that mean "slowed down" (NVML also reports idle, application
# clock settings, sync boost and display clocks, which are not throttling).
THROTTLE_REASONS = frozenset(
    {"sw_power_cap", "hw_slowdown", "sw_thermal_slowdown", "hw_thermal_slowdown", "hw_power_brake"}
)

# Scale event outcomes (mlinfra.scaling.records) for which the replica count did change;
# events without an outcome (older rows) count as applied unless they are dry runs.
APPLIED_SCALE_OUTCOMES = frozenset({"patched", "available", "timeout"})

REQUEST_COUNT = ":tensorflow:serving:request_count"
REQUEST_LATENCY_BUCKET = ":tensorflow:serving:request_latency_bucket"


# ---------------------------------------------------------------------- the report


@dataclass(frozen=True, slots=True)
class ModelFigures:
    name: str
    in_fleet: bool
    requests: float
    errors: float
    error_rate: float | None
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    latency_p99_ms: float | None
    slo_p99_latency_ms: float | None
    availability: float | None
    availability_sweeps: int
    replicas_min: float | None
    replicas_avg: float | None
    replicas_max: float | None
    gpu_hours: float | None
    cpu_hours: float | None
    cost: float | None
    cost_per_1000_predictions: float | None
    deployments: list[dict[str, Any]] = field(default_factory=list)
    deployment_outcomes: dict[str, int] = field(default_factory=dict)
    scale_events: list[dict[str, Any]] = field(default_factory=list)
    scale_ups: int = 0
    scale_downs: int = 0


@dataclass(frozen=True, slots=True)
class GPUFigures:
    host: str
    gpu_id: str
    name: str | None
    uuid: str | None
    samples: int
    down_sweeps: int
    utilization_avg: float | None
    utilization_p95: float | None
    utilization_max: float | None
    memory_peak_bytes: float | None
    memory_total_bytes: float | None
    temperature_max_celsius: float | None
    throttle_seconds: float
    clock_event_seconds: dict[str, float]
    power_avg_watts: float | None
    energy_wh: float | None


@dataclass(frozen=True, slots=True)
class HostFigures:
    host: str
    samples: int
    cpu_avg_percent: float | None
    cpu_p95_percent: float | None
    memory_peak_percent: float | None
    memory_peak_bytes: float | None


@dataclass(frozen=True, slots=True)
class AlertFigures:
    alert: str
    fired: int
    firing_seconds: float
    any_firing_seconds: float
    top_label_sets: list[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class CostFigures:
    currency: str
    gpu_hour_price: float
    cpu_hour_price: float
    gpu_hours: float  # charged: per sweep, the larger of GPUs allocated and GPUs metered
    cpu_hours: float
    gpu_hours_allocated: float  # GPUs requested by the serving pods (pods x resources.gpus)
    gpu_hours_metered: float  # GPUs the GPU collector saw up (the report's GPU table)
    gpu_hours_source: str  # "allocated" | "metered" | "none"
    gpu_cost: float
    cpu_cost: float
    total: float
    requests: float
    cost_per_1000_predictions: float | None


@dataclass(frozen=True, slots=True)
class Gap:
    start: float
    end: float
    missing_sweeps: int


@dataclass(frozen=True, slots=True)
class Completeness:
    step_seconds: float
    sweeps_expected: int
    sweeps_found: int
    coverage: float
    gaps: list[Gap]


@dataclass(frozen=True, slots=True)
class Report:
    """Every figure of one interval; :meth:`to_dict` is what ``report.json`` holds."""

    start: float
    end: float
    status: str  # complete | partial | empty
    message: str
    completeness: Completeness
    models: list[ModelFigures]
    gpus: list[GPUFigures]
    hosts: list[HostFigures]
    alerts: list[AlertFigures]
    cost: CostFigures
    timeseries: dict[str, Any]

    @property
    def folder_name(self) -> str:
        """``2026-11-20`` for a day that starts at midnight UTC, else ``<start>--<end>``."""
        s, e = datetime.fromtimestamp(self.start, UTC), datetime.fromtimestamp(self.end, UTC)
        if s.time() == datetime.min.time() and self.end - self.start == 86400:
            return s.strftime("%Y-%m-%d")
        return f"{s:%Y-%m-%dT%H%M%SZ}--{e:%Y-%m-%dT%H%M%SZ}"

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-safe data: times as ISO 8601 UTC, NaN/inf as ``None``, floats to 10 digits."""
        data = asdict(self)
        data["schema_version"] = SCHEMA_VERSION
        data["interval"] = {
            "start": iso(self.start),
            "end": iso(self.end),
            "seconds": self.end - self.start,
        }
        del data["start"], data["end"]
        for gap in data["completeness"]["gaps"]:
            gap["start"], gap["end"] = iso(gap["start"]), iso(gap["end"])
        return clean(data)

    def summary(self) -> dict[str, Any]:
        """The headline figures kept in the store's ``mlinfra_reports`` row."""
        return clean(
            {
                "status": self.status,
                "message": self.message,
                "sweeps_expected": self.completeness.sweeps_expected,
                "sweeps_found": self.completeness.sweeps_found,
                "gaps": len(self.completeness.gaps),
                "requests": self.cost.requests,
                "cost": self.cost.total,
                "currency": self.cost.currency,
                "cost_per_1000_predictions": self.cost.cost_per_1000_predictions,
                "alerts_fired": sum(a.fired for a in self.alerts),
                "deployments": sum(len(m.deployments) for m in self.models),
                "scale_events": sum(len(m.scale_events) for m in self.models),
            }
        )


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")


def clean(value: Any) -> Any:
    """Recursively: non-finite floats -> None, floats to 10 significant digits (stable JSON)."""
    if isinstance(value, float):
        return float(f"{value:.10g}") if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean(v) for v in value]
    return value


def _opt(v: float) -> float | None:
    return v if math.isfinite(v) else None


# ---------------------------------------------------------------------- reading the store


Labelled = tuple[dict[str, str], list[Point]]


def _read(
    store: MetricsStore,
    name: str,
    start: float,
    end: float,
    matchers: Iterable[LabelMatcher] = (),
) -> list[Labelled]:
    """Series of ``name`` with their points in ``[start, end)``, in a stable order (by labels)."""
    found = store.query_range(name, matchers, start, end - 0.001)
    return sorted(((s.labels, pts) for s, pts in found), key=lambda x: canonical_labels(x[0]))


def _counter_read(
    store: MetricsStore, name: str, start: float, end: float, step: float
) -> list[tuple[dict[str, str], list[Point]]]:
    """Per series, its increases stamped with the later sample, for later samples in ``[start, end)``."""
    out = []
    for labels, pts in _read(store, name, start - step, end):
        before = [p for p in pts if p[0] < start]
        window = [p for p in pts if p[0] >= start]
        out.append((labels, counter_deltas(window, baseline=before[-1] if before else None)))
    return out


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
    models, model_series, allocated_by_t = _models(store, fleet, t0, t1, step)
    gpus, gpu_series, seen_by_t = _gpus(store, t0, t1, step)
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


def _hour_index(t: float, start: float) -> int:
    # A delta stamped at 01:00 counts what happened 00:55-01:00: hour 0.
    return max(0, math.ceil((t - start) / 3600 - 1e-9) - 1)


def _models(
    store: MetricsStore, fleet: Fleet, start: float, end: float, step: float
) -> tuple[list[ModelFigures], dict[str, Any], dict[float, float]]:
    """Per-model figures, their time series, and the GPUs allocated to serving pods per sweep."""
    by_deployment = {(m.kubernetes.namespace, m.kubernetes.deployment): m.name for m in fleet.models}
    fleet_models = {m.name: m for m in fleet.models}

    requests: dict[str, float] = defaultdict(float)
    errors: dict[str, float] = defaultdict(float)
    for labels, deltas in _counter_read(store, REQUEST_COUNT, start, end, step):
        model = labels.get("model")
        if model is None:
            continue
        total = math.fsum(d for _, d in deltas)
        requests[model] += total
        if labels.get("status", "OK") != "OK":
            errors[model] += total

    hours = math.ceil((end - start) / 3600 - 1e-9)
    day_buckets: dict[str, dict[float, float]] = defaultdict(lambda: defaultdict(float))
    hour_buckets: dict[str, list[dict[float, float]]] = defaultdict(
        lambda: [defaultdict(float) for _ in range(hours)]
    )
    for labels, deltas in _counter_read(store, REQUEST_LATENCY_BUCKET, start, end, step):
        model, le = labels.get("model"), parse_le(labels.get("le"))
        if model is None or le is None:
            continue
        day_buckets[model][le] += math.fsum(d for _, d in deltas)
        for t, d in deltas:
            hour_buckets[model][min(_hour_index(t, start), hours - 1)][le] += d

    spec: dict[str, dict[float, float]] = defaultdict(dict)
    available: dict[str, dict[float, float]] = defaultdict(dict)
    pods: dict[str, dict[float, float]] = defaultdict(dict)
    for metric, target in (
        ("kube_deployment_spec_replicas", spec),
        ("kube_deployment_status_replicas_available", available),
        ("kube_deployment_status_replicas", pods),
    ):
        for labels, pts in _read(store, metric, start, end):
            model = by_deployment.get((labels.get("namespace", ""), labels.get("deployment", "")))
            if model is None:
                continue
            for t, v in pts:
                if math.isfinite(v):
                    target[model][t] = v

    deployments = DeploymentRecords(store).started_between(start, end)
    scale_events = ScaleRecords(store).scale_events(since=start, until=end)
    names = sorted(
        set(fleet_models)
        | set(requests)
        | set(day_buckets)
        | {d.model for d in deployments}
        | {e.model for e in scale_events}
    )

    out: list[ModelFigures] = []
    allocated_by_t: dict[float, float] = defaultdict(float)
    replicas_series: dict[str, Any] = {}
    latency_series: dict[str, Any] = {}
    for name in names:
        fm = fleet_models.get(name)
        buckets = day_buckets.get(name, {})
        lat = {q: histogram_quantile(q, buckets) / 1000.0 for q in (0.5, 0.95, 0.99)}
        both = sorted(set(spec[name]) & set(available[name]))
        ok = sum(1 for t in both if available[name][t] >= spec[name][t])
        desired = [spec[name][t] for t in sorted(spec[name])]
        pod_counts = pods[name] if pods[name] else spec[name]
        if fm is not None:
            for t, n in pod_counts.items():
                allocated_by_t[t] += n * fm.resources.gpus
            pod_hours = math.fsum(pod_counts.values()) * step / 3600.0
            gpu_hours: float | None = pod_hours * fm.resources.gpus
            cpu_hours: float | None = pod_hours * cpu_quantity(fm.resources.cpu)
            cost: float | None = (gpu_hours or 0.0) * fleet.cost.gpu_hour + (
                cpu_hours or 0.0
            ) * fleet.cost.cpu_hour
        else:
            gpu_hours = cpu_hours = cost = None
        n_req = requests.get(name, 0.0)
        deps = [d for d in deployments if d.model == name]
        scales = [e for e in scale_events if e.model == name]
        outcomes: dict[str, int] = defaultdict(int)
        for dep in deps:
            outcomes[dep.outcome or "unknown"] += 1
        out.append(
            ModelFigures(
                name=name,
                in_fleet=fm is not None,
                requests=n_req,
                errors=errors.get(name, 0.0),
                error_rate=errors.get(name, 0.0) / n_req if n_req > 0 else None,
                latency_p50_ms=_opt(lat[0.5]),
                latency_p95_ms=_opt(lat[0.95]),
                latency_p99_ms=_opt(lat[0.99]),
                slo_p99_latency_ms=fm.slo.p99_latency_ms if fm is not None else None,
                availability=ok / len(both) if both else None,
                availability_sweeps=len(both),
                replicas_min=_opt(minimum(desired)),
                replicas_avg=_opt(mean(desired)),
                replicas_max=_opt(maximum(desired)),
                gpu_hours=gpu_hours,
                cpu_hours=cpu_hours,
                cost=cost,
                cost_per_1000_predictions=cost / n_req * 1000.0 if cost is not None and n_req > 0 else None,
                deployments=[
                    {
                        "version": "" if d.version is None else str(d.version),
                        "outcome": d.outcome or "unknown",
                        "started_at": iso(d.started_at.timestamp()),
                        "ended_at": iso(d.ended_at.timestamp()) if d.ended_at is not None else None,
                        "triggered_by": d.triggered_by,
                        "reason": d.reason,
                    }
                    for d in deps
                ],
                deployment_outcomes=dict(sorted(outcomes.items())),
                scale_events=[
                    {
                        "at": iso(e.ts),
                        "from_replicas": e.from_replicas,
                        "to_replicas": e.to_replicas,
                        "trigger": e.trigger,
                        "reason": e.reason,
                        "dry_run": e.dry_run,
                        "outcome": e.outcome,
                    }
                    for e in scales
                ],
                scale_ups=sum(
                    1 for e in scales if _applied(e) and (e.to_replicas or 0) > (e.from_replicas or 0)
                ),
                scale_downs=sum(
                    1 for e in scales if _applied(e) and (e.to_replicas or 0) < (e.from_replicas or 0)
                ),
            )
        )
        if spec[name] or available[name]:
            ts = sorted(set(spec[name]) | set(available[name]))
            replicas_series[name] = {
                "t": ts,
                "desired": [spec[name].get(t) for t in ts],
                "available": [available[name].get(t) for t in ts],
            }
        if name in hour_buckets:
            per_hour = hour_buckets[name]
            latency_series[name] = {
                "t": [start + h * 3600 for h in range(hours)],
                **{
                    key: [histogram_quantile(q, dict(b)) / 1000.0 for b in per_hour]
                    for key, q in (("p50_ms", 0.5), ("p95_ms", 0.95), ("p99_ms", 0.99))
                },
            }
    return out, {"replicas": replicas_series, "latency_hourly": latency_series}, dict(allocated_by_t)


def _applied(event: ScaleEvent) -> bool:
    return not event.dry_run and (event.outcome is None or event.outcome in APPLIED_SCALE_OUTCOMES)


def _gpu_key(labels: dict[str, str]) -> tuple[str, str] | None:
    if "gpu_id" not in labels:
        return None
    return labels.get("host", ""), labels["gpu_id"]


def _gpus(
    store: MetricsStore, start: float, end: float, step: float
) -> tuple[list[GPUFigures], dict[str, Any], dict[float, float]]:
    """Per-GPU figures, their time series, and how many GPUs reported per sweep."""
    values: dict[str, dict[tuple[str, str], dict[float, float]]] = {}
    info: dict[tuple[str, str], dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for metric in (
        "ml_gpu_utilization_percent",
        "ml_gpu_memory_used_bytes",
        "ml_gpu_memory_total_bytes",
        "ml_gpu_temperature_celsius",
        "ml_gpu_power_usage_watts",
        "ml_gpu_up",
    ):
        per: dict[tuple[str, str], dict[float, float]] = defaultdict(dict)
        for labels, pts in _read(store, metric, start, end):
            key = _gpu_key(labels)
            if key is None:
                continue
            for k in ("name", "uuid"):
                if k in labels:
                    info[key][k].add(labels[k])
            for t, v in pts:
                per[key][t] = v
        values[metric] = per
    reasons: dict[tuple[str, str], dict[str, dict[float, float]]] = defaultdict(lambda: defaultdict(dict))
    for labels, pts in _read(store, "ml_gpu_clock_event_reason", start, end):
        key = _gpu_key(labels)
        if key is None or "reason" not in labels:
            continue
        for t, v in pts:
            reasons[key][labels["reason"]][t] = v

    keys = sorted(set().union(*(set(v) for v in values.values()), set(reasons)), key=_gpu_sort)
    out = []
    series: dict[str, Any] = {}
    seen_by_t: dict[float, float] = defaultdict(float)
    for key in keys:
        util = values["ml_gpu_utilization_percent"].get(key, {})
        for t, v in util.items():
            if math.isfinite(v):
                seen_by_t[t] += 1
        mem = values["ml_gpu_memory_used_bytes"].get(key, {})
        power = list(values["ml_gpu_power_usage_watts"].get(key, {}).values())
        by_reason = reasons.get(key, {})
        clock_seconds = {
            r: sum(1 for v in pts.values() if v == 1.0) * step for r, pts in sorted(by_reason.items())
        }
        throttled = {
            t for r, pts in by_reason.items() if r in THROTTLE_REASONS for t, v in pts.items() if v == 1.0
        }
        watts = finite(power)
        out.append(
            GPUFigures(
                host=key[0],
                gpu_id=key[1],
                name=",".join(sorted(info[key]["name"])) or None,
                uuid=",".join(sorted(info[key]["uuid"])) or None,
                samples=sum(1 for v in util.values() if math.isfinite(v)),
                down_sweeps=sum(1 for v in values["ml_gpu_up"].get(key, {}).values() if v == 0.0),
                utilization_avg=_opt(mean(list(util.values()))),
                utilization_p95=_opt(percentile(list(util.values()), 0.95)),
                utilization_max=_opt(maximum(list(util.values()))),
                memory_peak_bytes=_opt(maximum(list(mem.values()))),
                memory_total_bytes=_opt(
                    maximum(list(values["ml_gpu_memory_total_bytes"].get(key, {}).values()))
                ),
                temperature_max_celsius=_opt(
                    maximum(list(values["ml_gpu_temperature_celsius"].get(key, {}).values()))
                ),
                throttle_seconds=len(throttled) * step,
                clock_event_seconds=clock_seconds,
                power_avg_watts=_opt(mean(watts)),
                energy_wh=math.fsum(watts) * step / 3600.0 if watts else None,
            )
        )
        ts = sorted(set(util) | set(mem))
        series[f"{key[0]}:{key[1]}"] = {
            "t": ts,
            "utilization_percent": [util.get(t) for t in ts],
            "memory_used_bytes": [mem.get(t) for t in ts],
        }
    return out, series, dict(seen_by_t)


def _gpu_sort(key: tuple[str, str]) -> tuple[str, int, str]:
    host, gpu = key
    return (host, int(gpu) if gpu.isdigit() else 1 << 30, gpu)


def _hosts(store: MetricsStore, start: float, end: float) -> list[HostFigures]:
    cpu: dict[str, list[float]] = defaultdict(list)
    mem_pct: dict[str, list[float]] = defaultdict(list)
    mem_bytes: dict[str, list[float]] = defaultdict(list)
    for labels, pts in _read(store, "ml_cpu_usage_percent", start, end, [LabelMatcher("core", "=", "all")]):
        cpu[labels.get("host", "")].extend(v for _, v in pts)
    for labels, pts in _read(store, "ml_memory_usage_percent", start, end):
        mem_pct[labels.get("host", "")].extend(v for _, v in pts)
    for labels, pts in _read(store, "ml_memory_usage_bytes", start, end, [LabelMatcher("type", "=", "used")]):
        mem_bytes[labels.get("host", "")].extend(v for _, v in pts)
    return [
        HostFigures(
            host=host,
            samples=len(finite(cpu.get(host, []))),
            cpu_avg_percent=_opt(mean(cpu.get(host, []))),
            cpu_p95_percent=_opt(percentile(cpu.get(host, []), 0.95)),
            memory_peak_percent=_opt(maximum(mem_pct.get(host, []))),
            memory_peak_bytes=_opt(maximum(mem_bytes.get(host, []))),
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
