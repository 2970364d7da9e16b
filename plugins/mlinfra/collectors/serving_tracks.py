"""The sweep's TF Serving metrics per pod while a canary runs: ``track`` and ``version`` labels.

TF Serving labels its metrics by model only, and a Service spreads requests over its
pods. While a canary Deployment (``<name>-canary``, pod label ``track: canary``,
issue 13) serves next to the stable one, a scrape through the Service reads one pod
or the other, and a counter's ``rate()`` across them means nothing. So for a model
with canary pods, the serving collector reads ``/monitoring/prometheus/metrics`` of
every Ready pod of both tracks and labels each series ``track`` (``stable`` /
``canary``), ``version`` (the pod's ``version`` label) and ``pod``: the series the
canary analysis writes (:func:`mlinfra.deploy.canary.tracks.scrape_track_samples`),
so dashboards and rules see one set of names. The model's status samples (up, version
states) still come through the Service.

Which models have a canary: those with a canary run in progress in the store
(``mlinfra_canary_runs``, one query; most sweeps stop there, and load no Kubernetes
client), confirmed by one pod list (``track=canary``) per Kubernetes connection and
namespace they are in, each answered within the request timeout: a run whose canary
pods are gone (a run that died before its conclusion) keeps the Service scrape. A
failed read is reported in the collector's ``skipped`` (the Service scrape still
counts); a connection that does not exist is not looked at.

    canaries, notes = models_with_canary(models, connection_exists, core_v1_for)
    samples = track_samples(model, core_v1_for(model.kubernetes.conn_id))
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from functools import cache
from typing import TYPE_CHECKING, Any

from mlinfra.samples import Sample

if TYPE_CHECKING:
    from mlinfra.config import Model

__all__ = ["REQUEST_TIMEOUT", "canaries_in_progress", "core_v1_for", "models_with_canary", "track_samples"]

log = logging.getLogger(__name__)

REQUEST_TIMEOUT = 10.0  # seconds, each pod list (as the Kubernetes collector's calls)
CANARY_SELECTOR = "track=canary"


@cache
def core_v1_for(conn_id: str) -> Any:
    """A ``CoreV1Api`` on the provider's hook for ``conn_id`` (one per connection and process)."""
    from mlinfra.kube_import import import_kubernetes, kubernetes_hook_class

    client = import_kubernetes().client
    return client.CoreV1Api(kubernetes_hook_class()(conn_id=conn_id).api_client)


def canaries_in_progress() -> set[str]:
    """Models with a canary run not ended, from the store of connection ``mlinfra_store``."""
    from mlinfra.deploy.canary.records import CanaryRecords

    records = CanaryRecords.from_connection()
    try:
        return records.models_in_progress()
    finally:
        records.store.engine.dispose()


def models_with_canary(
    models: Sequence[Model],
    connection_exists: Callable[[str], bool],
    core_v1: Callable[[str], Any] = core_v1_for,
    in_progress: Callable[[], set[str]] = canaries_in_progress,
) -> tuple[set[str], list[str]]:
    """The names of ``models`` whose Deployment has canary pods, and what could not be looked at."""
    found: set[str] = set()
    notes: list[str] = []
    try:
        running = in_progress()
    except Exception as e:  # the Service scrape still counts; the note says what is missing
        log.warning("serving: canary runs not read: %s", e)
        return found, [f"canary runs not read ({type(e).__name__}: {e})"]
    places: dict[tuple[str, str], list[Model]] = {}
    for m in models:
        if m.name in running:
            places.setdefault((m.kubernetes.conn_id, m.kubernetes.namespace), []).append(m)
    for (conn_id, namespace), group in places.items():
        if not connection_exists(conn_id):
            continue
        try:
            pods = core_v1(conn_id).list_namespaced_pod(
                namespace, label_selector=CANARY_SELECTOR, _request_timeout=REQUEST_TIMEOUT
            )
        except Exception as e:  # the Service scrape still counts; the note says what is missing
            notes.append(f"canary pods in {conn_id}/{namespace} not listed ({type(e).__name__}: {e})")
            log.warning("serving: canary pods in %s/%s not listed: %s", conn_id, namespace, e)
            continue
        apps = {
            (p.metadata.labels or {}).get("app")
            for p in pods.items
            if p.metadata is not None and p.metadata.deletion_timestamp is None
        }
        found.update(m.name for m in group if m.kubernetes.deployment in apps)
    return found, notes


def track_samples(model: Model, core_v1: Any) -> list[Sample]:
    """Every Ready pod's TF Serving metrics of both tracks, labelled ``track``, ``version``, ``pod``.

    Raises :class:`~mlinfra.exceptions.CollectorError` when a track's pods are not listed
    or no pod of either track answered (nothing was read): that model's metrics are lost,
    never another model's (the collector keeps its status samples).
    """
    from mlinfra.deploy.canary.tracks import TRACKS, scrape_track_samples, track_pods
    from mlinfra.exceptions import CollectorError

    out: list[Sample] = []
    pods = 0
    for track in TRACKS:
        try:
            listed = track_pods(core_v1, model.kubernetes.namespace, model.kubernetes.deployment, track)
        except Exception as e:  # the Kubernetes client's ApiException, urllib3's errors
            raise CollectorError(f"{track} pods not listed ({type(e).__name__}: {e})") from None
        pods += len(listed)
        out.extend(
            scrape_track_samples(
                listed,
                model=model.name,
                track=track,
                served_model_name=model.serving.model_name,
                tf_serving_conn_id=model.serving.conn_id,
            )
        )
    if not out:
        raise CollectorError(f"no metrics from the {pods} Ready pods of the stable and canary tracks")
    return out
