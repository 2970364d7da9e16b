"""A deploy end to end: mlinfra's code path vs the same steps by hand with the raw clients.

Both sides deploy a new version of half_plus_two to the same Kubernetes stand-in whose
pods the TF Serving stand-in runs (tests/support/kubelet.py, serving_runtime.py), so the
rollout itself (pod start, readiness probes, the Service switching pods) costs both the
same; what differs is what mlinfra adds around it:

* ours: ``render_plan`` (templates, checks, Kubernetes schema validation, diff, the deploy
  record), the apply as ``ApplyManifestsOperator`` does it (snapshot, record, server-side
  apply), ``DeploymentRolloutTrigger`` and ``ModelVersionAvailableTrigger`` (their own
  polling loops), ``run_smoke`` through ``TFServingHook`` (gRPC and REST), and the
  ConfigMap collection;
* raw: the same three objects server-side applied with the ``kubernetes`` client, the
  Deployment's status polled at the same interval, TF Serving's REST status polled, and
  the same number of predictions sent with a raw gRPC stub and ``httpx``.

Rounds alternate which side goes first and which version is deployed; the ratio is the
median of paired ratios. Target: ours / raw <= 1.1.

    python -m bench.bench_deploy_e2e [--rounds 6] [--poll 0.2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

MODEL, NAMESPACE, DEPLOYMENT = "half-plus-two", "serving", "half-plus-two"


def first_event(trigger: Any) -> dict[str, Any]:
    async def run() -> dict[str, Any]:
        event = await anext(trigger.run())
        return dict(event.payload)

    return asyncio.run(run())


def ours(version: int, fleet: Any, records: Any, client: Any, poll: float) -> int:
    """mlinfra's steps; returns how many predictions the smoke test sent."""
    from mlinfra.deploy.kube import apply_objects, collect_config_maps, snapshot
    from mlinfra.deploy.params import validate_request
    from mlinfra.deploy.smoke import load_smoke_spec
    from mlinfra.deploy.smoke_run import run_smoke
    from mlinfra.deploy.steps import render_plan, validate_and_record
    from mlinfra.hooks.tf_serving import TFServingHook
    from mlinfra.triggers.model import ModelVersionAvailableTrigger
    from mlinfra.triggers.rollout import DeploymentRolloutTrigger

    run_id = f"bench-{version}-{time.monotonic_ns()}"
    conf = {"model": MODEL, "version": version, "image_tag": "2.14.1"}
    validate_request(conf, fleet)
    plan = validate_and_record(conf, fleet=fleet, records=records, run_id=run_id, triggered_by="bench")
    rendered = render_plan(plan, fleet=fleet, client=client, records=records)
    live = snapshot(client, rendered["objects"])
    records.update(run_id, previous=live)
    result = apply_objects(client, rendered["objects"], live, on_written=lambda changed: None)
    event = first_event(
        DeploymentRolloutTrigger(
            NAMESPACE,
            DEPLOYMENT,
            min_generation=result.generation,
            deadline=time.time() + 120,
            poll_interval=poll,
        )
    )
    if event["status"] != "success":
        raise SystemExit(f"ours: rollout failed: {event}")
    model = fleet.model(MODEL)
    event = first_event(
        ModelVersionAvailableTrigger(
            model.serving.conn_id,
            model.serving.model_name,
            version,
            deadline=time.time() + 60,
            poll_interval=poll,
        )
    )
    if event["status"] != "success":
        raise SystemExit(f"ours: model wait failed: {event}")
    spec = load_smoke_spec(fleet.include_path(model.smoke_file))
    with TFServingHook.for_model(model) as hook:
        report = run_smoke(hook, model.serving.model_name, version, spec, slo_p99_ms=model.slo.p99_latency_ms)
    if not report.passed:
        raise SystemExit(f"ours: smoke failed: {report.problems}")
    records.finish(run_id, "succeeded", smoke=report.to_dict())
    collect_config_maps(client, NAMESPACE, DEPLOYMENT, min_age=0)
    return sum(int(p["requests"]) for p in report.to_dict()["protocols"].values())


def raw(
    version: int, objects: list[dict[str, Any]], api: Any, serving: Any, predictions: int, poll: float
) -> None:
    """The same steps with the raw clients (objects rendered beforehand)."""
    import grpc
    import httpx
    from kubernetes import client

    from mlinfra.hooks.tf_serving_protos import load_protos, make_tensor_proto

    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    for obj in objects:
        call = {
            "ConfigMap": core.patch_namespaced_config_map,
            "Service": core.patch_namespaced_service,
            "Deployment": apps.patch_namespaced_deployment,
        }[obj["kind"]]
        call(
            obj["metadata"]["name"],
            NAMESPACE,
            obj,
            field_manager="raw",
            force=True,
            _content_type="application/apply-patch+yaml",
        )
    while True:
        dep = apps.read_namespaced_deployment(DEPLOYMENT, NAMESPACE)
        s = dep.status
        want = dep.spec.replicas
        if (
            s.observed_generation == dep.metadata.generation
            and s.updated_replicas == want
            and s.available_replicas == want
            and s.replicas == want
        ):
            break
        time.sleep(poll)
    with httpx.Client(base_url=serving.rest_url, timeout=10) as http:
        while True:
            r = http.get(f"/v1/models/half_plus_two/versions/{version}")
            if r.status_code == 200 and r.json()["model_version_status"][0]["state"] == "AVAILABLE":
                break
            time.sleep(poll)
        protos = load_protos()
        with grpc.insecure_channel(serving.grpc_target) as channel:
            stub = protos.prediction_service_pb2_grpc.PredictionServiceStub(channel)
            request = protos.predict_pb2.PredictRequest()
            request.model_spec.name = "half_plus_two"
            request.model_spec.version.value = version
            request.inputs["x"].CopyFrom(make_tensor_proto([1.0, 2.0, 5.0], "float32"))
            for i in range(predictions):
                if i % 2:
                    stub.Predict(request, timeout=10)
                else:
                    http.post(
                        f"/v1/models/half_plus_two/versions/{version}:predict",
                        json={"instances": [1.0, 2.0, 5.0]},
                    ).raise_for_status()


def main(argv: list[str] | None = None) -> int:
    import os

    from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook

    from mlinfra.config import load_fleet
    from mlinfra.deploy.kube import ManifestClient
    from mlinfra.deploy.manifests import manifest_values, render_manifests
    from mlinfra.deploy.params import validate_request
    from mlinfra.deploy.records import DeploymentRecords
    from mlinfra.store import MetricsStore
    from tests.deploy.environment import ensure_version, serving_standin, write_test_fleet
    from tests.support.k8s_standin import KubeStandIn
    from tests.support.serving_runtime import TFServingRuntime

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--poll", type=float, default=0.2, help="both sides' polling interval (s)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        with serving_standin(tmp) as (serving, base), KubeStandIn() as kube:
            for v in range(1, 2 * args.rounds + 3):
                ensure_version(base, v)
            runtime = TFServingRuntime(serving, namespace=NAMESPACE, service=DEPLOYMENT)
            runtime.reset()
            kube.attach_runtime(runtime)
            os.environ.update(
                dict(
                    [
                        kube.airflow_connection_env(kubeconfig_path=kube.write_kubeconfig(tmp / "kc")),
                        serving.connection_env("tf_serving_half_plus_two"),
                    ]
                )
            )
            os.environ["AIRFLOW_CONN_MLINFRA_STORE"] = json.dumps(
                {"conn_type": "sqlite", "host": str(tmp / "s.db")}
            )
            fleet = load_fleet(write_test_fleet(tmp / "include"))
            records = DeploymentRecords(MetricsStore.from_url(f"sqlite:///{tmp / 's.db'}"))
            api = KubernetesHook(conn_id="kubernetes_default").api_client
            client = ManifestClient(api)

            def render(version: int) -> list[dict[str, Any]]:
                request = validate_request({"model": MODEL, "version": version, "image_tag": "2.14.1"}, fleet)
                values = manifest_values(fleet.model(MODEL), request, run_id=f"raw-{version}", replicas=1)
                return render_manifests(values).objects

            ours(1, fleet, records, client, args.poll)  # first deploy + warm-up (imports, channels)
            predictions = ours(2, fleet, records, client, args.poll)
            a, b, ratios = [], [], []
            version = 3
            for i in range(args.rounds):
                times = {}
                for side in ("ours", "raw") if i % 2 == 0 else ("raw", "ours"):
                    start = time.perf_counter()
                    if side == "ours":
                        ours(version, fleet, records, client, args.poll)
                    else:
                        raw(version, render(version), api, serving, predictions, args.poll)
                    times[side] = time.perf_counter() - start
                    version += 1
                a.append(times["ours"])
                b.append(times["raw"])
                ratios.append(times["ours"] / times["raw"])
            ratio = statistics.median(ratios)
            print(
                f"deploy end to end: ours {statistics.median(a):.2f} s, raw clients {statistics.median(b):.2f} s, "
                f"ratio {ratio:.3f} (median of {args.rounds} paired rounds, {predictions} predictions each; "
                f"target <= 1.1) {'OK' if ratio <= 1.1 else 'ABOVE TARGET'}"
            )
    return 0 if ratio <= 1.1 else 1


if __name__ == "__main__":
    raise SystemExit(main())
