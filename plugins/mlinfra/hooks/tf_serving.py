"""Talk to TensorFlow Serving over gRPC and REST, without importing TensorFlow.

One hook per serving endpoint. The fleet file names the in-cluster addresses and
the Airflow connection (type ``tf_serving``) may redirect them and carries TLS
material, so the usual way to build one is from a fleet model::

    hook = TFServingHook.for_model(load_fleet().model("half-plus-two"))
    hook.get_model_status("half_plus_two")
    # [{'version': 1, 'state': 'AVAILABLE', 'error_code': 'OK', 'error_message': ''}]
    hook.predict("half_plus_two", {"x": [1.0, 2.0, 5.0]})
    # {'y': [2.5, 3.0, 4.5]}
    hook.close()

Where each setting comes from, first match wins:

============  =================  ============================  =============================
setting       explicit argument  connection                    fleet default (``for_model``)
============  =================  ============================  =============================
gRPC target   ``grpc_target``    host and port (8500 if none)  ``serving.grpc_target``
REST URL      ``rest_url``       extra ``rest_url``            ``serving.rest_url``
timeout (s)   ``timeout``        extra ``timeout``             10
============  =================  ============================  =============================

TLS comes from the connection extras only: ``ca_cert``, ``client_cert`` and
``client_key`` (PEM text or a file path), ``server_name`` (the name the server's
certificate is checked against, for port-forwards to ``127.0.0.1``), and ``tls``
(``true`` for TLS with the system's CA bundle). Any of them switches both gRPC and
REST to TLS.

Every failure raises a :class:`TFServingError` naming the connection, the address,
the call, the gRPC status or HTTP status and the server's own message.
"""

from __future__ import annotations

import functools
import json
import os
import ssl
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from airflow.sdk import BaseHook

from mlinfra.exceptions import (
    MlinfraError,
    TemplatedValueError,
    TFServingConfigError,
    TFServingError,
    TFServingModelNotFound,
    TFServingUnavailable,
)
from mlinfra.hooks.extras import timeout_setting
from mlinfra.provider import field_behaviour
from mlinfra.redaction import redact_url
from mlinfra.templated import parse_bool

if TYPE_CHECKING:
    import grpc
    import httpx

    from mlinfra.config import Model

DEFAULT_GRPC_PORT = 8500
DEFAULT_TIMEOUT = 10.0
# TF Serving answers with whole output tensors; gRPC's 4 MiB default is too small
# for image models' batches.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024

# ModelVersionStatus.State numbers (tensorflow_serving/apis/get_model_status.proto).
VERSION_STATES = ("START", "LOADING", "AVAILABLE", "UNLOADING", "END")


@dataclass(frozen=True)
class _TLSSettings:
    ca_cert: bytes | None
    client_cert: bytes | None
    client_key: bytes | None
    server_name: str | None


class TFServingHook(BaseHook):
    """Client of one TF Serving endpoint (gRPC ``PredictionService``/``ModelService`` and REST).

    :param tf_serving_conn_id: Airflow connection of type ``tf_serving``.
    :param grpc_target: ``host:port`` of the gRPC API; beats the connection's host/port.
    :param rest_url: base URL of the REST API; beats the connection's ``rest_url`` extra.
    :param timeout: seconds per call; beats the connection's ``timeout`` extra.
    :param default_grpc_target: used when neither argument nor connection sets the target
        (the fleet's ``serving.grpc_target``; see :meth:`for_model`).
    :param default_rest_url: likewise for the REST URL.
    """

    conn_name_attr = "tf_serving_conn_id"
    default_conn_name = "tf_serving_default"
    conn_type = "tf_serving"
    hook_name = "TensorFlow Serving"

    def __init__(
        self,
        tf_serving_conn_id: str = default_conn_name,
        *,
        grpc_target: str | None = None,
        rest_url: str | None = None,
        timeout: float | None = None,
        default_grpc_target: str | None = None,
        default_rest_url: str | None = None,
    ) -> None:
        super().__init__()
        self.tf_serving_conn_id = tf_serving_conn_id
        self._grpc_target_arg = grpc_target
        self._rest_url_arg = rest_url
        self._timeout_arg = timeout
        self._default_grpc_target = default_grpc_target
        self._default_rest_url = default_rest_url

    @classmethod
    def for_model(cls, model: Model, **overrides: Any) -> TFServingHook:
        """The hook for a fleet model: its ``serving.conn_id``, its addresses as defaults.

        ``overrides`` are the constructor's explicit arguments (``grpc_target``,
        ``rest_url``, ``timeout``), which beat both connection and fleet.
        """
        return cls(
            model.serving.conn_id,
            default_grpc_target=model.serving.grpc_target,
            default_rest_url=model.serving.rest_url,
            **overrides,
        )

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """The connection form's behaviour, as declared in :mod:`mlinfra.provider` (one source)."""
        return field_behaviour(cls.conn_type)

    # ------------------------------------------------------------------ settings

    @cached_property
    def _connection(self) -> Any:
        return self.get_connection(self.tf_serving_conn_id)

    @cached_property
    def _extras(self) -> dict[str, Any]:
        extras = self._connection.extra_dejson
        return extras if isinstance(extras, dict) else {}

    @cached_property
    def grpc_target(self) -> str:
        if self._grpc_target_arg:
            return self._grpc_target_arg
        conn = self._connection
        if conn.host:
            host = conn.host.split("://", 1)[-1].rstrip("/")
            return f"{host}:{conn.port or DEFAULT_GRPC_PORT}"
        if self._default_grpc_target:
            return self._default_grpc_target
        raise TFServingConfigError(
            f"connection {self.tf_serving_conn_id!r}: no gRPC target; set the connection's host "
            "(and port) or pass grpc_target"
        )

    @cached_property
    def rest_url(self) -> str:
        url = self._rest_url_arg or self._extras.get("rest_url") or self._default_rest_url
        if not url:
            raise TFServingConfigError(
                f"connection {self.tf_serving_conn_id!r}: no REST URL; set the extra 'rest_url' "
                "(e.g. http://host:8501) or pass rest_url"
            )
        return str(url).rstrip("/")

    @cached_property
    def timeout(self) -> float:
        return timeout_setting(
            self._timeout_arg,
            self._extras,
            conn_id=self.tf_serving_conn_id,
            default=DEFAULT_TIMEOUT,
            error=TFServingConfigError,
        )

    @cached_property
    def _tls(self) -> _TLSSettings | None:
        """PEM material from the extras, or ``None`` for plaintext."""
        extras = self._extras
        pems = {key: self._read_pem(key) for key in ("ca_cert", "client_cert", "client_key")}
        if (pems["client_cert"] is None) != (pems["client_key"] is None):
            raise TFServingConfigError(
                f"connection {self.tf_serving_conn_id!r}: 'client_cert' and 'client_key' go together; "
                "set both for mutual TLS or neither"
            )
        server_name = extras.get("server_name") or None
        try:
            wants_tls = parse_bool("extra 'tls'", extras.get("tls"), default=False)
        except TemplatedValueError as e:
            raise TFServingConfigError(f"connection {self.tf_serving_conn_id!r}: {e}") from None
        if not (wants_tls or server_name or any(v is not None for v in pems.values())):
            return None
        return _TLSSettings(pems["ca_cert"], pems["client_cert"], pems["client_key"], server_name)

    def _read_pem(self, key: str) -> bytes | None:
        value = self._extras.get(key)
        if not value:
            return None
        text = str(value)
        if "-----BEGIN" in text:
            return text.encode()
        try:
            return Path(text).expanduser().read_bytes()
        except OSError as e:
            # A private key pasted without its PEM header (base64 only) is the key itself:
            # it must not reach the log, the deploy record, the sweep summary or the UI.
            shown = f"{len(text)} characters, not shown" if key == "client_key" else repr(text)
            raise TFServingConfigError(
                f"connection {self.tf_serving_conn_id!r}: extra {key!r} is neither PEM text nor a "
                f"readable file ({shown}): {e.strerror}"
            ) from None

    # ------------------------------------------------------------------ clients

    @cached_property
    def channel(self) -> grpc.Channel:
        """The gRPC channel (TLS when the connection has TLS settings)."""
        import grpc

        options: list[tuple[str, Any]] = [
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ]
        tls = self._tls
        if tls is None:
            return grpc.insecure_channel(self.grpc_target, options=options)
        if tls.server_name:
            options.append(("grpc.ssl_target_name_override", tls.server_name))
        credentials = grpc.ssl_channel_credentials(
            root_certificates=tls.ca_cert, private_key=tls.client_key, certificate_chain=tls.client_cert
        )
        return grpc.secure_channel(self.grpc_target, credentials, options=options)

    def get_conn(self) -> grpc.Channel:
        return self.channel

    @cached_property
    def _prediction_stub(self) -> Any:
        from mlinfra.hooks.tf_serving_protos import load_protos

        return load_protos().prediction_service_pb2_grpc.PredictionServiceStub(self.channel)

    @cached_property
    def _model_stub(self) -> Any:
        from mlinfra.hooks.tf_serving_protos import load_protos

        return load_protos().model_service_pb2_grpc.ModelServiceStub(self.channel)

    @cached_property
    def ssl_context(self) -> ssl.SSLContext | None:
        """The REST client's TLS context, or ``None`` for plain HTTP."""
        tls = self._tls
        if tls is None:
            return None
        context = ssl.create_default_context(cadata=tls.ca_cert.decode() if tls.ca_cert else None)
        if tls.client_cert is not None and tls.client_key is not None:
            _load_cert_chain(context, tls.client_cert, tls.client_key)
        return context

    @cached_property
    def http(self) -> httpx.Client:
        """The REST client (base URL ``rest_url``)."""
        import httpx

        context = self.ssl_context
        return httpx.Client(
            base_url=self.rest_url,
            timeout=self.timeout,
            verify=context if context is not None else _default_ssl_context(),
        )

    def close(self) -> None:
        """Close the channel and the HTTP client if they were opened. Safe to call twice."""
        channel = self.__dict__.pop("channel", None)
        self.__dict__.pop("_prediction_stub", None)
        self.__dict__.pop("_model_stub", None)
        if channel is not None:
            channel.close()
        client = self.__dict__.pop("http", None)
        if client is not None:
            client.close()

    def __enter__(self) -> TFServingHook:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ gRPC calls

    def get_model_status(self, model_name: str, version: int | None = None) -> list[dict[str, Any]]:
        """Every version's state via ``ModelService.GetModelStatus``, sorted by version.

        Each item: ``{"version": 1, "state": "AVAILABLE", "error_code": "OK",
        "error_message": ""}``; ``state`` is one of :data:`VERSION_STATES`.
        """
        from mlinfra.hooks.tf_serving_protos import load_protos

        protos = load_protos()
        request = protos.get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = model_name
        if version is not None:
            request.model_spec.version.value = int(version)
        response = self._call_grpc("GetModelStatus", model_name, self._model_stub.GetModelStatus, request)
        state_names = protos.get_model_status_pb2.ModelVersionStatus.State
        error_codes = protos.error_codes_pb2.Code
        out = [
            {
                "version": int(s.version),
                "state": state_names.Name(s.state),
                "error_code": _enum_name(error_codes, s.status.error_code),
                "error_message": s.status.error_message,
            }
            for s in response.model_version_status
        ]
        return sorted(out, key=lambda s: s["version"])

    def predict(
        self,
        model_name: str,
        inputs: Mapping[str, Any],
        version: int | None = None,
        signature_name: str = "serving_default",
        *,
        dtypes: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """Run ``PredictionService.Predict``; inputs and outputs are nested lists by tensor name.

        Input values may be nested lists, numpy arrays or ready TensorProtos. Numbers
        are sent as float32 unless ``dtypes`` names another type for that input
        (float32, float64, int32, int64, bool, string).
        """
        from mlinfra.hooks.tf_serving_protos import load_protos, make_tensor_proto, tensor_to_list

        protos = load_protos()
        request = protos.predict_pb2.PredictRequest()
        request.model_spec.name = model_name
        request.model_spec.signature_name = signature_name
        if version is not None:
            request.model_spec.version.value = int(version)
        for name, value in inputs.items():
            if isinstance(value, protos.tensor_pb2.TensorProto):
                request.inputs[name].CopyFrom(value)
            else:
                dtype = (dtypes or {}).get(name)
                request.inputs[name].CopyFrom(make_tensor_proto(value, dtype or _default_dtype(value)))
        response = self._call_grpc("Predict", model_name, self._prediction_stub.Predict, request)
        return {name: tensor_to_list(tensor) for name, tensor in sorted(response.outputs.items())}

    def _call_grpc(self, method: str, model_name: str, rpc: Any, request: Any) -> Any:
        import grpc

        try:
            return rpc(request, timeout=self.timeout)
        except grpc.RpcError as e:
            code = e.code() if hasattr(e, "code") else None
            details = (e.details() if hasattr(e, "details") else None) or ""
            code_name = code.name if code is not None else "UNKNOWN"
            message = (
                f"TF Serving {self.grpc_target} (connection {self.tf_serving_conn_id!r}): "
                f"{method}({model_name}) failed: {code_name}: {details or 'no details'}"
            )
            cls: type[TFServingError] = TFServingError
            if code == grpc.StatusCode.NOT_FOUND:
                cls = TFServingModelNotFound
            elif code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                cls = TFServingUnavailable
            raise cls(message, target=self.grpc_target, status=code_name, server_message=details) from None

    # ------------------------------------------------------------------ REST calls

    def rest_model_status(self, model_name: str, version: int | None = None) -> list[dict[str, Any]]:
        """Like :meth:`get_model_status`, via ``GET /v1/models/<name>[/versions/<v>]``."""
        path = f"/v1/models/{quote(model_name, safe='')}"
        if version is not None:
            path += f"/versions/{int(version)}"
        body = self._call_rest("GET", path)
        out = [
            {
                "version": int(s.get("version", 0)),
                "state": s.get("state", "UNKNOWN"),
                "error_code": (s.get("status") or {}).get("error_code", "OK"),
                "error_message": (s.get("status") or {}).get("error_message", ""),
            }
            for s in body.get("model_version_status", [])
        ]
        return sorted(out, key=lambda s: s["version"])

    def rest_predict(
        self,
        model_name: str,
        inputs: Mapping[str, Any] | None = None,
        version: int | None = None,
        signature_name: str = "serving_default",
        *,
        instances: list[Any] | None = None,
    ) -> dict[str, Any]:
        """``POST /v1/models/<name>[/versions/<v>]:predict``; returns the server's JSON body.

        Pass ``inputs`` (columnar: ``{"x": [1.0, 2.0]}``, answered with ``{"outputs": ...}``)
        or ``instances`` (rows: ``[1.0, 2.0]``, answered with ``{"predictions": [...]}``).
        As in TF Serving's REST API, a single-output signature's ``outputs`` is the
        bare value rather than a mapping by name.
        """
        if (inputs is None) == (instances is None):
            raise ValueError("rest_predict needs exactly one of inputs (columnar) or instances (rows)")
        path = f"/v1/models/{quote(model_name, safe='')}"
        if version is not None:
            path += f"/versions/{int(version)}"
        payload: dict[str, Any] = {"signature_name": signature_name}
        if inputs is not None:
            payload["inputs"] = {k: _jsonable(v) for k, v in inputs.items()}
        else:
            payload["instances"] = _jsonable(instances)
        return self._call_rest("POST", f"{path}:predict", json_body=payload)

    def monitoring_metrics(self, path: str = "/monitoring/prometheus/metrics") -> str:
        """The server's Prometheus text exposition (needs ``--monitoring_config_file``)."""
        return self._call_rest("GET", path, want_json=False)

    def _call_rest(self, verb: str, path: str, *, json_body: Any = None, want_json: bool = True) -> Any:
        import httpx

        url = f"{self.rest_url}{path}"
        where = f"TF Serving {redact_url(self.rest_url)} (connection {self.tf_serving_conn_id!r})"
        tls = self._tls
        # A port-forward's URL host is not the certificate's name: check the named one.
        extensions = {"sni_hostname": tls.server_name} if tls is not None and tls.server_name else None
        try:
            response = self.http.request(verb, path, json=json_body, extensions=extensions)
        except httpx.HTTPError as e:
            raise TFServingUnavailable(
                f"{where}: {verb} {path} failed: {type(e).__name__}: {e or 'no details'}",
                target=url,
                status=type(e).__name__,
                server_message=str(e),
            ) from None
        if response.status_code >= 400:
            server_message = _rest_error(response)
            cls = TFServingModelNotFound if response.status_code == 404 else TFServingError
            raise cls(
                f"{where}: {verb} {path} failed: HTTP {response.status_code}: {server_message}",
                target=url,
                status=str(response.status_code),
                server_message=server_message,
            )
        if not want_json:
            return response.text
        try:
            return response.json()
        except ValueError:
            raise TFServingError(
                f"{where}: {verb} {path} answered HTTP {response.status_code} with a body that is not JSON: "
                f"{response.text[:200]!r}",
                target=url,
                status=str(response.status_code),
            ) from None

    # ------------------------------------------------------------------ Airflow UI

    def test_connection(self) -> tuple[bool, str]:
        """Ask the gRPC API for the status of a model that cannot exist: any answer means it is up."""
        try:
            self.get_model_status("__mlinfra_connection_test__")
        except TFServingModelNotFound:
            return True, f"TF Serving at {self.grpc_target} answered"
        except MlinfraError as e:
            return False, str(e)
        finally:
            self.close()
        return True, f"TF Serving at {self.grpc_target} answered"


def _enum_name(enum: Any, number: int) -> str:
    try:
        return str(enum.Name(number))
    except ValueError:
        return str(number)


def _default_dtype(value: Any) -> str | None:
    # numpy arrays keep their own dtype; Python numbers go as float32 (TF Serving's
    # examples and most signatures take floats).
    return None if hasattr(value, "dtype") else "float32" if _all_numbers(value) else None


def _all_numbers(value: Any) -> bool:
    if isinstance(value, list | tuple):
        return all(_all_numbers(v) for v in value)
    return isinstance(value, int | float) and not isinstance(value, bool)


def _jsonable(value: Any) -> Any:
    return value.tolist() if hasattr(value, "tolist") else value


def _rest_error(response: httpx.Response) -> str:
    # TF Serving's REST errors are {"error": "..."}; anything else is shown as text.
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:500] or response.reason_phrase
    if isinstance(body, dict) and "error" in body:
        return str(body["error"])
    return json.dumps(body)[:500]


@functools.cache
def _default_ssl_context() -> ssl.SSLContext:
    """httpx's own default (certifi's CA bundle), built once per process.

    Building it reads the whole CA bundle (~80 ms); a sweep makes one REST client per
    model, so with 500 models that alone cost 40 s. An SSL context is safe to share.
    """
    import httpx

    return httpx.create_ssl_context()


def _load_cert_chain(context: ssl.SSLContext, cert: bytes, key: bytes) -> None:
    # ssl only loads certificate chains from files: write PEM text to private temp
    # files for the duration of the call.
    with tempfile.TemporaryDirectory(prefix="mlinfra-tls-") as tmp:
        cert_path, key_path = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
        for path, data in ((cert_path, cert), (key_path, key)):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
        context.load_cert_chain(cert_path, key_path)
