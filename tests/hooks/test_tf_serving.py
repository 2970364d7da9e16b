"""TFServingHook: settings precedence, TLS, errors, and the real APIs of the stand-in.

The pytest process stays TensorFlow-free: the stand-in runs as a subprocess and
the hook loads TF Serving's protos through ``mlinfra.hooks.tf_serving_protos``.
"""

from __future__ import annotations

import datetime
import json
import socket
import ssl
import sys
import threading
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import grpc
import pytest

from mlinfra.config import parse_fleet
from mlinfra.hooks.tf_serving import (
    TFServingConfigError,
    TFServingError,
    TFServingHook,
    TFServingModelNotFound,
    TFServingUnavailable,
)
from mlinfra.hooks.tf_serving_protos import load_protos, make_tensor_proto, tensor_to_list
from tests.support.tf_serving_standin import StandinProcess

CONN = "tf_serving_test"

FLEET_YAML = """
cost: {gpu_hour: 1, cpu_hour: 0.1}
models:
  - name: half-plus-two
    kubernetes: {namespace: serving, deployment: half-plus-two}
    serving:
      conn_id: tf_serving_test
      model_name: half_plus_two
      grpc_target: fleet-host:8500
      rest_url: http://fleet-host:8501
    image: {repository: tensorflow/serving}
    smoke_file: smoke/half_plus_two.json
    slo: {p99_latency_ms: 50}
    scaling: {min_replicas: 1, max_replicas: 2}
"""


def set_connection(monkeypatch: pytest.MonkeyPatch, conn_id: str = CONN, **fields: Any) -> None:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps({"conn_type": "tf_serving", **fields}))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ============================================================================ settings


def test_fleet_defaults_apply_when_the_connection_sets_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    set_connection(monkeypatch)
    hook = TFServingHook.for_model(parse_fleet(FLEET_YAML).model("half-plus-two"))
    assert hook.tf_serving_conn_id == CONN
    assert (hook.grpc_target, hook.rest_url, hook.timeout) == (
        "fleet-host:8500",
        "http://fleet-host:8501",
        10.0,
    )


def test_connection_beats_fleet_and_explicit_arguments_beat_connection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    set_connection(
        monkeypatch,
        host="conn-host",
        port=9000,
        extra={"rest_url": "http://conn-host:9001/", "timeout": "2.5"},
    )
    model = parse_fleet(FLEET_YAML).model("half-plus-two")
    from_conn = TFServingHook.for_model(model)
    assert (from_conn.grpc_target, from_conn.rest_url, from_conn.timeout) == (
        "conn-host:9000",
        "http://conn-host:9001",
        2.5,
    )
    explicit = TFServingHook.for_model(model, grpc_target="arg:1", rest_url="http://arg:2", timeout=7)
    assert (explicit.grpc_target, explicit.rest_url, explicit.timeout) == ("arg:1", "http://arg:2", 7.0)


def test_connection_host_without_port_uses_tf_servings_grpc_port(monkeypatch: pytest.MonkeyPatch) -> None:
    set_connection(monkeypatch, host="grpc://serving.example")
    assert TFServingHook(CONN).grpc_target == "serving.example:8500"


def test_missing_addresses_and_bad_timeout_name_the_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    set_connection(monkeypatch, extra={"timeout": "soon"})
    hook = TFServingHook(CONN)
    with pytest.raises(TFServingConfigError, match=r"'tf_serving_test'.*no gRPC target"):
        _ = hook.grpc_target
    with pytest.raises(TFServingConfigError, match=r"'tf_serving_test'.*extra 'rest_url'"):
        _ = hook.rest_url
    with pytest.raises(TFServingConfigError, match=r"'timeout' must be a number of seconds, got 'soon'"):
        _ = hook.timeout


# ============================================================================ TLS


@dataclass
class Pki:
    ca: bytes
    server_cert: bytes
    server_key: bytes
    client_cert: bytes
    client_key: bytes


@pytest.fixture(scope="module")
def pki() -> Pki:
    """A CA, a server certificate for ``tf-serving.test`` and a client certificate."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)

    def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
        return key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    def cert(
        name: str,
        key: ec.EllipticCurvePrivateKey,
        issuer: x509.Name,
        signer: Any,
        *,
        ca: bool,
        usage: Any = None,
    ) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(issuer)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if not ca:
            builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        return builder.sign(signer, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mlinfra test CA")])
    ca = cert("mlinfra test CA", ca_key, ca_name, ca_key, ca=True)
    server_key, client_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    server = cert(
        "tf-serving.test", server_key, ca_name, ca_key, ca=False, usage=ExtendedKeyUsageOID.SERVER_AUTH
    )
    client = cert("mlinfra", client_key, ca_name, ca_key, ca=False, usage=ExtendedKeyUsageOID.CLIENT_AUTH)
    pem = serialization.Encoding.PEM
    return Pki(
        ca.public_bytes(pem),
        server.public_bytes(pem),
        key_pem(server_key),
        client.public_bytes(pem),
        key_pem(client_key),
    )


@pytest.fixture(scope="module")
def tls_grpc_server(pki: Pki) -> Iterator[int]:
    """An in-process gRPC ModelService over mutual TLS (TF-free: the protos only)."""
    protos = load_protos()

    class ModelService(protos.model_service_pb2_grpc.ModelServiceServicer):  # type: ignore[name-defined,misc]
        def GetModelStatus(self, request: Any, context: Any) -> Any:
            response = protos.get_model_status_pb2.GetModelStatusResponse()
            response.model_version_status.add(version=3, state=30)  # AVAILABLE
            return response

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    protos.model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelService(), server)
    credentials = grpc.ssl_server_credentials(
        [(pki.server_key, pki.server_cert)], root_certificates=pki.ca, require_client_auth=True
    )
    port = server.add_secure_port("127.0.0.1:0", credentials)
    server.start()
    yield port
    server.stop(grace=None)


@pytest.fixture(scope="module")
def tls_rest_server(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """An in-process HTTPS server requiring a client certificate, answering the metrics path."""
    tmp = tmp_path_factory.mktemp("tls-rest")
    (tmp / "cert.pem").write_bytes(pki.server_cert)
    (tmp / "key.pem").write_bytes(pki.server_key)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cadata=pki.ca.decode())
    context.load_cert_chain(tmp / "cert.pem", tmp / "key.pem")
    context.verify_mode = ssl.CERT_REQUIRED

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"# TYPE up gauge\nup 1\n"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield int(httpd.server_address[1])
    httpd.shutdown()


def test_mutual_tls_with_pem_files_and_server_name_override(
    monkeypatch: pytest.MonkeyPatch, pki: Pki, tls_grpc_server: int, tls_rest_server: int, tmp_path: Path
) -> None:
    for name in ("ca", "client_cert", "client_key"):
        (tmp_path / f"{name}.pem").write_bytes(getattr(pki, name))
    set_connection(
        monkeypatch,
        host="127.0.0.1",
        port=tls_grpc_server,
        extra={
            "rest_url": f"https://127.0.0.1:{tls_rest_server}",
            "ca_cert": str(tmp_path / "ca.pem"),
            "client_cert": str(tmp_path / "client_cert.pem"),
            "client_key": pki.client_key.decode(),  # PEM text works as well as a path
            "server_name": "tf-serving.test",
        },
    )
    with TFServingHook(CONN) as hook:
        assert hook.get_model_status("any") == [
            {"version": 3, "state": "AVAILABLE", "error_code": "OK", "error_message": ""}
        ]
        assert hook.monitoring_metrics() == "# TYPE up gauge\nup 1\n"


def test_tls_without_the_client_certificate_is_refused(
    monkeypatch: pytest.MonkeyPatch, pki: Pki, tls_grpc_server: int
) -> None:
    set_connection(
        monkeypatch,
        host="127.0.0.1",
        port=tls_grpc_server,
        extra={"ca_cert": pki.ca.decode(), "server_name": "tf-serving.test", "timeout": 5},
    )
    with (
        TFServingHook(CONN) as hook,
        pytest.raises(TFServingUnavailable, match=r"127\.0\.0\.1:\d+.*UNAVAILABLE"),
    ):
        hook.get_model_status("any")


def test_channel_credentials_carry_the_pem_material(monkeypatch: pytest.MonkeyPatch, pki: Pki) -> None:
    seen: dict[str, Any] = {}
    monkeypatch.setattr(grpc, "ssl_channel_credentials", lambda **kw: seen.update(kw) or "creds")
    monkeypatch.setattr(grpc, "secure_channel", lambda target, creds, options: (target, creds, dict(options)))
    set_connection(
        monkeypatch,
        host="h",
        port=1,
        extra={
            "ca_cert": pki.ca.decode(),
            "client_cert": pki.client_cert.decode(),
            "client_key": pki.client_key.decode(),
        },
    )
    target, creds, options = TFServingHook(CONN).channel
    assert (target, creds) == ("h:1", "creds")
    assert seen == {
        "root_certificates": pki.ca,
        "private_key": pki.client_key,
        "certificate_chain": pki.client_cert,
    }
    assert "grpc.ssl_target_name_override" not in options


def test_tls_settings_that_cannot_work_fail_at_once(monkeypatch: pytest.MonkeyPatch, pki: Pki) -> None:
    set_connection(monkeypatch, host="h", extra={"client_cert": pki.client_cert.decode()})
    with pytest.raises(TFServingConfigError, match="'client_cert' and 'client_key' go together"):
        _ = TFServingHook(CONN).channel
    set_connection(monkeypatch, host="h", extra={"ca_cert": "/nonexistent/ca.pem"})
    with pytest.raises(
        TFServingConfigError, match=r"extra 'ca_cert' is neither PEM text nor a readable file"
    ):
        _ = TFServingHook(CONN).channel


def test_plaintext_when_no_tls_setting_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    set_connection(monkeypatch, host="h", extra={"rest_url": "http://h:8501"})
    hook = TFServingHook(CONN)
    assert hook.ssl_context is None
    assert isinstance(hook.channel, grpc.Channel)
    hook.close()
    hook.close()  # idempotent


# ============================================================================ server down


def test_server_down_is_a_clear_unavailable_error(monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()
    set_connection(
        monkeypatch, host="127.0.0.1", port=port, extra={"rest_url": f"http://127.0.0.1:{port}", "timeout": 2}
    )
    with TFServingHook(CONN) as hook:
        with pytest.raises(
            TFServingUnavailable,
            match=rf"127\.0\.0\.1:{port} \(connection 'tf_serving_test'\): GetModelStatus\(m\) failed: UNAVAILABLE",
        ):
            hook.get_model_status("m")
        with pytest.raises(
            TFServingUnavailable, match=rf"http://127\.0\.0\.1:{port}.*GET /v1/models/m failed: ConnectError"
        ):
            hook.rest_model_status("m")


def test_rest_predict_needs_one_request_format(monkeypatch: pytest.MonkeyPatch) -> None:
    set_connection(monkeypatch, host="h", extra={"rest_url": "http://h:1"})
    with pytest.raises(ValueError, match="exactly one of inputs"):
        TFServingHook(CONN).rest_predict("m")


# ============================================================================ tensor helpers


def test_tensor_round_trip_without_tensorflow() -> None:
    assert tensor_to_list(make_tensor_proto([[1.0, 2.0], [3.0, 4.0]])) == [[1.0, 2.0], [3.0, 4.0]]
    assert tensor_to_list(make_tensor_proto([1, 2], "int64")) == [1, 2]
    assert tensor_to_list(make_tensor_proto(["a", "b"])) == ["a", "b"]
    assert tensor_to_list(make_tensor_proto(2.5, "double")) == 2.5
    with pytest.raises(ValueError, match=r"ragged nested list at \[1\]"):
        make_tensor_proto([[1.0], [2.0, 3.0]])
    with pytest.raises(ValueError, match="unsupported dtype 'complex'"):
        make_tensor_proto([1.0], "complex")
    assert "tensorflow" not in sys.modules or not hasattr(sys.modules["tensorflow"], "constant")


# ============================================================================ against the stand-in


@pytest.fixture
def hook(monkeypatch: pytest.MonkeyPatch, tf_serving_standin: StandinProcess) -> Iterator[TFServingHook]:
    monkeypatch.setenv(*tf_serving_standin.connection_env(CONN))
    with TFServingHook(CONN) as h:
        yield h


@pytest.mark.integration
def test_grpc_and_rest_predictions_are_half_plus_two(hook: TFServingHook) -> None:
    xs = [0.0, 1.0, 2.0, 5.0, -3.0]
    expected = [0.5 * x + 2 for x in xs]
    assert hook.predict("half_plus_two", {"x": xs}) == {"y": expected}
    assert hook.predict("half_plus_two", {"x": xs}, version=1, signature_name="predict") == {"y": expected}
    assert hook.rest_predict("half_plus_two", {"x": xs}) == {"outputs": expected}
    assert hook.rest_predict("half_plus_two", instances=xs, version=1) == {"predictions": expected}


@pytest.mark.integration
def test_model_status_is_available_over_grpc_and_rest(hook: TFServingHook) -> None:
    expected = [{"version": 1, "state": "AVAILABLE", "error_code": "OK", "error_message": ""}]
    assert hook.get_model_status("half_plus_two") == expected
    assert hook.get_model_status("half_plus_two", version=1) == expected
    assert hook.rest_model_status("half_plus_two") == expected
    assert hook.test_connection() == (True, f"TF Serving at {hook.grpc_target} answered")


@pytest.mark.integration
def test_unknown_model_surfaces_not_found_with_the_servers_message(hook: TFServingHook) -> None:
    with pytest.raises(TFServingModelNotFound) as grpc_error:
        hook.get_model_status("no_such_model")
    assert grpc_error.value.status == "NOT_FOUND"
    assert grpc_error.value.server_message == "Could not find any versions of model no_such_model"
    assert hook.grpc_target in str(grpc_error.value)

    with pytest.raises(
        TFServingModelNotFound, match=r"NOT_FOUND: Servable not found for request: Latest\(nope\)"
    ):
        hook.predict("nope", {"x": [1.0]})
    with pytest.raises(TFServingModelNotFound) as rest_error:
        hook.rest_predict("nope", {"x": [1.0]})
    assert rest_error.value.status == "404"
    assert rest_error.value.server_message == "Servable not found for request: Latest(nope)"
    assert "HTTP 404" in str(rest_error.value)


@pytest.mark.integration
def test_bad_input_is_invalid_argument_not_not_found(hook: TFServingHook) -> None:
    with pytest.raises(
        TFServingError, match="INVALID_ARGUMENT: input tensor alias not found in signature: z"
    ) as e:
        hook.predict("half_plus_two", {"z": [1.0]})
    assert not isinstance(e.value, TFServingModelNotFound)


@pytest.mark.integration
def test_monitoring_endpoint_counts_requests(hook: TFServingHook) -> None:
    hook.predict("half_plus_two", {"x": [1.0]})
    text = hook.monitoring_metrics()
    assert "# TYPE :tensorflow:serving:request_count counter" in text
    assert ':tensorflow:serving:request_count{model_name="half_plus_two",status="OK"}' in text
    assert (
        ':tensorflow:serving:request_latency_bucket{model_name="half_plus_two",API="predict",entrypoint="GRPC",le="10"}'
        in text
    )


@pytest.mark.integration
def test_injected_server_errors_surface_as_unavailable(
    hook: TFServingHook,
    tf_serving_standin: StandinProcess,
) -> None:
    tf_serving_standin.set_faults(error_rate=1.0)
    try:
        with pytest.raises(TFServingUnavailable, match="UNAVAILABLE: simulated failure"):
            hook.predict("half_plus_two", {"x": [1.0]})
        with pytest.raises(TFServingError, match="HTTP 503: simulated failure"):
            hook.rest_predict("half_plus_two", {"x": [1.0]})
    finally:
        tf_serving_standin.set_faults(error_rate=0.0)
    assert hook.predict("half_plus_two", {"x": [1.0]}) == {"y": [2.5]}


def test_a_client_key_that_is_not_a_file_is_never_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    # A key pasted without its PEM header: the base64 body is the secret itself.
    secret = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC-tfs-s3cret"
    set_connection(monkeypatch, host="h", extra={"client_key": secret})
    with pytest.raises(
        TFServingConfigError, match="'client_key' is neither PEM text nor a readable file"
    ) as err:
        _ = TFServingHook(CONN).channel
    assert secret not in str(err.value)
    assert f"{len(secret)} characters, not shown" in str(err.value)
