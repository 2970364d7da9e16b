"""Stand-ins and stores behind the Airflow connections the code under test opens.

Connections come from ``AIRFLOW_CONN_*`` environment variables (Airflow's environment
secrets backend needs no metadata database), set through ``monkeypatch`` so they end
with the test. ``tests/conftest.py`` serves these as the ``kube`` and ``store_env``
fixtures; a test that needs them inside its own fixture or a ``with`` block calls them
directly.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlinfra.store import MetricsStore
from tests.support.k8s_standin import KubeStandIn


def kubeconfig_path(tmp_path: Path) -> Path:
    """The kubeconfig file :func:`kube_connection` writes for a test whose ``tmp_path`` this is."""
    return tmp_path / "kc"


@contextlib.contextmanager
def kube_connection(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[KubeStandIn]:
    """A started Kubernetes stand-in behind ``kubernetes_default`` (a kubeconfig file in ``tmp_path``)."""
    with KubeStandIn() as standin:
        kubeconfig = standin.write_kubeconfig(kubeconfig_path(tmp_path))
        monkeypatch.setenv(*standin.airflow_connection_env(kubeconfig_path=kubeconfig))
        yield standin


def store_connection_env(path: Path) -> tuple[str, str]:
    """``(name, value)`` of the environment variable that makes ``mlinfra_store`` the SQLite file ``path``."""
    return "AIRFLOW_CONN_MLINFRA_STORE", json.dumps({"conn_type": "sqlite", "host": str(path)})


@contextlib.contextmanager
def store_connection(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[MetricsStore]:
    """A SQLite store behind ``mlinfra_store`` (what operators and tasks open), and a handle on it."""
    path = tmp_path / "store.db"
    monkeypatch.setenv(*store_connection_env(path))
    store = MetricsStore.from_url(f"sqlite:///{path}")
    try:
        yield store
    finally:
        store.engine.dispose()
