"""The deploy request: the form's JSON Schema and the first task's validation agree."""

from __future__ import annotations

from typing import Any

import pytest

from mlinfra.deploy.params import DeployRequest, form_params, is_oci_tag, model_label, validate_request
from mlinfra.exceptions import DeployRequestError

GOOD = {"model": "half-plus-two", "version": 2, "image_tag": "2.14.1"}


def test_a_valid_request_takes_the_image_repository_from_the_fleet(fleet: Any) -> None:
    request = validate_request(GOOD, fleet)
    assert request == DeployRequest(model="half-plus-two", version=2, image_tag="2.14.1").model_copy(
        update={"image_repository": "tensorflow/serving"}
    )
    assert request.image == "tensorflow/serving:2.14.1"
    assert (request.run_smoke, request.auto_rollback, request.dry_run, request.replicas) == (
        True,
        True,
        False,
        None,
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"model": "nope"}, "model: must be one of half-plus-two, resnet50-classifier, got 'nope'"),
        ({"version": 0}, "version: must be an integer >= 1, got 0"),
        ({"version": "2"}, "version: must be an integer >= 1, got '2'"),
        ({"version": True}, "version: must be an integer >= 1, got True"),
        ({"image_tag": "latest\nimage: evil"}, "image_tag: must be an OCI tag"),
        ({"image_tag": "evil/repo:tag"}, "image_tag: must be an OCI tag"),
        ({"image_tag": "-x"}, "image_tag: must be an OCI tag"),
        ({"image_tag": "a" * 129}, "image_tag: must be an OCI tag"),
        ({"replicas": 5}, "replicas: must be between 1 and 4 for model half-plus-two"),
        ({"replicas": 0}, "replicas: must be an integer >= 1 or null"),
        ({"dry_run": "yes"}, "dry_run: must be true or false, got 'yes'"),
        ({"image": "evil:latest"}, "unknown parameter(s) 'image'"),
    ],
)
def test_bad_values_are_refused_naming_the_parameter(
    fleet: Any, change: dict[str, Any], message: str
) -> None:
    with pytest.raises(DeployRequestError) as e:
        validate_request({**GOOD, **change}, fleet)
    assert any(message in p for p in e.value.problems), e.value.problems


def test_replicas_are_bounded_by_the_chosen_model(fleet: Any) -> None:
    assert validate_request({**GOOD, "model": "resnet50-classifier", "replicas": 8}, fleet).replicas == 8
    with pytest.raises(DeployRequestError, match="between 2 and 8 for model resnet50-classifier"):
        validate_request({**GOOD, "model": "resnet50-classifier", "replicas": 1}, fleet)


def test_every_problem_is_listed_at_once(fleet: Any) -> None:
    with pytest.raises(DeployRequestError) as e:
        validate_request({"model": "half-plus-two", "version": -1, "image_tag": ""}, fleet)
    assert len(e.value.problems) == 2
    assert "version" in str(e.value)
    assert "image_tag" in str(e.value)


def test_a_conf_that_is_not_an_object_is_refused(fleet: Any) -> None:
    with pytest.raises(DeployRequestError, match="conf must be a JSON object"):
        validate_request(["half-plus-two"], fleet)  # type: ignore[arg-type]


def test_the_form_mirrors_the_fleet(fleet: Any) -> None:
    params = form_params(fleet)
    model = params["model"].schema
    assert model["enum"] == ["half-plus-two", "resnet50-classifier"]
    assert model["values_display"]["resnet50-classifier"] == model_label(fleet.model("resnet50-classifier"))
    assert "1 GPU" in model["values_display"]["resnet50-classifier"]
    assert params["version"].schema == {"type": "integer", "minimum": 1, "title": "Model version"}
    assert params["model"].description
    assert params["replicas"].schema["minimum"] == 1
    assert params["replicas"].schema["maximum"] == 8
    assert params["replicas"].value is None
    assert [params[k].value for k in ("run_smoke", "auto_rollback", "dry_run")] == [True, True, False]


def test_the_form_rejects_what_the_task_rejects(fleet: Any) -> None:
    from airflow.sdk.exceptions import ParamValidationError

    params = form_params(fleet)
    with pytest.raises(ParamValidationError):
        params["image_tag"].resolve("x y")
    with pytest.raises(ParamValidationError):
        params["version"].resolve(0)
    with pytest.raises(ParamValidationError):
        params["model"].resolve("other")
    assert params["image_tag"].resolve("2.14.1-gpu") == "2.14.1-gpu"
    assert is_oci_tag("2.14.1-gpu")
    assert not is_oci_tag(".hidden")
