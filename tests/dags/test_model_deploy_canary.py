"""Canary deploys end to end: model_deploy with ``deploy.strategy: canary`` under dag.test().

The same world as tests/dags/test_model_deploy.py (real Airflow with in-process triggers,
the cncf provider's hook, the Kubernetes stand-in's kubelet running each pod as a TF
Serving server of its own), where stable and canary pods answer separately on their
own pod IPs, so the analysis sees each track as it is. Each test runs gRPC traffic
through the Service for the whole run and checks that not one request failed because
of the rollout itself; an abort must leave the stable Deployment's spec byte-identical.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.environment import DEPLOYMENT, MODEL, NAMESPACE, DeployEnv, deploy_env, ensure_version
from tests.support.tf_serving_standin import StandinProcess
from tests.support.traffic import GrpcTraffic

ROOT = Path(__file__).resolve().parents[2]
CANARY = f"{DEPLOYMENT}-canary"
pytestmark = [pytest.mark.integration, pytest.mark.slow]

# Analyses with short intervals (the stand-in's cluster runs 10x faster than a real one).
ANALYSES = {
    "errors": {
        "metrics": [
            {
                "name": "error-ratio",
                # `or vector(0)`: with no failed request the numerator has no series at all.
                "query": (
                    '(sum(rate(:tensorflow:serving:request_count{model="{{ model }}",track="{{ track }}",'
                    'status!="OK"}[1m])) or vector(0)) / sum(rate(:tensorflow:serving:request_count{'
                    'model="{{ model }}",track="{{ track }}"}[1m]))'
                ),
                "failure": "result > 0.05",
                "interval": "2s",
                "count": 1,
            }
        ]
    },
    "golden": {"metrics": [{"name": "golden", "golden": {"file": "golden/half_plus_two.json"}}]},
    "latency": {
        "metrics": [
            {
                "name": "latency-vs-stable",
                "latency": {"requests": 60},
                # A fixed threshold every version here passes: 1 s per request.
                "failure": "result > 1.0",
                "compare": {"max_relative_increase": 0.1, "min_samples": 50, "alpha": 0.05},
            }
        ]
    },
}


def canary_fleet(env: DeployEnv, steps: list[dict[str, Any]], *, approval_timeout: str = "10m") -> None:
    """The test fleet with half-plus-two deploying by canary ``steps``."""
    fleet = yaml.safe_load(env.fleet_file.read_text())
    fleet["analyses"] = ANALYSES
    for model in fleet["models"]:
        if model["name"] == MODEL:
            model["deploy"] = {"strategy": "canary", "steps": steps, "approval_timeout": approval_timeout}
    golden = env.fleet_file.parent / "golden"
    golden.mkdir(exist_ok=True)
    (golden / "half_plus_two.json").write_text(
        (ROOT / "include" / "golden" / "half_plus_two.json").read_text()
    )
    env.fleet_file.write_text(yaml.safe_dump(fleet, sort_keys=False))


@pytest.fixture
def env(airflow_db: Path, deploy_serving: tuple[StandinProcess, Path], tmp_path: Path) -> Iterator[DeployEnv]:
    server, base = deploy_serving
    server.clear_faults()
    for version in range(1, 4):
        ensure_version(base, version)
    with deploy_env(tmp_path, server, base) as e:
        e.seed(version=1)
        yield e


def deploy(**conf: Any) -> Any:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags" / "model_deploy.py"))
    assert bag.import_errors == {}
    return bag.dags["model_deploy"].test(run_conf={"model": MODEL, "image_tag": "2.14.1", **conf})


def task_states(dr: Any) -> dict[str, str]:
    from airflow.utils.session import create_session

    with create_session() as session:
        return {ti.task_id: str(ti.state) for ti in dr.get_task_instances(session=session)}


def stable_spec(env: DeployEnv) -> str:
    """The stable Deployment's spec as the API server holds it (bytes to compare)."""
    return json.dumps(env.kube.deployment(NAMESPACE, DEPLOYMENT)["spec"], sort_keys=True)


def canary_left(env: DeployEnv) -> list[str]:
    return [
        f"{kind}/{name}"
        for kind, api in (("Deployment", "apps/v1"), ("Service", "v1"))
        for name in (CANARY,)
        if env.kube.get_object(api, kind, NAMESPACE, name) is not None
    ]


def records(env: DeployEnv, run_id: str) -> tuple[Any, list[Any], Any]:
    from mlinfra.deploy.canary.records import CanaryRecords
    from mlinfra.store import MetricsStore

    store = MetricsStore.from_url(env.store_url)
    canary = CanaryRecords(store)
    run = next(r for r in canary.runs_for_model(MODEL) if r.run_id == run_id)
    return run, canary.measurements(run_id), env.records().get(run_id)


def traffic(env: DeployEnv) -> GrpcTraffic:
    return GrpcTraffic(env.serving.grpc_target, "half_plus_two", rate_per_s=20).start()


def test_a_good_canary_is_promoted_through_three_weights(env: DeployEnv) -> None:
    canary_fleet(
        env,
        [
            {"weight": 20},
            {"analysis": "errors"},
            {"weight": 50},
            {"analysis": "golden"},
            {"weight": 60},
            {"pause": "1s"},
        ],
    )
    load = traffic(env)
    dr = deploy(version=2)
    report = load.stop()

    states = task_states(dr)
    assert str(dr.state) == "success", states
    assert states["canary_segment_0"] == "success", states
    assert states["canary_conclude"] == "success", states
    run, measurements, record = records(env, dr.run_id)
    assert run.phase == "promoted", run
    assert record.outcome == "succeeded", record
    assert {m.metric: m.verdict for m in measurements} == {
        "error-ratio": "successful",
        "golden": "successful",
    }
    # The stable now serves version 2; the canary objects are gone.
    template = env.kube.deployment(NAMESPACE, DEPLOYMENT)["spec"]["template"]
    assert template["metadata"]["labels"]["version"] == "2"
    assert canary_left(env) == []
    env.wait_serving(2, 1)
    assert report.failed == 0, report.describe()
    assert set(report.versions) == {1, 2}, report.describe()  # both answered while the canary ran


def assert_aborted(env: DeployEnv, dr: Any, before: str, reason: str) -> tuple[Any, list[Any]]:
    states = task_states(dr)
    assert str(dr.state) == "failed", states
    run, measurements, record = records(env, dr.run_id)
    assert run.phase == "aborted", run
    assert record.outcome == "aborted", record
    assert reason in (run.reason or ""), run.reason
    assert stable_spec(env) == before  # the stable was never written
    assert canary_left(env) == []
    env.wait_serving(1, 1)
    return run, measurements


def test_a_canary_with_errors_is_aborted_by_the_threshold(env: DeployEnv) -> None:
    canary_fleet(env, [{"weight": 50}, {"analysis": "errors"}, {"weight": 60}])
    env.serving.set_faults(version_faults={"2": {"error_rate": 1.0}})
    before = stable_spec(env)
    load = traffic(env)
    dr = deploy(version=2)
    report = load.stop()

    _, measurements = assert_aborted(env, dr, before, "error-ratio")
    assert [m.verdict for m in measurements] == ["failed"]
    # Only the canary's own injected errors reached clients; the stable served the rest.
    assert set(report.errors) <= {"UNAVAILABLE"}, report.describe()
    assert report.versions[1] > 0


def test_a_slower_canary_is_aborted_by_the_comparison_with_the_stable(env: DeployEnv) -> None:
    """30 % slower than the stable: every fixed threshold passes, the baseline comparison does not."""
    canary_fleet(env, [{"weight": 50}, {"analysis": "latency"}])
    env.serving.set_faults(version_faults={"1": {"predict_delay": 0.02}, "2": {"predict_delay": 0.026}})
    before = stable_spec(env)
    load = traffic(env)
    dr = deploy(version=2)
    report = load.stop()

    _, measurements = assert_aborted(env, dr, before, "latency-vs-stable")
    (m,) = measurements
    assert m.verdict == "failed", m
    assert m.value < 1.0  # the fixed threshold (result > 1.0 s) held
    comparison = m.detail["comparison"]
    assert comparison["relative_increase"] > 0.1, comparison
    assert comparison["p_value"] < 0.05, comparison
    assert report.failed == 0, report.describe()


def test_a_fast_but_wrong_canary_is_aborted_by_golden_agreement(env: DeployEnv) -> None:
    canary_fleet(env, [{"weight": 50}, {"analysis": "golden"}])
    env.serving.set_faults(version_faults={"2": {"output_offset": 1.0}})
    before = stable_spec(env)
    load = traffic(env)
    dr = deploy(version=2)
    report = load.stop()

    _, measurements = assert_aborted(env, dr, before, "golden")
    (m,) = measurements
    assert m.verdict == "failed"
    assert m.detail["golden"]["agreement_rate"] == 0.0, m.detail
    assert report.failed == 0, report.describe()  # wrong answers are answers: no request failed


# Approval gates are not run end to end here: Airflow 3.3 parks a Human-in-the-loop task in
# AWAITING_INPUT and dag.test() waits for it with no scheduler to resolve a timeout, so a
# gate that is not resumed hangs the run for ever. Answering it the way the REST endpoint
# does (record the response, then handle_event_submit) promoted the canary when the test
# ran alone, but the run stayed waiting when it ran after the others (not yet understood).
# They run end to end against `make demo`'s real scheduler in tests/ui/test_browser.py
# (test_08..test_10: approved, rejected in the Required Actions view, timed out), and as
# units in tests/operators/test_canary_approval_unit.py and test_canary_unit.py.
