"""Prometheus alert templates: the subset of Go ``text/template`` rule files use.

Labels and annotations of alerting rules are templates evaluated per alert, with
the same variables and helpers as Prometheus::

    tmpl = parse_template('{{ $labels.instance }} at {{ $value | humanizePercentage }}')
    tmpl.render(TemplateData(labels={"instance": "gpu-3"}, value=0.9712))
    # 'gpu-3 at 97.12%'

Supported: plain text; ``{{ }}`` actions with ``{{-``/``-}}`` trimming and
``{{/* comments */}}``; the variables ``$labels``, ``$value``, ``$externalLabels``,
``$externalURL`` and ``$`` (and the dot forms ``.Labels.x``, ``.Value``, ...);
string, raw-string and number literals; parenthesised pipelines; pipelines
(``{{ $value | humanize }}``) and calls (``{{ humanize $value }}``) of ``humanize``,
``humanize1024``, ``humanizeDuration``, ``humanizePercentage``,
``humanizeTimestamp``, ``printf``, ``toUpper``, ``toLower``, ``title``, ``stripPort``.
Values print exactly as Prometheus prints them (Go's ``%v`` / ``%.4g``):
``humanize 1234567`` is ``1.235M``, ``humanizeDuration 90`` is ``1m 30s``.

Control structures (``if``, ``range``, ``with``, ...) and other functions are
refused by :func:`parse_template` (at rule-file load), never at evaluation. A
template that fails while rendering (``humanize "abc"``) renders as Prometheus's
``<error expanding template: ...>`` text so the alert itself still goes out.
No Python ``eval`` is involved: a tokenizer, a small parser and an evaluator.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from mlinfra.exceptions import MlinfraError
from mlinfra.promql.gonum import go_float, go_format_g4, go_quote, go_special


class TemplateError(MlinfraError):
    """A template does not parse (raised at load time)."""


class TemplateExecError(MlinfraError):
    """A template failed while rendering (rendered as ``<error expanding template: ...>``)."""


@dataclass(frozen=True)
class TemplateData:
    """What a template sees: Prometheus's ``AlertTemplateData``."""

    labels: Mapping[str, str] = field(default_factory=dict)
    value: float = 0.0
    external_labels: Mapping[str, str] = field(default_factory=dict)
    external_url: str = ""


def _to_float(v: Any) -> float:
    """Prometheus's ``convertToFloat``: numbers, and strings that parse as numbers."""
    if isinstance(v, bool):
        raise TemplateExecError(f"can't convert bool to float: {v}")
    if isinstance(v, int | float):
        return float(v)
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            raise TemplateExecError(f'strconv.ParseFloat: parsing "{v}": invalid syntax') from None
    raise TemplateExecError(f"can't convert {type(v).__name__} to float")


# ---------------------------------------------------------------------- helper functions


def humanize(value: Any) -> str:
    v = _to_float(value)
    if v == 0 or math.isnan(v) or math.isinf(v):
        return go_format_g4(v)
    if abs(v) >= 1:
        prefix = ""
        for p in ("k", "M", "G", "T", "P", "E", "Z", "Y"):
            if abs(v) < 1000:
                break
            prefix = p
            v /= 1000
        return go_format_g4(v) + prefix
    prefix = ""
    for p in ("m", "u", "n", "p", "f", "a", "z", "y"):
        if abs(v) >= 1:
            break
        prefix = p
        v *= 1000
    return go_format_g4(v) + prefix


def humanize1024(value: Any) -> str:
    v = _to_float(value)
    if abs(v) <= 1 or math.isnan(v) or math.isinf(v):
        return go_format_g4(v)
    prefix = ""
    for p in ("ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi"):
        if abs(v) < 1024:
            break
        prefix = p
        v /= 1024
    return go_format_g4(v) + prefix


def humanize_duration(value: Any) -> str:
    v = _to_float(value)
    if math.isnan(v) or math.isinf(v):
        return go_format_g4(v)
    if v == 0:
        return go_format_g4(v) + "s"
    if abs(v) >= 1:
        sign = ""
        if v < 0:
            sign, v = "-", -v
        duration = int(v)
        seconds = duration % 60
        minutes = (duration // 60) % 60
        hours = (duration // 3600) % 24
        days = duration // 86400
        if days:
            return f"{sign}{days}d {hours}h {minutes}m {seconds}s"
        if hours:
            return f"{sign}{hours}h {minutes}m {seconds}s"
        if minutes:
            return f"{sign}{minutes}m {seconds}s"
        return f"{sign}{go_format_g4(v)}s"
    prefix = ""
    for p in ("m", "u", "n", "p", "f", "a", "z", "y"):
        if abs(v) >= 1:
            break
        prefix = p
        v *= 1000
    return f"{go_format_g4(v)}{prefix}s"


def humanize_percentage(value: Any) -> str:
    return go_format_g4(_to_float(value) * 100) + "%"


def humanize_timestamp(value: Any) -> str:
    v = _to_float(value)
    if math.isnan(v) or math.isinf(v):
        return go_format_g4(v)
    t = datetime.fromtimestamp(int(v * 1e9) / 1e9, tz=UTC)
    # Go's time.Time String(): "2006-01-02 15:04:05.999999999 -0700 MST"
    frac = f"{t.microsecond:06d}".rstrip("0")
    return t.strftime("%Y-%m-%d %H:%M:%S") + (f".{frac}" if frac else "") + " +0000 UTC"


def _title(s: Any) -> str:
    return re.sub(r"(^|[^\w'])(\w)", lambda m: m.group(1) + m.group(2).upper(), _go_print(s))


def _strip_port(s: Any) -> str:
    host = _go_print(s)
    m = re.fullmatch(r"\[([^\]]*)\](?::\d*)?", host)
    if m:
        return m.group(1)
    if host.count(":") == 1:
        return host.split(":", 1)[0]
    return host


def go_sprintf(fmt: str, *args: Any) -> str:
    """A subset of Go's ``fmt.Sprintf``: verbs v s d f F e E g G x X q t %, flags, width, precision."""
    out: list[str] = []
    i, argi, n = 0, 0, len(fmt)
    spec_re = re.compile(r"([-+# 0]*)(\d+)?(?:\.(\d*))?([a-zA-Z%])")
    while i < n:
        c = fmt[i]
        if c != "%":
            out.append(c)
            i += 1
            continue
        m = spec_re.match(fmt, i + 1)
        if m is None:
            out.append("%!(NOVERB)")
            break
        flags, width, prec, verb = m.group(1), m.group(2), m.group(3), m.group(4)
        if _too_large(width) or _too_large(prec):
            # Go's parsenum gives up on a number above 1e6 and skips to the end of the
            # format: "%50000000d" renders "%!(NOVERB)", not 50 MB of padding.
            out.append("%!(NOVERB)")
            break
        i = m.end()
        if verb == "%":
            out.append("%")
            continue
        if argi >= len(args):
            out.append(f"%!{verb}(MISSING)")
            continue
        arg = args[argi]
        argi += 1
        out.append(_format_one(flags, int(width) if width else None, prec, verb, arg))
    if argi < len(args):
        extra = ", ".join(f"{_go_type(a)}={_go_print(a)}" for a in args[argi:])
        out.append(f"%!(EXTRA {extra})")
    return "".join(out)


_GO_MAX_NUM = 1_000_000  # fmt's tooLarge(): widths and precisions above this are refused


def _too_large(digits: str | None) -> bool:
    """Whether Go's ``parsenum`` overflows on ``digits``: it checks before adding each digit."""
    num = 0
    for d in digits or "":
        if num > _GO_MAX_NUM:
            return True
        num = num * 10 + int(d)
    return False


def _go_type(a: Any) -> str:
    if isinstance(a, bool):
        return "bool"
    if isinstance(a, int):
        return "int"
    if isinstance(a, float):
        return "float64"
    if isinstance(a, str):
        return "string"
    if isinstance(a, Mapping):
        return "map[string]string"
    return type(a).__name__


def _format_one(flags: str, width: int | None, prec: str | None, verb: str, arg: Any) -> str:
    p = int(prec) if prec not in (None, "") else (0 if prec == "" else None)
    if isinstance(arg, float) and verb in "vfFeEgG":
        special = go_special(arg)
        if special is not None:
            body = special if special != "+Inf" or "+" in flags else "+Inf"
        elif verb == "v" or (verb in "gG" and p is None):
            body = go_float(arg)
            if verb == "G":
                body = body.upper()
            if "+" in flags and arg >= 0:
                body = "+" + body
        else:
            pyfmt = "%" + flags.replace("#", "") + "." + str(6 if p is None else p) + verb.replace("F", "f")
            body = pyfmt % arg
        return _pad(body, width, flags)
    if isinstance(arg, int) and not isinstance(arg, bool) and verb in "vdxX":
        pyverb = "d" if verb == "v" else verb
        return _pad(("%" + flags + pyverb) % arg, width, flags)
    if isinstance(arg, str) and verb in "vsqxX":
        if verb == "q":
            body = go_quote(arg)
        elif verb in "xX":
            body = arg.encode().hex()
            body = body.upper() if verb == "X" else body
        else:
            body = arg if p is None else arg[:p]
        return _pad(body, width, flags)
    if isinstance(arg, bool) and verb in "vt":
        return _pad("true" if arg else "false", width, flags)
    if verb == "v" or (verb == "s" and isinstance(arg, Mapping)):
        return _pad(_go_print(arg), width, flags)
    return f"%!{verb}({_go_type(arg)}={_go_print(arg)})"


def _pad(body: str, width: int | None, flags: str) -> str:
    if width is None or len(body) >= width:
        return body
    if "-" in flags:
        return body.ljust(width)
    if "0" in flags and body[:1] in "+-" and body[1:2].isdigit():
        return body[0] + body[1:].rjust(width - 1, "0")
    return body.rjust(width, "0" if "0" in flags and body[:1].isdigit() else " ")


def _go_print(v: Any) -> str:
    """How ``{{ x }}`` prints a value (Go's ``fmt.Fprint``)."""
    if v is None:
        return "<no value>"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return go_float(v)
    if isinstance(v, Mapping):
        return "map[" + " ".join(f"{k}:{_go_print(v[k])}" for k in sorted(v)) + "]"
    return str(v)


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "humanize": humanize,
    "humanize1024": humanize1024,
    "humanizeDuration": humanize_duration,
    "humanizePercentage": humanize_percentage,
    "humanizeTimestamp": humanize_timestamp,
    "printf": lambda fmt, *args: go_sprintf(_go_print(fmt) if not isinstance(fmt, str) else fmt, *args),
    "toUpper": lambda s: _go_print(s).upper(),
    "toLower": lambda s: _go_print(s).lower(),
    "title": _title,
    "stripPort": _strip_port,
}
_ARITY = dict.fromkeys(FUNCTIONS, 1)
_ARITY["printf"] = -1  # variadic, at least one
_CONTROL = {"if", "else", "end", "range", "with", "define", "template", "block", "break", "continue"}
_VARIABLES = {"$", "$labels", "$value", "$externalLabels", "$externalURL"}
_DOT_FIELDS = {"Labels", "Value", "ExternalLabels", "ExternalURL"}


# ---------------------------------------------------------------------- parse tree


@dataclass(frozen=True)
class _Literal:
    value: Any


@dataclass(frozen=True)
class _Var:
    name: str  # "$labels", "$" (the dot) ...
    fields: tuple[str, ...]


@dataclass(frozen=True)
class _Func:
    name: str


@dataclass(frozen=True)
class _Paren:
    pipeline: tuple[_Command, ...]
    fields: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Command:
    operands: tuple[Any, ...]


@dataclass(frozen=True)
class _Action:
    pipeline: tuple[_Command, ...]


_TOKEN_RE = re.compile(
    r"""\s*(?:
      (?P<str>"(?:[^"\\\n]|\\.)*")
    | (?P<raw>`[^`]*`)
    | (?P<char>'(?:[^'\\\n]|\\.)+')
    | (?P<num>[-+]?(?:0[xX][0-9a-fA-F_]+|(?:\d[\d_]*\.?\d*|\.\d+)(?:[eE][-+]?\d+)?))
    | (?P<var>\$[A-Za-z0-9_]*)
    | (?P<field>(?:\.[A-Za-z_][A-Za-z0-9_]*)+|\.)
    | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
    | (?P<declare>:=|=)
    | (?P<punct>[|(),])
    )""",
    re.VERBOSE,
)


def _unquote(text: str) -> str:
    # Go's double-quoted strings use the same escapes as JSON for everything rule files use.
    import json

    try:
        return str(json.loads(text))
    except ValueError:
        raise TemplateError(f"bad string literal {text}") from None


def _tokenize(src: str) -> list[tuple[str, str, str]]:
    """(kind, text, trailing field chain) triples of one action."""
    tokens: list[tuple[str, str, str]] = []
    pos = 0
    while pos < len(src):
        if src[pos:].strip() == "":
            break
        m = _TOKEN_RE.match(src, pos)
        if m is None or m.end() == pos:
            raise TemplateError(f"unexpected {src[pos:].strip()[:20]!r} in action")
        kind = m.lastgroup or ""
        text = m.group(kind)
        pos = m.end()
        chain = ""
        if kind in ("var", "punct") and (kind == "var" or text == ")"):
            fm = re.compile(r"(?:\.[A-Za-z_][A-Za-z0-9_]*)+").match(src, pos)
            if fm:
                chain, pos = fm.group(0), fm.end()
        tokens.append((kind, text, chain))
    return tokens


class _Parser:
    def __init__(self, tokens: list[tuple[str, str, str]]):
        self.tokens = tokens
        self.i = 0

    def peek(self) -> tuple[str, str, str] | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def pipeline(self, *, in_paren: bool) -> tuple[_Command, ...]:
        commands: list[_Command] = []
        operands: list[Any] = []
        while True:
            tok = self.peek()
            if tok is None or (tok[0] == "punct" and tok[1] == ")"):
                if tok is not None and not in_paren:
                    raise TemplateError("unexpected right paren")
                break
            self.i += 1
            kind, text, chain = tok
            if kind == "punct" and text == "|":
                if not operands:
                    raise TemplateError("missing command before '|'")
                commands.append(_Command(tuple(operands)))
                operands = []
                continue
            if kind == "punct" and text == "(":
                inner = self.pipeline(in_paren=True)
                close = self.peek()
                if close is None or close[1] != ")":
                    raise TemplateError("unclosed left paren")
                self.i += 1
                operands.append(_Paren(inner, _fields(close[2])))
                continue
            if kind == "punct":
                raise TemplateError(f"unexpected {text!r} in operand")
            if kind == "declare":
                raise TemplateError("variable declarations are not supported in alert templates")
            operands.append(_operand(kind, text, chain))
        if operands:
            commands.append(_Command(tuple(operands)))
        elif commands:
            raise TemplateError("missing command after '|'")
        if not commands:
            raise TemplateError("missing value for command")
        for idx, cmd in enumerate(commands):
            first = cmd.operands[0]
            if not isinstance(first, _Func) and len(cmd.operands) > 1:
                raise TemplateError("can't give argument to non-function")
            if idx > 0 and not isinstance(first, _Func):
                raise TemplateError("non executable command in pipeline stage")
        return tuple(commands)


def _fields(chain: str) -> tuple[str, ...]:
    return tuple(p for p in chain.split(".") if p)


def _operand(kind: str, text: str, chain: str) -> Any:
    if kind == "str":
        return _Literal(_unquote(text))
    if kind == "raw":
        return _Literal(text[1:-1])
    if kind == "char":
        raise TemplateError(f"character constants are not supported: {text}")
    if kind == "num":
        clean = text.replace("_", "")
        try:
            if re.fullmatch(r"[-+]?(0[xX][0-9a-fA-F]+|\d+)", clean):
                return _Literal(int(clean, 0))
            return _Literal(float(clean))
        except ValueError:
            raise TemplateError(f"bad number syntax: {text!r}") from None
    if kind == "var":
        if text not in _VARIABLES:
            raise TemplateError(f'undefined variable "{text}"')
        return _Var(text, _fields(chain))
    if kind == "field":
        return _Var("$", _fields(text))
    if kind == "ident":
        if text in ("true", "false"):
            return _Literal(text == "true")
        if text == "nil":
            raise TemplateError("nil is not a command")
        if text in _CONTROL:
            raise TemplateError(
                f"{{{{{text}}}}} is not supported in alert templates (only values and helpers)"
            )
        if text not in FUNCTIONS:
            raise TemplateError(f'function "{text}" not defined')
        return _Func(text)
    raise TemplateError(f"unexpected {text!r}")  # pragma: no cover - the regex has no other groups


# ---------------------------------------------------------------------- templates


@dataclass(frozen=True)
class Template:
    """A parsed template; :meth:`render` never raises (errors become Prometheus's error text)."""

    source: str
    parts: tuple[str | _Action, ...]

    @property
    def is_static(self) -> bool:
        return all(isinstance(p, str) for p in self.parts)

    def render(self, data: TemplateData) -> str:
        try:
            return self.execute(data)
        except TemplateExecError as e:
            return f"<error expanding template: {e}>"

    def execute(self, data: TemplateData) -> str:
        """Render, raising :class:`TemplateExecError` on failure."""
        out: list[str] = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
            else:
                out.append(_go_print(_run_pipeline(part.pipeline, data)))
        return "".join(out)


def parse_template(source: str) -> Template:
    """Parse ``source``; raises :class:`TemplateError` naming the problem."""
    parts: list[str | _Action] = []
    pos = 0
    text_buf = ""
    while True:
        start = source.find("{{", pos)
        if start < 0:
            text_buf += source[pos:]
            break
        text = source[pos:start]
        trim_left = (
            source.startswith("{{- ", start)
            or source.startswith("{{-\t", start)
            or (source.startswith("{{-\n", start))
        )
        if trim_left:
            text = text.rstrip(" \t\r\n")
        text_buf += text
        inner_start = start + (3 if trim_left else 2)
        end = _find_close(source, inner_start)
        if end < 0:
            raise TemplateError("unclosed action")
        inner = source[inner_start:end]
        trim_right = False
        if inner.endswith(" -") or inner.endswith("\t-") or inner.endswith("\n-"):
            trim_right = True
            inner = inner[:-1]
        pos = end + 2
        if trim_right:
            while pos < len(source) and source[pos] in " \t\r\n":
                pos += 1
        stripped = inner.strip()
        if stripped.startswith("/*"):
            if not stripped.endswith("*/"):
                raise TemplateError("unclosed comment")
            continue
        if text_buf:
            parts.append(text_buf)
            text_buf = ""
        tokens = _tokenize(inner)
        if not tokens:
            raise TemplateError("missing value for command")
        if any(kind == "declare" for kind, _, _ in tokens):
            raise TemplateError("variable declarations are not supported in alert templates")
        parser = _Parser(tokens)
        pipeline = parser.pipeline(in_paren=False)
        parts.append(_Action(pipeline))
    if text_buf:
        parts.append(text_buf)
    return Template(source, tuple(parts))


def _find_close(source: str, pos: int) -> int:
    """Index of the ``}}`` closing the action that starts at ``pos`` (quotes may contain ``}}``)."""
    i = pos
    while i < len(source):
        c = source[i]
        if c in "\"'`":
            j = i + 1
            while j < len(source) and source[j] != c:
                j += 2 if source[j] == "\\" and c != "`" else 1
            i = j + 1
            continue
        if source.startswith("}}", i):
            return i
        i += 1
    return -1


def _run_pipeline(pipeline: tuple[_Command, ...], data: TemplateData) -> Any:
    value: Any = _NOTHING
    for cmd in pipeline:
        value = _run_command(cmd, data, value)
    return value


_NOTHING = object()


def _run_command(cmd: _Command, data: TemplateData, piped: Any) -> Any:
    first = cmd.operands[0]
    if isinstance(first, _Func):
        args = [_eval_operand(op, data) for op in cmd.operands[1:]]
        if piped is not _NOTHING:
            args.append(piped)
        arity = _ARITY[first.name]
        if arity >= 0 and len(args) != arity:
            raise TemplateExecError(f"wrong number of args for {first.name}: want {arity} got {len(args)}")
        if arity < 0 and not args:
            raise TemplateExecError(f"wrong number of args for {first.name}: want at least 1 got 0")
        try:
            return FUNCTIONS[first.name](*args)
        except TemplateExecError as e:
            raise TemplateExecError(f"error calling {first.name}: {e}") from None
        except (ArithmeticError, ValueError, OSError) as e:
            # A value out of Python's range (humanizeTimestamp of 1e300: the year is past
            # 9999) is this alert's template error, not the evaluation's.
            raise TemplateExecError(f"error calling {first.name}: {type(e).__name__}: {e}") from None
    return _eval_operand(first, data)


def _eval_operand(op: Any, data: TemplateData) -> Any:
    if isinstance(op, _Literal):
        return op.value
    if isinstance(op, _Func):
        return _run_command(_Command((op,)), data, _NOTHING)
    if isinstance(op, _Paren):
        return _walk_fields(_run_pipeline(op.pipeline, data), op.fields)
    if isinstance(op, _Var):
        root: Any
        if op.name == "$":
            root = data
        elif op.name == "$labels":
            root = dict(data.labels)
        elif op.name == "$value":
            root = data.value
        elif op.name == "$externalLabels":
            root = dict(data.external_labels)
        else:
            root = data.external_url
        return _walk_fields(root, op.fields)
    raise TemplateExecError(f"cannot evaluate {op!r}")  # pragma: no cover


def _walk_fields(value: Any, fields: tuple[str, ...]) -> Any:
    for name in fields:
        if isinstance(value, TemplateData):
            if name not in _DOT_FIELDS:
                raise TemplateExecError(f"can't evaluate field {name} in type *template.tmplData")
            value = {
                "Labels": dict(value.labels),
                "Value": value.value,
                "ExternalLabels": dict(value.external_labels),
                "ExternalURL": value.external_url,
            }[name]
        elif isinstance(value, Mapping):
            # Prometheus executes with missingkey=zero: a missing label is "".
            value = value.get(name, "")
        else:
            raise TemplateExecError(f"can't evaluate field {name} in type {_go_type(value)}")
    return value
