"""PromQL's aggregation operators, as Prometheus 2.42's ``aggregation`` (promql/engine.go) runs them.

``sum avg min max count group stddev stdvar topk bottomk quantile count_values``
with ``by``/``without``; groups come out in the order of their first member, and
``topk``/``bottomk`` keep Go's heap (so ties resolve as in Prometheus)::

    Aggregate("topk", arg, ["job"], without=False, param=Number(3))
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import TYPE_CHECKING

from mlinfra.promql.functions import quantile
from mlinfra.promql.gonum import go_float_f
from mlinfra.promql.interface import EvalError
from mlinfra.promql.parse import NAME, Labels
from mlinfra.promql.plan import Node, Vector

if TYPE_CHECKING:
    from mlinfra.promql.storage import EvaluationContext

__all__ = ["AGGREGATIONS", "Aggregate"]

AGGREGATIONS = frozenset(
    {"sum", "avg", "min", "max", "count", "group", "stddev", "stdvar", "topk", "bottomk", "quantile"}
    | {"count_values"}
)
_SIMPLE = frozenset({"sum", "avg", "min", "max", "count", "group"})
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_I64 = 2.0**63


class Aggregate(Node):
    def __init__(
        self, op: str, arg: Node, labels: list[str] | None, without: bool, param: Node | str | None = None
    ):
        self.op, self.arg, self.without = op, arg, without
        self.grouping = list(labels or [])
        self.grouping_set = frozenset(self.grouping)
        self.param = param

    def _grouper(self, grouping: frozenset[str]) -> Callable[[Labels], Labels]:
        if self.without:
            return lambda labels: tuple(p for p in labels if p[0] not in grouping and p[0] != NAME)
        if not grouping:
            return lambda labels: ()
        return lambda labels: tuple(p for p in labels if p[0] in grouping)

    def eval(self, ctx: EvaluationContext) -> Vector:
        vec = self.arg.vector(ctx)
        op = self.op
        if op in _SIMPLE:
            return self._simple(vec)
        if op in ("stddev", "stdvar"):
            return self._variance(vec)
        if op == "count_values":
            return self._count_values(vec)
        param = self.param
        value = param.scalar(ctx) if isinstance(param, Node) else math.nan
        if op == "quantile":
            return [(key, quantile(value, vs)) for key, vs in self._groups(vec).items()]
        if not -_I64 <= value < _I64:  # convertibleToInt64; NaN is refused there too
            raise EvalError(f"Scalar value {value:g} overflows int64")
        return _top(vec, int(value), self._grouper(self.grouping_set), bottom=op == "bottomk")

    def _groups(self, vec: Vector) -> dict[Labels, list[float]]:
        group_of = self._grouper(self.grouping_set)
        groups: dict[Labels, list[float]] = {}
        for labels, v in vec:
            groups.setdefault(group_of(labels), []).append(v)
        return groups

    def _simple(self, vec: Vector) -> Vector:
        op = self.op
        groups: dict[Labels, list[float]] = {}  # [value, count]
        group_of = self._grouper(self.grouping_set)
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
            else:  # count, group
                g[1] += 1
        if op == "count":
            return [(key, g[1]) for key, g in groups.items()]
        if op == "group":
            return [(key, 1.0) for key in groups]
        return [(key, g[0]) for key, g in groups.items()]

    def _variance(self, vec: Vector) -> Vector:
        groups: dict[Labels, list[float]] = {}  # [sum of squares, mean, count]
        group_of = self._grouper(self.grouping_set)
        for labels, v in vec:
            key = group_of(labels)
            g = groups.get(key)
            if g is None:
                groups[key] = [0.0, v, 1.0]
                continue
            g[2] += 1
            delta = v - g[1]
            g[1] += delta / g[2]
            g[0] += delta * (v - g[1])
        if self.op == "stdvar":
            return [(key, g[0] / g[2]) for key, g in groups.items()]
        return [(key, math.sqrt(g[0] / g[2]) if g[0] / g[2] >= 0 else math.nan) for key, g in groups.items()]

    def _count_values(self, vec: Vector) -> Vector:
        value_label = self.param if isinstance(self.param, str) else ""
        if not _LABEL_NAME.fullmatch(value_label):
            raise EvalError(f"invalid label name {value_label!r}")
        grouping = self.grouping_set if self.without else self.grouping_set | {value_label}
        group_of = self._grouper(grouping)
        counts: dict[Labels, float] = {}
        for labels, v in vec:
            d = dict(labels)
            d[value_label] = go_float_f(v)
            key = group_of(tuple(sorted(d.items())))
            counts[key] = counts.get(key, 0.0) + 1
        return list(counts.items())


def _less(a: float, b: float, bottom: bool) -> bool:
    """vectorByValueHeap.Less (topk) and vectorByReverseValueHeap.Less (bottomk): NaN is least."""
    if math.isnan(a):
        return True
    return a > b if bottom else a < b


def _up(h: list[tuple[Labels, float]], j: int, bottom: bool) -> None:
    while True:
        i = int((j - 1) / 2)  # Go's division truncates: the root's parent is itself
        if i == j or not _less(h[j][1], h[i][1], bottom):
            break
        h[i], h[j] = h[j], h[i]
        j = i


def _down(h: list[tuple[Labels, float]], i: int, n: int, bottom: bool) -> None:
    while True:
        j1 = 2 * i + 1
        if j1 >= n:
            break
        j = j1
        j2 = j1 + 1
        if j2 < n and _less(h[j2][1], h[j1][1], bottom):
            j = j2
        if not _less(h[j][1], h[i][1], bottom):
            break
        h[i], h[j] = h[j], h[i]
        i = j


def _top(vec: Vector, k: int, group_of: Callable[[Labels], Labels], *, bottom: bool) -> Vector:
    """topk/bottomk with Go's container/heap, so that ties keep the same series as Prometheus."""
    if k < 1:
        return []
    heaps: dict[Labels, list[tuple[Labels, float]]] = {}
    for labels, v in vec:
        key = group_of(labels)
        h = heaps.get(key)
        if h is None:
            heaps[key] = [(labels, v)]
            continue
        top = h[0][1]
        if len(h) < k or (top > v if bottom else top < v) or math.isnan(top):
            if len(h) == k:
                if k == 1:
                    h[0] = (labels, v)
                    continue
                n = len(h) - 1
                h[0], h[n] = h[n], h[0]
                _down(h, 0, n, bottom)
                h.pop()
            h.append((labels, v))
            _up(h, len(h) - 1, bottom)
    out: Vector = []
    for h in heaps.values():
        # Output order: highest first for topk, lowest first for bottomk (NaN last).
        out.extend(sorted(h, key=lambda s: (math.isnan(s[1]), s[1] if bottom else -s[1])))
    return out
