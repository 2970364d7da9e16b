"""End to end: load in the store crosses a scale-up rule, the sweep scales, the load drops, it scales down.

Real Airflow (dag.test() of infra_health_sweep at successive logical times), the
shipped rule files evaluated by the local engine over a real SQLite store, the real
provider hook and kubernetes client against the Kubernetes stand-in, whose controller
converges the pods after each scale patch.

The model is scaled by alert-driven steps (include/alert_rules/scaling.yaml):
ServingQueueDepthHigh (more than 8 requests in flight for 5 minutes: up) and
ServingQueueDepthLow (less than 1 for 15 minutes: down); scale-down stabilization 20m.

    t (min)  load (in flight)   alerts                      replicas
    0        10                 High pending                1
    5        10                 High firing -> up 2         1 -> 3
    20       0.1                High resolved, Low pending  3        (recommends 3)
    35       0.1                Low firing -> down 1        3        (held: the 3 of t=20 is in the window)
    40       0.1                Low firing                  3 -> 2   (the 3 of t=20 left the window)
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlinfra.samples import Sample
from mlinfra.scaling.records import ScaleRecords
from mlinfra.store import MetricsStore
from tests.k8s.rbac import uncovered
from tests.support.k8s_standin import KubeStandIn

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
SERIES = {"model": "half-plus-two", "model_name": "half_plus_two", "API": "predict", "entrypoint": "GRPC"}


def load_samples() -> list[Sample]:
    """:tensorflow:serving:request_latency_sum (microseconds), one sample a minute between sweeps.

    10 requests in flight until t=5.5 min, then 0.1 (Little's law: the counter grows by
    in-flight x 60 s x 1e6 per minute). Off the sweep times: a sweep replaces its own instant.
    """
    out, total = [], 0.0
    for i in range(-15, 45):
        t = T0.timestamp() + 60 * i + 30
        out.append(Sample(":tensorflow:serving:request_latency_sum", SERIES, total, t))
        total += (10.0 if i < 5 else 0.1) * 60 * 1e6
    return out


@pytest.fixture
def env(
    kube: KubeStandIn,
    store_env: MetricsStore,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    airflow_db: Path,
) -> tuple[KubeStandIn, MetricsStore]:
    fleet = yaml.safe_load((ROOT / "include" / "fleet.yaml").read_text())
    hpt = fleet["models"][0]
    hpt["scaling"] = {
        "min_replicas": 1,
        "max_replicas": 3,
        "alerts": {"up_pods": 2, "down_pods": 1},
        "scale_down_stabilization": "20m",
        "cooldown": "10m",
    }
    fleet["models"] = [hpt]
    # The test sweeps at 0, 5, 20, 35 and 40 minutes to stay short; with the default (a gap of
    # more than 2 intervals is an outage) each 15-minute step would restart the `for` clocks as
    # after a Prometheus restart. Here the skipped sweeps stand for sweeps that saw the same.
    fleet.setdefault("rules", {})["gap_intervals"] = 4
    fleet_file = tmp_path / "fleet.yaml"
    fleet_file.write_text(yaml.safe_dump(fleet, sort_keys=False))
    for smoke in ("half_plus_two.json",):
        (tmp_path / "smoke").mkdir(exist_ok=True)
        (tmp_path / "smoke" / smoke).write_text((ROOT / "include" / "smoke" / smoke).read_text())
    monkeypatch.setenv("MLINFRA_FLEET_FILE", str(fleet_file))
    monkeypatch.setenv("MLINFRA_SCALE_POLL_INTERVAL", "100ms")
    monkeypatch.setenv("MLINFRA_SWEEP_SCALE_TIMEOUT", "60s")
    for conn in ("ALERTMANAGER_DEFAULT", "PROMETHEUS_PUSHGATEWAY", "TF_SERVING_HALF_PLUS_TWO"):
        monkeypatch.delenv(f"AIRFLOW_CONN_{conn}", raising=False)
    kube.add_deployment("serving", "half-plus-two", replicas=1)
    kube.set_rollout("serving", "half-plus-two", step_seconds=0.2)  # new pods take a moment: the task defers
    store_env.write_samples(load_samples())
    return kube, store_env


def sweep_dag() -> Any:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags" / "infra_health_sweep.py"))
    assert bag.import_errors == {}
    return bag.dags["infra_health_sweep"]


def task_instances(run: Any) -> list[Any]:
    from airflow.utils.session import create_session

    with create_session() as session:
        return list(run.get_task_instances(session=session))


def sweep(minute: int) -> tuple[Any, dict[str, Any]]:
    run = sweep_dag().test(logical_date=T0 + timedelta(minutes=minute))
    assert run.state == "success", {ti.task_id: str(ti.state) for ti in task_instances(run)}
    scales = [ti for ti in task_instances(run) if ti.task_id == "scale"]
    return run, {
        "scale_tasks": [(ti.map_index, str(ti.state), ti.rendered_map_index) for ti in scales],
    }


def test_load_scales_up_after_the_rules_for_and_down_after_the_stabilization_window(
    env: tuple[KubeStandIn, MetricsStore],
) -> None:
    kube, store = env
    records = ScaleRecords(store)
    dag = sweep_dag()
    assert dag.get_task("plan_scaling").upstream_task_ids == {"evaluate_rules"}
    assert dag.get_task("scale").upstream_task_ids == {"plan_scaling"}

    def replicas() -> int:
        return int(kube.deployment("serving", "half-plus-two")["spec"]["replicas"])

    def decision(minute: int) -> dict[str, Any]:
        at = (T0 + timedelta(minutes=minute)).timestamp()
        (d,) = records.decisions("half-plus-two", since=at, until=at + 1)
        return d

    # t=0: the load is above the threshold, but the rule's `for` (5m) has not passed.
    _, out = sweep(0)
    assert out["scale_tasks"] == [(-1, "skipped", None)]  # nothing to map: the mapped task is skipped
    assert decision(0)["reason"] == "no change: no scale alert firing"
    assert replicas() == 1
    assert kube.writes() == []

    # t=5: ServingQueueDepthHigh fires; the mapped task scales 1 -> 3 and waits for the pods.
    _, out = sweep(5)
    assert out["scale_tasks"] == [(0, "success", "serving/half-plus-two")]
    assert replicas() == 3
    assert kube.deployment("serving", "half-plus-two")["status"]["availableReplicas"] == 3
    d = decision(5)
    assert (d["action"], d["from_replicas"], d["to_replicas"], d["trigger"]) == ("scale", 1, 3, "alert")
    assert d["inputs"]["signals"] == {"up": ["ServingQueueDepthHigh"], "down": []}
    (up,) = records.events("half-plus-two")
    assert (up["from_replicas"], up["to_replicas"], up["trigger"], up["outcome"], up["dry_run"]) == (
        3 - 2, 3, "alert", "available", False,
    )  # fmt: skip
    assert up["reason"] == "scale up 1 -> 3: alert ServingQueueDepthHigh"
    assert up["ts"] == (T0 + timedelta(minutes=5)).timestamp()
    assert up["decision"]["inputs"]["alerts"][0]["alertname"] == "ServingQueueDepthHigh"

    # t=20: the load has dropped; High resolved, Low pending: no signal, recommendation 3.
    sweep(20)
    assert decision(20)["reason"] == "no change: no scale alert firing"
    assert replicas() == 3

    # t=35: Low fires (15m), but the recommendation of t=20 (3) is inside the 20m window.
    _, out = sweep(35)
    assert out["scale_tasks"] == [(-1, "skipped", None)]
    held = decision(35)
    assert held["recommendation"] == 2
    assert held["action"] == "none"
    assert held["reason"] == (
        "no change: scale-down to 2 held by the 1200s stabilization window (highest recommendation 3)"
    )
    assert replicas() == 3

    # t=40: the 3 of t=20 has left the window: scale down 3 -> 2.
    _, out = sweep(40)
    assert out["scale_tasks"] == [(0, "success", "serving/half-plus-two")]
    assert replicas() == 2
    assert len(kube.pod_names("serving", deployment="half-plus-two")) == 2
    down = records.events("half-plus-two")[-1]
    assert (down["from_replicas"], down["to_replicas"], down["trigger"], down["outcome"]) == (
        3,
        2,
        "alert",
        "available",
    )
    assert down["reason"] == "scale down 3 -> 2: alert ServingQueueDepthLow"

    # Every step audited: one decision per sweep, one event per scale, and two patches in all.
    assert [d["action"] for d in records.decisions("half-plus-two")] == [
        "none",
        "scale",
        "none",
        "none",
        "scale",
    ]
    assert len(records.events()) == 2
    assert [w.method for w in kube.writes()] == ["PATCH", "PATCH"]
    assert all(w.path.endswith("/deployments/half-plus-two/scale") for w in kube.writes())
    # ... and the service account needs nothing rbac.yaml does not grant.
    assert uncovered(kube.rbac_requests()) == []
