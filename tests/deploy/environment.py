"""A deploy environment for tests: the Kubernetes stand-in, a TF Serving stand-in, a store.

The two stand-ins are linked the way a cluster links them: when the first pod of a
new pod template is ready (:meth:`KubeStandIn.on_rollout`), TF Serving is told to
serve the version that template's ``version`` label names (a model config reload);
the version's directory is created from version 1 of ``half_plus_two`` first.
A template whose image cannot be pulled never gets a ready pod, so TF Serving keeps
serving the old version, as it would.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.k8s_standin import KubeStandIn
from tests.support.saved_model import PROJECT_ROOT, half_plus_two_base_path
from tests.support.tf_serving_standin import StandinProcess, start_tf_serving_standin

MODEL = "half-plus-two"
NAMESPACE = "serving"
DEPLOYMENT = "half-plus-two"


def copy_base_path(target: Path) -> Path:
    """A private model base path with version 1 of half_plus_two (from the session's cache)."""
    source = half_plus_two_base_path() / "1"
    if not source.is_dir():
        raise RuntimeError(f"{source} is not built; depend on the tf_serving_standin fixture first")
    target.mkdir(parents=True, exist_ok=True)
    if not (target / "1").exists():
        shutil.copytree(source, target / "1")
    return target


def ensure_version(base_path: Path, version: int) -> None:
    if not (base_path / str(version)).exists():
        tmp = base_path / f".copy-{version}"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(base_path / "1", tmp)
        tmp.rename(base_path / str(version))


def link(kube: KubeStandIn, serving: StandinProcess, base_path: Path) -> None:
    """Serve the version a Deployment's new pods run, once they are ready."""

    def on_rollout(deployment: dict[str, Any]) -> None:
        version = deployment["spec"]["template"]["metadata"]["labels"].get("version")
        if version and version.isdigit():
            ensure_version(base_path, int(version))
            serving.set_versions([int(version)])

    kube.on_rollout(on_rollout)


def write_test_fleet(directory: Path, *, p99_ms: float = 5000, repetitions: int = 5) -> Path:
    """The project's fleet with a generous SLO (the test machine is shared) and a short smoke file."""
    fleet = yaml.safe_load((PROJECT_ROOT / "include" / "fleet.yaml").read_text())
    for model in fleet["models"]:
        model["slo"]["p99_latency_ms"] = p99_ms
    smoke = json.loads((PROJECT_ROOT / "include" / "smoke" / "half_plus_two.json").read_text())
    smoke["repetitions"] = repetitions
    (directory / "smoke").mkdir(parents=True, exist_ok=True)
    (directory / "smoke" / "half_plus_two.json").write_text(json.dumps(smoke))
    shutil.copy(PROJECT_ROOT / "include" / "smoke" / "resnet50_classifier.json", directory / "smoke")
    path = directory / "fleet.yaml"
    path.write_text(yaml.safe_dump(fleet, sort_keys=False))
    return path


@dataclass
class DeployEnv:
    kube: KubeStandIn
    serving: StandinProcess
    base_path: Path
    fleet_file: Path
    store_url: str
    monkeypatch: pytest.MonkeyPatch

    def seed(self, *, version: int = 1, replicas: int = 1, image: str = "tensorflow/serving:2.14.1") -> None:
        """The model as it runs before a deploy: version ``version`` on ``replicas`` pods."""
        self.kube.add_deployment(
            NAMESPACE,
            DEPLOYMENT,
            replicas=replicas,
            image=image,
            labels={"model": MODEL, "version": str(version)},
        )

    def records(self) -> Any:
        from mlinfra.deploy.records import DeploymentRecords
        from mlinfra.store import MetricsStore

        return DeploymentRecords(MetricsStore.from_url(self.store_url))


@contextlib.contextmanager
def deploy_env(tmp: Path, serving: StandinProcess, base_path: Path, **fleet: Any) -> Iterator[DeployEnv]:
    """Environment variables and a fresh Kubernetes stand-in linked to ``serving``."""
    with KubeStandIn() as kube, pytest.MonkeyPatch.context() as mp:
        link(kube, serving, base_path)
        kubeconfig = kube.write_kubeconfig(tmp / "kubeconfig")
        fleet_file = write_test_fleet(tmp / "include", **fleet)
        store = tmp / "store.db"
        mp.setenv(*kube.airflow_connection_env(kubeconfig_path=kubeconfig))
        mp.setenv(*serving.connection_env("tf_serving_half_plus_two"))
        mp.setenv("AIRFLOW_CONN_MLINFRA_STORE", json.dumps({"conn_type": "sqlite", "host": str(store)}))
        mp.setenv("MLINFRA_FLEET_FILE", str(fleet_file))
        mp.setenv("MLINFRA_DEPLOY_ROLLOUT_TIMEOUT", "60s")
        mp.setenv("MLINFRA_DEPLOY_MODEL_TIMEOUT", "30s")
        mp.setenv("MLINFRA_DEPLOY_POLL_INTERVAL", "200ms")
        mp.setenv("MLINFRA_DEPLOY_PROGRESS_DEADLINE", "60s")
        yield DeployEnv(kube, serving, base_path, fleet_file, f"sqlite:///{store}", mp)


@contextlib.contextmanager
def serving_standin(tmp: Path) -> Iterator[tuple[StandinProcess, Path]]:
    """A TF Serving stand-in of its own (versions change), serving version 1 of half_plus_two."""
    base = copy_base_path(tmp / "models" / "half_plus_two")
    with start_tf_serving_standin(
        base, build_versions=None, extra_args=["--versions", "1", "--poll-seconds", "0.2"], log_dir=tmp
    ) as server:
        yield server, base
