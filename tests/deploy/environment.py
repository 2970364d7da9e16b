"""A deploy environment for tests: the Kubernetes stand-in, a TF Serving stand-in, a store.

The two stand-ins are linked the way a cluster links them (tests/support/serving_runtime.py):
each pod the kubelet starts is a TF Serving server of its own, reading the model config
file projected from the ConfigMap it mounts and re-reading it on its poll interval; its
readiness probe is answered by that server; the Service (the stand-in's ports) reaches
Ready pods only. Model versions are directories under ``/models/half_plus_two`` (a volume
mapped to a temporary folder), created by the test before a deploy: a version that is not
there is a missing artifact.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.connections import store_connection_env
from tests.support.k8s_standin import KubeStandIn
from tests.support.saved_model import PROJECT_ROOT, half_plus_two_base_path
from tests.support.serving_runtime import TFServingRuntime
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


def link(kube: KubeStandIn, serving: StandinProcess) -> TFServingRuntime:
    """Run the model's pods as servers of ``serving``, behind its Service (no pod: no answer)."""
    runtime = TFServingRuntime(serving, namespace=NAMESPACE, service=DEPLOYMENT)
    runtime.reset()
    runtime.http.post("/_standin/endpoints", json={"pods": []}).raise_for_status()
    kube.attach_runtime(runtime)
    return runtime


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
    runtime: TFServingRuntime | None = None

    def seed(self, *, version: int = 1, replicas: int = 1, image_tag: str = "2.14.1") -> None:
        """The model as it runs before a deploy: ``version`` on ``replicas`` Ready pods,
        applied from mlinfra's own manifests (as a first deploy would have left it)."""
        from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook

        from mlinfra.config import load_fleet
        from mlinfra.deploy.kube import ManifestClient, apply_objects
        from mlinfra.deploy.manifests import manifest_values, render_manifests
        from mlinfra.deploy.params import validate_request

        ensure_version(self.base_path, version)
        fleet = load_fleet(self.fleet_file)
        request = validate_request({"model": MODEL, "version": version, "image_tag": image_tag}, fleet)
        values = manifest_values(fleet.model(MODEL), request, run_id="seed", replicas=replicas)
        client = ManifestClient(KubernetesHook(conn_id="kubernetes_default").api_client)
        apply_objects(client, render_manifests(values).objects, {})
        self.wait_serving(version, replicas)
        self.kube.requests.clear()

    def wait_serving(self, version: int, replicas: int, timeout: float = 60) -> None:
        """Until ``replicas`` Ready pods serve ``version`` behind the Service."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pods = self.serving.pods()
            endpoints = pods["endpoints"] or []
            if len(endpoints) == replicas and all(
                pods["pods"].get(p, {}).get(str(version)) == "AVAILABLE" for p in endpoints
            ):
                return
            time.sleep(0.05)
        raise AssertionError(f"version {version} not served by {replicas} Ready pods: {self.serving.pods()}")

    def records(self) -> Any:
        from mlinfra.deploy.records import DeploymentRecords
        from mlinfra.store import MetricsStore

        return DeploymentRecords(MetricsStore.from_url(self.store_url))


@dataclass
class TrafficProbe:
    """A client sending predictions to the Service for as long as the block runs.

    Every request is latest-version (what an application sends); each result is kept, so
    a test can assert that not one request failed during a whole deploy.
    """

    serving: StandinProcess
    interval: float = 0.02
    results: list[tuple[float, str]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        import httpx

        with httpx.Client(base_url=self.serving.rest_url, timeout=5) as http:
            while not self._stop.wait(self.interval):
                try:
                    r = http.post("/v1/models/half_plus_two:predict", json={"instances": [1.0]})
                    outcome = "ok" if r.status_code == 200 else f"HTTP {r.status_code}: {r.text[:200]}"
                except httpx.HTTPError as e:
                    outcome = f"{type(e).__name__}: {e}"
                self.results.append((time.monotonic(), outcome))

    @property
    def failures(self) -> list[str]:
        return [o for _, o in self.results if o != "ok"]


@contextlib.contextmanager
def traffic(serving: StandinProcess) -> Iterator[TrafficProbe]:
    probe = TrafficProbe(serving)
    thread = threading.Thread(target=probe.run, daemon=True, name="traffic")
    thread.start()
    try:
        yield probe
    finally:
        probe._stop.set()
        thread.join(timeout=10)


@contextlib.contextmanager
def deploy_env(tmp: Path, serving: StandinProcess, base_path: Path, **fleet: Any) -> Iterator[DeployEnv]:
    """Environment variables and a fresh Kubernetes stand-in whose pods ``serving`` runs."""
    with KubeStandIn() as kube, pytest.MonkeyPatch.context() as mp:
        runtime = link(kube, serving)
        kubeconfig = kube.write_kubeconfig(tmp / "kubeconfig")
        fleet_file = write_test_fleet(tmp / "include", **fleet)
        store = tmp / "store.db"
        mp.setenv(*kube.airflow_connection_env(kubeconfig_path=kubeconfig))
        mp.setenv(*serving.connection_env("tf_serving_half_plus_two"))
        mp.setenv(*store_connection_env(store))
        mp.setenv("MLINFRA_FLEET_FILE", str(fleet_file))
        mp.setenv("MLINFRA_DEPLOY_ROLLOUT_TIMEOUT", "60s")
        mp.setenv("MLINFRA_DEPLOY_MODEL_TIMEOUT", "30s")
        mp.setenv("MLINFRA_DEPLOY_POLL_INTERVAL", "200ms")
        mp.setenv("MLINFRA_DEPLOY_PROGRESS_DEADLINE", "60s")
        mp.setenv("MLINFRA_DEPLOY_CONFIG_GC_MIN_AGE", "0s")
        # dag.test() in Airflow 3.3.2 cannot finish a successful run of a DAG with a
        # Deadline Alert: DagRun.update_state looks the DAG's deadline up by id, and the
        # un-serialized DAG dag.test() runs holds the alert itself ('dict' object has no
        # attribute 'hex'). The scheduler's path (tests/distributed) keeps the deadline on.
        mp.setenv("MLINFRA_DEPLOY_EXPECTED_DURATION", "off")
        try:
            yield DeployEnv(kube, serving, base_path, fleet_file, f"sqlite:///{store}", mp, runtime)
        finally:
            kube.stop()
            runtime.reset()


@contextlib.contextmanager
def serving_standin(tmp: Path) -> Iterator[tuple[StandinProcess, Path]]:
    """A TF Serving stand-in of its own whose pods read ``/models`` from a private folder.

    Version 1 of half_plus_two is there; tests add versions with :func:`ensure_version`.
    """
    base = copy_base_path(tmp / "models" / "half_plus_two")
    with start_tf_serving_standin(
        base,
        build_versions=None,
        extra_args=["--versions", "1", "--poll-seconds", "0.2", "--path-map", f"/models={tmp / 'models'}"],
        log_dir=tmp,
    ) as server:
        yield server, base
