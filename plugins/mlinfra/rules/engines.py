"""Pick the query engine a fleet asks for (``rules.engine`` in fleet.yaml; default ``local``).

    engine = engine_for_fleet(load_fleet(), MetricsStore.from_connection())
    engine.instant("ml_cpu_usage_percent > 85", at=logical_time)

``local`` evaluates over the store; ``prometheus`` asks the server behind the
Airflow connection ``rules.prometheus_conn_id`` (default ``prometheus_default``).

A rule set after a sweep is many expressions at one instant; :func:`evaluate_many`
lets an engine that can share work do so (the local engine reads each metric once)::

    results = evaluate_many(engine, [rule.expr for rule in rules], at=logical_time)
    # one QueryResult or QueryError per expression, in order
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from mlinfra.promql.interface import QueryEngine, QueryError, QueryResult

if TYPE_CHECKING:
    from mlinfra.config import Fleet
    from mlinfra.store import MetricsStore

__all__ = ["ENGINE_NAMES", "engine_for_fleet", "evaluate_many", "make_engine"]

ENGINE_NAMES = ("local", "prometheus")


def make_engine(
    name: str, store: MetricsStore, *, prometheus_conn_id: str = "prometheus_default"
) -> QueryEngine:
    """The engine called ``name`` (``local`` or ``prometheus``)."""
    if name == "local":
        from mlinfra.promql.engine import LocalEngine

        return LocalEngine(store)
    if name == "prometheus":
        from mlinfra.hooks.prometheus import PrometheusHook
        from mlinfra.rules.prometheus_engine import PrometheusEngine

        return PrometheusEngine(PrometheusHook(prometheus_conn_id))
    raise ValueError(f"unknown query engine {name!r}; use one of {', '.join(ENGINE_NAMES)}")


def engine_for_fleet(fleet: Fleet, store: MetricsStore) -> QueryEngine:
    """The engine ``fleet.rules`` selects, over ``store`` (local) or its Prometheus connection."""
    return make_engine(fleet.rules.engine, store, prometheus_conn_id=fleet.rules.prometheus_conn_id)


def evaluate_many(engine: QueryEngine, exprs: Sequence[str], at: float) -> list[QueryResult | QueryError]:
    """Every expression at ``at``; a failing one gives its :class:`QueryError` in place, not a raise.

    Engines with an ``instant_many`` method (the local engine) evaluate them together;
    others one by one. Results are the same either way.
    """
    many = getattr(engine, "instant_many", None)
    if callable(many):
        return list(many(exprs, at))
    out: list[QueryResult | QueryError] = []
    for expr in exprs:
        try:
            out.append(engine.instant(expr, at))
        except QueryError as e:
            out.append(e)
    return out
