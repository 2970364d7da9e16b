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
    min_samples,
    percentile,
)
from mlinfra.deploy.smoke_run import run_smoke
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


def test_a_percentile_needs_enough_samples_not_to_be_the_slowest() -> None:
    assert (min_samples(50), min_samples(90), min_samples(99), min_samples(99.9)) == (2, 10, 100, 1000)
    for q in (50, 90, 99):
        n = min_samples(q)
        values = [float(v) for v in range(1, n + 1)]
        assert percentile(values, q) < max(values)
        assert percentile(values[:-1], q) == max(values[:-1])
    with pytest.raises(ValueError, match="percentile must be in"):
        min_samples(100)


def test_the_shipped_smoke_file_measures_enough_for_a_p99() -> None:
    spec = load_smoke_spec(ROOT / "include" / "smoke" / "half_plus_two.json")
    assert spec.warmup >= 1
    assert spec.repetitions * len(spec.cases) >= min_samples(99)


class ScriptedHook:
    """A TFServingHook stand-in: half_plus_two's answers after scripted delays (fake clock)."""

    def __init__(self, clock: FakeClock, delays_ms: list[float], default_ms: float = 2.0) -> None:
        self.clock, self.delays_ms, self.default_ms = clock, list(delays_ms), default_ms

    def _answer(self, inputs: dict[str, Any]) -> dict[str, Any]:
        self.clock.now += (self.delays_ms.pop(0) if self.delays_ms else self.default_ms) / 1000
        return {"y": [0.5 * x + 2 for x in inputs["x"]]}

    def predict(self, model: str, inputs: dict[str, Any], *args: Any, **kwargs: Any) -> dict[str, Any]:
        return self._answer(inputs)

    def rest_predict(self, model: str, *, inputs: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        return {"outputs": self._answer(inputs)}


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


ONE_CASE = {"cases": [{"name": "zeros", "inputs": {"x": [0.0]}, "expected": {"y": [2.0]}}]}


def _spec(**fields: Any) -> SmokeSpec:
    return SmokeSpec.model_validate({**ONE_CASE, "protocols": ["grpc"], "concurrency": 1, **fields})


def test_warm_up_requests_are_checked_but_not_timed() -> None:
    clock = FakeClock()
    # The first request pays for the channel (250 ms); everything after answers in 2 ms.
    hook = ScriptedHook(clock, [250.0])
    report = run_smoke(hook, "m", 1, _spec(repetitions=100, warmup=1), slo_p99_ms=50, clock=clock)
    assert report.passed, report.problems
    assert report.results[0].warmup == 1
    assert report.results[0].requests == 100
    assert max(report.results[0].latencies_ms) == pytest.approx(2.0)
    assert report.to_dict()["protocols"]["grpc"]["latency"] == {"p50": "ok", "p99": "ok"}

    cold = run_smoke(
        ScriptedHook(FakeClock(), [250.0]), "m", 1, _spec(repetitions=100, warmup=0), slo_p99_ms=50
    )
    assert cold.results[0].warmup == 0


def test_too_few_requests_give_no_p99_verdict_rather_than_judging_the_slowest() -> None:
    clock = FakeClock()
    # 20 measured requests, one of them slow: the nearest-rank "p99" of 20 would be that one.
    hook = ScriptedHook(clock, [2.0] * 10 + [300.0] + [2.0] * 9)
    report = run_smoke(hook, "m", 1, _spec(repetitions=20, warmup=0), slo_p99_ms=50, clock=clock)
    assert report.passed, report.problems
    assert report.to_dict()["protocols"]["grpc"]["latency"] == {"p50": "ok", "p99": "not enough samples"}
    assert report.not_judged == [
        "grpc: p99 not judged: 20 measured request(s), 100 needed (raise repetitions or add cases)"
    ]
    table = report.table()
    assert "n<100" in table
    assert "not enough samples (SLO 50 ms)" in table
    assert "verdict: PASS" in table


def test_a_slow_version_fails_on_p99_and_every_row_says_the_same() -> None:
    clock = FakeClock()
    # 2 of 100 requests are slow: the nearest-rank p99 is the 99th value, a slow one.
    hook = ScriptedHook(clock, [2.0] * 98 + [300.0, 300.0])
    report = run_smoke(hook, "m", 1, _spec(repetitions=100, warmup=0), slo_p99_ms=50, clock=clock)
    assert not report.passed
    assert report.problems == ["grpc: p99 latency 300.0 ms exceeds the SLO of 50 ms (100 requests)"]
    rows = {line.split()[1]: line for line in report.table().splitlines() if line.startswith("grpc")}
    # The case row judges answers (all right); the protocol row judges answers and latency.
    assert rows["zeros"].rstrip().endswith("ok")
    assert rows["(all)"].split()[-5:] == ["ok", "FAIL", "(SLO", "50", "ms)"]
    assert report.table().splitlines()[-2:] == [
        "verdict: FAIL",
        "  grpc: p99 latency 300.0 ms exceeds the SLO of 50 ms (100 requests)",
    ]


def test_requests_the_time_budget_leaves_unsent_fail_the_test_and_say_so() -> None:
    clock = FakeClock()
    # Every answer takes 1 s: a budget of 10.5 s starts the warm-up and 10 measured requests.
    hook = ScriptedHook(clock, [], default_ms=1000.0)
    report = run_smoke(
        hook, "m", 1, _spec(repetitions=100, warmup=1), slo_p99_ms=5000, budget_s=10.5, clock=clock
    )
    (result,) = report.results
    assert (result.warmup, result.requests, result.not_sent) == (1, 10, 90)
    assert len(result.latencies_ms) == 10  # the unsent have no latency to count
    assert not report.passed
    assert report.problems[0] == (
        "grpc case 'zeros': 0 error(s), 0 mismatch(es) in 10 requests, 90 not sent; "
        "first: not sent: the smoke test's time budget of 10.5 s ran out"
    )
    assert report.to_dict()["cases"][0]["not_sent"] == 90
    # Within its budget the same run passes.
    clock = FakeClock()
    hook = ScriptedHook(clock, [], default_ms=1000.0)
    assert run_smoke(
        hook, "m", 1, _spec(repetitions=100, warmup=1), slo_p99_ms=5000, budget_s=200, clock=clock
    ).passed


def test_a_wrong_answer_during_warm_up_still_fails() -> None:
    class WrongOnce(ScriptedHook):
        def predict(self, model: str, inputs: dict[str, Any], *args: Any, **kwargs: Any) -> dict[str, Any]:
            answer = self._answer(inputs)
            if not hasattr(self, "seen"):
                self.seen = True
                return {"y": [9.0]}
            return answer

    report = run_smoke(WrongOnce(FakeClock(), []), "m", 1, _spec(repetitions=3, warmup=1), slo_p99_ms=50)
    assert not report.passed
    assert "0 mismatch(es) in 3 requests (and 1 of 1 warm-up requests)" in report.problems[0]
    assert report.to_dict()["cases"][0]["warmup_failures"] == 1


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
    assert [line.split()[:4] for line in table.splitlines() if "(all)" in line] == [
        ["grpc", "(all)", "6", "12"],
        ["rest", "(all)", "6", "12"],
    ]
    assert "not enough samples (SLO 10000 ms)" in table
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
    assert missing.results[0].errors == 2  # the measured ones; the warm-up ones are counted apart
    assert missing.results[0].warmup_failures == 2
    assert "NOT_FOUND" in (missing.results[0].first_problem or "")
    assert not slow.passed
    assert any("p50 latency" in p and "exceeds the SLO of 0.001 ms" in p for p in slow.problems)
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


@pytest.mark.integration
def test_the_shipped_smoke_file_tells_a_slow_server_from_a_loaded_machine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The shipped file and SLO: a healthy version passes, one 200 ms slower per request fails."""
    from mlinfra.config import load_fleet
    from mlinfra.hooks.tf_serving import TFServingHook
    from tests.support.tf_serving_standin import require_tensorflow, start_tf_serving_standin

    require_tensorflow()
    slo = load_fleet(ROOT / "include" / "fleet.yaml").model("half-plus-two").slo.p99_latency_ms
    spec = load_smoke_spec(ROOT / "include" / "smoke" / "half_plus_two.json")
    with start_tf_serving_standin(log_dir=tmp_path) as server:
        monkeypatch.setenv(*server.connection_env("tf_serving_t"))
        with TFServingHook("tf_serving_t") as hook:
            healthy = run_smoke(hook, "half_plus_two", 1, spec, slo_p99_ms=slo, protocols=["grpc"])
            server.set_faults(predict_delay=0.2)
            slow = run_smoke(hook, "half_plus_two", 1, spec, slo_p99_ms=slo, protocols=["grpc"])
    assert healthy.passed, healthy.table()
    assert healthy.not_judged == []
    assert not slow.passed
    assert slow.problems[0].startswith("grpc: p50 latency 2")
