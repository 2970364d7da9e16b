"""Prometheus 2.42's template functions (``template/template.go``), with Go's types and messages.

    fns = prometheus_functions(query=lambda expr: engine.instant(expr, at), external_url="http://x")
    fns["humanize"].fn(1234567)      # '1.235M'

``query`` runs against the fleet's engine at the evaluation time and returns a
``template.queryResult`` (a list of ``*template.sample`` structs with ``Labels`` and
``Value``); ``first``, ``label``, ``value``, ``sortByLabel`` work on it. Regexes
(``match``, ``reReplaceAll``) are RE2, as Go's ``regexp``.
"""

from __future__ import annotations

import math
import unicodedata
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import re2

from mlinfra.promql.gonum import go_float, go_format_g4, parse_go_float
from mlinfra.rules.gotemplate_exec import AnyMap, GoCallError, GoFunc, GoStruct
from mlinfra.rules.gotime import go_time_struct

_ANY = "interface {}"
_SAMPLE = "*template.sample"
_RESULT = "template.queryResult"


class QueryResult(list[GoStruct]):
    """``template.queryResult``: what ``query`` returns (``[]*sample``)."""

    go_type = _RESULT


class SafeHTML(str):
    """``html/template.HTML``: a string that is not a ``string`` to typed parameters."""

    __slots__ = ()
    go_type = "template.HTML"


def make_sample(labels: Mapping[str, str], value: float) -> GoStruct:
    return GoStruct(_SAMPLE, {"Labels": dict(labels), "Value": float(value)})


def to_float(v: Any) -> float:
    """Prometheus's ``convertToFloat``: float64, int, and strings that ``strconv.ParseFloat`` reads."""
    if isinstance(v, bool):
        raise GoCallError("can't convert bool to float")
    if isinstance(v, int | float):
        return float(v)
    if isinstance(v, str):
        parsed = parse_go_float(v)
        if parsed is None:
            kind = (
                "value out of range" if parse_go_float(v) is None and _looks_numeric(v) else "invalid syntax"
            )
            raise GoCallError(f'strconv.ParseFloat: parsing "{v}": {kind}')
        return parsed
    raise GoCallError(f"can't convert {getattr(v, 'go_type', type(v).__name__)} to float")


def _looks_numeric(v: str) -> bool:
    try:
        return math.isinf(float(v.replace("_", ""))) and "inf" not in v.lower()
    except ValueError:
        return False


def humanize(value: Any) -> str:
    v = to_float(value)
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
    v = to_float(value)
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
    v = to_float(value)
    if math.isnan(v) or math.isinf(v):
        return go_format_g4(v)
    if v == 0:
        return go_format_g4(v) + "s"
    if abs(v) >= 1:
        sign = ""
        if v < 0:
            sign, v = "-", -v
        duration = int(v)
        seconds, minutes, hours, days = (
            duration % 60,
            (duration // 60) % 60,
            (duration // 3600) % 24,
            duration // 86400,
        )
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
    return go_format_g4(to_float(value) * 100) + "%"


def _float_to_time(v: float) -> datetime:
    """Prometheus's ``floatToTime``: nanoseconds, then ``model.Time`` (milliseconds), in UTC."""
    ns = v * 1e9
    if ns > 2**63 - 1 or ns < -(2**63):
        raise GoCallError(
            f"{go_float(v)} cannot be represented as a nanoseconds timestamp since it overflows int64"
        )
    ms = int(ns) // 1_000_000 if int(ns) >= 0 else -((-int(ns)) // 1_000_000)
    try:
        return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)
    except OverflowError:
        raise GoCallError(f"{go_float(v)} is outside the years this implementation prints (1-9999)") from None


def humanize_timestamp(value: Any) -> str:
    v = to_float(value)
    if math.isnan(v) or math.isinf(v):
        return go_format_g4(v)
    return str(go_time_struct(_float_to_time(v)).go_string())


def _to_time(value: Any) -> GoStruct:
    v = to_float(value)
    if math.isnan(v) or math.isinf(v):
        raise GoCallError("value is NaN or Inf")
    return go_time_struct(_float_to_time(v))


def _is_separator(c: str) -> bool:
    """Go's ``strings.isSeparator`` (what ``strings.Title`` capitalises after)."""
    if ord(c) <= 0x7F:
        return not (c.isascii() and (c.isalnum() or c == "_"))
    if c.isalpha() or unicodedata.category(c) == "Nd":
        return False
    return c.isspace()


def go_title(s: str) -> str:
    out, prev = [], " "
    for c in s:
        out.append(_one_case(c, "title") if _is_separator(prev) else c)
        prev = c
    return "".join(out)


def _one_case(c: str, how: str) -> str:
    """Go maps rune to rune: a case mapping that would grow the string leaves the rune alone."""
    mapped = c.title() if how == "title" else c.upper() if how == "upper" else c.lower()
    return mapped if len(mapped) == 1 else c


def strip_port(host_port: str) -> str:
    """``net.SplitHostPort``'s host, or the input unchanged where Go reports an error."""
    i = host_port.rfind(":")
    if i < 0:
        return host_port
    if host_port.startswith("["):
        end = host_port.find("]")
        if end < 0 or end + 1 != i:
            return host_port
        host, j, k = host_port[1:end], 1, end + 1
    else:
        host, j, k = host_port[:i], 0, 0
        if ":" in host:
            return host_port
    if "[" in host_port[j:] or "]" in host_port[k:]:
        return host_port
    return host


# RE2's (C++) error codes as Go's regexp/syntax words them.
_RE2_TO_GO = {
    "missing )": "missing closing )",
    "missing ]": "missing closing ]",
    "unexpected )": "unexpected )",
    "invalid escape sequence": "invalid escape sequence",
    "invalid character class": "invalid character class",
    "invalid character class range": "invalid character class range",
    "trailing \\": "trailing backslash at end of expression",
    "no argument for repetition operator": "missing argument to repetition operator",
    "missing argument to repetition operator": "missing argument to repetition operator",
    "bad repetition operator": "invalid nested repetition operator",
    "invalid repetition size": "invalid repeat count",
    "invalid perl operator": "invalid or unsupported Perl syntax",
    "invalid named capture group": "invalid named capture",
    "invalid UTF-8": "invalid UTF-8",
}


def _go_backquote(s: str) -> str:
    """Go's regexp ``quote``: backquoted when possible, else ``strconv.Quote``."""
    from mlinfra.promql.gonum import go_quote

    if "`" not in s and all(c == "\t" or (c.isprintable() and c != "\ufeff") for c in s):
        return "`" + s + "`"
    return go_quote(s)


def _regex(pattern: str, *, must: bool = True) -> Any:
    options = re2.Options()
    options.log_errors = False
    try:
        return re2.compile(pattern, options=options)
    except re2.error as e:
        reason = e.args[0] if e.args else e
        reason = reason.decode("utf-8", "replace") if isinstance(reason, bytes) else str(reason)
        code, _, arg = reason.partition(": ")
        go_code = _RE2_TO_GO.get(code, code)
        message = f"error parsing regexp: {go_code}: `{arg}`"
        if must:  # regexp.MustCompile panics; the template call recovers the panic as its error
            message = f"regexp: Compile({_go_backquote(pattern)}): {message}"
        raise GoCallError(message) from None


def _match(pattern: str, text: str) -> bool:
    return _regex(pattern, must=False).search(text) is not None


def _expand(template: str, m: Any, names: Mapping[str, int]) -> str:
    """Go's ``Regexp.Expand``: ``$1``, ``${1}``, ``$name``, ``${name}``, ``$$``."""
    out, i = [], 0
    while i < len(template):
        c = template[i]
        if c != "$" or i + 1 >= len(template):
            out.append(c)
            i += 1
            continue
        if template[i + 1] == "$":
            out.append("$")
            i += 2
            continue
        braced = template[i + 1] == "{"
        j = i + 2 if braced else i + 1
        k = j
        while k < len(template) and (template[k].isalnum() or template[k] == "_") and template[k].isascii():
            k += 1
        if k == j or (braced and (k >= len(template) or template[k] != "}")):
            out.append("$")  # malformed: Go copies the "$" and goes on
            i += 1
            continue
        name = template[j:k]
        i = k + 1 if braced else k
        group = int(name) if name.isdigit() else names.get(name, -1)
        if 0 <= group <= m.re.groups and m.group(group) is not None:
            out.append(m.group(group))
    return "".join(out)


def _re_replace_all(pattern: str, repl: str, text: str) -> str:
    rx = _regex(pattern)
    out, pos, last_match_end = [], 0, -1
    while pos <= len(text):
        m = rx.search(text, pos)
        if m is None:
            break
        start, end = m.span()
        if end == start and start == last_match_end:  # Go skips an empty match abutting the last one
            if start >= len(text):
                break
            out.append(text[start])
            pos = start + 1
            continue
        out.append(text[pos:start])
        out.append(_expand(repl, m, rx.groupindex))
        last_match_end = end
        if end == start:
            if start < len(text):
                out.append(text[start])
            pos = start + 1
        else:
            pos = end
    out.append(text[pos:])
    return "".join(out)


def _first(v: Sequence[GoStruct] | None) -> GoStruct:
    if not v:
        raise GoCallError("first() called on vector with no elements")
    return v[0]


def _sample_field(s: GoStruct | None, name: str) -> Any:
    if s is None:
        raise GoCallError("runtime error: invalid memory address or nil pointer dereference")
    return s.fields[name]


def _sort_by_label(label: str, v: Sequence[GoStruct] | None) -> QueryResult:
    return QueryResult(sorted(v or (), key=lambda s: s.fields["Labels"].get(label, "").encode()))


_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


def parse_duration(d: str) -> float:
    """``model.ParseDuration``, in seconds (``1h30m`` is 5400)."""
    import re

    if d == "0":
        return 0.0
    m = re.fullmatch(r"(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?", d)
    if not d or m is None:
        raise GoCallError(f'not a valid duration string: "{d}"')
    total = 0
    for value, unit in zip(m.groups(), ("y", "w", "d", "h", "m", "s", "ms"), strict=True):
        if value is not None:
            total += int(value) * int(_DURATION_UNITS[unit] * 1000)
    return total / 1000


def _link(tab: int) -> Callable[[str], str]:
    return lambda expr: f"/graph?g0.expr={urllib.parse.quote_plus(expr, safe='')}&g0.tab={tab}"


def prometheus_functions(
    *, query: Callable[[str], Sequence[tuple[Mapping[str, str], float]]] | None = None, external_url: str = ""
) -> dict[str, GoFunc]:
    """The functions Prometheus 2.42 gives alert templates; ``query`` runs PromQL at the evaluation time."""

    def run_query(expr: str) -> QueryResult:
        if query is None:
            raise GoCallError("no query engine is available to this template")
        return QueryResult(make_sample(labels, value) for labels, value in query(expr))

    parsed_url = urllib.parse.urlsplit(external_url)
    g = GoFunc
    return {
        "query": g(run_query, ("string",)),
        "first": g(_first, (_RESULT,)),
        "label": g(lambda name, s: _sample_field(s, "Labels").get(name, ""), ("string", _SAMPLE)),
        "value": g(lambda s: _sample_field(s, "Value"), (_SAMPLE,)),
        "strvalue": g(lambda s: _sample_field(s, "Labels").get("__value__", ""), (_SAMPLE,)),
        "args": g(lambda *a: AnyMap({f"arg{i}": x for i, x in enumerate(a)}), (), _ANY),
        "reReplaceAll": g(_re_replace_all, ("string", "string", "string")),
        "safeHtml": g(SafeHTML, ("string",)),
        "match": g(_match, ("string", "string")),
        "title": g(go_title, ("string",)),
        "toUpper": g(lambda s: "".join(_one_case(c, "upper") for c in s), ("string",)),
        "toLower": g(lambda s: "".join(_one_case(c, "lower") for c in s), ("string",)),
        "graphLink": g(_link(0), ("string",)),
        "tableLink": g(_link(1), ("string",)),
        "sortByLabel": g(_sort_by_label, ("string", _RESULT)),
        "humanize": g(humanize, (_ANY,)),
        "humanize1024": g(humanize1024, (_ANY,)),
        "humanizeDuration": g(humanize_duration, (_ANY,)),
        "humanizePercentage": g(humanize_percentage, (_ANY,)),
        "humanizeTimestamp": g(humanize_timestamp, (_ANY,)),
        "toTime": g(_to_time, (_ANY,)),
        "pathPrefix": g(lambda: parsed_url.path),
        "externalURL": g(lambda: external_url),
        "parseDuration": g(parse_duration, ("string",)),
        "stripPort": g(strip_port, ("string",)),
    }


FUNCTION_NAMES = frozenset(prometheus_functions())
