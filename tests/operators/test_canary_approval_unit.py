"""CanaryApprovalOperator: skips a gate the canary does not wait at; asks with the summary otherwise;
leaves its answer where canary_conclude reads it; a timeout fails it without a retry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from unittest import mock

import pytest
from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from mlinfra.operators.canary import APPROVAL_ANSWER_KEY
from mlinfra.operators.canary_approval import CanaryApprovalOperator

SUMMARY = {"model": "half-plus-two", "phase": "paused", "gate": 1, "step": 2, "steps": 5, "weight": 20,
           "summary": "| step | metric |"}  # fmt: skip


def context(summary: Any) -> dict[str, Any]:
    ti = mock.Mock()
    ti.xcom_pull.return_value = summary
    return {"ti": ti}


def gate(number: int = 1) -> CanaryApprovalOperator:
    return CanaryApprovalOperator(
        task_id=f"approve_{number}",
        gate=number,
        segment_task_id=f"canary_segment_{number - 1}",
        canary={"approval_timeout": 600.0},
    )


@pytest.mark.parametrize(
    "summary",
    [
        None,
        {**SUMMARY, "gate": 2},
        {**SUMMARY, "phase": "promoted", "gate": None},
        {**SUMMARY, "phase": "aborted"},
    ],
    ids=["segment-skipped", "other-gate", "promoted", "aborted"],
)
def test_a_gate_the_canary_does_not_wait_at_skips(summary: Any) -> None:
    with (
        mock.patch.object(ApprovalOperator, "execute") as ask,
        pytest.raises(AirflowSkipException, match="approval gate 1"),
    ):
        gate().execute(context(summary))
    ask.assert_not_called()


def test_the_gate_asks_with_the_summary_and_the_strategy_timeout() -> None:
    op = gate()
    ctx = context(SUMMARY)
    with mock.patch.object(ApprovalOperator, "execute", return_value="asked") as ask:
        assert op.execute(ctx) == "asked"
    ask.assert_called_once_with(ctx)
    ctx["ti"].xcom_pull.assert_called_once_with(task_ids="canary_segment_0")
    assert op.body == "| step | metric |"
    assert "half-plus-two" in op.subject
    assert "gate 1" in op.subject
    assert op.response_timeout == timedelta(minutes=10)
    assert op.options == ["Approve", "Reject"]


def answer(option: str) -> dict[str, Any]:
    """The event Airflow 3.3 resumes an answered gate with (HITLDetail.as_resume_event_payload)."""
    return {
        "chosen_options": [option],
        "params_input": {},
        "responded_at": datetime(2026, 1, 1, tzinfo=UTC),
        "responded_by_user": {"id": "admin", "name": "ana"},
        "timedout": False,
    }


def test_a_rejection_is_kept_before_the_next_segment_is_skipped() -> None:
    """Reject skips the downstream segment by raising (Airflow 3's SkipMixin): no return value
    would ever reach canary_conclude, so the gate pushes its answer first."""
    from airflow.providers.standard.operators.empty import EmptyOperator
    from airflow.sdk import DAG
    from airflow.sdk.exceptions import DownstreamTasksSkipped

    with DAG("canary_gate", schedule=None):
        op = gate()
        op >> EmptyOperator(task_id="canary_segment_1")
    ti = mock.Mock(map_index=-1)
    with pytest.raises(DownstreamTasksSkipped):
        op.execute_complete({"ti": ti, "task": op}, answer("Reject"))
    assert ti.xcom_push.call_args_list[0] == mock.call(
        key=APPROVAL_ANSWER_KEY, value={"chosen_options": ["Reject"], "responded_by": "ana"}
    )


def test_an_approval_is_kept_and_lets_the_next_segment_run() -> None:
    op = gate()
    ti = mock.Mock()
    result = op.execute_complete({"ti": ti, "task": op}, answer("Approve"))
    assert result["chosen_options"] == ["Approve"]
    ti.xcom_push.assert_called_once_with(
        key=APPROVAL_ANSWER_KEY, value={"chosen_options": ["Approve"], "responded_by": "ana"}
    )


def test_a_timeout_fails_the_gate_without_a_retry() -> None:
    """The scheduler's timeout sweep resumes the gate with an error event: a retry would ask again
    and wait another approval_timeout, so the gate fails for good and says it timed out."""
    op = gate()
    op.retries = 2
    ti = mock.Mock()
    event = {"error": "The Human-in-the-loop response timeout has passed without a response.",
             "error_type": "timeout"}  # fmt: skip
    with pytest.raises(
        AirflowFailException,
        match=r"approval gate 1: no answer before its timeout \(600s\): the approval timed out",
    ):
        op.execute_complete({"ti": ti, "task": op}, event)
    ti.xcom_push.assert_called_once_with(
        key=APPROVAL_ANSWER_KEY, value={"timed_out": True, "timeout_seconds": 600.0}
    )


# ------------------------------------------------------------- a retry takes an earlier answer


def retry_context(summary: Any, try_number: int = 2) -> dict[str, Any]:
    ctx = context(summary)
    ti = ctx["ti"]
    ti.try_number, ti.dag_id, ti.run_id, ti.task_id, ti.map_index = (
        try_number, "model_deploy", "manual__1", "approve_1", -1
    )  # fmt: skip
    return ctx


def earlier(option: str) -> dict[str, Any]:
    """What AirflowApiHook.earlier_hitl_answer returns (the REST API's JSON: an ISO time)."""
    return {**answer(option), "responded_at": "2026-01-01T00:00:00Z", "try_number": 1}


def test_a_retry_acts_on_the_answer_an_earlier_try_got_without_asking_again() -> None:
    """A gate answered within seconds can have its resumed try killed by the scheduler
    (apache/airflow#72716): the retry takes that answer from Airflow's HITL history."""
    op = gate()
    ctx = retry_context(SUMMARY)
    api = mock.Mock()
    api.earlier_hitl_answer.return_value = earlier("Approve")
    with (
        mock.patch("mlinfra.operators.canary_approval.airflow_api_or_none", return_value=api),
        mock.patch.object(ApprovalOperator, "execute") as ask,
    ):
        result = op.execute(ctx)
    ask.assert_not_called()
    api.earlier_hitl_answer.assert_called_once_with(
        "model_deploy", "manual__1", "approve_1", try_number=2, map_index=-1
    )
    assert result["chosen_options"] == ["Approve"]
    assert result["responded_at"] == datetime(2026, 1, 1, tzinfo=UTC)
    ctx["ti"].xcom_push.assert_called_once_with(
        key=APPROVAL_ANSWER_KEY, value={"chosen_options": ["Approve"], "responded_by": "ana"}
    )
    api.close.assert_called_once()


@pytest.mark.parametrize("why", ["no-connection", "api-error", "no-earlier-answer"])
def test_a_retry_asks_again_when_no_earlier_answer_can_be_read(why: str) -> None:
    from mlinfra.exceptions import AirflowApiError

    op = gate()
    ctx = retry_context(SUMMARY)
    api = mock.Mock()
    api.earlier_hitl_answer.side_effect = AirflowApiError("Airflow API at http://x: unreachable")
    if why == "no-earlier-answer":
        api.earlier_hitl_answer.side_effect, api.earlier_hitl_answer.return_value = None, None
    with (
        mock.patch(
            "mlinfra.operators.canary_approval.airflow_api_or_none",
            return_value=None if why == "no-connection" else api,
        ),
        mock.patch.object(ApprovalOperator, "execute", return_value="asked") as ask,
    ):
        assert op.execute(ctx) == "asked"
    ask.assert_called_once_with(ctx)
    ctx["ti"].xcom_push.assert_not_called()


def test_a_first_try_asks_without_looking_for_an_earlier_answer() -> None:
    op = gate()
    ctx = retry_context(SUMMARY, try_number=1)
    with (
        mock.patch("mlinfra.operators.canary_approval.airflow_api_or_none") as lookup,
        mock.patch.object(ApprovalOperator, "execute", return_value="asked"),
    ):
        assert op.execute(ctx) == "asked"
    lookup.assert_not_called()
