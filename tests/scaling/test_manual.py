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
            ["unknown parameter(s) 'force'; accepted: model, replicas, reason, dry_run"],
        ),
        ("scale it", ["conf must be a JSON object with model, replicas, reason, dry_run, got 'scale it'"]),
    ],
)
def test_invalid_requests(conf: Any, expected: list[str]) -> None:
    assert problems(conf) == expected


def test_form_bounds_by_the_fleet_and_requires_a_reason() -> None:
    params = form_params(load_fleet())
    assert params["model"].schema["enum"] == ["half-plus-two", "resnet50-classifier"]
    assert (params["replicas"].schema["minimum"], params["replicas"].schema["maximum"]) == (1, 8)
    assert params["reason"].schema["minLength"] == 1
    assert "half-plus-two: 1-4; resnet50-classifier: 2-8" in params["replicas"].description
