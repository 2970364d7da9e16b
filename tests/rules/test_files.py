"""Rule-file loading: every refusal names file, line and rule; a bad file never stops the good ones."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mlinfra.config import load_fleet
from mlinfra.exceptions import InvalidRuleFile, RuleFileError
from mlinfra.promql.engine import LocalEngine
from mlinfra.rules.evaluate import evaluate_rules_for_sweep
from mlinfra.rules.files import load_rule_file, load_rules
from mlinfra.samples import Sample
from mlinfra.store import MetricsStore

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "include" / "alert_rules"


@pytest.fixture
def engine(sqlite_store: MetricsStore) -> LocalEngine:
    return LocalEngine(sqlite_store)


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


GOOD_GROUP = """
groups:
  - name: g
    rules:
      - alert: Ok
        expr: up == 0
"""

# (file text, line of the problem, rule named in the message, part of the message)
BAD_FILES = {
    "yaml_syntax": (
        """
        groups:
          - name: g
            rules:
              - alert: A
                expr: up == 0
               labels: {severity: x}
        """,
        6,
        None,
        "YAML error",
    ),
    "unknown_rule_field": (
        """
        groups:
          - name: g
            rules:
              - alert: Typo
                expr: up == 0
                anotations: {summary: x}
        """,
        6,
        "Typo",
        "field anotations not found",
    ),
    "bad_duration": (
        """
        groups:
          - name: g
            rules:
              - alert: Slow
                expr: up == 0
                for: 5 minutes
        """,
        6,
        "Slow",
        'for: not a valid duration string: "5 minutes"',
    ),
    "bad_keep_firing_for": (
        """
        groups:
          - name: g
            rules:
              - alert: Sticky
                expr: up == 0
                keep_firing_for: 1x
        """,
        6,
        "Sticky",
        "keep_firing_for: not a valid duration",
    ),
    "regex_re2_refuses": (
        """
        groups:
          - name: g
            rules:
              - alert: Lookbehind
                expr: up{job=~"(?<=a)pi"} == 0
        """,
        5,
        "Lookbehind",
        "invalid",
    ),
    "label_replace_regex_re2_refuses": (
        """
        groups:
          - name: g
            rules:
              - alert: Unbalanced
                expr: label_replace(up, "a", "$1", "job", "(api") == 0
        """,
        5,
        "Unbalanced",
        "missing )",
    ),
    "promql_syntax": (
        """
        groups:
          - name: g
            rules:
              - alert: Broken
                expr: rate(up[5m] > 1
        """,
        5,
        "Broken",
        "invalid PromQL",
    ),
    "unsupported_construct": (
        """
        groups:
          - name: g
            rules:
              - alert: Top
                expr: limitk(3, up) > 0
        """,
        5,
        "Top",
        "unsupported by the local engine: the aggregation limitk, which Prometheus 2.42 does not have; "
        "use the prometheus engine",
    ),
    "duplicate_alert": (
        """
        groups:
          - name: g
            rules:
              - alert: Twice
                expr: up == 0
              - alert: Twice
                expr: up == 1
        """,
        6,
        "Twice",
        "duplicate alert name 'Twice' in the group (first at line 4)",
    ),
    "template": (
        """
        groups:
          - name: g
            rules:
              - alert: Tmpl
                expr: up == 0
                annotations:
                  summary: "{{ $labels.instance }} down"
                  description: "{{ humanise $value }}"
        """,
        8,
        "Tmpl",
        # promtool's words: Go's template error, with the header Prometheus prepends on line 1
        "annotation 'description': template does not parse: template: __alert_Tmpl:1: "
        'function "humanise" not defined',
    ),
    "record_name": (
        """
        groups:
          - name: g
            rules:
              - record: job-requests:rate5m
                expr: sum(rate(requests_total[5m]))
        """,
        4,
        "job-requests:rate5m",
        "invalid recording rule name",
    ),
    "record_with_for": (
        """
        groups:
          - name: g
            rules:
              - record: job:up:sum
                expr: sum(up)
                for: 5m
        """,
        6,
        "job:up:sum",
        "invalid field 'for' in recording rule",
    ),
    "alert_and_record": (
        """
        groups:
          - name: g
            rules:
              - alert: Both
                record: both
                expr: up
        """,
        4,
        "Both",
        "only one of 'record' and 'alert' must be set",
    ),
    "missing_expr": (
        """
        groups:
          - name: g
            rules:
              - alert: NoExpr
                for: 1m
        """,
        4,
        "NoExpr",
        "field 'expr' must be set in rule",
    ),
    "bad_label_name": (
        """
        groups:
          - name: g
            rules:
              - alert: Labels
                expr: up == 0
                labels:
                  team-name: ml
        """,
        7,
        "Labels",
        "invalid label name: team-name",
    ),
    "label_template": (
        """
        groups:
          - name: g
            rules:
              - alert: LabelTmpl
                expr: up == 0
                labels:
                  severity: "{{ if $value }}page"
        """,
        7,
        "LabelTmpl",
        "label 'severity': template does not parse",
    ),
    "duplicate_key": (
        """
        groups:
          - name: g
            rules:
              - alert: Dup
                expr: up == 0
                expr: up == 1
        """,
        6,
        None,
        'mapping key "expr" already defined at line 5',
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_a_bad_file_is_refused_with_file_line_and_rule(
    tmp_path: Path, engine: LocalEngine, case: str
) -> None:
    text, line, rule, message = BAD_FILES[case]
    path = write(tmp_path, f"{case}.yaml", text)
    with pytest.raises(InvalidRuleFile) as excinfo:
        load_rule_file(path, engine=engine)
    assert isinstance(excinfo.value, RuleFileError)
    problems = excinfo.value.problems
    assert any(p.line == line and p.rule == rule and message in p.message for p in problems), problems
    rendered = str(excinfo.value)
    assert f"{path}:{line}: " in rendered
    if rule is not None:
        assert f"rule {rule!r}" in rendered


def test_group_level_problems(tmp_path: Path, engine: LocalEngine) -> None:
    path = write(
        tmp_path,
        "groups.yaml",
        """
        groups:
          - name: a
            interval: often
            rules: []
          - name: a
            rules: []
          - rules: []
          - name: b
            limits: 3
        extra: true
        """,
    )
    with pytest.raises(InvalidRuleFile) as excinfo:
        load_rule_file(path, engine=engine)
    got = {(p.line, p.message.split(":")[0]) for p in excinfo.value.problems}
    assert (3, "interval") in got
    assert any(
        line == 5 and "is repeated in the same file" in p.message
        for line, p in [(p.line, p) for p in excinfo.value.problems]
    )
    assert any(p.line == 7 and p.message == "Groupname must not be empty" for p in excinfo.value.problems)
    assert any(p.line == 9 and "field limits not found" in p.message for p in excinfo.value.problems)
    assert any(p.line == 10 and "field extra not found" in p.message for p in excinfo.value.problems)


def test_every_problem_of_a_file_is_reported_not_just_the_first(tmp_path: Path, engine: LocalEngine) -> None:
    path = write(
        tmp_path,
        "many.yaml",
        """
        groups:
          - name: g
            rules:
              - alert: A
                expr: limitk(1, up)
              - alert: B
                expr: up ==
              - alert: C
                expr: up
                for: soon
        """,
    )
    with pytest.raises(InvalidRuleFile) as excinfo:
        load_rule_file(path, engine=engine)
    assert sorted((p.rule, p.line) for p in excinfo.value.problems) == [("A", 5), ("B", 7), ("C", 10)]


def test_a_good_file_loads_into_typed_rules(engine: LocalEngine) -> None:
    groups = load_rule_file(SHIPPED / "serving.yaml", engine=engine)
    (group,) = groups
    assert group.name == "serving-slo"
    assert [r.kind for r in group.rules] == ["record", "record", "alert", "alert"]
    alert = group.rules[2]
    assert (alert.name, alert.for_, alert.labels["severity"]) == ("ServingErrorRateHigh", 300.0, "critical")
    text = (SHIPPED / "serving.yaml").read_text().splitlines()
    assert text[alert.line - 1].strip() == "- alert: ServingErrorRateHigh"
    assert "summary" in alert.annotation_templates


def test_empty_file_and_empty_groups_are_fine(tmp_path: Path, engine: LocalEngine) -> None:
    assert load_rule_file(write(tmp_path, "empty.yaml", ""), engine=engine) == []
    assert load_rule_file(write(tmp_path, "none.yaml", "groups: []\n"), engine=engine) == []


def test_every_shipped_file_loads_on_the_local_engine(engine: LocalEngine) -> None:
    rules = load_rules([SHIPPED], engine=engine)
    assert rules.errors == []
    names = {r.name for r in rules.rules if r.is_alert}
    assert {
        "HighCPUUsage",
        "HighMemoryUsage",
        "GPUOutOfMemory",
        "HighGPUTemperature",
        "PodCrashLooping",
        "DeploymentUnavailable",
        "ServingErrorRateHigh",
        "ServingLatencyP99High",
        "GPUUnderutilized",
        "GPUSaturated",
    } <= names
    scale = {r.name: r.labels.get("mlinfra_scale") for r in rules.rules if "mlinfra_scale" in r.labels}
    assert set(scale.values()) == {"up", "down"}


def test_a_malformed_file_among_good_ones(tmp_path: Path, sqlite_store: MetricsStore, caplog) -> None:  # type: ignore[no-untyped-def]
    rules_dir = tmp_path / "rules"
    rules_dir.mkdir()
    (rules_dir / "host.yaml").write_text((SHIPPED / "host.yaml").read_text())
    write(rules_dir, "broken.yaml", BAD_FILES["unsupported_construct"][0])
    write(
        rules_dir,
        "zz_more.yaml",
        """
        groups:
          - name: more
            rules:
              - alert: MemoryAbove50
                expr: ml_memory_usage_percent > 50
        """,
    )
    direct = load_rules([rules_dir], engine=LocalEngine(sqlite_store))
    assert [g.name for g in direct.groups] == ["host", "more"]
    assert len(direct.errors) == 1
    assert str(direct.errors[0]).startswith(f"{rules_dir / 'broken.yaml'}:5: group 'g', rule 'Top': ")

    t0 = 1_800_000_000.0
    for i in range(7):  # 6 minutes of a hot host, one sample a minute
        sqlite_store.write_sweep(
            t0 + 60 * i,
            [
                Sample("ml_cpu_usage_percent", {"core": "all", "host": "node-1"}, 97.0),
                Sample("ml_memory_usage_percent", {"host": "node-1"}, 60.0),
            ],
        )
    caplog.set_level(logging.INFO, logger="mlinfra.rules.evaluate")
    out = {}
    for i in range(7):
        out = evaluate_rules_for_sweep(
            store=sqlite_store,
            fleet=load_fleet(),
            at=t0 + 60 * i,
            run_id=f"run-{i}",
            rules_dir=rules_dir,
            post_alerts=lambda alerts, at, interval: len(alerts),
        )
        # The refused file is reported in every run's result, logged once per run.
        assert len(out["load_errors"]) == 1
    refusals = [r for r in caplog.records if "broken.yaml refused" in r.getMessage()]
    assert len(refusals) == 7
    assert (
        "broken.yaml:5: group 'g', rule 'Top': expr: unsupported by the local engine"
        in refusals[0].getMessage()
    )
    firing = sorted(a["alertname"] for a in out["firing"])
    assert firing == ["HighCPUUsage", "MemoryAbove50"]


def test_the_constructs_community_rule_files_use_load_on_the_local_engine(
    tmp_path: Path, engine: LocalEngine
) -> None:
    """What refused 32 of 112 community rule files before (issue 14): all accepted now."""
    exprs = [
        "time() - node_boot_time_seconds < 600",
        "changes(kube_pod_container_status_restarts_total[15m]) > 2",
        "deriv(node_filesystem_free_bytes[1h]) < 0",
        "predict_linear(node_filesystem_free_bytes[6h], 24 * 3600) < 0",
        'node_md_disks{state="failed"} * on(instance) group_left(nodename) node_uname_info > 0',
        "round(rate(node_vmstat_oom_kill[5m])) > 0",
        "absent(up) or vector(0) > 1",
        "quantile_over_time(0.95, probe_duration_seconds[10m]) > 1",
        'label_replace(up, "host", "$1", "instance", "(.*):.*") == 0',
        "floor(node_load1) > 10",
        'count_values("version", node_exporter_build_info) > 1',
        'up{job=~"(?i)NODE.*"} == 0',
    ]
    rules = "\n".join(f"      - alert: A{i}\n        expr: '{e}'" for i, e in enumerate(exprs))
    path = tmp_path / "community.yaml"
    path.write_text(f"groups:\n  - name: g\n    rules:\n{rules}\n")
    loaded = load_rule_file(path, engine=engine)
    assert len([r for g in loaded for r in g.rules]) == len(exprs)


def test_holt_winters_of_prometheus_2_42_loads_without_an_engine_too(tmp_path: Path) -> None:
    # promql-parser follows Prometheus 3 (double_exponential_smoothing); 2.42's name must parse
    # in a fresh process too (registering it is a side effect of importing mlinfra.promql.parse).
    path = write(tmp_path, "hw.yaml", GOOD_GROUP.replace("up == 0", "holt_winters(up[10m], 0.5, 0.5) > 1"))
    code = f"from mlinfra.rules.files import load_rule_file; print(load_rule_file({str(path)!r})[0].rules[0].expr)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "holt_winters(up[10m], 0.5, 0.5) > 1"
