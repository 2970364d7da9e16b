"""Go's ``math`` functions as PromQL's instant-vector functions call them, never raising.

Python's ``math`` raises where Go returns a value (``log(0)`` is -Inf in Go, ``acos(2)``
NaN, ``exp(1000)`` +Inf), and the C library's results differ from Go's own
implementations in the last bit; :mod:`mlinfra.promql.goport` holds Go's algorithms
ported, so every function here matches Prometheus to the bit::

    >>> go_ceil(-0.5), MATH_FUNCTIONS["ln"](0.0), MATH_FUNCTIONS["acos"](2.0)
    (-0.0, -inf, nan)
"""

from __future__ import annotations

import math
from collections.abc import Callable

from mlinfra.promql import goport as go

__all__ = ["MATH_FUNCTIONS", "go_ceil", "go_floor", "kahan_inc"]

_NAN = math.nan


def go_floor(x: float) -> float:
    """Go's ``math.Floor``: ±0, ±Inf and NaN are returned as they are."""
    if x == 0 or not math.isfinite(x):
        return x
    return float(math.floor(x))


def go_ceil(x: float) -> float:
    """Go's ``math.Ceil`` (``-Floor(-x)``: ``Ceil(-0.5)`` is -0)."""
    return -go_floor(-x)


def kahan_inc(inc: float, total: float, c: float) -> tuple[float, float]:
    """Prometheus's ``kahanSumInc``: Kahan-Babuska (Neumaier) compensated summation."""
    t = total + inc
    if abs(total) >= abs(inc):
        c += (total - t) + inc
    else:
        c += (inc - t) + total
    return t, c


def _sqrt(x: float) -> float:
    return _NAN if x < 0 else math.sqrt(x)  # the SQRTSD instruction: correctly rounded, as Python's


def _sgn(v: float) -> float:
    if v < 0:
        return -1.0
    if v > 0:
        return 1.0
    return v


MATH_FUNCTIONS: dict[str, Callable[[float], float]] = {
    "abs": abs,
    "ceil": go_ceil,
    "floor": go_floor,
    "exp": go.go_exp,
    "sqrt": _sqrt,
    "ln": go.go_log,
    "log2": go.go_log2,
    "log10": go.go_log10,
    "sgn": _sgn,
    "sin": go.go_sin,
    "cos": go.go_cos,
    "tan": go.go_tan,
    "asin": go.go_asin,
    "acos": go.go_acos,
    "atan": go.go_atan,
    "sinh": go.go_sinh,
    "cosh": go.go_cosh,
    "tanh": go.go_tanh,
    "asinh": go.go_asinh,
    "acosh": go.go_acosh,
    "atanh": go.go_atanh,
    # Go's constant Pi; the operations in Prometheus's order.
    "deg": lambda v: v * 180 / math.pi,
    "rad": lambda v: v * math.pi / 180,
}
