"""Fixtures of the deploy tests: the project's fleet and a client of the stand-in (``kube`` is in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.environment import DeployEnv, deploy_env, ensure_version
from tests.support.k8s_standin import KubeStandIn
from tests.support.tf_serving_standin import StandinProcess


@pytest.fixture
def fleet() -> Any:
    from mlinfra.config import load_fleet

    return load_fleet(Path(__file__).resolve().parents[2] / "include" / "fleet.yaml")


@pytest.fixture
def client(kube: KubeStandIn) -> Any:
    from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook

    from mlinfra.deploy.kube import ManifestClient

    return ManifestClient(KubernetesHook(conn_id="kubernetes_default").api_client)


@pytest.fixture
def env(deploy_serving: tuple[StandinProcess, Path], tmp_path: Path) -> Iterator[DeployEnv]:
    """A fresh Kubernetes stand-in whose pods the shared TF Serving stand-in runs, faults off,
    versions 1 and 2 present, nothing deployed yet (integration tests only: it starts servers)."""
    server, base = deploy_serving
    server.clear_faults()
    ensure_version(base, 2)
    with deploy_env(tmp_path, server, base) as e:
        yield e
