"""The local engine's plan: a tree of nodes, each evaluating to a vector or a scalar.

:func:`mlinfra.promql.compile.compile_expr` builds the tree from the parser's syntax
tree; :class:`~mlinfra.promql.engine.LocalEngine` evaluates its root::

    root = Binary(">", InstantSelector(selector), Number(85.0), modifier=None)
    root.eval(ctx)     # [(labels, value), ...] with ctx an EvaluationContext

Every node follows Prometheus 2.42's semantics (promql/engine.go, functions.go,
aggregations); a vector is a list of ``(Labels, value)`` pairs. This module holds
the leaves (numbers, selectors, range vectors: selectors and subqueries) and the
range functions; :mod:`~mlinfra.promql.binary`, :mod:`~mlinfra.promql.aggregations`
and :mod:`~mlinfra.promql.functions_instant` the rest.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import promql_parser as pp

from mlinfra.promql.functions import RangeFn
from mlinfra.promql.interface import EvalError
from mlinfra.promql.parse import NAME, At, Labels, Points, Selector, absent_labels, at_modifier, to_ms
from mlinfra.samples import is_stale_nan

if TYPE_CHECKING:
    from mlinfra.promql.storage import EvaluationContext

__all__ = [
    "AbsentOverTime",
    "InstantSelector",
    "Negate",
    "Node",
    "NotInstant",
    "Number",
    "RangeFunction",
    "RangeSource",
    "SelectorRange",
    "Subquery",
    "Value",
    "Vector",
    "check_unique",
    "drop_name",
    "labels_str",
]

Vector = list[tuple[Labels, float]]
Value = Vector | float
# A range vector: the window's bounds (ms), its length, and each series' labels and points.
Matrix = tuple[int, int, int, list[tuple[Labels, Points]]]


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


class Node:
    is_scalar = False

    def eval(self, ctx: EvaluationContext) -> Value:
        raise NotImplementedError

    def children(self) -> Iterator[Node]:
        for child in vars(self).values():
            if isinstance(child, Node):
                yield child
            elif isinstance(child, list | tuple):
                yield from (c for c in child if isinstance(c, Node))

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

    def samples(self, ctx: EvaluationContext) -> list[tuple[Labels, int, float]]:
        """Each series' latest sample in the lookback window: (labels, its timestamp, value).

        A series whose latest sample is a staleness marker has none (engine.go,
        ``vectorSelectorSingle``: ``value.IsStaleNaN`` -> not ok).
        """
        hi = self.sel.ref_ms(ctx.t_ms, ctx.query_ms)
        refs, points = ctx.points(self.sel, hi - ctx.lookback_ms, hi)
        out = []
        for r in refs:
            pts = points.get(r.id)
            if pts:
                t, v = pts[-1]
                if v == v or not is_stale_nan(v):
                    out.append((r.labels, t, v))
        return out

    def eval(self, ctx: EvaluationContext) -> Vector:
        hi = self.sel.ref_ms(ctx.t_ms, ctx.query_ms)
        refs, points = ctx.points(self.sel, hi - ctx.lookback_ms, hi)
        out: Vector = []
        for r in refs:
            pts = points.get(r.id)
            if pts:
                v = pts[-1][1]
                if v == v or not is_stale_nan(v):
                    out.append((r.labels, v))
        return out


# ====================================================================== range vectors


class RangeSource(Node):
    """A range vector: a range selector or a subquery."""

    def matrix(self, ctx: EvaluationContext) -> Matrix:
        raise NotImplementedError

    def eval(self, ctx: EvaluationContext) -> Value:  # pragma: no cover - the compiler refuses bare ranges
        raise EvalError("a range vector is not an instant vector or a scalar")


class SelectorRange(RangeSource):
    def __init__(self, ms: pp.MatrixSelector):
        self.sel = Selector(ms.vector_selector)
        self.range_ms = to_ms(ms.range)

    def matrix(self, ctx: EvaluationContext) -> Matrix:
        hi = self.sel.ref_ms(ctx.t_ms, ctx.query_ms)
        lo = hi - self.range_ms
        refs, points = ctx.points(self.sel, lo, hi)
        series = []
        stale_ids = ctx.stale_ids
        for r in refs:
            pts = points.get(r.id)
            if pts and r.id in stale_ids:
                # Range vectors leave staleness markers out (engine.go, matrixIterSlice).
                pts = [p for p in pts if not is_stale_nan(p[1])]
            if pts:
                series.append((r.labels, pts))
        return lo, hi, self.range_ms, series


def _go_div(a: int, b: int) -> int:
    """Go's integer division (truncates toward zero)."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


class Subquery(RangeSource):
    """``expr[range:step]``: ``expr`` at every multiple of ``step`` inside the range (engine.go)."""

    def __init__(self, inner: Node, sq: pp.SubqueryExpr):
        self.inner = inner
        self.range_ms = to_ms(sq.range) if sq.range is not None else 0
        # Without a step (``x[1h:]``), the engine's default (Prometheus's evaluation interval).
        self.step_ms = to_ms(sq.step) if sq.step is not None else None
        self.offset_ms = to_ms(sq.offset) if sq.offset is not None else 0
        self.at: At | None = at_modifier(sq.at)

    def steps(self, ctx: EvaluationContext) -> tuple[int, range]:
        end = (ctx.t_ms if self.at is None else self.at.ms(ctx.query_ms)) - self.offset_ms
        step = self.step_ms or ctx.subquery_step_ms
        start = step * _go_div(end - self.range_ms, step)
        if start < end - self.range_ms:
            start += step
        return end, range(start, end + 1, step)

    def matrix(self, ctx: EvaluationContext) -> Matrix:
        end, steps = self.steps(ctx)
        if steps:
            _prefetch(self.inner, ctx, steps[0], steps[-1])
        series: dict[Labels, Points] = {}
        inner = self.inner
        for ts in steps:
            value = inner.eval(ctx.at_time(ts))
            if isinstance(value, float):
                series.setdefault((), []).append((ts, value))
                continue
            for labels, v in value:
                pts = series.get(labels)
                if pts is None:
                    series[labels] = [(ts, v)]
                else:
                    pts.append((ts, v))
        return end - self.range_ms, end, self.range_ms, list(series.items())


def _prefetch(node: Node, ctx: EvaluationContext, first: int, last: int) -> None:
    """Read every selector under ``node`` once for all the steps of a subquery (not those with ``@``)."""
    if isinstance(node, InstantSelector | SelectorRange):
        sel = node.sel
        if sel.at is None and sel.name is not None:
            span = node.range_ms if isinstance(node, SelectorRange) else ctx.lookback_ms
            ctx.prefetch(sel, first - sel.offset_ms - span, last - sel.offset_ms)
        return
    if isinstance(node, Subquery):
        return
    for child in node.children():
        _prefetch(child, ctx, first, last)


class RangeFunction(Node):
    """A function over a range vector, ``fn(range, scalars...)``; the name is dropped but by last_over_time."""

    def __init__(self, fn: RangeFn, source: RangeSource, params: list[Node], *, keep_name: bool = False):
        self.fn = fn
        self.source = source
        self.params = params
        self.keep_name = keep_name

    def eval(self, ctx: EvaluationContext) -> Vector:
        lo, hi, range_ms, series = self.source.matrix(ctx)
        extra = (float(ctx.t_ms), *(p.scalar(ctx) for p in self.params))
        fn = self.fn
        out: Vector = []
        keep = self.keep_name
        for labels, pts in series:
            value = fn(pts, lo, hi, range_ms, extra)
            if value is not None:
                out.append((labels if keep else drop_name(labels), value))
        return check_unique(out)


class AbsentOverTime(Node):
    def __init__(self, source: RangeSource, raw_arg: Any):
        self.source = source
        self.labels = absent_labels(raw_arg)

    def eval(self, ctx: EvaluationContext) -> Vector:
        series = self.source.matrix(ctx)[3]
        if series:
            check_unique([(drop_name(labels), 1.0) for labels, _ in series])
            return []
        return [(self.labels, 1.0)]


class NotInstant(Node):
    """A value a rule cannot have (a string, a range vector): Prometheus accepts the rule file and
    fails each evaluation, and so does the local engine."""

    def __init__(self, kind: str):
        self.kind = kind

    def eval(self, ctx: EvaluationContext) -> Value:
        raise EvalError(f"rule result is not a vector or scalar: the expression's value is {self.kind}")


class Negate(Node):
    def __init__(self, arg: Node):
        self.arg = arg
        self.is_scalar = arg.is_scalar

    def eval(self, ctx: EvaluationContext) -> Value:
        value = self.arg.eval(ctx)
        if isinstance(value, float):
            return -value
        return check_unique([(drop_name(labels), -v) for labels, v in value])
