"""TF Serving's ``/monitoring/prometheus/metrics`` page as samples (the sweep's and the canary's).

Importing this module is cheap: prometheus_client's parser loads when a page is parsed.
"""

from __future__ import annotations

from typing import Any

from mlinfra.samples import Sample

__all__ = ["parse_monitoring_metrics"]


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
