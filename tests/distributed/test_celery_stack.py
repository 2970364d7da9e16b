"""The compose stack's configuration for real: CeleryExecutor, two workers, PostgreSQL, Redis.

One test, because the point is that the work runs at once on a shared stack: several
sweeps (triggered through the REST API with their own logical dates), then the checks
that only a distributed run can fail: tasks landed on both workers, and every
sample every collector staged on whichever worker reached the store exactly once.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from mlinfra.store import MetricsStore
from tests.distributed.conftest import DAG_IDS, Cluster
from tests.distributed.stack import WORKERS, DistributedStack

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SWEEPS = 3
COLLECTORS = {"gpu", "host", "kubernetes", "serving"}
# Written by write_sweep from this sweep and the previous one, not by a collector.
DERIVED = {"ml_cpu_usage_percent"}


def _wait_runs(stack: DistributedStack, dag_id: str, run_ids: set[str], timeout: float) -> None:
    def done() -> bool:
        states = {r: s for r, s in stack.run_states(dag_id).items() if r in run_ids}
        failed = {r: s for r, s in states.items() if s == "failed"}
        if failed:
            pytest.fail(f"{dag_id} runs failed: {failed}\n{stack.logs()}")
        return len(states) == len(run_ids) and all(s == "success" for s in states.values())

    stack.wait(f"{dag_id} runs {sorted(run_ids)}", done, timeout, interval=2.0)


@pytest.mark.timeout(1500)
def test_the_compose_stack_runs_sweeps_on_both_workers_without_losing_a_sample(
    stack: DistributedStack, cluster: Cluster
) -> None:
    started = time.monotonic()
    stack.wait("the API server", stack.api_up, timeout=300, interval=2.0)
    stack.wait_for_dags(DAG_IDS)
    stack.wait_for_workers()

    now = datetime.now(UTC).replace(second=0, microsecond=0)
    latest = now - timedelta(minutes=now.minute % 5)
    sweep_times = [latest - timedelta(minutes=5 * k) for k in range(1, SWEEPS + 1)]
    sweeps = {stack.trigger("infra_health_sweep", logical_date=t): t for t in sweep_times}

    _wait_runs(stack, "infra_health_sweep", set(sweeps), timeout=900)

    # Both workers ran sweep tasks (a task instance records the host that ran it).
    hosts = stack.db(
        "SELECT DISTINCT hostname FROM task_instance WHERE dag_id = 'infra_health_sweep' "
        "AND run_id = ANY(:runs) AND state = 'success'",
        runs=list(sweeps),
    )
    assert {h for (h,) in hosts} >= set(WORKERS), hosts

    # Every sample each collector staged (on whichever worker) is in the store once.
    store = MetricsStore.from_url(cluster.store_url)
    try:
        for run_id, at in sweeps.items():
            ts = at.timestamp()
            (sweep,) = store.sweeps(ts, ts + 1)
            assert sweep.run_id == run_id
            staged = store.staged(run_id)
            assert set(staged) == COLLECTORS, run_id
            keys = {s.series_key for samples in staged.values() for s in samples}
            stored = [s.series_key for s in store.sweep_samples(ts)]
            assert len(stored) == len(set(stored)) == sweep.samples, run_id
            # Nothing lost; the only samples not staged are those derived at write time.
            assert keys <= set(stored), sorted(keys - set(stored))[:5]
            assert {name for name, _ in set(stored) - keys} <= DERIVED, run_id
            assert len(keys) > 50
    finally:
        store.engine.dispose()
    print(f"distributed stack: {time.monotonic() - started:.0f}s from launch to the last check")
