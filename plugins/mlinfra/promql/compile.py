"""Compile PromQL into the local engine's plan, refusing at once what it cannot evaluate.

    plan = compile_expr('sum by (job) (rate(x_total[5m])) > 10')
    plan.root       # the node tree (mlinfra.promql.plan)
    plan.windows    # (('x_total', 300000, 0),): what it will read, for shared reads

What compiles, with the semantics of Prometheus 2.42 (the target the differential
tests compare against):

* instant selectors (latest sample in the 5-minute lookback window ``[t-5m, t]``)
  and range selectors (every sample in ``[t-range, t]``), the four matcher types,
  ``offset``;
* number literals, parentheses, unary minus;
* arithmetic (``+ - * / % ^``) and comparison operators (with ``bool``), between
  scalars and vectors, with one-to-one vector matching (``on``/``ignoring``), and
  the set operators ``and``/``or``/``unless``;
* aggregations ``sum avg min max count`` with ``by``/``without``;
* functions ``rate irate increase delta abs clamp_min clamp_max absent
  avg_over_time min_over_time max_over_time sum_over_time count_over_time
  histogram_quantile``.

Anything else raises :class:`UnsupportedExpression`
(``unsupported by the local engine: <construct>; use the prometheus engine``), so a
rule file using it is refused when it loads, never during evaluation.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import promql_parser as pp

from mlinfra.promql.functions import RANGE_FUNCTIONS
from mlinfra.promql.gonum import go_max, go_min
from mlinfra.promql.interface import UnsupportedExpression, unsupported
from mlinfra.promql.parse import Selector, parse
from mlinfra.promql.plan import (
    ARITH,
    COMPARE,
    SET_OPS,
    Abs,
    Absent,
    Aggregate,
    Binary,
    Clamp,
    HistogramQuantile,
    InstantSelector,
    Negate,
    Node,
    Number,
    RangeFunction,
)

__all__ = ["Plan", "compile_expr"]


def compile_expr(expr: str) -> Plan:
    """The plan of ``expr``; :class:`QuerySyntaxError` or :class:`UnsupportedExpression` naming it."""
    ast = parse(expr)
    try:
        root = _compile(ast)
    except UnsupportedExpression as e:
        raise UnsupportedExpression(f"{e} (in {expr!r})") from None
    return Plan(expr, root, tuple(_windows(root)))


_AGGREGATIONS = frozenset({"sum", "avg", "min", "max", "count"})
_VECTOR_FUNCTIONS = frozenset({"abs", "clamp_min", "clamp_max", "absent", "histogram_quantile"})


def _compile(node: Any) -> Node:
    if isinstance(node, pp.ParenExpr):
        return _compile(node.expr)
    if isinstance(node, pp.NumberLiteral):
        return Number(node.val)
    if isinstance(node, pp.StringLiteral):
        raise unsupported("string literals")
    if isinstance(node, pp.VectorSelector):
        return InstantSelector(Selector(node))
    if isinstance(node, pp.MatrixSelector):
        raise unsupported("a range vector outside a supported function")
    if isinstance(node, pp.SubqueryExpr):
        raise unsupported("subqueries")
    if isinstance(node, pp.UnaryExpr):
        return Negate(_compile(node.expr))
    if isinstance(node, pp.AggregateExpr):
        op = str(node.op)
        if op not in _AGGREGATIONS:
            raise unsupported(f"the aggregation {op}")
        if node.param is not None:  # pragma: no cover - only parameterised aggregations take one
            raise unsupported(f"a parameter to {op}")
        mod = node.modifier
        without = mod is not None and mod.type == pp.AggModifierType.Without
        return Aggregate(op, _compile(node.expr), list(mod.labels) if mod is not None else None, without)
    if isinstance(node, pp.Call):
        return _compile_call(node)
    if isinstance(node, pp.BinaryExpr):
        return _compile_binary(node)
    raise unsupported(f"the expression type {type(node).__name__}")


def _compile_call(node: pp.Call) -> Node:
    name = node.func.name
    args = list(node.args)
    if name in RANGE_FUNCTIONS:
        arg = args[0]
        while isinstance(arg, pp.ParenExpr):  # pragma: no cover - the parser wants a range vector here
            arg = arg.expr
        if isinstance(arg, pp.SubqueryExpr):
            raise unsupported("subqueries")
        if not isinstance(arg, pp.MatrixSelector):  # pragma: no cover - the parser checks types
            raise unsupported(f"{name}() of anything but a range selector")
        return RangeFunction(RANGE_FUNCTIONS[name], arg)
    if name not in _VECTOR_FUNCTIONS:
        raise unsupported(f"the function {name}()")
    compiled = [_compile(a) for a in args]
    if name == "abs":
        return Abs(compiled[0])
    if name == "clamp_min":
        return Clamp(compiled[0], compiled[1], go_max)
    if name == "clamp_max":
        return Clamp(compiled[0], compiled[1], go_min)
    if name == "absent":
        return Absent(compiled[0], args[0])
    return HistogramQuantile(compiled[0], compiled[1])


def _compile_binary(node: pp.BinaryExpr) -> Node:
    op = str(node.op)
    if op not in ARITH and op not in COMPARE and op not in SET_OPS:
        raise unsupported(f"the operator {op}")
    mod = node.modifier
    if mod is not None:
        if mod.card in (pp.VectorMatchCardinality.ManyToOne, pp.VectorMatchCardinality.OneToMany):
            raise unsupported("group_left/group_right (many-to-one matching)")
        fill = mod.fill_values
        if fill is not None and (fill.lhs is not None or fill.rhs is not None):
            raise unsupported("fill modifiers")
    return Binary(op, _compile(node.lhs), _compile(node.rhs), mod)


@dataclass(frozen=True, slots=True)
class Plan:
    """A compiled expression: its node tree and the windows it reads."""

    expr: str
    root: Node
    # (metric name, span ms or -1 for the lookback, offset ms) of every named selector.
    windows: tuple[tuple[str, int, int], ...] = ()


def _windows(node: Node) -> Iterator[tuple[str, int, int]]:
    if isinstance(node, InstantSelector | RangeFunction):
        if node.sel.name is not None:
            span = node.range_ms if isinstance(node, RangeFunction) else -1
            yield node.sel.name, span, node.sel.offset_ms
        return
    for child in vars(node).values():
        if isinstance(child, Node):
            yield from _windows(child)
