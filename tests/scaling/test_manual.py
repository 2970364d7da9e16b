"""The model_scale request: validated against the fleet, every problem named."""

from __future__ import annotations

from typing import Any

import pytest

from mlinfra.config import load_fleet
from mlinfra.exceptions import ScaleRequestError
from mlinfra.scaling.manual import ScaleRequest, form_params, validate_scale_request


def problems(conf: Any) -> list[str]:
    with pytest.raises(ScaleRequestError) as e:
        validate_scale_request(conf, load_fleet())
    return e.value.problems


def test_valid_request() -> None:
    r = validate_scale_request(
        {"model": "resnet50-classifier", "replicas": 8, "reason": " peak "}, load_fleet()
    )
    assert r == ScaleRequest(model="resnet50-classifier", replicas=8, reason="peak", dry_run=False)


def test_a_hold_is_a_bounded_duration() -> None:
    from mlinfra.scaling.manual import hold_until

    r = validate_scale_request(
        {"model": "half-plus-two", "replicas": 3, "reason": "x", "hold": "2h"}, load_fleet()
    )
    assert (r.hold, r.hold_seconds, hold_until(r, 1000.0)) == ("2h", 7200.0, 8200.0)
    none = validate_scale_request({"model": "half-plus-two", "replicas": 3, "reason": "x"}, load_fleet())
    assert hold_until(none, 1000.0) is None
    expected = "hold: must be empty (no hold) or a duration up to 1w such as 30m, 2h, 1d, got {!r}"
    for bad in ("2 hours", "8d", "0s"):
        assert problems({"model": "half-plus-two", "replicas": 3, "reason": "x", "hold": bad}) == [
            expected.format(bad)
        ]


@pytest.mark.parametrize(
    ("conf", "expected"),
    [
        (
            {"model": "half-plus-two", "replicas": 5, "reason": "x"},
            [
                "replicas: must be between 1 and 4 for model half-plus-two (its scaling policy in the fleet file), got 5"
            ],
        ),
        (
            {"model": "resnet50-classifier", "replicas": 1, "reason": "x"},
            [
                "replicas: must be between 2 and 8 for model resnet50-classifier (its scaling policy in the fleet file), got 1"
            ],
        ),
        (
            {"model": "half-plus-two", "replicas": 2},
            ["reason: required: say why (it goes to the audit trail)"],
        ),
        (
            {"model": "half-plus-two", "replicas": 2, "reason": "   "},
            ["reason: required: say why (it goes to the audit trail)"],
        ),
        (
            {"model": "nope", "replicas": 2, "reason": "x"},
            ["model: must be one of half-plus-two, resnet50-classifier, got 'nope'"],
        ),
        (
            {"model": "half-plus-two", "replicas": "2", "reason": "x"},
            ["replicas: must be an integer >= 0, got '2'"],
        ),
        (
            {"model": "half-plus-two", "replicas": True, "reason": "x"},
            ["replicas: must be an integer >= 0, got True"],
        ),
        (
            {"model": "half-plus-two", "replicas": 2, "reason": "x", "force": True},
            ["unknown parameter(s) 'force'; accepted: model, replicas, reason, dry_run, hold"],
        ),
        (
            "scale it",
            ["conf must be a JSON object with model, replicas, reason, dry_run, hold, got 'scale it'"],
        ),
    ],
)
def test_invalid_requests(conf: Any, expected: list[str]) -> None:
    assert problems(conf) == expected


def test_the_form_never_bounds_replicas_by_another_models_range_and_requires_a_reason() -> None:
    params = form_params(load_fleet())
    assert params["model"].schema["enum"] == ["half-plus-two", "resnet50-classifier"]
    # A fleet-wide maximum made the form turn 9 into 8 silently: only ">= 0" here, the task checks the rest.
    assert params["replicas"].schema["minimum"] == 0
    assert "maximum" not in params["replicas"].schema
    assert "it is never changed for you" in params["replicas"].description
    assert "autoscaler may change the count again" in params["hold"].description
    assert "half-plus-two: 2m" in params["hold"].description
    assert params["reason"].schema["minLength"] == 1
    assert "half-plus-two: 1-4; resnet50-classifier: 2-8" in params["replicas"].description
