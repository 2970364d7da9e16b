"""The report's models section: requests, latency, availability, replicas, cost, deployments
and scale events of each model over ``[start, end)``.

Models are the fleet's plus any the store saw requests, deployments or scale events
for (a model removed from the fleet still shows, marked ``in_fleet=False``, without
resources or cost).
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mlinfra.deploy.records import DeploymentRecord, DeploymentRecords
from mlinfra.promql.gonum import parse_le
from mlinfra.reports.figures import cpu_quantity, histogram_quantile, maximum, mean, minimum
from mlinfra.reports.report import ModelFigures, finite_or_none, iso
from mlinfra.reports.series_reads import read_increases, read_series
from mlinfra.scaling.records import ScaleEvent, ScaleRecords
from mlinfra.store import MetricsStore

if TYPE_CHECKING:
    from mlinfra.config import Fleet, Model

# Scale event outcomes (mlinfra.scaling.records) for which the replica count did change;
# events without an outcome (older rows) count as applied unless they are dry runs.
APPLIED_SCALE_OUTCOMES = frozenset({"patched", "available", "timeout"})

REQUEST_COUNT = ":tensorflow:serving:request_count"
REQUEST_LATENCY_BUCKET = ":tensorflow:serving:request_latency_bucket"
QUANTILES = (("p50_ms", 0.5), ("p95_ms", 0.95), ("p99_ms", 0.99))

# model -> sweep time -> value
PerSweep = dict[str, dict[float, float]]


@dataclass(frozen=True, slots=True)
class _Observed:
    """What the store holds about the models in the interval, read once."""

    hours: int
    requests: dict[str, float]
    errors: dict[str, float]
    day_buckets: dict[str, dict[float, float]]  # le -> count, over the whole interval
    hour_buckets: dict[str, list[dict[float, float]]]  # per hour: le -> count
    spec: PerSweep  # desired replicas
    available: PerSweep
    pods: PerSweep
    deployments: list[DeploymentRecord]
    scale_events: list[ScaleEvent]


def model_figures(
    store: MetricsStore, fleet: Fleet, start: float, end: float, step: float
) -> tuple[list[ModelFigures], dict[str, Any], dict[float, float]]:
    """Per-model figures, their time series, and the GPUs allocated to serving pods per sweep."""
    seen = _observe(store, fleet, start, end, step)
    fleet_models = {m.name: m for m in fleet.models}
    names = sorted(
        set(fleet_models)
        | set(seen.requests)
        | set(seen.day_buckets)
        | {d.model for d in seen.deployments}
        | {e.model for e in seen.scale_events}
    )
    out: list[ModelFigures] = []
    allocated_by_t: dict[float, float] = defaultdict(float)
    replicas_series: dict[str, Any] = {}
    latency_series: dict[str, Any] = {}
    for name in names:
        out.append(_figures_of(name, fleet_models.get(name), fleet, seen, step, allocated_by_t))
        if seen.spec[name] or seen.available[name]:
            replicas_series[name] = _replicas_series(seen.spec[name], seen.available[name])
        if name in seen.hour_buckets:
            latency_series[name] = _hourly_latency(seen.hour_buckets[name], start, seen.hours)
    return out, {"replicas": replicas_series, "latency_hourly": latency_series}, dict(allocated_by_t)


def _observe(store: MetricsStore, fleet: Fleet, start: float, end: float, step: float) -> _Observed:
    hours = math.ceil((end - start) / 3600 - 1e-9)
    requests, errors = _request_totals(store, start, end, step)
    day_buckets, hour_buckets = _latency_buckets(store, start, end, step, hours)
    spec, available, pods = _replica_counts(store, fleet, start, end)
    return _Observed(
        hours=hours,
        requests=requests,
        errors=errors,
        day_buckets=day_buckets,
        hour_buckets=hour_buckets,
        spec=spec,
        available=available,
        pods=pods,
        deployments=DeploymentRecords(store).started_between(start, end),
        scale_events=ScaleRecords(store).scale_events(since=start, until=end),
    )


def _request_totals(
    store: MetricsStore, start: float, end: float, step: float
) -> tuple[dict[str, float], dict[str, float]]:
    """Requests and failed requests (status other than OK) per model."""
    requests: dict[str, float] = defaultdict(float)
    errors: dict[str, float] = defaultdict(float)
    for labels, deltas in read_increases(store, REQUEST_COUNT, start, end, step):
        model = labels.get("model")
        if model is None:
            continue
        total = math.fsum(d for _, d in deltas)
        requests[model] += total
        if labels.get("status", "OK") != "OK":
            errors[model] += total
    return requests, errors


def _latency_buckets(
    store: MetricsStore, start: float, end: float, step: float, hours: int
) -> tuple[dict[str, dict[float, float]], dict[str, list[dict[float, float]]]]:
    """Latency histogram bucket increases per model: over the interval, and per hour."""
    day_buckets: dict[str, dict[float, float]] = defaultdict(lambda: defaultdict(float))
    hour_buckets: dict[str, list[dict[float, float]]] = defaultdict(
        lambda: [defaultdict(float) for _ in range(hours)]
    )
    for labels, deltas in read_increases(store, REQUEST_LATENCY_BUCKET, start, end, step):
        model, le = labels.get("model"), parse_le(labels.get("le"))
        if model is None or le is None:
            continue
        day_buckets[model][le] += math.fsum(d for _, d in deltas)
        for t, d in deltas:
            hour_buckets[model][min(_hour_index(t, start), hours - 1)][le] += d
    return day_buckets, hour_buckets


def _hour_index(t: float, start: float) -> int:
    # A delta stamped at 01:00 counts what happened 00:55-01:00: hour 0.
    return max(0, math.ceil((t - start) / 3600 - 1e-9) - 1)


def _replica_counts(
    store: MetricsStore, fleet: Fleet, start: float, end: float
) -> tuple[PerSweep, PerSweep, PerSweep]:
    """Desired, available and existing replicas of each fleet model's deployment, per sweep."""
    by_deployment = {(m.kubernetes.namespace, m.kubernetes.deployment): m.name for m in fleet.models}
    spec: PerSweep = defaultdict(dict)
    available: PerSweep = defaultdict(dict)
    pods: PerSweep = defaultdict(dict)
    for metric, target in (
        ("kube_deployment_spec_replicas", spec),
        ("kube_deployment_status_replicas_available", available),
        ("kube_deployment_status_replicas", pods),
    ):
        for labels, pts in read_series(store, metric, start, end):
            model = by_deployment.get((labels.get("namespace", ""), labels.get("deployment", "")))
            if model is None:
                continue
            for t, v in pts:
                if math.isfinite(v):
                    target[model][t] = v
    return spec, available, pods


def _figures_of(
    name: str,
    fm: Model | None,
    fleet: Fleet,
    seen: _Observed,
    step: float,
    allocated_by_t: dict[float, float],
) -> ModelFigures:
    """One model's figures; adds the GPUs its pods were allocated to ``allocated_by_t``."""
    buckets = seen.day_buckets.get(name, {})
    lat = {q: histogram_quantile(q, buckets) / 1000.0 for q in (0.5, 0.95, 0.99)}
    spec, available = seen.spec[name], seen.available[name]
    both = sorted(set(spec) & set(available))
    ok = sum(1 for t in both if available[t] >= spec[t])
    desired = [spec[t] for t in sorted(spec)]
    gpu_hours, cpu_hours, cost = _resource_use(fm, fleet, seen.pods[name] or spec, step, allocated_by_t)
    n_req = seen.requests.get(name, 0.0)
    n_err = seen.errors.get(name, 0.0)
    deps = [d for d in seen.deployments if d.model == name]
    scales = [e for e in seen.scale_events if e.model == name]
    outcomes: dict[str, int] = defaultdict(int)
    for dep in deps:
        outcomes[dep.outcome or "unknown"] += 1
    return ModelFigures(
        name=name,
        in_fleet=fm is not None,
        requests=n_req,
        errors=n_err,
        error_rate=n_err / n_req if n_req > 0 else None,
        latency_p50_ms=finite_or_none(lat[0.5]),
        latency_p95_ms=finite_or_none(lat[0.95]),
        latency_p99_ms=finite_or_none(lat[0.99]),
        slo_p99_latency_ms=fm.slo.p99_latency_ms if fm is not None else None,
        availability=ok / len(both) if both else None,
        availability_sweeps=len(both),
        replicas_min=finite_or_none(minimum(desired)),
        replicas_avg=finite_or_none(mean(desired)),
        replicas_max=finite_or_none(maximum(desired)),
        gpu_hours=gpu_hours,
        cpu_hours=cpu_hours,
        cost=cost,
        cost_per_1000_predictions=cost / n_req * 1000.0 if cost is not None and n_req > 0 else None,
        deployments=[_deployment_row(d) for d in deps],
        deployment_outcomes=dict(sorted(outcomes.items())),
        scale_events=[_scale_event_row(e) for e in scales],
        scale_ups=sum(1 for e in scales if _applied(e) and (e.to_replicas or 0) > (e.from_replicas or 0)),
        scale_downs=sum(1 for e in scales if _applied(e) and (e.to_replicas or 0) < (e.from_replicas or 0)),
    )


def _resource_use(
    fm: Model | None,
    fleet: Fleet,
    pod_counts: dict[float, float],
    step: float,
    allocated_by_t: dict[float, float],
) -> tuple[float | None, float | None, float | None]:
    """GPU-hours, CPU-hours and cost of a fleet model's pods (all ``None`` for one not in the fleet)."""
    if fm is None:
        return None, None, None
    for t, n in pod_counts.items():
        allocated_by_t[t] += n * fm.resources.gpus
    pod_hours = math.fsum(pod_counts.values()) * step / 3600.0
    gpu_hours = pod_hours * fm.resources.gpus
    cpu_hours = pod_hours * cpu_quantity(fm.resources.cpu)
    return gpu_hours, cpu_hours, gpu_hours * fleet.cost.gpu_hour + cpu_hours * fleet.cost.cpu_hour


def _deployment_row(d: DeploymentRecord) -> dict[str, Any]:
    return {
        "version": "" if d.version is None else str(d.version),
        "outcome": d.outcome or "unknown",
        "started_at": iso(d.started_at.timestamp()),
        "ended_at": iso(d.ended_at.timestamp()) if d.ended_at is not None else None,
        "triggered_by": d.triggered_by,
        "reason": d.reason,
    }


def _scale_event_row(e: ScaleEvent) -> dict[str, Any]:
    return {
        "at": iso(e.ts),
        "from_replicas": e.from_replicas,
        "to_replicas": e.to_replicas,
        "trigger": e.trigger,
        "reason": e.reason,
        "dry_run": e.dry_run,
        "outcome": e.outcome,
    }


def _applied(event: ScaleEvent) -> bool:
    return not event.dry_run and (event.outcome is None or event.outcome in APPLIED_SCALE_OUTCOMES)


def _replicas_series(spec: dict[float, float], available: dict[float, float]) -> dict[str, Any]:
    ts = sorted(set(spec) | set(available))
    return {"t": ts, "desired": [spec.get(t) for t in ts], "available": [available.get(t) for t in ts]}


def _hourly_latency(per_hour: list[dict[float, float]], start: float, hours: int) -> dict[str, Any]:
    return {
        "t": [start + h * 3600 for h in range(hours)],
        **{key: [histogram_quantile(q, dict(b)) / 1000.0 for b in per_hour] for key, q in QUANTILES},
    }
