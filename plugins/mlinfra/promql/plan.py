"""The local engine's plan: a tree of nodes, each evaluating to a vector or a scalar.

:func:`mlinfra.promql.compile.compile_expr` builds the tree from the parser's syntax
tree; :class:`~mlinfra.promql.engine.LocalEngine` evaluates its root::

    root = Binary(">", InstantSelector(selector), Number(85.0), modifier=None)
    root.eval(ctx)     # [(labels, value), ...] with ctx an EvaluationContext

Every node follows Prometheus 2.42's semantics (promql/engine.go, functions.go,
aggregations); a vector is a list of ``(Labels, value)`` pairs.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import promql_parser as pp

from mlinfra.promql.functions import RangeFn
from mlinfra.promql.gonum import go_div, go_mod, go_pow, parse_le
from mlinfra.promql.interface import EvalError
from mlinfra.promql.parse import NAME, Labels, Selector, absent_labels, to_ms
from mlinfra.promql.quantile import bucket_quantile
from mlinfra.promql.storage import EvaluationContext

__all__ = [
    "ARITH",
    "COMPARE",
    "SET_OPS",
    "Abs",
    "Absent",
    "Aggregate",
    "Binary",
    "Clamp",
    "HistogramQuantile",
    "InstantSelector",
    "Negate",
    "Node",
    "Number",
    "RangeFunction",
    "Value",
    "Vector",
]

Vector = list[tuple[Labels, float]]
Value = Vector | float

ARITH: dict[str, Callable[[float, float], float]] = {
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "*": lambda a, b: a * b,
    "/": go_div,
    "%": go_mod,
    "^": go_pow,
}
COMPARE: dict[str, Callable[[float, float], bool]] = {
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    ">": lambda a, b: a > b,
    "<": lambda a, b: a < b,
    ">=": lambda a, b: a >= b,
    "<=": lambda a, b: a <= b,
}
SET_OPS = frozenset({"and", "or", "unless"})


# ====================================================================== label helpers


def drop_name(labels: Labels) -> Labels:
    for name, _ in labels:
        if name == NAME:
            return tuple(p for p in labels if p[0] != NAME)
    return labels


def labels_str(labels: Labels) -> str:
    """Prometheus's ``Labels.String()``: ``{__name__="x", job="api"}``."""
    return "{" + ", ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in labels) + "}"


def check_unique(vec: Vector) -> Vector:
    if len({labels for labels, _ in vec}) != len(vec):
        raise EvalError("vector cannot contain metrics with the same labelset")
    return vec


def signature(names: frozenset[str], on: bool) -> Callable[[Labels], Labels]:
    """Prometheus's matching signature: the ``on`` labels, or all but ``ignoring`` ones and the name."""
    if on:
        return lambda labels: tuple(p for p in labels if p[0] in names)
    excluded = names | {NAME}
    return lambda labels: tuple(p for p in labels if p[0] not in excluded)


class Node:
    is_scalar = False

    def eval(self, ctx: EvaluationContext) -> Value:
        raise NotImplementedError

    def vector(self, ctx: EvaluationContext) -> Vector:
        out = self.eval(ctx)
        if isinstance(out, float):  # pragma: no cover - the compiler checks the types
            raise EvalError("expected an instant vector, got a scalar")
        return out

    def scalar(self, ctx: EvaluationContext) -> float:
        out = self.eval(ctx)
        if not isinstance(out, float):  # pragma: no cover - the compiler checks the types
            raise EvalError("expected a scalar, got an instant vector")
        return out


class Number(Node):
    is_scalar = True

    def __init__(self, value: float):
        self.value = float(value)

    def eval(self, ctx: EvaluationContext) -> float:
        return self.value


class InstantSelector(Node):
    def __init__(self, sel: Selector):
        self.sel = sel

    def eval(self, ctx: EvaluationContext) -> Vector:
        hi = ctx.t_ms - self.sel.offset_ms
        refs, points = ctx.points(self.sel, hi - ctx.lookback_ms, hi)
        out: Vector = []
        for r in refs:
            pts = points.get(r.id)
            if pts:
                out.append((r.labels, pts[-1][1]))
        return out


class RangeFunction(Node):
    """A function over a range selector: ``fn(selector[range])``; the name is dropped."""

    def __init__(self, fn: RangeFn, ms: pp.MatrixSelector):
        self.fn = fn
        self.sel = Selector(ms.vector_selector)
        self.range_ms = to_ms(ms.range)

    def eval(self, ctx: EvaluationContext) -> Vector:
        hi = ctx.t_ms - self.sel.offset_ms
        lo = hi - self.range_ms
        refs, points = ctx.points(self.sel, lo, hi)
        fn, range_ms = self.fn, self.range_ms
        out: Vector = []
        for r in refs:
            pts = points.get(r.id)
            if pts:
                value = fn(pts, lo, hi, range_ms)
                if value is not None:
                    out.append((drop_name(r.labels), value))
        return check_unique(out)


class Abs(Node):
    def __init__(self, arg: Node):
        self.arg = arg

    def eval(self, ctx: EvaluationContext) -> Vector:
        return check_unique([(drop_name(labels), abs(v)) for labels, v in self.arg.vector(ctx)])


class Clamp(Node):
    def __init__(self, arg: Node, bound: Node, fn: Callable[[float, float], float]):
        self.arg, self.bound, self.fn = arg, bound, fn

    def eval(self, ctx: EvaluationContext) -> Vector:
        vec = self.arg.vector(ctx)
        bound, fn = self.bound.scalar(ctx), self.fn
        return check_unique([(drop_name(labels), fn(bound, v)) for labels, v in vec])


class Absent(Node):
    def __init__(self, arg: Node, raw_arg: Any):
        self.arg = arg
        self.labels = absent_labels(raw_arg)

    def eval(self, ctx: EvaluationContext) -> Vector:
        return [] if self.arg.vector(ctx) else [(self.labels, 1.0)]


class HistogramQuantile(Node):
    def __init__(self, q: Node, arg: Node):
        self.q, self.arg = q, arg

    def eval(self, ctx: EvaluationContext) -> Vector:
        q = self.q.scalar(ctx)
        groups: dict[Labels, tuple[Labels, list[tuple[float, float]]]] = {}
        for labels, v in self.arg.vector(ctx):
            d = dict(labels)
            upper = parse_le(d.get("le"))
            if upper is None:
                continue
            key = tuple(p for p in labels if p[0] != "le")
            group = groups.get(key)
            if group is None:
                group = groups[key] = (tuple(p for p in key if p[0] != NAME), [])
            group[1].append((upper, v))
        return check_unique([(out, bucket_quantile(q, buckets)) for out, buckets in groups.values()])


class Negate(Node):
    def __init__(self, arg: Node):
        self.arg = arg
        self.is_scalar = arg.is_scalar

    def eval(self, ctx: EvaluationContext) -> Value:
        value = self.arg.eval(ctx)
        if isinstance(value, float):
            return -value
        return check_unique([(drop_name(labels), -v) for labels, v in value])


class Aggregate(Node):
    def __init__(self, op: str, arg: Node, labels: list[str] | None, without: bool):
        self.op, self.arg, self.without = op, arg, without
        self.grouping = list(labels or [])
        self.grouping_set = frozenset(self.grouping)

    def _group_of(self, labels: Labels) -> Labels:
        if self.without:
            drop = self.grouping_set
            return tuple(p for p in labels if p[0] not in drop and p[0] != NAME)
        keep = self.grouping_set
        return tuple(p for p in labels if p[0] in keep)

    def eval(self, ctx: EvaluationContext) -> Vector:
        vec = self.arg.vector(ctx)
        op = self.op
        groups: dict[Labels, list[float]] = {}  # [value, count]
        group_of = self._group_of
        if not self.without and not self.grouping:
            group_of = lambda labels: ()  # noqa: E731 - the by () / no-clause case: one group
        for labels, v in vec:
            key = group_of(labels)
            g = groups.get(key)
            if g is None:
                groups[key] = [v, 1.0]
                continue
            if op == "sum":
                g[0] += v
            elif op == "avg":
                g[1] += 1
                mean = g[0]
                if math.isinf(mean):
                    if math.isinf(v) and (mean > 0) == (v > 0):
                        continue
                    if not math.isinf(v) and not math.isnan(v):
                        continue
                g[0] = mean + (v / g[1] - mean / g[1])
            elif op == "max":
                if g[0] < v or math.isnan(g[0]):
                    g[0] = v
            elif op == "min":
                if g[0] > v or math.isnan(g[0]):
                    g[0] = v
            else:  # count
                g[1] += 1
        if op == "count":
            return [(key, g[1]) for key, g in groups.items()]
        return [(key, g[0]) for key, g in groups.items()]


class Binary(Node):
    def __init__(self, op: str, lhs: Node, rhs: Node, modifier: Any):
        self.op, self.lhs, self.rhs = op, lhs, rhs
        self.is_scalar = lhs.is_scalar and rhs.is_scalar
        self.return_bool = bool(modifier.return_bool) if modifier is not None else False
        matching = modifier.matching if modifier is not None else None
        self.on = matching is not None and matching.type == pp.LabelModifierType.Include
        self.matching_labels = list(matching.labels) if matching is not None else []
        self.signature = signature(frozenset(self.matching_labels), self.on)
        self.arith = ARITH.get(op)
        self.compare = COMPARE.get(op)
        self.drops_name = self.arith is not None or self.return_bool

    def eval(self, ctx: EvaluationContext) -> Value:
        left = self.lhs.eval(ctx)
        right = self.rhs.eval(ctx)
        if isinstance(left, float) and isinstance(right, float):
            if self.arith is not None:
                return self.arith(left, right)
            compare = self.compare
            if compare is None:  # pragma: no cover - the parser refuses set operators on scalars
                raise EvalError(f"operator {self.op} between scalars")
            return 1.0 if compare(left, right) else 0.0
        if isinstance(right, float):
            return check_unique(self._vector_scalar(left, right, swap=False))  # type: ignore[arg-type]
        if isinstance(left, float):
            return check_unique(self._vector_scalar(right, left, swap=True))
        if self.op in SET_OPS:
            return self._set_op(left, right)
        return check_unique(self._vector_vector(left, right))

    def _vector_scalar(self, vec: Vector, scalar: float, *, swap: bool) -> Vector:
        out: Vector = []
        arith, compare, return_bool = self.arith, self.compare, self.return_bool
        for labels, v in vec:
            lv, rv = (scalar, v) if swap else (v, scalar)
            if arith is not None:
                out.append((drop_name(labels), arith(lv, rv)))
                continue
            keep = compare(lv, rv)  # type: ignore[misc]
            if return_bool:
                out.append((drop_name(labels), 1.0 if keep else 0.0))
            elif keep:
                out.append((labels, v))  # the vector's value, even with the scalar on the left
        return out

    def _vector_vector(self, lhs: Vector, rhs: Vector) -> Vector:
        sig = self.signature
        right: dict[Labels, tuple[Labels, float]] = {}
        for labels, v in rhs:
            key = sig(labels)
            if key in right:
                raise EvalError(
                    f"found duplicate series for the match group {labels_str(key)} on the right "
                    f"hand-side of the operation: [{labels_str(labels)}, {labels_str(right[key][0])}]"
                    ";many-to-many matching not allowed: matching labels must be unique on one side"
                )
            right[key] = (labels, v)
        matched: set[Labels] = set()
        out: Vector = []
        arith, compare, return_bool = self.arith, self.compare, self.return_bool
        keep_set = frozenset(self.matching_labels)
        for labels, lv in lhs:
            key = sig(labels)
            hit = right.get(key)
            if hit is None:
                continue
            rv = hit[1]
            if arith is not None:
                value, keep = arith(lv, rv), True
            else:
                value, keep = lv, compare(lv, rv)  # type: ignore[misc]
            if return_bool:
                value, keep = (1.0 if keep else 0.0), True
            if not keep:
                continue
            if key in matched:
                raise EvalError(
                    "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)"
                )
            matched.add(key)
            if self.on:
                result = tuple(p for p in labels if p[0] in keep_set)
            else:
                result = tuple(p for p in labels if p[0] not in keep_set)
            if self.drops_name:
                result = drop_name(result)
            out.append((result, value))
        return out

    def _set_op(self, lhs: Vector, rhs: Vector) -> Vector:
        sig = self.signature
        if self.op == "and":
            if not lhs or not rhs:
                return []
            right = {sig(labels) for labels, _ in rhs}
            return [s for s in lhs if sig(s[0]) in right]
        if self.op == "or":
            if not lhs:
                return list(rhs)
            if not rhs:
                return list(lhs)
            left = {sig(labels) for labels, _ in lhs}
            return check_unique(list(lhs) + [s for s in rhs if sig(s[0]) not in left])
        right = {sig(labels) for labels, _ in rhs}  # unless
        return [s for s in lhs if sig(s[0]) not in right]
