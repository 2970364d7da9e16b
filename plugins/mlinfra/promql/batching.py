"""Many expressions that differ only in one label's value, evaluated as one.

A scaling plan asks the same question of every model: ``avg(util{model="m-1"})``,
``avg(util{model="m-2"})``, ... 500 times. Evaluated one by one, each is a selection, a
read and an aggregation of a series or two: the cost is 500 evaluations' overhead for
about as many series as one. :func:`batches` finds such families, and the engine answers a
family with one expression that aggregates ``by`` that label, ``avg by (model)
(util{model!=""})``, handing each member its own group.

The answer is the same as the member's own, bit for bit: the member's series are exactly
the group's (the other matchers are kept; series of values outside the family form groups
nobody asks for), the aggregation visits them in the same order (selection keeps the
index's order, and grouping keeps it within a group), and an aggregation without ``by``
returns one sample without labels, which is the group's value with its label dropped. A
member with no series gets the empty vector, as alone.

Only the shapes where that holds are batched: ``sum``, ``avg``, ``min``, ``max`` or
``count`` without a grouping clause or parameter, over a selector or over one of the
functions below applied to one (they keep every label but the metric name), with a
metric name, no ``@`` and no negative offset, where the varying matcher is an equality
on a label other than ``__name__``. Everything else is evaluated alone.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import promql_parser as pp

from mlinfra.promql.interface import QueryError
from mlinfra.promql.parse import NAME, _match_op, parse, to_ms

__all__ = ["BATCH_MIN", "Batch", "batches"]

# Families smaller than this are evaluated one by one (no gain worth a second plan).
BATCH_MIN = 8

_AGGREGATIONS = frozenset({"sum", "avg", "min", "max", "count"})
# Functions of one selector that keep every label except the metric name.
_FUNCTIONS = frozenset(
    {
        "rate", "irate", "increase", "delta", "idelta", "deriv", "resets", "changes",
        "avg_over_time", "min_over_time", "max_over_time", "sum_over_time", "count_over_time",
        "last_over_time", "stddev_over_time", "stdvar_over_time", "present_over_time",
        "abs", "ceil", "floor", "exp", "ln", "log2", "log10", "sqrt",
    }
)  # fmt: skip


@dataclass(frozen=True)
class Batch:
    """One family member: the family's grouped expression, the label it varies in, and its value."""

    expr: str
    label: str
    value: str


def batches(exprs: Sequence[str], minimum: int = BATCH_MIN) -> dict[str, Batch]:
    """The members of every family of at least ``minimum`` expressions, with their batch.

    >>> out = batches([f'sum(rate(req{{job="a", model="m{i}"}}[5m]))' for i in range(3)], minimum=2)
    >>> out['sum(rate(req{job="a", model="m1"}[5m]))']
    Batch(expr='sum by (model) (rate(req{job="a",model!=""}[300000ms]))', label='model', value='m1')
    """
    if len(exprs) < minimum:
        return {}
    candidates: dict[str, list[tuple[tuple[Any, ...], str]]] = {}
    sizes: dict[tuple[Any, ...], int] = defaultdict(int)
    for expr in dict.fromkeys(exprs):
        shape = _shape(expr)
        if shape is None:
            continue
        keys = candidates[expr] = _families(shape)
        for key, _value in keys:
            sizes[key] += 1
    out: dict[str, Batch] = {}
    grouped: dict[tuple[Any, ...], str] = {}
    for expr, keys in candidates.items():
        best = max(keys, key=lambda kv: sizes[kv[0]], default=None)
        if best is None or sizes[best[0]] < minimum:
            continue
        key, value = best
        if key not in grouped:
            grouped[key] = _grouped_expr(key)
        out[expr] = Batch(grouped[key], key[-1], value)
    return out


@dataclass(frozen=True)
class _Shape:
    aggregation: str
    function: str | None
    range_ms: int | None
    name: str
    matchers: tuple[tuple[str, str, str], ...]
    offset_ms: int


def _shape(expr: str) -> _Shape | None:
    try:
        tree = parse(expr)
    except QueryError:  # evaluated alone, where it reports
        return None
    if not isinstance(tree, pp.AggregateExpr) or tree.modifier is not None or tree.param is not None:
        return None
    aggregation = str(tree.op)
    if aggregation not in _AGGREGATIONS:
        return None
    inner, function, range_ms = tree.expr, None, None
    if isinstance(inner, pp.Call):
        function = inner.func.name
        if function not in _FUNCTIONS or len(inner.args) != 1:
            return None
        inner = inner.args[0]
        if isinstance(inner, pp.MatrixSelector):
            range_ms = to_ms(inner.range)
            inner = inner.vector_selector
    if not isinstance(inner, pp.VectorSelector) or not inner.name or inner.at is not None:
        return None
    if inner.matchers.or_matchers:
        return None
    offset_ms = to_ms(inner.offset) if inner.offset is not None else 0
    if offset_ms < 0:
        return None
    matchers = tuple(sorted((_match_op(m.op), m.name, m.value) for m in inner.matchers.matchers))
    return _Shape(aggregation, function, range_ms, inner.name, matchers, offset_ms)


def _families(shape: _Shape) -> list[tuple[tuple[Any, ...], str]]:
    """(family key, this member's value) for each equality matcher the family could vary in."""
    out = []
    for i, (op, label, value) in enumerate(shape.matchers):
        if op != "=" or label == NAME or not value:
            continue
        if any(other[1] == label for j, other in enumerate(shape.matchers) if j != i):
            continue  # the label matched twice: its series are not simply the group's
        rest = shape.matchers[:i] + shape.matchers[i + 1 :]
        key = (shape.aggregation, shape.function, shape.range_ms, shape.name, rest, shape.offset_ms, label)
        out.append((key, value))
    return out


def _grouped_expr(key: tuple[Any, ...]) -> str:
    aggregation, function, range_ms, name, rest, offset_ms, label = key
    matchers = [f"{lbl}{op}{json.dumps(value, ensure_ascii=False)}" for op, lbl, value in rest]
    matchers.append(f'{label}!=""')
    selector = f"{name}{{{','.join(matchers)}}}"
    if range_ms is not None:
        selector += f"[{range_ms}ms]"
    if offset_ms:
        selector += f" offset {offset_ms}ms"
    inner = f"{function}({selector})" if function else selector
    return f"{aggregation} by ({label}) ({inner})"
