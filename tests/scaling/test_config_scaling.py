"""The ScalingPolicy part of mlinfra.config: new fields, and invalid policies refused with the field path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from mlinfra.config import ScalingPolicy, load_fleet, parse_fleet
from mlinfra.exceptions import FleetConfigError

ROOT = Path(__file__).resolve().parents[2]


def fleet_text(edit: Any) -> str:
    data = yaml.safe_load((ROOT / "include" / "fleet.yaml").read_text())
    edit(data)
    return yaml.safe_dump(data, sort_keys=False)


def scaling(data: dict[str, Any], i: int = 0) -> dict[str, Any]:
    result: dict[str, Any] = data["models"][i]["scaling"]
    return result


def refused(edit: Any) -> str:
    with pytest.raises(FleetConfigError) as e:
        parse_fleet(fleet_text(edit))
    return str(e.value)


def test_defaults_are_the_hpa_defaults() -> None:
    p = ScalingPolicy(min_replicas=1, max_replicas=3)
    assert (p.tolerance, p.scale_up_stabilization, p.scale_down_stabilization) == (0.1, 0.0, 300.0)
    assert (p.target, p.alerts, p.max_step_pods, p.max_step_percent, p.cooldown, p.dry_run) == (
        None, None, None, None, 0.0, False,
    )  # fmt: skip
    assert p.select_policy == "max"
    assert ScalingPolicy(min_replicas=1, max_replicas=3, scale_up_stabilization="2m").history_window == 300.0


def test_alert_steps_parse_with_defaults() -> None:
    def edit(d: dict[str, Any]) -> None:
        scaling(d)["alerts"] = {"up_pods": 2}

    steps = parse_fleet(fleet_text(edit)).models[0].scaling.alerts
    assert steps is not None
    assert (steps.label, steps.alerts, steps.up_pods, steps.down_pods) == ("mlinfra_scale", [], 2, 1)


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (
            lambda d: scaling(d, 1).update(min_replicas=5, max_replicas=3),
            "models[1].scaling.max_replicas: must be >= min_replicas (5), got 3",
        ),
        (
            lambda d: scaling(d).update(scale_down_stabilization=-60),
            "models[0].scaling.scale_down_stabilization: durations cannot be negative, got -60",
        ),
        (
            lambda d: scaling(d).update(scale_up_stabilization="-5m"),
            "models[0].scaling.scale_up_stabilization: not a Prometheus duration",
        ),
        (
            lambda d: scaling(d).update(cooldown=-1),
            "models[0].scaling.cooldown: durations cannot be negative, got -1",
        ),
        (
            lambda d: scaling(d, 1)["target"].update(
                expr="mad_over_time(ml_gpu_utilization_percent[5m])"  # newer than Prometheus 2.42
            ),
            "models[1].scaling.target.expr: the local engine cannot evaluate this expression: "
            "unsupported by the local engine: the function mad_over_time()",
        ),
        (
            lambda d: scaling(d, 1)["target"].update(expr="avg(ml_gpu_utilization_percent"),
            "models[1].scaling.target.expr: the local engine cannot evaluate this expression: invalid PromQL",
        ),
        (
            lambda d: scaling(d)["target"].update(value=0),
            "models[0].scaling.target.value: input should be greater than 0",
        ),
        (
            lambda d: scaling(d)["target"].update(type="total"),
            "models[0].scaling.target.type: must be one of 'value' or 'average_value'",
        ),
        (
            lambda d: scaling(d).update(alerts={"up_pods": 0}),
            "models[0].scaling.alerts.up_pods: input should be greater than or equal to 1",
        ),
        (
            lambda d: scaling(d).update(max_step_percent=0),
            "models[0].scaling.max_step_percent: input should be greater than 0",
        ),
        (
            lambda d: scaling(d).update(select_policy="fastest"),
            "models[0].scaling.select_policy: must be one of 'max' or 'min'",
        ),
    ],
)
def test_invalid_policies_are_refused_with_the_field_path(edit: Any, expected: str) -> None:
    assert expected in refused(edit)


def test_target_checked_by_the_fleets_engine() -> None:
    # predict_linear() is beyond the local engine but fine for Prometheus.
    def edit(d: dict[str, Any]) -> None:
        d["rules"]["engine"] = "prometheus"
        scaling(d, 1)["target"]["expr"] = "predict_linear(ml_gpu_utilization_percent[5m], 600)"

    assert parse_fleet(fleet_text(edit)).models[1].scaling.target is not None

    def broken(d: dict[str, Any]) -> None:
        edit(d)
        scaling(d, 1)["target"]["expr"] = "avg(x"

    assert "the prometheus engine cannot evaluate this expression: invalid PromQL 'avg(x'" in refused(broken)


def test_error_names_the_line() -> None:
    message = refused(lambda d: scaling(d, 1)["target"].update(expr="mad_over_time(x[5m])"))
    assert message.startswith("fleet.yaml: line ")


def test_shipped_fleet_targets_pass_the_check() -> None:
    fleet = load_fleet()
    assert all(m.scaling.target is not None for m in fleet.models)
