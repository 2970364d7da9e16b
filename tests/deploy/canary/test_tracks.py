"""``mlinfra.deploy.canary.tracks`` against the stand-ins: one track's pods, their answers, their metrics."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mlinfra.deploy.canary.tracks import (
    PodAddress,
    predict_on_pods,
    scrape_track_samples,
    track_pods,
    track_selector,
)
from tests.deploy.environment import NAMESPACE, DeployEnv, deploy_env, ensure_version
from tests.support.canary_pods import CANARY, SERVED, start_stable_and_canary, wait_for
from tests.support.tf_serving_standin import StandinProcess

APP = "half-plus-two"
CONN = "tf_serving_half_plus_two"


def test_track_selectors() -> None:
    assert track_selector(APP, "canary") == "app=half-plus-two,track=canary"
    assert track_selector(APP, "stable") == "app=half-plus-two,track!=canary"
    with pytest.raises(ValueError, match="track must be one of stable, canary"):
        track_selector(APP, "shadow")  # type: ignore[arg-type]


def test_predict_on_no_pods_fails_every_request_without_raising() -> None:
    result = predict_on_pods([], SERVED, {"x": [1.0]}, requests=3)
    assert result.outputs == [None, None, None]
    assert len(result.errors) == 3


@pytest.fixture
def env(deploy_serving: tuple[StandinProcess, Path], tmp_path: Path) -> Iterator[DeployEnv]:
    server, base = deploy_serving
    server.clear_faults()
    ensure_version(base, 2)
    with deploy_env(tmp_path, server, base) as e:
        yield e


def core_v1() -> Any:
    from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook
    from kubernetes import client

    return client.CoreV1Api(KubernetesHook(conn_id="kubernetes_default").api_client)


@pytest.mark.integration
def test_track_pods_tell_stable_from_canary(env: DeployEnv) -> None:
    stable_pod, canary_pod = start_stable_and_canary(env)
    stable = track_pods(core_v1(), NAMESPACE, APP, "stable")
    canary = track_pods(core_v1(), NAMESPACE, APP, "canary")
    assert [p.name for p in stable] == [stable_pod["metadata"]["name"]]
    assert [p.name for p in canary] == [canary_pod["metadata"]["name"]]
    assert canary[0] == PodAddress(
        canary_pod["metadata"]["name"], canary_pod["status"]["podIP"], 8500, 8501, 2, True
    )
    assert stable[0].version == 1


@pytest.mark.integration
def test_track_pods_leave_out_pods_that_are_not_ready(env: DeployEnv) -> None:
    _, canary_pod = start_stable_and_canary(env)
    env.kube.set_pod_status(NAMESPACE, canary_pod["metadata"]["name"], ready=False)
    assert track_pods(core_v1(), NAMESPACE, APP, "canary") == []
    (listed,) = track_pods(core_v1(), NAMESPACE, APP, "canary", ready_only=False)
    assert listed.ready is False


@pytest.mark.integration
def test_predict_on_pods_reaches_the_track_s_own_version(env: DeployEnv) -> None:
    start_stable_and_canary(env)
    env.serving.set_faults(version_faults={"2": {"output_offset": 1.0}})
    inputs = [{"x": [1.0]}, {"x": [2.0, 4.0]}]
    stable = predict_on_pods(
        track_pods(core_v1(), NAMESPACE, APP, "stable"), SERVED, inputs, tf_serving_conn_id=CONN
    )
    canary = predict_on_pods(
        track_pods(core_v1(), NAMESPACE, APP, "canary"), SERVED, inputs, tf_serving_conn_id=CONN
    )
    assert stable.outputs == [{"y": [2.5]}, {"y": [3.0, 4.0]}]
    assert canary.outputs == [{"y": [3.5]}, {"y": [4.0, 5.0]}]
    assert len(canary.latencies_s) == 2
    assert canary.errors == []


@pytest.mark.integration
def test_predict_on_pods_records_errors_per_request(env: DeployEnv) -> None:
    start_stable_and_canary(env)
    env.serving.set_faults(version_faults={"2": {"error_rate": 1.0}})
    pods = track_pods(core_v1(), NAMESPACE, APP, "canary")
    result = predict_on_pods(pods, SERVED, {"x": [1.0]}, requests=4, tf_serving_conn_id=CONN)
    assert result.outputs == [None] * 4
    assert result.pods == [pods[0].name] * 4
    assert result.latencies_s == []
    assert result.errors[0] == f"{pods[0].name}: UNAVAILABLE: simulated failure (fault injection: error_rate)"


@pytest.mark.integration
def test_scrape_track_samples_labels_each_pod_s_own_counts(env: DeployEnv) -> None:
    start_stable_and_canary(env)
    canary = track_pods(core_v1(), NAMESPACE, APP, "canary")
    stable = track_pods(core_v1(), NAMESPACE, APP, "stable")
    predict_on_pods(canary, SERVED, {"x": [1.0]}, requests=3, tf_serving_conn_id=CONN)

    def ok_count(samples: list[Any]) -> float:
        return sum(
            s.value
            for s in samples
            if s.name == ":tensorflow:serving:request_count" and s.labels["status"] == "OK"
        )

    canary_samples = scrape_track_samples(canary, model=APP, track="canary", tf_serving_conn_id=CONN)
    stable_samples = scrape_track_samples(stable, model=APP, track="stable", tf_serving_conn_id=CONN)
    assert ok_count(canary_samples) == 3
    assert ok_count(stable_samples) == 0
    labels = next(s.labels for s in canary_samples if s.name == ":tensorflow:serving:request_count")
    assert labels["track"] == "canary"
    assert labels["version"] == "2"
    assert labels["pod"] == canary[0].name
    assert labels["model"] == APP
    assert env.kube.pod_names(NAMESPACE, deployment=CANARY) == [canary[0].name]


@pytest.mark.integration
def test_a_pod_that_does_not_answer_is_left_out_of_the_scrape(env: DeployEnv) -> None:
    start_stable_and_canary(env)
    (canary,) = track_pods(core_v1(), NAMESPACE, APP, "canary")
    gone = PodAddress("gone", canary.ip, canary.grpc_port, 1, 2, True)  # port 1: nothing listens
    samples = scrape_track_samples([gone, canary], model=APP, track="canary", tf_serving_conn_id=CONN)
    assert {s.labels["pod"] for s in samples} == {canary.name}


@pytest.mark.integration
def test_the_sweep_reads_each_track_s_pods_while_a_canary_runs(env: DeployEnv) -> None:
    """The serving collector: per pod, labelled track/version/pod, and no mixed Service scrape."""
    from mlinfra.collectors import serving
    from mlinfra.config import load_fleet
    from mlinfra.deploy.canary.records import CanaryRecords
    from mlinfra.store import MetricsStore

    fleet = load_fleet(env.fleet_file)
    model = next(m for m in fleet.models if m.kubernetes.deployment == APP)
    stable_pod, canary_pod = start_stable_and_canary(env)
    records = CanaryRecords(MetricsStore.from_url(env.store_url))
    records.store.create_schema()
    records.start("manual__canary", model=model.name, stable_version=1, canary_version=2, steps=3)
    predict_on_pods(
        track_pods(core_v1(), NAMESPACE, APP, "canary"),
        SERVED,
        {"x": [1.0]},
        requests=2,
        tf_serving_conn_id=CONN,
    )

    result = serving.run(fleet)
    tf = [s for s in result.samples if s.name.startswith(":tensorflow:") and s.labels["model"] == model.name]
    assert tf, result.errors
    assert {(s.labels["track"], s.labels["version"], s.labels["pod"]) for s in tf} == {
        ("stable", "1", stable_pod["metadata"]["name"]),
        ("canary", "2", canary_pod["metadata"]["name"]),
    }
    ok = {
        s.labels["track"]: s.value
        for s in tf
        if s.name == ":tensorflow:serving:request_count" and s.labels.get("status") == "OK"
    }
    assert ok.get("canary") == 2
    assert ok.get("stable", 0) == 0
    assert result.errors == []
    assert not [note for note in result.skipped if "canary" in note]

    # The canary's pods gone while its run has not ended (a run that died before its
    # conclusion): the sweep reads through the Service again, without track labels.
    env.kube.delete_deployment(NAMESPACE, CANARY)
    wait_for(
        lambda: not track_pods(core_v1(), NAMESPACE, APP, "canary", ready_only=False), "canary pods gone"
    )
    after = [s for s in serving.run(fleet).samples if s.name.startswith(":tensorflow:")]
    assert after
    assert all("track" not in s.labels for s in after)
