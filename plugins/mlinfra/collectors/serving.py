"""Serving telemetry: each fleet model's version states and TF Serving's own metrics.

For every model whose ``serving.conn_id`` connection exists (the others are
reported as skipped, not failed)::

    result = run(load_fleet())
    result.summary()
    # {'collector': 'serving', 'up': True, 'samples': 214, ..., 'skipped': ['resnet50-classifier: ...']}

Samples, all labelled ``model`` with the fleet model name:

- ``mlinfra_serving_up`` 1 when ``GetModelStatus`` answered, else 0;
- ``mlinfra_serving_status_latency_seconds``: that call's round trip;
- ``mlinfra_serving_model_version_state{model_name,version,state}``: one series per
  state (START, LOADING, AVAILABLE, UNLOADING, END), 1 for the current one, as
  kube-state-metrics does for enum-like states;
- ``mlinfra_serving_model_version_available{model_name,version}`` 1/0;
- everything on the server's ``/monitoring/prometheus/metrics`` under its own name
  (``:tensorflow:serving:request_count``, ``:tensorflow:serving:request_latency_bucket``,
  ...), minus series of other models sharing the server.

Importing this module is cheap (no grpc, no TensorFlow): DAG files import it at
parse time. The hook and the protos load when :func:`run` talks to a server.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from mlinfra.collectors.base import CollectorResult, PartialCollection, run_collector
from mlinfra.collectors.tf_serving_metrics import parse_monitoring_metrics
from mlinfra.exceptions import MlinfraError
from mlinfra.samples import Sample

if TYPE_CHECKING:
    from mlinfra.config import Fleet, Model
    from mlinfra.hooks.tf_serving import TFServingHook

log = logging.getLogger(__name__)

COLLECTOR = "serving"
VERSION_STATES = ("START", "LOADING", "AVAILABLE", "UNLOADING", "END")
# Endpoints asked at once. Each call waits at most the hook's timeout (connection extra
# ``timeout``, 10 s by default), so an endpoint that never answers holds one of these
# slots for that long (twice, if its status call answers and its metrics page does not)
# while the others go on through the rest: 500 models take ~10 s on 2 cores
# (bench/bench_fleet.py); only this many silent endpoints at once stall the sweep.
MAX_PARALLEL_MODELS = 16


def collect_serving_samples(
    model: Model,
    hook: TFServingHook,
    *,
    clock: Callable[[], float] = time.monotonic,
    metrics: Callable[[], list[Sample]] | None = None,
) -> list[Sample]:
    """One model's samples.

    ``metrics`` reads the model's TF Serving metrics instead of the hook's monitoring
    page (each pod on its own while a canary runs: :mod:`.serving_tracks`).
    Raises the hook's :class:`~mlinfra.hooks.tf_serving.TFServingError` when the
    status call fails (nothing is known then), and :class:`PartialCollection` with
    the status samples when only the metrics fail.
    """
    name, served = model.name, model.serving.model_name
    start = clock()
    versions = hook.get_model_status(served)
    latency = clock() - start
    samples = [
        Sample("mlinfra_serving_up", {"model": name}, 1.0),
        Sample("mlinfra_serving_status_latency_seconds", {"model": name}, latency),
    ]
    for v in versions:
        labels = {"model": name, "model_name": served, "version": str(v["version"])}
        for state in VERSION_STATES:
            samples.append(
                Sample("mlinfra_serving_model_version_state", {**labels, "state": state}, v["state"] == state)
            )
        samples.append(Sample("mlinfra_serving_model_version_available", labels, v["state"] == "AVAILABLE"))
    try:
        if metrics is not None:
            samples.extend(metrics())
        else:
            text = hook.monitoring_metrics()
            samples.extend(parse_monitoring_metrics(text, model=name, model_name=served))
    except (MlinfraError, ValueError, IndexError, KeyError) as e:
        # ValueError, IndexError, KeyError: prometheus_client's parser on a malformed
        # exposition (a truncated line raises IndexError); only this model's metrics are lost.
        raise PartialCollection(samples, [f"model {name}: monitoring metrics: {e}"]) from None
    return samples


def _default_hook_factory(model: Model) -> TFServingHook:
    from mlinfra.hooks.tf_serving import TFServingHook

    return TFServingHook.for_model(model)


def _default_connection_exists(conn_id: str) -> bool:
    from mlinfra.connections import connection_exists

    return connection_exists(conn_id)


def run(
    fleet: Fleet,
    *,
    connection_exists: Callable[[str], bool] = _default_connection_exists,
    hook_factory: Callable[[Model], TFServingHook] = _default_hook_factory,
    max_parallel: int = MAX_PARALLEL_MODELS,
    core_v1: Callable[[str], Any] | None = None,
    canaries: Callable[[], set[str]] | None = None,
) -> CollectorResult:
    """Collect every configured model, ``max_parallel`` endpoints at a time; never raises.

    One model failing (server down, model unknown, no answer within its timeout) gives
    that model ``mlinfra_serving_up 0`` and an error line; the others are still
    collected, and a slow one delays none of them while a slot is free. A model with
    canary pods has its TF Serving metrics read per pod and track
    (:mod:`.serving_tracks`: ``canaries()`` names the models with a canary run in
    progress, the store's by default; ``core_v1(conn_id)`` is a ``CoreV1Api`` per
    Kubernetes connection, the provider's hook by default).
    """
    from mlinfra.collectors import serving_tracks

    configured: list[Model] = []
    skipped: list[str] = []
    for m in fleet.models:
        if connection_exists(m.serving.conn_id):
            configured.append(m)
        else:
            skipped.append(f"{m.name}: no connection {m.serving.conn_id!r}")
    kube = core_v1 or serving_tracks.core_v1_for
    with_canary, notes = serving_tracks.models_with_canary(
        configured, connection_exists, kube, canaries or serving_tracks.canaries_in_progress
    )

    def per_pod(m: Model) -> Callable[[], list[Sample]] | None:
        return (
            (lambda: serving_tracks.track_samples(m, kube(m.kubernetes.conn_id)))
            if m.name in with_canary
            else None
        )

    def collect() -> Iterable[Sample]:
        if not configured:
            return []
        with ThreadPoolExecutor(
            max_workers=max(1, min(max_parallel, len(configured))), thread_name_prefix="serving"
        ) as pool:
            outcomes = list(pool.map(lambda m: _collect_one(m, hook_factory, per_pod(m)), configured))
        samples = [s for got, _ in outcomes for s in got]
        errors = [e for _, errs in outcomes for e in errs]
        if errors:
            raise PartialCollection(samples, errors)
        return samples

    return run_collector(COLLECTOR, collect, skipped=skipped + notes)


def _collect_one(
    model: Model,
    hook_factory: Callable[[Model], TFServingHook],
    metrics: Callable[[], list[Sample]] | None = None,
) -> tuple[list[Sample], list[str]]:
    try:
        hook = hook_factory(model)
    except MlinfraError as e:
        return [Sample("mlinfra_serving_up", {"model": model.name}, 0.0)], [f"model {model.name}: {e}"]
    try:
        return collect_serving_samples(model, hook, metrics=metrics), []
    except PartialCollection as e:
        return e.samples, e.errors
    except MlinfraError as e:
        return [Sample("mlinfra_serving_up", {"model": model.name}, 0.0)], [f"model {model.name}: {e}"]
    finally:
        hook.close()
