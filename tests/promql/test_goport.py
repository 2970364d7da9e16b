"""Go's math functions, ported: the values Prometheus 2.42 (Go 1.19, amd64) returned for these arguments.

Each expected value was read from a real Prometheus (``ln(g)`` and so on over a
gauge holding the argument); each is one where the C library's result differs in the
last bit, so a port that fell back to Python's ``math`` fails here.
"""

from __future__ import annotations

import math

import pytest

from mlinfra.promql import goport as go
from mlinfra.promql.gomath import MATH_FUNCTIONS

# (function, argument, Prometheus's result, Python's math result): the last two differ.
MEASURED = [
    (go.go_log, 2.991053672254659, 1.095625724072118, math.log),
    (go.go_exp, -1.1419796791419659, 0.31918650906233814, math.exp),
    (go.go_log2, 2.4281759070734203, 1.2798729401561215, math.log2),
    (go.go_log10, 0.12043790755538364, -0.9192367983688812, math.log10),
    (go.go_sin, -1.11701688050345, -0.8987967463095566, math.sin),
    (go.go_cos, 2.37995784856561, -0.7237087904092353, math.cos),
    (go.go_tan, 2.37995784856561, -0.9535679249430703, math.tan),
    (go.go_asin, -0.733264563526904, -0.8231108311283335, math.asin),
    (go.go_acos, 0.12043790755538364, 1.4500653376710093, math.acos),
    (go.go_atan, -1.11701688050345, -0.8406163939062674, math.atan),
    (go.go_sinh, -0.733264563526904, -0.8007637884558481, math.sinh),
    (go.go_cosh, 2.991053672254659, 9.978440502147206, math.cosh),
    (go.go_tanh, -0.23754220292457173, -0.23317291780337912, math.tanh),
    (go.go_asinh, 2.37995784856561, 1.601701848127421, math.asinh),
    (go.go_acosh, 2.991053672254659, 1.7595788512313773, math.acosh),
]


@pytest.mark.parametrize(
    ("fn", "x", "prometheus", "libm"), MEASURED, ids=lambda v: getattr(v, "__name__", "")
)
def test_ports_give_prometheus_values_where_the_c_library_differs(fn, x, prometheus, libm) -> None:  # type: ignore[no-untyped-def]
    assert libm(x) != prometheus  # the case is a real one
    assert fn(x) == prometheus


def test_pow_and_atan2_follow_go() -> None:
    assert go.go_pow(0.12043790755538364, 0.37) == 0.4569644179994432
    assert go.go_pow(0.12043790755538364, 2.5) == 0.005033939643354319
    assert go.go_pow(1.7, 2.37995784856561) == 3.535564130039954
    assert go.go_atan2(0.12043790755538364, 0.7) == 0.17038593320547302
    assert go.go_atan2(0.0, -1.0) == math.pi
    assert go.go_atan2(-math.inf, -math.inf) == -3 * math.pi / 4


@pytest.mark.parametrize(
    ("name", "x", "expected"),
    [
        ("ln", 0.0, -math.inf),
        ("ln", -1.0, math.nan),
        ("exp", 1000.0, math.inf),
        ("exp", -1000.0, 0.0),
        ("exp", -math.inf, 0.0),
        ("acos", 2.0, math.nan),
        ("atanh", 1.0, math.inf),
        ("atanh", -1.0, -math.inf),
        ("acosh", 0.5, math.nan),
        ("sinh", -1000.0, -math.inf),
        ("cosh", 1000.0, math.inf),
        ("tanh", math.inf, 1.0),
        ("sin", math.inf, math.nan),
        ("sqrt", -1.0, math.nan),
        ("log2", 8.0, 3.0),
        ("ceil", -0.5, -0.0),
        ("sgn", -0.0, -0.0),
    ],
)
def test_special_cases_return_what_go_returns_instead_of_raising(
    name: str, x: float, expected: float
) -> None:
    got = MATH_FUNCTIONS[name](x)
    if math.isnan(expected):
        assert math.isnan(got)
    else:
        assert got == expected
        assert math.copysign(1, got) == math.copysign(1, expected)
