"""Prometheus rule-group files -> typed, validated rule groups.

The format is Prometheus's own (``promtool check rules`` accepts the same files)::

    groups:
      - name: host
        interval: 5m            # optional
        limit: 0                # optional: max alerts / series per rule, 0 = no limit
        rules:
          - alert: HighCPUUsage
            expr: ml_cpu_usage_percent{core="all"} > 85
            for: 5m
            keep_firing_for: 0s
            labels: {severity: warning}
            annotations: {summary: "CPU at {{ $value | humanize }}% on {{ $labels.host }}"}
          - record: host:cpu_usage:avg5m
            expr: avg_over_time(ml_cpu_usage_percent{core="all"}[5m])

Load one file (raises :class:`~mlinfra.exceptions.InvalidRuleFile` listing every
problem) or a whole directory (never raises for a bad file: its problems are
returned and the other files still load)::

    groups = load_rule_file("include/alert_rules/host.yaml", engine=engine)
    rules = load_rules(["include/alert_rules"], engine=engine)
    rules.groups, rules.errors
    # [RuleGroup(name='host', ...), ...], [RuleProblem(file=..., line=12, rule='X', message=...)]

A file is refused as a whole (as Prometheus does) for: YAML errors, unknown or
duplicate fields, bad durations, expressions that do not parse or that the
engine cannot evaluate (``engine.check``: refused at load, never at 3 a.m.),
duplicate alert names in a group, templates that do not parse, record names that
are not metric names, label or annotation names that are not label names. Every
problem names the file, the line and the group and rule it is in.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import yaml

from mlinfra.durations import parse_duration
from mlinfra.exceptions import InvalidRuleFile
from mlinfra.rules.templates import Template, TemplateError, parse_template

if TYPE_CHECKING:
    from mlinfra.promql.interface import QueryEngine

METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
RULE_FILE_SUFFIXES = (".yaml", ".yml")

_GROUP_FIELDS = ("name", "interval", "limit", "rules")
_RULE_FIELDS = ("record", "alert", "expr", "for", "keep_firing_for", "labels", "annotations")


@dataclass(frozen=True)
class RuleProblem:
    """One problem in a rule file, with its location."""

    file: str
    line: int | None
    message: str
    group: str | None = None
    rule: str | None = None

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        context = []
        if self.group is not None:
            context.append(f"group {self.group!r}")
        if self.rule is not None:
            context.append(f"rule {self.rule!r}")
        return f"{where}: {', '.join(context) + ': ' if context else ''}{self.message}"


@dataclass(frozen=True)
class Rule:
    """An alerting (``kind == "alert"``) or recording (``kind == "record"``) rule."""

    kind: Literal["alert", "record"]
    name: str
    expr: str
    line: int
    for_: float = 0.0
    keep_firing_for: float = 0.0
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    label_templates: dict[str, Template] = field(default_factory=dict, repr=False, compare=False)
    annotation_templates: dict[str, Template] = field(default_factory=dict, repr=False, compare=False)

    @property
    def is_alert(self) -> bool:
        return self.kind == "alert"


@dataclass(frozen=True)
class RuleGroup:
    """A named, ordered list of rules from one file (evaluated in order)."""

    name: str
    file: str
    line: int
    rules: tuple[Rule, ...]
    interval: float | None = None
    limit: int = 0

    @property
    def file_name(self) -> str:
        """The file's base name: with the group name, the key of the group's alert state."""
        return os.path.basename(self.file)


@dataclass
class RuleSet:
    """What a multi-file load produced: the good groups and every problem of the refused files."""

    groups: list[RuleGroup] = field(default_factory=list)
    errors: list[RuleProblem] = field(default_factory=list)
    files: list[str] = field(default_factory=list)

    @property
    def rules(self) -> list[Rule]:
        return [r for g in self.groups for r in g.rules]

    def errors_by_file(self) -> dict[str, list[RuleProblem]]:
        out: dict[str, list[RuleProblem]] = {}
        for e in self.errors:
            out.setdefault(e.file, []).append(e)
        return out


# ---------------------------------------------------------------------- YAML with line numbers


class _NodeError(Exception):
    def __init__(self, node: yaml.Node | None, message: str):
        self.line = node.start_mark.line + 1 if node is not None else None
        super().__init__(message)


def _compose(text: str) -> yaml.Node | None:
    return yaml.compose(text, Loader=yaml.SafeLoader)


def _mapping(node: yaml.Node, what: str) -> list[tuple[str, yaml.ScalarNode, yaml.Node]]:
    if not isinstance(node, yaml.MappingNode):
        raise _NodeError(node, f"{what} must be a mapping")
    out: list[tuple[str, yaml.ScalarNode, yaml.Node]] = []
    seen: dict[str, int] = {}
    for key, value in node.value:
        if not isinstance(key, yaml.ScalarNode):
            raise _NodeError(key, f"{what}: keys must be strings")
        if key.value in seen:
            raise _NodeError(
                key, f'{what}: mapping key "{key.value}" already defined at line {seen[key.value]}'
            )
        seen[key.value] = key.start_mark.line + 1
        out.append((key.value, key, value))
    return out


def _scalar(node: yaml.Node, what: str) -> str:
    if not isinstance(node, yaml.ScalarNode):
        raise _NodeError(node, f"{what} must be a single value, not a {type(node).__name__[:-4].lower()}")
    if node.tag == "tag:yaml.org,2002:null":
        return ""
    return str(node.value)


def _string_map(node: yaml.Node, what: str) -> dict[str, tuple[str, int]]:
    if isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null":
        return {}
    return {k: (_scalar(v, f"{what}.{k}"), v.start_mark.line + 1) for k, _, v in _mapping(node, what)}


# ---------------------------------------------------------------------- parsing


def parse_rule_text(
    text: str, *, source: str, engine: QueryEngine | None = None
) -> tuple[list[RuleGroup], list[RuleProblem]]:
    """Parse rule-file text; returns (groups, problems). Groups are meaningful only without problems."""
    problems: list[RuleProblem] = []

    def problem(line: int | None, message: str, group: str | None = None, rule: str | None = None) -> None:
        problems.append(RuleProblem(source, line, message, group, rule))

    try:
        root = _compose(text)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        problem(mark.line + 1 if mark else None, f"YAML error: {e.problem or e}")
        return [], problems
    except yaml.YAMLError as e:
        problem(None, f"YAML error: {e}")
        return [], problems
    if root is None:
        return [], problems  # an empty file holds no groups (Prometheus accepts it)

    groups: list[RuleGroup] = []
    try:
        top = _mapping(root, "the file")
    except _NodeError as e:
        problem(e.line, str(e))
        return [], problems
    groups_node: yaml.Node | None = None
    for key, key_node, value in top:
        if key == "groups":
            groups_node = value
        else:
            problem(key_node.start_mark.line + 1, f"field {key} not found in type rulefmt.RuleGroups")
    if groups_node is None:
        return [], problems
    if isinstance(groups_node, yaml.ScalarNode) and groups_node.tag == "tag:yaml.org,2002:null":
        return [], problems
    if not isinstance(groups_node, yaml.SequenceNode):
        problem(groups_node.start_mark.line + 1, "groups must be a list")
        return [], problems

    seen_groups: dict[str, int] = {}
    for gnode in groups_node.value:
        group = _parse_group(gnode, source, engine, problems, seen_groups)
        if group is not None:
            groups.append(group)
    return groups, problems


# Reports one problem: (line, message); the group and rule it is in are bound already.
_Report = Callable[[int | None, str], None]


def _parse_group(
    gnode: yaml.Node,
    source: str,
    engine: QueryEngine | None,
    problems: list[RuleProblem],
    seen_groups: dict[str, int],
) -> RuleGroup | None:
    gline = gnode.start_mark.line + 1
    n_before = len(problems)
    try:
        fields = _mapping(gnode, "a group")
    except _NodeError as e:
        problems.append(RuleProblem(source, e.line, str(e), None, None))
        return None
    by_key = {k: v for k, _, v in fields}
    name = _group_name(fields, by_key, gline, seen_groups, source, problems)
    gname = name or None

    def problem(line: int | None, message: str) -> None:
        problems.append(RuleProblem(source, line, message, gname, None))

    interval = _group_interval(by_key.get("interval"), problem)
    limit = _group_limit(by_key.get("limit"), problem)
    rules = _group_rules(by_key.get("rules"), source, gname, engine, problems)
    if len(problems) > n_before:
        return None
    return RuleGroup(name=name, file=source, line=gline, rules=tuple(rules), interval=interval, limit=limit)


def _group_name(
    fields: list[tuple[str, yaml.ScalarNode, yaml.Node]],
    by_key: dict[str, yaml.Node],
    gline: int,
    seen_groups: dict[str, int],
    source: str,
    problems: list[RuleProblem],
) -> str:
    """The group's name ("" when missing); also reports unknown fields and repeated names."""
    name = ""
    try:
        name = _scalar(by_key["name"], "name") if "name" in by_key else ""
    except _NodeError as e:
        problems.append(RuleProblem(source, e.line, str(e), None, None))
    gname = name or None
    for key, key_node, _ in fields:
        if key not in _GROUP_FIELDS:
            problems.append(
                RuleProblem(
                    source,
                    key_node.start_mark.line + 1,
                    f"field {key} not found in type rulefmt.RuleGroup",
                    gname,
                )
            )
    if not name:
        problems.append(RuleProblem(source, gline, "Groupname must not be empty", None, None))
    elif name in seen_groups:
        problems.append(
            RuleProblem(
                source,
                gline,
                f'groupname: "{name}" is repeated in the same file (line {seen_groups[name]})',
                gname,
            )
        )
    else:
        seen_groups[name] = gline
    return name


def _group_interval(node: yaml.Node | None, problem: _Report) -> float | None:
    """The group's ``interval`` (None: the default; 0 means the default too)."""
    if node is None:
        return None
    interval: float | None = None
    try:
        text = _scalar(node, "interval")
        interval = parse_duration(text) if text else None
        if interval == 0:
            interval = None
    except (ValueError, _NodeError) as e:
        problem(node.start_mark.line + 1, f"interval: {_duration_error(e)}")
    return interval


def _group_limit(node: yaml.Node | None, problem: _Report) -> int:
    if node is None:
        return 0
    limit = 0
    try:
        text = _scalar(node, "limit")
        limit = int(text) if text else 0
        if limit < 0:
            raise ValueError
    except (ValueError, _NodeError):
        problem(node.start_mark.line + 1, "limit must be a non-negative integer")
    return limit


def _group_rules(
    rules_node: yaml.Node | None,
    source: str,
    gname: str | None,
    engine: QueryEngine | None,
    problems: list[RuleProblem],
) -> list[Rule]:
    """The group's good rules; each bad one, and each repeated alert name, is a problem."""
    rules: list[Rule] = []
    if rules_node is None or (
        isinstance(rules_node, yaml.ScalarNode) and rules_node.tag == "tag:yaml.org,2002:null"
    ):
        return rules
    if not isinstance(rules_node, yaml.SequenceNode):
        problems.append(
            RuleProblem(source, rules_node.start_mark.line + 1, "rules must be a list", gname, None)
        )
        return rules
    alert_names: dict[str, int] = {}
    for rnode in rules_node.value:
        rule = _parse_rule(rnode, source, gname, engine, problems)
        if rule is None:
            continue
        if rule.is_alert:
            if rule.name in alert_names:
                problems.append(
                    RuleProblem(
                        source,
                        rule.line,
                        f"duplicate alert name {rule.name!r} in the group (first at line "
                        f"{alert_names[rule.name]}); give each alert its own name",
                        gname,
                        rule.name,
                    )
                )
            else:
                alert_names[rule.name] = rule.line
        rules.append(rule)
    return rules


def _duration_error(e: Exception) -> str:
    return str(e) if isinstance(e, _NodeError) else f"{e}"


def _parse_rule(
    rnode: yaml.Node,
    source: str,
    group: str | None,
    engine: QueryEngine | None,
    problems: list[RuleProblem],
) -> Rule | None:
    rline = rnode.start_mark.line + 1
    n_before = len(problems)
    try:
        fields = _mapping(rnode, "a rule")
    except _NodeError as e:
        problems.append(RuleProblem(source, e.line, str(e), group))
        return None
    by_key = {k: v for k, _, v in fields}
    values: dict[str, str] = {}
    for key in ("record", "alert", "expr", "for", "keep_firing_for"):
        if key in by_key:
            try:
                values[key] = (
                    _scalar(by_key[key], key).strip() if key != "expr" else _scalar(by_key[key], key)
                )
            except _NodeError as e:
                problems.append(RuleProblem(source, e.line, str(e), group))
    name = values.get("alert") or values.get("record") or None

    def problem(line: int | None, message: str) -> None:
        problems.append(RuleProblem(source, line, message, group, name))

    node = _RuleNode(by_key, rline, values, problem)
    for key, key_node, _ in fields:
        if key not in _RULE_FIELDS:
            problem(key_node.start_mark.line + 1, f"field {key} not found in type rulefmt.RuleNode")
    record, alert = node.check_kind()
    expr = node.check_expr(engine)
    durations = node.durations()
    if record:
        node.check_recording(record)
    labels, annotations = node.label_and_annotation_maps()
    label_templates: dict[str, Template] = {}
    annotation_templates: dict[str, Template] = {}
    if alert:
        label_templates = node.templates("label", labels, alert)
        annotation_templates = node.templates("annotation", annotations, alert)

    if len(problems) > n_before or name is None:
        return None
    return Rule(
        kind="alert" if alert else "record",
        name=name,
        expr=expr,
        line=rline,
        for_=durations.get("for", 0.0),
        keep_firing_for=durations.get("keep_firing_for", 0.0),
        labels={k: v for k, (v, _) in labels.items()},
        annotations={k: v for k, (v, _) in annotations.items()},
        label_templates=label_templates,
        annotation_templates=annotation_templates,
    )


class _RuleNode:
    """One rule's fields as read from YAML, checked step by step; each finding goes to ``problem``."""

    def __init__(
        self, by_key: dict[str, yaml.Node], line: int, values: dict[str, str], problem: _Report
    ) -> None:
        self.by_key = by_key
        self.line = line
        self.values = values
        self.problem = problem

    def line_of(self, key: str) -> int:
        return self.by_key[key].start_mark.line + 1 if key in self.by_key else self.line

    def check_kind(self) -> tuple[str, str]:
        """(record, alert): exactly one is set."""
        record, alert = self.values.get("record", ""), self.values.get("alert", "")
        if record and alert:
            self.problem(self.line, "only one of 'record' and 'alert' must be set")
        elif not record and not alert:
            self.problem(self.line, "one of 'record' or 'alert' must be set")
        return record, alert

    def check_expr(self, engine: QueryEngine | None) -> str:
        """The expression, checked by the engine that will run it (else by the parser)."""
        expr = self.values.get("expr", "")
        if not expr.strip():
            self.problem(self.line_of("expr"), "field 'expr' must be set in rule")
        elif engine is not None:
            try:
                engine.check(expr)
            except Exception as e:  # QuerySyntaxError / UnsupportedExpression, or a broken engine
                self.problem(self.line_of("expr"), f"expr: {e}")
        else:
            _syntax_check(expr, self.line_of("expr"), self.problem)
        return expr

    def durations(self) -> dict[str, float]:
        durations: dict[str, float] = {}
        for key in ("for", "keep_firing_for"):
            if key in self.values and self.values[key]:
                try:
                    durations[key] = parse_duration(self.values[key])
                except ValueError:
                    self.problem(
                        self.line_of(key), f'{key}: not a valid duration string: "{self.values[key]}"'
                    )
        return durations

    def check_recording(self, record: str) -> None:
        if not METRIC_NAME.match(record):
            self.problem(
                self.line_of("record"),
                f"invalid recording rule name: {record} (must match {METRIC_NAME.pattern})",
            )
        for key in ("for", "keep_firing_for", "annotations"):
            if key in self.by_key:
                self.problem(self.line_of(key), f"invalid field '{key}' in recording rule")

    def label_and_annotation_maps(self) -> tuple[dict[str, tuple[str, int]], dict[str, tuple[str, int]]]:
        """``labels`` and ``annotations``: name -> (text, line), names checked."""
        labels: dict[str, tuple[str, int]] = {}
        annotations: dict[str, tuple[str, int]] = {}
        for key, target in (("labels", labels), ("annotations", annotations)):
            if key in self.by_key:
                try:
                    target.update(_string_map(self.by_key[key], key))
                except _NodeError as e:
                    self.problem(e.line, str(e))
        for lname, (_, lline) in labels.items():
            if not LABEL_NAME.match(lname) or lname == "__name__":
                self.problem(lline, f"invalid label name: {lname}")
        for aname, (_, aline) in annotations.items():
            if not LABEL_NAME.match(aname):
                self.problem(aline, f"invalid annotation name: {aname}")
        return labels, annotations

    def templates(self, what: str, source_map: dict[str, tuple[str, int]], alert: str) -> dict[str, Template]:
        parsed: dict[str, Template] = {}
        for key, (text, tline) in source_map.items():
            try:
                parsed[key] = parse_template(text, alertname=alert)
            except TemplateError as e:
                self.problem(tline, f"{what} {key!r}: template does not parse: {e}")
        return parsed


def _syntax_check(expr: str, line: int, problem: _Report) -> None:
    # Through mlinfra.promql.parse: it teaches promql-parser 2.42's holt_winters.
    from mlinfra.promql.interface import QuerySyntaxError
    from mlinfra.promql.parse import check_syntax

    try:
        check_syntax(expr)
    except QuerySyntaxError as e:
        problem(line, f"expr: {e}")


# ---------------------------------------------------------------------- files and directories


def rule_files(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Files named by ``paths``: files as given, directories' ``*.yaml``/``*.yml`` (not recursive)."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out.extend(sorted(f for f in p.iterdir() if f.is_file() and f.suffix in RULE_FILE_SUFFIXES))
        else:
            out.append(p)
    return out


def load_rule_file(path: str | os.PathLike[str], *, engine: QueryEngine | None = None) -> list[RuleGroup]:
    """The groups of one file; raises :class:`InvalidRuleFile` with every problem if it has any."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise InvalidRuleFile(
            source, [RuleProblem(source, None, f"cannot read the rule file: {e}")]
        ) from None
    groups, problems = parse_rule_text(text, source=source, engine=engine)
    if problems:
        raise InvalidRuleFile(source, problems)
    return groups


def load_rules(
    paths: Sequence[str | os.PathLike[str]] | str | os.PathLike[str], *, engine: QueryEngine | None = None
) -> RuleSet:
    """Every good group of every file (directories expanded); a bad file's problems go to ``errors``."""
    if isinstance(paths, str | os.PathLike):
        paths = [paths]
    result = RuleSet()
    for f in rule_files(paths):
        result.files.append(str(f))
        try:
            result.groups.extend(load_rule_file(f, engine=engine))
        except InvalidRuleFile as e:
            result.errors.extend(e.problems)
    return result
