"""Schema validation: rendered manifests against the Kubernetes OpenAPI schema (kubernetes-validate)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from mlinfra.deploy import manifests
from mlinfra.deploy.manifests import manifest_values, render_manifests
from mlinfra.deploy.params import validate_request
from mlinfra.deploy.schema import (
    DEFAULT_KUBERNETES_VERSION,
    kubernetes_version_problem,
    schema_problems,
    supported_kubernetes_versions,
    validate_manifests,
)
from mlinfra.exceptions import ManifestError

CONTAINER = "spec.template.spec.containers[0]"


def _rendered(fleet: Any, model: str = "half-plus-two", template_dir: Path | None = None) -> list[dict]:
    request = validate_request({"model": model, "version": 3, "image_tag": "2.14.1"}, fleet)
    values = manifest_values(fleet.model(model), request, run_id="manual__1", replicas=2)
    if template_dir is None:
        return render_manifests(values).objects
    return render_manifests(values, template_dir).objects


def _refusal(objects: list[dict], version: str = DEFAULT_KUBERNETES_VERSION) -> list[str]:
    with pytest.raises(ManifestError) as err:
        validate_manifests(objects, version)
    text = str(err.value)
    assert text.startswith(f"manifests do not match the Kubernetes {version} API schema:\n")
    return [line.strip() for line in text.splitlines()[1:]]


def test_the_default_version_is_bundled_and_the_list_is_ordered() -> None:
    versions = supported_kubernetes_versions()
    assert DEFAULT_KUBERNETES_VERSION in versions
    assert versions == sorted(versions, key=lambda v: int(v.split(".")[1]))
    assert all(v.startswith("1.") for v in versions)


@pytest.mark.parametrize("model", ["half-plus-two", "resnet50-classifier"])
@pytest.mark.parametrize("version", [DEFAULT_KUBERNETES_VERSION, "newest"])
def test_the_projects_rendered_manifests_pass(fleet: Any, model: str, version: str) -> None:
    if version == "newest":
        version = supported_kubernetes_versions()[-1]
    objects = _rendered(fleet, model)
    assert [o["kind"] for o in objects] == ["ConfigMap", "Service", "Deployment"]
    validate_manifests(objects, version)  # raises on any problem
    assert schema_problems(objects, version) == []


def test_a_misspelt_field_in_a_template_is_refused_with_its_path(fleet: Any, tmp_path: Path) -> None:
    for name in manifests.TEMPLATES:
        (tmp_path / name).write_text((manifests.TEMPLATE_DIR / name).read_text())
    template = tmp_path / "deployment.yaml.j2"
    original = template.read_text()
    typo = original.replace("imagePullPolicy:", "imagePullPolicyy:", 1)
    assert typo != original, "the deployment template no longer sets imagePullPolicy: pick another field"
    template.write_text(typo)
    objects = _rendered(fleet, template_dir=tmp_path)  # the project's own checks do not see it
    [problem] = _refusal(objects)
    assert problem.startswith(
        f"Deployment 'half-plus-two': {CONTAINER}.imagePullPolicyy: unknown field "
        "(did you mean 'imagePullPolicy'?); accepted here: "
    )
    assert "image, imagePullPolicy, lifecycle, livenessProbe, name" in problem


def test_a_wrong_type_names_the_field_and_both_types(fleet: Any) -> None:
    objects = _rendered(fleet)
    objects[2]["spec"]["replicas"] = "2"
    objects[1]["spec"]["ports"][0]["port"] = "grpc"
    assert _refusal(objects) == [
        "Service 'half-plus-two': spec.ports[0].port: expected integer, got string \"grpc\"",
        "Deployment 'half-plus-two': spec.replicas: expected integer, got string \"2\"",
    ]


def test_a_missing_required_field_is_refused(fleet: Any) -> None:
    objects = _rendered(fleet)
    del objects[2]["spec"]["template"]["spec"]["containers"][0]["name"]
    del objects[2]["spec"]["selector"]
    assert _refusal(objects) == [
        "Deployment 'half-plus-two': spec.selector: required field is missing",
        f"Deployment 'half-plus-two': {CONTAINER}.name: required field is missing",
    ]


def test_every_problem_of_every_object_at_once(fleet: Any) -> None:
    objects = _rendered(fleet)
    objects[0]["metadata"]["labels"]["app.kubernetes.io/part-of"] = 3
    objects[0]["dataa"] = {}
    container = objects[2]["spec"]["template"]["spec"]["containers"][0]
    container["ports"][0]["containerPort"] = 8500.5
    container["readinessProbe"]["httpGet"]["port"] = {"name": "http"}  # IntOrString
    problems = _refusal(objects)
    config = objects[0]["metadata"]["name"]
    assert len(problems) == 4
    assert problems[0].startswith(f"ConfigMap '{config}': dataa: unknown field (did you mean 'data'?)")
    assert (
        f"ConfigMap '{config}': metadata.labels[\"app.kubernetes.io/part-of\"]: "
        "expected string, got integer 3"
    ) in problems
    assert (
        f"Deployment 'half-plus-two': {CONTAINER}.ports[0].containerPort: expected integer, got number 8500.5"
    ) in problems
    assert (
        f"Deployment 'half-plus-two': {CONTAINER}.readinessProbe.httpGet.port: "
        'expected string or integer, got object {"name": "http"}'
    ) in problems


def test_an_enum_lists_what_is_accepted(fleet: Any) -> None:
    objects = _rendered(fleet)
    # The group's domain is not part of the schema's file name: the enum is what refuses it.
    objects[2]["apiVersion"] = "apps.example.com/v1"
    assert _refusal(objects) == [
        'Deployment \'half-plus-two\': apiVersion: must be one of "apps/v1"; got string "apps.example.com/v1"'
    ]


def test_value_enums_are_not_in_the_openapi_schema(fleet: Any) -> None:
    # Kubernetes' OpenAPI document leaves values like imagePullPolicy or a port's protocol
    # as plain strings (the API server checks them in code): the schema cannot refuse them.
    objects = _rendered(fleet)
    objects[1]["spec"]["ports"][0]["protocol"] = "QUIC"
    objects[2]["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] = "Sometimes"
    assert schema_problems(objects, DEFAULT_KUBERNETES_VERSION) == []


def test_an_unknown_kind_or_api_version_is_refused(fleet: Any) -> None:
    objects = _rendered(fleet)
    objects[2]["apiVersion"] = "extensions/v1beta1"  # removed in 1.16
    objects.append({"apiVersion": "v1", "metadata": {"name": "x"}})
    assert _refusal(objects) == [
        "Deployment 'half-plus-two': Kubernetes 1.35 has no kind 'Deployment' in apiVersion "
        "'extensions/v1beta1'",
        "object 3 'x': apiVersion and kind must be strings, got 'v1', None",
    ]


def test_an_unsupported_kubernetes_version_names_the_supported_ones(fleet: Any) -> None:
    with pytest.raises(ManifestError, match=r"no bundled schema for Kubernetes '1\.99'; supported: 1\.25, "):
        validate_manifests(_rendered(fleet), "1.99")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (DEFAULT_KUBERNETES_VERSION, None),
        (1.3, 'must be a string like "1.35" (quote it: YAML reads 1.30 as the number 1.3), got 1.3'),
        ("1.99", "must be a Kubernetes minor whose schema kubernetes-validate bundles (1.25 to "),
        ("v1.33", "got 'v1.33'"),
    ],
)
def test_kubernetes_version_problems(value: Any, expected: str | None) -> None:
    problem = kubernetes_version_problem(value)
    if expected is None:
        assert problem is None
    else:
        assert problem is not None
        assert expected in problem


def test_validation_does_not_change_the_objects(fleet: Any) -> None:
    objects = _rendered(fleet)
    before = copy.deepcopy(objects)
    validate_manifests(objects, DEFAULT_KUBERNETES_VERSION)
    assert objects == before
