"""model_scale with dag.test(): a person's scale through the form's conf, audited; bad requests write nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mlinfra.scaling.records import ScaleRecords
from mlinfra.store import MetricsStore
from tests.support.k8s_standin import KubeStandIn

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def env(
    kube: KubeStandIn, store_env: MetricsStore, monkeypatch: pytest.MonkeyPatch, airflow_db: Path
) -> tuple[KubeStandIn, ScaleRecords]:
    monkeypatch.setenv("MLINFRA_SCALE_POLL_INTERVAL", "100ms")
    kube.add_deployment("serving", "half-plus-two", replicas=1)
    kube.set_rollout("serving", "half-plus-two", step_seconds=0.2)
    return kube, ScaleRecords(store_env)


def scale(**conf: Any) -> Any:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags" / "model_scale.py"))
    assert bag.import_errors == {}
    return bag.dags["model_scale"].test(run_conf=conf)


def states(run: Any) -> dict[str, str]:
    from airflow.utils.session import create_session

    with create_session() as session:
        return {ti.task_id: str(ti.state) for ti in run.get_task_instances(session=session)}


def test_form_shape() -> None:
    from airflow.dag_processing.dagbag import DagBag

    dag = DagBag(dag_folder=str(ROOT / "dags" / "model_scale.py")).dags["model_scale"]
    params = dag.params.dump()
    assert set(params) == {"model", "replicas", "reason", "dry_run", "hold"}
    schema = dag.params.get_param("replicas").schema
    assert (schema["minimum"], schema.get("maximum")) == (0, None)  # the model's own range: first task
    assert dag.params.get_param("model").schema["enum"] == ["half-plus-two", "resnet50-classifier"]
    assert dag.params.get_param("reason").schema["minLength"] == 1


def test_manual_scale_patches_waits_and_is_audited(env: tuple[KubeStandIn, ScaleRecords]) -> None:
    kube, records = env
    run = scale(model="half-plus-two", replicas=3, reason="launch traffic")
    assert run.state == "success", states(run)
    dep = kube.deployment("serving", "half-plus-two")
    assert dep["spec"]["replicas"] == 3
    assert dep["status"]["availableReplicas"] == 3
    (event,) = records.events("half-plus-two")
    assert (event["from_replicas"], event["to_replicas"], event["trigger"], event["outcome"]) == (
        1,
        3,
        "manual",
        "available",
    )
    assert event["reason"].startswith("launch traffic (by ")
    assert event["run_id"] == run.run_id
    assert event["dry_run"] is False
    assert event["decision"]["request"] == {
        "model": "half-plus-two",
        "replicas": 3,
        "reason": "launch traffic",
        "dry_run": False,
        "hold": "",
    }
    assert event["decision"]["hold_until"] is None
    assert [w.method for w in kube.writes()] == ["PATCH"]


def test_a_manual_scale_can_hold_its_count(env: tuple[KubeStandIn, ScaleRecords]) -> None:
    import time

    kube, records = env
    before = time.time()
    run = scale(model="half-plus-two", replicas=3, reason="launch", hold="2h")
    assert run.state == "success", states(run)
    (event,) = records.events("half-plus-two")
    assert before + 7200 <= event["decision"]["hold_until"] <= time.time() + 7200
    assert " hold 2h until 20" in event["reason"]
    held = records.active_holds(["half-plus-two"], at=time.time())
    assert held["half-plus-two"]["replicas"] == 3
    # Over once its own end has passed (measured from when the run decided, not from `before`).
    assert records.active_holds(["half-plus-two"], at=event["decision"]["hold_until"] + 1) == {}


def test_dry_run_records_only(env: tuple[KubeStandIn, ScaleRecords]) -> None:
    kube, records = env
    run = scale(model="half-plus-two", replicas=2, reason="what if", dry_run=True)
    assert run.state == "success", states(run)
    assert kube.writes() == []
    (event,) = records.events("half-plus-two")
    assert (event["outcome"], event["dry_run"], event["to_replicas"]) == ("dry_run", True, 2)


@pytest.mark.parametrize(
    "conf",
    [
        {"model": "half-plus-two", "replicas": 5, "reason": "too many"},  # above half-plus-two's max of 4
        {"model": "resnet50-classifier", "replicas": 1, "reason": "too few"},  # below its min of 2
        {"model": "half-plus-two", "replicas": 2, "reason": "   "},  # a reason is required
        # More than any model allows: refused by the first task with the model's own range,
        # never clamped by the form to another model's maximum.
        {"model": "half-plus-two", "replicas": 9, "reason": "more than any model's max"},
        {"model": "half-plus-two", "replicas": 2, "reason": "x", "hold": "30d"},  # longer than 7d
    ],
)
def test_invalid_requests_are_refused_before_any_cluster_call(
    env: tuple[KubeStandIn, ScaleRecords], conf: dict[str, Any]
) -> None:
    kube, records = env
    run = scale(**conf)
    assert run.state == "failed"
    assert states(run) == {"validate_request": "failed", "scale": "upstream_failed"}
    assert kube.writes() == []
    assert list(kube.requests) == []  # not even a read
    assert records.events() == []


def test_the_form_itself_refuses_what_no_model_allows(env: tuple[KubeStandIn, ScaleRecords]) -> None:
    from airflow.sdk.exceptions import ParamValidationError

    kube, records = env
    with pytest.raises(ParamValidationError, match="replicas"):
        scale(model="half-plus-two", replicas=-1, reason="no model allows this")
    with pytest.raises(ParamValidationError, match="hold"):
        scale(model="half-plus-two", replicas=2, reason="x", hold="forever")
    with pytest.raises(ParamValidationError, match="reason"):
        scale(model="half-plus-two", replicas=2, reason="")
    assert list(kube.requests) == []
    assert records.events() == []
