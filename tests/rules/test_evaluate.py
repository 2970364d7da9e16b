"""Evaluating rule groups at an instant on the real local engine over a SQLite store."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

from mlinfra.config import load_fleet
from mlinfra.promql.engine import LocalEngine
from mlinfra.rules.evaluate import evaluate_groups, evaluate_rules_for_sweep
from mlinfra.rules.files import load_rule_file
from mlinfra.rules.state import StoreAlertStates
from mlinfra.samples import Sample
from mlinfra.store import LabelMatcher, MetricsStore

T0 = 1_800_000_000.0

RULES = """
groups:
  - name: chain
    rules:
      - record: host:cpu:max
        expr: max by (host) (ml_cpu_usage_percent)
      - alert: HostHot
        expr: host:cpu:max > 80
        labels:
          severity: "{{ if_not_used }}"
        annotations:
          summary: "{{ $labels.host }} at {{ $value }}%"
      - alert: Clash
        expr: '{__name__=~"dup_.*"}'
      - alert: After
        expr: ml_cpu_usage_percent > 0
  - name: limited
    limit: 1
    rules:
      - alert: TooMany
        expr: ml_cpu_usage_percent > 0
"""


def _rules(tmp_path: Path, engine: LocalEngine):  # type: ignore[no-untyped-def]
    path = tmp_path / "chain.yaml"
    path.write_text(textwrap.dedent(RULES).replace('"{{ if_not_used }}"', "page"))
    return load_rule_file(path, engine=engine)


def _load(store: MetricsStore, at: float) -> None:
    store.write_sweep(
        at,
        [
            Sample("ml_cpu_usage_percent", {"host": "a", "core": "0"}, 95.0),
            Sample("ml_cpu_usage_percent", {"host": "a", "core": "1"}, 20.0),
            Sample("ml_cpu_usage_percent", {"host": "b", "core": "0"}, 10.0),
            Sample("dup_one", {"x": "1"}, 1.0),
            Sample("dup_two", {"x": "1"}, 2.0),
        ],
    )


def test_recorded_series_are_written_at_t_and_seen_by_later_rules(
    tmp_path: Path, sqlite_store: MetricsStore
) -> None:
    engine = LocalEngine(sqlite_store)
    _load(sqlite_store, T0)
    result = evaluate_groups(_rules(tmp_path, engine), engine, at=T0, store=sqlite_store)
    recorded = sqlite_store.query_range("host:cpu:max", [LabelMatcher("host", "=", "a")], T0, T0)
    assert [(s.labels, pts) for s, pts in recorded] == [({"host": "a"}, [(T0, 95.0)])]
    hot = [a for a in result.firing if a.alertname == "HostHot"]
    assert [(a.labels, a.annotations, a.value) for a in hot] == [
        ({"alertname": "HostHot", "host": "a", "severity": "page"}, {"summary": "a at 95%"}, 95.0)
    ]
    assert result.recorded == 2


def test_one_rules_error_is_reported_by_name_and_the_others_still_run(
    tmp_path: Path, sqlite_store: MetricsStore
) -> None:
    engine = LocalEngine(sqlite_store)
    _load(sqlite_store, T0)
    result = evaluate_groups(_rules(tmp_path, engine), engine, at=T0, store=sqlite_store)
    errors = {(e.group, e.rule): e.message for e in result.errors}
    assert "same labelset" in errors[("chain", "Clash")]
    assert errors[("limited", "TooMany")] == "exceeded limit of 1 with 3 alerts"
    # The rule after the failing one ran.
    assert len([a for a in result.firing if a.alertname == "After"]) == 3
    assert str(result.errors[0]).endswith(
        "rule 'Clash': vector contains metrics with the same labelset after applying alert labels"
    )


def test_sweep_function_persists_posts_live_evaluations_and_returns_xcom(
    tmp_path: Path, sqlite_store: MetricsStore
) -> None:
    rules_dir = tmp_path / "rules"
    rules_dir.mkdir()
    (rules_dir / "chain.yaml").write_text(textwrap.dedent(RULES).replace('"{{ if_not_used }}"', "page"))
    posted: list[tuple[list[str], float, float]] = []

    def post(alerts, at, interval):  # type: ignore[no-untyped-def]
        posted.append((sorted(f"{a.alertname}:{a.state}" for a in alerts), at, interval))
        return len(alerts)

    _load(sqlite_store, T0)
    out = evaluate_rules_for_sweep(
        store=sqlite_store,
        fleet=load_fleet(),
        at=T0,
        run_id="run-1",
        rules_dir=rules_dir,
        post_alerts=post,
        now=lambda: T0 + 30,
    )
    assert out["posted"] == 4
    assert posted[0][1:] == (T0, 300.0)
    assert "HostHot:firing" in posted[0][0]
    assert {a["alertname"] for a in out["firing"]} == {"HostHot", "After"}
    assert all(isinstance(a["labels"], dict) and a["state"] == "firing" for a in out["firing"])
    assert len(out["errors"]) == 2
    assert StoreAlertStates(sqlite_store).current(state="firing")

    # A backfill (evaluation time long past): evaluated and persisted, not posted.
    out = evaluate_rules_for_sweep(
        store=sqlite_store,
        fleet=load_fleet(),
        at=T0,
        rules_dir=rules_dir,
        post_alerts=post,
        now=lambda: T0 + 86400,
    )
    assert out["posted"] is None
    assert len(posted) == 1


OVERFLOW_RULES = """
groups:
  - name: first
    rules:
      - alert: Stamped
        expr: ml_cpu_usage_percent * 1e300 > 0
        annotations:
          since: "{{ $value | humanizeTimestamp }}"
  - name: second
    rules:
      - alert: HostHot
        expr: ml_cpu_usage_percent > 80
"""


def test_a_template_overflow_costs_one_annotation_not_the_other_groups(
    tmp_path: Path, sqlite_store: MetricsStore
) -> None:
    path = tmp_path / "overflow.yaml"
    path.write_text(textwrap.dedent(OVERFLOW_RULES))
    engine = LocalEngine(sqlite_store)
    _load(sqlite_store, T0)

    result = evaluate_groups(load_rule_file(path, engine=engine), engine, at=T0, store=sqlite_store)

    assert result.errors == []
    stamped = [a for a in result.alerts if a.alertname == "Stamped"]
    assert len(stamped) == 3
    assert all(a.annotations["since"].startswith("<error expanding template:") for a in stamped)
    assert [a.labels["host"] for a in result.firing if a.alertname == "HostHot"] == ["a"]


def test_an_alertmanager_outage_is_reported_and_the_firing_alerts_still_go_to_xcom(
    tmp_path: Path, sqlite_store: MetricsStore, monkeypatch
) -> None:
    # Nothing listens on port 9 (discard): the connection is refused at once.
    monkeypatch.setenv(
        "AIRFLOW_CONN_ALERTMANAGER_DEFAULT",
        json.dumps({"conn_type": "http", "host": "127.0.0.1", "port": 9, "extra": {"timeout": 2}}),
    )
    rules_dir = tmp_path / "rules"
    rules_dir.mkdir()
    (rules_dir / "chain.yaml").write_text(textwrap.dedent(RULES).replace('"{{ if_not_used }}"', "page"))
    _load(sqlite_store, T0)

    out = evaluate_rules_for_sweep(
        store=sqlite_store,
        fleet=load_fleet(),
        at=T0,
        run_id="run-1",
        rules_dir=rules_dir,
        now=lambda: T0 + 30,
    )

    assert out["posted"] is None
    assert "Alertmanager at http://127.0.0.1:9" in out["post_error"]
    assert "unreachable" in out["post_error"]
    assert {a["alertname"] for a in out["firing"]} == {"HostHot", "After"}
    assert StoreAlertStates(sqlite_store).current(state="firing")


@pytest.mark.parametrize("failing_write", [0, 1], ids=["recording rule output", "ALERTS series"])
def test_a_store_write_failure_fails_the_evaluation_and_the_retry_ends_as_an_undisturbed_one(
    failing_write: int, tmp_path: Path, sqlite_store: MetricsStore
) -> None:
    """A store failure is not the rule's: nothing of the group is saved, and the retry gives it whole."""
    import sqlalchemy as sa

    engine = LocalEngine(sqlite_store)
    _load(sqlite_store, T0)
    states = StoreAlertStates(sqlite_store)
    write = sqlite_store.write_samples
    calls = 0

    def locked_once(samples: Any, *args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == failing_write + 1:
            raise sa.exc.OperationalError("INSERT", {}, Exception("database is locked"))
        return write(samples, *args, **kwargs)

    groups = _rules(tmp_path, engine)
    with (
        mock.patch.object(sqlite_store, "write_samples", side_effect=locked_once),
        pytest.raises(sa.exc.OperationalError, match="database is locked"),
    ):
        evaluate_groups(groups, engine, at=T0, store=sqlite_store, states=states)
    assert states.load(groups[0].file, "chain", before=T0 + 1) == {}  # the failed try saved no state
    retried = evaluate_groups(_rules(tmp_path, engine), engine, at=T0, store=sqlite_store, states=states)

    undisturbed_store = MetricsStore.from_url(f"sqlite:///{tmp_path / 'undisturbed.db'}")
    undisturbed_engine = LocalEngine(undisturbed_store)
    _load(undisturbed_store, T0)
    undisturbed = evaluate_groups(
        _rules(tmp_path, undisturbed_engine),
        undisturbed_engine,
        at=T0,
        store=undisturbed_store,
        states=StoreAlertStates(undisturbed_store),
    )
    assert retried.recorded == undisturbed.recorded == 2
    assert sorted((a.alertname, sorted(a.labels.items()), a.state) for a in retried.alerts) == sorted(
        (a.alertname, sorted(a.labels.items()), a.state) for a in undisturbed.alerts
    )
    for name in ("host:cpu:max", "ALERTS"):
        assert [(s.labels, p) for s, p in sqlite_store.query_range(name, [], T0, T0)] == [
            (s.labels, p) for s, p in undisturbed_store.query_range(name, [], T0, T0)
        ]
