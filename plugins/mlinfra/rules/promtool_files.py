"""Reading ``promtool test rules`` test files: the YAML, its fields, series and value notation.

:mod:`mlinfra.rules.promtool` runs what this module reads. Messages match promtool
2.42's where the compatibility tests compare them (``tests/rules/test_promtool_compat.py``)::

    >>> expand_values("1+2x3 _ 7")
    [1.0, 3.0, 5.0, 7.0, None, 7.0]
    >>> parse_series('up{job="node"}')
    ('up', {'job': 'node'})
"""

from __future__ import annotations

import glob
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mlinfra.durations import parse_duration

STALE = "stale"
SeriesValue = float | str | None  # None: omitted ("_"); STALE: a staleness marker


class UnitTestFileError(Exception):
    """The test file itself is invalid."""


# ---------------------------------------------------------------------- expanding notation


_VALUE_TOKEN = re.compile(
    r"""\s*(?:
      (?P<blank>_)
    | (?P<times>x)
    | (?P<num>[-+]?(?:inf|nan|(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?))
    | (?P<sign>[-+])
    | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
    )""",
    re.VERBOSE | re.IGNORECASE,
)


def parse_number(text: str) -> float:
    """A number as promtool reads one: Go's ``strconv.ParseFloat`` words ``Inf``/``NaN`` in any case."""
    t = text.lower()
    if t.lstrip("+-") in ("inf", "nan"):
        return float(t)
    return float(text)


def expand_values(text: str) -> list[SeriesValue]:
    """promtool's value notation -> one entry per interval step.

    ``1+2x3`` -> 1 3 5 7; ``5-1x3`` -> 5 4 3 2; ``1x3`` -> 1 1 1 1; ``_`` -> omitted;
    ``_x3`` -> three omitted; ``stale`` -> a staleness marker; plain numbers, ``Inf``, ``NaN``.
    """
    text = str(text)
    return _ValueReader(text, _value_tokens(text)).read()


def _value_tokens(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        if not text[pos:].strip():
            break
        m = _VALUE_TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise UnitTestFileError(f"bad series values {text!r}: unexpected {text[pos:].strip()[:10]!r}")
        kind = m.lastgroup or ""
        tokens.append((kind, m.group(kind)))
        pos = m.end()
    return tokens


class _ValueReader:
    """The tokens of one ``values`` string, read item by item.

    Sign tokens glued to following numbers belong to them ("1 -2" is two numbers; "1-2x3" is a step).
    """

    def __init__(self, text: str, tokens: list[tuple[str, str]]) -> None:
        self.text = text
        self.tokens = tokens
        self.i = 0
        self.out: list[SeriesValue] = []

    def read(self) -> list[SeriesValue]:
        while self.i < len(self.tokens):
            kind, value = self.tokens[self.i]
            if kind == "blank":
                self._blank()
            elif kind == "word":
                self._word(value)
            else:
                self._numbers(kind, value)
        return self.out

    def _kind_at(self, offset: int = 0) -> str | None:
        j = self.i + offset
        return self.tokens[j][0] if j < len(self.tokens) else None

    def _need(self, kind: str) -> str:
        if self._kind_at() != kind:
            got = self.tokens[self.i][1] if self.i < len(self.tokens) else "end of input"
            raise UnitTestFileError(f"bad series values {self.text!r}: expected {kind}, got {got!r}")
        self.i += 1
        return self.tokens[self.i - 1][1]

    def _count(self) -> int:
        raw = self._need("num")
        if not re.fullmatch(r"\d+", raw):
            raise UnitTestFileError(
                f"bad series values {self.text!r}: repetition count must be an integer, got {raw!r}"
            )
        return int(raw)

    def _blank(self) -> None:
        self.i += 1
        if self._kind_at() == "times":
            self.i += 1
            self.out.extend([None] * self._count())
        else:
            self.out.append(None)

    def _word(self, value: str) -> None:
        if value != "stale":
            raise UnitTestFileError(
                f'bad series values {self.text!r}: expected number or "stale", got {value!r}'
            )
        self.i += 1
        self.out.append(STALE)

    def _numbers(self, kind: str, value: str) -> None:
        """A number, then ``xN`` (repeated), ``+SxN``/``-SxN`` (stepped) or nothing (itself)."""
        if kind == "sign":
            # "+5" or "-5" written with a space: a signed number.
            self.i += 1
            start = parse_number(value + self._need("num"))
        elif kind == "num":
            self.i += 1
            start = parse_number(value)
        else:
            raise UnitTestFileError(f"bad series values {self.text!r}: unexpected {value!r}")
        if self._kind_at() == "times":
            self.i += 1
            self.out.extend([start] * (self._count() + 1))
            return
        step = self._step()
        if step is None:
            self.out.append(start)
            return
        v = start
        for _ in range(self._count() + 1):
            self.out.append(v)
            v += step

    def _step(self) -> float | None:
        """The ``+S``/``-S`` of ``+SxN`` after a start value, if one follows (consumed with its ``x``)."""
        tokens, i = self.tokens, self.i
        if self._kind_at() == "num" and tokens[i][1][0] in "+-":
            if self._kind_at(1) == "times":
                self.i += 2
                return parse_number(tokens[i][1])
        elif self._kind_at() == "sign" and self._kind_at(2) == "times":
            self.i += 3
            return parse_number(tokens[i][1] + tokens[i + 1][1])
        return None


def parse_series(text: str) -> tuple[str, dict[str, str]]:
    """``name{a="b"}`` or ``{__name__="name", a="b"}`` -> (name, labels without ``__name__``)."""
    import promql_parser

    try:
        node = promql_parser.parse(text)
    except ValueError as e:
        raise UnitTestFileError(f"bad series {text!r}: {e}") from None
    if not isinstance(node, promql_parser.VectorSelector) or getattr(node, "offset", None):
        raise UnitTestFileError(f"bad series {text!r}: not a metric name with labels")
    labels: dict[str, str] = {}
    for m in node.matchers.matchers:
        if m.op != promql_parser.MatchOp.Equal:
            raise UnitTestFileError(f"bad series {text!r}: labels must use '='")
        labels[m.name] = m.value
    name = node.name or labels.pop("__name__", "")
    labels.pop("__name__", None)
    if not name:
        raise UnitTestFileError(f"bad series {text!r}: no metric name")
    return name, labels


def parse_expected_metric(text: str) -> tuple[str, dict[str, str]]:
    """An ``exp_samples`` entry's ``labels``: ``name{a="b"}`` or ``{}`` -> (name or "", labels)."""
    import promql_parser

    if text.strip() == "{}":
        return "", {}
    try:
        node = promql_parser.parse(text)
    except ValueError as e:
        raise UnitTestFileError(f"1:1: parse error: {e}") from None
    if not isinstance(node, promql_parser.VectorSelector):
        raise UnitTestFileError("not a metric")
    labels = {m.name: m.value for m in node.matchers.matchers}
    name = node.name or labels.pop("__name__", "")
    labels.pop("__name__", None)
    return name or "", labels


# ---------------------------------------------------------------------- fields


FILE_FIELDS = {"rule_files", "evaluation_interval", "group_eval_order", "tests"}
GROUP_FIELDS = {
    "interval",
    "input_series",
    "alert_rule_test",
    "promql_expr_test",
    "external_labels",
    "external_url",
    "name",
}


def _strict(obj: Any, allowed: set[str], type_name: str, where: str) -> list[str]:
    if not isinstance(obj, dict):
        return [f"{where}: expected a mapping"]
    return [f"{where}: field {k} not found in type {type_name}" for k in obj if k not in allowed]


def duration_field(value: Any, default: float, what: str) -> float:
    """A duration field in seconds; ``default`` when absent, ``0`` accepted bare as promtool does."""
    if value is None:
        return default
    if str(value).strip() == "0":
        return 0.0
    try:
        return parse_duration(str(value))
    except ValueError:
        raise UnitTestFileError(f'{what}: not a valid duration string: "{value}"') from None


def string_map(value: Any) -> dict[str, str]:
    """A mapping field of labels or annotations, values written as YAML would print them."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise UnitTestFileError(f"expected a mapping of strings, got {value!r}")
    return {str(k): _yaml_str(v) for k, v in value.items()}


def _yaml_str(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return repr(v) if not v.is_integer() else str(v)
    return str(v)


def expected_value(v: Any) -> float:
    """An ``exp_samples`` entry's ``value`` (absent: 0, as Go's zero value)."""
    if isinstance(v, int | float) and not isinstance(v, bool):
        return float(v)
    if v is None:
        return 0.0
    try:
        return parse_number(str(v).strip())
    except ValueError:
        raise UnitTestFileError(f"exp_samples value {v!r} is not a number") from None


# ---------------------------------------------------------------------- the test file


@dataclass(frozen=True)
class UnitTestFile:
    """A test file's top level, read and checked; ``groups`` are its ``tests:`` entries as written."""

    evaluation_interval: float
    rule_files: list[str]
    group_eval_order: dict[str, int]
    groups: list[dict[str, Any]]


def read_test_file(path: Path) -> UnitTestFile:
    """Read and check one test file; :class:`UnitTestFileError` with promtool's message when invalid."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise UnitTestFileError(f"open {path}: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise UnitTestFileError(f"yaml: {e}") from None
    data = data or {}
    problems = _strict(data, FILE_FIELDS, "main.unitTestFile", "the test file")
    for i, tg in enumerate(data.get("tests") or [] if isinstance(data, dict) else []):
        problems += _strict(tg, GROUP_FIELDS, "main.testGroup", f"tests[{i}]")
    if problems:
        raise UnitTestFileError("yaml: unmarshal errors:\n  " + "\n  ".join(problems))
    eval_interval = duration_field(data.get("evaluation_interval"), 60.0, "evaluation_interval") or 60.0
    return UnitTestFile(
        evaluation_interval=eval_interval,
        rule_files=_rule_files(path, data.get("rule_files") or []),
        group_eval_order=_group_eval_order(data.get("group_eval_order") or []),
        groups=list(data.get("tests") or []),
    )


def _rule_files(path: Path, patterns: list[Any]) -> list[str]:
    """The rule files the patterns name, relative to the test file's folder."""
    rule_files: list[str] = []
    for pattern in patterns:
        full = str(pattern) if os.path.isabs(str(pattern)) else str(path.parent / str(pattern))
        matches = sorted(glob.glob(full))
        if not matches:
            raise UnitTestFileError(
                f"failed to match rule file pattern {full!r}"
                if glob.has_magic(full)
                else f"open {full}: no such file or directory"
            )
        rule_files.extend(matches)
    return rule_files


def _group_eval_order(names: list[Any]) -> dict[str, int]:
    order: dict[str, int] = {}
    for i, gname in enumerate(names):
        if gname in order:
            raise UnitTestFileError(f"group name repeated in evaluation order: {gname}")
        order[str(gname)] = i
    return order
