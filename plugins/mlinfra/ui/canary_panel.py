"""The "canary" panel of a model on the ML Fleet page: where its latest canary run stands.

Read through :class:`~mlinfra.deploy.canary.records.CanaryRecords` only (the module
that writes ``mlinfra_canary_runs`` and ``mlinfra_canary_measurements``)::

    >>> panel = canary_panel(CanaryRecords(store), fleet.model("half-plus-two"), now=time.time())  # doctest: +SKIP
    >>> panel["phase"], panel["current"], panel["steps"], panel["waiting"]["kind"]  # doctest: +SKIP
    ('paused', 3, 5, 'approval')

A model has a panel when its newest canary run is still going, or ended less than
:data:`RECENT_S` ago; otherwise ``None``. The panel holds the run's position (step n
of total, each step's description and state), the weight asked for and the canary's
actual share of the pods the run scaled (canary pods / canary + stable pods, as
recorded when the weight was applied), the phase, every analysis measurement with its
verdict, the promote/abort reason, and for a run that has not ended what it waits for
(:func:`waiting_for`). Links to Airflow are paths under Airflow's base URL.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from mlinfra.deploy.canary.records import FINAL_PHASES, CanaryMeasurement, CanaryRecords, CanaryRun
from mlinfra.deploy.canary.replicas import canary_share
from mlinfra.deploy.canary.rollout import Step, parse_steps

if TYPE_CHECKING:
    from mlinfra.config import Model

DAG_ID = "model_deploy"
# An ended run stays on the page this long (a promotion or abort overnight is still seen).
RECENT_S = 24 * 3600.0
APPROVAL_TASK = "approve_{gate}"  # the gates' task ids in model_deploy (mlinfra.deploy.flow)
REQUIRED_ACTIONS_PATH = "/required_actions?response_received=false"


def canary_panel(records: CanaryRecords, model: Model, *, now: float) -> dict[str, Any] | None:
    """The panel of ``model``'s latest canary run, or None (no run, or ended over a day ago)."""
    runs = records.runs_for_model(model.name, limit=1)
    if not runs or not _shown(runs[0], now):
        return None
    return _panel(model, runs[0], records.measurements(runs[0].run_id), now=now)


def canary_panels(
    records: CanaryRecords, models: Sequence[Model], *, now: float
) -> dict[str, dict[str, Any] | None]:
    """model name -> :func:`canary_panel` of each of ``models``, in two reads for the whole fleet."""
    latest = records.latest_runs()
    runs = {m.name: latest[m.name] for m in models if m.name in latest and _shown(latest[m.name], now)}
    measured = records.measurements_of_runs(run.run_id for run in runs.values())
    return {
        m.name: _panel(m, runs[m.name], measured[runs[m.name].run_id], now=now) if m.name in runs else None
        for m in models
    }


def _shown(run: CanaryRun, now: float) -> bool:
    return run.ended_at is None or now - run.ended_at.timestamp() <= RECENT_S


def _panel(
    model: Model, run: CanaryRun, measurements: Sequence[CanaryMeasurement], *, now: float
) -> dict[str, Any]:
    ended = run.ended_at.timestamp() if run.ended_at is not None else None
    steps = _fleet_steps(model, run)
    stable = run.stable_replicas or 0
    return {
        "run_id": run.run_id,
        "dag_id": DAG_ID,
        "stable_version": run.stable_version,
        "canary_version": run.canary_version,
        "phase": run.phase,
        "ended": run.phase in FINAL_PHASES,
        "reason": run.reason,
        "started_at": run.started_at.timestamp(),
        "updated_at": run.updated_at.timestamp(),
        "ended_at": ended,
        "step": run.step,
        "steps": run.steps,
        # 1-based number of the step the run stands on; None once every step is done.
        "current": run.step + 1 if run.step < run.steps else None,
        "step_list": _step_list(run, steps),
        "weight": run.weight,
        "canary_replicas": run.canary_replicas,
        "stable_replicas": run.stable_replicas,
        "share": canary_share(stable, run.canary_replicas),
        "measurements": [_measurement(m, steps) for m in measurements],
        "waiting": None if run.phase in FINAL_PHASES else waiting_for(run, steps, now=now),
    }


def _fleet_steps(model: Model, run: CanaryRun) -> list[Step] | None:
    """The model's steps as the fleet file has them now; None when they no longer match the run
    (the strategy was edited since it started: descriptions would describe other steps)."""
    try:
        steps = parse_steps(list(model.deploy.steps))
    except ValueError:
        return None
    return steps if len(steps) == run.steps else None


def _step_list(run: CanaryRun, steps: list[Step] | None) -> list[dict[str, Any]]:
    if steps is None:
        return []
    out = []
    gate = 0
    for i, step in enumerate(steps):
        description = step.describe()
        if step.kind == "approval":
            gate += 1
            description = f"approval (gate {gate})"
        out.append({"index": i, "number": i + 1, "kind": step.kind, "description": description,
                    "state": _step_state(run, i)})  # fmt: skip
    return out


def _step_state(run: CanaryRun, index: int) -> str:
    if run.phase == "promoted" or index < run.step:
        return "done"
    if index > run.step:
        return "not reached" if run.phase in FINAL_PHASES else "pending"
    if run.phase == "aborted":
        return "aborted"
    return "current"


def _measurement(m: CanaryMeasurement, steps: list[Step] | None) -> dict[str, Any]:
    detail = m.detail or {}
    analysis = steps[m.step].analysis if steps is not None and m.step < len(steps) else None
    return {
        "step": m.step,
        "number": m.step + 1,
        "analysis": analysis,
        "metric": m.metric,
        "seq": m.seq,
        "verdict": m.verdict,
        "value": m.value,
        "stable_value": m.stable_value,
        "reason": str(detail.get("reason") or ""),
        "weight": m.weight,
        "measured_at": m.measured_at.timestamp(),
    }


def waiting_for(run: CanaryRun, steps: list[Step] | None, *, now: float) -> dict[str, Any]:
    """What a run that has not ended waits for: ``kind`` (approval, pause, analysis, rollout,
    promotion, abort, start), ``text``, and where it applies ``until`` (epoch seconds) or the
    approval's Airflow paths."""
    if run.phase == "aborting":
        return {"kind": "abort", "text": "the canary's removal (scaled to 0, then deleted)"}
    if run.phase == "promoting" or run.step >= run.steps:
        return {
            "kind": "promotion",
            "text": f"the stable Deployment's rollout at version {run.canary_version} (promotion)",
        }
    if run.phase == "paused" and run.gate:
        return _approval(run)
    step = steps[run.step] if steps is not None else None
    if step is None:
        return {"kind": "step", "text": f"step {run.step + 1} of {run.steps}"}
    if not run.entered:
        return {
            "kind": "start",
            "text": f"the deploy's next task to start step {run.step + 1} ({step.describe()})",
        }
    if step.kind == "weight":
        return {
            "kind": "rollout",
            "text": f"the canary Deployment's rollout to {run.canary_replicas} pod(s) (weight {run.weight}%)",
        }
    if step.kind == "pause" and run.pause_until is not None:
        return {"kind": "pause", "text": "the pause's end", "until": run.pause_until}
    if step.kind == "analysis" and run.pause_until is not None and run.pause_until > now:
        return {
            "kind": "analysis",
            "text": f"the next round of analysis {step.analysis}",
            "until": run.pause_until,
        }
    return {"kind": "analysis", "text": f"a round of analysis {step.analysis} being taken"}


def _approval(run: CanaryRun) -> dict[str, Any]:
    task_id = APPROVAL_TASK.format(gate=run.gate)
    dag, run_id = quote(DAG_ID, safe=""), quote(run.run_id, safe="")
    return {
        "kind": "approval",
        "text": f"approval at gate {run.gate} (task {task_id})",
        "gate": run.gate,
        "task_id": task_id,
        # Airflow's UI: the task's "Required Action" tab, and the list of every open one.
        "task_path": f"/dags/{dag}/runs/{run_id}/tasks/{task_id}/required_actions",
        "required_actions_path": REQUIRED_ACTIONS_PATH,
        # Airflow's REST API: PATCH with {"chosen_options": ["Approve"]} (or ["Reject"]).
        "api_path": f"/api/v2/dags/{dag}/dagRuns/{run_id}/taskInstances/{task_id}/-1/hitlDetails",
    }
