"""What the "ML Fleet" page shows, read from the metrics store: one plain dict, also served as JSON.

(A store with sweeps and deploys is needed: ``tests/ui/test_fleet.py`` runs this.)

    >>> view = read_fleet_view(MetricsStore.from_connection(), load_fleet(), hours=6)  # doctest: +SKIP
    >>> [(m["name"], m["deployed_version"], m["replicas"]["available"]) for m in view["models"]]  # doctest: +SKIP
    [('half-plus-two', 2, 1), ('resnet50-classifier', None, 2)]

Sections and where they come from:

* ``models``: the fleet file, the latest sweep (``kube_deployment_*`` and the
  serving collector's ``mlinfra_serving_*`` samples), ``mlinfra_deployments``
  (last deploy and its smoke result), the firing alerts whose labels name the model,
  and its ``canary`` panel (:mod:`mlinfra.ui.canary_panel`: the latest canary run from
  ``mlinfra_canary_runs`` / ``mlinfra_canary_measurements``, None when there is none);
* ``gpus``: ``ml_gpu_*`` series over the last ``hours`` (one entry per host and GPU);
* ``alerts``: ``mlinfra_alerts`` rows that are firing or pending;
* ``deployments``, ``scale_events``, ``reports``: the newest rows of
  ``mlinfra_deployments``, ``mlinfra_scale_events``, ``mlinfra_reports``.

Every table is read through the queries of the module that writes it
(:class:`~mlinfra.deploy.records.DeploymentRecords`,
:class:`~mlinfra.scaling.records.ScaleRecords`,
:class:`~mlinfra.rules.state.StoreAlertStates`, :mod:`mlinfra.reports.records`,
:class:`~mlinfra.deploy.canary.records.CanaryRecords`);
the store's migrations create them all, so a feature that has written nothing yet
is an empty section.
"""

from __future__ import annotations

import logging
import math
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from mlinfra.deploy.canary.records import CanaryRecords
from mlinfra.deploy.records import DeploymentRecord, DeploymentRecords
from mlinfra.reports.records import report_record_of_day, report_records
from mlinfra.rules.state import StoreAlertStates
from mlinfra.samples import Sample
from mlinfra.scaling.records import ScaleEvent, ScaleRecords
from mlinfra.store import LabelMatcher
from mlinfra.ui.canary_panel import canary_panels

if TYPE_CHECKING:
    from mlinfra.config import Fleet, Model
    from mlinfra.store import MetricsStore

log = logging.getLogger(__name__)

DEFAULT_HOURS = 6.0
# Sparklines never need more points than they have pixels.
MAX_POINTS = 120
# "Current" values: the newest sample of each series within this window before the latest sweep
# (a collector skipped in the latest sweep still shows its last reading, marked by its age).
CURRENT_WINDOW_S = 15 * 60
RECENT_ROWS = 20
# What a model's row shows from the sweep (replicas, serving up, versions AVAILABLE).
CURRENT_METRICS = (
    "kube_deployment_spec_replicas",
    "kube_deployment_status_replicas_available",
    "kube_deployment_status_replicas_ready",
    "mlinfra_serving_up",
    "mlinfra_serving_model_version_available",
)

GPU_METRICS = {
    "utilization": "ml_gpu_utilization_percent",
    "memory_used": "ml_gpu_memory_used_bytes",
    "memory_total": "ml_gpu_memory_total_bytes",
    "temperature": "ml_gpu_temperature_celsius",
}


def read_fleet_view(
    store: MetricsStore,
    fleet: Fleet,
    *,
    hours: float = DEFAULT_HOURS,
    now: float | None = None,
) -> dict[str, Any]:
    """Everything the fleet page shows, as JSON-ready data (times are epoch seconds).

    ``now`` defaults to the wall clock; the charts end at the latest sweep when the
    store has nothing newer (a store filled by a backfill still shows its data).
    """
    now = time.time() if now is None else now
    sweep = _latest_sweep(store)
    alerts = _alerts(store)
    deployments = _deployments(DeploymentRecords(store).history(limit=RECENT_ROWS))
    scale_events = _scale_events(ScaleRecords(store).scale_events(newest_first=True, limit=RECENT_ROWS))
    reports = _reports(store)
    end = now
    if sweep and now - sweep["ts"] > hours * 3600:
        end = sweep["ts"]  # only old data (a backfill, a stopped scheduler): show it, not an empty window
    current = SampleIndex(_current_samples(store, sweep["ts"] if sweep else None))
    firing = [a for a in alerts if a["state"] == "firing"]
    snapshot_ts = sweep["ts"] if sweep else None
    models = [_model_view(m, current, deployments, firing, scale_events, snapshot_ts) for m in fleet.models]
    panels = canary_panels(CanaryRecords(store), fleet.models, now=now)
    for model, view in zip(fleet.models, models, strict=True):
        view["canary"] = panels[model.name]
    return {
        "generated_at": now,
        "window": {"start": end - hours * 3600, "end": end, "hours": hours},
        "sweep": None if sweep is None else {**sweep, "age_seconds": max(0.0, now - sweep["ts"])},
        "summary": {
            "models": len(models),
            "healthy": sum(1 for m in models if m["health"] == "healthy"),
            "firing": len(firing),
            "pending": sum(1 for a in alerts if a["state"] == "pending"),
        },
        "models": models,
        "gpus": _gpu_views(store, end - hours * 3600, end),
        "alerts": alerts,
        "deployments": deployments,
        "scale_events": scale_events,
        "reports": reports,
    }


# ---------------------------------------------------------------------- store reads


def _latest_sweep(store: MetricsStore) -> dict[str, Any] | None:
    sweep = store.latest_sweep()
    if sweep is None:
        return None
    return {"ts": sweep.ts, "run_id": sweep.run_id, "samples": sweep.samples, "summary": sweep.summary}


def _alerts(store: MetricsStore) -> list[dict[str, Any]]:
    keys = (
        "alert", "state", "labels", "annotations", "value", "active_at", "fired_at", "eval_ts", "run_id",
        "group", "file",
    )  # fmt: skip
    out = [{k: r[k] for k in keys} for r in StoreAlertStates(store).current(states=("firing", "pending"))]
    severity_rank = {"critical": 0, "page": 0, "warning": 1, "info": 2}
    out.sort(
        key=lambda a: (
            a["state"] != "firing",
            severity_rank.get(str(a["labels"].get("severity", "")).lower(), 3),
            a["alert"],
        )
    )
    return out


def _deployments(records: Sequence[DeploymentRecord]) -> list[dict[str, Any]]:
    out = []
    for r in records:
        started = r.started_at.timestamp()
        ended = r.ended_at.timestamp() if r.ended_at is not None else None
        out.append(
            {
                "run_id": r.run_id,
                "model": r.model,
                "version": r.version,
                "image": r.image,
                "namespace": r.namespace,
                "deployment": r.deployment,
                "replicas": r.replicas,
                "triggered_by": r.triggered_by,
                "started_at": started,
                "ended_at": ended,
                "duration_s": (ended - started) if ended is not None else None,
                "outcome": r.outcome or "running",
                "reason": r.reason,
                "smoke": _smoke_summary(r.smoke),
                "dag_id": "model_deploy",
            }
        )
    return out


def _smoke_summary(smoke: Any) -> dict[str, Any] | None:
    if not isinstance(smoke, Mapping):
        return None
    protocols = smoke.get("protocols") or {}
    # A p99 over fewer requests than it needs is only the slowest one: not shown as a p99.
    p99s = [
        float(p["p99_ms"])
        for p in protocols.values()
        if isinstance(p, Mapping)
        and p.get("p99_ms")
        and (p.get("latency") or {}).get("p99") != "not enough samples"
    ]
    return {
        "passed": smoke.get("passed"),
        "skipped": smoke.get("skipped"),
        "version": smoke.get("version"),
        "requests": sum(int(p.get("requests") or 0) for p in protocols.values() if isinstance(p, Mapping)),
        "p99_ms": max(p99s) if p99s else None,
        "slo_p99_ms": smoke.get("slo_p99_ms"),
        "problems": list(smoke.get("problems") or [])[:3],
        "not_judged": list(smoke.get("not_judged") or [])[:2],
    }


def _scale_events(events: Sequence[ScaleEvent]) -> list[dict[str, Any]]:
    return [
        {
            "ts": e.ts,
            "model": e.model,
            "namespace": e.namespace,
            "deployment": e.deployment,
            "from_replicas": e.from_replicas,
            "to_replicas": e.to_replicas,
            "reason": e.reason,
            "trigger": e.trigger,
            "run_id": e.run_id,
            "dry_run": e.dry_run,
            "outcome": e.outcome,
            "message": e.message,
            "decision": e.decision,
            "dag_id": _dag_of_scale_run(e.run_id),
        }
        for e in events
    ]


def _dag_of_scale_run(run_id: str | None) -> str:
    # Scale events come from the sweep (alert/metric triggers) or from the manual
    # model_scale DAG; the sweep's runs are the scheduled ones.
    return "infra_health_sweep" if run_id and run_id.startswith("scheduled__") else "model_scale"


def _reports(store: MetricsStore) -> list[dict[str, Any]]:
    return [
        {
            "interval_start": r["interval_start"],
            "interval_end": r["interval_end"],
            "day": datetime.fromtimestamp(r["interval_start"], UTC).strftime("%Y-%m-%d"),
            "path": r["path"],
            "status": r["status"],
            "summary": r["summary"],
            "run_id": r["run_id"],
            "dag_id": "metrics_report",
        }
        for r in report_records(store, newest_first=True, limit=RECENT_ROWS)
    ]


def _current_samples(store: MetricsStore, latest: float | None) -> list[Sample]:
    """The newest sample of every series within :data:`CURRENT_WINDOW_S` before ``latest``.

    A series whose newest sample is a staleness marker (a deleted deployment) is not current.
    """
    if latest is None:
        return []
    return store.current_samples(CURRENT_METRICS, latest - CURRENT_WINDOW_S, latest)


def latest_sweep_samples(store: MetricsStore) -> tuple[float | None, list[Sample]]:
    """The latest sweep's time and samples (what ``/mlinfra/metrics`` exposes, without timestamps)."""
    sweep = store.latest_sweep()
    if sweep is None:
        return None, []
    return sweep.ts, [Sample(s.name, s.labels, s.value) for s in store.sweep_samples(sweep.ts)]


# ---------------------------------------------------------------------- models


class SampleIndex:
    """The sweep's current samples, indexed by name and by the values of the labels looked up.

    A fleet page looks up ~5 figures per model; scanning every current sample for each
    made a 500-model page cost models x samples. A lookup here costs what it returns
    (an index on the first label alone still scanned a namespace's 50 models per lookup).
    """

    def __init__(self, samples: Iterable[Sample]):
        self.samples = list(samples)
        self._by_name: dict[str, list[Sample]] = {}
        for s in self.samples:
            self._by_name.setdefault(s.name, []).append(s)
        # (name, label names) -> their values -> samples, built on the first lookup of that kind.
        self._by_labels: dict[tuple[str, tuple[str, ...]], dict[tuple[str | None, ...], list[Sample]]] = {}

    def __iter__(self) -> Iterator[Sample]:
        return iter(self.samples)

    def __len__(self) -> int:
        return len(self.samples)

    def matching(self, name: str, labels: Mapping[str, str]) -> list[Sample]:
        if not labels:
            return list(self._by_name.get(name, ()))
        keys = tuple(sorted(labels))
        table = self._by_labels.get((name, keys))
        if table is None:
            table = self._by_labels[(name, keys)] = {}
            for s in self._by_name.get(name, ()):
                table.setdefault(tuple(s.labels.get(k) for k in keys), []).append(s)
        return list(table.get(tuple(labels[k] for k in keys), ()))


def _matching(samples: Iterable[Sample], name: str, **labels: str) -> list[Sample]:
    if isinstance(samples, SampleIndex):
        return samples.matching(name, labels)
    return [s for s in samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]


def _one(samples: Iterable[Sample], name: str, **labels: str) -> float | None:
    found = _matching(samples, name, **labels)
    return found[0].value if found else None


def _alert_names_model(alert: Mapping[str, Any], model: Model) -> bool:
    labels = alert["labels"]
    k = model.kubernetes
    return (
        labels.get("model") in (model.name, model.serving.model_name)
        or labels.get("model_name") == model.serving.model_name
        or (labels.get("deployment") == k.deployment and labels.get("namespace", k.namespace) == k.namespace)
    )


def _model_view(
    model: Model,
    current: Iterable[Sample],
    deployments: Sequence[Mapping[str, Any]],
    firing: Sequence[Mapping[str, Any]],
    scale_events: Sequence[Mapping[str, Any]] = (),
    snapshot_ts: float | None = None,
) -> dict[str, Any]:
    """One model as of the latest sweep (``snapshot_ts``), plus what was recorded after it.

    Every figure (replicas, serving versions, health) is the sweep's, so the row agrees
    with itself and carries the sweep's age. Deploys and scale actions recorded after
    that sweep are listed in ``since_snapshot``, and a deploy that succeeded after it
    sets the version shown (the version the deploy checked AVAILABLE), marked as such.
    """
    k = model.kubernetes
    where = {"namespace": k.namespace, "deployment": k.deployment}
    desired = _one(current, "kube_deployment_spec_replicas", **where)
    available = _one(current, "kube_deployment_status_replicas_available", **where)
    serving_up = _one(current, "mlinfra_serving_up", model=model.name)
    versions = _available_versions(current, model)
    mine = [d for d in deployments if d["model"] == model.name]
    last = mine[0] if mine else None
    promoted = next((d for d in mine if d["outcome"] == "succeeded"), None)
    smoked = next((d for d in mine if d["smoke"] is not None), None)
    alerts = [a for a in firing if _alert_names_model(a, model)]

    since = _since_snapshot(model, mine, scale_events, snapshot_ts)
    deployed_version, version_source = _shown_version(versions, promoted, snapshot_ts)
    health, reasons = _health(
        desired,
        available,
        serving_up,
        alerts,
        serving_conn_id=model.serving.conn_id,
        partial_deploy=last is not None and last.get("outcome") == "partial",
    )
    return {
        "name": model.name,
        "namespace": k.namespace,
        "deployment": k.deployment,
        "kubernetes_conn_id": k.conn_id,
        "serving_conn_id": model.serving.conn_id,
        "serving_model": model.serving.model_name,
        "deployed_version": deployed_version,
        "version_source": version_source,
        "serving_versions": versions,
        "image": (promoted or {}).get("image"),
        "replicas": {
            "desired": None if desired is None else int(desired),
            "available": None if available is None else int(available),
            "min": model.scaling.min_replicas,
            "max": model.scaling.max_replicas,
        },
        "serving_up": None if serving_up is None else serving_up >= 1,
        "health": health,
        "health_reasons": reasons,
        "deploy_badge": None if last is None else {"outcome": last["outcome"], "version": last["version"]},
        "since_snapshot": since,
        "firing_alerts": [a["alert"] for a in alerts],
        "last_deploy": last,
        "last_smoke": None if smoked is None else {**(smoked["smoke"] or {}), "run_id": smoked["run_id"]},
        "slo": {"p99_latency_ms": model.slo.p99_latency_ms, "error_rate": model.slo.error_rate},
    }


def _available_versions(current: Iterable[Sample], model: Model) -> list[int]:
    """The versions TF Serving reported AVAILABLE for ``model`` in the sweep, oldest first."""
    return sorted(
        int(s.labels["version"])
        for s in _matching(current, "mlinfra_serving_model_version_available", model=model.name)
        if s.value >= 1 and s.labels.get("version", "").isdigit()
    )


def _after_snapshot(ts: float | None, snapshot_ts: float | None) -> bool:
    return ts is not None and (snapshot_ts is None or ts > snapshot_ts)


def _since_snapshot(
    model: Model,
    mine: Sequence[Mapping[str, Any]],
    scale_events: Sequence[Mapping[str, Any]],
    snapshot_ts: float | None,
) -> list[dict[str, Any]]:
    """Deploys (``mine``, newest first) and applied scale actions recorded after the sweep, oldest first."""
    since: list[dict[str, Any]] = []
    for d in reversed(mine):
        if _after_snapshot(d.get("ended_at") or d.get("started_at"), snapshot_ts):
            since.append(
                {
                    "ts": d.get("ended_at") or d.get("started_at"),
                    "what": f"deploy of v{d['version']}: {str(d['outcome']).replace('_', ' ')}",
                    "run_id": d.get("run_id"),
                    "dag_id": "model_deploy",
                }
            )
    for e in scale_events:
        if (
            e.get("model") == model.name
            and _after_snapshot(e.get("ts"), snapshot_ts)
            and not e.get("dry_run")
        ):
            since.append(
                {
                    "ts": e.get("ts"),
                    "what": f"scale {e.get('from_replicas')} -> {e.get('to_replicas')}: {e.get('outcome')}",
                    "run_id": e.get("run_id"),
                    "dag_id": e.get("dag_id"),
                }
            )
    since.sort(key=lambda x: x["ts"] or 0)
    return since


def _shown_version(
    versions: list[int], promoted: Mapping[str, Any] | None, snapshot_ts: float | None
) -> tuple[Any, str]:
    """(version, "sweep" | "deploy"): the sweep's newest, unless a deploy succeeded after the sweep
    (or the sweep saw none), whose checked-AVAILABLE version is shown instead."""
    if promoted is not None and (_after_snapshot(promoted.get("ended_at"), snapshot_ts) or not versions):
        return promoted["version"], "deploy"
    return (versions[-1] if versions else None), "sweep"


def _health(
    desired: float | None,
    available: float | None,
    serving_up: float | None,
    alerts: Sequence[Mapping[str, Any]],
    *,
    serving_conn_id: str = "",
    partial_deploy: bool = False,
) -> tuple[str, list[str]]:
    """Serving health: ``healthy`` | ``degraded`` | ``down`` | ``not monitored`` | ``unknown``, and why.

    It says whether the model serves now, from the sweep's replicas, TF Serving's
    answer and firing alerts. The last deploy's outcome is not part of it: a rollback
    that restored the previous version leaves a model that serves fine (the page shows
    the outcome as its own badge). A model whose serving nobody checks is "not
    monitored", never "healthy".
    """
    reasons: list[str] = []
    down = False
    if desired is not None and available is not None:
        if desired > 0 and available <= 0:
            down = True
            reasons.append(f"0 of {int(desired)} replicas available")
        elif available < desired:
            reasons.append(f"{int(available)} of {int(desired)} replicas available")
    if serving_up is not None and serving_up < 1:
        down = True
        reasons.append("TF Serving does not answer")
    reasons.extend(f"alert {a['alert']} firing" for a in alerts)
    if partial_deploy:
        # The apply or its rollback stopped part-way: the cluster holds a mix of two specs.
        reasons.append("CLUSTER PARTIALLY CHANGED by the last deploy; its rollback failed (see the run)")
    if down:
        return "down", reasons
    if reasons:
        return "degraded", reasons
    if desired is None and serving_up is None:
        return "unknown", ["no Kubernetes or serving samples in the latest sweep"]
    if serving_up is None:
        where = f" (Airflow connection {serving_conn_id!r})" if serving_conn_id else ""
        return "not monitored", [f"TF Serving is not checked{where}: replicas alone do not show it serves"]
    return "healthy", []


# ---------------------------------------------------------------------- GPUs


def _downsample(points: Sequence[tuple[float, float]], limit: int = MAX_POINTS) -> list[list[float]]:
    finite = [(t, v) for t, v in points if not math.isnan(v)]
    if len(finite) <= limit:
        return [[t, v] for t, v in finite]
    step = len(finite) / limit
    picked = [finite[int(i * step)] for i in range(limit - 1)] + [finite[-1]]
    return [[t, v] for t, v in picked]


def _gpu_views(store: MetricsStore, start: float, end: float) -> list[dict[str, Any]]:
    series: dict[tuple[str, str], dict[str, Any]] = defaultdict(dict)
    names: dict[tuple[str, str], str] = {}
    for key, metric in GPU_METRICS.items():
        for s, points in store.query_range(metric, (LabelMatcher("gpu_id", "!=", ""),), start, end):
            gpu = (s.labels.get("host", ""), s.labels["gpu_id"])
            series[gpu][key] = points
            if s.labels.get("name"):
                names[gpu] = s.labels["name"]
    out = []
    for (host, gpu_id), by_key in sorted(series.items(), key=lambda kv: (kv[0][0], _int_or_str(kv[0][1]))):
        used = by_key.get("memory_used", [])
        total = dict(by_key.get("memory_total", []))
        mem_pct = [(t, 100.0 * v / total[t]) for t, v in used if total.get(t)]
        view: dict[str, Any] = {"host": host, "gpu_id": gpu_id, "name": names.get((host, gpu_id), "")}
        for key, points in (
            ("utilization", by_key.get("utilization", [])),
            ("memory", mem_pct),
            ("temperature", by_key.get("temperature", [])),
        ):
            pts = _downsample(points)
            values = [v for _, v in pts]
            view[key] = {
                "latest": values[-1] if values else None,
                "max": max(values) if values else None,
                "points": pts,
            }
        latest_total = by_key.get("memory_total", [])
        view["memory"]["total_bytes"] = latest_total[-1][1] if latest_total else None
        view["memory"]["used_bytes"] = used[-1][1] if used else None
        out.append(view)
    return out


def _int_or_str(value: str) -> tuple[int, str]:
    return (int(value), "") if value.isdigit() else (1 << 30, value)


# ---------------------------------------------------------------------- audit of one Kubernetes deployment


def read_audit(store: MetricsStore, fleet: Fleet, namespace: str, deployment: str) -> dict[str, Any]:
    """Every recorded deploy and scale event of one Kubernetes Deployment, newest first.

    A deploy row without namespace/deployment (older rows) is matched through the
    fleet file's model of that Deployment.
    """
    models = {
        m.name
        for m in fleet.models
        if (m.kubernetes.namespace, m.kubernetes.deployment) == (namespace, deployment)
    }
    deployments = DeploymentRecords(store).of_deployment(namespace, deployment, models=models, limit=200)
    events = ScaleRecords(store).scale_events(
        namespace=namespace, deployment=deployment, models=sorted(models), newest_first=True, limit=200
    )
    return {
        "namespace": namespace,
        "deployment": deployment,
        "models": sorted(models),
        "deployments": _deployments(deployments),
        "scale_events": _scale_events(events),
    }


def find_report(store: MetricsStore, day: str) -> dict[str, Any] | None:
    """The ``mlinfra_reports`` row of the UTC day ``YYYY-MM-DD`` (the newest, if re-run), or None."""
    try:
        start = datetime.strptime(day, "%Y-%m-%d").replace(tzinfo=UTC).timestamp()
    except ValueError:
        return None
    row = report_record_of_day(store, start)
    return None if row is None else {"path": row["path"], "status": row["status"], "run_id": row["run_id"]}
