"""infra_health_sweep with dag.test(): rules evaluated at the logical time, state kept across runs, XCom."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from mlinfra.rules.state import StoreAlertStates
from mlinfra.samples import Sample
from mlinfra.store import MetricsStore

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
LOGICAL = datetime(2026, 11, 20, 12, 5, tzinfo=UTC)
T = LOGICAL.timestamp()
GPU = {"gpu_id": "0", "host": "rules-test-host", "uuid": "GPU-test", "name": "Test GPU"}
POD = {
    "namespace": "serving",
    "pod": "resnet50-classifier-abc",
    "container": "resnet50-classifier",
    "deployment": "resnet50-classifier",
}


@pytest.fixture
def store(store_env: MetricsStore, monkeypatch: pytest.MonkeyPatch, airflow_db: Path) -> MetricsStore:
    for conn in ("KUBERNETES_DEFAULT", "ALERTMANAGER_DEFAULT", "PROMETHEUS_PUSHGATEWAY"):
        monkeypatch.delenv(f"AIRFLOW_CONN_{conn}", raising=False)
    s = store_env
    # History between sweep times (a sweep replaces everything stamped with its own time):
    # a hot GPU for the last 10 minutes, and a pod restarting 10 times in the last hour.
    history = [Sample("ml_gpu_temperature_celsius", GPU, 91.0, T - 60 * m) for m in (9, 6, 4, 1)] + [
        Sample("kube_pod_container_status_restarts_total", POD, 2.0 * i, T - 60 * (52 - 10 * i))
        for i in range(6)
    ]
    s.write_samples(history)
    return s


def _dag():  # type: ignore[no-untyped-def]
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags" / "infra_health_sweep.py"))
    assert bag.import_errors == {}
    return bag.dags["infra_health_sweep"]


def _xcom(run: Any, task_id: str) -> Any:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        value = session.scalar(
            select(XComModel.value).where(
                XComModel.dag_id == run.dag_id,
                XComModel.run_id == run.run_id,
                XComModel.task_id == task_id,
                XComModel.key == "return_value",
            )
        )
    return json.loads(value) if isinstance(value, str) else value


def test_sweep_evaluates_shipped_rules_at_the_logical_time(store: MetricsStore) -> None:
    dag = _dag()
    assert dag.get_task("evaluate_rules").upstream_task_ids == {"write_sweep"}

    first = dag.test(logical_date=LOGICAL - timedelta(minutes=5))
    assert first.state == "success"
    states = StoreAlertStates(store)
    by_name = {r["alert"]: r for r in states.current()}
    assert by_name["HighGPUTemperature"]["state"] == "pending"
    assert by_name["PodCrashLooping"]["state"] == "firing"  # no `for`: fires in its first evaluation

    # The next run continues from the stored state: pending for 5 minutes -> firing.
    second = dag.test(logical_date=LOGICAL)
    assert second.state == "success"
    firing = {r["alert"]: r for r in StoreAlertStates(store).current(state="firing")}
    gpu = firing["HighGPUTemperature"]
    assert gpu["labels"] == {"alertname": "HighGPUTemperature", "severity": "warning", **GPU}
    assert (gpu["active_at"], gpu["fired_at"], gpu["eval_ts"]) == (T - 300, T, T)
    assert gpu["annotations"]["summary"] == "GPU 0 on rules-test-host is hot"
    assert firing["PodCrashLooping"]["labels"]["pod"] == POD["pod"]
    history = [
        (h["alert"], h["from_state"], h["to_state"], h["ts"])
        for h in StoreAlertStates(store).history(T - 600, T + 1)
    ]
    assert ("HighGPUTemperature", "inactive", "pending", T - 300) in history
    assert ("HighGPUTemperature", "pending", "firing", T) in history

    out = _xcom(second, "evaluate_rules")
    assert out["at"] == T
    names = {a["alertname"] for a in out["firing"]}
    assert {"HighGPUTemperature", "PodCrashLooping"} <= names
    gpu_xcom = next(a for a in out["firing"] if a["alertname"] == "HighGPUTemperature")
    assert gpu_xcom["labels"]["host"] == "rules-test-host"
    assert gpu_xcom["state"] == "firing"
    assert gpu_xcom["value"] == 91.0
    assert out["load_errors"] == []
    assert out["posted"] is None

    # Re-running the same logical time is idempotent: no duplicate transitions.
    again = dag.test(logical_date=LOGICAL)
    assert again.state == "success"
    assert [
        (h["alert"], h["from_state"], h["to_state"], h["ts"])
        for h in StoreAlertStates(store).history(T - 600, T + 1)
    ] == history
