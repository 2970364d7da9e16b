"""model_rollback end to end: a version's recorded spec re-applied and proven like a deploy."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.dags.test_model_deploy import (
    asset_events,
    deploy,
    predict,
    serving_states,
    task_states,
)
from tests.deploy.environment import DEPLOYMENT, MODEL, NAMESPACE, DeployEnv, deploy_env, ensure_version
from tests.support.tf_serving_standin import StandinProcess

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration


@pytest.fixture
def env(airflow_db: Path, deploy_serving: tuple[StandinProcess, Path], tmp_path: Path) -> Iterator[DeployEnv]:
    server, base = deploy_serving
    server.clear_faults()
    for version in range(1, 5):
        ensure_version(base, version)
    with deploy_env(tmp_path, server, base) as e:
        e.seed(version=1)
        yield e


def roll_back(**conf: Any) -> Any:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags" / "model_rollback.py"))
    assert bag.import_errors == {}
    return bag.dags["model_rollback"].test(run_conf={"model": MODEL, **conf})


def config_map_of(env: DeployEnv) -> str:
    template = env.kube.deployment(NAMESPACE, DEPLOYMENT)["spec"]["template"]
    return template["spec"]["volumes"][0]["configMap"]["name"]


def test_rollback_to_the_last_good_version_reapplies_its_recorded_spec(env: DeployEnv) -> None:
    assert str(deploy(version=2).state) == "success"
    v2_config = config_map_of(env)
    assert str(deploy(version=3).state) == "success"

    dr = roll_back(reason="v3 answers slowly")

    assert str(dr.state) == "success", task_states(dr)
    record = env.records().get(dr.run_id)
    assert record.outcome == "succeeded"
    assert record.version == 2
    assert record.applied["manual_rollback"]["reason"] == "v3 answers slowly"
    assert record.smoke["passed"] is True
    assert config_map_of(env) == v2_config  # the version's own immutable ConfigMap, again
    env.wait_serving(2, 1)
    assert serving_states(env) == {2: "AVAILABLE"}
    assert predict() == [2.5, 3.0, 4.5]
    assert asset_events(dr.run_id) == ["mlinfra://models/half-plus-two"]


def test_a_version_that_never_succeeded_is_refused_before_any_write(env: DeployEnv) -> None:
    assert str(deploy(version=2).state) == "success"
    writes = len(env.kube.writes())

    dr = roll_back(version=4, reason="try it")

    assert str(dr.state) == "failed"
    assert task_states(dr)["choose_version"] == "failed"
    assert len(env.kube.writes()) == writes
    record = env.records().get(dr.run_id)
    assert "4 of half-plus-two never deployed successfully" in record.reason
    assert "successful deploy: 2" in record.reason


def test_a_reason_is_required(env: DeployEnv) -> None:
    from airflow.sdk.exceptions import ParamValidationError

    from mlinfra.config import load_fleet
    from mlinfra.deploy.manual_rollback import _problems

    with pytest.raises(ParamValidationError, match="reason"):
        roll_back(reason="")
    _, problems = _problems({"model": MODEL}, load_fleet())
    assert problems == ["reason: required (a text of 3 to 500 characters saying why)"]
