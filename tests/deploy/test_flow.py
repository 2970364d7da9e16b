"""model_deploy's wiring: the strategy branch, the canary segments and gates, the trigger rules."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def dag() -> Any:
    spec = importlib.util.spec_from_file_location("model_deploy_dag", ROOT / "dags" / "model_deploy.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.model_deploy()


def downstream(dag: Any, task_id: str) -> set[str]:
    return set(dag.get_task(task_id).downstream_task_ids)


def test_the_strategy_branch_follows_the_dry_run_check(dag: Any) -> None:
    assert downstream(dag, "unless_dry_run") == {"choose_strategy"}
    assert downstream(dag, "choose_strategy") == {"apply", "canary_segment_0"}


def test_canary_segments_alternate_with_the_gates(dag: Any) -> None:
    for gate in (1, 2, 3):
        assert downstream(dag, f"canary_segment_{gate - 1}") == {f"approve_{gate}", "canary_conclude"}
        # A rejecting gate skips its direct downstream tasks: never canary_conclude.
        assert downstream(dag, f"approve_{gate}") == {f"canary_segment_{gate}"}
        approval = dag.get_task(f"approve_{gate}")
        assert (approval.gate, approval.segment_task_id) == (gate, f"canary_segment_{gate - 1}")
        assert approval.fail_on_reject is False
    assert downstream(dag, "canary_segment_3") == {"canary_conclude"}
    assert dag.get_task("canary_conclude").trigger_rule == "all_done"
    assert downstream(dag, "canary_conclude") == {"collect_configs"}
    assert [dag.get_task(f"canary_segment_{i}").segment for i in range(4)] == [0, 1, 2, 3]


def test_the_rolling_promote_does_not_run_on_the_canary_branch(dag: Any) -> None:
    promote = dag.get_task("promote")
    # none_failed would run it when the whole rolling branch is skipped.
    assert promote.trigger_rule == "none_failed_min_one_success"
    assert set(promote.upstream_task_ids) == {"smoke_test", "wait_model"}
    assert set(dag.get_task("collect_configs").upstream_task_ids) == {
        "promote",
        "rollback",
        "canary_conclude",
    }
    assert downstream(dag, "collect_configs") == {"finish"}
