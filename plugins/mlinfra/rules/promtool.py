"""Rule unit tests in ``promtool test rules``'s file format, run on the local engine.

The same test files run under the real ``promtool test rules`` and here, with the
same verdicts; failures print expected vs got as promtool prints them::

    rule_files: [../host.yaml]
    evaluation_interval: 1m
    tests:
      - interval: 1m
        input_series:
          - series: 'ml_cpu_usage_percent{core="all", host="node-1"}'
            values: '50+5x10 95x10'          # promtool's expanding notation
        alert_rule_test:
          - eval_time: 15m
            alertname: HighCPUUsage
            exp_alerts:
              - exp_labels: {severity: warning, core: all, host: node-1}
                exp_annotations: {summary: "..."}
        promql_expr_test:
          - expr: ml_cpu_usage_percent > 90
            eval_time: 15m
            exp_samples:
              - labels: 'ml_cpu_usage_percent{core="all", host="node-1"}'
                value: 95

    >>> run_test_files(["include/alert_rules/tests/host_test.yaml"])   # prints, returns the exit code
    Unit Testing:  include/alert_rules/tests/host_test.yaml
      SUCCESS
    <BLANKLINE>
    0

Semantics follow promtool 2.42: each test group gets a fresh store (in-memory
SQLite); input samples are loaded as time advances; every group of the rule
files is evaluated at 0, ``evaluation_interval``, ... up to the largest
``eval_time``, in ``group_eval_order`` when given; an alert test at ``eval_time``
compares the *firing* alerts of the last evaluation at or before it; expression
tests run after all evaluations. Values compare exactly, as promtool does.

Not supported (reported as a failure of the test group, never silently wrong):
``stale`` markers in ``input_series`` (the store keeps no staleness markers) and
expressions the local engine refuses.
"""

from __future__ import annotations

import glob
import os
import re
import sys
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any, TextIO

import yaml

from mlinfra.durations import parse_duration
from mlinfra.exceptions import InvalidRuleFile
from mlinfra.promql.gonum import go_float_e, go_quote

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


def _number(text: str) -> float:
    t = text.lower()
    if t.lstrip("+-") in ("inf", "nan"):
        return float(t)
    return float(text)


def expand_values(text: str) -> list[SeriesValue]:
    """promtool's value notation -> one entry per interval step.

    ``1+2x3`` -> 1 3 5 7; ``5-1x3`` -> 5 4 3 2; ``1x3`` -> 1 1 1 1; ``_`` -> omitted;
    ``_x3`` -> three omitted; ``stale`` -> a staleness marker; plain numbers, ``Inf``, ``NaN``.
    """
    tokens: list[tuple[str, str]] = []
    pos = 0
    text = str(text)
    while pos < len(text):
        if not text[pos:].strip():
            break
        m = _VALUE_TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise UnitTestFileError(f"bad series values {text!r}: unexpected {text[pos:].strip()[:10]!r}")
        kind = m.lastgroup or ""
        value = m.group(kind)
        tokens.append((kind, value))
        pos = m.end()
    # Sign tokens glued to following numbers belong to them ("1 -2" is two numbers; "1-2x3" is a step).
    out: list[SeriesValue] = []
    i = 0

    def need(kind: str) -> str:
        nonlocal i
        if i >= len(tokens) or tokens[i][0] != kind:
            got = tokens[i][1] if i < len(tokens) else "end of input"
            raise UnitTestFileError(f"bad series values {text!r}: expected {kind}, got {got!r}")
        i += 1
        return tokens[i - 1][1]

    def count() -> int:
        raw = need("num")
        if not re.fullmatch(r"\d+", raw):
            raise UnitTestFileError(
                f"bad series values {text!r}: repetition count must be an integer, got {raw!r}"
            )
        return int(raw)

    while i < len(tokens):
        kind, value = tokens[i]
        if kind == "blank":
            i += 1
            if i < len(tokens) and tokens[i][0] == "times":
                i += 1
                out.extend([None] * count())
            else:
                out.append(None)
            continue
        if kind == "word":
            if value != "stale":
                raise UnitTestFileError(
                    f'bad series values {text!r}: expected number or "stale", got {value!r}'
                )
            i += 1
            out.append(STALE)
            continue
        if kind == "sign":
            # "+5" or "-5" written with a space: a signed number.
            i += 1
            start = _number(value + need("num"))
        elif kind == "num":
            i += 1
            start = _number(value)
        else:
            raise UnitTestFileError(f"bad series values {text!r}: unexpected {value!r}")
        if i < len(tokens) and tokens[i][0] == "times":
            i += 1
            n = count()
            out.extend([start] * (n + 1))
            continue
        step: float | None = None
        if i < len(tokens) and tokens[i][0] == "num" and tokens[i][1][0] in "+-":
            if i + 1 < len(tokens) and tokens[i + 1][0] == "times":
                step = _number(tokens[i][1])
                i += 2
        elif (
            i < len(tokens) and tokens[i][0] == "sign" and i + 2 < len(tokens) and tokens[i + 2][0] == "times"
        ):
            step = _number(tokens[i][1] + tokens[i + 1][1])
            i += 3
        if step is not None:
            n = count()
            v = start
            for _ in range(n + 1):
                out.append(v)
                v += step
            continue
        out.append(start)
    return out


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


# ---------------------------------------------------------------------- Go formatting


def go_duration(seconds: float) -> str:
    """Go's ``time.Duration.String()`` (``1h0m0s``, ``1m30s``, ``500ms``, ``0s``)."""
    ns = round(seconds * 1e9)
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    ns = abs(ns)
    if ns < 1_000_000_000:
        for unit, size in (("ms", 1_000_000), ("µs", 1_000), ("ns", 1)):
            if ns >= size:
                return sign + _trim(Decimal(ns) / size) + unit
    h, rem = divmod(ns, 3_600_000_000_000)
    m, rem = divmod(rem, 60_000_000_000)
    s = _trim(Decimal(rem) / 1_000_000_000) + "s"
    if h:
        return f"{sign}{h}h{m}m{s}"
    if m:
        return f"{sign}{m}m{s}"
    return sign + s


def _trim(d: Decimal) -> str:
    text = format(d.normalize(), "f")
    return text


def model_duration(seconds: float) -> str:
    """Prometheus's ``model.Duration.String()``: ``5m``, ``1h30m``, ``10d`` (weeks/years only when exact)."""
    ms = round(seconds * 1000)
    if ms == 0:
        return "0s"
    out = ""
    for unit, mult, exact in (
        ("y", 31_536_000_000, True),
        ("w", 604_800_000, True),
        ("d", 86_400_000, False),
        ("h", 3_600_000, False),
        ("m", 60_000, False),
        ("s", 1000, False),
        ("ms", 1, False),
    ):
        if exact and ms % mult:
            continue
        if ms // mult > 0:
            out += f"{ms // mult}{unit}"
            ms -= (ms // mult) * mult
    return out


def go_labels(labels: dict[str, str]) -> str:
    """Prometheus's ``labels.Labels.String()``: ``{a="b", c="d"}``."""
    return "{" + ", ".join(f"{k}={go_quote(labels[k])}" for k in sorted(labels)) + "}"


def _indent_lines(lines: str, indent: str) -> str:
    return ("\n" + indent).join(lines.split("\n"))


def _alerts_string(alerts: list[tuple[dict[str, str], dict[str, str]]]) -> str:
    if not alerts:
        return "[]"
    parts = []
    for i, (labels, notes) in enumerate(alerts):
        body = "Labels:" + go_labels(labels) + "\nAnnotations:" + go_labels(notes)
        parts.append(f"{i}:" + _indent_lines("\n" + body, "  "))
    return "[\n" + ",\n".join(parts) + "\n]"


def _samples_string(samples: list[tuple[dict[str, str], float]]) -> str:
    if not samples:
        return "nil"
    return ", ".join(go_labels(labels) + " " + go_float_e(v) for labels, v in samples)


def _sort_key(labels: dict[str, str]) -> list[tuple[str, str]]:
    return sorted(labels.items())


# ---------------------------------------------------------------------- the test file


_FILE_FIELDS = {"rule_files", "evaluation_interval", "group_eval_order", "tests"}
_GROUP_FIELDS = {
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


def _duration(value: Any, default: float, what: str) -> float:
    if value is None:
        return default
    if str(value).strip() == "0":
        return 0.0
    try:
        return parse_duration(str(value))
    except ValueError:
        raise UnitTestFileError(f'{what}: not a valid duration string: "{value}"') from None


def _strmap(value: Any) -> dict[str, str]:
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


def _run_test_group(
    tg: dict[str, Any],
    rule_files: list[str],
    eval_interval: float,
    group_order: dict[str, int],
    default_interval: float,
) -> list[str]:
    from mlinfra.promql.engine import LocalEngine
    from mlinfra.rules.evaluate import evaluate_groups
    from mlinfra.rules.files import load_rule_file
    from mlinfra.rules.state import MemoryAlertStates
    from mlinfra.samples import Sample

    interval = _duration(tg.get("interval"), default_interval, "interval")
    test_name = str(tg.get("name") or "")
    store = _memory_store()
    engine = LocalEngine(store)
    try:
        # Input series, expanded: (time s, Sample) sorted by time for incremental loading.
        pending_samples: list[tuple[float, Sample]] = []
        for item in tg.get("input_series") or []:
            if not isinstance(item, dict):
                return [f"input_series: expected a mapping, got {item!r}"]
            name, labels = parse_series(str(item.get("series", "")))
            values = expand_values(str(item.get("values", "") if item.get("values") is not None else ""))
            for i, v in enumerate(values):
                if v is None:
                    continue
                if v == STALE:
                    return [
                        f"    input_series {item.get('series')!r}: stale markers are not supported by the "
                        "local engine's store (no staleness markers); run this test with promtool"
                    ]
                pending_samples.append((i * interval, Sample(name, labels, float(v), i * interval)))
        pending_samples.sort(key=lambda x: x[0])

        groups = []
        errors: list[str] = []
        for f in rule_files:
            try:
                groups.extend(load_rule_file(f, engine=engine))
            except InvalidRuleFile as e:
                errors.extend(str(p) for p in e.problems)
        if errors:
            return errors
        for gname in group_order:
            if gname not in {g.name for g in groups}:
                return [f"group {gname!r} in group_eval_order is not in the rule files"]
        # Stable: file order for groups group_eval_order does not name (promtool gives them 0).
        groups.sort(key=lambda g: group_order.get(g.name, 0))

        alert_tests = tg.get("alert_rule_test") or []
        expr_tests = tg.get("promql_expr_test") or []
        for a in alert_tests:
            if not a.get("alertname"):
                where = f" (in TestGroup {test_name})" if test_name else ""
                eval_time = model_duration(_duration(a.get("eval_time"), 0, "eval_time"))
                return [
                    f"an item under alert_rule_test misses required attribute alertname at eval_time {eval_time}{where}"
                ]
        alert_times = sorted({_duration(a.get("eval_time"), 0, "eval_time") for a in alert_tests})
        max_t = max(
            [_duration(a.get("eval_time"), 0, "eval_time") for a in alert_tests]
            + [_duration(e.get("eval_time"), 0, "eval_time") for e in expr_tests]
            + [0.0]
        )

        states = MemoryAlertStates()
        loaded = 0
        curr = 0
        ts = 0.0
        step = 0
        while ts <= max_t + 1e-9:
            upto = loaded
            while upto < len(pending_samples) and pending_samples[upto][0] <= ts + 1e-9:
                upto += 1
            if upto > loaded:
                store.write_samples(s for _, s in pending_samples[loaded:upto])
                loaded = upto
            result = evaluate_groups(
                groups,
                engine,
                at=ts,
                store=store,
                states=states,
                external_labels=_strmap(tg.get("external_labels")),
                external_url=str(tg.get("external_url") or ""),
            )
            if result.errors:
                errors.extend(
                    f"    rule: {e.rule}, time: {go_duration(ts)}, err: {e.message}" for e in result.errors
                )
                return errors
            while curr < len(alert_times) and ts <= alert_times[curr] < ts + eval_interval - 1e-9:
                t = alert_times[curr]
                got_by_name: dict[str, list[tuple[dict[str, str], dict[str, str]]]] = {}
                for alert in result.firing:
                    got_by_name.setdefault(alert.alertname, []).append(
                        (dict(alert.labels), dict(alert.annotations))
                    )
                for case in alert_tests:
                    if _duration(case.get("eval_time"), 0, "eval_time") != t:
                        continue
                    name = str(case["alertname"])
                    got = sorted(
                        got_by_name.get(name, []), key=lambda la: (_sort_key(la[0]), _sort_key(la[1]))
                    )
                    exp = []
                    for ea in case.get("exp_alerts") or []:
                        labels = _strmap(ea.get("exp_labels"))
                        labels["alertname"] = name
                        exp.append((labels, _strmap(ea.get("exp_annotations"))))
                    exp.sort(key=lambda la: (_sort_key(la[0]), _sort_key(la[1])))
                    if exp != got:
                        prefix = f"    name: {test_name},\n" if test_name else ""
                        errors.append(
                            f"{prefix}    alertname: {name}, time: {model_duration(t)}, \n"
                            f"        exp:{_indent_lines(_alerts_string(exp), ' ' * 12)}, \n"
                            f"        got:{_indent_lines(_alerts_string(got), ' ' * 12)}"
                        )
                curr += 1
            step += 1
            ts = step * eval_interval

        for case in expr_tests:
            expr = str(case.get("expr", ""))
            t = _duration(case.get("eval_time"), 0, "eval_time")
            try:
                value = engine.instant(expr, t)
            except Exception as e:
                errors.append(f"    expr: {go_quote(expr)}, time: {model_duration(t)}, err: {e}")
                continue
            got_samples = (
                [({}, float(value))]
                if isinstance(value, float | int)
                else [(dict(s.labels), s.value) for s in value]
            )
            exp_samples: list[tuple[dict[str, str], float]] = []
            bad = False
            for es in case.get("exp_samples") or []:
                try:
                    name, labels = _parse_metric(str(es.get("labels", "")))
                except UnitTestFileError as e:
                    errors.append(
                        f"    expr: {go_quote(expr)}, time: {model_duration(t)}, "
                        f"err: labels {go_quote(str(es.get('labels', '')))}: {e}"
                    )
                    bad = True
                    break
                if name:
                    labels["__name__"] = name
                exp_samples.append((labels, _to_float(es.get("value"))))
            if bad:
                continue
            exp_samples.sort(key=lambda s: _sort_key(s[0]))
            got_samples.sort(key=lambda s: _sort_key(s[0]))
            if not _samples_equal(exp_samples, got_samples):
                errors.append(
                    f"    expr: {go_quote(expr)}, time: {model_duration(t)},\n"
                    f"        exp: {_samples_string(exp_samples)}\n"
                    f"        got: {_samples_string(got_samples)}"
                )
        return errors
    finally:
        store.engine.dispose()


def _samples_equal(a: list[tuple[dict[str, str], float]], b: list[tuple[dict[str, str], float]]) -> bool:
    # reflect.DeepEqual on float64: exact, and NaN never equals NaN.
    return len(a) == len(b) and all(la == lb and va == vb for (la, va), (lb, vb) in zip(a, b, strict=True))


def _to_float(v: Any) -> float:
    if isinstance(v, int | float) and not isinstance(v, bool):
        return float(v)
    if v is None:
        return 0.0
    try:
        return _number(str(v).strip())
    except ValueError:
        raise UnitTestFileError(f"exp_samples value {v!r} is not a number") from None


def _parse_metric(text: str) -> tuple[str, dict[str, str]]:
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


def _memory_store() -> Any:
    import sqlalchemy as sa

    from mlinfra.store import MetricsStore

    # Not MetricsStore.from_url: that shares one engine per URL, and every test group
    # needs its own empty database.
    engine = sa.create_engine(
        "sqlite://", poolclass=sa.pool.StaticPool, connect_args={"check_same_thread": False}
    )
    store = MetricsStore(engine, description="promtool test store (in memory)")
    store.create_schema()
    return store


def run_test_file(
    path: str | os.PathLike[str], *, out: TextIO | None = None, err: TextIO | None = None
) -> bool:
    """Run one test file, printing like promtool; True when every test passed."""
    out = out or sys.stdout
    err = err or sys.stderr
    print(f"Unit Testing:  {path}", file=out)
    errors = _test_file_errors(Path(path))
    if errors:
        print("  FAILED:", file=err)
        for e in errors:
            print(e, file=err)
            print(file=out)
    else:
        print("  SUCCESS", file=out)
    print(file=out)
    out.flush()
    err.flush()
    return not errors


def _test_file_errors(path: Path) -> list[str]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as e:
        return [f"open {path}: {e.strerror}"]
    except yaml.YAMLError as e:
        return [f"yaml: {e}"]
    data = data or {}
    problems = _strict(data, _FILE_FIELDS, "main.unitTestFile", "the test file")
    for i, tg in enumerate(data.get("tests") or [] if isinstance(data, dict) else []):
        problems += _strict(tg, _GROUP_FIELDS, "main.testGroup", f"tests[{i}]")
    if problems:
        return ["yaml: unmarshal errors:\n  " + "\n  ".join(problems)]
    try:
        eval_interval = _duration(data.get("evaluation_interval"), 60.0, "evaluation_interval") or 60.0
        rule_files: list[str] = []
        for pattern in data.get("rule_files") or []:
            full = str(pattern) if os.path.isabs(str(pattern)) else str(path.parent / str(pattern))
            matches = sorted(glob.glob(full))
            if not matches:
                return (
                    [f"failed to match rule file pattern {full!r}"]
                    if glob.has_magic(full)
                    else [f"open {full}: no such file or directory"]
                )
            rule_files.extend(matches)
        order: dict[str, int] = {}
        for i, gname in enumerate(data.get("group_eval_order") or []):
            if gname in order:
                return [f"group name repeated in evaluation order: {gname}"]
            order[str(gname)] = i
        errors: list[str] = []
        for tg in data.get("tests") or []:
            errors += _run_test_group(tg, rule_files, eval_interval, order, eval_interval)
        return errors
    except UnitTestFileError as e:
        return [str(e)]


def run_test_files(paths: Sequence[str | os.PathLike[str]]) -> int:
    """``promtool test rules`` on the local engine: exit code 0 when every file passed, else 1."""
    failed = False
    for p in paths:
        if not run_test_file(p):
            failed = True
    return 1 if failed else 0


def check_rule_files(paths: Sequence[str | os.PathLike[str]], *, out: TextIO | None = None) -> int:
    """``promtool check rules`` on the local engine: 0 when every file is valid, else 1."""
    from mlinfra.promql.engine import LocalEngine
    from mlinfra.rules.files import load_rule_file

    out = out or sys.stdout
    engine = LocalEngine(_memory_store())
    failed = False
    for p in paths:
        print(f"Checking {p}", file=out)
        try:
            groups = load_rule_file(p, engine=engine)
        except InvalidRuleFile as e:
            failed = True
            print(f"  FAILED: {len(e.problems)} problem(s):", file=sys.stderr)
            for problem in e.problems:
                print(f"  {problem}", file=sys.stderr)
        else:
            n = sum(len(g.rules) for g in groups)
            print(f"  SUCCESS: {n} rules found", file=out)
        print(file=out)
    return 1 if failed else 0
