"""
### Roll a model back to a version that served well

Trigger with **Trigger DAG** (a form) or from the CLI:

```bash
airflow dags trigger model_rollback --conf '{"model": "half-plus-two", "reason": "p99 doubled after v7"}'
airflow dags trigger model_rollback --conf '{"model": "half-plus-two", "version": 5, "reason": "..."}'
```

| parameter | what |
|---|---|
| `model` | a model of `include/fleet.yaml` |
| `version` | empty: the last version whose deploy succeeded, other than the one serving now; else a version that once deployed successfully (any other is refused) |
| `reason` | required: why (kept in the deploy record and shown on the ML Fleet page) |

Steps: **choose_version** (validates the form, reads what serves now, picks the version
from the deploy records) -> **render_recorded** (the exact objects that version's successful
deploy applied, its immutable ConfigMap included, with today's replica count) -> **apply**
-> **wait_rollout** and **wait_model** (deferred) -> **smoke_test** -> **promote** (records
the rollback and emits `mlinfra://models/<model>`), or **rollback** (re-applies what served
before this run) -> **collect_configs** -> **finish**. The same tasks as `model_deploy`, so
a rollback by hand is proven as a deploy is.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import Param, dag, get_current_context, task

from mlinfra.config import load_fleet
from mlinfra.deploy.flow import record_failure_callback, rollout_and_verify
from mlinfra.deploy.params import model_label
from mlinfra.deploy.settings import DeploySettings
from mlinfra.forms import triggered_by
from mlinfra.task_failure import fail_without_retry

FLEET = load_fleet(check_expressions=False)
SETTINGS = DeploySettings.from_env()


@dag(
    dag_id="model_rollback",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    params={
        "model": Param(
            FLEET.model_names[0],
            type="string",
            enum=FLEET.model_names,
            values_display={m.name: model_label(m) for m in FLEET.models},
            title="Model",
        ),
        "version": Param(
            None,
            type=["null", "integer"],
            minimum=1,
            title="Version to roll back to",
            description="Empty: the last version whose deploy succeeded, other than the one serving now.",
        ),
        "reason": Param(
            type="string", minLength=3, maxLength=500, title="Reason", description="Why (kept in the record)."
        ),
    },
    render_template_as_native_obj=True,
    doc_md=__doc__,
    tags=["mlinfra", "deploy"],
    default_args={
        "owner": "ml-platform",
        "retries": 2,
        "retry_delay": timedelta(seconds=30),
        "on_failure_callback": record_failure_callback,
    },
)
def model_rollback() -> None:
    @task(multiple_outputs=True, execution_timeout=timedelta(minutes=2))
    def choose_version() -> dict[str, Any]:
        from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook

        from mlinfra.deploy.kube import ManifestClient
        from mlinfra.deploy.manual_rollback import choose_rollback
        from mlinfra.deploy.records import DeploymentRecords
        from mlinfra.exceptions import DeployRequestError

        context = get_current_context()
        conf = {**context["params"], **(context["dag_run"].conf or {})}
        fleet = load_fleet()
        name = conf.get("model")
        conn_id = fleet.model(name).kubernetes.conn_id if name in fleet.model_names else "kubernetes_default"
        try:
            return choose_rollback(
                conf,
                fleet=fleet,
                records=DeploymentRecords.from_connection(),
                client=ManifestClient(KubernetesHook(conn_id=conn_id).api_client),
                run_id=context["run_id"],
                triggered_by=triggered_by(context),
            )
        except DeployRequestError as e:
            raise fail_without_retry(e) from e

    @task(multiple_outputs=True, execution_timeout=timedelta(minutes=5))
    def render_recorded(plan: dict[str, Any]) -> dict[str, Any]:
        from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook

        from mlinfra.deploy.kube import ManifestClient
        from mlinfra.deploy.manual_rollback import recorded_objects
        from mlinfra.deploy.records import DeploymentRecords
        from mlinfra.exceptions import DeployRequestError

        client = ManifestClient(KubernetesHook(conn_id=plan["kubernetes_conn_id"]).api_client)
        try:
            rendered = recorded_objects(plan, records=DeploymentRecords.from_connection(), client=client)
        except DeployRequestError as e:
            raise fail_without_retry(e) from e
        print(
            f"Changes against the cluster ({', '.join(rendered['changed']) or 'none'}):\n{rendered['diff']}"
        )
        return rendered

    plan = choose_version()
    rendered = render_recorded(plan)
    apply = rollout_and_verify(
        plan,
        rendered["objects"],
        settings=SETTINGS,
        plan_task_id="choose_version",
        auto_rollback=True,
        record_extra=plan["record_extra"],
    )
    rendered >> apply


model_rollback()
