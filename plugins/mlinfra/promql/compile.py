"""Compile PromQL into the local engine's plan, refusing at once what it cannot evaluate.

    plan = compile_expr('sum by (job) (rate(x_total[5m])) > 10')
    plan.root       # the node tree (mlinfra.promql.plan and the modules beside it)
    plan.windows    # (('x_total', 300000, 0),): what it will read, for shared reads

Everything of Prometheus 2.42's PromQL compiles, with its semantics (the target
the differential tests compare against): selectors with the four matcher types
(RE2, fully anchored), ``offset``, ``@`` (``start()``/``end()`` too), subqueries;
every operator (arithmetic, ``atan2``, comparisons with ``bool``, ``and``/``or``/
``unless``) with ``on``/``ignoring`` and ``group_left``/``group_right``; every
aggregation; every function of 2.42 (the native-histogram ones answer empty: the
store holds no native histograms).

Refused, with :class:`UnsupportedExpression`
(``unsupported by the local engine: <construct>; use the prometheus engine``), so a
rule file using it is refused when it loads, never during evaluation: functions
and aggregations Prometheus 2.42 does not have (newer ones promql-parser knows) and
an ``@`` before 1970 (promql-parser cannot read it); a regex Go's regexp refuses is a
:class:`QuerySyntaxError`. An expression whose value is a string or a range vector
compiles, as ``promtool check rules`` accepts it, and fails every evaluation, as a
Prometheus rule does ("rule result is not a vector or scalar").
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import promql_parser as pp

from mlinfra.label_regex import LabelRegexError
from mlinfra.promql.aggregations import AGGREGATIONS, Aggregate
from mlinfra.promql.binary import ARITH, COMPARE, SET_OPS, Binary
from mlinfra.promql.compile_calls import compile_call
from mlinfra.promql.interface import QuerySyntaxError, UnsupportedExpression, unsupported
from mlinfra.promql.parse import Selector, parse
from mlinfra.promql.plan import (
    InstantSelector,
    Negate,
    Node,
    NotInstant,
    Number,
    RangeSource,
    SelectorRange,
    Subquery,
)

__all__ = ["Plan", "compile_expr"]


def compile_expr(expr: str) -> Plan:
    """The plan of ``expr``; :class:`QuerySyntaxError` or :class:`UnsupportedExpression` naming it."""
    ast = parse(expr)
    try:
        root = compile_node(ast)
    except UnsupportedExpression as e:
        raise UnsupportedExpression(f"{e} (in {expr!r})") from None
    except LabelRegexError as e:
        raise QuerySyntaxError(f"invalid regular expression in {expr!r}: {e}") from None
    if isinstance(root, RangeSource):
        root = NotInstant("a range vector")
    return Plan(expr, root, tuple(_windows(root)))


def compile_node(node: Any) -> Node:
    if isinstance(node, pp.ParenExpr):
        return compile_node(node.expr)
    if isinstance(node, pp.NumberLiteral):
        return Number(node.val)
    if isinstance(node, pp.StringLiteral):
        return NotInstant("a string")
    if isinstance(node, pp.VectorSelector):
        return InstantSelector(Selector(node))
    if isinstance(node, pp.MatrixSelector):
        return SelectorRange(node)
    if isinstance(node, pp.SubqueryExpr):
        return Subquery(compile_node(node.expr), node)
    if isinstance(node, pp.UnaryExpr):
        return Negate(compile_node(node.expr))
    if isinstance(node, pp.AggregateExpr):
        return _compile_aggregate(node)
    if isinstance(node, pp.Call):
        return compile_call(node, compile_node)
    if isinstance(node, pp.BinaryExpr):
        return _compile_binary(node)
    raise unsupported(f"the expression type {type(node).__name__}")


def _compile_aggregate(node: pp.AggregateExpr) -> Node:
    op = str(node.op)
    if op not in AGGREGATIONS:
        raise unsupported(f"the aggregation {op}, which Prometheus 2.42 does not have")
    mod = node.modifier
    without = mod is not None and mod.type == pp.AggModifierType.Without
    param: Node | str | None = None
    if node.param is not None:
        raw = node.param
        while isinstance(raw, pp.ParenExpr):
            raw = raw.expr
        param = str(raw.val) if isinstance(raw, pp.StringLiteral) else compile_node(raw)
    labels = list(mod.labels) if mod is not None else None
    return Aggregate(op, compile_node(node.expr), labels, without, param)


def _compile_binary(node: pp.BinaryExpr) -> Node:
    op = str(node.op)
    if op not in ARITH and op not in COMPARE and op not in SET_OPS:  # pragma: no cover - all of 2.42's
        raise unsupported(f"the operator {op}")
    mod = node.modifier
    if mod is not None:
        fill = mod.fill_values
        if fill is not None and (fill.lhs is not None or fill.rhs is not None):
            raise unsupported("fill modifiers, which Prometheus 2.42 does not have")
    return Binary(op, compile_node(node.lhs), compile_node(node.rhs), mod)


@dataclass(frozen=True, slots=True)
class Plan:
    """A compiled expression: its node tree and the windows it reads."""

    expr: str
    root: Node
    # (metric name, span ms or -1 for the lookback, offset ms) of every named selector.
    windows: tuple[tuple[str, int, int], ...] = ()


def _windows(node: Node) -> Iterator[tuple[str, int, int]]:
    """The windows read at the evaluation instant (subqueries and ``@`` read their own)."""
    if isinstance(node, InstantSelector | SelectorRange):
        sel = node.sel
        if sel.name is not None and sel.at is None:
            span = node.range_ms if isinstance(node, SelectorRange) else -1
            yield sel.name, span, sel.offset_ms
        return
    if isinstance(node, Subquery):
        return
    for child in node.children():
        yield from _windows(child)
