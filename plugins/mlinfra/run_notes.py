"""A task's words on its DAG run's note (the *Notes* panel of the run in Airflow's UI).

The Task SDK cannot write a run's note; Airflow's REST API can, through the optional
connection ``mlinfra_airflow_api`` (:mod:`mlinfra.hooks.airflow_api`). The note is a
courtesy: without the connection, or with the API server down, the task logs why it
left the note alone and goes on. It never fails a task.
"""

from __future__ import annotations

import logging

from mlinfra.exceptions import AirflowApiError
from mlinfra.hooks.airflow_api import DEFAULT_CONN_ID, airflow_api_or_none

log = logging.getLogger(__name__)


def note_run(dag_id: str, run_id: str, text: str) -> bool:
    """Set the note of run ``run_id`` of ``dag_id`` to ``text``; True when it was set."""
    api = airflow_api_or_none()
    if api is None:
        log.info(
            "run note not set: define the connection %r (Airflow's REST API) to have runs noted:\n%s",
            DEFAULT_CONN_ID,
            text,
        )
        return False
    try:
        api.set_dag_run_note(dag_id, run_id, text)
    except AirflowApiError as e:
        log.warning("run note not set: %s", e)
        return False
    finally:
        api.close()
    log.info("run note set on %s / %s", dag_id, run_id)
    return True
