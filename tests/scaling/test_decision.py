"""The scale decision as a table: HPA documentation examples, tolerance, stabilization, limits, cooldown."""

from __future__ import annotations

from typing import Any

import pytest

from mlinfra.config import Model, ScalingPolicy
from mlinfra.scaling.decision import (
    Recommendation,
    ScaleDecision,
    alert_matches_model,
    alerts_for_model,
    allowed_change,
    decide,
)

T = 1_800_000_000.0


def policy(**kw: Any) -> ScalingPolicy:
    base: dict[str, Any] = {
        "min_replicas": 1,
        "max_replicas": 100,
        "target": {"expr": "m", "value": 100},
        "scale_down_stabilization": 0,
    }
    base.update(kw)
    return ScalingPolicy.model_validate(base)


def run(p: ScalingPolicy, current: int, metric: float | None = None, **kw: Any) -> ScaleDecision:
    return decide(p, model="m", at=T, current=current, metric=metric, **kw)


# --------------------------------------------------------------------------- the formula


@pytest.mark.parametrize(
    ("current", "metric", "target", "expected"),
    [
        # HPA docs (Algorithm details): 200m against a 100m target doubles the replicas...
        (1, 0.200, 0.100, 2),
        (3, 0.200, 0.100, 6),
        # ... and 50m halves them.
        (4, 0.050, 0.100, 2),
        # ceil: 3 x 150 / 100 = 4.5 -> 5
        (3, 150, 100, 5),
        # 10 x 35 / 70 = 5
        (10, 35, 70, 5),
    ],
)
def test_desired_is_ceil_current_times_metric_over_target(
    current: int, metric: float, target: float, expected: int
) -> None:
    d = run(policy(target={"expr": "m", "value": target}), current, metric)
    assert (d.action, d.from_replicas, d.to_replicas, d.trigger) == ("scale", current, expected, "metric")
    assert d.recommendation == expected
    assert d.inputs["metric"] == metric
    assert d.inputs["ratio"] == pytest.approx(metric / target)


def test_hpa_docs_example_reason_and_trail() -> None:
    d = run(policy(target={"expr": "m", "value": 0.1}), 1, 0.2)
    assert d.reason == "scale up 1 -> 2: metric 0.2 vs target 0.1 (ratio 2.00)"
    assert d.steps == ["metric 0.2 vs target 0.1: ratio 2.00 -> 2"]
    assert d.policy["max_replicas"] == 100
    assert d.policy["tolerance"] == 0.1


@pytest.mark.parametrize(
    ("metric", "action", "to"),
    [
        (110.0, "none", 10),  # exactly +10 %: inside the tolerance
        (90.0, "none", 10),  # exactly -10 %
        (105.0, "none", 10),
        (110.5, "scale", 12),  # ceil(11.05) = 12
        (111.0, "scale", 12),
        (89.0, "scale", 9),  # ceil(8.9) = 9
    ],
)
def test_tolerance_edges(metric: float, action: str, to: int) -> None:
    d = run(policy(), 10, metric)
    assert (d.action, d.to_replicas) == (action, to)
    if action == "none":
        assert "within tolerance 0.10" in d.reason
        assert d.recommendation == 10


def test_tolerance_is_configurable() -> None:
    assert run(policy(tolerance=0.0), 10, 101).to_replicas == 11
    assert run(policy(tolerance=0.5), 10, 140).action == "none"


def test_average_value_target_divides_the_total() -> None:
    p = policy(target={"expr": "sum(rps)", "value": 200, "type": "average_value"})
    d = run(p, 2, 1000.0)  # 1000 rps total at 200 per replica -> 5
    assert (d.action, d.to_replicas) == ("scale", 5)
    assert d.inputs["ratio"] == pytest.approx(2.5)
    assert run(p, 5, 1050.0).action == "none"  # 1050 / (200 x 5) = 1.05


# --------------------------------------------------------------------------- bounds and limits


@pytest.mark.parametrize(
    ("current", "metric", "to", "why"),
    [
        (3, 500, 4, "clamped to the policy's 1-4: 15 -> 4"),
        (2, 10, 1, "clamped to the policy's 1-4: 1 -> 1"),  # ceil(0.2) = 1 is the floor anyway
    ],
)
def test_clamped_to_min_and_max(current: int, metric: float, to: int, why: str) -> None:
    d = run(policy(max_replicas=4), current, metric)
    assert d.to_replicas == to
    if "15" in why:
        assert why in d.steps


def test_min_clamp_on_scale_down() -> None:
    d = run(policy(min_replicas=3, max_replicas=10), 6, 10)  # ceil(0.6) = 1 -> 3
    assert (d.action, d.to_replicas) == ("scale", 3)
    assert "clamped to the policy's 3-10: 1 -> 3" in d.steps


def test_at_the_bound_is_no_change_with_the_reason() -> None:
    d = run(policy(max_replicas=4), 4, 200)
    assert d.action == "none"
    assert d.to_replicas == 4
    assert "already at the policy's bound" in d.reason


def test_outside_bounds_goes_to_the_bound_without_a_signal() -> None:
    d = run(policy(min_replicas=2, max_replicas=5, target=None), 8)
    assert (d.action, d.to_replicas, d.trigger) == ("scale", 5, "bounds")
    assert d.reason == "scale down 8 -> 5: outside the policy's bounds 2-5"
    assert run(policy(min_replicas=2, max_replicas=5, target=None), 1).to_replicas == 2


def test_hpa_docs_scale_down_policies_pods_and_percent() -> None:
    # HPA docs: Pods 4 and Percent 10; with 80 replicas the percent policy (8) allows more.
    p = policy(min_replicas=1, max_replicas=100, max_step_pods=4, max_step_percent=10)
    d = run(p, 80, 1.0)  # the metric asks for 1 replica
    assert d.to_replicas == 72
    assert "step limit: at most 8 pod(s) per action: 1 -> 72" in d.steps
    # "when the number of replicas is 72, 10 % of the pods is 7.2 but the number is rounded up to 8"
    assert run(p, 72, 1.0).to_replicas == 64
    # below 40 replicas the Pods policy (4) is the larger change
    assert run(p, 30, 1.0).to_replicas == 26
    # selectPolicy Min: the smaller change wins
    assert run(policy(max_step_pods=4, max_step_percent=10, select_policy="min"), 80, 1.0).to_replicas == 76


def test_step_limit_on_scale_up() -> None:
    d = run(policy(max_step_pods=2), 2, 400)  # wants 8
    assert (d.action, d.to_replicas) == ("scale", 4)
    assert d.recommendation == 8  # the raw recommendation is what the history keeps
    assert run(policy(max_step_percent=50), 4, 400).to_replicas == 6
    assert allowed_change(3, policy()) is None


# --------------------------------------------------------------------------- stabilization


def test_scale_down_stabilization_sequence_of_sweeps() -> None:
    """Sweeps every 60 s with a 300 s scale-down window: the drop is acted on only after 5 minutes."""
    p = policy(scale_down_stabilization=300)
    history: list[Recommendation] = []
    replicas = 4
    seen = []
    # High load at t=0 (recommendation 4), then the load drops to a quarter.
    loads = [100, 25, 25, 25, 25, 25, 25]
    for i, load in enumerate(loads):
        at = T + 60 * i
        d = decide(p, model="m", at=at, current=replicas, metric=load, history=history)
        seen.append((i, d.action, d.to_replicas))
        if d.recommendation is not None:
            history.append(Recommendation(at, d.recommendation))
        replicas = d.to_replicas or replicas
    # t=0: at target; t=60..240: held (the 4 of t=0 is inside the window); t=300: the 4
    # is exactly 300 s old, out of the window: scale down to 1.
    assert seen == [
        (0, "none", 4),
        (1, "none", 4),
        (2, "none", 4),
        (3, "none", 4),
        (4, "none", 4),
        (5, "scale", 1),
        (6, "none", 1),
    ]


def test_scale_down_held_reason_names_the_window() -> None:
    p = policy(scale_down_stabilization=300)
    d = decide(p, model="m", at=T, current=4, metric=25, history=[Recommendation(T - 120, 4)])
    assert d.action == "none"
    assert d.recommendation == 1
    assert (
        d.reason
        == "no change: scale-down to 1 held by the 300s stabilization window (highest recommendation 4)"
    )


def test_stabilization_uses_the_highest_recommendation_not_the_latest() -> None:
    p = policy(scale_down_stabilization=300)
    hist = [Recommendation(T - 250, 6), Recommendation(T - 100, 3), Recommendation(T - 400, 9)]
    d = decide(p, model="m", at=T, current=8, metric=12.5, history=hist)  # raw: 1
    assert (d.action, d.to_replicas) == ("scale", 6)  # the 9 is older than the window


def test_scale_up_is_immediate_by_default_and_stabilized_when_asked() -> None:
    hist = [Recommendation(T - 60, 2)]
    assert decide(policy(), model="m", at=T, current=2, metric=300, history=hist).to_replicas == 6
    p = policy(scale_up_stabilization=120)
    d = decide(p, model="m", at=T, current=2, metric=300, history=hist)
    assert d.action == "none"
    assert "scale-up to 6 held by the 120s stabilization window (lowest recommendation 2)" in d.reason
    # partly: the window's lowest recommendation is above the current count
    d = decide(p, model="m", at=T, current=2, metric=300, history=[Recommendation(T - 60, 4)])
    assert d.to_replicas == 4


def test_history_at_or_after_the_decision_time_is_ignored() -> None:
    # A re-run of the same sweep must not stabilize against its own earlier recommendation.
    p = policy(scale_down_stabilization=300)
    d = decide(
        p, model="m", at=T, current=4, metric=25, history=[Recommendation(T, 4), Recommendation(T + 60, 4)]
    )
    assert d.to_replicas == 1


# --------------------------------------------------------------------------- cooldown


@pytest.mark.parametrize(("since", "action"), [(30, "none"), (119, "none"), (120, "scale"), (600, "scale")])
def test_cooldown_after_any_scale_action(since: float, action: str) -> None:
    d = run(policy(cooldown=120), 2, 200, last_action_at=T - since)
    assert d.action == action
    if action == "none":
        assert d.reason.startswith(
            f"no change: cooldown ({since:g}s since the last scale action, cooldown 120s"
        )
        assert d.recommendation == 4  # still recorded for the windows


def test_cooldown_does_not_block_no_change() -> None:
    d = run(policy(cooldown=120), 2, 100, last_action_at=T - 10)
    assert d.action == "none"
    assert "within tolerance" in d.reason


# --------------------------------------------------------------------------- owners, signals


def test_owned_by_another_autoscaler_is_skipped() -> None:
    d = run(policy(), 2, 500, owner="HorizontalPodAutoscaler/web")
    assert (d.action, d.reason, d.to_replicas) == (
        "skipped",
        "skipped: owned by HorizontalPodAutoscaler/web",
        2,
    )
    assert d.recommendation is None


def test_missing_metric_is_no_change_with_the_reason() -> None:
    d = run(policy(), 2, None, metric_error="no data (empty result)")
    assert d.action == "none"
    assert d.reason == "no change: no signal (metric: no data (empty result): no recommendation)"
    assert d.recommendation is None
    assert run(policy(), 2, float("nan")).action == "none"


def test_zero_replicas_stays_at_zero() -> None:
    d = run(policy(min_replicas=0), 0, 500)
    assert d.action == "none"
    assert "scaled to zero" in d.reason


def test_no_signal_configured() -> None:
    d = run(policy(target=None), 2)
    assert d.reason == "no change: no signal (no metric target or alert steps in the policy)"


UP = {"alertname": "ServingQueueDepthHigh", "labels": {"model": "m", "mlinfra_scale": "up"}}
DOWN = {"alertname": "ServingQueueDepthLow", "labels": {"model": "m", "mlinfra_scale": "down"}}


def test_alert_steps() -> None:
    p = policy(target=None, alerts={"up_pods": 2, "down_pods": 1})
    up = run(p, 2, alerts=[UP])
    assert (up.action, up.to_replicas, up.trigger) == ("scale", 4, "alert")
    assert up.reason == "scale up 2 -> 4: alert ServingQueueDepthHigh"
    assert up.inputs["signals"] == {"up": ["ServingQueueDepthHigh"], "down": []}
    assert run(p, 2, alerts=[DOWN]).to_replicas == 1
    assert run(p, 2, alerts=[UP, DOWN]).to_replicas == 4  # up wins: safety first
    quiet = run(p, 2, alerts=[])
    assert quiet.action == "none"
    assert quiet.reason == "no change: no scale alert firing"
    other = {"alertname": "X", "labels": {"model": "m", "mlinfra_scale": "sideways"}}
    assert run(p, 2, alerts=[other]).action == "none"


def test_alert_names_filter() -> None:
    p = policy(target=None, alerts={"alerts": ["ServingLatencyScaleUp"]})
    assert run(p, 2, alerts=[UP]).action == "none"


def test_alert_and_metric_the_higher_recommendation_wins() -> None:
    p = policy(alerts={})
    d = run(p, 2, 300, alerts=[UP])  # metric: 6, alert: 3
    assert (d.to_replicas, d.trigger) == (6, "metric")
    d = run(p, 2, 100, alerts=[UP])  # metric: within tolerance (2), alert: 3
    assert (d.to_replicas, d.trigger) == (3, "alert")
    # a scale-down alert does not beat a metric at target (scale down only when all agree)
    assert run(p, 2, 100, alerts=[DOWN]).action == "none"


def _model(name: str = "half-plus-two", namespace: str = "serving", deployment: str = "hpt") -> Model:
    from mlinfra.config import load_fleet

    base = load_fleet().model("half-plus-two").model_dump()
    base.update(name=name)
    base["kubernetes"].update(namespace=namespace, deployment=deployment)
    return Model.model_validate(base)


@pytest.mark.parametrize(
    ("labels", "matches"),
    [
        ({"model": "half-plus-two"}, True),
        ({"model": "other"}, False),
        ({"deployment": "hpt"}, True),
        ({"deployment": "hpt", "namespace": "serving"}, True),
        ({"deployment": "hpt", "namespace": "batch"}, False),
        ({"host": "node-1"}, False),  # a host-level alert names no model: it scales nothing
        ({}, False),
    ],
)
def test_alert_to_model_mapping(labels: dict[str, str], matches: bool) -> None:
    assert alert_matches_model(labels, _model()) is matches


def test_alerts_for_model_filters() -> None:
    alerts = [{"labels": {"model": "half-plus-two"}}, {"labels": {"host": "n"}}]
    assert alerts_for_model(alerts, _model()) == [alerts[0]]
