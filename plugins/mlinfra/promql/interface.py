"""The one interface every query engine implements: a PromQL expression at an instant::

    engine = LocalEngine(store)                    # mlinfra.promql.engine
    engine.check('rate(:tensorflow:serving:request_count[5m]) > 10')   # at rule-file load time
    engine.instant('ml_gpu_temperature_celsius > 85', at=1_800_000_000.0)
    # [InstantSample(labels={'__name__': 'ml_gpu_temperature_celsius', 'gpu_id': '3'}, value=91.0)]

``check`` raises at load time for anything the engine cannot evaluate (syntax
errors; constructs the local engine does not support), so that an unsupported rule
is refused when the file loads, never at 3 a.m. during evaluation. ``instant``
returns a vector (list of samples) or, for scalar expressions, a float.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from mlinfra.exceptions import MlinfraError


@dataclass(frozen=True, slots=True)
class InstantSample:
    """One element of an instant vector. ``labels`` holds ``__name__`` when the result keeps it."""

    labels: dict[str, str] = field(default_factory=dict)
    value: float = 0.0

    @property
    def metric_name(self) -> str | None:
        return self.labels.get("__name__")


QueryResult = list[InstantSample] | float


class QueryError(MlinfraError):
    """An expression could not be evaluated; the message names the expression."""


class QuerySyntaxError(QueryError):
    """Not valid PromQL."""


class UnsupportedExpression(QueryError):
    """Valid PromQL the local engine does not evaluate.

    The message reads ``unsupported by the local engine: <construct>; use the prometheus engine``.
    """


class QueryEvaluationError(QueryError):
    """The evaluation failed: a Prometheus error response or timeout, a type error at run time."""


class EvalError(Exception):
    """Raised inside a local evaluation (plan nodes, store reads); the engine re-raises it as
    :class:`QueryEvaluationError` naming the expression and the instant."""


def unsupported(construct: str) -> UnsupportedExpression:
    """The error for a construct the local engine refuses, in its one wording."""
    return UnsupportedExpression(f"unsupported by the local engine: {construct}; use the prometheus engine")


@runtime_checkable
class QueryEngine(Protocol):
    name: str

    def check(self, expr: str) -> None:
        """Raise :class:`QuerySyntaxError` or :class:`UnsupportedExpression` if ``expr`` cannot run here."""

    def instant(self, expr: str, at: float) -> QueryResult:
        """Evaluate ``expr`` at ``at`` (seconds since the epoch)."""
