"""plan_scaling over a real store, the local engine and the Kubernetes stand-in."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from mlinfra.config import load_fleet
from mlinfra.samples import Sample
from mlinfra.scaling.plan import log_decisions, metric_value, plan_scaling
from mlinfra.scaling.records import ScaleRecords
from mlinfra.store import MetricsStore
from tests.support.k8s_standin import KubeStandIn

T = 1_800_000_000.0


def gpu(value: float, at: float = T) -> list[Sample]:
    return [
        Sample("ml_gpu_utilization_percent", {"gpu_id": str(i), "host": "n1"}, value, at) for i in range(2)
    ]


@pytest.mark.integration
def test_plan_decides_every_model_and_keeps_why(kube: KubeStandIn, store_env: MetricsStore) -> None:
    kube.add_deployment("serving", "half-plus-two", replicas=1)
    kube.add_deployment("serving", "resnet50-classifier", replicas=2)
    kube.add_hpa("serving", "hpt", target="half-plus-two")
    store_env.write_samples(gpu(140.0))
    stray = {"alertname": "X", "labels": {"host": "n1", "mlinfra_scale": "down"}}

    plan = plan_scaling(fleet=load_fleet(), store=store_env, at=T, run_id="r1", alerts=[stray])

    by_model = {d["model"]: d for d in plan["decisions"]}
    assert by_model["half-plus-two"]["action"] == "skipped"
    assert by_model["half-plus-two"]["reason"] == "skipped: owned by HorizontalPodAutoscaler/hpt"
    resnet = by_model["resnet50-classifier"]
    assert (resnet["action"], resnet["from"], resnet["to"], resnet["trigger"]) == ("scale", 2, 4, "metric")
    assert resnet["reason"] == "scale up 2 -> 4: metric 140 vs target 70 (ratio 2.00)"
    (scale,) = plan["scale"]
    assert scale["model"] == "resnet50-classifier"
    assert scale["replicas"] == 4
    assert scale["from_replicas"] == 2
    assert scale["kubernetes_conn_id"] == "kubernetes_default"
    assert scale["record_only"] is False
    assert scale["decision"]["inputs"]["metric"] == 140.0
    assert plan["unmatched_alerts"] == [{"alertname": "X", "labels": stray["labels"]}]
    stored = ScaleRecords(store_env).decisions()
    assert [(d["model"], d["action"]) for d in stored] == [
        ("half-plus-two", "skipped"),
        ("resnet50-classifier", "scale"),
    ]
    # Planning reads, never writes, the cluster.
    assert kube.writes() == []


@pytest.mark.integration
def test_missing_deployment_and_unreadable_namespace(kube: KubeStandIn, store_env: MetricsStore) -> None:
    kube.inject_fault("GET", r"/namespaces/serving/deployments$", 403)
    plan = plan_scaling(fleet=load_fleet(), store=store_env, at=T)
    reasons = {d["model"]: d["reason"] for d in plan["decisions"]}
    assert reasons["half-plus-two"].startswith(
        "skipped: cannot read namespace serving on kubernetes_default: forbidden"
    )
    assert plan["scale"] == []
    kube.clear_faults()
    plan = plan_scaling(fleet=load_fleet(), store=store_env, at=T + 60)
    assert {d["reason"] for d in plan["decisions"]} == {
        "skipped: deployment serving/half-plus-two not found",
        "skipped: deployment serving/resnet50-classifier not found",
    }


def test_without_a_kubernetes_connection_everything_is_skipped(
    sqlite_store: MetricsStore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="mlinfra.scaling.plan")
    plan = plan_scaling(fleet=load_fleet(), store=sqlite_store, at=T, cluster=lambda conn_id: None)
    assert {d["reason"] for d in plan["decisions"]} == {"skipped: no Airflow connection 'kubernetes_default'"}
    # The log says it once for both models, not once per model.
    assert [r.getMessage() for r in caplog.records if r.name == "mlinfra.scaling.plan"] == [
        "scaling 2 models: 0 to scale, 0 unchanged, 2 skipped",
        "scaling half-plus-two, resnet50-classifier: skipped: no Airflow connection 'kubernetes_default'",
    ]


def test_the_log_names_each_scale_counts_no_change_and_groups_skips(caplog: pytest.LogCaptureFixture) -> None:
    from mlinfra.scaling.decision import ScaleDecision, skipped

    decisions = [
        ScaleDecision("a", T, "scale", "scale up 2 -> 4: metric 140 vs target 70 (ratio 2.00)", 2, 4),
        ScaleDecision("b", T, "scale", "scale down 3 -> 2: alert Idle", 3, 2, dry_run=True),
        ScaleDecision("c", T, "none", "no change: metric 70 vs target 70 (ratio 1.00)", 2, 2),
        *(skipped(f"m{i}", T, "no Airflow connection 'k8s'") for i in range(4)),
        skipped("d", T, "deployment serving/d not found"),
    ]
    caplog.set_level(logging.DEBUG, logger="mlinfra.scaling.plan")
    log_decisions(decisions, named=3)
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("INFO", "scaling 8 models: 2 to scale, 1 unchanged, 5 skipped"),
        ("INFO", "scaling a: scale up 2 -> 4: metric 140 vs target 70 (ratio 2.00)"),
        ("INFO", "scaling b: scale down 3 -> 2: alert Idle (dry run: recorded only)"),
        ("DEBUG", "scaling c: no change: metric 70 vs target 70 (ratio 1.00)"),
        ("INFO", "scaling m0, m1, m2 and 1 more: skipped: no Airflow connection 'k8s'"),
        ("INFO", "scaling d: skipped: deployment serving/d not found"),
    ]


class Cluster:
    def __init__(self, replicas: dict[str, int]):
        self._replicas = replicas

    def replicas(self, namespace: str) -> dict[str, int]:
        return dict(self._replicas)

    def owners(self, namespace: str) -> dict[str, str]:
        return {}


def test_alert_driven_and_dry_run_policies(sqlite_store: MetricsStore) -> None:
    import yaml

    from mlinfra.config import PROJECT_ROOT, parse_fleet

    data = yaml.safe_load((PROJECT_ROOT / "include" / "fleet.yaml").read_text())
    hpt = data["models"][0]["scaling"]
    hpt.pop("target")
    hpt.update(alerts={"up_pods": 2}, dry_run=True)
    fleet = parse_fleet(yaml.safe_dump(data))
    alert = {
        "alertname": "ServingQueueDepthHigh",
        "labels": {"model": "half-plus-two", "mlinfra_scale": "up"},
    }
    plan = plan_scaling(
        fleet=fleet,
        store=sqlite_store,
        at=T,
        alerts=[alert],
        cluster=lambda conn_id: Cluster({"half-plus-two": 1, "resnet50-classifier": 2}),
    )
    (scale,) = plan["scale"]
    assert (scale["model"], scale["replicas"], scale["trigger"], scale["record_only"]) == (
        "half-plus-two",
        3,
        "alert",
        True,
    )
    resnet = next(d for d in plan["decisions"] if d["model"] == "resnet50-classifier")
    assert resnet["reason"] == "no change: no signal (metric: no data (empty result): no recommendation)"


def test_metric_value_shapes() -> None:
    from mlinfra.promql.interface import InstantSample, QueryEvaluationError

    assert metric_value(3.0) == (3.0, None)
    assert metric_value([InstantSample({}, 2.5)]) == (2.5, None)
    assert metric_value([]) == (None, "no data (empty result)")
    assert metric_value([InstantSample({}, 1), InstantSample({"a": "b"}, 2)])[1] == (
        "2 series; the target expression must give one value (aggregate it)"
    )
    assert metric_value(QueryEvaluationError("boom"))[1] == "query failed: boom"
    assert metric_value([InstantSample({}, float("inf"))])[1] == "value is inf"


def _manual_scale(
    records: ScaleRecords,
    run_id: str,
    at: float,
    *,
    to: int,
    hold_until: float | None,
    outcome: str = "available",
) -> None:
    records.record_event(
        run_id=run_id,
        model="resnet50-classifier",
        namespace="serving",
        deployment="resnet50-classifier",
        from_replicas=2,
        to_replicas=to,
        reason="launch (by admin)",
        trigger="manual",
        dry_run=outcome == "dry_run",
        ts=at,
        outcome=outcome,
        decision={"request": {}, "hold_until": hold_until},
    )


def _resnet(plan: dict[str, Any]) -> dict[str, Any]:
    return next(d for d in plan["decisions"] if d["model"] == "resnet50-classifier")


def test_a_held_manual_count_is_left_alone_and_the_reason_says_until_when(sqlite_store: MetricsStore) -> None:
    records = ScaleRecords(sqlite_store)
    sqlite_store.write_samples(gpu(10.0, T + 600))  # far below target: the autoscaler would scale down
    _manual_scale(records, "manual__launch", T, to=6, hold_until=T + 3600)
    cluster = lambda conn_id: Cluster({"half-plus-two": 1, "resnet50-classifier": 6})  # noqa: E731

    held = plan_scaling(fleet=load_fleet(), store=sqlite_store, at=T + 600, cluster=cluster)
    assert _resnet(held)["action"] == "skipped"
    assert _resnet(held)["reason"] == (
        "skipped: held at 6 replicas by a manual scale until 2027-01-15T09:00:00Z "
        "(run manual__launch: launch (by admin))"
    )
    assert [s["model"] for s in held["scale"]] == []

    sqlite_store.write_samples(gpu(10.0, T + 3700))
    after = plan_scaling(fleet=load_fleet(), store=sqlite_store, at=T + 3700, cluster=cluster)
    assert _resnet(after)["action"] == "scale"  # the hold is over: the policy decides again
    assert _resnet(after)["to"] < 6


def test_a_later_manual_scale_without_hold_or_a_dry_run_changes_what_holds(
    sqlite_store: MetricsStore,
) -> None:
    records = ScaleRecords(sqlite_store)
    _manual_scale(records, "manual__1", T, to=6, hold_until=T + 3600)
    _manual_scale(records, "manual__2", T + 60, to=5, hold_until=None, outcome="dry_run")
    assert (
        records.active_holds(["resnet50-classifier"], at=T + 120)["resnet50-classifier"]["run_id"]
        == "manual__1"
    )
    _manual_scale(records, "manual__3", T + 180, to=4, hold_until=None)
    assert records.active_holds(["resnet50-classifier"], at=T + 240) == {}


def test_plan_deletes_recommendations_older_than_the_stores_retention(sqlite_store: MetricsStore) -> None:
    fleet = load_fleet()
    records = ScaleRecords(sqlite_store)
    cluster = Cluster({m.kubernetes.deployment: 2 for m in fleet.models})
    retention = fleet.store.retention
    plan_scaling(fleet=fleet, store=sqlite_store, at=T, cluster=lambda c: cluster, records=records)
    # A sweep a retention later keeps the sweep before it...
    later = T + retention
    plan_scaling(
        fleet=fleet,
        store=sqlite_store,
        at=later,
        cluster=lambda c: cluster,
        records=records,
        now=lambda: later,
    )
    assert {d["at"] for d in records.decisions()} == {T, later}
    # ...and one more sweep later deletes it, whatever the models decided.
    last = later + 300
    plan_scaling(
        fleet=fleet, store=sqlite_store, at=last, cluster=lambda c: cluster, records=records, now=lambda: last
    )
    assert {d["at"] for d in records.decisions()} == {later, last}
    assert len(records.decisions()) == 2 * len(fleet.models)
