"""The ``model_deploy`` DAG's Deadline Alert: say so when a deploy runs past its expected time.

Airflow 3.1+ deadlines (``airflow.sdk.DeadlineAlert``; docs: howto/deadline-alerts): the
scheduler fires the callback once a run has not finished ``interval`` after it was
queued (``DeadlineReference.DAGRUN_QUEUED_AT``); the callback runs in the triggerer::

    @dag(..., deadline=deploy_deadline(expected_duration(SETTINGS, FLEET)))

The interval is ``MLINFRA_DEPLOY_EXPECTED_DURATION`` when set, else derived from what a
deploy may legitimately wait (:func:`expected_duration`). The alert changes nothing
about the run: :func:`deploy_ran_long` logs a warning in the triggerer's log and, when
the Airflow connection ``alertmanager_default`` exists, posts one alert
``ModelDeployRunningLong`` to Alertmanager (best effort: a failure is logged).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow.sdk.definitions.deadline import DeadlineAlert

    from mlinfra.config import Fleet, Model
    from mlinfra.deploy.settings import DeploySettings

log = logging.getLogger(__name__)

ALERT_NAME = "ModelDeployRunningLong"
ALERTMANAGER_CONN_ID = "alertmanager_default"
# The execution timeouts of model_deploy's tasks outside the waits: validate_request 2m,
# preflight 5m, render_manifests 5m, smoke_test 10m, collect_configs 2m, finish 2m.
TASK_ALLOWANCE_S = 26 * 60.0


def expected_duration(settings: DeploySettings, fleet: Fleet) -> float:
    """Seconds a deploy run may take: the setting, or the longest model's allowance.

    Rolling: the rollout timeout + the model-load timeout. Canary: per weight step a
    rollout timeout, per pause its length, per approval the strategy's
    ``approval_timeout``, per analysis its slowest metric's ``interval * count``, and
    one rollout timeout for the promotion. Both plus :data:`TASK_ALLOWANCE_S`.
    """
    if settings.expected_duration is not None:
        return settings.expected_duration
    rolling = settings.rollout_timeout + settings.model_timeout
    longest = max([rolling, *(_canary_seconds(m, fleet, settings) for m in fleet.models)])
    return TASK_ALLOWANCE_S + longest


def _canary_seconds(model: Model, fleet: Fleet, settings: DeploySettings) -> float:
    strategy = model.deploy
    if not strategy.is_canary:
        return 0.0
    total = settings.rollout_timeout  # the promotion: the stable's rollout at the new version
    for step in strategy.steps:
        if step.kind == "weight":
            total += settings.rollout_timeout
        elif step.kind == "approval":
            total += strategy.approval_timeout
        elif step.kind == "pause":
            total += step.pause_seconds or 0.0
        elif step.analysis in fleet.analyses:
            total += max(m.interval * m.count for m in fleet.analyses[step.analysis].metrics)
    return total


def deploy_deadline(seconds: float) -> DeadlineAlert:
    """The DAG's ``deadline``: :func:`deploy_ran_long` once a run is ``seconds`` past being queued."""
    from airflow.sdk.definitions.callback import AsyncCallback
    from airflow.sdk.definitions.deadline import DeadlineAlert, DeadlineReference

    return DeadlineAlert(
        reference=DeadlineReference.DAGRUN_QUEUED_AT,
        interval=timedelta(seconds=seconds),
        callback=AsyncCallback(deploy_ran_long, kwargs={"expected_seconds": seconds}),
        name="model_deploy runs longer than expected",
    )


@dataclass(frozen=True)
class RunningLongAlert:
    """The alert posted to Alertmanager (what :class:`~mlinfra.hooks.alertmanager.PostableAlert` needs)."""

    labels: dict[str, str]
    annotations: dict[str, str]
    active_at: float
    state: str = "firing"
    fired_at: float | None = field(default=None)
    resolved_at: float | None = None


async def deploy_ran_long(
    context: dict[str, Any] | None = None,
    *,
    expected_seconds: float,
    alertmanager_conn_id: str = ALERTMANAGER_CONN_ID,
) -> dict[str, Any]:
    """The Deadline Alert's callback (runs in the triggerer): log, and notify Alertmanager if configured.

    ``context`` is what Airflow passes a deadline callback: ``dag_run`` (the REST API's
    DAG run) and ``deadline`` (``id``, ``deadline_time``). Returns what it did.
    """
    run = dict((context or {}).get("dag_run") or {})
    deadline = dict((context or {}).get("deadline") or {})
    run_id = str(run.get("dag_run_id") or run.get("run_id") or "?")
    model = str((run.get("conf") or {}).get("model") or "")
    summary = (
        f"model_deploy run {run_id}{f' ({model})' if model else ''} has not finished "
        f"{timedelta(seconds=round(expected_seconds))} after it was queued"
    )
    log.warning("%s (deadline %s): look at the run's running task", summary, deadline.get("deadline_time"))
    alert = RunningLongAlert(
        labels={"alertname": ALERT_NAME, "severity": "warning", "dag_id": "model_deploy", "run_id": run_id}
        | ({"model": model} if model else {}),
        annotations={"summary": summary, "deadline": str(deadline.get("deadline_time") or "")},
        active_at=time.time(),
    )
    notified = await asyncio.to_thread(_notify, alert, alertmanager_conn_id)
    return {"run_id": run_id, "model": model or None, "summary": summary, "notified": notified}


def _notify(alert: RunningLongAlert, conn_id: str) -> bool:
    from mlinfra.connections import connection_exists
    from mlinfra.hooks.alertmanager import AlertmanagerHook

    try:
        if not connection_exists(conn_id):
            log.info("no Airflow connection %s: the deadline alert is only logged", conn_id)
            return False
        hook = AlertmanagerHook(conn_id)
        try:
            hook.post_alerts([alert], at=alert.active_at)
        finally:
            hook.close()
    except Exception as e:  # a notice that could not go out must not hide the warning above
        log.warning("the deadline alert was not posted to Alertmanager (%s): %s", conn_id, e)
        return False
    return True
