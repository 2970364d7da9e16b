"""Walk a canary's steps, deferred between them; promote at the end, abort on a bad verdict.

::

    CanaryRolloutOperator(
        task_id="canary_segment_0",
        segment=0,                                  # the steps before the first approval gate
        plan=plan,                                  # validate_request's XCom
        rendered=rendered,                          # render_manifests' XCom (its "canary" key)
        measure_step="mlinfra.deploy.canary.measure.measure_step",   # the analysis seam
    )
    CanaryConcludeOperator(task_id="canary_conclude", plan=plan, rendered=rendered,
                           trigger_rule="all_done")  # aborts whatever did not end

The position lives in ``mlinfra_canary_runs`` (:mod:`mlinfra.deploy.canary.records`) and
is saved before every wait, so a retried task resumes: a weight is applied once (a
re-apply of the same spec writes nothing), a pause keeps its end, a recorded
measurement is kept (rows keyed by run, step, metric, seq). What each step does
(:func:`mlinfra.deploy.canary.rollout.next_action`):

* ``weight``: server-side apply the canary objects (ConfigMap, Service, Deployment
  ``<name>-canary`` with the replica count), defer on
  :class:`~mlinfra.triggers.rollout.DeploymentRolloutTrigger` for ``<name>-canary``.
* ``pause``: defer on the standard provider's ``DateTimeTrigger`` until the saved end.
* ``analysis``: call ``measure_step(MeasureRequest)`` on the worker, record each
  measurement, then: ``running`` -> defer until the next round, ``successful`` -> next
  step, anything else -> abort.
* the last step done: promote (apply the stable objects at the new version with the
  apply operator's client calls, keeping the previous spec in the deploy record, wait
  for the stable's rollout, delete the canary objects).
* abort: re-apply the stable's kept spec if a promotion began (it is kept before the
  stable is written), scale the canary Deployment to 0, wait, delete its Deployment,
  Service and ConfigMap. Before a promotion the stable is never written.

XCom (``return_value``) of both operators, also the approval gates' body::

    {"run_id", "model", "phase", "step", "steps", "weight", "canary_replicas",
     "stable_replicas", "share", "gate", "reason", "summary"}   # summary: Markdown table

Records: ``mlinfra_canary_runs`` (position, phase running|paused|promoting|aborting|
promoted|aborted, reason), ``mlinfra_canary_measurements`` (one row per measurement),
and the run's ``mlinfra_deployments`` row: outcome ``succeeded`` on promotion,
``aborted`` with the reason on abort.
"""

from __future__ import annotations

import copy
import importlib
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from mlinfra.exceptions import CanaryAborted
from mlinfra.task_failure import fail_without_retry

if TYPE_CHECKING:
    from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook

    from mlinfra.deploy.canary.records import CanaryRecords, CanaryRun
    from mlinfra.deploy.canary.rollout import AnalysisRound, MeasureRequest, Step
    from mlinfra.deploy.kube import ManifestClient
    from mlinfra.deploy.records import DeploymentRecords

# Where the lead wires helper A's analysis; a dotted path, so the DAG parses without it.
DEFAULT_MEASURE_STEP = "mlinfra.deploy.canary.measure.measure_step"
APPROVAL_TASK_ID = "approve_{gate}"
# The XCom an approval gate pushes with its answer (mlinfra.operators.canary_approval): on
# "Reject" the standard ApprovalOperator raises to skip its downstream tasks, so it has no
# return value to read.
APPROVAL_ANSWER_KEY = "canary_answer"


def resolve_measure_step(target: str | Callable[..., Any] | None) -> Callable[[MeasureRequest], Any]:
    """The seam: a callable, or the dotted path of one (``module.function``)."""
    if callable(target):
        return target
    if not target or "." not in target:
        raise ImportError(f"measure_step must be a callable or 'module.function', got {target!r}")
    module, _, name = target.rpartition(".")
    function = getattr(importlib.import_module(module), name)
    if not callable(function):
        raise ImportError(f"measure_step {target!r} is not callable")
    return function


class CanaryRolloutOperator(BaseOperator):
    """Walk segment ``segment`` of the model's canary steps (see the module docstring).

    :param segment: which segment (0-based; approval gates separate them).
    :param plan: the deploy plan (validate_request's XCom; templated).
    :param rendered: the render task's XCom; its ``canary`` key holds ``objects`` (the
        canary objects), ``steps``, ``stable_version``, ``stable_replicas`` (templated).
    :param measure_step: the analysis seam, a callable or its dotted path.
    :param rollout_timeout: seconds a rollout (canary, abort, promotion) may take.
    :param poll_interval: seconds between the rollout trigger's polls.
    :param store_conn_id: the store's connection.
    """

    template_fields: Sequence[str] = ("plan", "rendered")
    ui_color = "#f6e3b4"
    fail_on_abort = True

    def __init__(
        self,
        *,
        plan: dict[str, Any] | Any,
        rendered: dict[str, Any] | Any,
        segment: int = 0,
        measure_step: str | Callable[..., Any] | None = DEFAULT_MEASURE_STEP,
        rollout_timeout: float = 900.0,
        poll_interval: float = 5.0,
        store_conn_id: str = "mlinfra_store",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.plan = plan
        self.rendered = rendered
        self.segment = segment
        self.measure_step = measure_step
        self.rollout_timeout = rollout_timeout
        self.poll_interval = poll_interval
        self.store_conn_id = store_conn_id

    # ------------------------------------------------------------------ dependencies

    @cached_property
    def hook(self) -> KubernetesHook:
        from mlinfra.kube_import import kubernetes_hook_class

        return kubernetes_hook_class()(conn_id=self.plan["kubernetes_conn_id"])

    @cached_property
    def client(self) -> ManifestClient:
        from mlinfra.deploy.kube import ManifestClient

        return ManifestClient(self.hook.api_client)

    @cached_property
    def records(self) -> CanaryRecords:
        from mlinfra.deploy.canary.records import CanaryRecords

        return CanaryRecords.from_connection(self.store_conn_id)

    @cached_property
    def deploy_records(self) -> DeploymentRecords:
        from mlinfra.deploy.records import DeploymentRecords

        return DeploymentRecords.from_connection(self.store_conn_id)

    @property
    def canary(self) -> dict[str, Any]:
        return dict((self.rendered or {}).get("canary") or {})

    @cached_property
    def steps(self) -> list[Step]:
        from mlinfra.deploy.canary.rollout import parse_steps

        return parse_steps(list(self.canary.get("steps") or []))

    @property
    def run_id(self) -> str:
        return str(self.plan["run_id"])

    # ------------------------------------------------------------------ entry points

    def execute(self, context: Any) -> dict[str, Any]:
        if not self.canary.get("objects"):
            raise fail_without_retry(CanaryAborted("the render task produced no canary objects"))
        self.records.start(
            self.run_id,
            model=self.plan["model"],
            stable_version=self.canary.get("stable_version"),
            canary_version=int(self.plan["version"]),
            steps=len(self.steps),
            stable_replicas=self.canary.get("stable_replicas"),
        )
        return self._walk(context)

    def resume_scaled(self, context: Any, event: dict[str, Any], step: int | None = None) -> dict[str, Any]:
        """The canary Deployment's rollout at a weight ended.

        ``step`` is the deferral's kwarg; the persisted position says the same, and is what
        counts when the kwarg is missing (``dag.test()`` in Airflow 3.3 resumes with the
        event only, dropping the deferral's other kwargs).
        """
        run = self._run()
        step = run.step if step is None else step
        if event.get("status") != "success":
            return self._abort(context, f"canary rollout at step {step}: {event.get('message')}")
        if run.step == step and run.entered:  # a repeated event must not skip a step
            self.records.save_state(self.run_id, step=step + 1, entered=False, pause_until=None)
        return self._walk(context)

    def resume_waited(self, context: Any, event: Any = None, step: int = -1) -> dict[str, Any]:
        """A pause ended, or the next analysis round is due."""
        return self._walk(context)

    def resume_promoted(self, context: Any, event: dict[str, Any]) -> dict[str, Any]:
        """The stable Deployment's rollout at the new version ended."""
        from mlinfra.deploy.steps import record_canary_outcome

        if event.get("status") != "success":
            return self._abort(
                context, f"promotion: the stable rollout did not complete: {event.get('message')}"
            )
        self._delete_canary()
        reason = f"promoted to version {self.plan['version']} after {len(self.steps)} step(s)"
        self.records.finish(self.run_id, "promoted", reason=reason)
        record_canary_outcome(self.deploy_records, self.run_id, "promoted", reason)
        self.log.info("%s", reason)
        return self._summary()

    def resume_aborted(self, context: Any, event: dict[str, Any]) -> dict[str, Any]:
        """The canary Deployment was scaled to 0 (or the wait for it ended)."""
        if event.get("status") != "success":
            # Deleting the Deployment removes its pods anyway; say that the wait did not end well.
            self.log.warning("canary scale-down: %s; deleting the canary all the same", event.get("message"))
        return self._finish_abort()

    # ------------------------------------------------------------------ the walk

    def _run(self) -> CanaryRun:
        run = self.records.get(self.run_id)
        if run is None:
            raise fail_without_retry(
                CanaryAborted(f"run {self.run_id}: no canary record (was the canary started?)")
            )
        return run

    def _walk(self, context: Any) -> dict[str, Any]:
        from mlinfra.deploy.canary import rollout as machine

        while True:
            run = self._run()
            if run.phase == "aborting":  # an earlier try died part-way through the abort
                return self._abort(context, run.reason or "aborted")
            state = machine.CanaryState.of(run)
            try:
                action = machine.next_action(self.steps, state, segment=self.segment, now=time.time())
            except machine.SegmentOrderError as e:
                raise fail_without_retry(CanaryAborted(str(e))) from e
            self.log.info("canary step %s/%s: %s", run.step, len(self.steps), action)
            if isinstance(action, machine.Done):
                return self._summary()
            if isinstance(action, machine.Advance):
                self.records.save_state(self.run_id, step=action.step + 1, entered=False, pause_until=None)
                continue
            if isinstance(action, machine.AwaitApproval):
                self.records.save_state(self.run_id, phase="paused", gate=action.gate)
                return self._summary()
            if run.phase == "paused":
                self.records.save_state(self.run_id, phase="running", gate=None)
            if isinstance(action, machine.ScaleCanary):
                self._scale(action, state)
            elif isinstance(action, machine.Wait):
                self._wait(action)
            elif isinstance(action, machine.Analyse):
                verdict = self._analyse(action, state, context)
                if verdict is not None:
                    return self._abort(context, verdict)
            elif isinstance(action, machine.Promote):
                self._promote()

    def _scale(self, action: Any, state: Any) -> None:
        from mlinfra.deploy.canary.replicas import canary_share

        objects = self._canary_objects(action.replicas)
        generation = self._apply(objects)
        self.records.save_state(
            self.run_id, entered=True, weight=action.weight, canary_replicas=action.replicas
        )
        share = canary_share(state.stable_replicas, action.replicas)
        self.log.info(
            "weight %s%%: %s canary pod(s) next to %s stable (share %.1f%%)",
            action.weight,
            action.replicas,
            state.stable_replicas,
            100 * share,
        )
        deployment = self._deployment_of(objects)
        self._defer_rollout(deployment, generation, "resume_scaled", {"step": action.step})

    def _wait(self, action: Any) -> None:
        from airflow.providers.standard.triggers.temporal import DateTimeTrigger

        self.records.save_state(self.run_id, entered=True, pause_until=action.until)
        if action.until <= time.time():
            return  # a zero-length pause: the next loop advances
        self.defer(
            trigger=DateTimeTrigger(moment=datetime.fromtimestamp(action.until, UTC)),
            method_name="resume_waited",
            kwargs={"step": action.step},
        )

    def _analyse(self, action: Any, state: Any, context: Any) -> str | None:
        """One round; returns the abort reason, or None to go on."""
        from mlinfra.deploy.canary.rollout import ROUND_PHASES, AnalysisRound, MeasureRequest

        previous = self.records.measurements(self.run_id, step=action.step)
        now = time.time()
        request = MeasureRequest(
            plan=dict(self.plan),
            run_id=self.run_id,
            step=action.step,
            template=action.template,
            weight=state.weight,
            canary_replicas=state.canary_replicas,
            stable_replicas=state.stable_replicas,
            stable_version=self.canary.get("stable_version"),
            previous=previous,
            now=now,
        )
        try:
            result: AnalysisRound = AnalysisRound.of(resolve_measure_step(self.measure_step)(request))
        except ImportError as e:
            return f"analysis {action.template}: no analysis available ({e})"
        if result.phase not in ROUND_PHASES:
            return f"analysis {action.template}: unknown phase {result.phase!r}"
        seqs: dict[str, int] = {}
        for before in previous:
            seqs[before.metric] = max(seqs.get(before.metric, 0), before.seq + 1)
        for m in result.measurements:
            metric = str(m["metric"])
            seq = seqs.get(metric, 0)
            seqs[metric] = seq + 1
            self.records.add_measurement(
                self.run_id,
                model=self.plan["model"],
                step=action.step,
                seq=seq,
                metric=metric,
                verdict=str(m.get("verdict") or "error"),
                step_kind="analysis",
                weight=state.weight,
                value=_column_value(m.get("value")),
                stable_value=_column_value(m.get("stable_value")),
                detail=_detail_with_result(m),
                measured_at=m.get("at") or now,
            )
        self.log.info("analysis %s: %s %s", action.template, result.phase, result.message)
        if result.phase == "successful":
            self.records.save_state(self.run_id, step=action.step + 1, entered=False, pause_until=None)
            return None
        if result.phase == "running":
            # Saved after the measurements: a worker lost in between measures once more, never less.
            self.records.save_state(
                self.run_id, entered=True, pause_until=now + max(result.next_in_seconds, 0.0)
            )
            return None
        return f"analysis {action.template} {result.phase}" + (
            f": {result.message}" if result.message else ""
        )

    def _promote(self) -> None:
        from mlinfra.deploy.kube import apply_objects, snapshot

        run = self._run()
        objects = list(self.rendered["objects"])
        if run.phase != "promoting":
            self.records.save_state(self.run_id, phase="promoting")
        live = snapshot(self.client, objects)
        record = self.deploy_records.get(self.run_id)
        if record is None or record.previous is None:
            self.deploy_records.update(self.run_id, previous=live)  # what a rollback re-applies
        result = apply_objects(self.client, objects, live)
        identities = [
            {"kind": o["kind"], "namespace": o["metadata"]["namespace"], "name": o["metadata"]["name"]}
            for o in objects
        ]
        self.deploy_records.update(
            self.run_id,
            applied={
                **result.to_dict(),
                "objects": identities,
                "complete": True,
                "spec": objects,
                "canary": True,
            },
        )
        self._defer_rollout(self._deployment_of(objects), result.generation, "resume_promoted", None)

    def _restore_stable(self, reason: str) -> str:
        """Re-apply the stable spec kept before the promotion wrote it; returns ``reason`` with the outcome.

        Every abort calls it, on every try: the spec is kept once a promotion began (before the
        stable is written), so an abort after that (its rollout failed, or its task for good and
        ``canary_conclude`` ends the run) leaves the previous version serving. Idempotent.
        """
        from mlinfra.deploy.kube import describe_api_error, execute_rollback, rollback_plan

        record = self.deploy_records.get(self.run_id)
        previous = record.previous if record is not None else None
        if record is None or not previous or (record.rollback or {}).get("performed"):
            return reason  # no promotion began (the stable was never written), or already restored
        try:
            done = execute_rollback(self.client, rollback_plan(previous, list(self.rendered["objects"])))
        except Exception as e:  # the abort goes on: the canary must still be removed
            self.deploy_records.update(
                self.run_id, rollback={"performed": False, "error": describe_api_error(e)}
            )
            return reason + f"; restoring the previous stable spec failed: {describe_api_error(e)}"
        self.deploy_records.update(self.run_id, rollback={"performed": True, **done})
        return (
            reason
            + f"; the previous stable spec was re-applied ({', '.join(done['reapplied']) or 'nothing'})"
        )

    # ------------------------------------------------------------------ abort

    def _abort(self, context: Any, reason: str) -> dict[str, Any]:
        """Restore the stable if a promotion began, scale the canary to 0, wait; then :meth:`_finish_abort`.

        ``aborting`` is saved before anything is written: a try that dies part-way is retried
        as this abort, never as the step it aborted (nor as the promotion again).
        """
        run = self._run()
        if run.phase in ("promoted", "aborted"):
            return self._summary()
        if run.phase != "aborting":
            self.records.save_state(self.run_id, phase="aborting", reason=reason, gate=None)
        else:
            reason = run.reason or reason
        restored = self._restore_stable(reason)
        if restored != reason:
            reason = restored
            self.records.save_state(self.run_id, reason=reason)
        self.log.error("aborting the canary: %s", reason)
        deployment = self._deployment_of(self._canary_objects(0))
        meta = deployment["metadata"]
        live = self.client.read("Deployment", meta["namespace"], meta["name"])
        if live is not None and (live.get("spec") or {}).get("replicas") != 0:
            stored = self.client.apply(deployment)
            generation = int((stored.get("metadata") or {}).get("generation") or 0)
            self._defer_rollout(deployment, generation, "resume_aborted", None)
        return self._finish_abort()

    def _finish_abort(self) -> dict[str, Any]:
        from mlinfra.deploy.steps import record_canary_outcome, stable_after_abort

        self._delete_canary()
        run = self._run()
        reason = run.reason or "aborted"
        self.records.finish(self.run_id, "aborted", reason=reason)
        record_canary_outcome(self.deploy_records, self.run_id, "aborted", reason)
        if self.fail_on_abort:
            raise fail_without_retry(
                CanaryAborted(
                    f"canary of {self.plan['model']} version {self.plan['version']} aborted: {reason}"
                    + stable_after_abort(self.deploy_records.get(self.run_id))
                )
            )
        return self._summary()

    def _delete_canary(self) -> None:
        # Reverse apply order: the pods go before the config they mount.
        for obj in reversed(self._canary_objects(0)):
            meta = obj["metadata"]
            if self.client.delete(obj["kind"], meta["namespace"], meta["name"]):
                self.log.info("deleted %s/%s", obj["kind"], meta["name"])

    # ------------------------------------------------------------------ helpers

    def _canary_objects(self, replicas: int) -> list[dict[str, Any]]:
        objects = copy.deepcopy(list(self.canary["objects"]))
        for obj in objects:
            if obj["kind"] == "Deployment":
                obj["spec"]["replicas"] = int(replicas)
        return objects

    @staticmethod
    def _deployment_of(objects: list[dict[str, Any]]) -> dict[str, Any]:
        return next(o for o in objects if o["kind"] == "Deployment")

    def _apply(self, objects: list[dict[str, Any]]) -> int:
        from mlinfra.deploy.kube import apply_objects, snapshot

        return apply_objects(self.client, objects, snapshot(self.client, objects)).generation

    def _defer_rollout(
        self, deployment: dict[str, Any], generation: int, method: str, kwargs: dict[str, Any] | None
    ) -> None:
        from mlinfra.triggers.rollout import DeploymentRolloutTrigger

        meta = deployment["metadata"]
        self.defer(
            trigger=DeploymentRolloutTrigger(
                namespace=meta["namespace"],
                name=meta["name"],
                kubernetes_conn_id=self.plan["kubernetes_conn_id"],
                min_generation=generation or None,
                pod_labels=dict(deployment["spec"]["template"]["metadata"]["labels"]),
                deadline=time.time() + self.rollout_timeout,
                poll_interval=self.poll_interval,
            ),
            method_name=method,
            kwargs=kwargs,
        )

    def _summary(self) -> dict[str, Any]:
        from mlinfra.deploy.canary.replicas import canary_share
        from mlinfra.deploy.canary.rollout import analysis_summary

        run = self._run()
        measurements = self.records.measurements(self.run_id)
        stable = run.stable_replicas or 0
        head = (
            f"**{self.plan['model']}** canary version {self.plan['version']} "
            f"(stable {run.stable_version}): step {min(run.step, run.steps)}/{run.steps}, "
            f"weight {run.weight}% ({run.canary_replicas} canary / {stable} stable pods), phase {run.phase}"
        )
        if run.reason:
            head += f"; {run.reason}"
        return {
            "run_id": run.run_id,
            "model": run.model,
            "phase": run.phase,
            "step": run.step,
            "steps": run.steps,
            "weight": run.weight,
            "canary_replicas": run.canary_replicas,
            "stable_replicas": run.stable_replicas,
            "share": canary_share(stable, run.canary_replicas),
            "gate": run.gate,
            "reason": run.reason,
            "summary": head + "\n\n" + analysis_summary(measurements),
        }

    def on_kill(self) -> None:
        # Nothing runs between the waits; the persisted position lets the next try resume.
        self.log.info("canary task killed; the run resumes from its saved step")


class CanaryConcludeOperator(CanaryRolloutOperator):
    """After the last segment (``trigger_rule="all_done"``): abort any canary run that did not end.

    A gate that was rejected skips the next segment; one that timed out fails; a segment
    that failed for good leaves its step unfinished. In each case the canary pods are
    still there: this removes them and records why. Returns the summary; never fails
    on an abort (the ``finish`` task fails the run with the recorded reason).
    """

    fail_on_abort = False

    def execute(self, context: Any) -> dict[str, Any]:
        run = self.records.get(self.run_id)
        if run is None:
            self.log.info("no canary run for %s: nothing to conclude", self.run_id)
            return {"run_id": self.run_id, "phase": None, "reason": "the canary never started"}
        if run.phase in ("promoted", "aborted"):
            return self._summary()
        return self._abort(context, self._reason(context, run))

    def _reason(self, context: Any, run: CanaryRun) -> str:
        if run.phase == "aborting" and run.reason:
            return run.reason
        if run.phase == "paused" and run.gate:
            answer = context["ti"].xcom_pull(
                task_ids=APPROVAL_TASK_ID.format(gate=run.gate), key=APPROVAL_ANSWER_KEY
            )
            answer = answer if isinstance(answer, dict) else {}
            chosen = answer.get("chosen_options")
            if answer.get("timed_out"):
                return timed_out_reason(run.gate, answer.get("timeout_seconds"))
            if chosen and chosen != ["Approve"]:
                who = answer.get("responded_by") or "someone"
                return f"approval gate {run.gate}: {', '.join(chosen)} by {who}"
            if not chosen:
                return f"approval gate {run.gate}: no answer (the gate's task failed before one came)"
        where = self.steps[run.step].describe() if run.step < len(self.steps) else "promotion"
        return f"step {run.step} ({where}) did not complete: its task failed ({run.phase})"


def timed_out_reason(gate: int, timeout_seconds: float | None) -> str:
    """Why a canary stopped at a gate nobody answered (the gate's failure, then the abort's reason).

    >>> timed_out_reason(1, 1800.0)
    'approval gate 1: no answer before its timeout (1800s): the approval timed out'
    """
    within = f" ({float(timeout_seconds):g}s)" if timeout_seconds else ""
    return f"approval gate {gate}: no answer before its timeout{within}: the approval timed out"


def _column_value(value: Any) -> float | None:
    """A measurement's ``result`` for the value column: a number, a one-element list's
    number, or None (several or no series: the whole list is kept in ``detail["result"]``)."""
    if isinstance(value, list):
        return float(value[0]) if len(value) == 1 and value[0] is not None else None
    return None if value is None else float(value)


def _detail_with_result(m: dict[str, Any]) -> dict[str, Any] | None:
    detail = m.get("detail")
    if isinstance(m.get("value"), list):
        return {**(detail or {}), "result": m["value"]}
    return detail
