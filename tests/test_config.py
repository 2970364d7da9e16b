"""Fleet configuration: the shipped file loads; bad files are refused precisely."""

from __future__ import annotations

import os
import textwrap
import time
from pathlib import Path

import pytest
import yaml

from mlinfra.config import Fleet, load_fleet, parse_fleet
from mlinfra.exceptions import FleetConfigError

ROOT = Path(__file__).resolve().parents[1]
FLEET = ROOT / "include" / "fleet.yaml"


def test_shipped_fleet_loads() -> None:
    fleet = load_fleet(FLEET)
    assert fleet.model_names == ["half-plus-two", "resnet50-classifier"]
    hpt = fleet.model("half-plus-two")
    assert hpt.serving.model_name == "half_plus_two"
    assert hpt.scaling.scale_down_stabilization == 300.0  # "5m"
    assert hpt.scaling.cooldown == 120.0
    assert fleet.model("resnet50-classifier").resources.gpus == 1
    assert fleet.store.retention == 30 * 86400
    assert fleet.namespaces == {"kubernetes_default": ["serving"]}
    assert fleet.include_path(hpt.smoke_file) == ROOT / "include" / "smoke" / "half_plus_two.json"
    with pytest.raises(KeyError, match="known: half-plus-two, resnet50-classifier"):
        fleet.model("nope")


def test_loaded_once_per_file_version(tmp_path: Path) -> None:
    f = tmp_path / "fleet.yaml"
    f.write_text(FLEET.read_text())
    first = load_fleet(f)
    assert load_fleet(f) is first  # cached
    f.write_text(FLEET.read_text().replace("gpu_hour: 2.48", "gpu_hour: 3.0"))
    os.utime(f, (time.time() + 5, time.time() + 5))  # mtime resolution can be coarse
    assert load_fleet(f).cost.gpu_hour == 3.0


def _mutate(edit) -> str:  # type: ignore[no-untyped-def]
    data = yaml.safe_load(FLEET.read_text())
    edit(data)
    return yaml.safe_dump(data, sort_keys=False)


def _set(path: str, value):  # type: ignore[no-untyped-def]
    def edit(data) -> None:  # type: ignore[no-untyped-def]
        *parents, last = [int(p) if p.isdigit() else p for p in path.split(".")]
        node = data
        for p in parents:
            node = node[p]
        if value is _DELETE:
            del node[last]
        else:
            node[last] = value

    return edit


_DELETE = object()

BAD_FILES = [
    # (id, edit, expected fragment of the error)
    (
        "max-below-min",
        _set("models.1.scaling.max_replicas", 1),
        "models[1].scaling.max_replicas: must be >= min_replicas (2), got 1",
    ),
    (
        "negative-gpus",
        _set("models.1.resources.gpus", -1),
        "models[1].resources.gpus: input should be greater than or equal to 0, got -1",
    ),
    (
        "unknown-field",
        _set("models.0.serving.grpc_port", 8500),
        "models[0].serving.grpc_port: unknown field; accepted here: conn_id, model_name, grpc_target, rest_url",
    ),
    ("missing-slo", _set("models.0.slo", _DELETE), "models[0].slo: required field is missing"),
    (
        "bad-k8s-name",
        _set("models.0.kubernetes.deployment", "Half_Plus_Two"),
        "models[0].kubernetes.deployment: got 'Half_Plus_Two', which is not a DNS-1035 label",
    ),
    (
        "bad-duration",
        _set("models.0.scaling.cooldown", "5 minutes"),
        "models[0].scaling.cooldown: not a Prometheus duration (like 30s, 5m, 1h30m): '5 minutes'",
    ),
    (
        "negative-duration",
        _set("models.0.scaling.scale_down_stabilization", -30),
        "models[0].scaling.scale_down_stabilization: durations cannot be negative, got -30",
    ),
    (
        "bad-engine",
        _set("rules.engine", "fast"),
        "rules.engine: must be one of 'local' or 'prometheus', got 'fast'",
    ),
    (
        "image-with-tag",
        _set("models.0.image.repository", "tensorflow/serving:2.14"),
        "models[0].image.repository: got 'tensorflow/serving:2.14'",
    ),
    (
        "duplicate-model",
        lambda d: d["models"].append(dict(d["models"][0])),
        "models[2].name: duplicate model name 'half-plus-two' (also models[0])",
    ),
    (
        "shared-deployment",
        _set("models.1.kubernetes.deployment", "half-plus-two"),
        "models[1].kubernetes.deployment: deployment serving/half-plus-two is already used by models[0]",
    ),
    (
        # The model's Service takes the Deployment's name, and a Service's name starts with a letter.
        "deployment-starting-with-a-digit",
        _set("models.1.kubernetes.deployment", "2stage-ranker"),
        "models[1].kubernetes.deployment: got '2stage-ranker', which is not a DNS-1035 label: at most 63 "
        "lowercase letters, digits and '-', starting with a letter (the model's Service is named after its "
        "Deployment)",
    ),
    ("no-models", _set("models", []), "models: list should have at least 1 item"),
    ("missing-cost", _set("cost", _DELETE), "cost: required field is missing"),
    (
        "rest-url-with-path",
        _set("models.0.serving.rest_url", "http://x:8501/v1/models"),
        "models[0].serving.rest_url: got 'http://x:8501/v1/models'",
    ),
    (
        "smoke-outside-include",
        _set("models.0.smoke_file", "../../etc/passwd"),
        "models[0].smoke_file: must be a path relative to include/, got '../../etc/passwd'",
    ),
    (
        "tolerance-too-big",
        _set("models.0.scaling.tolerance", 1.5),
        "models[0].scaling.tolerance: input should be less than 1, got 1.5",
    ),
    (
        "string-for-int",
        _set("models.0.scaling.min_replicas", "two"),
        "models[0].scaling.min_replicas: input should be a valid integer",
    ),
]


@pytest.mark.parametrize(("edit", "expected"), [b[1:] for b in BAD_FILES], ids=[b[0] for b in BAD_FILES])
def test_bad_fleet_files_are_refused_with_path_and_reason(edit, expected: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(FleetConfigError) as err:
        parse_fleet(_mutate(edit), source="include/fleet.yaml")
    message = str(err.value)
    assert expected in message
    assert message.startswith("include/fleet.yaml: line ")


def test_every_problem_is_reported_at_once_with_its_line() -> None:
    text = textwrap.dedent(
        """\
        cost: {gpu_hour: -1, cpu_hour: 0.1}
        models:
          - name: a
            kubernetes: {namespace: serving, deployment: a}
            serving: {conn_id: c, model_name: a, grpc_target: "a:8500", rest_url: "http://a:8501"}
            image: {repository: tensorflow/serving}
            smoke_file: smoke/a.json
            slo: {p99_latency_ms: 100}
            scaling: {min_replicas: 3, max_replicas: 2}
        """
    )
    with pytest.raises(FleetConfigError) as err:
        parse_fleet(text, source="f.yaml")
    assert err.value.problems == [
        "line 1: cost.gpu_hour: input should be greater than or equal to 0, got -1",
        "line 9: models[0].scaling.max_replicas: must be >= min_replicas (3), got 2",
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("models: [\n  {name: a\n", "f.yaml:3: not valid YAML"),
        ("- just\n- a list\n", "f.yaml: must be a mapping with 'models' and 'cost', got list"),
        ("", "f.yaml: must be a mapping"),
    ],
)
def test_unparseable_files(text: str, expected: str) -> None:
    with pytest.raises(FleetConfigError, match=expected.replace("[", r"\[")):
        parse_fleet(text, source="f.yaml")


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(FleetConfigError, match=r"nope\.yaml: cannot read the fleet file"):
        load_fleet(tmp_path / "nope.yaml")


def test_fleet_objects_are_immutable() -> None:
    fleet = load_fleet(FLEET)
    with pytest.raises(Exception, match="frozen"):
        fleet.models[0].scaling.max_replicas = 100  # type: ignore[misc]
    assert isinstance(fleet, Fleet)


def test_scaling_targets_the_engine_cannot_evaluate_are_refused_unless_parse_time() -> None:
    # limitk: newer than the Prometheus 2.42 the local engine implements.
    text = _mutate(_set("models.0.scaling.target.expr", "limitk(3, ml_gpu_utilization_percent)"))
    with pytest.raises(FleetConfigError) as err:
        parse_fleet(text, source="include/fleet.yaml")
    assert "models[0].scaling.target.expr: the local engine cannot evaluate this expression" in str(err.value)
    assert "unsupported by the local engine" in str(err.value)
    # DAG files read the fleet for their forms without loading the PromQL engine.
    fleet = parse_fleet(text, source="include/fleet.yaml", check_expressions=False)
    assert fleet.models[0].scaling.target is not None


# ---------------------------------------------------------------------- issue 10: artifacts, schema version

from mlinfra.config import ArtifactLocation, parse_model_base_path  # noqa: E402
from mlinfra.deploy.schema import DEFAULT_KUBERNETES_VERSION, supported_kubernetes_versions  # noqa: E402


def _fleet_text(serving_extra: str = "", top_extra: str = "") -> str:
    """A one-model fleet; ``serving_extra`` lines start at line 6 (after ``top_extra``'s)."""
    head = (
        "cost: {gpu_hour: 1, cpu_hour: 0.1}\n"
        "models:\n"
        "  - name: a\n"
        "    kubernetes: {namespace: serving, deployment: a}\n"
        "    serving:\n"
    )
    tail = (
        "      conn_id: c\n"
        "      model_name: a\n"
        '      grpc_target: "a:8500"\n'
        '      rest_url: "http://a:8501"\n'
        "    image: {repository: tensorflow/serving}\n"
        "    smoke_file: smoke/a.json\n"
        "    slo: {p99_latency_ms: 100}\n"
        "    scaling: {min_replicas: 1, max_replicas: 2}\n"
    )
    return top_extra + head + serving_extra + tail


def test_artifacts_default_to_the_image_and_the_version_to_the_default() -> None:
    fleet = load_fleet(FLEET)
    assert fleet.kubernetes_version == DEFAULT_KUBERNETES_VERSION
    serving = fleet.model("half-plus-two").serving
    assert (serving.model_base_path, serving.artifacts_conn_id, serving.credentials_secret) == (
        None,
        None,
        None,
    )
    assert serving.artifact == ArtifactLocation("image", None, "/models/half_plus_two")
    assert serving.artifact.version_uri(3) == "/models/half_plus_two/3"


@pytest.mark.parametrize(
    ("lines", "expected", "uri"),
    [
        (
            "      model_base_path: s3://ml-models/prod/a/\n      artifacts_conn_id: aws_default\n"
            "      credentials_secret: a-s3-reader\n",
            ArtifactLocation("s3", "ml-models", "prod/a"),
            "s3://ml-models/prod/a/7",
        ),
        (
            "      model_base_path: gs://ml_models\n      artifacts_conn_id: google_cloud_default\n",
            ArtifactLocation("gs", "ml_models", ""),
            "gs://ml_models/7",
        ),
        (
            "      model_base_path: pvc://model-store/serving/a\n",
            ArtifactLocation("pvc", "model-store", "serving/a"),
            "pvc://model-store/serving/a/7",
        ),
        (
            "      model_base_path: /srv/models/a\n",
            ArtifactLocation("image", None, "/srv/models/a"),
            "/srv/models/a/7",
        ),
    ],
    ids=["s3", "gs", "pvc", "image"],
)
def test_the_four_kinds_of_model_base_path(lines: str, expected: ArtifactLocation, uri: str) -> None:
    fleet = parse_fleet(_fleet_text(lines), source="f.yaml")
    assert fleet.models[0].serving.artifact == expected
    assert fleet.models[0].serving.artifact.version_uri(7) == uri


def test_kubernetes_version_is_one_the_schemas_cover() -> None:
    newest = supported_kubernetes_versions()[-1]
    assert (
        parse_fleet(_fleet_text(top_extra=f'kubernetes_version: "{newest}"\n')).kubernetes_version == newest
    )


S3 = "      model_base_path: s3://ml-models/a\n"


@pytest.mark.parametrize(
    ("serving_extra", "top_extra", "expected"),
    [
        (
            "      model_base_path: hdfs://nn/models/a\n",
            "",
            "line 6: models[0].serving.model_base_path: must be s3://<bucket>/<prefix>, gs://<bucket>/<prefix>, "
            "pvc://<claim>/<path>, or an absolute path inside the image (default: /models/<model_name>); "
            "got 'hdfs://nn/models/a' (unknown scheme hdfs://)",
        ),
        (
            "      model_base_path: models/a\n",
            "",
            "line 6: models[0].serving.model_base_path: must be s3://<bucket>/<prefix>, gs://<bucket>/<prefix>, "
            "pvc://<claim>/<path>, or an absolute path inside the image (default: /models/<model_name>); "
            "got 'models/a'",
        ),
        (
            "      model_base_path: s3://ML_Models/a\n      artifacts_conn_id: aws_default\n",
            "",
            "line 6: models[0].serving.model_base_path: must be s3://",
        ),
        (
            "      model_base_path: s3://ml-models/a/../b\n      artifacts_conn_id: aws_default\n",
            "",
            "(the part after the bucket: letters, digits and . _ ~ + = , @ - between single slashes; "
            "no '.' or '..' segments)",
        ),
        (
            "      model_base_path: pvc://Model_Store/a\n",
            "",
            "(the claim name must be a DNS-1123 subdomain, got 'Model_Store')",
        ),
        (
            S3,
            "",
            "line 5: models[0].serving.artifacts_conn_id: required with a model_base_path on s3://: "
            "the Airflow connection the pre-flight reads the bucket with",
        ),
        (
            "      model_base_path: pvc://store/a\n      artifacts_conn_id: aws_default\n",
            "",
            "line 7: models[0].serving.artifacts_conn_id: only used with s3:// or gs:// model_base_path; "
            "with a pvc:// model_base_path the pre-flight checks a claim through kubernetes.conn_id",
        ),
        (
            "      credentials_secret: aws-creds\n",
            "",
            "line 6: models[0].serving.credentials_secret: only used with s3:// or gs:// model_base_path; "
            "with a model_base_path inside the image TF Serving needs no object-store credentials",
        ),
        (
            S3 + "      artifacts_conn_id: aws_default\n      credentials_secret: AWS_Creds\n",
            "",
            "line 8: models[0].serving.credentials_secret: must be a Kubernetes Secret name (DNS-1123 "
            "subdomain: lowercase letters, digits, '-' and '.', at most 253 characters), got 'AWS_Creds'",
        ),
        (
            S3 + "      artifacts_conn_id: aws default\n",
            "",
            "line 7: models[0].serving.artifacts_conn_id: got 'aws default', which does not match",
        ),
        (
            "",
            "kubernetes_version: 1.30\n",
            'line 1: kubernetes_version: must be a string like "1.35" (quote it: YAML reads 1.30 as the '
            "number 1.3), got 1.3",
        ),
        (
            "",
            'kubernetes_version: "1.99"\n',
            "line 1: kubernetes_version: must be a Kubernetes minor whose schema kubernetes-validate bundles",
        ),
    ],
    ids=[
        "unknown-scheme",
        "relative-path",
        "bad-bucket",
        "dot-dot",
        "bad-claim",
        "s3-without-conn",
        "conn-with-pvc",
        "secret-with-image",
        "bad-secret-name",
        "bad-conn-id",
        "version-as-number",
        "version-unknown",
    ],
)
def test_bad_artifact_settings_are_refused_with_line_and_field(
    serving_extra: str, top_extra: str, expected: str
) -> None:
    with pytest.raises(FleetConfigError) as err:
        parse_fleet(_fleet_text(serving_extra, top_extra), source="f.yaml")
    [problem] = err.value.problems
    assert expected in problem
    assert problem.startswith("line ")


@pytest.mark.parametrize("version", [0, -1, True, "3"])
def test_version_uri_needs_a_version_number(version: object) -> None:
    with pytest.raises(ValueError, match="a model version is an integer >= 1"):
        ArtifactLocation("s3", "b-1", "p").version_uri(version)  # type: ignore[arg-type]


def test_parse_model_base_path_strips_trailing_slashes() -> None:
    assert parse_model_base_path("pvc://store/") == ArtifactLocation("pvc", "store", "")
    assert parse_model_base_path("/models/a/").base_uri == "/models/a"
    assert parse_model_base_path("s3://bkt/p/q//").base_uri == "s3://bkt/p/q"


# ---------------------------------------------------------------------- hostile files (issue 11)


@pytest.mark.parametrize(
    "path",
    [
        "store.retention",
        "models.0.scaling.cooldown",
        "models.0.scaling.scale_down_stabilization",
        "models.0.slo.p99_latency_ms",
        "models.0.scaling.target.value",
        "cost.gpu_hour",
        "cost.cpu_hour",
    ],
)
@pytest.mark.parametrize("value", [float("inf"), float("nan")])
def test_infinite_and_nan_numbers_are_refused(path: str, value: float) -> None:
    def edit(data) -> None:  # type: ignore[no-untyped-def]
        data.setdefault("store", {})
        _set(path, value)(data)

    with pytest.raises(FleetConfigError, match=r"input should be a finite number"):
        parse_fleet(_mutate(edit), source="include/fleet.yaml", check_expressions=False)


def test_an_alias_bomb_is_refused_in_linear_time() -> None:
    # 9 ** 8 paths through 290 bytes of aliases: the line index used to walk every one.
    lines = ['a: &a ["x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    for prev, name in zip("abcdefg", "bcdefgh", strict=True):
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 9) + "]")
    lines.append("models: *h")
    start = time.monotonic()
    with pytest.raises(FleetConfigError) as err:
        parse_fleet("\n".join(lines), source="include/fleet.yaml")
    assert time.monotonic() - start < 5
    assert "line 9: models[0]: input should be a valid dictionary" in str(err.value)
    assert len(str(err.value)) < 5000  # the offending value is quoted briefly


def test_a_recursive_alias_is_a_fleet_error_not_a_recursion_error() -> None:
    with pytest.raises(FleetConfigError, match=r"models\[0\]: input should be a valid dictionary"):
        parse_fleet("models: &m [*m]\ncost: {gpu_hour: 1, cpu_hour: 1}\n", source="include/fleet.yaml")


def test_gpu_metric_names_option_is_validated_and_named() -> None:
    text = FLEET.read_text() + "\ngpu:\n  metric_names: dgcm\n  sample_window: 2s\n"
    with pytest.raises(FleetConfigError) as info:
        parse_fleet(text)
    message = str(info.value)
    assert "gpu.metric_names" in message
    assert "'mlinfra'" in message
    assert "'dcgm'" in message
    assert "'dgcm'" in message
    fleet = parse_fleet(text.replace("dgcm", "dcgm"))
    assert (fleet.gpu.metric_names, fleet.gpu.sample_window) == ("dcgm", 2.0)
    assert parse_fleet(FLEET.read_text()).gpu.metric_names == "mlinfra"
    with pytest.raises(FleetConfigError, match="gpu.sample_window"):
        parse_fleet(FLEET.read_text() + "\ngpu:\n  sample_window: 5m\n")
