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
    model: Model, hook: TFServingHook, *, clock: Callable[[], float] = time.monotonic
) -> list[Sample]:
    """One model's samples.

    Raises the hook's :class:`~mlinfra.hooks.tf_serving.TFServingError` when the
    status call fails (nothing is known then), and :class:`PartialCollection` with
    the status samples when only the monitoring endpoint fails.
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
        text = hook.monitoring_metrics()
        samples.extend(parse_monitoring_metrics(text, model=name, model_name=served))
    except (MlinfraError, ValueError, IndexError, KeyError) as e:
        # ValueError, IndexError, KeyError: prometheus_client's parser on a malformed
        # exposition (a truncated line raises IndexError); only this model's metrics are lost.
        raise PartialCollection(samples, [f"model {name}: monitoring metrics: {e}"]) from None
    return samples


def parse_monitoring_metrics(text: str, *, model: str, model_name: str | None = None) -> list[Sample]:
    """TF Serving's Prometheus text as samples under their own names, labelled ``model``.

    A series of another model on the same server (``model_name`` label naming a
    different model) is left out so it is not attributed to this one. An existing
    ``model`` label is kept as ``exported_model``, as Prometheus does on conflicts.

    >>> text = ':tensorflow:serving:request_count{model_name="m",status="OK"} 3\\n'
    >>> [(s.name, dict(s.labels), s.value) for s in parse_monitoring_metrics(text, model="fleet-m")]
    [(':tensorflow:serving:request_count', {'model_name': 'm', 'status': 'OK', 'model': 'fleet-m'}, 3.0)]
    """
    from prometheus_client.parser import text_string_to_metric_families

    # The parser renames a counter's samples to <name>_total (OpenMetrics style); TF
    # Serving's are exposed without it, and rules are written against the exposed names.
    exposed = _exposed_sample_names(text)
    out: list[Sample] = []
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            name = s.name
            if family.type == "counter" and name not in exposed and name.removesuffix("_total") in exposed:
                name = name.removesuffix("_total")
            labels: dict[str, Any] = dict(s.labels)
            if model_name is not None and labels.get("model_name", model_name) != model_name:
                continue
            if "model" in labels:
                labels["exported_model"] = labels.pop("model")
            labels["model"] = model
            out.append(Sample(name, labels, s.value))
    return out


def _exposed_sample_names(text: str) -> set[str]:
    names = set()
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            names.add(line.split("{", 1)[0].split(None, 1)[0])
    return names


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
) -> CollectorResult:
    """Collect every configured model, ``max_parallel`` endpoints at a time; never raises.

    One model failing (server down, model unknown, no answer within its timeout) gives
    that model ``mlinfra_serving_up 0`` and an error line; the others are still
    collected, and a slow one delays none of them while a slot is free.
    """
    configured: list[Model] = []
    skipped: list[str] = []
    for m in fleet.models:
        if connection_exists(m.serving.conn_id):
            configured.append(m)
        else:
            skipped.append(f"{m.name}: no connection {m.serving.conn_id!r}")

    def collect() -> Iterable[Sample]:
        if not configured:
            return []
        with ThreadPoolExecutor(
            max_workers=max(1, min(max_parallel, len(configured))), thread_name_prefix="serving"
        ) as pool:
            outcomes = list(pool.map(lambda m: _collect_one(m, hook_factory), configured))
        samples = [s for got, _ in outcomes for s in got]
        errors = [e for _, errs in outcomes for e in errs]
        if errors:
            raise PartialCollection(samples, errors)
        return samples

    return run_collector(COLLECTOR, collect, skipped=skipped)


def _collect_one(
    model: Model, hook_factory: Callable[[Model], TFServingHook]
) -> tuple[list[Sample], list[str]]:
    try:
        hook = hook_factory(model)
    except MlinfraError as e:
        return [Sample("mlinfra_serving_up", {"model": model.name}, 0.0)], [f"model {model.name}: {e}"]
    try:
        return collect_serving_samples(model, hook), []
    except PartialCollection as e:
        return e.samples, e.errors
    except MlinfraError as e:
        return [Sample("mlinfra_serving_up", {"model": model.name}, 0.0)], [f"model {model.name}: {e}"]
    finally:
        hook.close()
