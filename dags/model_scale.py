"""
### Scale a model by hand

Trigger with **Trigger DAG** (a form) or from the CLI:

```bash
airflow dags trigger model_scale --conf '{"model": "half-plus-two", "replicas": 3, "reason": "launch traffic"}'
```

| parameter | what |
|---|---|
| `model` | a model of `include/fleet.yaml` |
| `replicas` | the new count, within the model's scaling policy (`min_replicas`-`max_replicas`) |
| `reason` | why (required): kept in the audit trail |
| `hold` | keep this count for a while (`30m`, `2h`, `1d`; at most 7d): the sweep's autoscaler skips the model until then and says why; empty = no hold |
| `dry_run` | record the request, patch nothing |

Steps: **validate_request** checks the conf against the fleet again (a CLI/API trigger
can send anything), so an out-of-range count is refused before any call to the cluster
-> **scale** (the sweep's `ScaleDeploymentOperator`): refuses a Deployment that an HPA
or KEDA ScaledObject owns, patches the `scale` subresource, records the event in
`mlinfra_scale_events` with trigger `manual`, and waits (deferred) until the new
replicas are available.

The sweep's automatic scaling counts this as a scale action: its cooldown applies, and
after it the autoscaler may change the count again at its next sweep, unless the
request holds it (`hold`): until then every sweep records "skipped: held at N replicas
by a manual scale until <time> (run ...: reason)".
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import dag, get_current_context, task

from mlinfra.config import load_fleet
from mlinfra.forms import triggered_by
from mlinfra.operators.scale import ScaleDeploymentOperator
from mlinfra.scaling.manual import form_params
from mlinfra.settings import manual_scale_timeout, scale_poll_interval
from mlinfra.task_failure import fail_without_retry

# The form's choices come from the fleet file (local, validated, cached); the PromQL check
# of scaling targets runs when a task loads the fleet, not at every parse.
FLEET = load_fleet(check_expressions=False)
SCALE_TIMEOUT = manual_scale_timeout()
SCALE_POLL_INTERVAL = scale_poll_interval()


@dag(
    dag_id="model_scale",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    # Two people scaling the same fleet at once would race; a scale is quick.
    max_active_runs=1,
    params=form_params(FLEET),
    render_template_as_native_obj=True,
    doc_md=__doc__,
    tags=["mlinfra", "scaling"],
    default_args={
        "owner": "ml-platform",
        "retries": 2,
        "retry_delay": timedelta(seconds=20),
    },
)
def model_scale() -> None:
    @task(multiple_outputs=True, execution_timeout=timedelta(minutes=1))
    def validate_request() -> dict[str, Any]:
        from mlinfra.exceptions import ScaleRequestError
        from mlinfra.scaling.manual import hold_until, validate_scale_request
        from mlinfra.timestamps import rfc3339

        context = get_current_context()
        conf = {**context["params"], **(context["dag_run"].conf or {})}
        try:
            request = validate_scale_request(conf, load_fleet())
        except ScaleRequestError as e:
            raise fail_without_retry(e) from e
        model = load_fleet().model(request.model)
        k = model.kubernetes
        # The hold runs from now, the moment the request is accepted (a retry keeps it).
        until = hold_until(request, time.time())
        return {
            "model": model.name,
            "namespace": k.namespace,
            "deployment": k.deployment,
            "kubernetes_conn_id": k.conn_id,
            "replicas": request.replicas,
            "reason": f"{request.reason} (by {triggered_by(context)})"
            + (f"; hold {request.hold} until {rfc3339(until)}" if until else ""),
            "dry_run": request.dry_run,
            "decision": {
                "request": request.model_dump(),
                "by": triggered_by(context),
                "policy": model.scaling.model_dump(mode="json"),
                "hold_until": until,
            },
        }

    request = validate_request()
    ScaleDeploymentOperator(
        task_id="scale",
        model=request["model"],
        namespace=request["namespace"],
        deployment=request["deployment"],
        kubernetes_conn_id=request["kubernetes_conn_id"],
        replicas=request["replicas"],
        reason=request["reason"],
        record_only=request["dry_run"],
        decision=request["decision"],
        trigger="manual",
        timeout=SCALE_TIMEOUT,
        poll_interval=SCALE_POLL_INTERVAL,
        execution_timeout=timedelta(minutes=2),
    )


model_scale()
