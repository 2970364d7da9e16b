"""The prometheus query engine: the same interface, answered by a Prometheus server.

    engine = PrometheusEngine(PrometheusHook("prometheus_default"))
    engine.check('histogram_quantile(0.99, rate(x_bucket[5m]))')    # syntax only
    engine.instant('up == 0', at=1_800_000_000.0)
    # [InstantSample(labels={'__name__': 'up', 'job': 'node'}, value=0.0)]

``check`` only checks the syntax (with ``promql-parser``): Prometheus evaluates
everything. Error responses and timeouts raise :class:`QueryEvaluationError`
naming the expression, so a rule's evaluation fails loudly instead of returning
an empty vector.
"""

from __future__ import annotations

import math
from typing import Any

from mlinfra.exceptions import PrometheusError
from mlinfra.hooks.prometheus import PrometheusHook
from mlinfra.promql.interface import InstantSample, QueryEvaluationError, QueryResult
from mlinfra.promql.parse import check_syntax

__all__ = ["PrometheusEngine"]


class PrometheusEngine:
    """Evaluate expressions with ``/api/v1/query`` of a Prometheus server.

    :param hook: a :class:`PrometheusHook`, or a base URL (``http://127.0.0.1:9090``).
    :param timeout: seconds per query when ``hook`` is a URL (the hook's own setting otherwise).
    """

    name = "prometheus"

    def __init__(self, hook: PrometheusHook | str, *, timeout: float | None = None):
        if isinstance(hook, PrometheusHook):
            self.hook, self._described = hook, hook.prometheus_conn_id
        else:
            self.hook = PrometheusHook(base_url=hook, timeout=timeout)
            self._described = self.hook.where

    def __repr__(self) -> str:
        return f"PrometheusEngine({self._described})"

    def check(self, expr: str) -> None:
        """Raise :class:`QuerySyntaxError` unless ``expr`` parses."""
        check_syntax(expr)

    def instant(self, expr: str, at: float) -> QueryResult:
        """Evaluate ``expr`` at ``at`` (seconds since the epoch) on the server."""
        try:
            data = self.hook.query(expr, at)
        except PrometheusError as e:
            raise QueryEvaluationError(f"{expr!r} at {at:.3f}: {e}") from e
        return _convert(expr, data)

    def close(self) -> None:
        self.hook.close()


def _value(raw: Any) -> float:
    # Prometheus sends values as strings: "1.5", "NaN", "+Inf", "-Inf".
    return float(raw) if raw is not None else math.nan


def _convert(expr: str, data: dict[str, Any]) -> QueryResult:
    kind = data.get("resultType")
    result = data.get("result")
    if kind == "scalar" and isinstance(result, list) and len(result) == 2:
        return _value(result[1])
    if kind == "vector" and isinstance(result, list):
        return [
            InstantSample(
                {str(k): str(v) for k, v in (item.get("metric") or {}).items()}, _value(item["value"][1])
            )
            for item in result
        ]
    raise QueryEvaluationError(
        f"{expr!r}: Prometheus returned a {kind or 'malformed'} result; rules need an instant vector or a scalar"
    )
