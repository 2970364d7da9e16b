"""Every cell of the fault matrix (tests/faults/matrix.py), against the real components.

For each cell: the step runs against a dependency behind a fault injector, and the
test checks

1. the step's outcome and message (``ok`` / ``degraded`` / ``fails``);
2. that the store rows the step does not own are exactly as before;
3. that the rest of the run still completes (the next step of the DAG runs);
4. that running the step again once the dependency is healthy (Airflow's retry)
   leaves the store exactly as an undisturbed run does.

Timeouts are shortened through the connections' own ``timeout`` extras (and the
store's ``MLINFRA_STORE_BUSY_TIMEOUT``), so a cell waits seconds.
"""

from __future__ import annotations

import asyncio
import json
import re
import textwrap
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from mlinfra.config import Fleet, RuleSettings, load_fleet
from mlinfra.samples import Sample
from mlinfra.store import MetricsStore, metadata
from tests.faults.matrix import CELLS, Cell
from tests.faults.servers import HEALTHY, FaultyGRPC, FaultyHTTP, free_port, sqlite_write_lock

pytestmark = pytest.mark.integration

TS = 1_800_000_000.0
RUN = "scheduled__2027-01-15T08:00:00+00:00"
STEP_TIMEOUT = 1.0  # seconds, every client's timeout in these tests
# The TF Serving stand-in runs a real model in another process: on a loaded machine an
# answer can take more than a second, and a healthy retry must not time out.
SERVING_TIMEOUT = 3.0


# ---------------------------------------------------------------------- the store before and after


def seed(store: MetricsStore) -> None:
    """What earlier runs left: a sweep five minutes ago, and this run's staged collectors."""
    store.write_sweep(
        TS - 300,
        [
            Sample("ml_cpu_usage_percent", {"core": "all", "host": "a"}, 42.0),
            Sample("ml_gpu_utilization_percent", {"gpu_id": "0", "host": "a"}, 55.0),
            Sample(":tensorflow:serving:request_count", {"model": "half-plus-two"}, 100.0),
        ],
        run_id="earlier",
    )
    store.stage(RUN, "host", TS, [Sample("ml_cpu_usage_percent", {"core": "all", "host": "a"}, 91.0)])
    store.stage(RUN, "gpu", TS, [Sample("ml_gpu_utilization_percent", {"gpu_id": "0", "host": "a"}, 97.0)])


SUMMARIES: list[dict[str, Any]] = [
    {"collector": "host", "up": True, "samples": 1, "errors": [], "skipped": []},
    {"collector": "gpu", "up": True, "samples": 1, "errors": [], "skipped": []},
]


def snapshot(
    store: MetricsStore, *, without: tuple[str, ...] = (), only: tuple[str, ...] | None = None
) -> dict[str, list[Any]]:
    """Every table's rows, minus wall-clock columns and surrogate ids; samples keyed by series."""
    store.create_schema()
    out: dict[str, list[Any]] = {}
    with store.engine.connect() as conn:
        series = {
            sid: (name, labels)
            for sid, name, labels in conn.execute(sa.text("SELECT id, name, labels FROM mlinfra_series"))
        }
        for table in metadata.sorted_tables:
            if table.name in without or (only is not None and table.name not in only):
                continue
            cols = [
                c
                for c in table.columns
                if not isinstance(c.type, sa.DateTime)
                and not (c.primary_key and c.autoincrement is True and c.name == "id")
            ]
            rows = []
            for row in conn.execute(sa.select(*cols)):
                values = dict(zip([c.name for c in cols], row, strict=True))
                if table.name == "mlinfra_samples":
                    values["series_id"] = series.get(values["series_id"])
                    if _wall_clock(values["series_id"][0] if values["series_id"] else ""):
                        values["value"] = None
                if table.name == "mlinfra_staging":
                    values["payload"] = [
                        [name, labels, None if _wall_clock(name) else v, t]
                        for name, labels, v, t in json.loads(values["payload"])
                    ]
                if table.name == "mlinfra_series":
                    values.pop("id", None)
                rows.append(values)
            out[table.name] = sorted(rows, key=repr)
    return out


def _wall_clock(metric: str) -> bool:
    """Metrics that measure how long something took: they differ between any two runs."""
    return metric.endswith(("_duration_seconds", "_latency_seconds"))


SWEEP_TABLES = ("mlinfra_samples", "mlinfra_series", "mlinfra_sweeps", "mlinfra_staging")
RULE_TABLES = (
    "mlinfra_alerts",
    "mlinfra_alert_transitions",
    "mlinfra_alert_explanations",
    "mlinfra_rule_group_evaluations",
    "mlinfra_samples",
    "mlinfra_series",
)
SCALE_TABLES = ("mlinfra_scale_recommendations", "mlinfra_scale_policies")


# ---------------------------------------------------------------------- steps as the DAG runs them

RULES = """
groups:
  - name: faults
    rules:
      - alert: HostHot
        expr: ml_cpu_usage_percent > 80
        labels:
          model: half-plus-two
          mlinfra_scale: up
        annotations:
          summary: "{{ $labels.host }} at {{ $value }}%"
"""


def rules_dir(tmp_path: Path) -> Path:
    d = tmp_path / "rules"
    d.mkdir(exist_ok=True)
    (d / "faults.yaml").write_text(textwrap.dedent(RULES))
    return d


def write_sweep_step(
    store: MetricsStore, fleet: Fleet, expected: tuple[str, ...] = ("gpu", "host")
) -> dict[str, Any]:
    from mlinfra.sweep import write_sweep

    return write_sweep(
        store=store,
        run_id=RUN,
        ts=TS,
        summaries=list(SUMMARIES),
        fleet=fleet,
        expected=expected,
        now=lambda: TS + 30,
    )


def evaluate_step(store: MetricsStore, fleet: Fleet, rules: Path, **kw: Any) -> dict[str, Any]:
    from mlinfra.rules.evaluate import evaluate_rules_for_sweep

    return evaluate_rules_for_sweep(
        store=store, fleet=fleet, at=TS, run_id=RUN, rules_dir=rules, now=lambda: TS + 30, **kw
    )


class StaticCluster:
    """The cluster as plan_scaling reads it, for cells where Kubernetes is not the dependency."""

    def replicas(self, namespace: str) -> dict[str, int]:
        return {"half-plus-two": 2, "resnet50-classifier": 2}

    def owners(self, namespace: str) -> dict[str, str]:
        return {}


def plan_step(
    store: MetricsStore, fleet: Fleet, *, alerts: list[dict[str, Any]] = (), cluster: Any = None
) -> dict[str, Any]:  # type: ignore[assignment]
    from mlinfra.scaling.plan import plan_scaling

    reader = cluster or StaticCluster()
    return plan_scaling(
        fleet=fleet, store=store, at=TS, run_id=RUN, alerts=list(alerts), cluster=lambda _c: reader
    )


# ---------------------------------------------------------------------- outcomes


@dataclass
class Outcome:
    kind: str
    message: str
    result: Any = None


def run_capturing(step: Callable[[], Any], classify: Callable[[Any], Outcome]) -> Outcome:
    from mlinfra.exceptions import MlinfraError

    try:
        result = step()
    except MlinfraError as e:
        return Outcome("fails", f"{type(e).__name__}: {e}")
    return classify(result)


def sweep_outcome(collector: str | None = None) -> Callable[[dict[str, Any]], Outcome]:
    def classify(summary: dict[str, Any]) -> Outcome:
        if collector is not None:
            errors = summary["collectors"].get(collector, {}).get("errors") or []
            if errors:
                return Outcome("degraded", "errors: " + "; ".join(errors), summary)
        if summary.get("export_error"):
            return Outcome("degraded", f"export_error: {summary['export_error']}", summary)
        return Outcome("ok", "", summary)

    return classify


def rules_outcome(result: dict[str, Any]) -> Outcome:
    if result.get("post_error"):
        return Outcome("degraded", f"post_error: {result['post_error']}", result)
    if result["errors"]:
        return Outcome("degraded", "errors: " + "; ".join(result["errors"]), result)
    return Outcome("ok", "", result)


def plan_outcome(result: dict[str, Any]) -> Outcome:
    skipped = [d["reason"] for d in result["decisions"] if d["action"] == "skipped"]
    if skipped:
        return Outcome("degraded", "skipped: " + "; ".join(skipped), result)
    failed = [d["reason"] for d in result["decisions"] if "query failed" in d["reason"]]
    if failed:
        return Outcome("degraded", "metric unavailable: " + "; ".join(failed), result)
    return Outcome("ok", "", result)


# ---------------------------------------------------------------------- the cells


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """The store under test and an undisturbed twin, both seeded alike."""
    monkeypatch.setenv("MLINFRA_STORE_BUSY_TIMEOUT", "2")  # a locked store fails in seconds
    faulty = MetricsStore.from_url(f"sqlite:///{tmp_path / 'faulty.db'}")
    clean = MetricsStore.from_url(f"sqlite:///{tmp_path / 'clean.db'}")
    for s in (faulty, clean):
        seed(s)
    yield {
        "faulty": faulty,
        "faulty_path": tmp_path / "faulty.db",
        "clean": clean,
        "fleet": load_fleet(),
        "rules": rules_dir(tmp_path),
    }
    faulty.engine.dispose()
    clean.engine.dispose()


def _http_conn(monkeypatch: pytest.MonkeyPatch, conn_id: str, injector: FaultyHTTP, **extra: Any) -> None:
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{conn_id.upper()}",
        json.dumps(
            {
                "conn_type": "http",
                "host": "127.0.0.1",
                "port": injector.port,
                "extra": {"timeout": STEP_TIMEOUT, **extra},
            }
        ),
    )


class CellRun:
    """One cell: inject, run, check, heal, re-run, compare with the undisturbed twin."""

    def __init__(self, cell: Cell, world: dict[str, Any], injector: Any):
        self.cell, self.world, self.injector = cell, world, injector

    def check(
        self,
        step: Callable[[MetricsStore], Any],
        classify: Callable[[Any], Outcome],
        *,
        owns: tuple[str, ...],
        downstream: Callable[[MetricsStore, Outcome], None],
        heal: Callable[[], None] | None = None,
    ) -> Outcome:
        faulty, clean = self.world["faulty"], self.world["clean"]
        before = snapshot(faulty, without=owns)

        self.injector.set(self.cell.fault)
        got = run_capturing(lambda: step(faulty), classify)

        expected = self.cell.expected
        assert got.kind == expected.outcome, f"{self.cell.id}: {got.kind}: {got.message}"
        assert re.search(expected.message, got.message), f"{self.cell.id}: {got.message!r}"
        assert snapshot(faulty, without=owns) == before  # nothing else touched
        downstream(faulty, got)

        # Airflow's retry once the dependency answers again, against an undisturbed run.
        (heal or (lambda: self.injector.set(HEALTHY)))()
        retried = run_capturing(lambda: step(faulty), classify)
        assert retried.kind == "ok", f"{self.cell.id} after recovery: {retried.message}"
        undisturbed = run_capturing(lambda: step(clean), classify)
        assert undisturbed.kind == "ok", undisturbed.message
        # What the step owns: the same as if nothing had happened (downstream tables differ:
        # the downstream step ran only on this side).
        assert snapshot(faulty, only=owns) == snapshot(clean, only=owns)
        return got


def _downstream_rules(world: dict[str, Any]) -> Callable[[MetricsStore, Outcome], None]:
    def after(store: MetricsStore, _got: Outcome) -> None:
        result = evaluate_step(store, world["fleet"], world["rules"], post_alerts=lambda *a: 0)
        assert [a["alertname"] for a in result["firing"]] == ["HostHot"]

    return after


def _downstream_plan(world: dict[str, Any]) -> Callable[[MetricsStore, Outcome], None]:
    def after(store: MetricsStore, got: Outcome) -> None:
        firing = (got.result or {}).get("firing") or [
            {"alertname": "HostHot", "labels": {"model": "half-plus-two", "mlinfra_scale": "up"}}
        ]
        planned = plan_step(store, world["fleet"], alerts=firing)
        assert {d["model"] for d in planned["decisions"]} == {"half-plus-two", "resnet50-classifier"}

    return after


def _cells(prefix: str) -> list[Any]:
    return [pytest.param(c, id=c.id) for c in CELLS if c.scenario.key.startswith(prefix)]


@pytest.mark.parametrize("cell", _cells("pushgateway-"))
def test_pushgateway(cell: Cell, world, pushgateway, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    with FaultyHTTP(pushgateway.url) as gw:
        _http_conn(monkeypatch, "prometheus_pushgateway", gw, instance=f"faults-{uuid.uuid4().hex[:8]}")
        CellRun(cell, world, gw).check(
            lambda store: write_sweep_step(store, world["fleet"]),
            sweep_outcome(),
            owns=SWEEP_TABLES,
            downstream=_downstream_rules(world),
        )


@pytest.mark.parametrize("cell", _cells("alertmanager-"))
def test_alertmanager(cell: Cell, world, alertmanager, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    for s in (world["faulty"], world["clean"]):
        write_sweep_step(s, world["fleet"])
    with FaultyHTTP(alertmanager.url) as am:
        _http_conn(monkeypatch, "alertmanager_default", am)
        CellRun(cell, world, am).check(
            lambda store: evaluate_step(store, world["fleet"], world["rules"]),
            rules_outcome,
            owns=RULE_TABLES,
            downstream=_downstream_plan(world),
        )


def _prometheus_fleet(world: dict[str, Any]) -> Fleet:
    return world["fleet"].model_copy(
        update={"rules": RuleSettings(engine="prometheus", prometheus_conn_id="prometheus_faults")}
    )


@pytest.mark.parametrize("cell", _cells("prometheus-evaluate"))
def test_prometheus_rules(cell: Cell, world, prometheus, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    fleet = _prometheus_fleet(world)
    with FaultyHTTP(prometheus.url) as prom:
        _http_conn(monkeypatch, "prometheus_faults", prom)
        CellRun(cell, world, prom).check(
            lambda store: evaluate_step(store, fleet, world["rules"], post_alerts=lambda *a: 0),
            rules_outcome,
            owns=RULE_TABLES,
            downstream=_downstream_plan(world),
        )


@pytest.mark.parametrize("cell", _cells("prometheus-plan"))
def test_prometheus_scaling(cell: Cell, world, prometheus, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    fleet = _prometheus_fleet(world)
    with FaultyHTTP(prometheus.url) as prom:
        _http_conn(monkeypatch, "prometheus_faults", prom)
        CellRun(cell, world, prom).check(
            lambda store: plan_step(store, fleet),
            plan_outcome,
            owns=SCALE_TABLES,
            downstream=lambda store, got: None,  # the scale tasks get only the models decided
        )


# ---------------------------------------------------------------------- Kubernetes API


@pytest.fixture
def kube_front(monkeypatch: pytest.MonkeyPatch) -> Iterator[FaultyHTTP]:
    from tests.support.k8s_standin import KubeStandIn

    with KubeStandIn() as kube, FaultyHTTP(kube.url) as front:
        kube.add_deployment("serving", "half-plus-two", replicas=2)
        kube.add_deployment("serving", "resnet50-classifier", replicas=2)
        config = kube.kubeconfig(namespace="serving")
        config["clusters"][0]["cluster"]["server"] = front.url
        monkeypatch.setenv(
            "AIRFLOW_CONN_KUBERNETES_DEFAULT",
            json.dumps({"conn_type": "kubernetes", "extra": {"kube_config": config}}),
        )
        yield front


def collect_step(
    store: MetricsStore, fleet: Fleet, name: str, run: Callable[[str, Fleet], Any]
) -> dict[str, Any]:
    from mlinfra.sweep import collect_and_stage, write_sweep

    summary = collect_and_stage(name, fleet=fleet, store=store, run_id=RUN, ts=TS, run=run)
    summary.pop("duration_seconds", None)  # wall-clock: differs between the two twins
    return write_sweep(
        store=store,
        run_id=RUN,
        ts=TS,
        summaries=[*SUMMARIES, summary],
        fleet=fleet,
        expected=("gpu", "host", name),
        now=lambda: TS + 30,
    )


@pytest.mark.parametrize("cell", _cells("kubernetes-collect"))
def test_kubernetes_collector(cell: Cell, world, kube_front) -> None:  # type: ignore[no-untyped-def]
    from mlinfra.collectors import kubernetes

    def run(_name: str, fleet: Fleet) -> Any:
        return kubernetes.run(fleet, request_timeout=STEP_TIMEOUT)

    CellRun(cell, world, kube_front).check(
        lambda store: collect_step(store, world["fleet"], "kubernetes", run),
        sweep_outcome("kubernetes"),
        owns=SWEEP_TABLES,
        downstream=_downstream_rules(world),
    )


@pytest.mark.parametrize("cell", _cells("kubernetes-plan"))
def test_kubernetes_scaling(cell: Cell, world, kube_front) -> None:  # type: ignore[no-untyped-def]
    from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook

    from mlinfra.scaling.kube import ScaleClient

    def step(store: MetricsStore) -> dict[str, Any]:
        cluster = ScaleClient(KubernetesHook(conn_id="kubernetes_default").api_client, timeout=STEP_TIMEOUT)
        return plan_step(store, world["fleet"], cluster=cluster)

    CellRun(cell, world, kube_front).check(
        step, plan_outcome, owns=SCALE_TABLES, downstream=lambda store, got: None
    )


@pytest.mark.parametrize("cell", _cells("kubernetes-scale"))
def test_kubernetes_scale_task(cell: Cell, world, kube_front, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from mlinfra.operators.scale import ScaleDeploymentOperator

    def step(store: MetricsStore) -> dict[str, Any]:
        # The scale task's store is its own connection: point it at this side's file.
        monkeypatch.setenv(
            "AIRFLOW_CONN_MLINFRA_STORE_FAULTS",
            json.dumps({"conn_type": "sqlite", "host": store.engine.url.database}),
        )
        op = ScaleDeploymentOperator(
            task_id="scale",
            model="half-plus-two",
            namespace="serving",
            deployment="half-plus-two",
            replicas=3,
            from_replicas=2,
            reason="faults: metric above target",
            trigger="metric",
            decided_at=TS,
            store_conn_id="mlinfra_store_faults",
            request_timeout=STEP_TIMEOUT,
            conflict_retries=1,
        )
        context = {"run_id": RUN}
        try:
            return op.execute(context)
        except TaskDeferred as deferred:
            # The pods were not available yet: wait as the triggerer would and resume, so both
            # sides end in the same recorded outcome whichever way the race with the pods went.
            event = asyncio.run(_first_event(deferred.trigger))
            return op.execute_complete(context, event.payload, **(deferred.kwargs or {}))

    from airflow.sdk.exceptions import TaskDeferred

    def failure_recorded(store: MetricsStore, got: Outcome) -> None:
        with store.engine.connect() as conn:
            outcomes = conn.execute(sa.text("SELECT outcome, message FROM mlinfra_scale_events")).all()
        assert [o for o, _ in outcomes] == ["failed"]
        assert got.message.removeprefix("ScaleFailed: ") in outcomes[0][1]

    CellRun(cell, world, kube_front).check(
        step,
        lambda result: Outcome("ok", "", result),
        owns=("mlinfra_scale_events",),
        downstream=failure_recorded,
    )


async def _first_event(trigger: Any) -> Any:
    async for event in trigger.run():
        return event
    raise AssertionError(f"{trigger!r} ended without an event")


# ---------------------------------------------------------------------- TF Serving


@pytest.fixture
def serving_fronts(
    tf_serving_standin, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[FaultyGRPC, FaultyHTTP]]:  # type: ignore[no-untyped-def]
    with (
        FaultyGRPC(tf_serving_standin.grpc_target) as grpc_front,
        FaultyHTTP(tf_serving_standin.rest_url) as rest,
    ):
        monkeypatch.setenv(
            "AIRFLOW_CONN_TF_SERVING_HALF_PLUS_TWO",
            json.dumps(
                {
                    "conn_type": "tf_serving",
                    "host": "127.0.0.1",
                    "port": grpc_front.port,
                    "extra": {"rest_url": rest.url, "timeout": SERVING_TIMEOUT},
                }
            ),
        )
        monkeypatch.delenv("AIRFLOW_CONN_TF_SERVING_RESNET50", raising=False)
        yield grpc_front, rest


def _serving_collect(cell: Cell, world: dict[str, Any], injector: Any) -> None:
    from mlinfra.collectors import serving

    CellRun(cell, world, injector).check(
        lambda store: collect_step(store, world["fleet"], "serving", lambda _n, fleet: serving.run(fleet)),
        sweep_outcome("serving"),
        owns=SWEEP_TABLES,
        downstream=_downstream_rules(world),
    )


@pytest.mark.parametrize("cell", _cells("tfserving_grpc-collect"))
def test_tf_serving_grpc_collector(cell: Cell, world, serving_fronts) -> None:  # type: ignore[no-untyped-def]
    _serving_collect(cell, world, serving_fronts[0])


@pytest.mark.parametrize("cell", _cells("tfserving_rest-collect"))
def test_tf_serving_rest_collector(cell: Cell, world, serving_fronts) -> None:  # type: ignore[no-untyped-def]
    _serving_collect(cell, world, serving_fronts[1])


def _smoke(protocol: str) -> Callable[[MetricsStore], Any]:
    from mlinfra.deploy.smoke import load_smoke_spec
    from mlinfra.deploy.smoke_run import run_smoke
    from mlinfra.hooks.tf_serving import TFServingHook

    spec = load_smoke_spec(Path(__file__).resolve().parents[2] / "include" / "smoke" / "half_plus_two.json")
    spec = spec.model_copy(update={"repetitions": 2, "concurrency": 1, "cases": spec.cases[:1]})

    def step(_store: MetricsStore) -> Any:
        with TFServingHook("tf_serving_half_plus_two") as hook:
            return run_smoke(hook, "half_plus_two", 1, spec, slo_p99_ms=60_000, protocols=[protocol])

    return step


def smoke_outcome(report: Any) -> Outcome:
    if report.passed:
        return Outcome("ok", "", report)
    return Outcome("fails", "; ".join(report.problems), report)


@pytest.mark.parametrize("cell", _cells("tfserving_grpc-smoke"))
def test_tf_serving_grpc_smoke(cell: Cell, world, serving_fronts) -> None:  # type: ignore[no-untyped-def]
    CellRun(cell, world, serving_fronts[0]).check(
        _smoke("grpc"), smoke_outcome, owns=(), downstream=lambda store, got: None
    )


@pytest.mark.parametrize("cell", _cells("tfserving_rest-smoke"))
def test_tf_serving_rest_smoke(cell: Cell, world, serving_fronts) -> None:  # type: ignore[no-untyped-def]
    CellRun(cell, world, serving_fronts[1]).check(
        _smoke("rest"), smoke_outcome, owns=(), downstream=lambda store, got: None
    )


# ---------------------------------------------------------------------- the metrics store

STORE_SECRET = "store-s3cret-pw"


@contextmanager
def broken_store(fault: str, world: dict[str, Any], tmp_path: Path) -> Iterator[MetricsStore]:
    """The store as the step sees it while ``fault`` lasts."""
    if fault == "refused":  # PostgreSQL down
        yield MetricsStore.from_url(
            f"postgresql+psycopg2://mlinfra:{STORE_SECRET}@127.0.0.1:{free_port()}/mlinfra?connect_timeout=1"
        )
    elif fault == "timeout":  # PostgreSQL accepting connections and never answering
        with FaultyHTTP(None) as hang:
            hang.set("timeout")
            yield MetricsStore.from_url(
                f"postgresql+psycopg2://mlinfra:{STORE_SECRET}@127.0.0.1:{hang.port}/mlinfra?connect_timeout=1"
            )
    elif fault == "5xx":  # SQLite locked by another writer for longer than the busy timeout
        with sqlite_write_lock(str(world["faulty_path"])):
            yield world["faulty"]
    elif fault == "malformed":  # not a database at all
        path = tmp_path / "garbage.db"
        path.write_bytes(b"this is not an SQLite database file" * 100)
        yield MetricsStore.from_url(f"sqlite:///{path}")
    else:  # recovery: the lock goes away within the busy timeout
        with sqlite_write_lock(str(world["faulty_path"]), release_after=0.5):
            yield world["faulty"]


def _store_cell(
    cell: Cell,
    world: dict[str, Any],
    tmp_path: Path,
    step: Callable[[MetricsStore], Any],
    classify: Any,
    owns: tuple[str, ...],
) -> None:
    faulty, clean = world["faulty"], world["clean"]
    before = snapshot(faulty, without=owns)
    with broken_store(cell.fault, world, tmp_path) as store:
        got = run_capturing(lambda: step(store), classify)
    expected = cell.expected
    assert got.kind == expected.outcome, f"{cell.id}: {got.kind}: {got.message}"
    assert re.search(expected.message, got.message), f"{cell.id}: {got.message!r}"
    assert STORE_SECRET not in got.message
    assert snapshot(faulty, without=owns) == before
    # The retry, on the store once it is back.
    retried = run_capturing(lambda: step(faulty), classify)
    assert retried.kind == "ok", retried.message
    assert run_capturing(lambda: step(clean), classify).kind == "ok"
    assert snapshot(faulty, only=owns) == snapshot(clean, only=owns)


@pytest.mark.parametrize("cell", _cells("store-write_sweep"))
def test_store_write_sweep(cell: Cell, world, tmp_path) -> None:  # type: ignore[no-untyped-def]
    _store_cell(
        cell,
        world,
        tmp_path,
        lambda store: write_sweep_step(store, world["fleet"]),
        sweep_outcome(),
        SWEEP_TABLES,
    )


@pytest.mark.parametrize("cell", _cells("store-evaluate_rules"))
def test_store_evaluate_rules(cell: Cell, world, tmp_path) -> None:  # type: ignore[no-untyped-def]
    for s in (world["faulty"], world["clean"]):
        write_sweep_step(s, world["fleet"])
    _store_cell(
        cell,
        world,
        tmp_path,
        lambda store: evaluate_step(store, world["fleet"], world["rules"], post_alerts=lambda *a: 0),
        rules_outcome,
        RULE_TABLES,
    )


# ---------------------------------------------------------------------- report object storage (S3 API)

S3_SECRET = "s3-secret-access-key-faults"


@pytest.fixture(scope="module")
def s3_server() -> Iterator[str]:
    """moto's S3 API server on loopback, with the reports bucket."""
    moto_server = pytest.importorskip("moto.server")
    port = free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    import boto3

    boto3.client(
        "s3",
        endpoint_url=url,
        aws_access_key_id="AKIAFAULTS",
        aws_secret_access_key=S3_SECRET,
        region_name="us-east-1",
    ).create_bucket(Bucket="reports")
    yield url
    server.stop()


@pytest.mark.parametrize("cell", _cells("reports-"))
def test_report_storage(cell: Cell, world, s3_server, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from airflow.sdk import ObjectStoragePath

    from mlinfra.reports.publish import publish_report

    for s in (world["faulty"], world["clean"]):
        write_sweep_step(s, world["fleet"])
    conn_id = f"aws_faults_{uuid.uuid4().hex[:8]}"  # ObjectStoragePath caches a store per connection
    with FaultyHTTP(s3_server) as front:
        monkeypatch.setenv(
            f"AIRFLOW_CONN_{conn_id.upper()}",
            json.dumps(
                {
                    "conn_type": "aws",
                    "login": "AKIAFAULTS",
                    "password": S3_SECRET,
                    "extra": {
                        "endpoint_url": front.url,
                        "region_name": "us-east-1",
                        "config_kwargs": {
                            "connect_timeout": STEP_TIMEOUT,
                            "read_timeout": STEP_TIMEOUT,
                            "retries": {"max_attempts": 2, "mode": "standard"},
                        },
                    },
                }
            ),
        )
        base = ObjectStoragePath("s3://reports/mlinfra", conn_id=conn_id)
        # s3fs retries five times with backoff on top of botocore's attempts: one is enough here.
        base.fs.retries = 1

        def step(store: MetricsStore) -> dict[str, Any]:
            return publish_report(store, world["fleet"], TS - 3600, TS, base=base, run_id=RUN)

        def classify(result: dict[str, Any]) -> Outcome:
            return Outcome("ok", "", result)

        got = CellRun(cell, world, front).check(
            step, classify, owns=("mlinfra_reports",), downstream=lambda store, got: None
        )
        assert S3_SECRET not in got.message


@pytest.mark.parametrize("cell", _cells("store-collect"))
def test_store_collect(cell: Cell, world, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from mlinfra.collectors.base import CollectorResult
    from mlinfra.sweep import collect_and_stage

    def host(_name: str, _fleet: Fleet) -> CollectorResult:
        sample = Sample("ml_memory_usage_percent", {"host": "a"}, 40.0)
        return CollectorResult("host", [sample], up=True, duration_seconds=0.1)

    def step(store: MetricsStore) -> dict[str, Any]:
        return collect_and_stage("host", fleet=world["fleet"], store=store, run_id=RUN, ts=TS, run=host)

    _store_cell(cell, world, tmp_path, step, lambda r: Outcome("ok", "", r), ("mlinfra_staging",))


@pytest.mark.parametrize("cell", _cells("store-plan_scaling"))
def test_store_plan_scaling(cell: Cell, world, tmp_path) -> None:  # type: ignore[no-untyped-def]
    _store_cell(
        cell, world, tmp_path, lambda store: plan_step(store, world["fleet"]), plan_outcome, SCALE_TABLES
    )


@pytest.mark.parametrize("cell", _cells("store-metrics_report"))
def test_store_metrics_report(cell: Cell, world, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from airflow.sdk import ObjectStoragePath

    from mlinfra.reports.publish import publish_report

    for s in (world["faulty"], world["clean"]):
        write_sweep_step(s, world["fleet"])
    base = ObjectStoragePath((tmp_path / "reports").as_uri())

    def step(store: MetricsStore) -> dict[str, Any]:
        return publish_report(store, world["fleet"], TS - 3600, TS, base=base, run_id=RUN)

    _store_cell(cell, world, tmp_path, step, lambda r: Outcome("ok", "", r), ("mlinfra_reports",))
