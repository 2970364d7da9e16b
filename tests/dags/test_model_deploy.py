"""model_deploy end to end: dag.test() against the Kubernetes and TF Serving stand-ins.

Real Airflow (metadata DB, task runner, in-process triggers), the real provider hook
and kubernetes clients, a real TF Serving wire protocol over a real SavedModel. The
stand-ins are linked as a cluster links them: every pod is a TF Serving server reading the
model config its ConfigMap projects, and the Service reaches Ready pods only
(tests/deploy/environment.py, tests/support/kubelet.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.environment import (
    DEPLOYMENT,
    MODEL,
    NAMESPACE,
    DeployEnv,
    deploy_env,
    ensure_version,
    traffic,
)
from tests.support.tf_serving_standin import StandinProcess

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration


@pytest.fixture
def env(airflow_db: Path, deploy_serving: tuple[StandinProcess, Path], tmp_path: Path) -> Iterator[DeployEnv]:
    server, base = deploy_serving
    server.clear_faults()
    for version in range(1, 9):  # the artifacts the tests deploy exist (version 42 does not)
        ensure_version(base, version)
    with deploy_env(tmp_path, server, base) as e:
        e.seed(version=1)
        yield e


def load_dag() -> Any:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags" / "model_deploy.py"))
    assert bag.import_errors == {}
    return bag.dags["model_deploy"]


def deploy(**conf: Any) -> Any:
    return load_dag().test(run_conf={"model": MODEL, "image_tag": "2.14.1", **conf})


def task_states(dr: Any) -> dict[str, str]:
    from airflow.utils.session import create_session

    with create_session() as session:
        return {ti.task_id: str(ti.state) for ti in dr.get_task_instances(session=session)}


def serving_states(env: DeployEnv) -> dict[int, str]:
    from mlinfra.hooks.tf_serving import TFServingHook

    with TFServingHook("tf_serving_half_plus_two") as hook:
        return {s["version"]: s["state"] for s in hook.get_model_status("half_plus_two")}


def predict(version: int | None = None) -> Any:
    from mlinfra.hooks.tf_serving import TFServingHook

    with TFServingHook("tf_serving_half_plus_two") as hook:
        return hook.predict("half_plus_two", {"x": [1.0, 2.0, 5.0]}, version)["y"]


def live_template(env: DeployEnv) -> dict[str, Any]:
    return env.kube.deployment(NAMESPACE, DEPLOYMENT)["spec"]["template"]


def asset_events(run_id: str) -> list[str]:
    from airflow.models.asset import AssetEvent
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        events = session.scalars(select(AssetEvent).where(AssetEvent.source_run_id == run_id)).all()
        return [e.asset.uri for e in events]


# --------------------------------------------------------------------------- happy path and idempotence


def test_happy_path_deploys_the_version_smoke_tests_it_and_emits_the_asset(env: DeployEnv) -> None:
    dr = deploy(version=2)

    assert str(dr.state) == "success", task_states(dr)
    template = live_template(env)
    assert template["spec"]["containers"][0]["image"] == "tensorflow/serving:2.14.1"
    assert template["metadata"]["labels"]["version"] == "2"
    assert serving_states(env)[2] == "AVAILABLE"
    assert predict(2) == [2.5, 3.0, 4.5]
    record = env.records().get(dr.run_id)
    assert record.outcome == "succeeded"
    assert record.smoke["passed"] is True
    assert record.smoke["protocols"]["grpc"]["requests"] == 15  # 3 cases x 5 repetitions
    assert record.smoke["protocols"]["rest"]["requests"] == 15
    assert record.previous["Deployment"]["spec"]["template"]["metadata"]["labels"]["version"] == "1"
    assert record.image == "tensorflow/serving:2.14.1"
    assert record.ended_at is not None
    # Server-side apply with mlinfra's field manager: the version's new ConfigMap, the
    # Service (its version label) and the Deployment.
    applies = [r for r in env.kube.writes() if r.query.get("fieldManager") == "mlinfra"]
    assert [r.path.split("/")[-2] for r in applies] == ["configmaps", "services", "deployments"]
    assert asset_events(dr.run_id) == ["mlinfra://models/half-plus-two"]
    (mounted,) = [v["configMap"]["name"] for v in template["spec"]["volumes"]]
    config = env.kube.get_object("v1", "ConfigMap", NAMESPACE, mounted)
    assert config["immutable"] is True
    assert "specific { versions: 2 }" in config["data"]["models.config"]
    assert "prometheus_config" in config["data"]["monitoring.config"]
    # The previous version's ConfigMap is kept while its ReplicaSet is in the history.
    configs = env.kube.list_objects(
        "v1", "ConfigMap", NAMESPACE, label_selector="mlinfra.io/config-of=half-plus-two"
    )
    assert len(configs) == 2
    assert record.previous["Deployment"]["spec"]["template"]["spec"]["volumes"][0]["configMap"]["name"] in {
        c["metadata"]["name"] for c in configs
    }
    dep = env.kube.deployment(NAMESPACE, DEPLOYMENT)
    assert dep["metadata"]["annotations"]["mlinfra.io/airflow-run-id"] == dr.run_id


def test_the_same_deploy_twice_changes_nothing_the_second_time(env: DeployEnv) -> None:
    first = deploy(version=6)
    assert str(first.state) == "success", task_states(first)
    before = env.kube.deployment(NAMESPACE, DEPLOYMENT)
    writes = len(env.kube.writes())

    second = deploy(version=6)

    assert str(second.state) == "success", task_states(second)
    assert len(env.kube.writes()) == writes, "the second run wrote to the cluster"
    after = env.kube.deployment(NAMESPACE, DEPLOYMENT)
    assert after["metadata"]["generation"] == before["metadata"]["generation"]
    assert after["spec"] == before["spec"]
    record = env.records().get(second.run_id)
    assert record.outcome == "succeeded"
    assert record.applied["changed"] == []
    assert record.diff.count(": unchanged") == 3


def test_dry_run_shows_the_diff_and_changes_nothing(env: DeployEnv) -> None:
    dr = deploy(version=3, dry_run=True)

    assert str(dr.state) == "success", task_states(dr)
    assert env.kube.writes() == []
    assert live_template(env)["metadata"]["labels"]["version"] == "1"
    record = env.records().get(dr.run_id)
    assert record.outcome == "dry_run"
    assert "+++ new Deployment/half-plus-two" in record.diff
    assert "-        version: '1'" in record.diff
    assert "+        version: '3'" in record.diff
    states = task_states(dr)
    assert (states["apply"], states["rollback"], states["finish"]) == ("skipped", "skipped", "skipped")


# --------------------------------------------------------------------------- failures roll back


def assert_rolled_back(env: DeployEnv, dr: Any, reason_part: str) -> Any:
    assert str(dr.state) == "failed"
    states = task_states(dr)
    assert states["rollback"] == "success", states
    assert states["promote"] == "upstream_failed"
    assert states["finish"] == "failed"
    record = env.records().get(dr.run_id)
    assert record.outcome == "rolled_back", record
    assert reason_part in (record.reason or ""), record.reason
    template = live_template(env)
    assert template["metadata"]["labels"]["version"] == "1"
    assert template["spec"]["containers"][0]["image"] == "tensorflow/serving:2.14.1"
    assert record.rollback["performed"] is True
    assert record.rollback["rollout"] == "success"
    assert asset_events(dr.run_id) == []
    return record


def test_bad_image_rolls_back_and_the_previous_version_keeps_serving(env: DeployEnv) -> None:
    # The stand-in's registry holds no such tag: ErrImagePull, then ImagePullBackOff.
    with traffic(env.serving) as client:
        dr = deploy(version=3, image_tag="does-not-exist")

    record = assert_rolled_back(env, dr, "tensorflow/serving:does-not-exist")
    # Which of the kubelet's two reasons the rollout wait sees first depends on timing.
    assert "ErrImagePull" in record.reason or "ImagePullBackOff" in record.reason
    assert client.failures == []
    assert len(client.results) > 10
    assert task_states(dr)["wait_rollout"] == "failed"
    assert record.rollback["previous_version_available"] is True
    assert serving_states(env)[1] == "AVAILABLE"
    assert 3 not in serving_states(env)
    assert predict() == [2.5, 3.0, 4.5]
    # The new pods are gone: only pods of the old template remain.
    pods = [env.kube.pod(NAMESPACE, p) for p in env.kube.pod_names(NAMESPACE, deployment=DEPLOYMENT)]
    assert {p["spec"]["containers"][0]["image"] for p in pods} == {"tensorflow/serving:2.14.1"}


def test_smoke_mismatch_rolls_back(env: DeployEnv) -> None:
    env.serving.set_faults(version_faults={"4": {"output_offset": 1.0}})  # version 4 answers wrongly

    with traffic(env.serving) as client:
        dr = deploy(version=4)

    record = assert_rolled_back(env, dr, "smoke test of half-plus-two version 4 failed")
    assert task_states(dr)["smoke_test"] == "failed"
    assert record.smoke["passed"] is False
    assert record.smoke["cases"][0]["mismatches"] == 5
    assert client.failures == []
    assert len(client.results) > 10
    env.wait_serving(1, 1)
    assert serving_states(env) == {1: "AVAILABLE"}  # the version 4 pods are gone


def test_tf_serving_unreachable_rolls_back(env: DeployEnv) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env.monkeypatch.setenv(
        "AIRFLOW_CONN_TF_SERVING_HALF_PLUS_TWO",
        json.dumps(
            {
                "conn_type": "tf_serving",
                "host": "127.0.0.1",
                "port": port,
                "extra": {"rest_url": f"http://127.0.0.1:{port}", "timeout": 1},
            }
        ),
    )
    env.monkeypatch.setenv("MLINFRA_DEPLOY_MODEL_TIMEOUT", "3s")

    dr = deploy(version=5)

    record = assert_rolled_back(env, dr, "wait_model")
    assert task_states(dr)["wait_model"] == "failed"
    assert "not AVAILABLE by the deadline" in record.reason
    # The cluster is back on the old spec, but nobody could confirm the old version answers.
    assert record.rollback["previous_version_available"] is False


# --------------------------------------------------------------------------- refused requests


def test_invalid_conf_is_refused_with_zero_requests_to_the_cluster(env: DeployEnv) -> None:
    dr = deploy(version=2, replicas=6)  # passes the form's global bound (1-8), not the model's (1-4)

    assert str(dr.state) == "failed"
    states = task_states(dr)
    assert states["validate_request"] == "failed"
    assert states["apply"] == "upstream_failed"
    assert states["rollback"] == "skipped"
    assert list(env.kube.requests) == []
    record = env.records().get(dr.run_id)
    assert record.outcome == "failed"
    assert "replicas: must be between 1 and 4 for model half-plus-two" in record.reason


def test_invalid_conf_from_the_cli_is_refused_with_zero_writes(env: DeployEnv) -> None:
    conf = {"model": MODEL, "version": 2, "image_tag": "evil; rm -rf /", "replicas": 2}
    result = subprocess.run(
        [sys.executable, "-m", "airflow", "dags", "test", "model_deploy", "--conf", json.dumps(conf)],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        timeout=300,
        cwd=ROOT,
    )
    output = result.stdout + result.stderr
    assert "image_tag" in output, output[-3000:]
    assert env.kube.writes() == []
    assert live_template(env)["metadata"]["labels"]["version"] == "1"


# --------------------------------------------------------------------------- no worker slot while waiting


def test_rollout_wait_is_deferred_and_holds_no_worker_slot(
    env: DeployEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While the rollout takes its time the wait_rollout task instance is `deferred`, nothing runs."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.trigger import Trigger
    from airflow.sdk.execution_time import supervisor
    from airflow.utils.session import create_session
    from sqlalchemy import select

    # The rollout makes no progress until the wait has deferred (so the check below can
    # never race a fast rollout on a loaded machine), then one pod step per second.
    env.kube.set_rollout(NAMESPACE, DEPLOYMENT, mode="stuck")
    real = supervisor.run_task_in_process
    seen: list[dict[str, Any]] = []

    def observe(ti: Any, task: Any) -> Any:
        result = real(ti=ti, task=task)
        state = getattr(result.ti.state, "value", result.ti.state)
        if ti.task_id == "wait_rollout" and state == "deferred":
            # The task's process has returned; this is what a scheduler would see now.
            with create_session() as session:
                row = session.scalars(select(TaskInstance).where(TaskInstance.id == ti.id)).one()
                running = session.scalars(
                    select(TaskInstance).where(
                        TaskInstance.run_id == ti.run_id, TaskInstance.state == "running"
                    )
                ).all()
                trigger = session.get(Trigger, row.trigger_id) if row.trigger_id else None
                seen.append(
                    {
                        "state": getattr(row.state, "value", row.state),
                        "running": [t.task_id for t in running],
                        "trigger": trigger.classpath if trigger else None,
                        "rollout_done": env.kube.deployment(NAMESPACE, DEPLOYMENT)["status"].get(
                            "updatedReplicas", 0
                        )
                        == 2,
                    }
                )
            env.kube.set_rollout(NAMESPACE, DEPLOYMENT, step_seconds=1.0)
        return result

    monkeypatch.setattr(supervisor, "run_task_in_process", observe)

    dr = deploy(version=7, replicas=2)

    assert str(dr.state) == "success", task_states(dr)
    assert seen == [
        {
            "state": "deferred",
            "running": [],
            "trigger": "mlinfra.triggers.rollout.DeploymentRolloutTrigger",
            "rollout_done": False,
        }
    ]


def test_a_crash_looping_version_rolls_back_without_a_failed_request(env: DeployEnv) -> None:
    env.kube.fail_images(r":2\.15\.0$", "CrashLoopBackOff")

    with traffic(env.serving) as client:
        dr = deploy(version=5, image_tag="2.15.0")

    assert_rolled_back(env, dr, "CrashLoopBackOff")
    assert client.failures == []
    assert len(client.results) > 10


def test_a_missing_model_version_rolls_back_without_a_failed_request(env: DeployEnv) -> None:
    # Version 42 has no directory under the base path: the new pods start, never load it,
    # never pass readiness, and the Deployment exceeds its progress deadline.
    env.monkeypatch.setenv("MLINFRA_DEPLOY_PROGRESS_DEADLINE", "4s")

    with traffic(env.serving) as client:
        dr = deploy(version=42)

    record = assert_rolled_back(env, dr, "ProgressDeadlineExceeded")
    assert record.rollback["previous_version_available"] is True
    assert client.failures == []
    assert len(client.results) > 10


# --------------------------------------------------------------------------- names that look like numbers


@pytest.mark.parametrize("name", ["2024", "1e5", "half-plus-two"])
def test_templated_names_stay_strings_under_native_rendering(name: str) -> None:
    """render_template_as_native_obj would turn "2024" into 2024 and "1e5" into 100000.0."""
    dag = load_dag()
    rollback = dag.get_task("rollback")
    context = {"params": {"model": name, "auto_rollback": True}, "run_id": "123"}
    env = dag.get_template_env(force_sandboxed=False)
    assert rollback.render_template(rollback.model, context, jinja_env=env) == name
    assert rollback.render_template(rollback.deploy_run_id, context, jinja_env=env) == "123"


def test_a_padded_model_name_is_refused_by_the_form_and_by_the_first_task(env: DeployEnv) -> None:
    from airflow.sdk.exceptions import ParamValidationError

    from mlinfra.config import load_fleet
    from mlinfra.deploy.params import validate_request
    from mlinfra.exceptions import DeployRequestError

    with pytest.raises(ParamValidationError, match="is not one of"):
        deploy(model=" half-plus-two ", version=2)
    # A conf that reaches the first task some other way: refused there, not crashed later.
    with pytest.raises(DeployRequestError, match="model: must be one of half-plus-two"):
        validate_request({"model": " half-plus-two ", "version": 2, "image_tag": "2.14.1"}, load_fleet())
    assert list(env.kube.requests) == []
