"""The artifact pre-flight: S3 against a real local S3 API (moto's server), PVCs against the stand-in."""

from __future__ import annotations

import json
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlinfra.config import Model, parse_fleet
from mlinfra.deploy.artifacts import ArtifactCheck, check_artifact
from mlinfra.exceptions import (
    ArtifactMissing,
    ArtifactStoreError,
    ArtifactStoreUnavailable,
    DeployRequestError,
)
from tests.support.integration import unavailable
from tests.support.k8s_standin import KubeStandIn, ResourceType

FLEET = Path(__file__).resolve().parents[2] / "include" / "fleet.yaml"
BUCKET = "ml-models"
PREFIX = "prod/half_plus_two"
ACCESS_KEY = "AKIAMLINFRATESTKEY01"
SECRET_KEY = "mlinfra-test-secret-9f8e7d6c5b4a"
PVC = ResourceType("", "v1", "persistentvolumeclaims", "PersistentVolumeClaim")


def _model(**serving: Any) -> Model:
    """half-plus-two of the shipped fleet with ``serving`` settings changed (validated like the file)."""
    data = yaml.safe_load(FLEET.read_text())
    data["models"][0]["serving"].update(serving)
    return parse_fleet(yaml.safe_dump(data, sort_keys=False), source="fleet.yaml").models[0]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---------------------------------------------------------------------- S3 through moto's server


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """A real S3 API on a loopback port (moto's server mode), with versions 1, 2 and 5 of a model."""
    try:
        import boto3
        from moto.server import ThreadedMotoServer
    except ImportError as e:
        unavailable("moto S3 server", f"{e.name} is not installed (requirements-dev.txt: moto[server])")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        region_name="us-east-1",
    )
    s3.create_bucket(Bucket=BUCKET)
    for version, size in ((1, 100), (2, 2345)):
        s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}/{version}/saved_model.pb", Body=b"\x08" * size)
        s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}/{version}/variables/variables.index", Body=b"x")
    # An upload in progress: the variables are there, the graph is not yet.
    s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}/5/variables/variables.index", Body=b"x")
    for version in range(10, 22):
        s3.put_object(Bucket=BUCKET, Key=f"many/{version}/saved_model.pb", Body=b"x")
    try:
        yield endpoint
    finally:
        server.stop()


def _s3_connection(monkeypatch: pytest.MonkeyPatch, endpoint: str, **extra: Any) -> str:
    """A fresh Amazon-provider connection to ``endpoint``; returns its id.

    A new id per test: Airflow keeps one filesystem per (scheme, connection) per process.
    """
    conn_id = f"artifacts_{uuid.uuid4().hex[:12]}"
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{conn_id.upper()}",
        json.dumps(
            {
                "conn_type": "aws",
                "login": ACCESS_KEY,
                "password": SECRET_KEY,
                "extra": {"endpoint_url": endpoint, "region_name": "us-east-1", **extra},
            }
        ),
    )
    return conn_id


def _no_secrets(text: str) -> None:
    assert SECRET_KEY not in text
    assert ACCESS_KEY not in text


@pytest.mark.integration
def test_an_existing_version_is_found_with_its_size(
    s3_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    conn_id = _s3_connection(monkeypatch, s3_endpoint)
    model = _model(model_base_path=f"s3://{BUCKET}/{PREFIX}/", artifacts_conn_id=conn_id)
    check = check_artifact(model, 2)
    assert isinstance(check, ArtifactCheck)
    assert (check.scheme, check.uri, check.size_bytes, check.verified) == (
        "s3",
        f"s3://{BUCKET}/{PREFIX}/2/saved_model.pb",
        2345,
        True,
    )
    assert check.to_dict()["size_bytes"] == 2345
    assert "(2345 bytes)" in check.message


@pytest.mark.integration
def test_a_missing_version_is_refused_naming_the_path_and_the_versions_there(
    s3_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    conn_id = _s3_connection(monkeypatch, s3_endpoint)
    model = _model(model_base_path=f"s3://{BUCKET}/{PREFIX}", artifacts_conn_id=conn_id)
    with pytest.raises(ArtifactMissing) as err:
        check_artifact(model, 3)
    uri = f"s3://{BUCKET}/{PREFIX}/3/saved_model.pb"
    assert err.value.uri == uri
    assert err.value.existing_versions == [1, 2, 5]
    assert isinstance(err.value, DeployRequestError)  # the deploy DAG fails it without retrying
    assert (
        f"version 3 of model 'half-plus-two': {uri} does not exist; "
        f"versions under s3://{BUCKET}/{PREFIX}: 1, 2, 5"
    ) in str(err.value)
    _no_secrets(str(err.value))


@pytest.mark.integration
def test_a_version_folder_without_the_saved_model_is_refused(
    s3_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    conn_id = _s3_connection(monkeypatch, s3_endpoint)
    model = _model(model_base_path=f"s3://{BUCKET}/{PREFIX}", artifacts_conn_id=conn_id)
    with pytest.raises(ArtifactMissing, match=r"the folder 5/ exists but holds no saved_model\.pb"):
        check_artifact(model, 5)


@pytest.mark.integration
def test_at_most_ten_versions_are_listed(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    conn_id = _s3_connection(monkeypatch, s3_endpoint)
    model = _model(model_base_path=f"s3://{BUCKET}/many", artifacts_conn_id=conn_id)
    with pytest.raises(ArtifactMissing) as err:
        check_artifact(model, 99)
    assert err.value.existing_versions == list(range(12, 22))
    assert f"versions under s3://{BUCKET}/many: 12, 13, 14, 15, 16, 17, 18, 19, 20, 21 (and 2 older)" in str(
        err.value
    )


@pytest.mark.integration
def test_an_absent_bucket_or_prefix_says_nothing_is_there(
    s3_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    conn_id = _s3_connection(monkeypatch, s3_endpoint)
    for base in ("s3://no-such-bucket/models", f"s3://{BUCKET}/no/such/prefix"):
        with pytest.raises(ArtifactMissing) as err:
            check_artifact(_model(model_base_path=base, artifacts_conn_id=conn_id), 1)
        assert f"{base}/1/saved_model.pb does not exist" in str(err.value)
        assert err.value.existing_versions == []


@pytest.mark.integration
def test_an_upload_after_a_miss_is_seen_by_the_next_check(
    s3_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import boto3

    conn_id = _s3_connection(monkeypatch, s3_endpoint)
    prefix = f"late-{uuid.uuid4().hex[:8]}"
    model = _model(model_base_path=f"s3://{BUCKET}/{prefix}", artifacts_conn_id=conn_id)
    with pytest.raises(ArtifactMissing):
        check_artifact(model, 1)
    boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        region_name="us-east-1",
    ).put_object(Bucket=BUCKET, Key=f"{prefix}/1/saved_model.pb", Body=b"abc")
    assert check_artifact(model, 1).size_bytes == 3  # no stale listing from the first check


@pytest.mark.integration
def test_an_unreachable_store_is_a_retryable_error(monkeypatch: pytest.MonkeyPatch) -> None:
    down = f"http://127.0.0.1:{_free_port()}"
    # One attempt, short timeouts: botocore's own retries would only slow the test down.
    conn_id = _s3_connection(
        monkeypatch, down, config_kwargs={"connect_timeout": 2, "retries": {"max_attempts": 1}}
    )
    model = _model(model_base_path=f"s3://{BUCKET}/{PREFIX}", artifacts_conn_id=conn_id)
    with pytest.raises(ArtifactStoreUnavailable) as err:
        check_artifact(model, 1)
    message = str(err.value)
    assert message.startswith(
        f"version 1 of model 'half-plus-two': cannot check s3://{BUCKET}/{PREFIX}/1/saved_model.pb "
        f"with connection '{conn_id}': the object store did not answer"
    )
    assert not isinstance(err.value, DeployRequestError)
    _no_secrets(message)


def test_an_undefined_connection_is_named_not_tried(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_ARTIFACTS_NOT_DEFINED", raising=False)
    model = _model(model_base_path=f"s3://{BUCKET}/{PREFIX}", artifacts_conn_id="artifacts_not_defined")
    with pytest.raises(ArtifactStoreError) as err:
        check_artifact(model, 1)
    assert "serving.artifacts_conn_id 'artifacts_not_defined' is not an Airflow connection" in str(err.value)
    assert "AIRFLOW_CONN_ARTIFACTS_NOT_DEFINED" in str(err.value)


def test_an_unknown_filesystem_and_a_denied_read_are_not_retryable() -> None:
    from mlinfra.deploy.artifacts import _store_error

    denied = _store_error(PermissionError("Access Denied"), what="v", uri="s3://b/k", conn_id="c")
    assert isinstance(denied, ArtifactStoreError)
    assert "access denied" in str(denied)
    gs = _store_error(
        ValueError("No filesystem registered for scheme gs"), what="v", uri="gs://b/k", conn_id="c"
    )
    assert isinstance(gs, ArtifactStoreError)
    assert "install apache-airflow-providers-google (gcsfs)" in str(gs)


def test_secrets_of_the_connection_are_scrubbed(monkeypatch: pytest.MonkeyPatch) -> None:
    from mlinfra.deploy.artifacts import _scrub

    conn_id = _s3_connection(monkeypatch, "http://user:pw-in-url@store.example:9000")
    text = _scrub(
        f"failed for {ACCESS_KEY} with {SECRET_KEY} at http://user:pw-in-url@store.example:9000/b", conn_id
    )
    assert text == "failed for *** with *** at http://***@store.example:9000/b"


# ---------------------------------------------------------------------- image


def test_an_image_path_is_not_checked_from_outside() -> None:
    check = check_artifact(_model(), 3)
    assert (check.scheme, check.uri, check.size_bytes, check.verified) == (
        "image",
        "/models/half_plus_two/3/saved_model.pb",
        None,
        False,
    )
    assert "proven by TF Serving loading it" in check.message


# ---------------------------------------------------------------------- pvc:// against the stand-in


@pytest.fixture
def claims(kube: KubeStandIn) -> KubeStandIn:
    """The stand-in serving PersistentVolumeClaims (registered here if it does not yet)."""
    try:
        kube.resource_for("v1", "PersistentVolumeClaim")
    except KeyError:
        kube.register_resource(PVC)
    return kube


def _claim(kube: KubeStandIn, name: str, phase: str) -> None:
    kube.put_object(
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": name, "namespace": "serving"},
            "spec": {"accessModes": ["ReadOnlyMany"], "resources": {"requests": {"storage": "10Gi"}}},
            "status": {"phase": phase},
        }
    )


@pytest.mark.integration
def test_a_bound_claim_passes_and_the_version_is_left_to_the_pod(claims: KubeStandIn) -> None:
    _claim(claims, "model-store", "Bound")
    claims.requests.clear()
    check = check_artifact(_model(model_base_path="pvc://model-store/half_plus_two"), 4)
    assert (check.scheme, check.uri, check.size_bytes, check.verified) == (
        "pvc",
        "serving/model-store",
        None,
        False,
    )
    assert "pvc://model-store/half_plus_two/4/saved_model.pb is proven by TF Serving loading it" in (
        check.message
    )
    # The one permission the pre-flight needs (include/k8s/rbac.yaml must grant it).
    assert claims.rbac_requests() == {("get", "", "persistentvolumeclaims", "serving", "model-store")}


@pytest.mark.integration
def test_a_pending_or_absent_claim_is_refused(claims: KubeStandIn) -> None:
    _claim(claims, "model-store", "Pending")
    model = _model(model_base_path="pvc://model-store/half_plus_two")
    with pytest.raises(
        ArtifactMissing, match=r"PersistentVolumeClaim serving/model-store is Pending, not Bound"
    ):
        check_artifact(model, 1)
    with pytest.raises(ArtifactMissing) as err:
        check_artifact(_model(model_base_path="pvc://other-store/x"), 1)
    assert "PersistentVolumeClaim serving/other-store does not exist" in str(err.value)
    assert err.value.uri == "serving/other-store"


@pytest.mark.integration
def test_kubernetes_api_failures_are_told_apart(claims: KubeStandIn) -> None:
    _claim(claims, "model-store", "Bound")
    model = _model(model_base_path="pvc://model-store")
    claims.inject_fault("GET", "/persistentvolumeclaims/", 403)
    with pytest.raises(
        ArtifactStoreError, match=r"refused 'get persistentvolumeclaims' in namespace 'serving'"
    ):
        check_artifact(model, 1)
    claims.inject_fault("GET", "/persistentvolumeclaims/", 503)
    with pytest.raises(ArtifactStoreUnavailable, match="HTTP 503"):
        check_artifact(model, 1)
    claims.stop()
    with pytest.raises(ArtifactStoreUnavailable, match="cannot be reached"):
        check_artifact(model, 1)
