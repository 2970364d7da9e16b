"""Go's ``math`` functions as PromQL's instant-vector functions call them, never raising.

Python's ``math`` raises where Go returns a value (``log(0)`` is -Inf in Go, ``acos(2)``
NaN, ``exp(1000)`` +Inf); each function here returns what Go's does for the special
cases (Go's src/math documents them per function). Values inside the domain come
from the C library, which can differ from Go's own implementations in the last bit
(see :data:`LIBM_FUNCTIONS`); ``floor``, ``ceil``, ``sqrt``, ``abs``, rounding,
``deg``/``rad`` and ``sgn`` are exact everywhere::

    >>> go_ln(0.0), go_acos(2.0), go_exp(1000.0), go_ceil(-0.5)
    (-inf, nan, inf, -0.0)
"""

from __future__ import annotations

import math
from collections.abc import Callable

__all__ = ["LIBM_FUNCTIONS", "MATH_FUNCTIONS", "go_ceil", "go_floor", "kahan_inc"]

_NAN = math.nan
_INF = math.inf

# Functions whose in-domain values come from the C library (correctly rounded or nearly):
# Go's pure-Go implementations may differ from them in the last bit.
LIBM_FUNCTIONS = frozenset(
    {"exp", "ln", "log2", "log10", "sin", "cos", "tan", "asin", "acos", "atan", "sinh", "cosh", "tanh"}
    | {"asinh", "acosh", "atanh"}
)


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


def _guard(fn: Callable[[float], float], on_domain: Callable[[float], float]) -> Callable[[float], float]:
    def go(x: float) -> float:
        if math.isnan(x):
            return x
        try:
            return fn(x)
        except (ValueError, OverflowError):
            return on_domain(x)

    return go


def _log_special(x: float) -> float:
    return -_INF if x == 0 else _NAN  # Log(±0) = -Inf, Log(x < 0) = NaN


def _sqrt(x: float) -> float:
    return _NAN if x < 0 else math.sqrt(x)


def _atanh_special(x: float) -> float:
    if x == 1:
        return _INF
    if x == -1:
        return -_INF
    return _NAN


def _sgn(v: float) -> float:
    if v < 0:
        return -1.0
    if v > 0:
        return 1.0
    return v


go_ln = _guard(math.log, _log_special)
go_exp = _guard(math.exp, lambda x: _INF)  # overflow only: Exp(x > 709.78) = +Inf
go_acos = _guard(math.acos, lambda x: _NAN)


MATH_FUNCTIONS: dict[str, Callable[[float], float]] = {
    "abs": abs,
    "ceil": go_ceil,
    "floor": go_floor,
    "exp": go_exp,
    "sqrt": _sqrt,
    "ln": go_ln,
    "log2": _guard(math.log2, _log_special),
    "log10": _guard(math.log10, _log_special),
    "sgn": _sgn,
    "sin": _guard(math.sin, lambda x: _NAN),  # Sin(±Inf) = NaN
    "cos": _guard(math.cos, lambda x: _NAN),
    "tan": _guard(math.tan, lambda x: _NAN),
    "asin": _guard(math.asin, lambda x: _NAN),
    "acos": go_acos,
    "atan": _guard(math.atan, lambda x: _NAN),
    "sinh": _guard(math.sinh, lambda x: math.copysign(_INF, x)),
    "cosh": _guard(math.cosh, lambda x: _INF),
    "tanh": _guard(math.tanh, lambda x: _NAN),
    "asinh": _guard(math.asinh, lambda x: _NAN),
    "acosh": _guard(math.acosh, lambda x: _NAN),
    "atanh": _guard(math.atanh, _atanh_special),
    "deg": lambda v: v * 180 / math.pi,
    "rad": lambda v: v * math.pi / 180,
}
