"""mlinfra as an Airflow provider: its connection types and their forms in the Airflow UI.

``pyproject.toml`` registers :func:`get_provider_info` under the entry point group
``apache_airflow_provider``; Airflow's ``ProvidersManager`` reads it (without importing
the hooks) and the connection form offers **TensorFlow Serving**, **Prometheus** and
**Alertmanager** with their own fields, so nobody types extras as JSON by hand::

    $ airflow providers list          # ... mlinfra | 0.1.0 | ...
    $ airflow providers hooks         # tf_serving, prometheus, alertmanager

The fields are declared as data (``conn-fields`` and ``ui-field-behaviour``), as the
providers shipped with Airflow 3.3 do: the hooks' ``get_connection_form_widgets()``
and ``get_ui_field_behaviour()`` are deprecated there (Airflow 3.2) and would import
Flask forms into every process that lists providers. Each extra keeps the name the
hook reads (``rest_url``, ``timeout``, ``verify``...), so a connection saved from
the form works unchanged. The Pushgateway export has no hook of its own; its
connection stays of type ``http`` (the HTTP provider's form: host, port, schema).

This module imports nothing from Airflow or the hooks: the provider list is read by
the scheduler, the API server and the CLI at start-up.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["CONNECTION_TYPES", "field_behaviour", "get_provider_info"]

_STRING = {"type": ["string", "null"]}
_SECRET = {"type": ["string", "null"], "format": "password"}
_SECONDS = {"type": ["number", "null"]}
_VERIFY = {
    "label": "TLS verification",
    "description": "true (default), false, or the path of a CA bundle (PEM)",
    "schema": _STRING,
}
_PATH_PREFIX = {
    "label": "Path prefix",
    "description": "the server's --web.route-prefix, when it is served under a path",
    "schema": _STRING,
}
# The Prometheus and Alertmanager hooks' per-request timeout (seconds; their default is 10).
_HTTP_TIMEOUT = {"label": "Timeout (seconds)", "description": "per request; default 10", "schema": _SECONDS}

CONNECTION_TYPES: list[dict[str, Any]] = [
    {
        "hook-class-name": "mlinfra.hooks.tf_serving.TFServingHook",
        "hook-name": "TensorFlow Serving",
        "connection-type": "tf_serving",
        "conn-fields": {
            "rest_url": {
                "label": "REST URL",
                "description": "base URL of the REST API, e.g. http://half-plus-two.serving:8501",
                "schema": _STRING,
            },
            "timeout": {
                "label": "Timeout (seconds)",
                "description": "per call; default 10",
                "schema": _SECONDS,
            },
            "tls": {
                "label": "TLS",
                "description": "use TLS with the system's CA bundle (set by any of the PEM fields too)",
                "schema": {"type": ["boolean", "null"]},
            },
            "server_name": {
                "label": "TLS server name",
                "description": "the name the server's certificate is checked against (port-forwards)",
                "schema": _STRING,
            },
            "ca_cert": {
                "label": "CA certificate",
                "description": "PEM text or a file path",
                "schema": _STRING,
            },
            "client_cert": {
                "label": "Client certificate",
                "description": "PEM text or a file path (mutual TLS, with the key)",
                "schema": _STRING,
            },
            "client_key": {
                "label": "Client key",
                "description": "PEM text or a file path",
                "schema": _SECRET,
            },
        },
        "ui-field-behaviour": {
            "hidden-fields": ["schema", "login", "password"],
            "relabeling": {"host": "gRPC host", "port": "gRPC port"},
            "placeholders": {
                "host": "half-plus-two.serving.svc.cluster.local",
                "port": "8500",
                "extra": json.dumps(
                    {"rest_url": "http://half-plus-two.serving.svc.cluster.local:8501", "timeout": 10}
                ),
            },
        },
    },
    {
        "hook-class-name": "mlinfra.hooks.prometheus.PrometheusHook",
        "hook-name": "Prometheus",
        "connection-type": "prometheus",
        "conn-fields": {
            "timeout": _HTTP_TIMEOUT,
            "path_prefix": _PATH_PREFIX,
            "verify": _VERIFY,
        },
        "ui-field-behaviour": {
            "hidden-fields": [],
            "relabeling": {"schema": "Scheme (http/https)"},
            "placeholders": {
                "schema": "http",
                "host": "prometheus.monitoring.svc.cluster.local",
                "port": "9090",
                "extra": json.dumps({"timeout": 10, "path_prefix": ""}),
            },
        },
    },
    {
        "hook-class-name": "mlinfra.hooks.alertmanager.AlertmanagerHook",
        "hook-name": "Alertmanager",
        "connection-type": "alertmanager",
        "conn-fields": {
            "timeout": _HTTP_TIMEOUT,
            "path_prefix": _PATH_PREFIX,
            "verify": _VERIFY,
        },
        "ui-field-behaviour": {
            "hidden-fields": [],
            "relabeling": {"schema": "Scheme (http/https)"},
            "placeholders": {
                "schema": "http",
                "host": "alertmanager.monitoring.svc.cluster.local",
                "port": "9093",
            },
        },
    },
]


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mlinfra")
    except PackageNotFoundError:  # pragma: no cover - running from a checkout without install
        return "0.1.0"


def get_provider_info() -> dict[str, Any]:
    """What Airflow's ``ProvidersManager`` reads from the ``apache_airflow_provider`` entry point."""
    return {
        "package-name": "mlinfra",
        "name": "mlinfra",
        "description": "Operations for a fleet of TensorFlow Serving models on Kubernetes: "
        "TF Serving, Prometheus and Alertmanager connections, hooks, operators, sensors and triggers.",
        "versions": [_version()],
        "connection-types": [dict(c) for c in CONNECTION_TYPES],
    }


def field_behaviour(connection_type: str) -> dict[str, Any]:
    """The form's behaviour for ``connection_type`` in the hooks' (snake_case) format.

    The hooks' ``get_ui_field_behaviour()`` return this, so the declared data is the one source.
    """
    (entry,) = [c for c in CONNECTION_TYPES if c["connection-type"] == connection_type]
    ui = entry["ui-field-behaviour"]
    return {
        "hidden_fields": list(ui.get("hidden-fields", [])),
        "relabeling": dict(ui.get("relabeling", {})),
        "placeholders": dict(ui.get("placeholders", {})),
    }
