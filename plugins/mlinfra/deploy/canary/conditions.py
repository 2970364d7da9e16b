"""Analysis conditions (``result < 0.01``): a small, safe expression language.

A condition is a Python expression parsed with :mod:`ast` and checked against a
whitelist before it is ever evaluated; evaluation walks the tree itself (nothing is
compiled or passed to ``eval``), so a fleet file cannot run code.

Allowed: the name ``result`` (a number, or a list of numbers when a query returns
several series), numbers, ``True``/``False``, comparisons (``< <= > >= == !=``, chained
too), ``and`` / ``or`` / ``not``, ``+ - * /``, indexing ``result[0]`` (negative indices
too), and the functions ``len``, ``abs``, ``min``, ``max``.

>>> Condition.parse("result < 0.01").holds(0.002)
True
>>> Condition.parse("len(result) == 2 and max(result) <= 1").holds([0.5, 0.9])
True
>>> Condition.parse("result.__class__")
Traceback (most recent call last):
...
mlinfra.exceptions.ConditionError: condition 'result.__class__': attribute access (.__class__) is not allowed; ...
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from mlinfra.exceptions import ConditionError

Result = float | list[float]

ALLOWED = (
    "allowed: result, numbers, True/False, comparisons (< <= > >= == !=), and/or/not, "
    "+ - * /, result[i], len(), abs(), min(), max()"
)
MAX_LENGTH = 500

_COMPARE: dict[type[ast.cmpop], Callable[[Any, Any], bool]] = {
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
}
_ARITHMETIC: dict[type[ast.operator], Callable[[float, float], float]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
}
_FUNCTIONS = ("len", "abs", "min", "max")
# Nodes allowed wherever they appear (their operands are checked node by node).
_STRUCTURAL: tuple[type[ast.AST], ...] = (
    ast.Expression, ast.BoolOp, ast.And, ast.Or, ast.Load, ast.Not, ast.USub, ast.UAdd, *_COMPARE, *_ARITHMETIC,
)  # fmt: skip
# Nodes whose value is a truth value: a condition must be one of these at its top.
_BOOLEAN = (ast.Compare, ast.BoolOp)


@dataclass(frozen=True)
class Condition:
    """A parsed, checked condition; :meth:`holds` evaluates it for one ``result``.

    ``Condition.parse`` raises :class:`~mlinfra.exceptions.ConditionError` for anything
    outside the grammar; ``holds`` raises it when this ``result`` does not fit the
    expression (``result[3]`` of a two-element list, a list compared with a number).
    """

    text: str
    tree: ast.Expression = field(repr=False, compare=False)

    @classmethod
    def parse(cls, text: str) -> Condition:
        return _parse(text)

    def holds(self, result: Result) -> bool:
        value = _Evaluator(self.text, result).visit(self.tree.body)
        if not isinstance(value, bool):
            raise ConditionError(f"condition {self.text!r}: gave {value!r}, not True or False")
        return value


@lru_cache(maxsize=512)
def _parse(text: str) -> Condition:
    if not isinstance(text, str) or not text.strip():
        raise ConditionError(f"a condition must be a non-empty expression like 'result < 0.01', got {text!r}")
    if len(text) > MAX_LENGTH:
        raise ConditionError(f"condition {text[:40]!r}...: longer than {MAX_LENGTH} characters")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as e:
        raise ConditionError(f"condition {text!r}: not a valid expression ({e.msg}); {ALLOWED}") from None
    callees = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    for node in ast.walk(tree):
        problem = _refusal(node)
        if isinstance(node, ast.Name) and node.id in _FUNCTIONS and id(node) not in callees:
            problem = f"{node.id} without calling it"

        if problem:
            raise ConditionError(f"condition {text!r}: {problem} is not allowed; {ALLOWED}")
    body = tree.body
    boolean = isinstance(body, _BOOLEAN) or (isinstance(body, ast.UnaryOp) and isinstance(body.op, ast.Not))
    if not boolean and not (isinstance(body, ast.Constant) and isinstance(body.value, bool)):
        raise ConditionError(
            f"condition {text!r}: must be a comparison or a combination of comparisons "
            "(like 'result < 0.01'), not a bare value"
        )
    return Condition(text, tree)


def _refusal(node: ast.AST) -> str | None:
    """What is wrong with one node of a condition's tree, or None when the grammar allows it."""
    if isinstance(node, ast.Name):
        if node.id in _FUNCTIONS:
            return None  # only as a call's function: _parse checks that
        return None if node.id == "result" else f"the name {node.id!r} (only 'result' is known)"
    if isinstance(node, ast.Attribute):
        return f"attribute access (.{node.attr})"
    if isinstance(node, ast.Call):
        if not (isinstance(node.func, ast.Name) and node.func.id in _FUNCTIONS):
            return f"calling {ast.unparse(node.func)}() (only {', '.join(_FUNCTIONS)})"
        if node.keywords or any(isinstance(a, ast.Starred) for a in node.args) or not node.args:
            return f"{node.func.id}() with keywords, * arguments or no argument"
        return None
    if isinstance(node, ast.Constant):
        ok = isinstance(node.value, int | float)
        return None if ok else f"the constant {node.value!r} (only numbers and True/False)"
    if isinstance(node, ast.BinOp):
        return None if type(node.op) in _ARITHMETIC else f"the operator {type(node.op).__name__}"
    if isinstance(node, ast.UnaryOp):
        return None if isinstance(node.op, ast.Not | ast.USub | ast.UAdd) else "the operator ~"
    if isinstance(node, ast.Compare):
        bad = [type(op).__name__ for op in node.ops if type(op) not in _COMPARE]
        return f"the comparison {bad[0]} (in, is)" if bad else None
    if isinstance(node, ast.Subscript):
        return "slicing" if isinstance(node.slice, ast.Slice) else None
    return None if isinstance(node, _STRUCTURAL) else f"{type(node).__name__} ({ast.unparse(node)})"


class _Evaluator:
    """Walks a checked tree; every operation checks the types it is given."""

    def __init__(self, text: str, result: Result):
        self.text = text
        self.result = list(result) if isinstance(result, list | tuple) else result

    def fail(self, problem: str) -> ConditionError:
        return ConditionError(f"condition {self.text!r} with result={self.result!r}: {problem}")

    def number(self, value: Any, what: str) -> float:
        if isinstance(value, list):
            raise self.fail(f"{what} is a list, not a number (use result[i], len(), min() or max())")
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(f"{what} is {value!r}, not a number")
        return value

    def visit(self, node: ast.expr) -> Any:
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name):
            if node.id != "result":
                raise self.fail(f"{node.id} is not a value")  # unreachable after parsing
            return self.result
        if isinstance(node, ast.BoolOp):
            if isinstance(node.op, ast.And):
                return all(self.truth(v) for v in node.values)
            return any(self.truth(v) for v in node.values)
        if isinstance(node, ast.UnaryOp):
            if isinstance(node.op, ast.Not):
                return not self.truth(node.operand)
            value = self.number(self.visit(node.operand), ast.unparse(node.operand))
            return -value if isinstance(node.op, ast.USub) else value
        if isinstance(node, ast.BinOp):
            return self.arithmetic(node)
        if isinstance(node, ast.Compare):
            return self.compare(node)
        if isinstance(node, ast.Subscript):
            return self.index(node)
        if isinstance(node, ast.Call):
            return self.call(node)
        raise self.fail(f"{type(node).__name__} is not allowed")  # unreachable after parsing

    def truth(self, node: ast.expr) -> bool:
        value = self.visit(node)
        if not isinstance(value, bool):
            raise self.fail(f"{ast.unparse(node)} is not True or False (compare it with something)")
        return value

    def arithmetic(self, node: ast.BinOp) -> float:
        left = self.number(self.visit(node.left), ast.unparse(node.left))
        right = self.number(self.visit(node.right), ast.unparse(node.right))
        if isinstance(node.op, ast.Div) and right == 0:
            raise self.fail(f"division by zero in {ast.unparse(node)}")
        return _ARITHMETIC[type(node.op)](left, right)

    def compare(self, node: ast.Compare) -> bool:
        left = self.number(self.visit(node.left), ast.unparse(node.left))
        for op, right_node in zip(node.ops, node.comparators, strict=True):
            right = self.number(self.visit(right_node), ast.unparse(right_node))
            if not _COMPARE[type(op)](left, right):
                return False
            left = right
        return True

    def index(self, node: ast.Subscript) -> float:
        values = self.visit(node.value)
        if not isinstance(values, list):
            raise self.fail(f"{ast.unparse(node.value)} is a number, it cannot be indexed")
        i = self.visit(node.slice)
        if isinstance(i, bool) or not isinstance(i, int):
            raise self.fail(f"the index {ast.unparse(node.slice)} is not an integer")
        if not -len(values) <= i < len(values):
            raise self.fail(f"{ast.unparse(node)}: index out of range (the result has {len(values)} values)")
        return float(values[i])

    def call(self, node: ast.Call) -> float | int:
        name = node.func.id if isinstance(node.func, ast.Name) else ""
        args = [self.visit(a) for a in node.args]
        if name == "len":
            if len(args) != 1 or not isinstance(args[0], list):
                raise self.fail("len() takes the list result")
            return len(args[0])
        if name == "abs":
            if len(args) != 1:
                raise self.fail("abs() takes one number")
            return abs(self.number(args[0], ast.unparse(node.args[0])))
        if name in ("min", "max"):
            values = args[0] if len(args) == 1 and isinstance(args[0], list) else args
            numbers = [self.number(v, f"an argument of {name}()") for v in values]
            if not numbers:
                raise self.fail(f"{name}() of an empty result")
            return min(numbers) if name == "min" else max(numbers)
        raise self.fail(f"calling {name}() is not allowed")


def is_number_result(value: Any) -> bool:
    """Whether ``value`` is a result a condition can be evaluated on: a finite number or a list of them."""
    if isinstance(value, list):
        return all(is_number_result(v) and not isinstance(v, list) for v in value)
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
