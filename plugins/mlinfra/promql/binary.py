"""Binary operators of PromQL: arithmetic, comparisons (``bool``), set operators, vector matching.

Prometheus 2.42's ``VectorBinop``, ``VectorscalarBinop`` and the set operators
(promql/engine.go), with ``on``/``ignoring`` and ``group_left``/``group_right``
(many-to-one matching, copying the listed labels from the "one" side)::

    Binary("*", lhs, rhs, modifier)      # modifier: the parser's BinModifier or None
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import promql_parser as pp

from mlinfra.promql.gonum import go_div, go_mod
from mlinfra.promql.goport import go_atan2, go_pow
from mlinfra.promql.interface import EvalError
from mlinfra.promql.parse import NAME, Labels
from mlinfra.promql.plan import Node, Value, Vector, check_unique, drop_name, labels_str

if TYPE_CHECKING:
    from mlinfra.promql.storage import EvaluationContext

__all__ = ["ARITH", "COMPARE", "SET_OPS", "Binary"]

ARITH: dict[str, Callable[[float, float], float]] = {
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "*": lambda a, b: a * b,
    "/": go_div,
    "%": go_mod,
    "^": go_pow,
    "atan2": go_atan2,
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
_DROPS_NAME = frozenset({"+", "-", "*", "/", "%", "^"})


def signature(names: frozenset[str], on: bool) -> Callable[[Labels], Labels]:
    """Prometheus's matching signature: the ``on`` labels, or all but ``ignoring`` ones and the name."""
    if on:
        return lambda labels: tuple(p for p in labels if p[0] in names)
    excluded = names | {NAME}
    return lambda labels: tuple(p for p in labels if p[0] not in excluded)


class Binary(Node):
    def __init__(self, op: str, lhs: Node, rhs: Node, modifier: Any):
        self.op, self.lhs, self.rhs = op, lhs, rhs
        self.is_scalar = lhs.is_scalar and rhs.is_scalar
        self.return_bool = bool(modifier.return_bool) if modifier is not None else False
        matching = modifier.matching if modifier is not None else None
        self.on = matching is not None and matching.type == pp.LabelModifierType.Include
        self.matching_labels = list(matching.labels) if matching is not None else []
        self.matching_set = frozenset(self.matching_labels)
        self.signature = signature(self.matching_set, self.on)
        card = modifier.card if modifier is not None else None
        self.many_to_one = card is not None and card == pp.VectorMatchCardinality.ManyToOne
        self.one_to_many = card is not None and card == pp.VectorMatchCardinality.OneToMany
        self.include = list(modifier.group_labels or []) if self.many_to_one or self.one_to_many else []
        self.arith = ARITH.get(op)
        self.compare = COMPARE.get(op)
        # shouldDropMetricName: arithmetic drops it, but atan2 not in 2.42; comparisons only with bool.
        self.drops_name = op in _DROPS_NAME

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
        drops_name = self.drops_name
        for labels, v in vec:
            lv, rv = (scalar, v) if swap else (v, scalar)
            if arith is not None:
                out.append((drop_name(labels) if drops_name else labels, arith(lv, rv)))
                continue
            keep = compare(lv, rv)  # type: ignore[misc]
            if return_bool:
                out.append((drop_name(labels), 1.0 if keep else 0.0))
            elif keep:
                out.append((labels, v))  # the vector's value, even with the scalar on the left
        return out

    def _index_one_side(self, one: Vector) -> dict[Labels, tuple[Labels, float]]:
        sig = self.signature
        index: dict[Labels, tuple[Labels, float]] = {}
        for labels, v in one:
            key = sig(labels)
            if key in index:
                side = "left" if self.one_to_many else "right"
                raise EvalError(
                    f"found duplicate series for the match group {labels_str(key)} on the {side} "
                    f"hand-side of the operation: [{labels_str(labels)}, {labels_str(index[key][0])}]"
                    ";many-to-many matching not allowed: matching labels must be unique on one side"
                )
            index[key] = (labels, v)
        return index

    def _vector_vector(self, lhs: Vector, rhs: Vector) -> Vector:
        if self.one_to_many:
            lhs, rhs = rhs, lhs
        sig = self.signature
        right = self._index_one_side(rhs)
        matched: dict[Labels, set[Labels] | None] = {}
        out: Vector = []
        arith, compare, return_bool = self.arith, self.compare, self.return_bool
        one_to_one = not (self.many_to_one or self.one_to_many)
        for labels, lv in lhs:
            key = sig(labels)
            hit = right.get(key)
            if hit is None:
                continue
            r_labels, rv = hit
            vl, vr = (rv, lv) if self.one_to_many else (lv, rv)
            if arith is not None:
                value, keep = arith(vl, vr), True
            else:
                value, keep = vl, compare(vl, vr)  # type: ignore[misc]
            if return_bool:
                value, keep = (1.0 if keep else 0.0), True
            if not keep:
                continue
            metric = self._result_metric(labels, r_labels)
            if one_to_one:
                if key in matched:
                    raise EvalError(
                        "multiple matches for labels: many-to-one matching must be explicit "
                        "(group_left/group_right)"
                    )
                matched[key] = None
            else:
                seen = matched.setdefault(key, set())
                if seen is None or metric in seen:
                    raise EvalError("multiple matches for labels: grouping labels must ensure unique matches")
                seen.add(metric)
            out.append((metric, value))
        return out

    def _result_metric(self, labels: Labels, one: Labels) -> Labels:
        """Prometheus's ``resultMetric``: the "many" side's labels, matched and copied as modified."""
        if not self.include and not (self.many_to_one or self.one_to_many):
            keep_set = self.matching_set
            if self.on:
                result = tuple(p for p in labels if p[0] in keep_set)
            else:
                result = tuple(p for p in labels if p[0] not in keep_set)
            return drop_name(result) if self.drops_name or self.return_bool else result
        d = dict(labels)
        if self.drops_name:
            d.pop(NAME, None)
        if not (self.many_to_one or self.one_to_many):
            if self.on:
                keep = set(self.matching_labels)
                d = {k: v for k, v in d.items() if k in keep}
            else:
                for name in self.matching_labels:
                    d.pop(name, None)
        if self.include:
            source = dict(one)
            for name in self.include:
                value = source.get(name, "")
                if value:
                    d[name] = value
                else:
                    d.pop(name, None)
        if self.return_bool:
            d.pop(NAME, None)
        return tuple(sorted(d.items()))

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
