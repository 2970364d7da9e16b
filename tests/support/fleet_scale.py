"""A generated fleet of N models, for tests and benchmarks at fleet size.

Every model is a half_plus_two under its own name (``model_0042``), its own
Deployment (``fleet-model-0042`` in one of the ``fleet-NN`` namespaces, 50 models
each) and its own serving endpoint and Airflow connection
(``tf_serving_fleet_0042``). With one replica each, a sweep stores about 60 series
per model: 17 from Kubernetes (the Deployment and its pod), 8 from the status call
and ~38 from the endpoint's monitoring page (request counter, latency histogram,
load attempts).

Put together with the stand-ins::

    fleet = GeneratedFleet(500)
    path = fleet.write(tmp_path)                                    # fleet.yaml
    with start_serving_fleet(fleet.served_names) as serving:        # 500 endpoints, one process
        env = fleet.connection_env(serving)                        # AIRFLOW_CONN_TF_SERVING_FLEET_*
        seed_fleet(kube_standin, path)                              # 500 Deployments
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tests.support.serving_fleet import ServingFleetProcess

MODELS_PER_NAMESPACE = 50

MODEL_YAML = """
  - name: {name}
    kubernetes: {{conn_id: kubernetes_default, namespace: {namespace}, deployment: {name}}}
    serving:
      conn_id: {conn_id}
      model_name: {served}
      grpc_target: {name}.{namespace}.svc:8500
      rest_url: http://{name}.{namespace}.svc:8501
    image: {{repository: tensorflow/serving}}
    resources: {{cpu: "1", memory: 1Gi, gpus: 0}}
    smoke_file: smoke/half_plus_two.json
    slo: {{p99_latency_ms: 100, error_rate: 0.001}}
    scaling:
      min_replicas: 1
      max_replicas: 4
      target:
        expr: sum(rate(:tensorflow:serving:request_count{{model="{name}"}}[5m]))
        type: average_value
        value: 200
      scale_down_stabilization: 5m
      cooldown: 2m
"""


@dataclass(frozen=True)
class GeneratedFleet:
    """``size`` models; names, namespaces and connection ids derive from the index."""

    size: int

    def name(self, i: int) -> str:
        return f"fleet-model-{i:04d}"

    def served_name(self, i: int) -> str:
        return f"model_{i:04d}"

    def conn_id(self, i: int) -> str:
        return f"tf_serving_fleet_{i:04d}"

    def namespace(self, i: int) -> str:
        return f"fleet-{i // MODELS_PER_NAMESPACE:02d}"

    @property
    def names(self) -> list[str]:
        return [self.name(i) for i in range(self.size)]

    @property
    def served_names(self) -> list[str]:
        return [self.served_name(i) for i in range(self.size)]

    def yaml(self) -> str:
        models = "".join(
            MODEL_YAML.format(
                name=self.name(i),
                namespace=self.namespace(i),
                conn_id=self.conn_id(i),
                served=self.served_name(i),
            )
            for i in range(self.size)
        )
        return f"cost: {{currency: USD, gpu_hour: 2.48, cpu_hour: 0.034}}\nstore: {{retention: 30d}}\nmodels:{models}"

    def write(self, folder: Path) -> Path:
        """``folder/fleet.yaml`` (the smoke file it names is copied next to it)."""
        from tests.support.saved_model import PROJECT_ROOT

        smoke = folder / "smoke" / "half_plus_two.json"
        smoke.parent.mkdir(parents=True, exist_ok=True)
        smoke.write_text((PROJECT_ROOT / "include" / "smoke" / "half_plus_two.json").read_text())
        path = folder / "fleet.yaml"
        path.write_text(self.yaml())
        return path

    def connection_env(self, serving: ServingFleetProcess, *, timeout: float | None = None) -> dict[str, str]:
        """``AIRFLOW_CONN_*`` of every model's endpoint on the running ``serving`` stand-in."""
        return {
            f"AIRFLOW_CONN_{self.conn_id(i).upper()}": serving.connection(
                self.served_name(i), timeout=timeout
            )
            for i in range(self.size)
        }
