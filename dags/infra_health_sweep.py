"""
### Infrastructure health sweep

Every five minutes (`mlinfra.settings.SWEEP_SCHEDULE`): read every sensor of the fleet, keep the samples, export them.

* **collect_gpu** (NVML), **collect_host** (psutil), **collect_kubernetes** (pods and
  deployments of the fleet's namespaces, kube-state-metrics names) and
  **collect_serving** (TF Serving model status and its own Prometheus metrics) run in
  parallel. A collector that fails reports `mlinfra_collector_up{collector=...} 0`;
  it never hides the others.
* **write_sweep** stores all samples in one transaction at the run's logical time
  (re-running a run replaces its sweep), pushes them to the Pushgateway when the
  connection `prometheus_pushgateway` exists, and applies the store's retention. A
  Pushgateway outage is logged and kept in the summary (`export_error`): rules and
  scaling still run. A retry from any failure point rewrites the same sweep.
* **evaluate_rules** evaluates `include/alert_rules/*.yaml` (Prometheus rule files) at
  the run's logical time on the fleet's engine (`rules.engine`: local over the store,
  or Prometheus): recording rules write back to the store, alert states
  (pending/firing/resolved) persist in the store, a bad rule file is logged with its
  location while the others still run. Alerts go to Alertmanager when the connection
  `alertmanager_default` exists (an outage is logged and returned as `post_error`,
  never a failed task); the firing ones go to XCom for the scaling step.
* **plan_scaling** decides every model's replica count at the logical time from its
  scaling policy (`scaling` in the fleet file): the metric target on the fleet's
  engine, the firing alerts labelled `mlinfra_scale: up|down` that name the model
  (`model` or `deployment` label), the stabilization windows and the cooldown. A
  Deployment that an HPA or KEDA ScaledObject owns is skipped. Every decision, "no
  change" and "skipped" included, is kept with its reason in
  `mlinfra_scale_recommendations` (XCom `decisions`: one line per model).
* **scale** is mapped: one task per Deployment that must change (named
  `namespace/deployment`). It patches the Deployment's `scale` subresource, records
  the event in `mlinfra_scale_events`, and waits deferred until the new replicas are
  available (a policy's `dry_run` records without patching).

Kubernetes and TF Serving are used only for fleet entries whose Airflow connections
exist; the others are listed as *skipped* in the summary (XCom of `write_sweep`).
Fleet: `include/fleet.yaml`. Run one sweep from the CLI:
`airflow dags test infra_health_sweep`.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import dag, get_current_context, task

from mlinfra.operators.scale import ScaleDeploymentOperator
from mlinfra.settings import SWEEP_RUN_TIMEOUT, SWEEP_SCHEDULE, scale_poll_interval, sweep_scale_timeout
from mlinfra.sweep import COLLECTORS

# How long a scale task waits (deferred) for the new replicas, and how often it looks:
# within the run's timeout, so the next sweep is not held up (a longer setting is cut).
SCALE_TIMEOUT = sweep_scale_timeout()
SCALE_POLL_INTERVAL = scale_poll_interval()


def _sweep_time(context: Any) -> datetime:
    # Manual runs may have no logical date in Airflow 3; they run "as of" run_after.
    return context.get("logical_date") or context["dag_run"].run_after


@dag(
    dag_id="infra_health_sweep",
    schedule=SWEEP_SCHEDULE,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(seconds=SWEEP_RUN_TIMEOUT),
    doc_md=__doc__,
    tags=["mlinfra", "monitoring"],
    default_args={
        "owner": "ml-platform",
        "retries": 2,
        "retry_delay": timedelta(seconds=20),
        "execution_timeout": timedelta(minutes=3),
    },
)
def infra_health_sweep() -> None:
    @task
    def collect(collector: str) -> dict[str, Any]:
        from mlinfra.config import load_fleet
        from mlinfra.store import MetricsStore
        from mlinfra.sweep import collect_and_stage

        context = get_current_context()
        return collect_and_stage(
            collector,
            fleet=load_fleet(),
            store=MetricsStore.from_connection(),
            run_id=context["run_id"],
            ts=_sweep_time(context),
        )

    # all_done: a collector task that died still lets the others' samples be written.
    @task(trigger_rule="all_done")
    def write_sweep(summaries: list[dict[str, Any] | None]) -> dict[str, Any]:
        from mlinfra.config import load_fleet
        from mlinfra.store import MetricsStore
        from mlinfra.sweep import write_sweep as write

        context = get_current_context()
        return write(
            store=MetricsStore.from_connection(),
            run_id=context["run_id"],
            ts=_sweep_time(context),
            summaries=summaries,
            fleet=load_fleet(),
        )

    @task
    def evaluate_rules(_sweep: dict[str, Any]) -> dict[str, Any]:
        from mlinfra.config import load_fleet
        from mlinfra.rules.evaluate import evaluate_rules_for_sweep
        from mlinfra.store import MetricsStore

        context = get_current_context()
        ti = context["ti"]
        return evaluate_rules_for_sweep(
            store=MetricsStore.from_connection(),
            fleet=load_fleet(),
            at=_sweep_time(context).timestamp(),
            run_id=context["run_id"],
            generator_url=getattr(ti, "log_url", "") or "",
        )

    @task
    def plan_scaling(rules: dict[str, Any]) -> list[dict[str, Any]]:
        from mlinfra.config import load_fleet
        from mlinfra.scaling.plan import plan_scaling as plan
        from mlinfra.store import MetricsStore

        context = get_current_context()
        planned = plan(
            fleet=load_fleet(),
            store=MetricsStore.from_connection(),
            at=_sweep_time(context).timestamp(),
            run_id=context["run_id"],
            alerts=rules.get("firing") or [],
        )
        # One line per model (no change and skipped too), for people reading XCom.
        context["ti"].xcom_push(key="decisions", value=planned["decisions"])
        if planned["unmatched_alerts"]:
            context["ti"].xcom_push(key="unmatched_alerts", value=planned["unmatched_alerts"])
        scale: list[dict[str, Any]] = planned["scale"]
        return scale

    summaries = [
        collect.override(task_id=f"collect_{name}", task_display_name=f"collect {name}")(name)
        for name in COLLECTORS
    ]
    planned = plan_scaling(evaluate_rules(write_sweep(summaries)))
    ScaleDeploymentOperator.partial(
        task_id="scale",
        map_index_template="{{ task.namespace }}/{{ task.deployment }}",
        timeout=SCALE_TIMEOUT,
        poll_interval=SCALE_POLL_INTERVAL,
        # A scale is decided for this sweep only: the next sweep decides again.
        retries=2,
        execution_timeout=timedelta(minutes=2),
    ).expand_kwargs(planned)


infra_health_sweep()
