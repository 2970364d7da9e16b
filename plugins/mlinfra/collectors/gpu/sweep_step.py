"""The GPU part of writing a sweep: pods on process series, XID counters, dcgm names.

The collector task sees one node's NVML and ``/proc``; the write task sees the whole
sweep (the Kubernetes collector's pods among it), the store and the fleet. There,
:func:`finish_gpu_samples` turns the collector's raw readings into what is stored:

* GPU process series get ``pod``, ``namespace``, ``container`` and ``model``
  (:func:`~mlinfra.collectors.gpu.attribution.attribute_processes`);
* ``ml_gpu_xid_errors_total{xid}`` is the previous stored value of each counter plus
  the XIDs the collector saw in this sweep (``ml_gpu_xid_events_observed``); counters
  of a node whose GPU collector ran are carried forward even without new events, and
  ``ml_gpu_xid_last_code`` keeps the last code seen. No table of its own: the samples
  table is the memory, and a re-run of the same sweep derives the same figures
  (only samples before the sweep's time are read);
* with ``gpu.metric_names: dcgm``, dcgm-exporter's names are added (:mod:`.dcgm`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from mlinfra.collectors.gpu.attribution import attribute_processes, pods_of_gpu
from mlinfra.collectors.gpu.dcgm import dcgm_samples
from mlinfra.samples import Sample

if TYPE_CHECKING:
    from mlinfra.config import Fleet
    from mlinfra.store import MetricsStore

log = logging.getLogger(__name__)

__all__ = ["finish_gpu_samples", "xid_counters"]

# Series that keep their value from sweep to sweep on a node whose GPU collector ran.
_CARRIED = ("ml_gpu_xid_errors_total", "ml_gpu_xid_last_code")
_XID_KEY_LABELS = ("host", "gpu_id", "uuid")


def xid_counters(
    store: MetricsStore, ts: float | datetime, samples: Sequence[Sample], *, lookback: float
) -> list[Sample]:
    """``ml_gpu_xid_errors_total`` and ``ml_gpu_xid_last_code`` for this sweep.

    Previous values are each series' last sample before ``ts`` within ``lookback``
    seconds, for the hosts whose GPU collector reported in this sweep.
    """
    from mlinfra.store import LabelMatcher
    from mlinfra.store_values import to_ms

    hosts = sorted({s.labels["host"] for s in samples if s.name == "ml_gpu_count" and "host" in s.labels})
    observed = [s for s in samples if s.name == "ml_gpu_xid_events_observed"]
    last_now = {_key(s): s for s in samples if s.name == "ml_gpu_xid_last_code"}
    if not hosts:
        return []
    at = to_ms(ts) / 1000.0
    host_matcher = [LabelMatcher("host", "=~", "|".join(_regex_escape(h) for h in hosts))]
    previous: dict[str, dict[tuple[tuple[str, str], ...], float]] = {name: {} for name in _CARRIED}
    for name in _CARRIED:
        for series, points in store.query_range(name, host_matcher, at - lookback, at, include_start=True):
            before = [v for t, v in points if t < at]
            if before:
                previous[name][tuple(sorted(series.labels.items()))] = before[-1]

    totals = dict(previous["ml_gpu_xid_errors_total"])
    for s in observed:
        key = tuple(sorted(s.labels.items()))
        totals[key] = totals.get(key, 0.0) + s.value
    out = [Sample("ml_gpu_xid_errors_total", dict(k), v) for k, v in sorted(totals.items())]
    last = {_key_of(dict(k)): (dict(k), v) for k, v in previous["ml_gpu_xid_last_code"].items()}
    for gpu_key, s in last_now.items():
        last[gpu_key] = (dict(s.labels), s.value)
    out += [Sample("ml_gpu_xid_last_code", labels, v) for labels, v in last.values()]
    if observed:
        log.warning("XID errors in this sweep: %s", [(dict(s.labels), s.value) for s in observed])
    return out


def _key(s: Sample) -> tuple[str, ...]:
    return _key_of(s.labels)


def _key_of(labels: Mapping[str, str]) -> tuple[str, ...]:
    return tuple(labels.get(k, "") for k in _XID_KEY_LABELS)


def _regex_escape(text: str) -> str:
    # RE2 syntax as the store's matchers use; host names carry '.' and '-'.
    return "".join("\\" + c if c in r".^$*+?()[]{}|\\" else c for c in text)


def finish_gpu_samples(
    store: MetricsStore, ts: float | datetime, samples: Sequence[Sample], fleet: Fleet
) -> list[Sample]:
    """The sweep's samples as they are stored: GPU processes attributed, XID counters, dcgm names."""
    out = [s for s in samples if s.name not in _CARRIED]
    if not any(s.name.startswith("ml_gpu_") for s in out):
        return list(samples)
    out = attribute_processes(out, fleet)
    out += xid_counters(store, ts, samples, lookback=fleet.store.retention)
    if fleet.gpu.metric_names == "dcgm":
        single = {key: next(iter(pods)) for key, pods in pods_of_gpu(out).items() if len(pods) == 1}
        out += dcgm_samples((s for s in out if s.name.startswith("ml_gpu_")), single)
    return out
