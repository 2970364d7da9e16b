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
standard operator's semantics); no answer in time fails the gate. Either way the
``canary_conclude`` task then aborts the canary and records who rejected or that
nobody answered.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.sdk.exceptions import AirflowSkipException


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
        timeout = (self.canary or {}).get("approval_timeout") if isinstance(self.canary, dict) else None
        if timeout:
            self.response_timeout = timedelta(seconds=float(timeout))
        return super().execute(context)
