"""Fixtures of the deploy tests: the project's fleet and a client of the stand-in (``kube`` is in tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.support.k8s_standin import KubeStandIn


@pytest.fixture
def fleet() -> Any:
    from mlinfra.config import load_fleet

    return load_fleet(Path(__file__).resolve().parents[2] / "include" / "fleet.yaml")


@pytest.fixture
def client(kube: KubeStandIn) -> Any:
    from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook

    from mlinfra.deploy.kube import ManifestClient

    return ManifestClient(KubernetesHook(conn_id="kubernetes_default").api_client)
