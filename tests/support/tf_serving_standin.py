"""A local TensorFlow Serving: the real gRPC and REST APIs over a real SavedModel.

Serves what mlinfra uses of ``tensorflow_model_server``:

- gRPC ``tensorflow.serving.PredictionService/Predict`` and
  ``tensorflow.serving.ModelService/GetModelStatus`` (tensorflow-serving-api's
  own servicers and messages);
- REST ``GET /v1/models/<name>[/versions/<v>]``,
  ``POST /v1/models/<name>[/versions/<v>]:predict`` (``instances`` and ``inputs``),
  ``GET /monitoring/prometheus/metrics`` with TF Serving's metric names and labels
  (``:tensorflow:serving:request_count{model_name,status}``, the
  ``:tensorflow:serving:request_latency`` histogram in microseconds, ...);
- a model base path of numbered version directories, polled like
  ``--file_system_poll_wait_seconds``, with the default "latest version" policy and
  per-version states START, LOADING, AVAILABLE, UNLOADING, END (with an error status
  when a load fails).

- the "latest" version policy by default, or ``model_version_policy { specific }``
  (``--versions 1 2``, or at run time ``POST /_standin/versions {"versions": [2]}``,
  :meth:`StandinProcess.set_versions`): the model config reload a deployment of a
  specific version does; the old version is unloaded only once a wanted one is
  AVAILABLE (TF Serving's availability-preserving policy).

Faults for tests: ``--predict-delay``, ``--error-rate``, ``--load-delay``,
``--fail-load-version``, and the same at run time through
``POST /_standin/faults`` (JSON of :class:`Faults` fields; ``output_offset`` makes
every numeric output wrong by that much).

Run it as its own process so the test process never imports TensorFlow::

    with start_tf_serving_standin() as server:        # builds half_plus_two once, cached
        server.grpc_target, server.rest_url             # '127.0.0.1:41231', 'http://127.0.0.1:38001'
        monkeypatch.setenv(*server.connection_env("tf_serving_half_plus_two"))

or by hand::

    python -m tests.support.tf_serving_standin --model-name half_plus_two \\
        --model-base-path DIR --grpc-port 0 --rest-port 0 --ready-file PATH

The ready file receives ``{"grpc_port": ..., "rest_port": ..., "pid": ...}`` once
both APIs listen (and, unless ``--no-wait-for-load``, the first load is done).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent import futures
from dataclasses import asdict, dataclass, field, fields
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs

import pytest

from tests.support.saved_model import PROJECT_ROOT, half_plus_two_base_path

log = logging.getLogger("tf_serving_standin")

T = TypeVar("T")

STATES = ("START", "LOADING", "AVAILABLE", "UNLOADING", "END")
# TF Serving's request_latency buckets: Exponential(10us, 1.8, 33) (servables/tensorflow/util.cc).
LATENCY_BUCKETS_US = [10.0 * 1.8**i for i in range(33)]


# ============================================================================ server side


@dataclass
class Faults:
    """What the stand-in does wrong on purpose; every field can change at run time."""

    predict_delay: float = 0.0  # seconds added to every Predict
    error_rate: float = 0.0  # fraction of Predict calls answered UNAVAILABLE
    load_delay: float = 0.0  # seconds a version stays LOADING
    fail_load_versions: list[int] = field(default_factory=list)  # loads end in END + error
    output_offset: float = 0.0  # added to every numeric output: a model that answers wrongly
    # Faults of one version only: {"2": {"predict_delay": 0.2, "output_offset": 1}} (a slow or
    # wrong *version*, while the others answer normally).
    version_faults: dict[str, dict[str, float]] = field(default_factory=dict)

    PER_VERSION = ("predict_delay", "error_rate", "output_offset")

    def update(self, changes: dict[str, Any]) -> None:
        known = {f.name for f in fields(self)}
        unknown = set(changes) - known
        if unknown:
            raise ValueError(f"unknown fault field(s) {sorted(unknown)}; known: {sorted(known)}")
        for key, value in changes.items():
            if key == "fail_load_versions":
                setattr(self, key, [int(v) for v in value])
            elif key == "version_faults":
                parsed: dict[str, dict[str, float]] = {}
                for version, faults in dict(value).items():
                    bad = set(faults) - set(self.PER_VERSION)
                    if bad:
                        raise ValueError(f"per-version faults are {self.PER_VERSION}, got {sorted(bad)}")
                    parsed[str(int(version))] = {k: float(v) for k, v in faults.items()}
                self.version_faults = parsed
            else:
                setattr(self, key, float(value))

    def of(self, name: str, version: int | None) -> float:
        """The fault ``name`` for ``version``: its own value where set, else the global one."""
        own = self.version_faults.get(str(version), {}) if version is not None else {}
        return float(own.get(name, getattr(self, name)))


class ServingError(Exception):
    """An error with TF Serving's status code name (NOT_FOUND, INVALID_ARGUMENT, ...)."""

    HTTP = {
        "NOT_FOUND": HTTPStatus.NOT_FOUND,
        "INVALID_ARGUMENT": HTTPStatus.BAD_REQUEST,
        "FAILED_PRECONDITION": HTTPStatus.BAD_REQUEST,
        "UNAVAILABLE": HTTPStatus.SERVICE_UNAVAILABLE,
        "UNIMPLEMENTED": HTTPStatus.NOT_IMPLEMENTED,
        "DEADLINE_EXCEEDED": HTTPStatus.GATEWAY_TIMEOUT,
    }

    def __init__(self, code: str, message: str):
        self.code = code
        self.message = message
        super().__init__(f"{code}: {message}")

    @property
    def http_status(self) -> int:
        return int(self.HTTP.get(self.code, HTTPStatus.INTERNAL_SERVER_ERROR))


@dataclass
class VersionState:
    version: int
    state: str = "START"
    error_code: str = "OK"
    error_message: str = ""
    loaded: Any = None  # the tf.saved_model.load() object while AVAILABLE


class Metrics:
    """TF Serving's own metrics, rendered in its Prometheus text format."""

    def __init__(self, parent: Metrics | None = None) -> None:
        # A pod's metrics also count in its process's (the Service-level page, see Standin).
        self.parent = parent
        self._lock = threading.Lock()
        self.request_count: dict[tuple[str, str], float] = {}
        # (model_name, API, entrypoint) -> [bucket counts..., sum, count]
        self.request_latency: dict[tuple[str, str, str], list[float]] = {}
        self.load_attempts: dict[tuple[str, str], float] = {}

    def observe_request(self, model: str, api: str, entrypoint: str, status: str, seconds: float) -> None:
        micros = seconds * 1e6
        with self._lock:
            key = (model, status)
            self.request_count[key] = self.request_count.get(key, 0) + 1
            hist = self.request_latency.setdefault(
                (model, api, entrypoint), [0.0] * (len(LATENCY_BUCKETS_US) + 3)
            )
            for i, bound in enumerate(LATENCY_BUCKETS_US):
                if micros <= bound:
                    hist[i] += 1
            hist[-3] += 1  # +Inf
            hist[-2] += micros
            hist[-1] += 1
        if self.parent is not None:
            self.parent.observe_request(model, api, entrypoint, status, seconds)

    def observe_load(self, model_path: str, status: str) -> None:
        with self._lock:
            key = (model_path, status)
            self.load_attempts[key] = self.load_attempts.get(key, 0) + 1
        if self.parent is not None:
            self.parent.observe_load(model_path, status)

    def render(self) -> str:
        out: list[str] = []
        with self._lock:
            out.append("# TYPE :tensorflow:cc:saved_model:load_attempt_count counter")
            for (path, status), v in sorted(self.load_attempts.items()):
                out.append(
                    f':tensorflow:cc:saved_model:load_attempt_count{{model_path="{_esc(path)}",status="{status}"}} {_num(v)}'
                )
            out.append("# TYPE :tensorflow:serving:request_count counter")
            for (model, status), v in sorted(self.request_count.items()):
                out.append(
                    f':tensorflow:serving:request_count{{model_name="{_esc(model)}",status="{status}"}} {_num(v)}'
                )
            out.append("# TYPE :tensorflow:serving:request_latency histogram")
            for (model, api, entry), hist in sorted(self.request_latency.items()):
                labels = f'model_name="{_esc(model)}",API="{api}",entrypoint="{entry}"'
                name = ":tensorflow:serving:request_latency"
                for bound, count in zip(LATENCY_BUCKETS_US, hist, strict=False):
                    out.append(f'{name}_bucket{{{labels},le="{bound:.10g}"}} {_num(count)}')
                out.append(f'{name}_bucket{{{labels},le="+Inf"}} {_num(hist[-3])}')
                out.append(f"{name}_sum{{{labels}}} {_num(hist[-2])}")
                out.append(f"{name}_count{{{labels}}} {_num(hist[-1])}")
        return "\n".join(out) + "\n"


def _esc(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() and math.isfinite(v) else repr(float(v))


class ServedModel:
    """One model name over a base path: versions, their states, and Predict.

    The "latest" version policy of TF Serving: the highest version found is loaded;
    an older one is unloaded only once the new one is AVAILABLE (or its load failed
    and it is not the only one), so a failed deploy keeps serving the old version.
    """

    def __init__(self, name: str, base_path: Path, faults: Faults, metrics: Metrics):
        import tensorflow as tf

        self.tf = tf
        self.name = name
        self.base_path = base_path
        self.faults = faults
        self.metrics = metrics
        self.versions: dict[int, VersionState] = {}
        self._lock = threading.RLock()
        self._loading: set[int] = set()
        # None: TF Serving's default "latest" policy; a list: model_version_policy { specific { ... } }
        self.specific: list[int] | None = None
        # version_labels of the model config (label -> version) as last accepted.
        self.labels: dict[str, int] = {}

    # -------------------------------------------------------------- lifecycle

    def discover(self) -> list[int]:
        found = []
        if self.base_path.is_dir():
            for child in self.base_path.iterdir():
                if child.name.isdigit() and (child / "saved_model.pb").is_file():
                    found.append(int(child.name))
        return sorted(found)

    def wanted(self, found: list[int] | None = None) -> list[int]:
        """The versions the policy asks for among those on disk."""
        found = self.discover() if found is None else found
        if self.specific is None:
            return found[-1:]
        return [v for v in self.specific if v in found]

    def set_specific(self, versions: list[int] | None) -> None:
        """Switch the version policy (a model config reload): ``None`` is "latest"."""
        with self._lock:
            self.specific = sorted({int(v) for v in versions}) if versions is not None else None

    def poll(self, *, wait: bool = False) -> None:
        """One pass of the file-system source: load the wanted versions, unload the rest."""
        found = self.discover()
        if not found:
            return
        loaders = []
        with self._lock:
            wanted = self.wanted(found)
            for version in wanted:
                state = self.versions.get(version)
                # A failed load stays failed (as after TF Serving's load retries); a version
                # unloaded earlier comes back when it is wanted again.
                start = state is None or (state.state == "END" and state.error_code == "OK")
                if start and version not in self._loading:
                    self.versions[version] = VersionState(version)
                    self._loading.add(version)
                    loader = threading.Thread(
                        target=self._load, args=(version,), daemon=True, name=f"load-{version}"
                    )
                    loader.start()
                    loaders.append(loader)
        if wait:
            for loader in loaders:
                loader.join()
        self._unload_superseded()

    def _load(self, version: int) -> None:
        path = self.base_path / str(version)
        try:
            with self._lock:
                if version not in self._loading:
                    return  # unloaded by a config reload before the load began
                self.versions[version].state = "LOADING"
            if self.faults.load_delay:
                time.sleep(self.faults.load_delay)
            if version in self.faults.fail_load_versions:
                raise ServingError("UNKNOWN", f"simulated load failure of {path} (fault injection)")
            loaded = _load_saved_model(self.tf, path)
        except Exception as e:  # any load failure is a state of the version, as in TF Serving
            code, message = (e.code, e.message) if isinstance(e, ServingError) else ("UNKNOWN", str(e))
            self.metrics.observe_load(str(path), "fail")
            with self._lock:
                self.versions[version] = VersionState(version, "END", code, message)
                self._loading.discard(version)
            log.warning("version %s of %s failed to load: %s", version, self.name, message)
            return
        self.metrics.observe_load(str(path), "success")
        with self._lock:
            if version not in self._loading:
                return  # a config reload dropped the version while it loaded
            self.versions[version] = VersionState(version, "AVAILABLE", loaded=loaded)
            self._loading.discard(version)
        log.info("version %s of %s is AVAILABLE", version, self.name)
        self._unload_superseded()

    def reload_config(self, base_path: Path, versions: list[int] | None) -> None:
        """A model config reload: realise exactly the new content.

        TF Serving re-reads ``--model_config_file`` every
        ``--model_config_file_poll_wait_seconds`` and "realises exactly the new
        content": versions no longer listed are unloaded at once, whether or not a
        listed one is available yet (tensorflow.org/tfx/serving/serving_config,
        "Reloading Model Server Configuration"). That is the stricter reading of the
        documentation, and the one that makes a config rewritten under running pods
        visible: they drop the version they serve.
        """
        with self._lock:
            self.base_path = base_path
            self.specific = sorted({int(v) for v in versions}) if versions is not None else None
            keep = set(self.specific) if self.specific is not None else set(self.discover()[-1:])
            for v, s in self.versions.items():
                if v not in keep and s.state in ("AVAILABLE", "LOADING"):
                    s.state, s.loaded = "END", None
                    self._loading.discard(v)
        self.poll()

    def _unload_superseded(self) -> None:
        with self._lock:
            wanted = self.wanted()
            if not any(self.versions.get(v) and self.versions[v].state == "AVAILABLE" for v in wanted):
                return  # availability preserving: keep the old version until a new one is up
            for v, s in self.versions.items():
                if v not in wanted and s.state == "AVAILABLE":
                    # UNLOADING is instantaneous here: dropping the reference is the unload.
                    s.state, s.loaded = "END", None

    def update_labels(self, labels: dict[str, int], *, allow_unavailable: bool = False) -> None:
        """Accept a config's ``version_labels``, or refuse the whole config as TF Serving does.

        ServerCore::UpdateModelVersionLabelMap (tensorflow_serving/model_servers/server_core.cc),
        run by ReloadConfig *before* the config's versions are added: a label may point only at
        a version that is AVAILABLE now, else the config is refused with FAILED_PRECONDITION
        ("Request to assign label to version N of model M, which is not currently available for
        inference"). At start-up nothing is loaded yet, so a config with labels fails the server
        unless ``--allow_version_labels_for_unavailable_models``, which lets a *new* label (or
        one kept at its version) point at an unloaded version, but never *moves* an existing
        label to one (tensorflow.org/tfx/serving/serving_config, "Assigning String Labels to
        Model Versions": so that a version swap does not drop requests for the label while
        the new version loads).
        """
        with self._lock:
            for label, version in labels.items():
                allowed = allow_unavailable and self.labels.get(label, version) == version
                state = self.versions.get(version)
                if not allowed and (state is None or state.state != "AVAILABLE"):
                    raise ConfigError(
                        f"FAILED_PRECONDITION: Request to assign label to version {version} of model "
                        f"{self.name}, which is not currently available for inference"
                    )
            self.labels = dict(labels)

    def label_version(self, label: str) -> int:
        """The version ``label`` points at (ServerCore::GetModelVersionForLabel)."""
        with self._lock:
            if label not in self.labels:
                # TF Serving answers INVALID_ARGUMENT (HTTP 400) here, not NOT_FOUND.
                raise ServingError("INVALID_ARGUMENT", f"Unrecognized servable version label: {label}")
            return self.labels[label]

    # -------------------------------------------------------------- requests

    def status(self, version: int | None) -> list[VersionState]:
        with self._lock:
            if version is not None:
                if version not in self.versions:
                    raise ServingError("NOT_FOUND", f"Could not find version {version} of model {self.name}")
                return [self.versions[version]]
            if not self.versions:
                raise ServingError("NOT_FOUND", f"Could not find any versions of model {self.name}")
            return [self.versions[v] for v in sorted(self.versions)]

    def servable(self, version: int | None) -> tuple[int, Any]:
        with self._lock:
            if version is None:
                available = [v for v, s in self.versions.items() if s.state == "AVAILABLE"]
                if not available:
                    raise ServingError("NOT_FOUND", f"Servable not found for request: Latest({self.name})")
                version = max(available)
            state = self.versions.get(version)
            if state is None or state.state != "AVAILABLE":
                raise ServingError(
                    "NOT_FOUND", f"Servable not found for request: Specific({self.name}, {version})"
                )
            return version, state.loaded

    def predict(
        self, inputs: dict[str, Any], version: int | None, signature_name: str
    ) -> tuple[int, dict[str, Any]]:
        """Run a signature; inputs are numpy arrays or lists by alias, outputs numpy arrays."""
        version, loaded = self.servable(version)
        delay = self.faults.of("predict_delay", version)
        if delay:
            time.sleep(delay)
        error_rate = self.faults.of("error_rate", version)
        if error_rate and random.random() < error_rate:
            raise ServingError("UNAVAILABLE", "simulated failure (fault injection: error_rate)")
        signature_name = signature_name or "serving_default"
        if signature_name not in loaded.signatures:
            raise ServingError("INVALID_ARGUMENT", f'Serving signature key "{signature_name}" not found.')
        fn = loaded.signatures[signature_name]
        specs = fn.structured_input_signature[1]
        unknown = sorted(set(inputs) - set(specs))
        if unknown:
            raise ServingError(
                "INVALID_ARGUMENT",
                f"input tensor alias not found in signature: {', '.join(unknown)}. "
                f"Inputs expected to be in the set {{{','.join(sorted(specs))}}}.",
            )
        missing = sorted(set(specs) - set(inputs))
        if missing:
            raise ServingError(
                "INVALID_ARGUMENT",
                f"Request inputs do not match required inputs for signature: {signature_name}. "
                f"Missing: {', '.join(missing)}",
            )
        tf = self.tf
        try:
            tensors = {k: tf.convert_to_tensor(v, dtype=specs[k].dtype) for k, v in inputs.items()}
            for k, t in tensors.items():
                if not specs[k].shape.is_compatible_with(t.shape):
                    raise ServingError(
                        "INVALID_ARGUMENT",
                        f"input {k}: shape {t.shape} is not compatible with the signature's {specs[k].shape}",
                    )
            outputs = fn(**tensors)
        except (TypeError, ValueError, tf.errors.InvalidArgumentError) as e:
            raise ServingError("INVALID_ARGUMENT", str(e).splitlines()[0]) from None
        result = {k: v.numpy() for k, v in outputs.items()}
        offset = self.faults.of("output_offset", version)
        if offset:
            result = {k: v + offset if v.dtype.kind in "fiu" else v for k, v in result.items()}
        return version, result


_LOADED: dict[str, Any] = {}
_LOADED_LOCK = threading.Lock()


def _load_saved_model(tf: Any, path: Path) -> Any:
    """``tf.saved_model.load`` once per directory: pods of one Service share the loaded graph."""
    key = str(path.resolve())
    with _LOADED_LOCK:
        if key in _LOADED:
            return _LOADED[key]
    loaded = tf.saved_model.load(key)
    with _LOADED_LOCK:
        return _LOADED.setdefault(key, loaded)


class ConfigError(Exception):
    """A model config file TF Serving cannot use (the server does not start with it)."""


@dataclass
class ModelConfigEntry:
    """One ``model_config_list.config`` entry, as the stand-in uses it."""

    base_path: str
    versions: list[int] | None  # specific versions, None for the latest
    labels: dict[str, int]  # version_labels


def parse_model_config(text: str, model_name: str) -> tuple[str, list[int] | None]:
    """``(base_path, specific versions or None for latest)`` of ``model_name`` in a config file."""
    entry = parse_model_config_entry(text, model_name)
    return entry.base_path, entry.versions


def parse_model_config_entry(text: str, model_name: str) -> ModelConfigEntry:
    """``model_name``'s entry in a config file: base path, version policy and version labels.

    Parsed with TF Serving's own ``ModelServerConfig`` message and protobuf text format,
    so a config TF Serving would refuse is refused here too.
    """
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    config = model_server_config_pb2.ModelServerConfig()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as e:
        raise ConfigError(f"Invalid protobuf file: {e}") from None
    for entry in config.model_config_list.config:
        if entry.name == model_name:
            policy = entry.model_version_policy
            labels = {str(k): int(v) for k, v in entry.version_labels.items()}
            if policy.HasField("specific"):
                return ModelConfigEntry(entry.base_path, list(policy.specific.versions), labels)
            if policy.HasField("all"):
                raise ConfigError("the stand-in serves the 'latest' or 'specific' version policies only")
            return ModelConfigEntry(entry.base_path, None, labels)
    raise ConfigError(f"the model config does not list the model {model_name!r}")


@dataclass
class PodAddress:
    """Where a pod's own servers listen: its pod IP and the container's ports."""

    ip: str
    grpc_port: int = 8500  # tensorflow_model_server --port (default 8500)
    rest_port: int | None = None  # --rest_api_port; TF Serving's default 0 means no REST API


@dataclass
class PodBackend:
    """One pod's TF Serving: its own config file, poll interval and version states."""

    pod: str
    model: ServedModel
    config_text: str  # what the mounted file holds now (the kubelet updates it)
    applied_text: str  # what the server read last
    poll_seconds: float
    next_poll: float = 0.0
    allow_unavailable_labels: bool = False  # --allow_version_labels_for_unavailable_models
    address: PodAddress | None = None
    last_error: str | None = None  # why the last config reload was refused (TF Serving logs it)
    servers: list[Any] = field(default_factory=list)  # its gRPC and REST servers, while it runs

    def close(self) -> None:
        """Stop the pod's servers (the container exits: its ports close)."""
        for server in self.servers:
            if isinstance(server, ThreadingHTTPServer):
                server.shutdown()
                server.server_close()
            else:
                server.stop(grace=None)
        self.servers.clear()


class _Scope:
    """What both APIs answer from: the Service (:class:`Standin`) or one pod (:class:`PodScope`)."""

    model: ServedModel
    metrics: Metrics
    control = False  # only the stand-in's own ports take /_standin requests

    def pick(self) -> ServedModel:
        raise NotImplementedError

    def timed(self, model_name: str, api: str, entrypoint: str, call: Callable[[ServedModel], T]) -> T:
        """Run ``call`` on the server that answers and record TF Serving's request metrics.

        The request counts on the answering pod's page (which also counts on the process's
        Service-level page); a request no server could take counts on the Service's only.
        """
        start = time.monotonic()
        status = "OK"
        served: ServedModel | None = None
        try:
            served = self.pick()
            return call(served)
        except ServingError as e:
            status = e.code
            raise
        finally:
            metrics = served.metrics if served is not None else self.metrics
            metrics.observe_request(model_name, api, entrypoint, status, time.monotonic() - start)

    def check_name(self, name: str, version: int | None = None) -> None:
        if name != self.model.name:
            what = f"Specific({name}, {version})" if version is not None else f"Latest({name})"
            raise ServingError("NOT_FOUND", f"Servable not found for request: {what}")


class PodScope(_Scope):
    """One pod's own servers: only that pod's model config, versions, labels and metrics."""

    def __init__(self, backend: PodBackend):
        self.backend = backend
        self.model = backend.model
        self.metrics = backend.model.metrics

    def pick(self) -> ServedModel:
        return self.backend.model


class Standin(_Scope):
    """Both APIs over one :class:`ServedModel`, or over the ready pods of a Service.

    Pod mode (driven by the Kubernetes stand-in's kubelet, ``tests/support/serving_runtime.py``):
    each pod is a :class:`PodBackend` with the model config file it mounts, re-read
    every ``poll_seconds``; requests on the two ports are spread over the pods listed
    as the Service's endpoints (only Ready pods are endpoints), and with no endpoint
    they fail as a Service without endpoints does. A pod started with an address also
    answers on its own gRPC and REST servers bound to its pod IP and container ports
    (:class:`PodScope`), from its own model only, with its own metrics page.
    """

    control = True

    def __init__(self, model: ServedModel, *, path_map: dict[str, Path] | None = None):
        self.model = model
        self.faults = model.faults
        # The Service-level metrics page: every request and load of this process, whichever
        # pod answered. A real Service would answer a scrape with one pod's page (kube-proxy
        # picks a pod); the sum keeps the stand-in's existing single-server tests meaningful.
        # Per-pod pages are on each pod's own REST server.
        self.metrics = model.metrics
        self.path_map = dict(path_map or {})
        self.pods: dict[str, PodBackend] = {}
        self.endpoints: list[str] | None = None  # None: not behind a Service (one server)
        self._lock = threading.Lock()
        self._next = 0

    # -------------------------------------------------------------- pod mode

    def local_path(self, base_path: str) -> Path:
        """The local folder behind a container path (``--path-map /models=DIR``)."""
        for prefix, local in sorted(self.path_map.items(), key=lambda kv: -len(kv[0])):
            if base_path == prefix or base_path.startswith(prefix.rstrip("/") + "/"):
                return local / base_path[len(prefix) :].lstrip("/")
        return Path(base_path)

    def start_pod(
        self,
        pod: str,
        config_text: str,
        poll_seconds: float,
        *,
        address: PodAddress | None = None,
        allow_unavailable_labels: bool = False,
    ) -> PodBackend:
        """Start a pod's server; :class:`ConfigError` when it would exit at start-up."""
        entry = parse_model_config_entry(config_text, self.model.name)
        local = self.local_path(entry.base_path)
        if not local.is_dir():
            # tensorflow_model_server exits when a base path does not exist; the kubelet restarts it.
            raise ConfigError(f"Could not find base path {entry.base_path} for servable {self.model.name}")
        served = ServedModel(self.model.name, local, self.faults, Metrics(parent=self.metrics))
        served.specific = sorted(set(entry.versions)) if entry.versions is not None else None
        # Labels are checked before any version loads (ReloadConfig's order), so a config
        # with labels fails the server's start unless unavailable labels are allowed.
        try:
            served.update_labels(entry.labels, allow_unavailable=allow_unavailable_labels)
        except ConfigError as e:
            raise ConfigError(f"Failed to start server. Error: {e}") from None
        backend = PodBackend(
            pod,
            served,
            config_text,
            config_text,
            poll_seconds,
            allow_unavailable_labels=allow_unavailable_labels,
            address=address,
        )
        backend.next_poll = time.monotonic() + poll_seconds
        with self._lock:
            old = self.pods.pop(pod, None)
        if old is not None:
            old.close()
            old.model.versions.clear()
        if address is not None:
            _start_pod_servers(backend)
        with self._lock:
            self.pods[pod] = backend
        served.poll()
        return backend

    def stop_pod(self, pod: str) -> bool:
        with self._lock:
            backend = self.pods.pop(pod, None)
            if self.endpoints is not None and pod in self.endpoints:
                self.endpoints = [p for p in self.endpoints if p != pod]
        if backend is not None:
            backend.close()
        return backend is not None

    def write_pod_config(self, pod: str, config_text: str) -> None:
        """The kubelet projected new file content: the server sees it at its next poll."""
        with self._lock:
            backend = self.pods.get(pod)
            if backend is None:
                raise KeyError(pod)
            backend.config_text = config_text

    def poll_pods(self) -> None:
        """Each pod's config poll and file-system poll, when due."""
        now = time.monotonic()
        with self._lock:
            due = [b for b in self.pods.values() if now >= b.next_poll]
        for backend in due:
            backend.next_poll = now + backend.poll_seconds
            if backend.config_text != backend.applied_text:
                text = backend.config_text
                try:
                    entry = parse_model_config_entry(text, self.model.name)
                    backend.model.update_labels(
                        entry.labels, allow_unavailable=backend.allow_unavailable_labels
                    )
                except ConfigError as e:
                    # A running server keeps its last good config when a reload fails.
                    log.warning("pod %s: config reload failed, keeping the old one: %s", backend.pod, e)
                    backend.applied_text = text
                    backend.last_error = str(e)
                    continue
                backend.applied_text = text
                backend.last_error = None
                log.info(
                    "pod %s: model config reloaded: versions %s, labels %s",
                    backend.pod,
                    entry.versions,
                    entry.labels,
                )
                backend.model.reload_config(self.local_path(entry.base_path), entry.versions)
            else:
                backend.model.poll()

    def set_endpoints(self, pods: list[str] | None) -> None:
        with self._lock:
            self.endpoints = list(pods) if pods is not None else None

    def pick(self) -> ServedModel:
        """The server that answers this request (round robin over the endpoints)."""
        with self._lock:
            if self.endpoints is None:
                return self.model
            ready = [self.pods[p] for p in self.endpoints if p in self.pods]
            if not ready:
                raise ServingError(
                    "UNAVAILABLE", "no endpoints available for the Service (connection refused)"
                )
            self._next += 1
            return ready[self._next % len(ready)].model

    def pod_model(self, pod: str) -> ServedModel:
        with self._lock:
            backend = self.pods.get(pod)
        if backend is None:
            raise KeyError(pod)
        return backend.model


def _start_pod_servers(backend: PodBackend) -> None:
    """The pod's gRPC (and, with ``--rest_api_port``, REST) server on its pod IP; ConfigError
    when a port cannot be bound (the container would exit: CrashLoopBackOff)."""
    import grpc
    from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

    address = backend.address
    if address is None:
        return
    scope = PodScope(backend)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    prediction, status = _grpc_servicers(scope)
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(prediction, server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(status, server)
    try:
        bound = server.add_insecure_port(f"{address.ip}:{address.grpc_port}")
    except RuntimeError:
        bound = 0
    if not bound:
        raise ConfigError(f"Failed to start server: could not bind gRPC to {address.ip}:{address.grpc_port}")
    server.start()
    backend.servers.append(server)
    if address.rest_port:
        try:
            http = ThreadingHTTPServer((address.ip, address.rest_port), _rest_handler(scope))
        except OSError as e:
            backend.close()
            raise ConfigError(
                f"Failed to start HTTP server at {address.ip}:{address.rest_port}: {e}"
            ) from None
        http.daemon_threads = True
        threading.Thread(target=http.serve_forever, daemon=True, name=f"rest-{backend.pod}").start()
        backend.servers.append(http)


def _grpc_servicers(standin: _Scope) -> tuple[Any, Any]:
    import grpc
    import tensorflow as tf
    from tensorflow.core.protobuf import error_codes_pb2
    from tensorflow_serving.apis import (
        get_model_status_pb2,
        model_service_pb2_grpc,
        predict_pb2,
        prediction_service_pb2_grpc,
    )
    from tensorflow_serving.apis.status_pb2 import StatusProto

    def abort(context: Any, e: ServingError) -> None:
        context.abort(getattr(grpc.StatusCode, e.code, grpc.StatusCode.UNKNOWN), e.message)

    class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
        def Predict(self, request: Any, context: Any) -> Any:
            spec = request.model_spec
            version = spec.version.value if spec.HasField("version") else None
            # model_spec's version_choice oneof: a version number or a version_label.
            label = spec.version_label if spec.WhichOneof("version_choice") == "version_label" else None
            try:

                def call(served: ServedModel) -> Any:
                    standin.check_name(spec.name, version)
                    wanted = served.label_version(label) if label is not None else version
                    inputs = {k: tf.make_ndarray(v) for k, v in request.inputs.items()}
                    return served.predict(inputs, wanted, spec.signature_name)

                served_version, outputs = standin.timed(spec.name, "predict", "GRPC", call)
            except ServingError as e:
                abort(context, e)
                raise AssertionError("unreachable") from None
            response = predict_pb2.PredictResponse()
            response.model_spec.name = spec.name
            response.model_spec.version.value = served_version
            response.model_spec.signature_name = spec.signature_name or "serving_default"
            wanted = set(request.output_filter) or set(outputs)
            for name, value in outputs.items():
                if name in wanted:
                    response.outputs[name].CopyFrom(tf.make_tensor_proto(value))
            return response

    class ModelService(model_service_pb2_grpc.ModelServiceServicer):
        def GetModelStatus(self, request: Any, context: Any) -> Any:
            spec = request.model_spec
            version = spec.version.value if spec.HasField("version") else None
            try:
                if spec.name != standin.model.name:
                    raise ServingError("NOT_FOUND", f"Could not find any versions of model {spec.name}")
                states = standin.pick().status(version)
            except ServingError as e:
                abort(context, e)
                raise AssertionError("unreachable") from None
            response = get_model_status_pb2.GetModelStatusResponse()
            state_enum = get_model_status_pb2.ModelVersionStatus.State
            for s in states:
                response.model_version_status.add(
                    version=s.version,
                    state=state_enum.Value(s.state),
                    status=StatusProto(
                        error_code=error_codes_pb2.Code.Value(s.error_code), error_message=s.error_message
                    ),
                )
            return response

    return PredictionService(), ModelService()


# /v1/models/<name>[/versions/<v> | /labels/<label>][/metadata][:verb] (tensorflow.org/tfx/serving/api_rest)
_MODEL_PATH = re.compile(
    r"^/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>\d+)|/labels/(?P<label>[^/:]+))?"
    r"(?P<metadata>/metadata)?(?::(?P<verb>\w+))?$"
)
_POD_PATH = re.compile(r"^/_standin/pods/(?P<pod>[^/?]+)(?P<sub>/config|/probe)?(?:\?(?P<query>.*))?$")


def rest_get(standin: _Scope, served: ServedModel | None, path: str) -> tuple[int, Any]:
    """TF Serving's REST ``GET`` (status, metadata) answered by ``served`` (None: the Service)."""
    match = _MODEL_PATH.match(path)
    if not match or match["verb"]:
        return 404, {"error": f"Malformed request: GET {path}"}
    version = int(match["version"]) if match["version"] else None
    try:
        if match["name"] != standin.model.name:
            raise ServingError("NOT_FOUND", f"Could not find any versions of model {match['name']}")
        model = served if served is not None else standin.pick()
        if match["label"]:
            version = model.label_version(match["label"])
        if match["metadata"]:
            # GetModelMetadata needs a servable handle: 404 unless the version is AVAILABLE
            # (what makes it a readiness path that fails when a pod drops its version).
            served_version, loaded = model.servable(version)
            signatures = {
                key: {
                    "inputs": {n: {"name": n} for n in fn.structured_input_signature[1]},
                    "method_name": "tensorflow/serving/predict",
                }
                for key, fn in loaded.signatures.items()
            }
            return 200, {
                "model_spec": {"name": model.name, "signature_name": "", "version": str(served_version)},
                "metadata": {"signature_def": {"signature_def": signatures}},
            }
        states = model.status(version)
    except ServingError as e:
        return e.http_status, {"error": e.message}
    return 200, {
        "model_version_status": [
            {
                "version": str(s.version),
                "state": s.state,
                "status": {"error_code": s.error_code, "error_message": s.error_message},
            }
            for s in states
        ]
    }


def _rest_handler(standin: _Scope) -> type[BaseHTTPRequestHandler]:
    import numpy as np

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body go out in separate writes: without TCP_NODELAY, Nagle's
        # algorithm and the client's delayed ACK add ~40 ms to every keep-alive request.
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("rest: %s", format % args)

        def send(self, status: int, body: Any, content_type: str = "application/json") -> None:
            data = (body if isinstance(body, str) else json.dumps(body, indent=1)).encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def error(self, e: ServingError) -> None:
            self.send(e.http_status, {"error": e.message})

        def do_GET(self) -> None:
            if self.path == "/monitoring/prometheus/metrics":
                self.send(200, standin.metrics.render(), "text/plain; version=0.0.4")
                return
            if not isinstance(standin, Standin):  # a pod's own server: TF Serving's API only
                status, body = rest_get(standin, None, self.path)
                self.send(status, body)
                return
            pod = _POD_PATH.match(self.path)
            if pod and pod["sub"] == "/probe":
                # The kubelet's httpGet probe, sent to one pod rather than to the Service.
                probe_path = parse_qs(pod["query"] or "").get("path", ["/"])[0]
                try:
                    served = standin.pod_model(pod["pod"])
                except KeyError:
                    self.send(200, {"status": 0, "error": "connection refused: no such pod"})
                    return
                status, _ = rest_get(standin, served, probe_path)
                self.send(200, {"status": status})
                return
            if self.path == "/_standin/pods":
                with standin._lock:
                    body = {
                        "endpoints": standin.endpoints,
                        "pods": {
                            name: {v: st.state for v, st in sorted(b.model.versions.items())}
                            for name, b in standin.pods.items()
                        },
                        "labels": {name: dict(b.model.labels) for name, b in standin.pods.items()},
                        "errors": {name: b.last_error for name, b in standin.pods.items() if b.last_error},
                        "addresses": {
                            name: asdict(b.address) for name, b in standin.pods.items() if b.address
                        },
                    }
                self.send(200, body)
                return
            status, body = rest_get(standin, None, self.path)
            self.send(status, body)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            if isinstance(standin, Standin) and self.path.startswith("/_standin/"):
                self._control(standin, raw)
                return
            self._model_post(raw)

        def _control(self, standin: Standin, raw: bytes) -> None:
            if self.path == "/_standin/faults":
                try:
                    standin.faults.update(json.loads(raw or b"{}"))
                except (ValueError, TypeError) as e:
                    self.send(400, {"error": str(e)})
                    return
                self.send(200, asdict(standin.faults))
                return
            if self.path == "/_standin/versions":
                try:
                    body = json.loads(raw or b"{}")
                    versions = body.get("versions")
                    standin.model.set_specific(None if versions is None else [int(v) for v in versions])
                except (ValueError, TypeError, AttributeError) as e:
                    self.send(400, {"error": f"expected {{'versions': [int, ...] | null}}: {e}"})
                    return
                standin.model.poll(wait=bool(body.get("wait", False)))
                self.send(
                    200, {"versions": sorted(standin.model.versions), "specific": standin.model.specific}
                )
                return
            if self.path == "/_standin/poll":
                standin.model.poll(wait=True)
                self.send(200, {"versions": sorted(standin.model.versions)})
                return
            if self.path == "/_standin/endpoints":
                try:
                    pods = json.loads(raw or b"{}").get("pods")
                    standin.set_endpoints(None if pods is None else [str(p) for p in pods])
                except (ValueError, TypeError, AttributeError) as e:
                    self.send(400, {"error": f"expected {{'pods': [name, ...] | null}}: {e}"})
                    return
                self.send(200, {"endpoints": standin.endpoints})
                return
            pod = _POD_PATH.match(self.path)
            if pod:
                try:
                    body = json.loads(raw or b"{}")
                    if pod["sub"] == "/config":
                        standin.write_pod_config(pod["pod"], str(body["config"]))
                        self.send(200, {"pod": pod["pod"]})
                    else:
                        address = body.get("address")
                        standin.start_pod(
                            pod["pod"],
                            str(body["config"]),
                            float(body["poll_seconds"]),
                            address=PodAddress(**address) if address else None,
                            allow_unavailable_labels=bool(body.get("allow_unavailable_labels", False)),
                        )
                        self.send(201, {"pod": pod["pod"]})
                except ConfigError as e:
                    self.send(422, {"error": str(e)})
                except KeyError as e:
                    self.send(404, {"error": f"no pod {e}"})
                except (ValueError, TypeError) as e:
                    self.send(400, {"error": str(e)})
                return
            self.send(404, {"error": f"Malformed request: POST {self.path}"})

        def _model_post(self, raw: bytes) -> None:
            match = _MODEL_PATH.match(self.path)
            if not match or match["verb"] not in ("predict",):
                self.send(404, {"error": f"Malformed request: POST {self.path}"})
                return
            version = int(match["version"]) if match["version"] else None
            label = match["label"]
            try:
                body = json.loads(raw)
                if not isinstance(body, dict):
                    raise ServingError("INVALID_ARGUMENT", "JSON Value: must be an object")
            except ValueError as e:
                self.error(ServingError("INVALID_ARGUMENT", f"JSON Parse error: {e}"))
                return
            try:
                result = standin.timed(
                    match["name"],
                    "predict",
                    "REST",
                    lambda served: self._predict(served, match["name"], version, label, body),
                )
            except ServingError as e:
                self.error(e)
                return
            self.send(200, result)

        def do_DELETE(self) -> None:
            pod = _POD_PATH.match(self.path)
            if not isinstance(standin, Standin) or not pod or pod["sub"]:
                self.send(404, {"error": f"Malformed request: DELETE {self.path}"})
                return
            self.send(200 if standin.stop_pod(pod["pod"]) else 404, {"pod": pod["pod"]})

        def _predict(
            self, served: ServedModel, name: str, version: int | None, label: str | None, body: dict[str, Any]
        ) -> dict[str, Any]:
            standin.check_name(name, version)
            if label is not None:
                version = served.label_version(label)
            signature = body.get("signature_name") or "serving_default"
            if ("instances" in body) == ("inputs" in body):
                raise ServingError(
                    "INVALID_ARGUMENT",
                    "Missing 'inputs' or 'instances' key"
                    if "inputs" not in body
                    else "Request body may have only one of 'inputs' or 'instances'",
                )
            if "inputs" in body:
                raw_inputs = body["inputs"]
                inputs = (
                    raw_inputs
                    if isinstance(raw_inputs, dict)
                    else {self._only_input(served, signature): raw_inputs}
                )
                _, outputs = served.predict(inputs, version, signature)
                lists = {k: v.tolist() for k, v in outputs.items()}
                return {"outputs": next(iter(lists.values())) if len(lists) == 1 else lists}
            instances = body["instances"]
            if not isinstance(instances, list):
                raise ServingError("INVALID_ARGUMENT", "'instances' must be a list")
            if instances and all(isinstance(i, dict) for i in instances):
                inputs = {k: [i[k] for i in instances] for k in instances[0]}
            else:
                inputs = {self._only_input(served, signature): instances}
            _, outputs = served.predict(inputs, version, signature)
            if len(outputs) == 1:
                return {"predictions": next(iter(outputs.values())).tolist()}
            n = len(instances)
            rows = [{k: np.asarray(v)[i].tolist() for k, v in outputs.items()} for i in range(n)]
            return {"predictions": rows}

        def _only_input(self, served: ServedModel, signature: str) -> str:
            _, loaded = served.servable(None)
            if signature not in loaded.signatures:
                raise ServingError("INVALID_ARGUMENT", f'Serving signature key "{signature}" not found.')
            names = list(loaded.signatures[signature].structured_input_signature[1])
            if len(names) != 1:
                raise ServingError(
                    "INVALID_ARGUMENT", f"signature {signature} has {len(names)} inputs; name them"
                )
            return names[0]

    return Handler


def serve(args: argparse.Namespace) -> None:
    """Start both APIs, write the ready file, and serve until SIGTERM/SIGINT."""
    import grpc
    from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

    if args.build_half_plus_two:
        from tests.support.saved_model import build_half_plus_two

        build_half_plus_two(args.model_base_path, versions=args.build_half_plus_two)

    faults = Faults(
        predict_delay=args.predict_delay,
        error_rate=args.error_rate,
        load_delay=args.load_delay,
        fail_load_versions=list(args.fail_load_version),
    )
    metrics = Metrics()
    model = ServedModel(args.model_name, Path(args.model_base_path), faults, metrics)
    if args.versions:
        model.set_specific(args.versions)
    path_map = {}
    for item in args.path_map:
        prefix, _, local = item.partition("=")
        path_map[prefix] = Path(local)
    standin = Standin(model, path_map=path_map)

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    prediction, status = _grpc_servicers(standin)
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(prediction, server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(status, server)
    address = f"{args.host}:{args.grpc_port}"
    if args.tls_cert:
        credentials = grpc.ssl_server_credentials(
            [(Path(args.tls_key).read_bytes(), Path(args.tls_cert).read_bytes())]
        )
        grpc_port = server.add_secure_port(address, credentials)
    else:
        grpc_port = server.add_insecure_port(address)
    server.start()

    http = ThreadingHTTPServer((args.host, args.rest_port), _rest_handler(standin))
    http.daemon_threads = True
    threading.Thread(target=http.serve_forever, daemon=True, name="rest").start()

    model.poll(wait=not args.no_wait_for_load)

    stop = threading.Event()

    def pod_poller() -> None:
        # Each pod's own --model_config_file_poll_wait_seconds, checked often.
        while not stop.wait(0.05):
            try:
                standin.poll_pods()
            except Exception:
                log.exception("pod poll failed")

    threading.Thread(target=pod_poller, daemon=True, name="pod-poll").start()
    if args.poll_seconds > 0:

        def poller() -> None:
            while not stop.wait(args.poll_seconds):
                model.poll()

        threading.Thread(target=poller, daemon=True, name="poll").start()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())

    if args.ready_file:
        ready = {"grpc_port": grpc_port, "rest_port": http.server_address[1], "pid": os.getpid()}
        tmp = f"{args.ready_file}.tmp"
        Path(tmp).write_text(json.dumps(ready))
        os.replace(tmp, args.ready_file)
    log.info("serving %s on grpc %s, rest %s", args.model_name, grpc_port, http.server_address[1])
    stop.wait()
    http.shutdown()
    server.stop(grace=1).wait()


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m tests.support.tf_serving_standin", description=__doc__.split("\n")[0]
    )
    p.add_argument("--model-name", required=True)
    p.add_argument("--model-base-path", required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--grpc-port", type=int, default=8500)
    p.add_argument("--rest-port", type=int, default=8501)
    p.add_argument("--ready-file", help="write {grpc_port, rest_port, pid} as JSON here once serving")
    p.add_argument(
        "--poll-seconds", type=float, default=1.0, help="base path poll interval; 0: only at start"
    )
    p.add_argument("--no-wait-for-load", action="store_true", help="ready before the first load finishes")
    p.add_argument(
        "--build-half-plus-two",
        type=int,
        nargs="*",
        metavar="VERSION",
        help="first build half_plus_two into the base path (these versions, default 1) if missing",
    )
    p.add_argument(
        "--tls-cert", help="PEM certificate: serve gRPC over TLS (REST stays plain, as in TF Serving)"
    )
    p.add_argument("--tls-key", help="PEM private key for --tls-cert")
    p.add_argument(
        "--path-map",
        action="append",
        default=[],
        metavar="CONTAINER_PATH=LOCAL_DIR",
        help="pods' model base paths under CONTAINER_PATH are read from LOCAL_DIR (a volume)",
    )
    p.add_argument("--predict-delay", type=float, default=0.0)
    p.add_argument("--error-rate", type=float, default=0.0)
    p.add_argument("--load-delay", type=float, default=0.0)
    p.add_argument("--fail-load-version", type=int, action="append", default=[])
    p.add_argument(
        "--versions",
        type=int,
        nargs="+",
        metavar="VERSION",
        help="serve exactly these versions (model_version_policy specific) instead of the latest",
    )
    args = p.parse_args(argv)
    if args.build_half_plus_two == []:
        args.build_half_plus_two = [1]
    if bool(args.tls_cert) != bool(args.tls_key):
        p.error("--tls-cert and --tls-key go together")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    serve(parse_args(argv))


# ============================================================================ test side (TF-free)


@dataclass
class StandinProcess:
    """A running stand-in: its addresses, process and log."""

    model_name: str
    model_base_path: Path
    grpc_port: int
    rest_port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    host: str = "127.0.0.1"

    @property
    def grpc_target(self) -> str:
        return f"{self.host}:{self.grpc_port}"

    @property
    def rest_url(self) -> str:
        return f"http://{self.host}:{self.rest_port}"

    def connection_env(self, conn_id: str, **extra: Any) -> tuple[str, str]:
        """``(AIRFLOW_CONN_<ID>, json)`` for ``monkeypatch.setenv(*...)``: a ``tf_serving`` connection here."""
        value = {
            "conn_type": "tf_serving",
            "host": self.host,
            "port": self.grpc_port,
            "extra": {"rest_url": self.rest_url, **extra},
        }
        return f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(value)

    def set_faults(self, **changes: Any) -> dict[str, Any]:
        """Change :class:`Faults` at run time (``set_faults(error_rate=1.0)``)."""
        return _post_json(f"{self.rest_url}/_standin/faults", changes)

    def clear_faults(self) -> dict[str, Any]:
        """Every fault back to :class:`Faults`' default: what a test sharing the stand-in starts from."""
        return self.set_faults(**asdict(Faults()))

    def set_versions(self, versions: Sequence[int] | None, *, wait: bool = False) -> dict[str, Any]:
        """Serve exactly ``versions`` (``None``: the latest), like a model config reload.

        A newly wanted version loads in the background (``wait=True`` waits for it);
        the others are unloaded once one wanted version is AVAILABLE.
        """
        body = {"versions": list(versions) if versions is not None else None, "wait": wait}
        return _post_json(f"{self.rest_url}/_standin/versions", body)

    def poll(self) -> dict[str, Any]:
        """Rescan the base path now and wait for any load it starts."""
        return _post_json(f"{self.rest_url}/_standin/poll", {})

    def pods(self) -> dict[str, Any]:
        """``{"endpoints": [...] | None, "pods": {pod: {version: state}}}`` in pod mode."""
        import httpx

        response = httpx.get(f"{self.rest_url}/_standin/pods", timeout=30)
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def _post_json(url: str, body: dict[str, Any]) -> dict[str, Any]:
    import httpx

    response = httpx.post(url, json=body, timeout=30)
    response.raise_for_status()
    result: dict[str, Any] = response.json()
    return result


@contextlib.contextmanager
def start_tf_serving_standin(
    model_base_path: str | os.PathLike[str] | None = None,
    *,
    model_name: str = "half_plus_two",
    build_versions: Sequence[int] | None = (1,),
    extra_args: Sequence[str] = (),
    ready_timeout: float = 180.0,
    log_dir: str | os.PathLike[str] | None = None,
) -> Iterator[StandinProcess]:
    """Run the stand-in as a subprocess until the block ends.

    By default it serves ``half_plus_two`` from the cached base path (built on first
    use). ``build_versions=None`` serves ``model_base_path`` as it is. Raises
    ``RuntimeError`` with the server's log if it is not ready within ``ready_timeout``.
    """
    base = Path(model_base_path) if model_base_path is not None else half_plus_two_base_path()
    with tempfile.TemporaryDirectory(prefix="tf-serving-standin-") as tmp:
        ready_file = Path(tmp) / "ready.json"
        log_path = Path(log_dir or tmp) / f"tf_serving_standin-{os.getpid()}-{time.monotonic_ns()}.log"
        cmd = [
            sys.executable,
            "-m",
            "tests.support.tf_serving_standin",
            "--model-name",
            model_name,
            "--model-base-path",
            str(base),
            "--grpc-port",
            "0",
            "--rest-port",
            "0",
            "--ready-file",
            str(ready_file),
        ]
        if build_versions:
            cmd += ["--build-half-plus-two", *map(str, build_versions)]
        cmd += list(extra_args)
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT), env.get("PYTHONPATH")]))
        with open(log_path, "wb") as log_file:
            process = subprocess.Popen(
                cmd,
                cwd=PROJECT_ROOT,
                env=env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            deadline = time.monotonic() + ready_timeout
            while not ready_file.exists():
                if process.poll() is not None:
                    raise RuntimeError(
                        f"TF Serving stand-in exited with {process.returncode} before it was ready; "
                        f"log {log_path}:\n{_tail(log_path)}"
                    )
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"TF Serving stand-in not ready after {ready_timeout:.0f}s; log {log_path}:\n{_tail(log_path)}"
                    )
                time.sleep(0.05)
            ports = json.loads(ready_file.read_text())
            yield StandinProcess(model_name, base, ports["grpc_port"], ports["rest_port"], process, log_path)
        finally:
            _stop(process)


def require_tensorflow() -> None:
    """Skip (or fail under CI) when TensorFlow, which the stand-in serves with, is missing."""
    import importlib.util

    from tests.support.integration import unavailable

    for package in ("tensorflow", "tensorflow_serving"):
        if importlib.util.find_spec(package) is None:
            unavailable("TF Serving stand-in", f"the {package} package is not installed")


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=15)


@pytest.fixture(scope="session")
def tf_serving_standin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StandinProcess]:
    """One stand-in serving half_plus_two v1 for the whole session (read-only use, please).

    Tests that change faults or versions start their own with :func:`start_tf_serving_standin`.
    """
    require_tensorflow()
    with start_tf_serving_standin(log_dir=tmp_path_factory.mktemp("tf_serving_standin")) as server:
        yield server


if __name__ == "__main__":
    main()
