"""mlinfra.task_failure: the one way to fail a task without retries."""

from __future__ import annotations

import pytest
from airflow.sdk.exceptions import AirflowFailException

from mlinfra.exceptions import RolloutFailed
from mlinfra.task_failure import fail_without_retry


def test_keeps_the_message_and_the_project_exception() -> None:
    error = RolloutFailed("ProgressDeadlineExceeded: 0/2 pods ready")
    with pytest.raises(AirflowFailException, match="ProgressDeadlineExceeded: 0/2 pods ready") as e:
        raise fail_without_retry(error)
    assert e.value.__cause__ is error
