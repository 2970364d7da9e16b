"""Approval gate ``gate`` of a canary, as Airflow's human-in-the-loop ``ApprovalOperator``.

::

    CanaryApprovalOperator(task_id="approve_1", gate=1, segment_task_id="canary_segment_0",
                           canary=rendered["canary"])

At run time it reads the summary the segment before it returned
(:mod:`mlinfra.operators.canary`): when that segment did not stop at this gate (the
strategy has fewer gates, or the canary already ended) the gate skips itself, and
with it the segments after it. Otherwise it asks, in Airflow's Required Actions view,
with the analysis summary as its body and the strategy's ``approval_timeout`` as the
response timeout. "Approve" lets the next segment run; "Reject" skips it (the
standard operator's semantics); no answer in time fails the gate, without a retry (a
retry would ask again and wait another ``approval_timeout``). Either way the
``canary_conclude`` task then aborts the canary and records who rejected or that
nobody answered.

The answer is pushed as the XCom ``canary_answer`` before the standard operator acts
on it (``{"chosen_options": [...], "responded_by": <name>}`` or ``{"timed_out": True,
"timeout_seconds": ...}``): on "Reject" the standard operator skips its downstream
tasks by raising, so it never returns a value ``canary_conclude`` could read.

A retry of a gate that was answered does not ask again. Under a real scheduler a gate
answered within seconds of asking can have its resumed try killed (a late executor
event: "Server indicated the task shouldn't be running anymore", apache/airflow#72716;
or the paused try's own late "success" event, seen after the answer had queued it, fails
it without archiving it), and the retry would ask a question already answered and wait
out ``approval_timeout``.
The Task SDK cannot read an earlier try's answer; Airflow's REST API keeps it in the
task's HITL history, so with the connection ``mlinfra_airflow_api``
(:mod:`mlinfra.hooks.airflow_api`) a retry takes the answer of the newest earlier try
that had one and did not act on it. A try that acted on its answer (it succeeded or
skipped) is not reused: clearing such a gate asks again. Without the connection a
retry asks again, and says why in its log.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.sdk.exceptions import AirflowSkipException

from mlinfra.exceptions import AirflowApiError, CanaryAborted
from mlinfra.hooks.airflow_api import DEFAULT_CONN_ID as AIRFLOW_API_CONN_ID
from mlinfra.hooks.airflow_api import airflow_api_or_none
from mlinfra.operators.canary import APPROVAL_ANSWER_KEY, timed_out_reason
from mlinfra.task_failure import fail_without_retry


def _responder(user: Any) -> str | None:
    """The name of the ``responded_by_user`` of a HITL event (a TypedDict, or a model)."""
    if isinstance(user, dict):
        return user.get("name") or user.get("id")
    return getattr(user, "name", None) or getattr(user, "id", None)


class CanaryApprovalOperator(ApprovalOperator):
    """Ask whether the canary may go past gate ``gate`` (1-based).

    :param gate: which gate.
    :param segment_task_id: the task id of the segment before the gate.
    :param canary: the render task's ``canary`` XCom (templated): ``approval_timeout``
        (seconds) is taken from it.
    """

    template_fields: Sequence[str] = (*ApprovalOperator.template_fields, "canary")

    def __init__(self, *, gate: int, segment_task_id: str, canary: Any = None, **kwargs: Any) -> None:
        kwargs.setdefault("subject", f"Canary approval gate {gate}")
        super().__init__(**kwargs)
        self.gate = gate
        self.segment_task_id = segment_task_id
        self.canary = canary

    def execute(self, context: Any) -> Any:
        summary = context["ti"].xcom_pull(task_ids=self.segment_task_id)
        if (
            not isinstance(summary, dict)
            or summary.get("phase") != "paused"
            or summary.get("gate") != self.gate
        ):
            raise AirflowSkipException(f"the canary does not wait at approval gate {self.gate}")
        self.subject = (
            f"Canary of {summary.get('model')}: go past approval gate {self.gate} "
            f"(step {summary.get('step')}/{summary.get('steps')}, weight {summary.get('weight')}%)?"
        )
        self.body = str(summary.get("summary") or "")
        timeout = self._timeout_seconds()
        if timeout:
            self.response_timeout = timedelta(seconds=timeout)
        earlier = self._earlier_answer(context["ti"])
        if earlier is not None:
            self.log.info(
                "approval gate %s: %s by %s, given to try %s, which ended before acting on it: "
                "not asking again",
                self.gate,
                ", ".join(earlier["chosen_options"]),
                _responder(earlier["responded_by_user"]) or "someone",
                earlier.get("try_number"),
            )
            return self.execute_complete(context, earlier)
        return super().execute(context)

    def _earlier_answer(self, ti: Any) -> dict[str, Any] | None:
        """The answer an earlier try got and never acted on, as a resume event; None on a first try."""
        try_number = getattr(ti, "try_number", 1)
        if not isinstance(try_number, int) or try_number <= 1:
            return None
        api = airflow_api_or_none()
        if api is None:
            self.log.warning(
                "approval gate %s, try %s: an answer given to an earlier try cannot be read without "
                "the connection %r (Airflow's REST API): asking again",
                self.gate,
                try_number,
                AIRFLOW_API_CONN_ID,
            )
            return None
        try:
            answer = api.earlier_hitl_answer(
                ti.dag_id, ti.run_id, ti.task_id, try_number=try_number, map_index=ti.map_index
            )
        except AirflowApiError as e:
            self.log.warning("approval gate %s: earlier answers unreadable (%s): asking again", self.gate, e)
            return None
        finally:
            api.close()
        if answer is not None and isinstance(answer.get("responded_at"), str):
            answer["responded_at"] = datetime.fromisoformat(answer["responded_at"])
        return answer

    def execute_complete(self, context: Any, event: dict[str, Any]) -> Any:
        ti = context["ti"]
        if event.get("error_type") == "timeout":
            seconds = self._timeout_seconds()
            ti.xcom_push(key=APPROVAL_ANSWER_KEY, value={"timed_out": True, "timeout_seconds": seconds})
            raise fail_without_retry(CanaryAborted(timed_out_reason(self.gate, seconds)))
        if "error" not in event:
            ti.xcom_push(
                key=APPROVAL_ANSWER_KEY,
                value={
                    "chosen_options": list(event.get("chosen_options") or []),
                    "responded_by": _responder(event.get("responded_by_user")),
                },
            )
        return super().execute_complete(context, event)

    def _timeout_seconds(self) -> float | None:
        timeout = (self.canary or {}).get("approval_timeout") if isinstance(self.canary, dict) else None
        return float(timeout) if timeout else None
