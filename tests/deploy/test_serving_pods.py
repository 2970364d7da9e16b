"""The TF Serving stand-in per pod: each pod answers on its own address, from its own model.

A stable Deployment (version 1) and a canary Deployment (version 2, pod label
``track: canary``) run side by side, as issue 13's canary does; each pod is reached at
``status.podIP`` and its container ports, answers with its own version, counts its own
requests on its metrics page, and serves TF Serving's version labels.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.deploy.environment import DEPLOYMENT, NAMESPACE, DeployEnv
from tests.support.canary_pods import (
    CANARY,
    SERVED,
    apply,
    as_canary,
    hook_for,
    labelled_config,
    ports,
    ready_pod,
    rendered,
    start_stable_and_canary,
    wait_for,
)

pytestmark = pytest.mark.integration


def request_count(metrics_text: str) -> float:
    total = 0.0
    for line in metrics_text.splitlines():
        if line.startswith(":tensorflow:serving:request_count{") and 'status="OK"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def grpc_predict_version(pod: dict[str, Any], **spec: Any) -> tuple[int, list[float]]:
    """(served version, y) of one gRPC Predict of x=[1.0] to ``pod``; ``spec``: version or version_label."""
    import grpc

    from mlinfra.hooks.tf_serving_protos import load_protos, make_tensor_proto, tensor_to_list

    protos = load_protos()
    ip, grpc_port, _ = ports(pod)
    request = protos.predict_pb2.PredictRequest()
    request.model_spec.name = SERVED
    if "version_label" in spec:
        request.model_spec.version_label = spec["version_label"]
    request.inputs["x"].CopyFrom(make_tensor_proto([1.0], "float32"))
    with grpc.insecure_channel(f"{ip}:{grpc_port}") as channel:
        stub = protos.prediction_service_pb2_grpc.PredictionServiceStub(channel)
        response = stub.Predict(request, timeout=10)
    return response.model_spec.version.value, tensor_to_list(response.outputs["y"])


def test_each_pod_answers_on_its_own_address_with_its_own_version(env: DeployEnv) -> None:
    stable, canary = start_stable_and_canary(env)
    assert ports(stable)[0] != ports(canary)[0]
    assert grpc_predict_version(stable) == (1, [2.5])
    assert grpc_predict_version(canary) == (2, [2.5])
    with hook_for(stable) as hook:
        assert [s["version"] for s in hook.rest_model_status(SERVED)] == [1]
    with hook_for(canary) as hook:
        assert [s["version"] for s in hook.rest_model_status(SERVED)] == [2]
        assert hook.rest_predict(SERVED, instances=[1.0])["predictions"] == [2.5]


def test_each_pod_counts_only_its_own_requests(env: DeployEnv) -> None:
    stable, canary = start_stable_and_canary(env)
    with hook_for(stable) as s_hook, hook_for(canary) as c_hook:
        stable_before = request_count(s_hook.monitoring_metrics())
        canary_before = request_count(c_hook.monitoring_metrics())
        service_before = request_count(
            httpx.get(f"{env.serving.rest_url}/monitoring/prometheus/metrics").text
        )
        for _ in range(5):
            c_hook.predict(SERVED, {"x": [1.0]})
        assert request_count(c_hook.monitoring_metrics()) == canary_before + 5
        assert request_count(s_hook.monitoring_metrics()) == stable_before
    # The Service-level page of the stand-in counts every pod's requests.
    service_after = request_count(httpx.get(f"{env.serving.rest_url}/monitoring/prometheus/metrics").text)
    assert service_after >= service_before + 5


def test_version_faults_reach_only_the_pods_of_that_version(env: DeployEnv) -> None:
    stable, canary = start_stable_and_canary(env)
    env.serving.set_faults(version_faults={"2": {"output_offset": 1.0}})
    assert grpc_predict_version(stable) == (1, [2.5])
    assert grpc_predict_version(canary) == (2, [3.5])


def test_a_stopped_pod_stops_answering(env: DeployEnv) -> None:
    import grpc

    _, canary = start_stable_and_canary(env)
    assert grpc_predict_version(canary)[0] == 2
    env.kube.delete_deployment(NAMESPACE, CANARY)
    wait_for(lambda: canary["metadata"]["name"] not in env.serving.pods()["pods"], "the canary pod stopped")
    with pytest.raises(grpc.RpcError) as err:
        grpc_predict_version(canary)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE


# --------------------------------------------------------------------------- version labels


def test_version_labels_pin_either_version_on_a_canary_pod(env: DeployEnv) -> None:
    config = labelled_config([1, 2], {"stable": 1, "canary": 2})
    _, canary = start_stable_and_canary(env, config=config)
    assert grpc_predict_version(canary, version_label="stable")[0] == 1
    assert grpc_predict_version(canary, version_label="canary")[0] == 2
    assert grpc_predict_version(canary)[0] == 2  # unlabelled: the latest (highest) version
    ip, _, rest_port = ports(canary)
    with httpx.Client(base_url=f"http://{ip}:{rest_port}", timeout=10) as http:
        r = http.post(f"/v1/models/{SERVED}/labels/stable:predict", json={"instances": [1.0]})
        assert r.status_code == 200, r.text
        assert r.json() == {"predictions": [2.5]}
        status = http.get(f"/v1/models/{SERVED}/labels/canary").json()
        assert [s["version"] for s in status["model_version_status"]] == ["2"]


def test_an_unknown_label_is_refused_as_tf_serving_does(env: DeployEnv) -> None:
    import grpc

    config = labelled_config([1, 2], {"stable": 1, "canary": 2})
    _, canary = start_stable_and_canary(env, config=config)
    # ServerCore::GetModelVersionForLabel: INVALID_ARGUMENT, "Unrecognized servable version label".
    with pytest.raises(grpc.RpcError) as err:
        grpc_predict_version(canary, version_label="nope")
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details() == "Unrecognized servable version label: nope"
    ip, _, rest_port = ports(canary)
    r = httpx.post(
        f"http://{ip}:{rest_port}/v1/models/{SERVED}/labels/nope:predict", json={"instances": [1.0]}
    )
    assert r.status_code == 400
    assert r.json() == {"error": "Unrecognized servable version label: nope"}


def test_labels_at_start_up_need_allow_version_labels_for_unavailable_models(env: DeployEnv) -> None:
    apply(rendered(env, 1))
    ready_pod(env, DEPLOYMENT)
    config = labelled_config([2], {"stable": 2})
    apply(as_canary(rendered(env, 2), config=config, allow_unavailable_labels=False))

    def crash_message() -> str | None:
        for name in env.kube.pod_names(NAMESPACE, deployment=CANARY):
            waiting = (
                env.kube.pod(NAMESPACE, name)["status"]["containerStatuses"][0]["state"].get("waiting") or {}
            )
            if waiting.get("reason") == "CrashLoopBackOff":
                return str(waiting.get("message"))
        return None

    message = wait_for(crash_message, "the canary pod crash-looping")
    assert (
        "FAILED_PRECONDITION: Request to assign label to version 2 of model half_plus_two, "
        "which is not currently available for inference"
    ) in message


def _start_bare_pod(env: DeployEnv, name: str, config: str, *, allow: bool) -> httpx.Response:
    """A pod of the stand-in process without Kubernetes (its control API), polling its config often."""
    return httpx.post(
        f"{env.serving.rest_url}/_standin/pods/{name}",
        json={"config": config, "poll_seconds": 0.05, "allow_unavailable_labels": allow},
        timeout=30,
    )


def test_a_reload_may_not_move_a_label_to_a_version_that_is_not_available(env: DeployEnv) -> None:
    pod = "labels-reload"
    assert _start_bare_pod(env, pod, labelled_config([1], {"stable": 1}), allow=True).status_code == 201
    wait_for(lambda: env.serving.pods()["pods"][pod].get("1") == "AVAILABLE", "version 1 loaded")

    # Moving "stable" to version 3 (not on disk, never AVAILABLE) is refused even with the flag:
    # the flag admits only new labels, so that a swap never drops the label's requests.
    httpx.post(
        f"{env.serving.rest_url}/_standin/pods/{pod}/config",
        json={"config": labelled_config([1, 3], {"stable": 3})},
        timeout=30,
    ).raise_for_status()
    error = wait_for(lambda: env.serving.pods()["errors"].get(pod), "the reload refused")
    assert "Request to assign label to version 3 of model half_plus_two" in error
    assert env.serving.pods()["labels"][pod] == {"stable": 1}

    # A new label may point at a version still loading (with the flag).
    httpx.post(
        f"{env.serving.rest_url}/_standin/pods/{pod}/config",
        json={"config": labelled_config([1, 2], {"stable": 1, "canary": 2})},
        timeout=30,
    ).raise_for_status()
    wait_for(
        lambda: env.serving.pods()["labels"][pod] == {"stable": 1, "canary": 2}, "the new label accepted"
    )


def test_a_label_to_an_unavailable_version_fails_the_start_without_the_flag(env: DeployEnv) -> None:
    response = _start_bare_pod(env, "labels-strict", labelled_config([1], {"stable": 1}), allow=False)
    assert response.status_code == 422
    assert response.json()["error"] == (
        "Failed to start server. Error: FAILED_PRECONDITION: Request to assign label to version 1 "
        "of model half_plus_two, which is not currently available for inference"
    )


# --------------------------------------------------------------------------- traffic through the Service


def test_traffic_through_the_service_reaches_both_tracks_and_counts_failures(env: DeployEnv) -> None:
    from tests.support.traffic import GrpcTraffic

    start_stable_and_canary(env)
    wait_for(lambda: len(env.serving.pods()["endpoints"] or []) == 2, "both pods are Service endpoints")
    with GrpcTraffic(env.serving.grpc_target, SERVED, rate_per_s=100) as load:
        wait_for(lambda: load.report().sent >= 20, "20 requests sent")
    report = load.stop()
    assert report.failed == 0, report.describe()
    assert set(report.versions) == {1, 2}, report.describe()
    assert report.ok == report.sent

    env.serving.set_faults(version_faults={"2": {"error_rate": 1.0}})
    with GrpcTraffic(env.serving.grpc_target, SERVED, rate_per_s=100) as load:
        wait_for(lambda: load.report().errors["UNAVAILABLE"] >= 3, "failed requests counted")
    report = load.stop()
    assert set(report.versions) == {1}, report.describe()
    assert set(report.errors) == {"UNAVAILABLE"}
    assert report.first_errors[0] == "UNAVAILABLE: simulated failure (fault injection: error_rate)"
