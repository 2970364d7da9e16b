"""Manifests: rendered in a sandbox, parsed back, checked; hostile values stay inert or are refused."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlinfra.deploy.manifests import (
    ManifestValues,
    canary_values,
    diff_objects,
    environment,
    is_subset,
    manifest_values,
    needs_apply,
    render_manifests,
    template_config_maps,
    to_yaml_value,
)
from mlinfra.deploy.params import validate_request
from mlinfra.exceptions import ManifestError

HOSTILE = [
    'a"b',
    "it's",
    "line1\nline2",
    "x\r\ny",
    "&anchor value",
    "*alias",
    "{{ 7 * 7 }}",
    "{% raw %}",
    "key: value\nother: 1",
    "- item",
    "--- \n...",
    "!!python/object:os.system",
    "\u2028\u2029\x85",
    "\x00\x07\t",
    "emoji \U0001f600",
    "\\n backslash",
    "# comment",
    "",
]


@pytest.fixture
def values(fleet: Any) -> ManifestValues:
    request = validate_request(
        {"model": "resnet50-classifier", "version": 3, "image_tag": "2.14.1-gpu"}, fleet
    )
    return manifest_values(
        fleet.model("resnet50-classifier"), request, run_id="manual__1", replicas=2, triggered_by="ana"
    )


def test_renders_the_three_objects_with_what_the_issue_asks_for(values: ManifestValues) -> None:
    rendered = render_manifests(values)
    config, service, dep = rendered.objects
    assert [o["kind"] for o in rendered.objects] == ["ConfigMap", "Service", "Deployment"]
    assert "specific { versions: 3 }" in config["data"]["models.config"]
    assert 'name: "resnet50"' in config["data"]["models.config"]
    assert 'path: "/monitoring/prometheus/metrics"' in config["data"]["monitoring.config"]
    assert {p["name"]: p["port"] for p in service["spec"]["ports"]} == {"grpc": 8500, "http": 8501}
    container = dep["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "tensorflow/serving:2.14.1-gpu"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert container["readinessProbe"]["httpGet"] == {
        "path": "/v1/models/resnet50/versions/3/metadata",
        "port": "http",
    }
    # Liveness starts only once the port answers, which TF Serving opens after the initial
    # load: the startup probe waits as long as the progress deadline (600 s) for it.
    assert (
        container["livenessProbe"]["tcpSocket"] == container["startupProbe"]["tcpSocket"] == {"port": "grpc"}
    )
    startup = container["startupProbe"]
    assert (
        startup["periodSeconds"] * startup["failureThreshold"]
        == dep["spec"]["progressDeadlineSeconds"]
        == 600
    )
    assert "--monitoring_config_file=/etc/tf-serving/monitoring.config" in container["args"]
    assert dep["spec"]["template"]["metadata"]["labels"] == {
        "app": "resnet50-classifier",
        "model": "resnet50-classifier",
        "version": "3",
    }
    assert dep["metadata"]["annotations"]["mlinfra.io/airflow-run-id"] == "manual__1"
    assert dep["spec"]["replicas"] == 2
    assert yaml.safe_load_all(rendered.text)  # the text is what was parsed


def test_no_gpu_limit_for_a_cpu_model(fleet: Any) -> None:
    request = validate_request({"model": "half-plus-two", "version": 1, "image_tag": "2.14.1"}, fleet)
    dep = render_manifests(
        manifest_values(fleet.model("half-plus-two"), request, run_id="r", replicas=1)
    ).objects[2]
    assert "nvidia.com/gpu" not in dep["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]


def test_each_version_owns_an_immutable_config_map_named_by_its_content(values: ManifestValues) -> None:
    v3 = render_manifests(values).objects
    v4 = render_manifests(replace(values, version=4)).objects
    again = render_manifests(replace(values, run_id="manual__2", replicas=5)).objects
    for config, _, dep in (v3, v4):
        assert config["immutable"] is True
        assert config["metadata"]["name"].startswith("resnet50-classifier-config-")
        assert config["metadata"]["labels"]["mlinfra.io/config-of"] == "resnet50-classifier"
        volumes = dep["spec"]["template"]["spec"]["volumes"]
        assert volumes == [{"name": "config", "configMap": {"name": config["metadata"]["name"]}}]
    # A new version is a new object; the same content is the same object (idempotent deploys).
    assert v3[0]["metadata"]["name"] != v4[0]["metadata"]["name"]
    assert again[0]["metadata"]["name"] == v3[0]["metadata"]["name"]


def test_a_template_that_mounts_another_config_map_is_refused(values: ManifestValues) -> None:
    from mlinfra.deploy.manifests import check_manifests

    objects = render_manifests(values).objects
    objects[2]["spec"]["template"]["spec"]["volumes"][0]["configMap"]["name"] = "resnet50-classifier-config"
    with pytest.raises(ManifestError, match="must mount exactly the ConfigMap"):
        check_manifests(objects, values)
    objects = render_manifests(values).objects
    objects[0]["immutable"] = False
    with pytest.raises(ManifestError, match="immutable must be true"):
        check_manifests(objects, values)


@pytest.mark.parametrize("text", HOSTILE, ids=range(len(HOSTILE)))
@pytest.mark.parametrize("field", ["run_id", "triggered_by", "dag_id"])
def test_free_text_fields_render_inertly(values: ManifestValues, field: str, text: str) -> None:
    rendered = render_manifests(replace(values, **{field: text}))
    annotations = rendered.objects[2]["metadata"]["annotations"]
    key = {
        "run_id": "mlinfra.io/airflow-run-id",
        "triggered_by": "mlinfra.io/triggered-by",
        "dag_id": "mlinfra.io/airflow-dag-id",
    }[field]
    assert annotations[key] == text
    # Nothing else moved: same keys everywhere as with a harmless value.
    plain = render_manifests(values).objects
    assert [sorted(o) for o in rendered.objects] == [sorted(o) for o in plain]
    assert rendered.objects[2]["spec"] == plain[2]["spec"]


@pytest.mark.parametrize("text", HOSTILE, ids=range(len(HOSTILE)))
@pytest.mark.parametrize("field", ["name", "namespace", "model", "version_label", "image", "cpu", "memory"])
def test_structured_fields_with_hostile_values_are_refused_or_inert(
    values: ManifestValues, field: str, text: str
) -> None:
    changed = replace(values, **({"model_name": text} if field == "version_label" else {field: text}))
    try:
        rendered = render_manifests(changed)
    except ManifestError:
        return  # refused by the checks: fine
    # Accepted: then the value reads back exactly, in the one place it belongs.
    dep = rendered.objects[2]
    container = dep["spec"]["template"]["spec"]["containers"][0]
    if field == "image":
        assert container["image"] == text
    elif field in ("cpu", "memory"):
        assert container["resources"]["limits"][field] == text
    elif field == "version_label":
        assert f"/v1/models/{text}/versions/3/metadata" == container["readinessProbe"]["httpGet"]["path"]
    assert sorted(dep["spec"]) == sorted(render_manifests(values).objects[2]["spec"])


def test_names_must_be_dns_1123(values: ManifestValues) -> None:
    with pytest.raises(ManifestError, match="DNS-1123"):
        render_manifests(replace(values, name="Bad_Name"))
    # A Service's name is a DNS-1035 label: refused here, before the ConfigMap is applied.
    with pytest.raises(
        ManifestError, match=r"Service '2stage-ranker': metadata.name must be a DNS-1035 label"
    ):
        render_manifests(replace(values, name="2stage-ranker"))
    with pytest.raises(ManifestError, match="metadata.namespace"):
        render_manifests(replace(values, namespace="a" * 64))


def test_the_model_config_escapes_its_strings(values: ManifestValues) -> None:
    rendered = render_manifests(replace(values, model_name='x" } config { name: "evil'))
    text = rendered.objects[0]["data"]["models.config"]
    assert [line.strip() for line in text.splitlines()].count("config {") == 1
    assert r'name: "x\" } config { name: \"evil"' in text


def test_templates_cannot_reach_python_internals(tmp_path: Path) -> None:
    from jinja2.exceptions import SecurityError

    (tmp_path / "evil.yaml.j2").write_text("x: {{ name.__class__.__mro__[1].__subclasses__() }}\n")
    with pytest.raises(SecurityError):
        environment(tmp_path).get_template("evil.yaml.j2").render(name="a")


def test_a_template_that_adds_yaml_structure_is_refused(tmp_path: Path, values: ManifestValues) -> None:
    from mlinfra.deploy import manifests

    for name in manifests.TEMPLATES:
        (tmp_path / name).write_text((manifests.TEMPLATE_DIR / name).read_text())
    (tmp_path / "service.yaml.j2").write_text(
        (tmp_path / "service.yaml.j2").read_text() + "extra: &a 1\nmore: *a\n"
    )
    with pytest.raises(ManifestError, match="anchors, aliases or tags"):
        render_manifests(values, tmp_path)


def test_undefined_template_variables_fail(tmp_path: Path, values: ManifestValues) -> None:
    from mlinfra.deploy import manifests

    for name in manifests.TEMPLATES:
        (tmp_path / name).write_text((manifests.TEMPLATE_DIR / name).read_text())
    (tmp_path / "service.yaml.j2").write_text("x: {{ not_a_value }}\n")
    with pytest.raises(ManifestError, match="not_a_value"):
        render_manifests(values, tmp_path)


@pytest.mark.parametrize(
    ("value", "text"),
    [(None, "null"), (True, "true"), (3, "3"), ("a\nb", '"a\\x0ab"'), ({"k": [1, "v"]}, '{"k": [1, "v"]}')],
)
def test_values_become_inert_yaml(value: Any, text: str) -> None:
    assert to_yaml_value(value) == text
    assert yaml.safe_load(text) == value


def test_non_finite_numbers_and_objects_are_refused() -> None:
    with pytest.raises(ManifestError):
        to_yaml_value(float("nan"))
    with pytest.raises(ManifestError):
        to_yaml_value(object())


def test_changes_ignore_the_run_annotations_and_server_defaults(values: ManifestValues) -> None:
    dep = render_manifests(values).objects[2]
    live = {
        **dep,
        "status": {"replicas": 2},
        "metadata": {**dep["metadata"], "uid": "u", "generation": 3, "annotations": {}},
    }
    assert not needs_apply(dep, live)
    other_run = render_manifests(replace(values, run_id="manual__2")).objects[2]
    assert not needs_apply(other_run, live)
    assert needs_apply(render_manifests(replace(values, version=4)).objects[2], live)
    assert needs_apply(dep, None)
    assert is_subset({"a": [1, {"b": 2}]}, {"a": [1, {"b": 2, "c": 3}], "d": 4})
    assert not is_subset({"a": True}, {"a": 1})


def test_the_diff_shows_managed_fields_only(values: ManifestValues) -> None:
    objects = render_manifests(values).objects
    live_dep = {**objects[2], "status": {"replicas": 9}}
    live_dep = {**live_dep, "spec": {**live_dep["spec"], "replicas": 1}}
    diff = diff_objects(objects, {"ConfigMap": objects[0], "Service": None, "Deployment": live_dep})
    assert f"= ConfigMap/{objects[0]['metadata']['name']}: unchanged" in diff
    assert "+++ new Service/resnet50-classifier" in diff
    assert "-  replicas: 1" in diff
    assert "+  replicas: 2" in diff
    assert "status" not in diff


def test_a_template_typo_is_refused_by_the_kubernetes_schema_naming_the_field(
    values: ManifestValues, tmp_path: Path
) -> None:
    import shutil

    from mlinfra.deploy.manifests import TEMPLATE_DIR

    shutil.copytree(TEMPLATE_DIR, tmp_path, dirs_exist_ok=True)
    deployment = tmp_path / "deployment.yaml.j2"
    deployment.write_text(deployment.read_text().replace("imagePullPolicy:", "imagePullPolicyy:"))
    render_manifests(values, tmp_path)  # without a Kubernetes version: our own checks only
    with pytest.raises(ManifestError, match=r"containers\[0\]\.imagePullPolicyy: unknown field"):
        render_manifests(replace(values, kubernetes_version="1.35"), tmp_path)


def test_object_store_credentials_come_from_a_secret_and_claims_are_mounted(fleet: Any) -> None:
    from mlinfra.config import parse_fleet

    raw = yaml.safe_load((Path(__file__).resolve().parents[2] / "include" / "fleet.yaml").read_text())
    raw["models"][0]["serving"].update(
        model_base_path="s3://ml-models/prod/half_plus_two",
        artifacts_conn_id="aws_default",
        credentials_secret="half-plus-two-s3",
    )
    raw["models"][1]["serving"]["model_base_path"] = "pvc://model-store/resnet50"
    fleet = parse_fleet(yaml.safe_dump(raw), source="fleet.yaml")
    s3, pvc = fleet.models
    for model, version in ((s3, 2), (pvc, 3)):
        request = validate_request({"model": model.name, "version": version, "image_tag": "2.14.1"}, fleet)
        objects = render_manifests(
            manifest_values(model, request, run_id="r", replicas=1, kubernetes_version="1.35")
        ).objects
        config = objects[0]["data"]["models.config"]
        spec = objects[2]["spec"]["template"]["spec"]
        if model is s3:
            assert 'base_path: "s3://ml-models/prod/half_plus_two"' in config
            assert spec["containers"][0]["envFrom"] == [{"secretRef": {"name": "half-plus-two-s3"}}]
            assert "s3" not in json.dumps(spec["containers"][0].get("env", []))  # no connection copied
        else:
            assert 'base_path: "/models/pvc/model-store/resnet50"' in config
            assert {
                "name": "models",
                "persistentVolumeClaim": {"claimName": "model-store", "readOnly": True},
            } in (spec["volumes"])
            assert {"name": "models", "mountPath": "/models/pvc/model-store", "readOnly": True} in spec[
                "containers"
            ][0]["volumeMounts"]


def test_every_config_map_labels_its_version_stable(values: ManifestValues) -> None:
    config = render_manifests(values).by_kind("ConfigMap")["data"]["models.config"]
    assert f"specific {{ versions: {values.version} }}" in config
    assert f'version_labels {{ key: "stable" value: {values.version} }}' in config
    assert "canary" not in config


def test_the_canary_objects_sit_next_to_the_stable(values: ManifestValues) -> None:
    stable = render_manifests(values)
    old, new = values.version - 1, values.version
    canary = render_manifests(canary_values(values, stable_version=old, replicas=3))
    cm, service, dep = canary.objects
    assert [o["kind"] for o in canary.objects] == ["ConfigMap", "Service", "Deployment"]
    assert dep["metadata"]["name"] == service["metadata"]["name"] == f"{values.name}-canary"
    assert dep["spec"]["replicas"] == 3
    assert dep["spec"]["selector"]["matchLabels"] == {"app": values.name, "track": "canary"}
    assert service["spec"]["selector"] == {"app": values.name, "track": "canary"}
    pod_labels = dep["spec"]["template"]["metadata"]["labels"]
    # app: <name> too, so the model's Service (selector {app}) spreads over both tracks.
    assert pod_labels == {"app": values.name, "model": values.model, "version": str(new), "track": "canary"}
    # The same pod template as the stable's, but for the labels and its own ConfigMap.
    stable_spec = stable.by_kind("Deployment")["spec"]["template"]["spec"]
    assert dep["spec"]["template"]["spec"]["containers"] == stable_spec["containers"]
    assert template_config_maps(dep["spec"]["template"]) == {cm["metadata"]["name"]}
    assert cm["metadata"]["name"] != stable.by_kind("ConfigMap")["metadata"]["name"]
    assert cm["metadata"]["labels"]["mlinfra.io/config-of"] == f"{values.name}-canary"
    config = cm["data"]["models.config"]
    assert f"specific {{ versions: {old} versions: {new} }}" in config
    assert f'version_labels {{ key: "stable" value: {old} }}' in config
    assert f'version_labels {{ key: "canary" value: {new} }}' in config
    assert cm["immutable"] is True


def test_the_canary_service_is_optional_and_schema_checked(values: ManifestValues) -> None:
    canary = render_manifests(
        canary_values(
            replace(values, kubernetes_version="1.35"),
            stable_version=values.version - 1,
            replicas=1,
            service=False,
        )
    )
    assert [o["kind"] for o in canary.objects] == ["ConfigMap", "Deployment"]


def test_a_canary_must_be_a_higher_version(values: ManifestValues) -> None:
    with pytest.raises(
        ManifestError, match=rf"higher version than the stable \({values.version}\), got {values.version}"
    ):
        canary_values(values, stable_version=values.version, replicas=1)
