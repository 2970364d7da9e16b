"""Glue around the ``promql-parser`` package: syntax errors in our terms, and selectors.

    ast = parse('rate(x_total{job=~"api|web"}[5m] offset 1m)')   # QuerySyntaxError if invalid
    sel = Selector(ast.args[0].vector_selector)
    sel.name, sel.matchers, sel.offset_ms     # ('x_total', [('=~', 'job', 'api|web')], 60000)

A :class:`Selector` is what the store reads are keyed by (:mod:`mlinfra.promql.storage`);
label sets travel as :data:`Labels`, sorted ``(name, value)`` pairs as Prometheus keeps them.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import promql_parser as pp

from mlinfra.label_regex import LabelRegexError, compile_label_regex
from mlinfra.promql.interface import QuerySyntaxError, unsupported

__all__ = [
    "NAME",
    "At",
    "Labels",
    "Selector",
    "absent_labels",
    "at_modifier",
    "check_syntax",
    "parse",
    "to_ms",
]

NAME = "__name__"
# A label set as Prometheus keeps it: sorted (name, value) pairs, no empty values.
Labels = tuple[tuple[str, str], ...]
Points = list[tuple[int, float]]  # (timestamp ms, value), time-ordered


def _register_holt_winters() -> None:
    """Prometheus 2.42's ``holt_winters(range, sf, tf)``, which promql-parser (3.x's names) lacks."""
    matrix, scalar = pp.ValueType.Matrix, pp.ValueType.Scalar
    pp.register_extra_functions([pp.Function("holt_winters", [matrix, scalar, scalar], pp.ValueType.Vector)])


_register_holt_winters()


def parse(expr: str) -> Any:
    """The syntax tree of ``expr``; :class:`QuerySyntaxError` if it is not PromQL."""
    try:
        return pp.parse(expr)
    except ValueError as e:
        error = e
    if "\\Q" in expr:
        # promql-parser validates matchers with Rust's regex, which lacks Go's \Q...\E quoting.
        try:
            return pp.parse(_unquote_q_e(expr))
        except ValueError:
            pass
    raise QuerySyntaxError(f"invalid PromQL {expr!r}: {error}") from None


# A string literal after =~ or !~ (double- or single-quoted with escapes, or raw).
_REGEX_LITERAL = re.compile(r"""([=!]~\s*)("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)""")
_RE2_META = frozenset("\\.+*?()|[]{}^$")


def _unquote_q_e(expr: str) -> str:
    """``expr`` with each matcher regex's ``\\Q...\\E`` spans written as escaped characters."""

    def rewrite(m: re.Match[str]) -> str:
        literal = m.group(2)
        try:
            pattern = literal[1:-1] if literal[0] == "`" else ast.literal_eval(literal)
            if not isinstance(pattern, str) or "\\Q" not in pattern:
                return m.group(0)
            return m.group(1) + json.dumps(quote_q_e(pattern), ensure_ascii=False)
        except (ValueError, SyntaxError):
            return m.group(0)  # left as it is: the parser reports it

    return _REGEX_LITERAL.sub(rewrite, expr)


def quote_q_e(pattern: str) -> str:
    """Go's regexp/syntax ``\\Q...\\E``: the span's characters, escaped; ValueError if one is open."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch != "\\" or i + 1 >= len(pattern):
            out.append(ch)
            i += 1
            continue
        if pattern[i + 1] != "Q":
            out.append(pattern[i : i + 2])
            i += 2
            continue
        end = pattern.find("\\E", i + 2)
        if end < 0:  # Prometheus appends ")$" to the pattern: an open \Q quotes it, "missing closing )"
            raise ValueError("missing closing ): an unterminated \\Q")
        out.extend("\\" + c if c in _RE2_META else c for c in pattern[i + 2 : end])
        i = end + 2
    return "".join(out)


def check_syntax(expr: str) -> None:
    """Raise :class:`QuerySyntaxError` unless ``expr`` is PromQL (what Prometheus itself checks first)."""
    parse(expr)


def to_ms(delta: timedelta) -> int:
    return round(delta.total_seconds() * 1000)


_ESCAPED = re.compile(r"\\.")


def compile_promql_regex(pattern: str) -> Any:
    """A regex as Prometheus 2.42 compiles it (Go 1.19's regexp, RE2 syntax): anchored, ``.`` not
    matching a newline; :class:`LabelRegexError` for what Go refuses, ``(?<name>...)`` included
    (Go accepts that form of named group only from 1.22 on; ``(?P<name>...)`` is the old one)."""
    if "(?<" in _ESCAPED.sub("", pattern):
        raise LabelRegexError("invalid or unsupported Perl syntax: `(?<`")
    return compile_label_regex(pattern, dot_nl=False)


def _matcher_test(op: str, label: str, value: str) -> Callable[[dict[str, str]], bool]:
    if op == "=":
        return lambda d: d.get(label, "") == value
    if op == "!=":
        return lambda d: d.get(label, "") != value
    try:
        rx = compile_promql_regex(value)
    except LabelRegexError as e:
        raise QuerySyntaxError(f"invalid regular expression {value!r} for label {label!r}: {e}") from e
    if op == "=~":
        return lambda d: rx.fullmatch(d.get(label, "")) is not None
    return lambda d: rx.fullmatch(d.get(label, "")) is None


_MATCH_OPS = (
    (pp.MatchOp.Equal, "="),
    (pp.MatchOp.NotEqual, "!="),
    (pp.MatchOp.Re, "=~"),
    (pp.MatchOp.NotRe, "!~"),
)


def _match_op(op: Any) -> str:
    # The parser's enums compare equal but are not hashable.
    for member, text in _MATCH_OPS:
        if op == member:
            return text
    raise unsupported(f"the label matcher {op!r}")  # pragma: no cover - the four are all there is


class At:
    """The ``@`` modifier: a fixed instant (ms), or the query's own instant (``start()``/``end()``)."""

    __slots__ = ("fixed_ms",)

    def __init__(self, fixed_ms: int | None):
        self.fixed_ms = fixed_ms

    def ms(self, query_ms: int) -> int:
        return query_ms if self.fixed_ms is None else self.fixed_ms


def at_modifier(at: Any) -> At | None:
    """The ``@`` of a selector or subquery; None without one."""
    if at is None:
        return None
    if at.type != pp.AtModifierType.At:  # start() and end() of an instant query are its instant
        return At(None)
    try:
        when = at.at
    except BaseException:  # promql-parser panics (pyo3 PanicException) reading a time before 1970
        raise unsupported("an @ timestamp before 1970 (promql-parser cannot read it)") from None
    return At(round(when.timestamp() * 1000))


class Selector:
    """A vector selector's matchers, offset and ``@`` (shared by instant and range selectors)."""

    def __init__(self, vs: pp.VectorSelector):
        self.at = at_modifier(vs.at)
        if vs.matchers.or_matchers:
            raise unsupported("'or' between label matchers")
        self.name: str | None = vs.name
        matchers: list[tuple[str, str, str]] = []
        for m in vs.matchers.matchers:
            op = _match_op(m.op)
            if m.name == NAME and op == "=" and self.name is None:
                self.name = m.value  # {__name__="x"} reads like x{}
                continue
            matchers.append((op, m.name, m.value))
        self.matchers = matchers
        self.matchers_key = tuple(sorted(matchers))
        self.tests = [_matcher_test(op, label, value) for op, label, value in matchers]
        self.offset_ms = to_ms(vs.offset) if vs.offset is not None else 0

    def ref_ms(self, t_ms: int, query_ms: int) -> int:
        """The instant this selector reads at: evaluation time (or its ``@``) minus the offset."""
        at = self.at
        return (t_ms if at is None else at.ms(query_ms)) - self.offset_ms


def absent_labels(raw: Any) -> Labels:
    """Prometheus's ``createLabelsForAbsentFunction``: the labels ``absent(raw)`` returns.

    Equality matchers give labels, a label matched any other way (or twice) is left
    out; only a bare selector counts.
    """
    if isinstance(raw, pp.MatrixSelector):
        raw = raw.vector_selector
    if not isinstance(raw, pp.VectorSelector):
        return ()
    labels: dict[str, str] = {}
    dropped: set[str] = set()
    for m in raw.matchers.matchers:
        if m.name == NAME:
            continue
        if m.op == pp.MatchOp.Equal and m.name not in labels:
            labels[m.name] = m.value
        else:
            dropped.add(m.name)
    return tuple(sorted((k, v) for k, v in labels.items() if k not in dropped and v != ""))
