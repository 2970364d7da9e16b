"""Plan one sweep's scaling: gather each model's inputs, decide, keep every decision.

The body of the sweep's ``plan_scaling`` task, without Airflow::

    plan = plan_scaling(fleet=load_fleet(), store=store, at=logical_time, run_id=run_id,
                        alerts=evaluate_rules_output["firing"])
    plan["scale"]       # one dict of ScaleDeploymentOperator arguments per Deployment to change
    plan["decisions"]   # every model: action, from -> to, reason (no change and skipped too)

Inputs per model: the current ``spec.replicas`` and any HPA / ScaledObject owner
(three list calls per namespace, whatever the number of models), the target
expression evaluated at ``at`` with the fleet's engine (all expressions together:
the local engine reads each metric once), the firing alerts that name the model
(:func:`~mlinfra.scaling.decision.alert_matches_model`), the recommendation history
of the stabilization window and the last scale action (the store). Every decision
is written to ``mlinfra_scale_recommendations`` in one transaction, and those older than
the store's retention are deleted.
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from mlinfra.scaling.decision import ScaleDecision, alert_matches_model, decide, skipped
from mlinfra.scaling.records import ScaleRecords
from mlinfra.timestamps import rfc3339

if TYPE_CHECKING:
    from mlinfra.config import Fleet, Model
    from mlinfra.promql.interface import QueryEngine
    from mlinfra.store import MetricsStore

log = logging.getLogger(__name__)


class ClusterReader(Protocol):
    """What planning reads from a cluster (:class:`~mlinfra.scaling.kube.ScaleClient` has both)."""

    def replicas(self, namespace: str) -> dict[str, int]: ...

    def owners(self, namespace: str) -> dict[str, str]: ...


def cluster_from_connection(conn_id: str) -> ClusterReader | None:
    """A :class:`ScaleClient` for Airflow connection ``conn_id``; None when it does not exist."""
    from mlinfra.connections import connection_exists

    if not connection_exists(conn_id):
        return None
    from mlinfra.kube_import import kubernetes_hook_class
    from mlinfra.scaling.kube import ScaleClient

    return ScaleClient(kubernetes_hook_class()(conn_id=conn_id).api_client)


def metric_value(result: Any) -> tuple[float | None, str | None]:
    """One number from a query result (scalar or one-element vector), or (None, why not)."""
    from mlinfra.promql.interface import QueryError

    if isinstance(result, QueryError):
        return None, f"query failed: {result}"
    if isinstance(result, int | float):
        return float(result), None
    vector = list(result)
    if not vector:
        return None, "no data (empty result)"
    if len(vector) > 1:
        return None, f"{len(vector)} series; the target expression must give one value (aggregate it)"
    value = float(vector[0].value)
    if not math.isfinite(value):
        return None, f"value is {value}"
    return value, None


def is_scale_alert(alert: Mapping[str, Any], label: str = "mlinfra_scale") -> bool:
    return (alert.get("labels") or {}).get(label) in ("up", "down")


def _operator_kwargs(d: ScaleDecision, model: Model) -> dict[str, Any]:
    return {
        "model": d.model,
        "namespace": d.namespace,
        "deployment": d.deployment,
        "replicas": d.to_replicas,
        "from_replicas": d.from_replicas,
        "reason": d.reason,
        "trigger": d.trigger or "metric",
        "record_only": d.dry_run,
        "decided_at": d.at,
        "kubernetes_conn_id": model.kubernetes.conn_id,
        "decision": d.to_dict(),
    }


def summary(d: ScaleDecision) -> dict[str, Any]:
    """A decision in one line's worth of fields (the plan's XCom)."""
    return {
        "model": d.model,
        "deployment": f"{d.namespace}/{d.deployment}",
        "action": d.action,
        "from": d.from_replicas,
        "to": d.to_replicas,
        "trigger": d.trigger,
        "reason": d.reason,
        "dry_run": d.dry_run,
    }


def plan_scaling(
    *,
    fleet: Fleet,
    store: MetricsStore,
    at: float,
    run_id: str | None = None,
    alerts: Sequence[Mapping[str, Any]] = (),
    engine: QueryEngine | None = None,
    cluster: Callable[[str], ClusterReader | None] = cluster_from_connection,
    records: ScaleRecords | None = None,
    now: Callable[[], float] = time.time,
) -> dict[str, Any]:
    """Decide every model of the fleet at ``at``; see the module docstring.

    ``cluster(conn_id)`` gives the reader of a Kubernetes connection (None: not
    configured, its models are skipped). Recommendations older than the store's
    retention (from ``now()``, as the sweep's samples) are deleted. Returns ``{"at",
    "decisions", "scale", "unmatched_alerts"}``, JSON-safe for XCom.
    """
    records = records or ScaleRecords(store)
    decisions: dict[str, ScaleDecision] = {}
    state = _read_cluster(fleet, at, cluster, decisions)
    live = [m for m in fleet.models if m.name in state]
    values = _metric_values(fleet, store, live, at, engine)
    decisions.update(_decide_live(live, state, values, alerts, records, at))

    ordered = [decisions[m.name] for m in fleet.models]
    records.save_decisions(ordered, run_id=run_id)
    pruned = records.prune_recommendations(now() - fleet.store.retention)
    if pruned:
        log.info("retention: deleted %d scale recommendations", pruned)
    unmatched = _unmatched_scale_alerts(alerts, fleet)
    log_decisions(ordered)
    for a in unmatched:
        log.warning(
            "scale alert %s names no fleet model (no matching 'model' or 'deployment' label): ignored %s",
            a["alertname"],
            a["labels"],
        )
    by_name = {m.name: m for m in fleet.models}
    return {
        "at": at,
        "decisions": [summary(d) for d in ordered],
        "scale": [_operator_kwargs(d, by_name[d.model]) for d in ordered if d.changes],
        "unmatched_alerts": unmatched,
    }


def log_decisions(decisions: Sequence[ScaleDecision], *, named: int = 5) -> None:
    """The task log's account of a sweep: a count, each scale, each reason for skipping.

    One line per model at fleet size (500 lines every five minutes) buried the few that
    matter. A scale gets its own line; models skipped for the same reason share one (a
    missing connection skips every model of it); "no change" is only counted (each one
    is logged at DEBUG). Every decision stays whole in the ``decisions`` XCom and in
    ``mlinfra_scale_recommendations``.
    """
    counts = Counter(d.action for d in decisions)
    log.info(
        "scaling %d models: %d to scale, %d unchanged, %d skipped",
        len(decisions),
        counts["scale"],
        counts["none"],
        counts["skipped"],
    )
    skipped_for: dict[str, list[str]] = {}
    for d in decisions:
        if d.action == "scale":
            log.info("scaling %s: %s%s", d.model, d.reason, " (dry run: recorded only)" if d.dry_run else "")
        elif d.action == "skipped":
            skipped_for.setdefault(d.reason, []).append(d.model)
        else:
            log.debug("scaling %s: %s", d.model, d.reason)
    for reason, models in skipped_for.items():
        more = f" and {len(models) - named} more" if len(models) > named else ""
        log.info("scaling %s%s: %s", ", ".join(models[:named]), more, reason)


def _read_cluster(
    fleet: Fleet,
    at: float,
    cluster: Callable[[str], ClusterReader | None],
    decisions: dict[str, ScaleDecision],
) -> dict[str, tuple[int, str | None]]:
    """1. the cluster, one pass per (connection, namespace): model -> (current replicas, owner).

    A model whose Deployment cannot be read gets its ``skipped`` decision in ``decisions``.
    """
    state: dict[str, tuple[int, str | None]] = {}
    readers: dict[str, ClusterReader | None] = {}
    namespaces: dict[tuple[str, str], tuple[dict[str, int], dict[str, str]] | str] = {}
    for m in fleet.models:
        k = m.kubernetes
        if k.conn_id not in readers:
            readers[k.conn_id] = cluster(k.conn_id)
        reader = readers[k.conn_id]
        ns, dep = k.namespace, k.deployment
        if reader is None:
            decisions[m.name] = skipped(
                m.name, at, f"no Airflow connection {k.conn_id!r}", namespace=ns, deployment=dep
            )
            continue
        key = (k.conn_id, k.namespace)
        if key not in namespaces:
            try:
                namespaces[key] = (reader.replicas(k.namespace), reader.owners(k.namespace))
            except Exception as e:  # one namespace failing must not stop the others' scaling
                log.warning("scaling: cannot read namespace %s on %s: %s", k.namespace, k.conn_id, e)
                namespaces[key] = f"cannot read namespace {k.namespace} on {k.conn_id}: {e}"
        seen = namespaces[key]
        if isinstance(seen, str):
            decisions[m.name] = skipped(m.name, at, seen, namespace=ns, deployment=dep)
            continue
        replicas, owners = seen
        if k.deployment not in replicas:
            decisions[m.name] = skipped(
                m.name, at, f"deployment {k.namespace}/{k.deployment} not found", namespace=ns, deployment=dep
            )
            continue
        state[m.name] = (replicas[k.deployment], owners.get(k.deployment))
    return state


def _metric_values(
    fleet: Fleet, store: MetricsStore, live: list[Model], at: float, engine: QueryEngine | None
) -> dict[str, tuple[float | None, str | None]]:
    """2. metrics: every target expression at once -> (value, why there is none)."""
    from mlinfra.rules.engines import engine_for_fleet, evaluate_many

    exprs = sorted({m.scaling.target.expr for m in live if m.scaling.target is not None})
    values: dict[str, tuple[float | None, str | None]] = {}
    if exprs:
        engine = engine or engine_for_fleet(fleet, store)
        for expr, result in zip(exprs, evaluate_many(engine, exprs, at), strict=True):
            values[expr] = metric_value(result)
    return values


def _decide_live(
    live: list[Model],
    state: dict[str, tuple[int, str | None]],
    values: dict[str, tuple[float | None, str | None]],
    alerts: Sequence[Mapping[str, Any]],
    records: ScaleRecords,
    at: float,
) -> dict[str, ScaleDecision]:
    """3. history, cooldown and manual holds (a few reads for the whole fleet), then decide each model."""
    names = [m.name for m in live]
    window = max((m.scaling.history_window for m in live), default=0.0)
    history = records.history(names, since=at - window, until=at) if names else {}
    last = records.last_actions(names, before=at) if names else {}
    holds = records.active_holds(names, at=at) if names else {}

    decisions: dict[str, ScaleDecision] = {}
    for m in live:
        current, owner = state[m.name]
        if m.name in holds:
            h = holds[m.name]
            decisions[m.name] = skipped(
                m.name,
                at,
                f"held at {h['replicas']} replicas by a manual scale until {rfc3339(h['until'])} "
                f"(run {h['run_id']}: {h['reason']})",
                namespace=m.kubernetes.namespace,
                deployment=m.kubernetes.deployment,
                current=current,
            )
            continue
        metric, error = values.get(m.scaling.target.expr, (None, None)) if m.scaling.target else (None, None)
        decisions[m.name] = decide(
            m.scaling,
            model=m.name,
            at=at,
            current=current,
            metric=metric,
            metric_error=error,
            alerts=[a for a in alerts if alert_matches_model(a.get("labels") or {}, m)],
            history=history.get(m.name, []),
            last_action_at=last.get(m.name),
            owner=owner,
            namespace=m.kubernetes.namespace,
            deployment=m.kubernetes.deployment,
        )
    return decisions


def _unmatched_scale_alerts(alerts: Sequence[Mapping[str, Any]], fleet: Fleet) -> list[dict[str, Any]]:
    """Firing scale alerts that name no model of the fleet (logged, and kept in the plan)."""
    return [
        {"alertname": a.get("alertname"), "labels": dict(a.get("labels") or {})}
        for a in alerts
        if is_scale_alert(a) and not any(alert_matches_model(a.get("labels") or {}, m) for m in fleet.models)
    ]
