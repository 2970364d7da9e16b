"""CanaryRolloutOperator / CanaryConcludeOperator with a fake cluster and real SQLite records.

Every branch without servers: the deferrals, what a retry does, abort (the stable is never
written before a promotion, and put back after one) and promotion.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from airflow.providers.standard.triggers.temporal import DateTimeTrigger
from airflow.sdk.exceptions import AirflowFailException, TaskDeferred

from mlinfra.deploy.canary.records import CanaryRecords
from mlinfra.deploy.canary.rollout import AnalysisRound, MeasureRequest
from mlinfra.deploy.records import DeploymentRecords
from mlinfra.operators.canary import CanaryConcludeOperator, CanaryRolloutOperator
from mlinfra.store import MetricsStore
from mlinfra.triggers.rollout import DeploymentRolloutTrigger
from tests.support.deploy_fakes import FakeCluster

HOOK = "airflow.providers.cncf.kubernetes.hooks.kubernetes.KubernetesHook"
RUN = "manual__canary-2"
NS = "serving"


def deployment(name: str, version: int, replicas: int, track: str | None = None) -> dict[str, Any]:
    labels = {"app": "half-plus-two", "version": str(version), **({"track": track} if track else {})}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": NS, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "half-plus-two", **({"track": track} if track else {})}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"image": f"serving:{version}"}]},
            },
        },
    }


def objects(name: str, version: int, replicas: int, track: str | None = None) -> list[dict[str, Any]]:
    meta = {"namespace": NS, "labels": {"app": "half-plus-two"}}
    return [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {**meta, "name": f"{name}-config-v{version}"}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {**meta, "name": name}, "spec": {"ports": []}},
        deployment(name, version, replicas, track),
    ]


STEPS = [{"weight": 25}, {"pause": 0}, {"analysis": "errors"}, {"pause": "approval"}, {"weight": 50}]
PLAN = {"run_id": RUN, "model": "half-plus-two", "version": 2, "kubernetes_conn_id": "kubernetes_default"}
RENDERED = {
    "objects": objects("half-plus-two", 2, 3),
    "canary": {
        "objects": objects("half-plus-two-canary", 2, 1, track="canary"),
        "steps": STEPS,
        "stable_version": 1,
        "stable_replicas": 3,
    },
}


@pytest.fixture
def cluster() -> Iterator[FakeCluster]:
    standin = FakeCluster()
    for obj in objects("half-plus-two", 1, 3):  # the stable, live before the canary
        standin.put(obj)
    with mock.patch(HOOK), mock.patch("mlinfra.deploy.kube.ManifestClient", return_value=standin):
        yield standin


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[tuple[CanaryRecords, DeploymentRecords]]:
    store = MetricsStore.from_url(f"sqlite:///{tmp_path / 'store.db'}")
    canary, deploys = CanaryRecords(store), DeploymentRecords(store)
    deploys.start(RUN, model="half-plus-two", version=2)
    with (
        mock.patch("mlinfra.deploy.canary.records.CanaryRecords.from_connection", return_value=canary),
        mock.patch("mlinfra.deploy.records.DeploymentRecords.from_connection", return_value=deploys),
    ):
        yield canary, deploys


class Analysis:
    """The measure_step seam: answers the phases it is given, one round each, and keeps the requests."""

    def __init__(self, *phases: str) -> None:
        self.phases = list(phases)
        self.requests: list[MeasureRequest] = []

    def __call__(self, request: MeasureRequest) -> AnalysisRound:
        self.requests.append(request)
        phase = self.phases.pop(0)
        verdict = {"running": "successful", "successful": "successful"}.get(phase, "failed")
        return AnalysisRound(
            [{"metric": "error-rate", "verdict": verdict, "value": 0.5 if verdict == "failed" else 0.0,
              "stable_value": 0.0, "detail": {"phase": phase}}],
            phase,
            next_in_seconds=30.0,
            message="error-rate 0.5 >= 0.01" if verdict == "failed" else "",
        )  # fmt: skip


def operator(segment: int = 0, analysis: Any = None, cls: type = CanaryRolloutOperator) -> Any:
    return cls(
        task_id=f"canary_segment_{segment}",
        segment=segment,
        plan=copy.deepcopy(PLAN),
        rendered=copy.deepcopy(RENDERED),
        measure_step=analysis or Analysis(),
    )


def stable_writes(cluster: FakeCluster) -> list[tuple[str, str]]:
    return [c for c in cluster.written() if "canary" not in c[1]]


def test_first_weight_applies_the_canary_and_defers_on_its_rollout(
    cluster: FakeCluster, stores: tuple[CanaryRecords, DeploymentRecords]
) -> None:
    with pytest.raises(TaskDeferred) as e:
        operator().execute({})
    trigger = e.value.trigger
    assert isinstance(trigger, DeploymentRolloutTrigger)
    assert (trigger.name, trigger.namespace, trigger.min_generation) == ("half-plus-two-canary", NS, 6)
    assert trigger.pod_labels == {"app": "half-plus-two", "version": "2", "track": "canary"}
    assert (e.value.method_name, e.value.kwargs) == ("resume_scaled", {"step": 0})
    # 25 % next to 3 stable pods: ceil(3 * 25 / 75) = 1 canary pod.
    assert cluster.objects[("Deployment", NS, "half-plus-two-canary")]["spec"]["replicas"] == 1
    run = stores[0].get(RUN)
    assert run is not None
    assert (run.step, run.entered, run.weight, run.canary_replicas, run.phase) == (0, True, 25, 1, "running")
    assert stable_writes(cluster) == []

    # A retry of the task before the event: the same weight again writes nothing new.
    before = cluster.written()
    with pytest.raises(TaskDeferred):
        operator().execute({})
    assert cluster.written() == before


def test_segment_walks_to_its_approval_gate(
    cluster: FakeCluster, stores: tuple[CanaryRecords, DeploymentRecords]
) -> None:
    analysis = Analysis("running", "successful")
    op = operator(analysis=analysis)
    with pytest.raises(TaskDeferred):
        op.execute({})
    # The rollout completed: the zero pause passes, the analysis measures once and waits 30 s.
    with pytest.raises(TaskDeferred) as e:
        op.resume_scaled({}, {"status": "success"}, step=0)
    assert isinstance(e.value.trigger, DateTimeTrigger)
    assert e.value.method_name == "resume_waited"
    run = stores[0].get(RUN)
    assert run is not None
    assert (run.step, run.entered) == (2, True)
    assert run.pause_until is not None
    assert analysis.requests[0].weight == 25
    assert analysis.requests[0].previous == []
    # The same event delivered twice does not skip a step.
    with pytest.raises(TaskDeferred):
        op.resume_scaled({}, {"status": "success"}, step=0)
    assert stores[0].get(RUN).step == 2  # type: ignore[union-attr]
    # The next round is due: it passes, and the segment ends at gate 1.
    stores[0].save_state(RUN, pause_until=0.0)
    summary = op.resume_waited({}, None, step=2)
    assert (summary["phase"], summary["gate"], summary["step"]) == ("paused", 1, 3)
    assert [r.metric for r in analysis.requests[1].previous] == ["error-rate"]
    assert [(m.seq, m.verdict) for m in stores[0].measurements(RUN)] == [(0, "successful"), (1, "successful")]
    assert "error-rate" in summary["summary"]
    assert summary["share"] == pytest.approx(0.25)
    assert stable_writes(cluster) == []


def test_failed_analysis_aborts_and_never_writes_the_stable(
    cluster: FakeCluster, stores: tuple[CanaryRecords, DeploymentRecords]
) -> None:
    stable_before = copy.deepcopy(cluster.objects[("Deployment", NS, "half-plus-two")])
    op = operator(analysis=Analysis("failed"))
    with pytest.raises(TaskDeferred):
        op.execute({})
    with pytest.raises(TaskDeferred) as e:
        op.resume_scaled({}, {"status": "success"}, step=0)
    # Scaled to 0 first, and waited for.
    assert e.value.method_name == "resume_aborted"
    assert cluster.objects[("Deployment", NS, "half-plus-two-canary")]["spec"]["replicas"] == 0
    with pytest.raises(AirflowFailException, match="aborted: analysis errors failed: error-rate 0.5"):
        op.resume_aborted({}, {"status": "success"})
    assert not [k for k in cluster.objects if "canary" in k[2]]  # Deployment, Service, ConfigMap gone
    assert cluster.objects[("Deployment", NS, "half-plus-two")] == stable_before
    assert stable_writes(cluster) == []
    run, record = stores[0].get(RUN), stores[1].get(RUN)
    assert run is not None
    assert record is not None
    assert (run.phase, run.reason) == ("aborted", "analysis errors failed: error-rate 0.5 >= 0.01")
    assert (record.outcome, record.reason) == (
        "aborted",
        "canary aborted: analysis errors failed: error-rate 0.5 >= 0.01",
    )
    assert [m.verdict for m in stores[0].measurements(RUN)] == ["failed"]


def test_canary_rollout_failure_aborts(
    cluster: FakeCluster, stores: tuple[CanaryRecords, DeploymentRecords]
) -> None:
    op = operator()
    with pytest.raises(TaskDeferred):
        op.execute({})
    with pytest.raises(TaskDeferred):
        op.resume_scaled({}, {"status": "failed", "message": "pod x is in CrashLoopBackOff"}, step=0)
    # The scale-down wait timing out still deletes the canary.
    with pytest.raises(AirflowFailException, match="canary rollout at step 0: pod x is in CrashLoopBackOff"):
        op.resume_aborted({}, {"status": "timeout", "message": "late"})
    assert not [k for k in cluster.objects if "canary" in k[2]]
    assert stable_writes(cluster) == []


def test_last_segment_promotes(cluster: FakeCluster, stores: tuple[CanaryRecords, DeploymentRecords]) -> None:
    canary, deploys = stores
    canary.start(RUN, model="half-plus-two", stable_version=1, canary_version=2, steps=5, stable_replicas=3)
    canary.save_state(RUN, step=3, phase="paused", gate=1, weight=25, canary_replicas=1)
    op = operator(segment=1)
    with pytest.raises(TaskDeferred) as e:
        op.execute({})  # gate 1 approved: step 4 is weight 50
    assert e.value.kwargs == {"step": 4}
    assert cluster.objects[("Deployment", NS, "half-plus-two-canary")]["spec"]["replicas"] == 3
    with pytest.raises(TaskDeferred) as e:
        op.resume_scaled({}, {"status": "success"}, step=4)
    trigger = e.value.trigger
    assert (trigger.name, e.value.method_name) == ("half-plus-two", "resume_promoted")
    stable = cluster.objects[("Deployment", NS, "half-plus-two")]
    assert stable["spec"]["template"]["metadata"]["labels"]["version"] == "2"
    record = deploys.get(RUN)
    assert record is not None
    assert record.previous["Deployment"]["metadata"]["labels"]["version"] == "1"  # kept for a rollback
    assert record.applied["spec"] == RENDERED["objects"]
    summary = op.resume_promoted({}, {"status": "success"})
    assert summary["phase"] == "promoted"
    assert not [k for k in cluster.objects if "canary" in k[2]]
    assert deploys.get(RUN).outcome == "succeeded"  # type: ignore[union-attr]


def test_a_segment_before_its_predecessor_finished_fails(
    cluster: FakeCluster, stores: tuple[CanaryRecords, DeploymentRecords]
) -> None:
    with pytest.raises(AirflowFailException, match="an earlier segment has not finished"):
        operator(segment=1).execute({})
    assert cluster.written() == []


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        ({"chosen_options": ["Reject"], "responded_by": "ana"}, "approval gate 1: Reject by ana"),
        (
            {"timed_out": True, "timeout_seconds": 600.0},
            "approval gate 1: no answer before its timeout (600s): the approval timed out",
        ),
        (None, "approval gate 1: no answer (the gate's task failed before one came)"),
    ],
    ids=["rejected", "timed-out", "gate-failed"],
)
def test_conclude_aborts_a_run_held_at_a_gate(
    answer: Any, reason: str, cluster: FakeCluster, stores: tuple[CanaryRecords, DeploymentRecords]
) -> None:
    canary, deploys = stores
    for obj in RENDERED["canary"]["objects"]:
        cluster.put(obj)
    canary.start(RUN, model="half-plus-two", stable_version=1, canary_version=2, steps=5, stable_replicas=3)
    canary.save_state(RUN, step=3, phase="paused", gate=1, weight=25, canary_replicas=1)
    ti = mock.Mock()
    ti.xcom_pull.return_value = answer
    op = operator(cls=CanaryConcludeOperator)
    with pytest.raises(TaskDeferred):
        op.execute({"ti": ti})
    ti.xcom_pull.assert_called_with(task_ids="approve_1", key="canary_answer")
    summary = op.resume_aborted({"ti": ti}, {"status": "success"})  # no failure: finish fails the run
    assert summary["phase"] == "aborted"
    assert summary["reason"].startswith(reason)
    assert deploys.get(RUN).outcome == "aborted"  # type: ignore[union-attr]
    assert not [k for k in cluster.objects if "canary" in k[2]]
    assert stable_writes(cluster) == []


def test_conclude_leaves_a_finished_run_alone(
    cluster: FakeCluster, stores: tuple[CanaryRecords, DeploymentRecords]
) -> None:
    canary, _ = stores
    assert operator(cls=CanaryConcludeOperator).execute({})["reason"] == "the canary never started"
    canary.start(RUN, model="half-plus-two", stable_version=1, canary_version=2, steps=5)
    canary.finish(RUN, "promoted", reason="done")
    assert operator(cls=CanaryConcludeOperator).execute({})["phase"] == "promoted"
    assert cluster.written() == []


def test_a_failed_promotion_restores_the_stable_and_aborts(
    cluster: FakeCluster, stores: tuple[CanaryRecords, DeploymentRecords]
) -> None:
    canary, deploys = stores
    op, before = _promote_to_version_2(canary, cluster)
    with pytest.raises(TaskDeferred) as e:
        op.resume_promoted({}, {"status": "failed", "message": "ProgressDeadlineExceeded"})
    assert e.value.method_name == "resume_aborted"
    assert stable_spec(cluster) == before
    with pytest.raises(AirflowFailException, match="previous stable spec was re-applied"):
        op.resume_aborted({}, {"status": "success"})
    record = deploys.get(RUN)
    assert record is not None
    assert record.outcome == "aborted"
    assert record.rollback["performed"] is True
    assert not [k for k in cluster.objects if "canary" in k[2]]


def test_conclude_after_an_approved_gate_names_the_failed_step(
    cluster: FakeCluster, stores: tuple[CanaryRecords, DeploymentRecords]
) -> None:
    canary, _ = stores
    canary.start(RUN, model="half-plus-two", stable_version=1, canary_version=2, steps=5, stable_replicas=3)
    canary.save_state(RUN, step=3, phase="paused", gate=1)
    ti = mock.Mock()
    ti.xcom_pull.return_value = {"chosen_options": ["Approve"], "responded_by": "ana"}
    summary = operator(cls=CanaryConcludeOperator).execute({"ti": ti})  # no canary Deployment: no wait
    assert summary["reason"] == "step 3 (approval) did not complete: its task failed (paused)"


def test_a_retry_during_an_abort_finishes_the_abort(
    cluster: FakeCluster, stores: tuple[CanaryRecords, DeploymentRecords]
) -> None:
    canary, _ = stores
    canary.start(RUN, model="half-plus-two", stable_version=1, canary_version=2, steps=5, stable_replicas=3)
    canary.save_state(RUN, step=2, entered=True, phase="aborting", reason="analysis errors failed", weight=25)
    for obj in RENDERED["canary"]["objects"]:
        cluster.put(obj)
    with pytest.raises(TaskDeferred) as e:
        operator().execute({})  # never the step's own action: the scale-down again
    assert e.value.method_name == "resume_aborted"
    assert cluster.objects[("Deployment", NS, "half-plus-two-canary")]["spec"]["replicas"] == 0
    assert stable_writes(cluster) == []


def _promote_to_version_2(
    canary: CanaryRecords, cluster: FakeCluster
) -> tuple[CanaryRolloutOperator, dict[str, Any]]:
    """A run at its last step whose segment has written the stable at version 2 (deferred on it),
    and the stable's spec before."""
    before = stable_spec(cluster)
    canary.start(RUN, model="half-plus-two", stable_version=1, canary_version=2, steps=5, stable_replicas=3)
    canary.save_state(RUN, step=5, weight=50, canary_replicas=3)
    for obj in RENDERED["canary"]["objects"]:
        cluster.put(obj)
    op = operator(segment=1)
    with pytest.raises(TaskDeferred):
        op.execute({})
    assert stable_version(cluster) == "2"
    return op, before


def stable_spec(cluster: FakeCluster) -> dict[str, Any]:
    return copy.deepcopy(cluster.objects[("Deployment", NS, "half-plus-two")]["spec"])


def stable_version(cluster: FakeCluster) -> str:
    return cluster.objects[("Deployment", NS, "half-plus-two")]["spec"]["template"]["metadata"]["labels"][
        "version"
    ]


def test_conclude_after_a_promotion_whose_task_failed_for_good_restores_the_stable(
    cluster: FakeCluster, stores: tuple[CanaryRecords, DeploymentRecords]
) -> None:
    from mlinfra.deploy.steps import finish
    from mlinfra.exceptions import DeployFailed

    canary, deploys = stores
    _, before = _promote_to_version_2(canary, cluster)
    # Every try of the segment failed after the write (the API or the store down, the worker
    # lost): the run is left "promoting", and canary_conclude ends it.
    with pytest.raises(TaskDeferred) as e:
        operator(cls=CanaryConcludeOperator).execute({"ti": mock.Mock()})
    assert e.value.method_name == "resume_aborted"
    assert stable_spec(cluster) == before
    summary = operator(cls=CanaryConcludeOperator).resume_aborted({}, {"status": "success"})
    assert summary["phase"] == "aborted"
    assert summary["reason"].startswith("step 5 (promotion) did not complete: its task failed (promoting)")
    assert "the previous stable spec was re-applied" in summary["reason"]
    record = deploys.get(RUN)
    assert record is not None
    assert (record.outcome, record.rollback["performed"]) == ("aborted", True)
    with pytest.raises(DeployFailed, match=r"the stable Deployment is back at its previous spec"):
        finish(deploys, RUN)


def test_a_try_lost_while_restoring_the_stable_is_retried_as_the_abort_not_the_promotion(
    cluster: FakeCluster, stores: tuple[CanaryRecords, DeploymentRecords]
) -> None:
    from mlinfra.exceptions import StoreError

    canary, deploys = stores
    op, before = _promote_to_version_2(canary, cluster)
    update = deploys.update

    def store_down_for_the_rollback(run_id: str, **fields: Any) -> None:
        if "rollback" in fields:
            raise StoreError("store down")
        update(run_id, **fields)

    with (
        mock.patch.object(deploys, "update", side_effect=store_down_for_the_rollback),
        pytest.raises(StoreError),
    ):
        op.resume_promoted({}, {"status": "failed", "message": "ProgressDeadlineExceeded"})
    # The retry (a fresh try of the segment) finishes the abort: version 2 is never written again.
    stable_applied: list[str] = []
    apply = cluster.apply

    def spy(obj: dict[str, Any]) -> dict[str, Any]:
        if (obj["kind"], obj["metadata"]["name"]) == ("Deployment", "half-plus-two"):
            stable_applied.append(obj["spec"]["template"]["metadata"]["labels"]["version"])
        return apply(obj)

    with mock.patch.object(cluster, "apply", side_effect=spy), pytest.raises(TaskDeferred) as e:
        operator(segment=1).execute({})
    assert e.value.method_name == "resume_aborted"
    assert stable_applied == ["1"]  # the restore, again (its first try's was never recorded)
    assert stable_spec(cluster) == before
    run = canary.get(RUN)
    assert run is not None
    assert run.phase == "aborting"
    assert run.reason is not None
    assert run.reason.startswith("promotion: the stable rollout did not complete: ProgressDeadlineExceeded")
    assert "the previous stable spec was re-applied" in run.reason
    assert deploys.get(RUN).rollback["performed"] is True  # type: ignore[union-attr]
