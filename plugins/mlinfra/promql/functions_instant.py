"""PromQL's functions over instant vectors and scalars (promql/functions.go of Prometheus 2.42).

Value functions (``abs``, ``ceil``, ``ln``, the trigonometric ones, ``round``,
``clamp``...), the date functions, ``timestamp``, ``label_replace``/``label_join``,
``sort``/``sort_desc``, ``scalar``/``vector``/``time``, ``absent`` and
``histogram_quantile``; each drops the metric name where Prometheus does::

    MathFunction(MATH_FUNCTIONS["ceil"], arg).eval(ctx)
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from mlinfra.promql.gomath import go_floor
from mlinfra.promql.gonum import go_div, go_max, go_min, parse_le
from mlinfra.promql.gotime import date_parts, days_in_month
from mlinfra.promql.interface import EvalError
from mlinfra.promql.parse import NAME, Labels, absent_labels, compile_promql_regex
from mlinfra.promql.plan import InstantSelector, Node, Value, Vector, check_unique, drop_name
from mlinfra.promql.quantile import bucket_quantile

if TYPE_CHECKING:
    from mlinfra.promql.storage import EvaluationContext

__all__ = [
    "DATE_FUNCTIONS",
    "Absent",
    "Clamp",
    "DateFunction",
    "HistogramQuantile",
    "LabelJoin",
    "LabelReplace",
    "MathFunction",
    "NoNativeHistograms",
    "Round",
    "ScalarOf",
    "Sort",
    "Time",
    "Timestamp",
    "VectorOf",
]

_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")

# year, month, day, day of year, hour, minute, weekday = date_parts(seconds)
DATE_FUNCTIONS: dict[str, Callable[[tuple[int, ...]], float]] = {
    "minute": lambda p: float(p[5]),
    "hour": lambda p: float(p[4]),
    "day_of_week": lambda p: float(p[6]),
    "day_of_month": lambda p: float(p[2]),
    "day_of_year": lambda p: float(p[3]),
    "days_in_month": lambda p: float(days_in_month(p[0], p[1])),
    "month": lambda p: float(p[1]),
    "year": lambda p: float(p[0]),
}


class MathFunction(Node):
    """A function of each value (``abs``, ``ln``, ``sin``...); the name is dropped."""

    def __init__(self, fn: Callable[[float], float], arg: Node):
        self.fn, self.arg = fn, arg

    def eval(self, ctx: EvaluationContext) -> Vector:
        fn = self.fn
        return check_unique([(drop_name(labels), fn(v)) for labels, v in self.arg.vector(ctx)])


class Round(Node):
    def __init__(self, arg: Node, to_nearest: Node | None):
        self.arg, self.to_nearest = arg, to_nearest

    def eval(self, ctx: EvaluationContext) -> Vector:
        vec = self.arg.vector(ctx)
        to_nearest = self.to_nearest.scalar(ctx) if self.to_nearest is not None else 1.0
        # Prometheus rounds with the inverse: fewer floating-point surprises; ties go up.
        inverse = go_div(1.0, to_nearest)
        return check_unique(
            [(drop_name(labels), go_div(go_floor(v * inverse + 0.5), inverse)) for labels, v in vec]
        )


class Clamp(Node):
    """clamp(v, min, max), clamp_min(v, min) and clamp_max(v, max)."""

    def __init__(self, arg: Node, lo: Node | None, hi: Node | None):
        self.arg, self.lo, self.hi = arg, lo, hi

    def eval(self, ctx: EvaluationContext) -> Vector:
        vec = self.arg.vector(ctx)
        lo = self.lo.scalar(ctx) if self.lo is not None else None
        hi = self.hi.scalar(ctx) if self.hi is not None else None
        if lo is not None and hi is not None:
            if hi < lo:
                return []
            return check_unique([(drop_name(labels), go_max(lo, go_min(hi, v))) for labels, v in vec])
        if lo is not None:
            return check_unique([(drop_name(labels), go_max(lo, v)) for labels, v in vec])
        return check_unique([(drop_name(labels), go_min(hi, v)) for labels, v in vec])  # type: ignore[arg-type]


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


class NoNativeHistograms(Node):
    """histogram_count, histogram_sum, histogram_fraction: they read native histograms only, which
    the store does not hold, so (as in Prometheus over float series) the result is empty."""

    def __init__(self, args: list[Node]):
        self.args = args

    def eval(self, ctx: EvaluationContext) -> Vector:
        for arg in self.args:
            arg.eval(ctx)
        return []


class Timestamp(Node):
    """timestamp(v): a bare selector's sample times; any other argument's, the evaluation time."""

    def __init__(self, arg: Node):
        self.arg = arg

    def eval(self, ctx: EvaluationContext) -> Vector:
        if isinstance(self.arg, InstantSelector):
            return check_unique([(drop_name(labels), ts / 1000) for labels, ts, _ in self.arg.samples(ctx)])
        now = ctx.t_ms / 1000
        return check_unique([(drop_name(labels), now) for labels, _ in self.arg.vector(ctx)])


class DateFunction(Node):
    def __init__(self, fn: Callable[[tuple[int, ...]], float], arg: Node | None):
        self.fn, self.arg = fn, arg

    def eval(self, ctx: EvaluationContext) -> Vector:
        fn = self.fn
        if self.arg is None:
            t = ctx.t_ms
            return [((), fn(date_parts(t // 1000 if t >= 0 else -(-t // 1000))))]  # Go's Ts/1000
        return check_unique([(drop_name(labels), fn(date_parts(v))) for labels, v in self.arg.vector(ctx)])


class Time(Node):
    is_scalar = True

    def eval(self, ctx: EvaluationContext) -> float:
        return ctx.t_ms / 1000


class ScalarOf(Node):
    is_scalar = True

    def __init__(self, arg: Node):
        self.arg = arg

    def eval(self, ctx: EvaluationContext) -> float:
        vec = self.arg.vector(ctx)
        return vec[0][1] if len(vec) == 1 else math.nan


class VectorOf(Node):
    def __init__(self, arg: Node):
        self.arg = arg

    def eval(self, ctx: EvaluationContext) -> Vector:
        return [((), self.arg.scalar(ctx))]


class Sort(Node):
    """sort / sort_desc: by value, NaN last either way (the order a query result is shown in)."""

    def __init__(self, arg: Node, *, descending: bool):
        self.arg, self.descending = arg, descending

    def eval(self, ctx: EvaluationContext) -> Value:
        sign = -1.0 if self.descending else 1.0
        return sorted(self.arg.vector(ctx), key=lambda s: (math.isnan(s[1]), sign * s[1]))


def _with_label(labels: Labels, name: str, value: str) -> Labels:
    d = dict(labels)
    if value:
        d[name] = value
    else:
        d.pop(name, None)
    return tuple(sorted(d.items()))


class LabelReplace(Node):
    def __init__(self, arg: Node, dst: str, replacement: str, src: str, regex: str):
        self.arg, self.dst, self.replacement, self.src = arg, dst, replacement, src
        # Go's regexp is RE2; Prometheus 2.42 anchors it as "^(?:" + regex + ")$". Prometheus refuses
        # a bad one at the first evaluation; here the rule file is refused when it loads.
        self.regex = compile_promql_regex(regex)
        self.regex_text = regex

    def eval(self, ctx: EvaluationContext) -> Vector:
        if not _LABEL_NAME.fullmatch(self.dst):
            raise EvalError(f"invalid destination label name in label_replace(): {self.dst}")
        out: Vector = []
        for labels, v in self.arg.vector(ctx):
            value = dict(labels).get(self.src, "")
            m = self.regex.fullmatch(value)
            if m is None:
                out.append((labels, v))
                continue
            out.append((_with_label(labels, self.dst, go_expand(self.replacement, m, self.regex)), v))
        return check_unique(out)


class LabelJoin(Node):
    def __init__(self, arg: Node, dst: str, separator: str, sources: list[str]):
        self.arg, self.dst, self.separator, self.sources = arg, dst, separator, sources

    def eval(self, ctx: EvaluationContext) -> Vector:
        for src in self.sources:
            if not _LABEL_NAME.fullmatch(src):
                raise EvalError(f"invalid source label name in label_join(): {src}")
        if not _LABEL_NAME.fullmatch(self.dst):
            raise EvalError(f"invalid destination label name in label_join(): {self.dst}")
        out: Vector = []
        for labels, v in self.arg.vector(ctx):
            d = dict(labels)
            joined = self.separator.join(d.get(src, "") for src in self.sources)
            out.append((_with_label(labels, self.dst, joined), v))
        return check_unique(out)


def _is_name_char(ch: str) -> bool:
    return ch == "_" or ch.isalpha() or unicodedata.category(ch) == "Nd"


def go_expand(template: str, m: Any, regex: Any) -> str:
    """Go's ``Regexp.ExpandString``: ``$1``, ``${1}``, ``$name``, ``${name}``, ``$$``; a name is the
    longest run of letters, digits and ``_`` (so ``$1x`` is the group named "1x": empty)."""
    out: list[str] = []
    while True:
        before, dollar, template = template.partition("$")
        out.append(before)
        if not dollar:
            return "".join(out)
        if template.startswith("$"):
            out.append("$")
            template = template[1:]
            continue
        brace = template.startswith("{")
        body = template[1:] if brace else template
        i = 0
        while i < len(body) and _is_name_char(body[i]):
            i += 1
        if i == 0 or (brace and (i >= len(body) or body[i] != "}")):
            out.append("$")  # malformed: the $ is text
            continue
        name = body[:i]
        template = body[i + 1 :] if brace else body[i:]
        out.append(_group(name, m, regex))


def _group(name: str, m: Any, regex: Any) -> str:
    if name.isascii() and name.isdigit() and not (name[0] == "0" and len(name) > 1) and len(name) <= 9:
        num = int(name)
        if num <= regex.groups:
            return m.group(num) or ""
        return ""
    index = regex.groupindex.get(name)
    return (m.group(index) or "") if index is not None else ""
