"""The one way a task fails without retries: a project exception wrapped for Airflow.

Airflow retries any exception except ``AirflowFailException``. Some failures would
fail the same way on a retry (a broken rollout, a wrong smoke answer, an invalid
request), so the task must fail at once; the project exception stays attached as
the cause, so the log shows its class and callers can still inspect it::

    raise fail_without_retry(RolloutFailed("ProgressDeadlineExceeded ..."))
"""

from __future__ import annotations

from airflow.sdk.exceptions import AirflowFailException

from mlinfra.exceptions import MlinfraError


def fail_without_retry(error: MlinfraError) -> AirflowFailException:
    """An ``AirflowFailException`` carrying ``error``'s message, with ``error`` as its cause.

    Raise what it returns: ``raise fail_without_retry(SmokeTestFailed(...))``.
    """
    failure = AirflowFailException(str(error))
    failure.__cause__ = error
    return failure
