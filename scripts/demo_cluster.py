"""The simulated cluster of ``make demo``: a Kubernetes API and a TF Serving, both local stand-ins.

    .venv/bin/python scripts/demo_cluster.py --dir .demo      # serves until SIGTERM / Ctrl-C

What it starts (the stand-ins are the ones the test suite uses, speaking the real
wire protocols, reached by Airflow through the real client libraries):

* the Kubernetes API stand-in (``tests/support/k8s_standin.py``) with one Deployment
  per model of the fleet file, version 1 running;
* the TF Serving stand-in (``tests/support/tf_serving_standin.py``) serving
  ``half_plus_two`` (a real SavedModel, built once with TensorFlow into
  ``<dir>/models/half_plus_two``);
* linked the way a cluster links them (tests/support/serving_runtime.py): every pod of
  ``half-plus-two`` is a TF Serving server reading the model config its own ConfigMap
  projects, behind the Service; versions 1-5 exist in the model store (``/models`` is
  ``<dir>/models``), version 6 and up are missing artifacts; the cluster's registry holds
  the ``tensorflow/serving`` release tags and refuses ``does-not-exist``
  (``ErrImagePull``): try it to watch a deploy roll back.

It seeds the metrics store (``<dir>/store.db``) with two whole days (and today so
far) of simulated sweeps, once, so the fleet page has charts from the first minute, then writes
``<dir>/env.sh``: the ``AIRFLOW_CONN_*`` variables pointing Airflow at all of it.
``resnet50-classifier`` gets a Deployment but no TF Serving (the demo serves one
model): its serving connection stays undefined, so the sweep reports it skipped.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import shlex
import shutil
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "scripts" / "demo_nvml")]

log = logging.getLogger("mlinfra.demo")

SERVED_MODEL = "half-plus-two"
# Whole UTC days before today, so that complete daily reports exist from the first start.
HISTORY_DAYS = 2
STEP_S = 300


DEMO_VERSIONS = (1, 2, 3, 4, 5)  # versions of half_plus_two the demo's model store holds


def seed_deployments(kube: Any, fleet: Any, kubeconfig: Path) -> None:
    """The served model as a first deploy leaves it (mlinfra's own manifests, version 1, pods
    run by the TF Serving stand-in); every other model a Deployment with nothing serving."""
    from kubernetes.config import new_client_from_config

    from mlinfra.deploy.kube import ManifestClient, apply_objects
    from mlinfra.deploy.manifests import manifest_values, render_manifests
    from mlinfra.deploy.params import validate_request

    client = ManifestClient(new_client_from_config(config_file=str(kubeconfig)))
    for model in fleet.models:
        k = model.kubernetes
        replicas = max(model.scaling.min_replicas, 1)
        if model.name == SERVED_MODEL:
            request = validate_request({"model": model.name, "version": 1, "image_tag": "2.14.1"}, fleet)
            values = manifest_values(model, request, run_id="demo-seed", replicas=replicas)
            apply_objects(client, render_manifests(values).objects, {})
        else:
            kube.add_deployment(
                k.namespace,
                k.deployment,
                replicas=replicas,
                image=f"{model.image.repository}:2.14.1",
                labels={"model": model.name, "version": "1"},
            )
        log.info("seeded Deployment %s/%s", k.namespace, k.deployment)


def model_store(base_path: Path) -> None:
    """Versions 1-5 of half_plus_two (copies of version 1): version 6 and up are missing artifacts."""
    for version in DEMO_VERSIONS[1:]:
        target = base_path / str(version)
        if not target.exists():
            tmp = base_path / f".copy-{version}"
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.copytree(base_path / "1", tmp)
            tmp.rename(target)


def _wave(t: float, period: float, phase: float = 0.0) -> float:
    return 0.5 + 0.5 * math.sin(2 * math.pi * (t / period + phase))


def simulated_fleet_samples(fleet: Any, t: float, counters: dict[Any, float], host: str) -> list[Any]:
    """What a sweep of the simulated cluster reads at ``t`` besides the GPUs.

    Deployments at their minimum replicas, half-plus-two answering a daily wave of
    traffic (TF Serving's request counter and latency histogram, counted up in
    ``counters`` between calls), and a quiet host. Labels as the real collectors write
    them, so the reports and the fleet page read them like any other sweep.
    """
    from mlinfra.samples import Sample

    out = []
    for model in fleet.models:
        k = model.kubernetes
        where = {"namespace": k.namespace, "deployment": k.deployment}
        replicas = float(max(model.scaling.min_replicas, 1))
        out += [
            Sample("kube_deployment_spec_replicas", where, replicas),
            Sample("kube_deployment_status_replicas", where, replicas),
            Sample("kube_deployment_status_replicas_available", where, replicas),
            Sample("kube_deployment_status_replicas_ready", where, replicas),
        ]
    served = fleet.model(SERVED_MODEL)
    labels = {"model": served.name, "model_name": served.serving.model_name}
    requests = STEP_S * (2.0 + 6.0 * _wave(t, 86400, -0.25))  # 2-8 predictions a second, peak mid-day
    errors = float(int(requests * 0.0005))
    for status, n in (("OK", requests - errors), ("INVALID_ARGUMENT", errors)):
        counters[status] = counters.get(status, 0.0) + n
        out.append(
            Sample(":tensorflow:serving:request_count", {**labels, "status": status}, counters[status])
        )
    # Latency: log-normal around 1.5 ms, in TF Serving's own buckets (Exponential(10us, 1.8, 33),
    # le printed as the TF Serving stand-in prints it), so the live sweeps continue these series.
    for i in range(34):
        bound = 10.0 * 1.8**i if i < 33 else math.inf
        share = 1.0 if i == 33 else 0.5 * (1 + math.erf(math.log(bound / 1500.0) / (0.6 * math.sqrt(2))))
        counters[i] = counters.get(i, 0.0) + share * requests
        le = "+Inf" if i == 33 else f"{bound:.10g}"
        bucket = {**labels, "API": "predict", "entrypoint": "GRPC", "le": le}
        out.append(Sample(":tensorflow:serving:request_latency_bucket", bucket, counters[i]))
    out.append(Sample("mlinfra_serving_up", {"model": served.name}, 1.0))
    busy = 6.0 + 10.0 * _wave(t, 86400, -0.25)
    out += [
        Sample("ml_cpu_usage_percent", {"host": host, "core": "all"}, round(busy, 2)),
        Sample("ml_memory_usage_percent", {"host": host}, round(41.0 + 4.0 * _wave(t, 43200), 2)),
        Sample("ml_memory_usage_bytes", {"host": host, "type": "used"}, float(int(64 * 2**30 * 0.43))),
        Sample("ml_memory_usage_bytes", {"host": host, "type": "total"}, float(64 * 2**30)),
    ]
    return out


def seed_history(store_path: Path, fleet: Any, now: float) -> int:
    """Simulated sweeps from midnight UTC ``HISTORY_DAYS`` days ago until ``now``, once (an empty store only).

    Two whole days give two complete daily reports at once (``metrics_report`` ->
    backfill, or ``mlinfra report --day <date>``); the part of today gives the fleet
    page its charts and ``mlinfra report --day today`` something to read.
    """
    import pynvml as demo_nvml  # the demo's simulated NVML (scripts/demo_nvml)

    from mlinfra.collectors.gpu import collect_gpu_samples
    from mlinfra.store import MetricsStore

    store = MetricsStore.from_url(f"sqlite:///{store_path}")
    if store.sweeps(0, now + 86400):
        return 0
    host = socket.gethostname()
    first = (now - now % 86400) - HISTORY_DAYS * 86400
    counters: dict[Any, float] = {}
    written = 0
    t = first
    while t < now - STEP_S:
        demo_nvml._nvml.gpus = demo_nvml.fake_gpus(t)
        samples = collect_gpu_samples(demo_nvml._nvml, host=host) + simulated_fleet_samples(
            fleet, t, counters, host
        )
        store.write_sweep(t, samples, summary={"demo_seed": True})
        written += 1
        t += STEP_S
    store.engine.dispose()
    return written


def write_env(path: Path, env: dict[str, str]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items()))
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dir", type=Path, default=ROOT / ".demo", help="state folder (default .demo)")
    parser.add_argument(
        "--fleet", type=Path, default=None, help="fleet file (default: MLINFRA_FLEET_FILE or include/)"
    )
    parser.add_argument("--no-history", action="store_true", help="do not seed simulated history")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s demo-cluster %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per probe otherwise

    from mlinfra.config import load_fleet
    from tests.support.k8s_standin import KubeStandIn
    from tests.support.serving_runtime import TFServingRuntime
    from tests.support.tf_serving_standin import start_tf_serving_standin

    demo = args.dir.resolve()
    demo.mkdir(parents=True, exist_ok=True)
    env_file = demo / "env.sh"
    env_file.unlink(missing_ok=True)
    fleet = load_fleet(args.fleet)
    served = fleet.model(SERVED_MODEL)
    store_path = demo / "store.db"

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())

    # A node ten times faster than a real one: the kubelet's ConfigMap sync and TF Serving's
    # config poll take 6 s instead of a minute, back-offs 1 s instead of 10 s.
    kube = KubeStandIn(time_scale=0.1).start()
    try:
        kubeconfig = kube.write_kubeconfig(demo / "kubeconfig")
        base = demo / "models" / served.serving.model_name
        log.info("starting TF Serving stand-in for %s (the first start builds the SavedModel)", served.name)
        with start_tf_serving_standin(
            base,
            model_name=served.serving.model_name,
            build_versions=(1,),
            extra_args=[
                "--versions",
                "1",
                "--poll-seconds",
                "0.5",
                "--path-map",
                f"/models={demo / 'models'}",
            ],
            log_dir=demo,
        ) as serving:
            # Its own session: demo.sh stops the groups listed here too, in case this
            # process is killed before its own clean-up stops the stand-in.
            with open(demo / "pgids", "a") as pgids:
                pgids.write(f"{serving.process.pid}\n")
            model_store(base)
            runtime = TFServingRuntime(
                serving, namespace=served.kubernetes.namespace, service=served.kubernetes.deployment
            )
            runtime.reset()
            kube.attach_runtime(runtime)
            seed_deployments(kube, fleet, kubeconfig)
            if not args.no_history:
                log.info("seeded %d simulated sweeps", seed_history(store_path, fleet, time.time()))
            k8s_var, k8s_conn = kube.airflow_connection_env(
                served.kubernetes.conn_id, kubeconfig_path=kubeconfig
            )
            tfs_var, tfs_conn = serving.connection_env(served.serving.conn_id)
            write_env(
                env_file,
                {
                    k8s_var: k8s_conn,
                    tfs_var: tfs_conn,
                    "AIRFLOW_CONN_MLINFRA_STORE": json.dumps(
                        {"conn_type": "sqlite", "host": str(store_path)}
                    ),
                    "MLINFRA_DEMO_K8S_URL": kube.url,
                    "MLINFRA_DEMO_TF_SERVING_REST": serving.rest_url,
                },
            )
            log.info("simulated cluster ready: Kubernetes API %s, TF Serving %s", kube.url, serving.rest_url)
            while not stop.wait(1.0):
                if serving.process.poll() is not None:
                    log.error("TF Serving stand-in exited:\n%s", serving.log_tail())
                    return 1
    finally:
        env_file.unlink(missing_ok=True)
        kube.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
