"""Golden-set agreement: stable vs canary answers, per case and per output tensor."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlinfra.deploy.canary.golden import GoldenSpec, agreement, load_golden_spec, tensor_diff
from mlinfra.deploy.canary.spec import GoldenCheck
from mlinfra.exceptions import SmokeFileError

INCLUDE = Path(__file__).resolve().parents[3] / "include"
CHECK = GoldenCheck()


def _half_plus_two(x: list[float]) -> dict[str, list[float]]:
    return {"y": [v / 2 + 2 for v in x]}


def test_the_shipped_golden_file_loads_and_its_expected_outputs_are_half_plus_two() -> None:
    spec = load_golden_spec(INCLUDE / "golden" / "half_plus_two.json")
    assert len(spec.cases) >= 5
    for case in spec.cases:
        if case.expected:
            assert case.expected["y"] == _half_plus_two(case.inputs["x"])["y"]  # type: ignore[arg-type]
    assert any(not c.expected for c in spec.cases)  # expected is optional in a golden file


def test_the_golden_file_is_read_by_the_smoke_file_parser(tmp_path: Path) -> None:
    bad = tmp_path / "g.json"
    bad.write_text(json.dumps({"cases": [{"name": "a", "inputs": {}}]}))
    with pytest.raises(
        SmokeFileError, match=r"g.json: cases.0.inputs: Dictionary should have at least 1 item"
    ):
        load_golden_spec(bad)
    with pytest.raises(SmokeFileError, match="cannot read the golden file"):
        load_golden_spec(tmp_path / "missing.json")


def _outputs(spec: GoldenSpec, model=_half_plus_two) -> dict[str, dict[str, list[float]]]:  # type: ignore[no-untyped-def]
    return {c.name: model(c.inputs["x"]) for c in spec.cases}


def test_identical_answers_agree_fully_and_both_tracks_are_correct() -> None:
    spec = load_golden_spec(INCLUDE / "golden" / "half_plus_two.json")
    report = agreement(_outputs(spec), _outputs(spec), spec, check=CHECK)
    assert report.verdict == "successful"
    assert report.agreement_rate == 1.0
    assert report.n == len(spec.cases)
    assert report.correctness("stable") == report.correctness("canary") == 1.0
    assert report.drift() == {"y": {"max_abs_diff": 0.0, "max_rel_diff": 0.0}}


def test_a_fast_but_wrong_canary_fails_and_is_reported_incorrect() -> None:
    spec = load_golden_spec(INCLUDE / "golden" / "half_plus_two.json")
    wrong = _outputs(spec, lambda x: {"y": [v / 2 + 2.5 for v in x]})
    report = agreement(_outputs(spec), wrong, spec, check=CHECK)
    assert report.verdict == "failed"
    assert report.agreement_rate == 0.0
    assert report.correctness("stable") == 1.0
    assert report.correctness("canary") == 0.0
    assert report.drift()["y"]["max_abs_diff"] == pytest.approx(0.5)
    assert "0/6 cases agree" in report.summary
    assert "canary correct 0.0%" in report.summary


def test_agreement_rate_against_min_agreement() -> None:
    stable = {"a": {"y": [1.0]}, "b": {"y": [2.0]}, "c": {"y": [3.0]}, "d": {"y": [4.0]}}
    canary = {**stable, "d": {"y": [4.1]}}
    assert agreement(stable, canary, check=GoldenCheck(min_agreement=0.75)).verdict == "successful"
    low = agreement(stable, canary, check=GoldenCheck(min_agreement=0.8))
    assert low.verdict == "failed"
    assert low.agreement_rate == 0.75
    assert low.agreeing == 3


def test_tolerances_follow_numpy_isclose_with_the_stable_as_reference() -> None:
    check = GoldenCheck(atol=0.0, rtol=0.01)
    assert tensor_diff("y", [100.0], [100.9], check).close
    assert not tensor_diff("y", [100.0], [101.1], check).close
    d = tensor_diff("y", [[1.0, 0.0], [2.0, 4.0]], [[1.0, 0.5], [2.0, 5.0]], GoldenCheck())
    assert d.max_abs_diff == 1.0
    assert d.max_rel_diff == 0.25
    assert not d.close


def test_top1_agreement_for_a_classifier() -> None:
    check = GoldenCheck(top1=True, atol=1e-6, rtol=0.0)
    stable = {"img": {"probs": [[0.1, 0.7, 0.2], [0.6, 0.3, 0.1]]}}
    same_class = {"img": {"probs": [[0.2, 0.5, 0.3], [0.5, 0.4, 0.1]]}}
    other_class = {"img": {"probs": [[0.2, 0.5, 0.3], [0.3, 0.6, 0.1]]}}
    ok = agreement(stable, same_class, check=check)
    assert ok.verdict == "successful"
    tensor = ok.cases[0].tensors[0]
    assert tensor.top1_agree
    assert not tensor.close
    assert tensor.max_abs_diff == pytest.approx(0.2)
    assert agreement(stable, other_class, check=check).verdict == "failed"
    # Without top1 the same drift is a disagreement.
    assert agreement(stable, same_class, check=GoldenCheck(atol=1e-6, rtol=0.0)).verdict == "failed"


def test_missing_answers_shapes_and_outputs_disagree() -> None:
    stable = {"a": {"y": [1.0, 2.0]}, "b": {"y": [1.0]}, "c": {"y": [1.0]}}
    canary = {"a": {"y": [1.0]}, "c": {"y": [1.0], "z": [0.0]}}
    report = agreement(stable, canary, check=CHECK)
    by_case = {c.case: c for c in report.cases}
    assert report.agreement_rate == 0.0
    assert by_case["a"].tensors[0].problem == "shape [1] on the canary, [2] on the stable"
    assert by_case["b"].tensors[0].problem == "no answer from the canary"
    assert [t.problem for t in by_case["c"].tensors] == [None, "output missing on the stable"]


def test_string_outputs_compare_for_equality() -> None:
    assert tensor_diff("label", ["cat"], ["cat"], CHECK).close
    assert tensor_diff("label", ["cat"], ["dog"], CHECK).problem == "values differ"


def test_no_cases_is_inconclusive_and_the_report_is_json_safe() -> None:
    assert agreement({}, {}, check=CHECK).verdict == "inconclusive"
    report = agreement({"a": {"y": [0.0, float("nan")]}}, {"a": {"y": [1.0, float("inf")]}}, check=CHECK)
    data = json.loads(json.dumps(report.to_json(), allow_nan=False))
    assert data["verdict"] == "failed"
    assert data["cases"][0]["tensors"][0]["max_abs_diff"] is None
