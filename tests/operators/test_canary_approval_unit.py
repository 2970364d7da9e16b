"""CanaryApprovalOperator: skips a gate the canary does not wait at; asks with the summary otherwise."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from unittest import mock

import pytest
from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.sdk.exceptions import AirflowSkipException

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
