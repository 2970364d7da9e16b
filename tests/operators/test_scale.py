"""ScaleDeploymentOperator against the Kubernetes stand-in: patch, defer, audit, conflicts, 403, timeout."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowFailException, TaskDeferred

from mlinfra.exceptions import ScaleFailed
from mlinfra.operators.scale import ScaleDeploymentOperator
from mlinfra.scaling.records import ScaleRecords
from mlinfra.store import MetricsStore
from mlinfra.triggers.scale import DeploymentScaleTrigger
from tests.support.k8s_standin import KubeStandIn

pytestmark = pytest.mark.integration
CONTEXT = {"run_id": "scheduled__2026-11-20T12:00:00+00:00"}


def operator(**kw: Any) -> ScaleDeploymentOperator:
    args: dict[str, Any] = {
        "task_id": "scale", "model": "half-plus-two", "namespace": "serving", "deployment": "half-plus-two",
        "replicas": 3, "reason": "scale up 1 -> 3: metric 300 vs target 100 (ratio 3.00)", "trigger": "metric",
        "from_replicas": 1, "decided_at": 1_800_000_000.0, "decision": {"action": "scale"}, "poll_interval": 0.05,
        "timeout": 20,
    }  # fmt: skip
    args.update(kw)
    return ScaleDeploymentOperator(**args)


def run_to_end(op: ScaleDeploymentOperator) -> dict[str, Any]:
    """execute(), then the trigger (as the triggerer would) and execute_complete()."""
    try:
        return op.execute(CONTEXT) or {}
    except TaskDeferred as deferred:
        trigger = deferred.trigger
        classpath, kwargs = trigger.serialize()
        assert classpath == "mlinfra.triggers.scale.DeploymentScaleTrigger"
        again = DeploymentScaleTrigger(**kwargs)  # what the triggerer runs: the serialized form

        async def first() -> Any:
            return await anext(again.run())

        event = asyncio.run(first()).payload
        method = getattr(op, deferred.method_name)
        result: dict[str, Any] = method(CONTEXT, event, **(deferred.kwargs or {}))
        return result


def events(store: MetricsStore) -> list[dict[str, Any]]:
    return ScaleRecords(store).events("half-plus-two")


def test_scales_waits_and_audits(kube: KubeStandIn, store_env: MetricsStore) -> None:
    kube.add_deployment("serving", "half-plus-two", replicas=1)
    kube.set_rollout("serving", "half-plus-two", step_seconds=0.2)  # a pod every 0.2 s: it must defer
    result = run_to_end(operator())
    assert result["outcome"] == "available"
    assert (result["from"], result["to"]) == (1, 3)
    dep = kube.deployment("serving", "half-plus-two")
    assert dep["spec"]["replicas"] == 3
    assert dep["status"]["availableReplicas"] == 3
    (event,) = events(store_env)
    assert (event["from_replicas"], event["to_replicas"], event["trigger"], event["outcome"]) == (
        1,
        3,
        "metric",
        "available",
    )
    assert event["ts"] == 1_800_000_000.0
    assert event["dry_run"] is False
    assert event["run_id"] == CONTEXT["run_id"]
    assert event["decision"] == {"action": "scale"}
    assert event["message"] == "serving/half-plus-two: 3/3 replicas available"


def test_scale_down(kube: KubeStandIn, store_env: MetricsStore) -> None:
    kube.add_deployment("serving", "half-plus-two", replicas=4)
    result = run_to_end(operator(replicas=2, from_replicas=4))
    assert result["outcome"] == "available"
    assert len(kube.pod_names("serving", deployment="half-plus-two")) == 2


def test_conflicts_are_retried(kube: KubeStandIn, store_env: MetricsStore) -> None:
    kube.add_deployment("serving", "half-plus-two", replicas=1)
    kube.inject_fault("PATCH", r"/scale$", 409, times=2)
    assert run_to_end(operator())["outcome"] == "available"
    assert len([w for w in kube.writes() if w.path.endswith("/scale")]) == 3


def test_forbidden_fails_naming_namespace_and_verb(kube: KubeStandIn, store_env: MetricsStore) -> None:
    kube.add_deployment("serving", "half-plus-two", replicas=1)
    kube.inject_fault("PATCH", r"/scale$", 403)
    with pytest.raises(AirflowFailException) as e:
        operator().execute(CONTEXT)
    assert "may not patch deployments/scale (API group 'apps') in namespace 'serving'" in str(e.value)
    (event,) = events(store_env)
    assert event["outcome"] == "failed"
    assert "patch deployments/scale" in event["message"]


def test_timeout_when_the_replicas_never_come(kube: KubeStandIn, store_env: MetricsStore) -> None:
    kube.add_deployment("serving", "half-plus-two", replicas=1)
    kube.set_rollout("serving", "half-plus-two", mode="stuck")
    with pytest.raises(
        AirflowFailException, match=r"3 replicas not available by the deadline \(serving/half-plus-two: 1/3"
    ):
        run_to_end(operator(timeout=0.5))
    (event,) = events(store_env)
    assert event["outcome"] == "timeout"


def test_slow_api_times_out_the_request(kube: KubeStandIn, store_env: MetricsStore) -> None:
    kube.add_deployment("serving", "half-plus-two", replicas=1)
    kube.inject_fault("PATCH", r"/scale$", None, delay=2.0)  # answers, but too late
    with pytest.raises(Exception, match="(?i)timed? ?out"):
        operator(request_timeout=0.5).execute(CONTEXT)
    assert kube.deployment("serving", "half-plus-two")["spec"]["replicas"] in (1, 3)


def test_dry_run_records_without_patching(kube: KubeStandIn, store_env: MetricsStore) -> None:
    kube.add_deployment("serving", "half-plus-two", replicas=1)
    result = operator(record_only=True).execute(CONTEXT)
    assert result is not None
    assert result["outcome"] == "dry_run"
    assert kube.writes() == []
    (event,) = events(store_env)
    assert (event["dry_run"], event["outcome"], event["to_replicas"]) == (True, "dry_run", 3)


def test_owned_deployment_is_left_alone(kube: KubeStandIn, store_env: MetricsStore) -> None:
    kube.add_deployment("serving", "half-plus-two", replicas=1)
    kube.install_keda()
    kube.add_scaled_object("serving", "hpt", target="half-plus-two")
    result = operator().execute(CONTEXT)
    assert result is not None
    assert result["outcome"] == "skipped"
    with pytest.raises(AirflowFailException, match="owned by ScaledObject/hpt"):
        operator(trigger="manual", from_replicas=None).execute({"run_id": "manual__1"})
    assert kube.writes() == []


def test_someone_else_scaled_it_meanwhile(kube: KubeStandIn, store_env: MetricsStore) -> None:
    kube.add_deployment("serving", "half-plus-two", replicas=2)  # the plan saw 1
    result = operator().execute(CONTEXT)
    assert result is not None
    assert result["outcome"] == "superseded"
    assert kube.writes() == []


def test_a_retry_only_waits(kube: KubeStandIn, store_env: MetricsStore) -> None:
    kube.add_deployment("serving", "half-plus-two", replicas=3)  # the first try patched already
    result = run_to_end(operator())
    assert result["outcome"] == "available"
    assert result["from"] == 1
    assert kube.writes() == []


def test_error_event_is_retryable_and_bad_arguments_fail(kube: KubeStandIn, store_env: MetricsStore) -> None:
    op = operator()
    with pytest.raises(ScaleFailed, match="HTTP 404"):
        op.execute_complete(
            CONTEXT, {"status": "error", "message": "deployment serving/x: HTTP 404"}, before=1
        )
    with pytest.raises(AirflowFailException, match="replicas must be an integer >= 0"):
        operator(replicas="many").execute(CONTEXT)
    with pytest.raises(AirflowFailException, match="reason is required"):
        operator(reason=" ").execute(CONTEXT)


def test_a_hold_placed_after_the_decision_wins(kube: KubeStandIn, store_env: MetricsStore) -> None:
    """The sweep planned 2 -> 1; meanwhile a manual scale to 2 with a hold found 2 already there."""
    import time

    kube.add_deployment("serving", "half-plus-two", replicas=2)
    ScaleRecords(store_env).record_event(
        run_id="manual__launch", model="half-plus-two", namespace="serving", deployment="half-plus-two",
        from_replicas=2, to_replicas=2, reason="launch", trigger="manual", dry_run=False,
        ts=time.time() - 1, outcome="unchanged", decision={"request": {}, "hold_until": time.time() + 3600},
    )  # fmt: skip
    result = run_to_end(operator(replicas=1, from_replicas=2, reason="scale down 2 -> 1: idle"))
    assert result["outcome"] == "superseded"
    assert "held at 2 replicas by a manual scale until " in result["message"]
    assert kube.deployment("serving", "half-plus-two")["spec"]["replicas"] == 2
    assert not [w for w in kube.writes() if w.path.endswith("/scale")]
    assert [e["outcome"] for e in events(store_env)] == ["unchanged", "superseded"]
    # A manual scale is the hold's own kind: it is never refused by a hold.
    assert run_to_end(operator(replicas=3, from_replicas=2, trigger="manual"))["outcome"] == "available"
