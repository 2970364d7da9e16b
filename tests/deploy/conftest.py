"""Fixtures of the deploy tests: the project's fleet and a Kubernetes stand-in with a connection."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.k8s_standin import KubeStandIn


@pytest.fixture
def fleet() -> Any:
    from mlinfra.config import load_fleet

    return load_fleet(Path(__file__).resolve().parents[2] / "include" / "fleet.yaml")


@pytest.fixture
def kube(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[KubeStandIn]:
    """A started stand-in; ``kubernetes_default`` points at it."""
    with KubeStandIn() as standin:
        monkeypatch.setenv(
            *standin.airflow_connection_env(kubeconfig_path=standin.write_kubeconfig(tmp_path / "kc"))
        )
        yield standin


@pytest.fixture
def client(kube: KubeStandIn) -> Any:
    from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook

    from mlinfra.deploy.kube import ManifestClient

    return ManifestClient(KubernetesHook(conn_id="kubernetes_default").api_client)
