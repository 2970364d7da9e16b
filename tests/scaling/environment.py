"""What the scaling tests share (also used by tests/operators and tests/triggers for the scale path)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlinfra.store import MetricsStore
from tests.support.k8s_standin import KubeStandIn


@contextlib.contextmanager
def kube_connection(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[KubeStandIn]:
    """A Kubernetes stand-in behind the Airflow connection kubernetes_default."""
    with KubeStandIn() as standin:
        kubeconfig = standin.write_kubeconfig(tmp_path / "kc")
        monkeypatch.setenv(*standin.airflow_connection_env(kubeconfig_path=kubeconfig))
        yield standin


@contextlib.contextmanager
def store_connection(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[MetricsStore]:
    """A SQLite store behind AIRFLOW_CONN_MLINFRA_STORE (what operators and tasks open)."""
    path = tmp_path / "store.db"
    monkeypatch.setenv("AIRFLOW_CONN_MLINFRA_STORE", json.dumps({"conn_type": "sqlite", "host": str(path)}))
    store = MetricsStore.from_url(f"sqlite:///{path}")
    try:
        yield store
    finally:
        store.engine.dispose()
