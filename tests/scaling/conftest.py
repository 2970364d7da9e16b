"""Fixtures of the scaling tests: a Kubernetes stand-in behind kubernetes_default, a store behind mlinfra_store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mlinfra.store import MetricsStore
from tests.scaling.environment import kube_connection, store_connection
from tests.support.k8s_standin import KubeStandIn


@pytest.fixture
def kube(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[KubeStandIn]:
    with kube_connection(tmp_path, monkeypatch) as standin:
        yield standin


@pytest.fixture
def store_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[MetricsStore]:
    with store_connection(tmp_path, monkeypatch) as store:
        yield store
