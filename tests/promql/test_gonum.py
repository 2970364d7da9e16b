"""Go numerics: float64 arithmetic, strconv.ParseFloat (``le``) and value printing, as Go does them."""

from __future__ import annotations

import math

import pytest

from mlinfra.promql.gonum import (
    go_div,
    go_float,
    go_float_e,
    go_max,
    go_min,
    go_mod,
    go_quote,
    parse_go_float,
    parse_le,
)
from mlinfra.promql.goport import go_pow


def test_arithmetic_never_raises_and_follows_go() -> None:
    assert go_div(1.0, 0.0) == math.inf
    assert go_div(-1.0, 0.0) == -math.inf
    assert go_div(1.0, -0.0) == -math.inf
    assert math.isnan(go_div(0.0, 0.0))
    assert math.isnan(go_mod(1.0, 0.0))
    assert math.isnan(go_mod(math.inf, 2.0))
    assert go_pow(0.0, -1.0) == math.inf
    assert go_pow(-0.0, -3.0) == -math.inf
    assert go_pow(10.0, 400.0) == math.inf
    assert go_pow(-10.0, 401.0) == -math.inf
    assert math.isnan(go_pow(-8.0, 1 / 3))


def test_min_and_max_follow_go_for_nan_infinities_and_signed_zeros() -> None:
    assert go_max(math.nan, math.inf) == math.inf
    assert math.isnan(go_max(math.nan, 1.0))
    assert go_min(math.nan, -math.inf) == -math.inf
    assert math.copysign(1.0, go_max(-0.0, 0.0)) == 1.0
    assert math.copysign(1.0, go_min(0.0, -0.0)) == -1.0


# Cases from golang/go src/strconv/atof_test.go (atoftests), what ParseFloat(s, 64) returns.
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1", 1.0),
        ("+1", 1.0),
        ("1e23", 1e23),
        ("1E23", 1e23),
        ("0.25", 0.25),
        (".5", 0.5),
        ("5.", 5.0),
        ("-0", -0.0),
        ("+Inf", math.inf),
        ("-inf", -math.inf),
        ("infinity", math.inf),
        ("0x1p-2", 0.25),
        ("0x.1p+2", 0.25),
        ("1_000", 1000.0),  # Go accepts underscores between digits: Prometheus reads le="1_000" as 1000
        ("1_23.50_0_0e+1_2", 1.235e14),
        ("0x_1_2.3_4_5p+1_2", 74565.0),
    ],
)
def test_parse_go_float_accepts_what_go_accepts(text: str, expected: float) -> None:
    got = parse_go_float(text)
    assert got == expected
    assert math.copysign(1.0, got) == math.copysign(1.0, expected)


@pytest.mark.parametrize(
    "text",
    [
        "",
        " 1",  # Python's float() strips whitespace; Go does not
        "1 ",
        "1e",
        "1e-",
        ".e-1",
        ".",
        "0x",
        "0x1",  # a hex float needs its p exponent
        "0x1p",
        "1e500",  # out of range: Go returns +Inf with ErrRange, which Prometheus skips
        "0x1p2000",
        "-_123.5e+12",
        "_123.5e+12",
        "1__23.5e+12",
        "123_.5e+12",
        "123._5e+12",
        "123.5e+12_",
        "0x__12.345p+12",
        "+nan",  # Go reads an unsigned NaN only
        "infin",
        "1,5",
    ],
)
def test_parse_go_float_refuses_what_go_refuses(text: str) -> None:
    assert parse_go_float(text) is None


def test_nan_parses() -> None:
    got = parse_go_float("NaN")
    assert got is not None
    assert math.isnan(got)


def test_a_missing_le_label_is_not_a_bucket() -> None:
    assert parse_le(None) is None
    assert parse_le("0.5") == 0.5


def test_strings_quote_like_go() -> None:
    assert go_quote('say "hi"\n\t\x01\\') == '"say \\"hi\\"\\n\\t\\x01\\\\"'


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (91.0, "91"),
        (0.1, "0.1"),
        (1234567.0, "1.234567e+06"),
        (123456.0, "123456"),
        (0.0001, "0.0001"),
        (0.00001, "1e-05"),
        (-2.5, "-2.5"),
        (1e21, "1e+21"),
        (math.inf, "+Inf"),
    ],
)
def test_values_print_like_go(value: float, expected: str) -> None:
    assert go_float(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1, "1E+00"),
        (0.15, "1.5E-01"),
        (1234.5, "1.2345E+03"),
        (-2e-7, "-2E-07"),
        (math.nan, "NaN"),
        (math.inf, "+Inf"),
    ],
)
def test_sample_values_print_like_go(value: float, expected: str) -> None:
    assert go_float_e(value) == expected
