"""Function calls of PromQL compiled into plan nodes: every function Prometheus 2.42 has.

    compile_call(call_node, compile_node)   # compile_node compiles the arguments

Functions that promql-parser knows but Prometheus 2.42 does not (``sort_by_label``,
``mad_over_time``, ``histogram_stddev``...) are refused as such; ``holt_winters``,
which promql-parser no longer knows, is registered with it by :mod:`~mlinfra.promql.parse`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import promql_parser as pp

from mlinfra.promql.functions import KEEPS_NAME, RANGE_FUNCTIONS
from mlinfra.promql.functions_instant import (
    DATE_FUNCTIONS,
    Absent,
    Clamp,
    DateFunction,
    HistogramQuantile,
    LabelJoin,
    LabelReplace,
    MathFunction,
    NoNativeHistograms,
    Round,
    ScalarOf,
    Sort,
    Time,
    Timestamp,
    VectorOf,
)
from mlinfra.promql.gomath import MATH_FUNCTIONS
from mlinfra.promql.interface import unsupported
from mlinfra.promql.plan import AbsentOverTime, Node, Number, RangeFunction, RangeSource

__all__ = ["compile_call"]

Compile = Callable[[Any], Node]
_NATIVE_HISTOGRAMS = frozenset({"histogram_count", "histogram_sum", "histogram_fraction"})


def _unparen(node: Any) -> Any:
    while isinstance(node, pp.ParenExpr):
        node = node.expr
    return node


def _string(node: Any, name: str) -> str:
    node = _unparen(node)
    if not isinstance(node, pp.StringLiteral):  # pragma: no cover - the parser checks argument types
        raise unsupported(f"a computed string argument to {name}()")
    return str(node.val)


def _range_call(name: str, args: list[Any], compile_node: Compile) -> Node:
    ranges = [i for i, a in enumerate(args) if isinstance(_unparen(a), pp.MatrixSelector | pp.SubqueryExpr)]
    if not ranges:  # pragma: no cover - the parser checks argument types
        raise unsupported(f"{name}() without a range vector")
    matrix_at = ranges[0]
    source = compile_node(_unparen(args[matrix_at]))
    if not isinstance(source, RangeSource):  # pragma: no cover - the parser checks argument types
        raise unsupported(f"{name}() of anything but a range vector")
    if name == "absent_over_time":
        return AbsentOverTime(source, _unparen(args[matrix_at]))
    params = [compile_node(a) for i, a in enumerate(args) if i != matrix_at]
    return _range_function(name, source, params)


def _range_function(name: str, source: RangeSource, params: list[Node]) -> Node:
    return RangeFunction(RANGE_FUNCTIONS[name], source, params, keep_name=name in KEEPS_NAME)


def _value_call(name: str, args: list[Any], compile_node: Compile) -> Node | None:
    """Functions of one vector's values, or None for any other function."""
    if name in MATH_FUNCTIONS:
        return MathFunction(MATH_FUNCTIONS[name], compile_node(args[0]))
    compiled = [compile_node(a) for a in args]
    if name == "round":
        return Round(compiled[0], compiled[1] if len(compiled) > 1 else None)
    if name == "clamp":
        return Clamp(compiled[0], compiled[1], compiled[2])
    if name == "clamp_min":
        return Clamp(compiled[0], compiled[1], None)
    if name == "clamp_max":
        return Clamp(compiled[0], None, compiled[1])
    if name in DATE_FUNCTIONS:
        return DateFunction(DATE_FUNCTIONS[name], compiled[0] if compiled else None)
    if name in ("sort", "sort_desc"):
        return Sort(compiled[0], descending=name == "sort_desc")
    if name == "timestamp":
        return Timestamp(compiled[0])
    return None


_OTHERS = frozenset(
    {"round", "clamp", "clamp_min", "clamp_max", "sort", "sort_desc", "timestamp", "pi", "time"}
)
_OTHERS |= {"label_replace", "label_join", "absent", "histogram_quantile", "scalar", "vector"}
KNOWN = (
    frozenset(RANGE_FUNCTIONS) | MATH_FUNCTIONS.keys() | DATE_FUNCTIONS.keys() | _NATIVE_HISTOGRAMS | _OTHERS
)
KNOWN |= {"absent_over_time"}


def compile_call(node: pp.Call, compile_node: Compile) -> Node:
    name = node.func.name
    args = list(node.args)
    if name not in KNOWN:
        raise unsupported(f"the function {name}(), which Prometheus 2.42 does not have")
    if name in RANGE_FUNCTIONS or name == "absent_over_time":
        return _range_call(name, args, compile_node)
    if name in _NATIVE_HISTOGRAMS:
        return NoNativeHistograms([compile_node(a) for a in args])
    if name == "pi":
        return Number(math.pi)
    if name == "time":
        return Time()
    if name == "label_replace":
        dst, repl, src, regex = (_string(a, name) for a in args[1:5])
        return LabelReplace(compile_node(args[0]), dst, repl, src, regex)
    if name == "label_join":
        strings = [_string(a, name) for a in args[1:]]
        return LabelJoin(compile_node(args[0]), strings[0], strings[1], strings[2:])
    if name in ("absent", "histogram_quantile", "scalar", "vector"):
        compiled = [compile_node(a) for a in args]
        if name == "absent":
            return Absent(compiled[0], _unparen(args[0]))
        if name == "histogram_quantile":
            return HistogramQuantile(compiled[0], compiled[1])
        return ScalarOf(compiled[0]) if name == "scalar" else VectorOf(compiled[0])
    value_node = _value_call(name, args, compile_node)
    if value_node is None:  # pragma: no cover - KNOWN lists what the branches above compile
        raise unsupported(f"the function {name}()")
    return value_node
