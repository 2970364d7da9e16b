"""Go's float64 arithmetic, parsing and printing, as PromQL and Prometheus's tools use them.

PromQL runs on Go's float64 operations, which never raise (Python's do), parses
``le`` labels with Go's ``strconv.ParseFloat`` and prints values with Go's
``strconv.FormatFloat``. Everything here matches Go to the bit or the byte::

    >>> go_div(1.0, 0.0), go_mod(1.0, 0.0)   # Go's math.Pow and the others: mlinfra.promql.goport
    (inf, nan)
    >>> parse_le("1_000"), parse_le("+Inf"), parse_le("1e500"), parse_le(" 1")
    (1000.0, inf, None, None)
    >>> go_float(1e6), go_float(0.1), go_float_e(0.15), go_quote('say "hi"')
    ('1e+06', '0.1', '1.5E-01', '"say \\\\"hi\\\\""')
"""

from __future__ import annotations

import math
import re
from decimal import Decimal

__all__ = [
    "go_div",
    "go_float",
    "go_float_e",
    "go_float_f",
    "go_format_g4",
    "go_max",
    "go_min",
    "go_mod",
    "go_quote",
    "go_special",
    "parse_go_float",
    "parse_le",
]

_NAN = math.nan
_INF = math.inf


# ---------------------------------------------------------------------- arithmetic


def go_div(a: float, b: float) -> float:
    """``a / b`` as Go computes it: ``x/0`` is ±Inf, ``0/0`` NaN."""
    try:
        return a / b
    except ZeroDivisionError:
        if a == 0 or math.isnan(a):
            return _NAN
        return math.copysign(_INF, a) * math.copysign(1.0, b)


def go_mod(a: float, b: float) -> float:
    """Go's ``math.Mod`` (PromQL's ``%``)."""
    try:
        return math.fmod(a, b)
    except ValueError:  # fmod(inf, y), fmod(x, 0): NaN in Go
        return _NAN


def go_max(x: float, y: float) -> float:
    """Go's ``math.Max``: +Inf wins over NaN, NaN over everything else, +0 over -0."""
    if x == _INF or y == _INF:
        return _INF
    if math.isnan(x) or math.isnan(y):
        return _NAN
    if x == 0 and x == y:
        return y if math.copysign(1.0, x) < 0 else x
    return x if x > y else y


def go_min(x: float, y: float) -> float:
    """Go's ``math.Min``: -Inf wins over NaN, NaN over everything else, -0 over +0."""
    if x == -_INF or y == -_INF:
        return -_INF
    if math.isnan(x) or math.isnan(y):
        return _NAN
    if x == 0 and x == y:
        return x if math.copysign(1.0, x) < 0 else y
    return x if x < y else y


# ---------------------------------------------------------------------- parsing

# Go's strconv.ParseFloat syntax (Go's floating-point literal syntax; golang/go
# src/strconv/atof.go readFloat and special). Underscores are allowed between digits
# (and after a 0x prefix) in decimal and hex alike: atof_test.go has
# {"1_23.50_0_0e+1_2", "1.235e+14", nil} and {"0x_1_2.3_4_5p+1_2", "74565", nil}.
# Only ParseInt/ParseUint with an explicit base refuse them. Hex needs a p exponent;
# no surrounding whitespace; a signed NaN is refused, a signed Inf(inity) is not.
_DECIMAL = re.compile(r"[+-]?(?:[0-9_]+\.?[0-9_]*|\.[0-9_]+)(?:[eE][+-]?[0-9_]+)?")
_HEX = re.compile(r"[+-]?0[xX](?:[0-9a-fA-F_]+\.?[0-9a-fA-F_]*|\.[0-9a-fA-F_]+)[pP][+-]?[0-9_]+")
_SPECIAL = {"inf": _INF, "+inf": _INF, "-inf": -_INF, "infinity": _INF, "+infinity": _INF}
_SPECIAL |= {"-infinity": -_INF, "nan": _NAN}


def _underscore_ok(s: str) -> bool:
    """strconv's ``underscoreOK``: an underscore only between digits or after a base prefix."""
    saw = "^"
    i = 0
    if s[:1] in ("+", "-"):
        s = s[1:]
    hex_digits = False
    if len(s) >= 2 and s[0] == "0" and s[1] in "xXbBoO":
        i, saw, hex_digits = 2, "0", s[1] in "xX"
    for c in s[i:]:
        if c.isdigit() or (hex_digits and c in "abcdefABCDEF"):
            saw = "0"
        elif c == "_":
            if saw != "0":
                return False
            saw = "_"
        elif saw == "_":
            return False
        else:
            saw = "!"
    return saw != "_"


def parse_go_float(text: str) -> float | None:
    """Go's ``strconv.ParseFloat(text, 64)``; None where Go returns an error (syntax or range)."""
    special = _SPECIAL.get(text.lower())
    if special is not None:
        return special
    if _DECIMAL.fullmatch(text):
        digits = text.replace("_", "")
        if not any(c.isdigit() for c in digits.split("e")[0].split("E")[0]):
            return None
        if "_" in text and not _underscore_ok(text):
            return None
        value = float(digits)
    elif _HEX.fullmatch(text):
        if "_" in text and not _underscore_ok(text):
            return None
        try:
            value = float.fromhex(text.replace("_", ""))
        except (OverflowError, ValueError):
            return None
    else:
        return None
    return None if math.isinf(value) else value  # Go: ErrRange, which Prometheus skips


def parse_le(text: str | None) -> float | None:
    """A bucket's upper bound from its ``le`` label, as ``histogram_quantile`` reads it; None if invalid.

    Prometheus parses ``le`` with ``strconv.ParseFloat`` and skips the sample on any
    error (promql/functions.go, funcHistogramQuantile): the engine and the reports
    both read buckets through this function, so they agree on every label.
    """
    return None if text is None else parse_go_float(text)


# ---------------------------------------------------------------------- printing


def go_special(v: float) -> str | None:
    """``NaN``, ``+Inf`` or ``-Inf`` as Go prints them, or None for a finite ``v``."""
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return None


def _digits(v: float) -> tuple[str, int]:
    """Shortest round-trip decimal digits of finite ``v`` > 0 and the decimal point position."""
    _sign, digits, exponent = Decimal(repr(v)).as_tuple()
    text = "".join(map(str, digits)).rstrip("0") or "0"
    dp = len(digits) + int(exponent)
    return text, dp


def go_float(v: float) -> str:
    """Go's ``%v`` of a float64 (``strconv.FormatFloat(v, 'g', -1, 64)``): ``1e+06``, ``0.1``, ``91``."""
    special = go_special(v)
    if special is not None:
        return special
    if v == 0:
        return "-0" if math.copysign(1.0, v) < 0 else "0"
    sign = "-" if v < 0 else ""
    digits, dp = _digits(abs(v))
    exp = dp - 1
    if exp < -4 or exp >= 6:
        mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{sign}{mantissa}e{'-' if exp < 0 else '+'}{abs(exp):02d}"
    if dp <= 0:
        return f"{sign}0.{'0' * -dp}{digits}"
    if dp >= len(digits):
        return f"{sign}{digits}{'0' * (dp - len(digits))}"
    return f"{sign}{digits[:dp]}.{digits[dp:]}"


def go_float_f(v: float) -> str:
    """Go's ``strconv.FormatFloat(v, 'f', -1, 64)`` (``count_values``' label): ``1000000``, ``0.000001``."""
    special = go_special(v)
    if special is not None:
        return special
    if v == 0:
        return "-0" if math.copysign(1.0, v) < 0 else "0"
    digits, dp = _digits(abs(v))
    sign = "-" if v < 0 else ""
    if dp <= 0:
        return f"{sign}0.{'0' * -dp}{digits}"
    if dp >= len(digits):
        return f"{sign}{digits}{'0' * (dp - len(digits))}"
    return f"{sign}{digits[:dp]}.{digits[dp:]}"


def go_float_e(v: float) -> str:
    """Go's ``strconv.FormatFloat(v, 'E', -1, 64)``: ``1E+00``, ``1.5E-01``."""
    special = go_special(v)
    if special is not None:
        return special
    if v == 0:
        return ("-" if math.copysign(1, v) < 0 else "") + "0E+00"
    digits, dp = _digits(abs(v))
    exp = dp - 1
    mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
    return f"{'-' if v < 0 else ''}{mantissa}E{'-' if exp < 0 else '+'}{abs(exp):02d}"


def go_format_g4(v: float) -> str:
    """Go's ``%.4g``, the format of every ``humanize*`` template helper."""
    special = go_special(v)
    return special if special is not None else f"{v:.4g}"


def go_quote(s: str) -> str:
    """Go's ``%q`` of a string as Prometheus prints label values: ``"say \\"hi\\""``."""
    out = ['"']
    for ch in s:
        if ch in '\\"':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)
