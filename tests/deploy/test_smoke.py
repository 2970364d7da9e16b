"""Smoke files, answer checks, percentiles, and a smoke run against the TF Serving stand-in."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mlinfra.deploy.smoke import (
    Expectation,
    SmokeSpec,
    compare,
    load_smoke_spec,
    percentile,
    run_smoke,
)
from mlinfra.exceptions import SmokeFileError

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", ["half_plus_two.json", "resnet50_classifier.json"])
def test_the_project_smoke_files_are_valid(name: str) -> None:
    spec = load_smoke_spec(ROOT / "include" / "smoke" / name)
    assert spec.cases


def test_fill_inputs_become_tensors() -> None:
    spec = load_smoke_spec(ROOT / "include" / "smoke" / "resnet50_classifier.json")
    tensor = spec.cases[0].inputs["input_1"].materialize()  # type: ignore[union-attr]
    assert (len(tensor), len(tensor[0]), len(tensor[0][0]), len(tensor[0][0][0])) == (1, 224, 224, 3)
    assert tensor[0][0][0] == [0.5, 0.5, 0.5]


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("{", "not valid JSON"),
        ('{"cases": []}', "cases: List should have at least 1 item"),
        (
            '{"cases": [{"name": "a", "inputs": {"x": [1]}, "expected": {"y": [1]}}], "concurrency": 0}',
            "concurrency",
        ),
        (
            '{"cases": [{"name": "a", "inputs": {"x": [1]}, "expected": {"y": [1]}, "colour": 1}]}',
            "cases.0.colour",
        ),
        (
            '{"cases": [{"name": "a", "inputs": {"x": [1]}, "expected": {"y": [1]}}], "protocols": ["http"]}',
            "protocols",
        ),
    ],
)
def test_bad_smoke_files_name_file_and_field(tmp_path: Path, content: str, fragment: str) -> None:
    path = tmp_path / "m.json"
    path.write_text(content)
    with pytest.raises(SmokeFileError) as e:
        load_smoke_spec(path)
    assert str(path) in str(e.value)
    assert fragment in str(e.value)


def test_a_missing_smoke_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(SmokeFileError, match="cannot read the smoke file"):
        load_smoke_spec(tmp_path / "none.json")


@pytest.mark.parametrize(
    ("actual", "expected", "abs_tol", "rel_tol", "ok"),
    [
        ([2.5, 3.0], [2.5, 3.0], 0, 0, True),
        ([2.5, 3.0000001], [2.5, 3.0], 1e-6, 0, True),
        ([2.5, 3.1], [2.5, 3.0], 1e-6, 0, False),
        ([100.5], [100.0], 0, 0.01, True),
        ([[1.0, 2.0]], [1.0, 2.0], 1, 0, False),  # shape
        (["a"], ["a"], 0, 0, True),
        (3.0, 3, 0, 0, True),
        ([[0.2, 0.8]], Expectation(shape=[1, 2], sum=1.0), 1e-6, 0, True),
        ([[0.2, 0.7]], Expectation(shape=[1, 2], sum=1.0), 1e-6, 0, False),
        ([[0.2, 0.8]], Expectation(shape=[2, 1]), 0, 0, False),
    ],
)
def test_compare(actual: Any, expected: Any, abs_tol: float, rel_tol: float, ok: bool) -> None:
    assert (compare(actual, expected, abs_tol, rel_tol) is None) is ok


def test_percentiles_are_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile([7.0], 99) == 7.0
    assert percentile([], 50) is None


SPEC = SmokeSpec.model_validate(json.loads((ROOT / "include" / "smoke" / "half_plus_two.json").read_text()))


@pytest.mark.integration
def test_a_smoke_run_over_grpc_and_rest_passes_on_the_real_model(
    tf_serving_standin: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlinfra.hooks.tf_serving import TFServingHook

    monkeypatch.setenv(*tf_serving_standin.connection_env("tf_serving_t"))
    spec = SPEC.model_copy(update={"repetitions": 4, "concurrency": 2})
    with TFServingHook("tf_serving_t") as hook:
        report = run_smoke(hook, "half_plus_two", 1, spec, slo_p99_ms=10_000)
    assert report.passed, report.problems
    assert [(r.protocol, r.case, r.requests) for r in report.results] == [
        ("grpc", "zeros", 4),
        ("grpc", "batch", 4),
        ("grpc", "negative", 4),
        ("rest", "zeros", 4),
        ("rest", "batch", 4),
        ("rest", "negative", 4),
    ]
    table = report.table()
    assert "grpc      (all)     12" in table
    assert "ok (SLO p99 10000 ms)" in table
    assert report.to_dict()["protocols"]["rest"]["requests"] == 12


@pytest.mark.integration
def test_wrong_version_errors_and_slo_breaches_fail(
    tf_serving_standin: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlinfra.hooks.tf_serving import TFServingHook

    monkeypatch.setenv(*tf_serving_standin.connection_env("tf_serving_t"))
    spec = SPEC.model_copy(update={"repetitions": 2, "concurrency": 1})
    with TFServingHook("tf_serving_t") as hook:
        missing = run_smoke(hook, "half_plus_two", 99, spec, slo_p99_ms=10_000, protocols=["grpc"])
        slow = run_smoke(hook, "half_plus_two", 1, spec, slo_p99_ms=0.001, protocols=["rest"])
    assert not missing.passed
    assert missing.results[0].errors == 2
    assert "NOT_FOUND" in (missing.results[0].first_problem or "")
    assert not slow.passed
    assert any("exceeds the SLO of 0.001 ms" in p for p in slow.problems)
    assert "FAIL" in slow.table()


# --------------------------------------------------------------------------- hostile smoke files (issue 11)


def _case(**overrides: Any) -> str:
    case = {"name": "a", "inputs": {"x": [1.0]}, "expected": {"y": [1.0]}, **overrides}
    return json.dumps({"cases": [case]})


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        # No value at all, but building it would make 10**12 empty lists.
        (_case(inputs={"x": {"fill": 0.5, "shape": [10**12, 0]}}), "every leading product"),
        # Tolerances that accept every answer would make the smoke test a no-op.
        ('{"abs_tol": Infinity, ' + _case()[1:], "abs_tol: Input should be a finite number"),
        ('{"rel_tol": NaN, ' + _case()[1:], "rel_tol: Input should be a finite number"),
        (_case().replace('"name": "a"', '"name": "a", "abs_tol": Infinity'), "cases.0.abs_tol"),
        (_case(inputs={"x": {"fill": float("nan"), "shape": [1]}}), "finite number"),
    ],
)
def test_smoke_files_that_would_hang_or_accept_anything_are_refused(
    tmp_path: Path, content: str, fragment: str
) -> None:
    path = tmp_path / "m.json"
    path.write_text(content)
    with pytest.raises(SmokeFileError) as e:
        load_smoke_spec(path)
    assert fragment in str(e.value)


@pytest.mark.parametrize("depth", [40, 5000])
def test_deeply_nested_smoke_files_are_refused_not_a_recursion_error(tmp_path: Path, depth: int) -> None:
    # 40 levels load, and would then recurse through validation and compare(); 5000 levels
    # are beyond what json.loads itself can build.
    path = tmp_path / "m.json"
    path.write_text(_case().replace('"y": [1.0]', '"y": ' + "[" * depth + "1" + "]" * depth))
    with pytest.raises(SmokeFileError, match="nested deeper than 32 levels"):
        load_smoke_spec(path)
