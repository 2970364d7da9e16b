"""The canary parts of the fleet file: steps, templates, cross-checks, located errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from mlinfra.config import load_fleet, parse_fleet
from mlinfra.deploy.canary.spec import (
    MAX_APPROVAL_GATES,
    AnalysisMetric,
    CanaryStep,
    DeployStrategy,
    GoldenCheck,
    render_query,
)
from mlinfra.exceptions import FleetConfigError

FLEET = Path(__file__).resolve().parents[3] / "include" / "fleet.yaml"
_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_DUMPER: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def _fleet(deploy: dict[str, Any] | None = None, analyses: dict[str, Any] | None = None, **rules: Any) -> str:
    data = yaml.load(FLEET.read_text(), Loader=_LOADER)
    if deploy is not None:
        data["models"][0]["deploy"] = deploy
    if analyses is not None:
        data["analyses"] = analyses
    if rules:
        data["rules"].update(rules)
    return yaml.dump(data, Dumper=_DUMPER, sort_keys=False)


def _problems(text: str) -> str:
    with pytest.raises(FleetConfigError) as e:
        parse_fleet(text, "fleet.yaml")
    return str(e.value)


HEALTH = {
    "metrics": [
        {"name": "errors", "query": 'sum(rate(x{track="{{ track }}"}[1m]))', "failure": "result > 0.01"}
    ]
}


def test_the_shipped_fleet_has_the_example_templates_and_only_rolling_models() -> None:
    fleet = load_fleet(FLEET)
    assert set(fleet.analyses) == {"serving-health", "golden-agreement"}
    health = fleet.analyses["serving-health"]
    assert [m.source for m in health.metrics] == ["query", "latency"]
    assert health.metrics[0].interval == 30.0
    assert health.metrics[1].compare is not None
    assert health.metrics[1].compare.min_samples == 50
    golden = fleet.analyses["golden-agreement"].metrics[0].golden
    assert golden is not None
    assert golden.path_for("half_plus_two") == "golden/half_plus_two.json"
    assert [m.deploy.strategy for m in fleet.models] == ["rolling", "rolling"]


def test_a_canary_strategy_loads_with_its_steps() -> None:
    steps = [{"weight": 20}, {"analysis": "health"}, {"pause": "approval"}, {"weight": 50}, {"pause": "5m"}]
    fleet = parse_fleet(
        _fleet({"strategy": "canary", "steps": steps, "approval_timeout": "30m"}, {"health": HEALTH})
    )
    deploy = fleet.models[0].deploy
    assert deploy.is_canary
    assert deploy.approval_timeout == 1800.0
    assert deploy.canary_service
    assert [s.kind for s in deploy.steps] == ["weight", "analysis", "approval", "weight", "pause"]
    assert [s.pause_seconds for s in deploy.steps] == [None, None, None, None, 300.0]
    assert deploy.analysis_names == ["health"]


@pytest.mark.parametrize(
    ("deploy", "fragment"),
    [
        (
            {"strategy": "canary", "steps": [{"weight": 100}]},
            "steps[0].weight: must be a percentage from 1 to 99, got 100",
        ),
        (
            {"strategy": "canary", "steps": [{"weight": 0}]},
            "steps[0].weight: must be a percentage from 1 to 99, got 0",
        ),
        ({"strategy": "canary", "steps": []}, "strategy: canary needs steps"),
        ({"strategy": "canary"}, "strategy: canary needs steps"),
        ({"strategy": "rolling", "steps": [{"weight": 10}]}, "steps are for strategy: canary"),
        ({"strategy": "canary", "steps": [{"pause": "1m"}]}, "at least one weight step"),
        (
            {"strategy": "canary", "steps": [{"analysis": "health"}, {"weight": 10}]},
            "an analysis step before the first weight step",
        ),
        ({"strategy": "canary", "steps": [{"weight": 10, "pause": "1m"}]}, "got weight, pause"),
        ({"strategy": "canary", "steps": [{}]}, "got none"),
        (
            {"strategy": "canary", "steps": [{"pause": "soon"}]},
            "must be a duration (30s, 5m, 1h) or 'approval'",
        ),
        (
            {"strategy": "canary", "steps": [{"weight": 10}], "approval_timeout": "0s"},
            "deploy.approval_timeout: input should be greater than 0",
        ),
        ({"strategy": "blue-green"}, "models[0].deploy.strategy: must be one of 'rolling' or 'canary'"),
        ({"strategy": "canary", "steps": [{"weight": 10}], "speed": 3}, "deploy.speed: unknown field"),
        (
            {
                "strategy": "canary",
                "steps": [{"weight": 10}] + [{"pause": "approval"}] * (MAX_APPROVAL_GATES + 1),
            },
            f"at most {MAX_APPROVAL_GATES} 'pause: approval' steps",
        ),
        (
            {"strategy": "canary", "steps": [{"weight": 10}, {"analysis": "nope"}]},
            "models[0].deploy.steps[1].analysis: unknown analysis template 'nope'; known: health",
        ),
    ],
)
def test_bad_strategies_are_refused_with_the_field(deploy: dict[str, Any], fragment: str) -> None:
    problems = _problems(_fleet(deploy, {"health": HEALTH}))
    assert fragment in problems
    assert problems.startswith("fleet.yaml: line ")


def test_exactly_max_approval_gates_is_accepted() -> None:
    steps = [{"weight": 10}] + [{"pause": "approval"}] * MAX_APPROVAL_GATES
    assert DeployStrategy.model_validate({"strategy": "canary", "steps": steps}).steps[-1].kind == "approval"


def _metric(**fields: Any) -> dict[str, Any]:
    return {"metrics": [{"name": "m", **fields}]}


@pytest.mark.parametrize(
    ("template", "fragment"),
    [
        (_metric(failure="result > 1"), "exactly one source of query, golden, latency; got none"),
        (
            _metric(query="up", golden={}, failure="result > 1"),
            "exactly one source of query, golden, latency; got query, golden",
        ),
        (
            _metric(golden={}, compare={"max_relative_increase": 0.1}),
            "compare does not apply to a golden metric",
        ),
        (_metric(query="up"), "a metric needs success, failure or compare"),
        (
            _metric(query="up", failure="__import__('os')"),
            "calling __import__() (only len, abs, min, max) is not allowed",
        ),
        (_metric(query="up", success="result.real > 1"), "attribute access (.real) is not allowed"),
        (_metric(query='up{x="{{ pod }}"}', failure="result > 1"), "unknown placeholder {{ pod }}"),
        (
            _metric(query="sum(rate(x[1m])", failure="result > 1"),
            "the local engine cannot evaluate this expression",
        ),
        (_metric(query="up", failure="result > 1", interval="often"), "not a Prometheus duration"),
        (
            _metric(query="up", failure="result > 1", count=0),
            "count: input should be greater than or equal to 1",
        ),
        (
            _metric(query="up", failure="result > 1", failure_limit=-1),
            "failure_limit: input should be greater than",
        ),
        ({"metrics": []}, "metrics: list should have at least 1 item"),
        (
            {"metrics": [{"name": "a", "query": "up", "failure": "result > 1"}] * 2},
            "duplicate metric name 'a'",
        ),
        (_metric(golden={"file": "/etc/passwd"}), "must be a path relative to include/"),
        (_metric(golden={"min_agreement": 1.5}), "min_agreement: input should be less than or equal to 1"),
        (
            _metric(query="up", failure="result > 1", threshold=3),
            "analyses.t.metrics[0].threshold: unknown field; accepted here: name, query, golden, latency, success",
        ),
    ],
)
def test_bad_templates_are_refused_with_the_field(template: dict[str, Any], fragment: str) -> None:
    steps = [{"weight": 10}, {"analysis": "t"}]
    problems = _problems(_fleet({"strategy": "canary", "steps": steps}, {"t": template}))
    assert fragment in problems
    assert "analyses.t" in problems


def test_a_bad_query_is_reported_at_its_line_with_the_prometheus_engine_too() -> None:
    text = _fleet(analyses={"t": _metric(query="sum(rate(x[1m])", failure="result > 1")}, engine="prometheus")
    problems = _problems(text)
    line = next(i for i, t in enumerate(text.splitlines(), 1) if "sum(rate(x[1m])" in t)
    assert f"fleet.yaml: line {line}: analyses.t.metrics[0].query: the prometheus engine cannot" in problems


def test_queries_are_not_checked_at_dag_parse_time() -> None:
    text = _fleet(analyses={"t": _metric(query="sum(rate(x[1m])", failure="result > 1")})
    fleet = parse_fleet(text, check_expressions=False)
    assert fleet.analyses["t"].metrics[0].query == "sum(rate(x[1m])"


def test_a_step_naming_an_unknown_template_points_at_its_line() -> None:
    text = _fleet({"strategy": "canary", "steps": [{"weight": 10}, {"analysis": "nope"}]}, analyses={})
    line = next(i for i, t in enumerate(text.splitlines(), 1) if "analysis: nope" in t)
    assert (
        f"fleet.yaml: line {line}: models[0].deploy.steps[1].analysis: unknown analysis template 'nope'; known: none defined"
        in _problems(text)
    )


def test_step_kinds() -> None:
    assert CanaryStep.model_validate({"pause": "approval"}).kind == "approval"
    assert CanaryStep.model_validate({"pause": "approval"}).pause_seconds is None
    assert CanaryStep.model_validate({"pause": 0}).pause_seconds == 0.0
    assert CanaryStep.model_validate({"analysis": "x"}).kind == "analysis"
    with pytest.raises(ValidationError, match="1 to 99"):
        CanaryStep.model_validate({"weight": -5})


def test_metric_conditions_are_parsed_once_and_exposed() -> None:
    metric = AnalysisMetric.model_validate(
        {"name": "m", "query": "up", "success": "result >= 0.99 and result <= 1"}
    )
    assert metric.success_condition is not None
    assert metric.success_condition.holds(0.995)
    assert metric.failure_condition is None
    assert metric.consecutive_error_limit == 4


def test_render_query_fills_every_placeholder_and_escapes_quotes() -> None:
    q = 'x{track="{{track}}",model="{{ model }}",version="{{ version }}",ns="{{ namespace }}"}'
    assert render_query(q, track="stable", model="a", version=3, namespace="n") == (
        'x{track="stable",model="a",version="3",ns="n"}'
    )
    assert (
        render_query('x{m="{{ model }}"}', track="c", model='a"b', version=1, namespace="n") == 'x{m="a\\"b"}'
    )


def test_golden_default_file_follows_the_served_model_name() -> None:
    assert GoldenCheck().path_for("resnet50") == "golden/resnet50.json"
    assert GoldenCheck(file="golden/other.json").path_for("resnet50") == "golden/other.json"


def test_the_readme_worked_example_validates() -> None:
    readme = (FLEET.parents[1] / "README.md").read_text()
    section = readme[readme.index("### Canary deploys") :]
    example = section[section.index("```yaml") + len("```yaml") :]
    doc = yaml.safe_load(example[: example.index("```")])
    text = _fleet(doc["models"][0]["deploy"], doc["analyses"])
    deploy = parse_fleet(text).models[0].deploy
    assert [s.kind for s in deploy.steps][:3] == ["weight", "analysis", "analysis"]
    assert deploy.approval_timeout == 1800.0


def test_a_template_name_must_be_a_plain_name() -> None:
    problems = _problems(_fleet(analyses={"Serving Health": HEALTH}))
    assert "analyses.Serving Health: a template name must match" in problems
