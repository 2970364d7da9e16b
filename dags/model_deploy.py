"""
### Deploy a model version

Trigger with **Trigger DAG** (a form) or from the CLI:

```bash
airflow dags trigger model_deploy --conf '{"model": "half-plus-two", "version": 2, "image_tag": "2.14.1"}'
```

| parameter | what |
|---|---|
| `model` | a model of `include/fleet.yaml` |
| `version` | the TF Serving model version to serve (integer >= 1) |
| `image_tag` | tag of the TF Serving image; the repository comes from the fleet file |
| `replicas` | empty: keep the current count (first deploy: the model's `min_replicas`); else within the model's scaling policy |
| `run_smoke` | send the smoke predictions of `include/smoke/<model>.json` (default on) |
| `auto_rollback` | restore the previous spec when anything fails (default on) |
| `dry_run` | render and log the diff against the cluster; change nothing |

Steps: **validate_request** (the conf again, so a CLI/API trigger with bad values is
refused before anything touches the cluster) -> **preflight** (the version exists where TF
Serving reads it: `<model_base_path>/<version>/saved_model.pb` on S3/GCS with its size, the
PersistentVolumeClaim is Bound; a missing version is refused naming the path) ->
**render_manifests** (`include/k8s/*.yaml.j2`,
sandboxed, parsed back, checked and validated against the Kubernetes OpenAPI schema of the
fleet's `kubernetes_version`; the diff against the cluster is in its log) ->
**apply** (server-side apply, field manager `mlinfra`; the previous spec is kept) ->
**wait_rollout** and **wait_model** (deferred: no worker slot is held while Kubernetes
rolls out and TF Serving loads the version) -> **smoke_test** (gRPC and REST against the
exact new version; outputs, errors, p50/p99 within the SLO) -> **promote** (records the
deploy and emits the asset event `mlinfra://models/<model>`), or **rollback** (re-applies
the kept spec, waits for it, checks the previous version is AVAILABLE) -> **collect_configs**
(deletes the per-version ConfigMaps no kept ReplicaSet mounts) -> **finish** (fails the run
with the reason unless the deploy succeeded).

A model with `deploy.strategy: canary` (and a version already running) goes another way
after **render_manifests**: **choose_strategy** -> **canary_segment_0** ... (a Deployment
`<name>-canary` next to the stable, its weight as replicas, pauses and analyses waited out
deferred) -> **approve_1..3** (Required Actions; reject or timeout aborts) ->
**canary_conclude** (aborts what did not end) -> collect_configs -> finish. Promotion
re-applies the stable at the new version; an abort removes the canary and never writes
the stable.

Each version owns an immutable ConfigMap named by its content; the pods of the running
version never see the new one, so a bad version can never take the old one down. When the
apply or the rollback fails part-way, the record lists what was changed and the run fails
with "cluster partially changed; rollback failed: ...".

A run still going `MLINFRA_DEPLOY_EXPECTED_DURATION` after it was queued (unset: derived
from the timeouts, pauses, approval timeouts and analyses of the fleet's models) fires the
DAG's Deadline Alert: a warning in the triggerer's log and, when the connection
`alertmanager_default` exists, an alert `ModelDeployRunningLong`. The run goes on.

Every deploy is a row of `mlinfra_deployments` in the store (who, what, when, outcome,
smoke figures, rollback). Failures that a retry cannot fix (a bad request, a crash-looping
image, a failed smoke test) fail at once; API errors are retried.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import dag, get_current_context, task

from mlinfra.config import load_fleet
from mlinfra.deploy.deadline import deploy_deadline, expected_duration
from mlinfra.deploy.flow import deploy_by_strategy, record_failure_callback
from mlinfra.deploy.params import form_params
from mlinfra.deploy.settings import DeploySettings
from mlinfra.forms import triggered_by
from mlinfra.task_failure import fail_without_retry

# The form's choices come from the fleet file (local, validated, cached); the PromQL check
# of scaling targets runs when a task loads the fleet, not at every parse.
FLEET = load_fleet(check_expressions=False)
SETTINGS = DeploySettings.from_env()


@dag(
    dag_id="model_deploy",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    # Two deploys must not race on one Deployment; deploys are minutes, so one at a time.
    max_active_runs=1,
    params=form_params(FLEET),
    render_template_as_native_obj=True,
    # A Deadline Alert, not a dagrun_timeout: a slow run (a long approval) is reported, never killed.
    deadline=deploy_deadline(expected_duration(SETTINGS, FLEET)) if SETTINGS.deadline_enabled else None,
    doc_md=__doc__,
    tags=["mlinfra", "deploy"],
    default_args={
        "owner": "ml-platform",
        # Only transient errors (API server, network) get here: failures a retry cannot
        # fix raise fail_without_retry(...) and fail at once.
        "retries": 2,
        "retry_delay": timedelta(seconds=30),
        "on_failure_callback": record_failure_callback,
    },
)
def model_deploy() -> None:
    @task(multiple_outputs=True, execution_timeout=timedelta(minutes=2))
    def validate_request() -> dict[str, Any]:
        from mlinfra.deploy.records import DeploymentRecords
        from mlinfra.deploy.steps import validate_and_record
        from mlinfra.exceptions import DeployRequestError

        context = get_current_context()
        conf = {**context["params"], **(context["dag_run"].conf or {})}
        try:
            return validate_and_record(
                conf,
                fleet=load_fleet(),
                records=DeploymentRecords.from_connection(),
                run_id=context["run_id"],
                triggered_by=triggered_by(context),
            )
        except DeployRequestError as e:
            raise fail_without_retry(e) from e

    # Before anything touches the cluster: the version must exist where TF Serving reads it.
    @task(execution_timeout=timedelta(minutes=5))
    def preflight(plan: dict[str, Any]) -> dict[str, Any]:
        from mlinfra.deploy.records import DeploymentRecords
        from mlinfra.deploy.steps import preflight_artifact
        from mlinfra.exceptions import ArtifactStoreError, DeployRequestError

        context = get_current_context()
        try:
            return preflight_artifact(
                plan,
                fleet=load_fleet(),
                records=DeploymentRecords.from_connection(),
                run_id=context["run_id"],
            )
        except (DeployRequestError, ArtifactStoreError) as e:  # a missing version: no retry helps
            raise fail_without_retry(e) from e

    @task(multiple_outputs=True, execution_timeout=timedelta(minutes=5))
    def render_manifests(plan: dict[str, Any]) -> dict[str, Any]:
        from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook

        from mlinfra.deploy.kube import ManifestClient
        from mlinfra.deploy.records import DeploymentRecords
        from mlinfra.deploy.steps import render_plan
        from mlinfra.exceptions import ManifestError

        client = ManifestClient(KubernetesHook(conn_id=plan["kubernetes_conn_id"]).api_client)
        try:
            rendered = render_plan(
                plan,
                fleet=load_fleet(),
                client=client,
                records=DeploymentRecords.from_connection(),
                progress_deadline_seconds=int(SETTINGS.progress_deadline),
            )
        except ManifestError as e:
            raise fail_without_retry(e) from e
        print(
            f"Changes against the cluster ({', '.join(rendered['changed']) or 'none'}):\n{rendered['diff']}"
        )
        return rendered

    # A dry run stops here; everything downstream (rollback and finish too) is skipped.
    @task.short_circuit(ignore_downstream_trigger_rules=True)
    def unless_dry_run(plan: dict[str, Any]) -> bool:
        return not plan["dry_run"]

    plan = validate_request()
    checked = preflight(plan)
    rendered = render_manifests(plan)
    checked >> rendered
    go = unless_dry_run(plan)
    rendered >> go

    # Rolling (apply ... smoke_test -> promote | rollback) or canary (segments and approval
    # gates -> canary_conclude), then collect_configs -> finish either way.
    choose = deploy_by_strategy(plan, rendered, settings=SETTINGS, plan_task_id="validate_request")
    go >> choose


model_deploy()
