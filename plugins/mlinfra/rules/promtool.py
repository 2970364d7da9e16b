"""Rule unit tests in ``promtool test rules``'s file format, run on the local engine.

This module runs test files and reports as promtool does; :mod:`mlinfra.rules.promtool_files`
reads them. The same test files run under the real ``promtool test rules`` and here, with the
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

    >>> run_test_files(["include/alert_rules/tests/host_test.yaml"])  # from the repository root
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

``stale`` in ``input_series`` values writes a staleness marker, as promtool does.

Not supported (reported as a failure of the test group, never silently wrong):
expressions the local engine refuses.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from mlinfra.exceptions import InvalidRuleFile
from mlinfra.promql.gonum import go_float_e, go_quote
from mlinfra.rules.promtool_files import (
    STALE,
    UnitTestFile,
    UnitTestFileError,
    duration_field,
    expand_values,
    expected_value,
    parse_expected_metric,
    parse_series,
    read_test_file,
    string_map,
)

if TYPE_CHECKING:
    from mlinfra.promql.engine import LocalEngine
    from mlinfra.rules.files import RuleGroup
    from mlinfra.samples import Sample

Alert = tuple[dict[str, str], dict[str, str]]  # (labels, annotations)
Samples = list[tuple[dict[str, str], float]]


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


# ---------------------------------------------------------------------- running a test group


class _GroupFailed(Exception):
    """A test group stops here; ``messages`` are its report."""

    def __init__(self, messages: list[str]) -> None:
        super().__init__(messages)
        self.messages = messages


def _run_test_group(tg: dict[str, Any], test_file: UnitTestFile) -> list[str]:
    """One ``tests:`` entry on a fresh in-memory store: its failures as promtool prints them."""
    from mlinfra.promql.engine import LocalEngine

    interval = duration_field(tg.get("interval"), test_file.evaluation_interval, "interval")
    test_name = str(tg.get("name") or "")
    store = _memory_store()
    engine = LocalEngine(store)
    try:
        pending_samples = _input_samples(tg, interval)
        groups = _rule_groups(test_file, engine)
        alert_tests = tg.get("alert_rule_test") or []
        expr_tests = tg.get("promql_expr_test") or []
        _require_alertnames(alert_tests, test_name)
        max_t = max(
            [duration_field(a.get("eval_time"), 0, "eval_time") for a in alert_tests]
            + [duration_field(e.get("eval_time"), 0, "eval_time") for e in expr_tests]
            + [0.0]
        )
        run = _Evaluation(tg, test_name, store, engine, groups, test_file.evaluation_interval)
        errors = run.check_alerts(pending_samples, alert_tests, max_t)
        for case in expr_tests:
            errors += _check_expr(case, engine)
        return errors
    except _GroupFailed as e:
        return e.messages
    finally:
        store.engine.dispose()


def _input_samples(tg: dict[str, Any], interval: float) -> list[tuple[float, Sample]]:
    """Input series, expanded: (time s, Sample) sorted by time for incremental loading."""
    from mlinfra.samples import STALE_NAN, Sample

    pending_samples: list[tuple[float, Sample]] = []
    for item in tg.get("input_series") or []:
        if not isinstance(item, dict):
            raise _GroupFailed([f"input_series: expected a mapping, got {item!r}"])
        name, labels = parse_series(str(item.get("series", "")))
        values = expand_values(str(item.get("values", "") if item.get("values") is not None else ""))
        for i, v in enumerate(values):
            if v is None:
                continue
            value = STALE_NAN if v == STALE else float(v)
            pending_samples.append((i * interval, Sample(name, labels, value, i * interval)))
    pending_samples.sort(key=lambda x: x[0])
    return pending_samples


def _rule_groups(test_file: UnitTestFile, engine: LocalEngine) -> list[RuleGroup]:
    """The rule files' groups in evaluation order."""
    from mlinfra.rules.files import load_rule_file

    groups = []
    errors: list[str] = []
    for f in test_file.rule_files:
        try:
            groups.extend(load_rule_file(f, engine=engine))
        except InvalidRuleFile as e:
            errors.extend(str(p) for p in e.problems)
    if errors:
        raise _GroupFailed(errors)
    group_order = test_file.group_eval_order
    for gname in group_order:
        if gname not in {g.name for g in groups}:
            raise _GroupFailed([f"group {gname!r} in group_eval_order is not in the rule files"])
    # Stable: file order for groups group_eval_order does not name (promtool gives them 0).
    groups.sort(key=lambda g: group_order.get(g.name, 0))
    return groups


def _require_alertnames(alert_tests: list[dict[str, Any]], test_name: str) -> None:
    for a in alert_tests:
        if not a.get("alertname"):
            where = f" (in TestGroup {test_name})" if test_name else ""
            eval_time = model_duration(duration_field(a.get("eval_time"), 0, "eval_time"))
            raise _GroupFailed(
                [
                    f"an item under alert_rule_test misses required attribute alertname at eval_time {eval_time}{where}"
                ]
            )


class _Evaluation:
    """The rule groups evaluated every ``evaluation_interval`` from 0, as promtool's test loop does."""

    def __init__(
        self,
        tg: dict[str, Any],
        test_name: str,
        store: Any,
        engine: LocalEngine,
        groups: list[RuleGroup],
        eval_interval: float,
    ) -> None:
        self.tg = tg
        self.test_name = test_name
        self.store = store
        self.engine = engine
        self.groups = groups
        self.eval_interval = eval_interval

    def check_alerts(
        self, pending_samples: list[tuple[float, Sample]], alert_tests: list[dict[str, Any]], max_t: float
    ) -> list[str]:
        """Evaluate up to ``max_t``, loading samples as time advances; alert tests' failures."""
        from mlinfra.rules.evaluate import evaluate_groups
        from mlinfra.rules.state import MemoryAlertStates

        alert_times = sorted({duration_field(a.get("eval_time"), 0, "eval_time") for a in alert_tests})
        errors: list[str] = []
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
                self.store.write_samples(s for _, s in pending_samples[loaded:upto])
                loaded = upto
            result = evaluate_groups(
                self.groups,
                self.engine,
                at=ts,
                store=self.store,
                states=states,
                external_labels=string_map(self.tg.get("external_labels")),
                external_url=str(self.tg.get("external_url") or ""),
            )
            if result.errors:
                errors.extend(
                    f"    rule: {e.rule}, time: {go_duration(ts)}, err: {e.message}" for e in result.errors
                )
                raise _GroupFailed(errors)
            while curr < len(alert_times) and ts <= alert_times[curr] < ts + self.eval_interval - 1e-9:
                errors += self._compare_alerts(alert_times[curr], result.firing, alert_tests)
                curr += 1
            step += 1
            ts = step * self.eval_interval
        return errors

    def _compare_alerts(self, t: float, firing: list[Any], alert_tests: list[dict[str, Any]]) -> list[str]:
        """The alert tests at ``t`` against the firing alerts of the last evaluation."""
        got_by_name: dict[str, list[Alert]] = {}
        for alert in firing:
            got_by_name.setdefault(alert.alertname, []).append((dict(alert.labels), dict(alert.annotations)))
        errors = []
        for case in alert_tests:
            if duration_field(case.get("eval_time"), 0, "eval_time") != t:
                continue
            name = str(case["alertname"])
            got = sorted(got_by_name.get(name, []), key=lambda la: (_sort_key(la[0]), _sort_key(la[1])))
            exp = []
            for ea in case.get("exp_alerts") or []:
                labels = string_map(ea.get("exp_labels"))
                labels["alertname"] = name
                exp.append((labels, string_map(ea.get("exp_annotations"))))
            exp.sort(key=lambda la: (_sort_key(la[0]), _sort_key(la[1])))
            if exp != got:
                prefix = f"    name: {self.test_name},\n" if self.test_name else ""
                errors.append(
                    f"{prefix}    alertname: {name}, time: {model_duration(t)}, \n"
                    f"        exp:{_indent_lines(_alerts_string(exp), ' ' * 12)}, \n"
                    f"        got:{_indent_lines(_alerts_string(got), ' ' * 12)}"
                )
        return errors


def _check_expr(case: dict[str, Any], engine: LocalEngine) -> list[str]:
    """One ``promql_expr_test`` entry, run after all evaluations: its failure, if any."""
    expr = str(case.get("expr", ""))
    t = duration_field(case.get("eval_time"), 0, "eval_time")
    try:
        value = engine.instant(expr, t)
    except Exception as e:
        return [f"    expr: {go_quote(expr)}, time: {model_duration(t)}, err: {e}"]
    got_samples: Samples = (
        [({}, float(value))] if isinstance(value, float | int) else [(dict(s.labels), s.value) for s in value]
    )
    exp_samples: Samples = []
    for es in case.get("exp_samples") or []:
        try:
            name, labels = parse_expected_metric(str(es.get("labels", "")))
        except UnitTestFileError as e:
            return [
                f"    expr: {go_quote(expr)}, time: {model_duration(t)}, "
                f"err: labels {go_quote(str(es.get('labels', '')))}: {e}"
            ]
        if name:
            labels["__name__"] = name
        exp_samples.append((labels, expected_value(es.get("value"))))
    exp_samples.sort(key=lambda s: _sort_key(s[0]))
    got_samples.sort(key=lambda s: _sort_key(s[0]))
    if not _samples_equal(exp_samples, got_samples):
        return [
            f"    expr: {go_quote(expr)}, time: {model_duration(t)},\n"
            f"        exp: {_samples_string(exp_samples)}\n"
            f"        got: {_samples_string(got_samples)}"
        ]
    return []


def _samples_equal(a: list[tuple[dict[str, str], float]], b: list[tuple[dict[str, str], float]]) -> bool:
    # reflect.DeepEqual on float64: exact, and NaN never equals NaN.
    return len(a) == len(b) and all(la == lb and va == vb for (la, va), (lb, vb) in zip(a, b, strict=True))


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
        test_file = read_test_file(path)
        errors: list[str] = []
        for tg in test_file.groups:
            errors += _run_test_group(tg, test_file)
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
