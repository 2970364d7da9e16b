"""One track's pods (stable or canary) and what each of them answers, pod by pod.

A canary runs beside the stable Deployment behind the same Service, and TF Serving labels
its metrics by model only (tensorflow/serving#1970), so neither the Service address nor a
Service-level scrape can tell the two versions apart. An in-cluster Airflow worker reaches
each pod at ``status.podIP`` and its container ports, which is what this module does:

* :func:`track_pods` lists a track's Ready pods through the cncf-kubernetes client
  (``app=<app>,track=canary`` for the canary, ``app=<app>,track!=canary`` for the stable);
* :func:`predict_on_pods` sends gRPC Predicts round-robin over those pods (golden-set
  agreement, latency probes), through :class:`~mlinfra.hooks.tf_serving.TFServingHook`;
* :func:`scrape_track_samples` reads each pod's Prometheus page into samples labelled
  ``version``, ``track`` and ``pod``.

::

    core_v1 = CoreV1Api(KubernetesHook(conn_id="kubernetes_default").api_client)
    canary = track_pods(core_v1, "serving", "half-plus-two", "canary")
    probe = predict_on_pods(canary, "half_plus_two", [{"x": [1.0]}], tf_serving_conn_id="tf_serving")
    samples = scrape_track_samples(canary, model="half-plus-two", track="canary")

TensorFlow is never imported: the hook loads tensorflow-serving-api's protos lazily.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from mlinfra.collectors.tf_serving_metrics import parse_monitoring_metrics
from mlinfra.exceptions import TFServingError
from mlinfra.samples import Sample

log = logging.getLogger(__name__)

Track = Literal["stable", "canary"]
TRACKS: tuple[Track, ...] = ("stable", "canary")
TRACK_LABEL = "track"
CANARY = "canary"
# tensorflow_model_server's defaults when a pod does not name its ports.
DEFAULT_GRPC_PORT = 8500
DEFAULT_REST_PORT = 8501


@dataclass(frozen=True)
class PodAddress:
    """Where one pod of a track answers: ``ip:grpc_port`` (gRPC), ``ip:rest_port`` (REST)."""

    name: str
    ip: str
    grpc_port: int
    rest_port: int
    version: int | None  # the pod's ``version`` label (mlinfra's manifests set it)
    ready: bool

    @property
    def grpc_target(self) -> str:
        return f"{self.ip}:{self.grpc_port}"

    @property
    def rest_url(self) -> str:
        # TF Serving's REST API is plain HTTP (its gRPC port may use TLS).
        return f"http://{self.ip}:{self.rest_port}"


@dataclass
class ProbeResult:
    """What :func:`predict_on_pods` saw: one entry per request, in the order sent.

    ``outputs[i]`` is request i's outputs by tensor name (nested lists), or ``None`` when
    it failed; ``pods[i]`` the pod that answered; ``latencies_s`` holds the successful
    requests' latencies; ``errors`` one line per failed request (pod, status, message).
    """

    outputs: list[dict[str, Any] | None] = field(default_factory=list)
    pods: list[str] = field(default_factory=list)
    latencies_s: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def requests(self) -> int:
        return len(self.outputs)


def track_selector(app: str, track: Track) -> str:
    """The label selector of a track's pods.

    >>> track_selector("half-plus-two", "canary")
    'app=half-plus-two,track=canary'
    >>> track_selector("half-plus-two", "stable")
    'app=half-plus-two,track!=canary'
    """
    if track not in TRACKS:
        raise ValueError(f"track must be one of {', '.join(TRACKS)}, got {track!r}")
    op = "=" if track == CANARY else "!="
    return f"app={app},{TRACK_LABEL}{op}{CANARY}"


def track_pods(
    core_v1: Any, namespace: str, app: str, track: Track, *, ready_only: bool = True
) -> list[PodAddress]:
    """The pods of ``app``'s ``track`` in ``namespace`` (Ready ones unless ``ready_only=False``).

    ``core_v1`` is a ``kubernetes.client.CoreV1Api`` (e.g. over
    ``KubernetesHook(...).api_client``). Ports come from the container ports named
    ``grpc`` and ``http``; pods being deleted, or without an IP yet, are left out.
    """
    pods = core_v1.list_namespaced_pod(namespace, label_selector=track_selector(app, track)).items
    out = []
    for pod in pods:
        address = _address(pod)
        if address is None or (ready_only and not address.ready):
            continue
        out.append(address)
    return sorted(out, key=lambda p: p.name)


def _address(pod: Any) -> PodAddress | None:
    meta, status = pod.metadata, pod.status
    if meta.deletion_timestamp is not None or status is None or not status.pod_ip:
        return None
    grpc_port, rest_port = DEFAULT_GRPC_PORT, DEFAULT_REST_PORT
    for container in pod.spec.containers or []:
        named = {p.name: p.container_port for p in container.ports or [] if p.name}
        if "grpc" in named:
            grpc_port = int(named["grpc"])
            rest_port = int(named.get("http", rest_port))
            break
    ready = status.phase == "Running" and any(
        c.type == "Ready" and c.status == "True" for c in status.conditions or []
    )
    version_label = (meta.labels or {}).get("version")
    version = int(version_label) if version_label and version_label.isdigit() else None
    return PodAddress(meta.name, status.pod_ip, grpc_port, rest_port, version, ready)


def _hook(pod: PodAddress, tf_serving_conn_id: str, timeout: float | None) -> Any:
    from mlinfra.hooks.tf_serving import TFServingHook

    # The model's connection (TLS, timeout) with the pod's own address: an explicit
    # argument beats the connection's host and rest_url.
    return TFServingHook(
        tf_serving_conn_id, grpc_target=pod.grpc_target, rest_url=pod.rest_url, timeout=timeout
    )


def predict_on_pods(
    pods: Sequence[PodAddress],
    model_name: str,
    inputs: Mapping[str, Any] | Sequence[Mapping[str, Any]],
    *,
    tf_serving_conn_id: str = "tf_serving_default",
    requests: int | None = None,
    version: int | None = None,
    signature_name: str = "serving_default",
    dtypes: Mapping[str, str] | None = None,
    timeout: float | None = None,
    warmup: int = 0,
    clock: Callable[[], float] = time.monotonic,
) -> ProbeResult:
    """gRPC Predicts to ``pods`` round-robin: request i sends ``inputs[i % len(inputs)]`` to
    ``pods[i % len(pods)]``; ``requests`` defaults to one per input.

    ``inputs`` is one input mapping (tensor name -> nested list) or a list of them (a golden
    set). Requests go through :class:`~mlinfra.hooks.tf_serving.TFServingHook` (the same
    request building and error mapping as the smoke test). A failed request is recorded,
    never raised; with no pod at all, every request fails with ``no pods``. ``warmup``
    requests go to each pod first and are neither timed nor returned.
    """
    cases = [inputs] if isinstance(inputs, Mapping) else list(inputs)
    if not cases:
        raise ValueError("predict_on_pods needs at least one input mapping")
    total = len(cases) if requests is None else int(requests)
    result = ProbeResult()
    if not pods:
        result.outputs = [None] * total
        result.errors = ["no pods: the track has no Ready pod"] * total
        return result
    hooks = [_hook(p, tf_serving_conn_id, timeout) for p in pods]
    try:
        # Unmeasured, unrecorded requests first on each pod: its channel's set-up is not
        # a latency any steady client sees.
        for hook in hooks:
            for _ in range(warmup):
                try:
                    hook.predict(model_name, cases[0], version, signature_name, dtypes=dtypes)
                except TFServingError:
                    break
        for i in range(total):
            pod, hook = pods[i % len(pods)], hooks[i % len(pods)]
            started = clock()
            try:
                outputs = hook.predict(
                    model_name, cases[i % len(cases)], version, signature_name, dtypes=dtypes
                )
            except TFServingError as e:
                result.outputs.append(None)
                result.errors.append(f"{pod.name}: {e.status or 'error'}: {e.server_message or e}")
            else:
                result.latencies_s.append(clock() - started)
                result.outputs.append(outputs)
            result.pods.append(pod.name)
    finally:
        for hook in hooks:
            hook.close()
    return result


def scrape_track_samples(
    pods: Sequence[PodAddress],
    *,
    model: str,
    track: Track,
    version: int | None = None,
    served_model_name: str | None = None,
    tf_serving_conn_id: str = "tf_serving_default",
    timeout: float | None = None,
) -> list[Sample]:
    """Each pod's ``/monitoring/prometheus/metrics`` as samples labelled ``model``,
    ``version``, ``track`` and ``pod``.

    ``version`` defaults to each pod's own ``version`` label. Series of another served
    model (``model_name`` label) are left out when ``served_model_name`` is given. A pod
    that does not answer is logged and left out (the others still count).
    """
    out: list[Sample] = []
    for pod in pods:
        hook = _hook(pod, tf_serving_conn_id, timeout)
        try:
            text = hook.monitoring_metrics()
        except TFServingError as e:
            log.warning("canary %s: pod %s (%s) metrics not read: %s", track, pod.name, pod.rest_url, e)
            continue
        finally:
            hook.close()
        pod_version = version if version is not None else pod.version
        extra = {"track": track, "pod": pod.name}
        if pod_version is not None:
            extra["version"] = str(pod_version)
        for s in parse_monitoring_metrics(text, model=model, model_name=served_model_name):
            out.append(Sample(s.name, {**s.labels, **extra}, s.value, s.timestamp))
    return out
