"""The canary parts of the fleet file: a model's ``deploy`` strategy and the fleet's ``analyses``.

Modelled on Argo Rollouts' canary steps and AnalysisTemplates
(argoproj.github.io/argo-rollouts/features/canary/ and .../features/analysis/)::

    analyses:
      serving-health:
        metrics:
          - name: error-ratio
            query: sum(rate(errors{track="{{ track }}"}[1m])) / sum(rate(requests{track="{{ track }}"}[1m]))
            failure: result > 0.01
            interval: 30s
            count: 3
    models:
      - name: half-plus-two
        deploy:
          strategy: canary
          steps:
            - weight: 20
            - analysis: serving-health
            - pause: approval
            - weight: 50
            - pause: 5m

>>> step = CanaryStep.model_validate({"pause": "5m"})
>>> step.kind, step.pause_seconds
('pause', 300.0)
>>> render_query('up{track="{{ track }}", model="{{model}}"}', track="canary", model="m", version=2, namespace="ns")
'up{track="canary", model="m"}'

Cross-references (a step naming a template, a query the fleet's engine must parse) are
checked by :func:`canary_problem`, which :class:`mlinfra.config.Fleet` calls so that
errors carry the file and line like every other fleet-file error.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from mlinfra.deploy.canary import MAX_APPROVAL_GATES
from mlinfra.deploy.canary.conditions import Condition
from mlinfra.durations import parse_duration

StepKind = Literal["weight", "pause", "approval", "analysis"]
PLACEHOLDERS = ("track", "model", "version", "namespace")
# Values the fleet check substitutes before asking the engine whether a query parses.
SAMPLE_PLACEHOLDER_VALUES: dict[str, str] = {
    "track": "canary",
    "model": "model",
    "version": "1",
    "namespace": "default",
}
_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
NAME = r"^[a-z0-9]([-a-z0-9_]{0,61}[a-z0-9])?$"


class _Strict(BaseModel):
    # As mlinfra.config's models: unknown fields refused, no .inf/.nan (an infinite limit
    # would turn a check into a no-op).
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True, allow_inf_nan=False)


Duration = Annotated[float, Field(ge=0)]


def _duration(value: Any) -> float:
    return parse_duration(value)


def _include_relative(value: str | None) -> str | None:
    if value is not None and (value.startswith("/") or ".." in value.split("/")):
        raise ValueError(f"must be a path relative to include/, got {value!r}")
    return value


class CanaryStep(_Strict):
    """One step: exactly one of ``weight`` (percent), ``pause`` (a duration or ``approval``), ``analysis``."""

    weight: int | None = None
    pause: float | Literal["approval"] | None = None
    analysis: str | None = None

    @field_validator("weight")
    @classmethod
    def _weight_percent(cls, value: int | None) -> int | None:
        if value is not None and not 1 <= value <= 99:
            raise ValueError(
                f"must be a percentage from 1 to 99, got {value} (promotion to 100 % is the end of the "
                "steps, not a step)"
            )
        return value

    @field_validator("pause", mode="before")
    @classmethod
    def _pause(cls, value: Any) -> Any:
        if value is None or value == "approval":
            return value
        try:
            return _duration(value)
        except ValueError as e:
            raise ValueError(f"must be a duration (30s, 5m, 1h) or 'approval': {e}") from None

    @model_validator(mode="after")
    def _exactly_one(self) -> CanaryStep:
        given = [f for f in ("weight", "pause", "analysis") if getattr(self, f) is not None]
        if len(given) != 1:
            raise ValueError(
                "a step is exactly one of weight: <percent>, pause: <duration>|approval, "
                f"analysis: <template>; got {', '.join(given) or 'none'}"
            )
        return self

    @property
    def kind(self) -> StepKind:
        if self.weight is not None:
            return "weight"
        if self.pause == "approval":
            return "approval"
        return "pause" if self.pause is not None else "analysis"

    @property
    def pause_seconds(self) -> float | None:
        """Seconds of a timed pause; None for any other step (an approval waits for a person)."""
        return self.pause if isinstance(self.pause, float) else None


class DeployStrategy(_Strict):
    """A model's ``deploy:``: ``rolling`` (the default: all at once, then smoke) or ``canary`` with steps."""

    strategy: Literal["rolling", "canary"] = "rolling"
    steps: list[CanaryStep] = Field(default_factory=list)
    # How long a ``pause: approval`` waits for a person before the canary is aborted.
    approval_timeout: float = Field(default=3600.0, gt=0)
    # A Service <name>-canary selecting only canary pods, so clients can pin the canary.
    canary_service: bool = True

    _approval_timeout = field_validator("approval_timeout", mode="before")(
        classmethod(lambda cls, v: _duration(v))
    )

    @model_validator(mode="after")
    def _steps_fit_strategy(self) -> DeployStrategy:
        if self.strategy == "rolling":
            if self.steps:
                raise ValueError("steps are for strategy: canary; a rolling deploy has none")
            return self
        if not self.steps:
            raise ValueError("strategy: canary needs steps (weight, pause, analysis)")
        kinds = [s.kind for s in self.steps]
        if "weight" not in kinds:
            raise ValueError("a canary needs at least one weight step (it starts no canary pod otherwise)")
        first_weight = kinds.index("weight")
        if "analysis" in kinds[:first_weight]:
            raise ValueError(
                f"steps[{kinds.index('analysis')}]: an analysis step before the first weight step has "
                "no canary to analyse"
            )
        approvals = kinds.count("approval")
        if approvals > MAX_APPROVAL_GATES:
            raise ValueError(
                f"at most {MAX_APPROVAL_GATES} 'pause: approval' steps (the deploy DAG has that many approval "
                f"tasks), got {approvals}"
            )
        return self

    @property
    def is_canary(self) -> bool:
        return self.strategy == "canary"

    @property
    def analysis_names(self) -> list[str]:
        return [s.analysis for s in self.steps if s.analysis is not None]


class BaselineCompare(_Strict):
    """Judge the canary against the stable track over the same window (:mod:`.baseline`)."""

    baseline: Literal["stable"] = "stable"
    # 0.2: the canary may be up to 20 % worse than the stable.
    max_relative_increase: float = Field(ge=0)
    # Sampled metrics (latency): fewer samples than this on either track is inconclusive.
    min_samples: int = Field(default=50, ge=1)
    test: Literal["mann_whitney", "none"] = "mann_whitney"
    alpha: float = Field(default=0.05, gt=0, lt=1)
    direction: Literal["lower_is_better", "higher_is_better"] = "lower_is_better"


class GoldenCheck(_Strict):
    """Send the golden file (smoke-file format) to stable and canary; judge their agreement (:mod:`.golden`)."""

    # Relative to include/ like smoke_file; default golden/<serving.model_name>.json.
    file: str | None = None
    min_agreement: float = Field(default=1.0, ge=0, le=1)
    atol: float = Field(default=1e-6, ge=0)
    rtol: float = Field(default=1e-4, ge=0)
    # A classifier: cases agree when the arg-max of the last axis agrees.
    top1: bool = False

    _file = field_validator("file")(classmethod(lambda cls, v: _include_relative(v)))

    def path_for(self, served_model_name: str) -> str:
        """The golden file of a model, relative to include/."""
        return self.file or f"golden/{served_model_name}.json"


class LatencyProbe(_Strict):
    """Time ``requests`` predictions on each track's pods; the samples feed ``compare``."""

    requests: int = Field(default=60, ge=1, le=10_000)


class AnalysisMetric(_Strict):
    """One measurement of an analysis template: a source, conditions on ``result`` and limits.

    ``result`` is the canary's value: a query's number (a list when it returns several
    series), the golden agreement rate, or the canary's median latency in seconds.
    """

    name: str = Field(pattern=NAME)
    query: str | None = Field(default=None, min_length=1)
    golden: GoldenCheck | None = None
    latency: LatencyProbe | None = None
    success: str | None = None
    failure: str | None = None
    interval: Duration = 30.0
    count: int = Field(default=1, ge=1, le=1000)
    failure_limit: int = Field(default=0, ge=0)
    inconclusive_limit: int = Field(default=0, ge=0)
    # Argo Rollouts' consecutiveErrorLimit and its default.
    consecutive_error_limit: int = Field(default=4, ge=0)
    compare: BaselineCompare | None = None

    _interval = field_validator("interval", mode="before")(classmethod(lambda cls, v: _duration(v)))

    @field_validator("success", "failure")
    @classmethod
    def _condition(cls, value: str | None) -> str | None:
        if value is not None:
            Condition.parse(value)
        return value

    @field_validator("query")
    @classmethod
    def _known_placeholders(cls, value: str | None) -> str | None:
        if value is not None:
            unknown = sorted({m for m in _PLACEHOLDER.findall(value) if m not in PLACEHOLDERS})
            if unknown:
                known = ", ".join(f"{{{{ {p} }}}}" for p in PLACEHOLDERS)
                raise ValueError(f"unknown placeholder {{{{ {unknown[0]} }}}}; known: {known}")
        return value

    @model_validator(mode="after")
    def _one_source_and_a_judgement(self) -> AnalysisMetric:
        sources = [f for f in ("query", "golden", "latency") if getattr(self, f) is not None]
        if len(sources) != 1:
            raise ValueError(
                f"a metric has exactly one source of query, golden, latency; got {', '.join(sources) or 'none'}"
            )
        if self.golden is not None and self.compare is not None:
            raise ValueError(
                "compare does not apply to a golden metric: it already compares canary with stable "
                "(set golden.min_agreement)"
            )
        if self.golden is None and self.compare is None and self.success is None and self.failure is None:
            raise ValueError(
                "a metric needs success, failure or compare: without any, no measurement could fail"
            )
        return self

    @property
    def source(self) -> Literal["query", "golden", "latency"]:
        if self.query is not None:
            return "query"
        return "golden" if self.golden is not None else "latency"

    @property
    def success_condition(self) -> Condition | None:
        return Condition.parse(self.success) if self.success is not None else None

    @property
    def failure_condition(self) -> Condition | None:
        return Condition.parse(self.failure) if self.failure is not None else None


class AnalysisTemplate(_Strict):
    """A named list of metrics; an ``analysis`` step runs all of them."""

    metrics: list[AnalysisMetric] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_metric_names(self) -> AnalysisTemplate:
        seen: set[str] = set()
        for m in self.metrics:
            if m.name in seen:
                raise ValueError(f"duplicate metric name {m.name!r}")
            seen.add(m.name)
        return self


def render_query(query: str, *, track: str, model: str, version: int | str, namespace: str) -> str:
    """``query`` with its ``{{ placeholder }}`` s replaced (values escaped for a PromQL string)."""
    values = {"track": track, "model": model, "version": str(version), "namespace": namespace}

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            raise ValueError(f"unknown placeholder {{{{ {name} }}}} in {query!r}")
        return values[name].replace("\\", "\\\\").replace('"', '\\"')

    return _PLACEHOLDER.sub(replace, query)


Loc = tuple[str | int, ...]


def canary_problem(
    models: Iterable[tuple[int, DeployStrategy]],
    analyses: dict[str, AnalysisTemplate],
    query_problem: Callable[[str], str | None] | None = None,
) -> tuple[Loc, str] | None:
    """The first cross-reference problem of the fleet's canary settings, as (field path, message).

    ``models`` pairs each model's index with its strategy; ``query_problem`` (the fleet's
    engine check, or None to skip it) says why a query with its placeholders filled in
    cannot be evaluated.
    """
    for i, deploy in models:
        for j, step in enumerate(deploy.steps):
            if step.analysis is not None and step.analysis not in analyses:
                known = ", ".join(sorted(analyses)) or "none defined (add a top-level analyses:)"
                return (
                    ("models", i, "deploy", "steps", j, "analysis"),
                    f"unknown analysis template {step.analysis!r}; known: {known}",
                )
    for name, template in analyses.items():
        if not re.match(NAME, name):
            return ("analyses", name), f"a template name must match {NAME}, got {name!r}"
        if query_problem is None:
            continue
        for k, metric in enumerate(template.metrics):
            if metric.query is None:
                continue
            problem = query_problem(render_query(metric.query, **SAMPLE_PLACEHOLDER_VALUES))
            if problem:
                return ("analyses", name, "metrics", k, "query"), problem
    return None
