"""
### Infrastructure health sweep

Every five minutes: read every sensor of the fleet, keep the samples, export them.

* **collect_gpu** (NVML), **collect_host** (psutil), **collect_kubernetes** (pods and
  deployments of the fleet's namespaces, kube-state-metrics names) and
  **collect_serving** (TF Serving model status and its own Prometheus metrics) run in
  parallel. A collector that fails reports `mlinfra_collector_up{collector=...} 0`;
  it never hides the others.
* **write_sweep** stores all samples in one transaction at the run's logical time
  (re-running a run replaces its sweep), pushes them to the Pushgateway when the
  connection `prometheus_pushgateway` exists, and applies the store's retention.
* **evaluate_rules** evaluates `include/alert_rules/*.yaml` (Prometheus rule files) at
  the run's logical time on the fleet's engine (`rules.engine`: local over the store,
  or Prometheus): recording rules write back to the store, alert states
  (pending/firing/resolved) persist in the store, a bad rule file is logged with its
  location while the others still run. Alerts go to Alertmanager when the connection
  `alertmanager_default` exists; the firing ones go to XCom for the scaling step.

Kubernetes and TF Serving are used only for fleet entries whose Airflow connections
exist; the others are listed as *skipped* in the summary (XCom of `write_sweep`).
Fleet: `include/fleet.yaml`. Run one sweep from the CLI:
`airflow dags test infra_health_sweep`.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import dag, get_current_context, task

from mlinfra.sweep import COLLECTORS


def _sweep_time(context: Any) -> datetime:
    # Manual runs may have no logical date in Airflow 3; they run "as of" run_after.
    return context.get("logical_date") or context["dag_run"].run_after


@dag(
    dag_id="infra_health_sweep",
    schedule="*/5 * * * *",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(minutes=4),
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

    summaries = [
        collect.override(task_id=f"collect_{name}", task_display_name=f"collect {name}")(name)
        for name in COLLECTORS
    ]
    evaluate_rules(write_sweep(summaries))


infra_health_sweep()
