"""The model_deploy steps' canary parts: the strategy seam, the canary render, the outcomes."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from unittest import mock

import pytest

from mlinfra.config import load_fleet
from mlinfra.deploy.records import DeploymentRecords
from mlinfra.deploy.steps import (
    deploy_strategy,
    finish,
    record_canary_outcome,
    render_plan,
    validate_and_record,
)
from mlinfra.exceptions import DeployFailed, ManifestError
from mlinfra.store import MetricsStore
from tests.support.deploy_fakes import FakeCluster
from tests.support.saved_model import PROJECT_ROOT

MODEL = "half-plus-two"
ROOT_FLEET = PROJECT_ROOT / "include" / "fleet.yaml"
STRATEGY = {
    "steps": [{"weight": 20}, {"pause": "approval"}],
    "approval_timeout": 600.0,
    "canary_service": True,
}


@pytest.fixture
def records(tmp_path: Path) -> DeploymentRecords:
    return DeploymentRecords(MetricsStore.from_url(f"sqlite:///{tmp_path / 'store.db'}"))


def test_the_strategy_is_the_models_deploy_section() -> None:
    from mlinfra.deploy.canary.spec import DeployStrategy

    model = load_fleet(ROOT_FLEET).model(MODEL)
    assert deploy_strategy(model) is None  # the shipped fleet deploys rolling
    canary = model.model_copy(
        update={
            "deploy": DeployStrategy.model_validate(
                {
                    "strategy": "canary",
                    "steps": [{"weight": 20}, {"pause": "approval"}],
                    "approval_timeout": "5m",
                    "canary_service": False,
                }
            )
        }
    )
    assert deploy_strategy(canary) == {
        "steps": [{"weight": 20}, {"pause": "approval"}],
        "approval_timeout": 300.0,
        "canary_service": False,
    }


def plan_for(fleet: Any, records: DeploymentRecords, version: int) -> dict[str, Any]:
    return validate_and_record(
        {"model": MODEL, "version": version, "image_tag": "2.14.1"},
        fleet=fleet,
        records=records,
        run_id=f"manual__{version}",
        triggered_by="ana",
    )


def render(fleet: Any, records: DeploymentRecords, cluster: FakeCluster, version: int) -> dict[str, Any]:
    with mock.patch("mlinfra.deploy.steps.deploy_strategy", return_value=dict(STRATEGY)):
        return render_plan(
            plan_for(fleet, records, version),
            fleet=fleet,
            client=cluster,
            records=records,  # type: ignore[arg-type]
        )


def test_a_first_deploy_goes_out_at_once(fleet: Any, records: DeploymentRecords) -> None:
    rendered = render(fleet, records, FakeCluster(), 1)
    assert (rendered["strategy"], rendered["canary"]) == ("rolling", None)


def test_a_canary_next_to_the_running_stable(fleet: Any, records: DeploymentRecords) -> None:
    cluster = FakeCluster()
    for obj in render(fleet, records, cluster, 1)["objects"]:
        cluster.put(
            {**obj, "spec": {**obj.get("spec", {}), "replicas": 3}} if obj["kind"] == "Deployment" else obj
        )
    rendered = render(fleet, records, cluster, 2)
    assert rendered["strategy"] == "canary"
    canary = rendered["canary"]
    assert (canary["stable_version"], canary["stable_replicas"]) == (1, 3)
    assert canary["steps"] == STRATEGY["steps"]
    assert canary["approval_timeout"] == 600.0
    deployment = next(o for o in canary["objects"] if o["kind"] == "Deployment")
    assert deployment["metadata"]["name"].endswith("-canary")
    assert deployment["spec"]["replicas"] == 0  # the first weight step sets it
    # The stable objects are rendered too (applied at promotion), at the new version.
    stable = next(o for o in rendered["objects"] if o["kind"] == "Deployment")
    assert stable["spec"]["template"]["metadata"]["labels"]["version"] == "2"
    assert "# canary" in rendered["diff"]
    assert cluster.written() == []  # rendering only reads


def test_a_canary_lower_than_the_stable_is_refused_and_recorded(
    fleet: Any, records: DeploymentRecords
) -> None:
    cluster = FakeCluster()
    for obj in render(fleet, records, cluster, 3)["objects"]:
        cluster.put(obj)
    with pytest.raises(ManifestError, match=r"higher version than the stable \(3\), got 2"):
        render(fleet, records, cluster, 2)
    record = records.get("manual__2")
    assert record is not None
    assert record.outcome == "failed"
    assert "higher version" in (record.reason or "")


def test_a_deploy_whose_promote_failed_says_its_version_serves(records: DeploymentRecords) -> None:
    records.start("r3", model=MODEL, version=2)
    with pytest.raises(
        DeployFailed, match=r"version 2 is serving \(its smoke test passed\), but promote did not"
    ):
        finish(records, "r3", smoke={"passed": True})
    records.start("r4", model=MODEL, version=2)  # failed before: nothing says it serves
    with pytest.raises(DeployFailed, match=r"version 2 failed: the deploy did not complete"):
        finish(records, "r4", smoke={"passed": False})


def test_canary_outcomes_close_the_deploy(records: DeploymentRecords) -> None:
    records.start("r1", model=MODEL, version=2)
    record_canary_outcome(records, "r1", "promoted", "promoted to version 2")
    assert finish(records, "r1")["outcome"] == "succeeded"

    records.start("r2", model=MODEL, version=2)
    record_canary_outcome(records, "r2", "aborted", "analysis errors failed: error-rate 0.5")
    with pytest.raises(
        DeployFailed,
        match=r"version 2 aborted \(the stable Deployment was not changed\): canary aborted: analysis errors failed",
    ):
        finish(records, "r2")
    with pytest.raises(ValueError, match="promoted or aborted"):
        record_canary_outcome(records, "r2", "running", None)
