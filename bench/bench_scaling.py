"""Scaling: plan_scaling for 500 models against reading the same metrics from the store alone.

Data: 500 fleet models, each with a metric target over its own series
(``avg(ml_gpu_utilization_percent{model="model-i"})`` or a request rate), 2 GPUs per
model, one sample a minute for the last hour, in a SQLite store; 20 minutes of
recommendation history (a sweep every 5 minutes) and a few earlier scale events.

Timed side by side, alternating, after a warm-up, in one run:

* store alone: read every series those expressions name over the window they
  look at (``MetricsStore.query_range``), nothing else;
* plan: ``plan_scaling`` (metrics through the local engine, the history and the
  cooldown reads, 500 decisions, one transaction writing them), with an in-memory
  cluster (the Kubernetes reads are three list calls per namespace, a network cost
  measured apart in bench_sweep).

Also timed: the fleet engine's evaluation of the same expressions alone
(``evaluate_many``): the plan's own reading of those metrics. Target: engine / store
<= 1.5 (issue 16: the engine indexes series by label, so that reading 500 models'
metrics through it costs about a raw read). The whole plan / store is printed too, and
the plan without the engine: deciding 500 models and writing their 500 audit rows,
work the raw read does not do, so that both shares are visible.

    PYTHONPATH=. .venv/bin/python bench/bench_scaling.py [--models 500] [--rounds 7]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import yaml

from mlinfra.config import PROJECT_ROOT, Fleet, parse_fleet
from mlinfra.samples import Sample
from mlinfra.scaling.plan import plan_scaling
from mlinfra.scaling.records import ScaleRecords
from mlinfra.store import LabelMatcher, MetricsStore

AT = 1_800_000_000.0


def fleet(n: int) -> Fleet:
    base = yaml.safe_load((PROJECT_ROOT / "include" / "fleet.yaml").read_text())
    template = base["models"][1]
    models = []
    for i in range(n):
        m = yaml.safe_load(yaml.safe_dump(template))
        name = f"model-{i}"
        m["name"] = name
        m["kubernetes"]["deployment"] = name
        m["kubernetes"]["namespace"] = f"serving-{i % 5}"
        if i % 2:
            m["scaling"]["target"] = {
                "expr": f'avg(ml_gpu_utilization_percent{{model="{name}"}})',
                "value": 70,
            }
        else:
            m["scaling"]["target"] = {
                "expr": f'sum(rate(:tensorflow:serving:request_count{{model="{name}"}}[5m]))',
                "value": 50,
                "type": "average_value",
            }
        models.append(m)
    base["models"] = models
    return parse_fleet(yaml.safe_dump(base, sort_keys=False), source=PROJECT_ROOT / "include" / "fleet.yaml")


def load(store: MetricsStore, f: Fleet) -> None:
    samples = []
    for i, m in enumerate(f.models):
        for minute in range(60):
            t = AT - 3600 + 60 * minute + 30
            if i % 2:
                for gpu in range(2):
                    labels = {"model": m.name, "gpu_id": str(gpu), "host": f"node-{i // 4}"}
                    samples.append(
                        Sample("ml_gpu_utilization_percent", labels, 40.0 + (i * 7 + minute) % 60, t)
                    )
            else:
                labels = {"model": m.name, "model_name": m.name, "API": "predict", "entrypoint": "GRPC"}
                samples.append(
                    Sample(":tensorflow:serving:request_count", labels, 60.0 * minute * (i % 200), t)
                )
    store.write_samples(samples)


class Cluster:
    def __init__(self, f: Fleet):
        self.by_ns: dict[str, dict[str, int]] = {}
        for i, m in enumerate(f.models):
            self.by_ns.setdefault(m.kubernetes.namespace, {})[m.kubernetes.deployment] = 2 + i % 5

    def replicas(self, namespace: str) -> dict[str, int]:
        return dict(self.by_ns.get(namespace, {}))

    def owners(self, namespace: str) -> dict[str, str]:
        return {}


def store_alone(store: MetricsStore, f: Fleet) -> int:
    """The same series, over the windows the expressions look at (5m lookback / 5m range)."""
    n = 0
    for name in ("ml_gpu_utilization_percent", ":tensorflow:serving:request_count"):
        for _series, points in store.query_range(
            name, [LabelMatcher("model", "=~", "model-.*")], AT - 300, AT
        ):
            n += len(points)
    return n


def measure_plan(models: int, rounds: int = 7) -> dict[str, float]:
    """Medians (seconds) of the store alone, the engine alone and plan_scaling, side by side."""
    from mlinfra.rules.engines import engine_for_fleet, evaluate_many

    f = fleet(models)
    with tempfile.TemporaryDirectory() as tmp:
        store = MetricsStore.from_url(f"sqlite:///{Path(tmp) / 'store.db'}")
        load(store, f)
        cluster = Cluster(f)
        records = ScaleRecords(store)
        # History: four earlier sweeps, so the stabilization window has something to read.
        for k in range(4, 0, -1):
            plan_scaling(fleet=f, store=store, at=AT - 300 * k, cluster=lambda c: cluster, records=records)
        plan_scaling(fleet=f, store=store, at=AT, cluster=lambda c: cluster, records=records)  # warm-up
        store_alone(store, f)
        exprs = sorted({m.scaling.target.expr for m in f.models if m.scaling.target is not None})
        t_store, t_plan, t_engine = [], [], []
        decisions = points = 0
        for _ in range(rounds):
            t0 = time.perf_counter()
            points = store_alone(store, f)
            t_store.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            plan = plan_scaling(fleet=f, store=store, at=AT, cluster=lambda c: cluster, records=records)
            t_plan.append(time.perf_counter() - t0)
            decisions = len(plan["decisions"])
            engine = engine_for_fleet(f, store)  # a fresh engine per sweep, as the task has
            t0 = time.perf_counter()
            evaluate_many(engine, exprs, AT)
            t_engine.append(time.perf_counter() - t0)
        row_bytes = recommendation_bytes(store, f, cluster, records)
        store.engine.dispose()
    return {
        "models": models,
        "decisions": decisions,
        "points": points,
        "store": statistics.median(t_store),
        "plan": statistics.median(t_plan),
        "engine": statistics.median(t_engine),
        "row_bytes": row_bytes,
    }


def recommendation_bytes(store: MetricsStore, f: Fleet, cluster: Cluster, records: ScaleRecords) -> float:
    """Bytes the SQLite file grows by per stored recommendation, over 12 more sweeps (an hour)."""

    def used() -> int:
        with store.begin() as conn:
            pages = conn.exec_driver_sql("PRAGMA page_count").scalar_one()
            free = conn.exec_driver_sql("PRAGMA freelist_count").scalar_one()
            size = conn.exec_driver_sql("PRAGMA page_size").scalar_one()
        return int((pages - free) * size)

    before = used()
    sweeps = 12
    for k in range(1, sweeps + 1):
        plan_scaling(fleet=f, store=store, at=AT + 300 * k, cluster=lambda c: cluster, records=records)
    return (used() - before) / (sweeps * len(f.models))


def report(res: dict[str, float]) -> None:
    s, p, e = res["store"], res["plan"], res["engine"]
    print(
        f"models: {res['models']}, decisions per plan: {res['decisions']}, "
        f"points read by the store alone: {res['points']}"
    )
    print(
        f"store alone: median {s * 1000:.1f} ms   engine alone: {e * 1000:.1f} ms   "
        f"plan_scaling: {p * 1000:.1f} ms   plan without the engine: {(p - e) * 1000:.1f} ms"
    )
    print(f"ratio engine / store = {e / s:.2f} (target <= 1.5: the plan's metric reads, through the engine)")
    print(
        f"ratio plan / store = {p / s:.2f} (the whole task); (plan - engine) / store = {(p - e) / s:.2f} "
        "(deciding, the history reads and writing the decisions)"
    )
    print(f"store growth per recommendation (SQLite, 12 more sweeps): {res['row_bytes']:.0f} bytes")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    report(measure_plan(args.models, args.rounds))


if __name__ == "__main__":
    main()
