"""ALERTS / ALERTS_FOR_STATE as Prometheus writes them, and ``for`` state restored after a gap.

The restore cases follow Prometheus 2.42's ``Group.RestoreForState`` (rules/manager.go):
an alert pending when evaluations stopped keeps the time it had spent (the gap does not
count), one that would have fired within ``for_grace_period`` waits the grace period,
one that was firing keeps its original ``active_at``; a sample older than
``outage_tolerance``, or a ``for`` shorter than the grace period, restores nothing.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from mlinfra.promql.engine import LocalEngine
from mlinfra.rules.alert_series import RestoreSettings, alert_series_samples, is_gap
from mlinfra.rules.alerts import ActiveAlert
from mlinfra.rules.evaluate import EvaluationResult, evaluate_groups
from mlinfra.rules.files import RuleGroup, load_rule_file
from mlinfra.rules.state import MemoryAlertStates
from mlinfra.samples import Sample
from mlinfra.store import LabelMatcher, MetricsStore

T0 = 1_800_000_000.0
DEFAULT_RESTORE = RestoreSettings()
MIN = 60.0

RULES = """
groups:
  - name: gpu
    interval: 1m
    rules:
      - alert: Hot
        expr: temp > 80
        for: {for_}
        labels: {{severity: page}}
      - alert: TwoHot
        expr: count(ALERTS{{alertname="Hot"}}) >= 2
"""


def _groups(tmp_path: Path, engine: LocalEngine, for_: str = "20m") -> list[RuleGroup]:
    path = tmp_path / "gpu.yaml"
    path.write_text(textwrap.dedent(RULES.format(for_=for_)))
    return load_rule_file(path, engine=engine)


def _temps(store: MetricsStore, at: float, value: float = 90.0) -> None:
    store.write_samples([Sample("temp", {"gpu": "0"}, value, at), Sample("temp", {"gpu": "1"}, value, at)])


def _run(
    store: MetricsStore,
    groups: list[RuleGroup],
    states: MemoryAlertStates,
    times: list[float],
    restore: RestoreSettings | None = DEFAULT_RESTORE,
) -> EvaluationResult:
    engine = LocalEngine(store)
    result = EvaluationResult(at=0)
    for t in times:
        _temps(store, t)
        result = evaluate_groups(groups, engine, at=t, store=store, states=states, restore=restore)
    return result


def test_samples_are_prometheus_series() -> None:
    states = {
        "a": ActiveAlert({"alertname": "Hot", "gpu": "0"}, {}, "pending", T0 + 0.7, 91.0),
        "b": ActiveAlert({"alertname": "Hot", "gpu": "1"}, {}, "firing", T0 - 600, 95.0),
        "c": ActiveAlert({"alertname": "Hot", "gpu": "2"}, {}, "resolved", T0 - 900, 70.0),
    }
    samples = {
        (s.name, tuple(sorted(s.labels.items())), s.value, s.timestamp)
        for s in alert_series_samples(states, T0)
    }
    assert samples == {
        ("ALERTS", (("alertname", "Hot"), ("alertstate", "pending"), ("gpu", "0")), 1.0, T0),
        ("ALERTS_FOR_STATE", (("alertname", "Hot"), ("gpu", "0")), T0, T0),  # whole seconds, down
        ("ALERTS", (("alertname", "Hot"), ("alertstate", "firing"), ("gpu", "1")), 1.0, T0),
        ("ALERTS_FOR_STATE", (("alertname", "Hot"), ("gpu", "1")), T0 - 600, T0),
    }


def test_alerts_are_written_each_evaluation_and_read_by_later_rules_and_queries(
    tmp_path: Path, sqlite_store: MetricsStore
) -> None:
    engine = LocalEngine(sqlite_store)
    groups = _groups(tmp_path, engine, for_="1m")
    result = _run(sqlite_store, groups, MemoryAlertStates(), [T0, T0 + MIN], restore=None)
    firing = sqlite_store.query_range("ALERTS", [LabelMatcher("alertstate", "=", "firing")], T0, T0 + MIN)
    assert sorted((s.labels["gpu"], pts) for s, pts in firing if "gpu" in s.labels) == [
        ("0", [(T0 + MIN, 1.0)]),
        ("1", [(T0 + MIN, 1.0)]),
    ]
    for_state = sqlite_store.query_range("ALERTS_FOR_STATE", [LabelMatcher("gpu", "=", "0")], T0, T0 + MIN)
    assert [(s.labels, pts) for s, pts in for_state] == [
        ({"alertname": "Hot", "gpu": "0", "severity": "page"}, [(T0, T0), (T0 + MIN, T0)])
    ]
    # TwoHot runs after Hot in the group: it sees the ALERTS written at this very instant.
    assert [a.alertname for a in result.firing if a.alertname == "TwoHot"] == ["TwoHot"]
    assert engine.instant('ALERTS{alertname="TwoHot"}', T0 + MIN) == engine.instant(
        'ALERTS{alertname="TwoHot", alertstate="firing"}', T0 + MIN
    )
    assert len(engine.instant('ALERTS{alertname="TwoHot"}', T0 + MIN)) == 1  # type: ignore[arg-type]


def _hot(result: EvaluationResult) -> dict[str, tuple[str, float]]:
    return {a.labels["gpu"]: (a.state, a.active_at) for a in result.alerts if a.alertname == "Hot"}


def _minutes(start: float, n: int) -> list[float]:
    return [start + i * MIN for i in range(n)]


@pytest.mark.parametrize(
    ("pending_minutes", "gap_minutes", "expected_active_at"),
    [
        # 5m spent of 20m: 15m remain (>= grace 10m): the gap is added to active_at.
        (6, 25, T0 + 25 * MIN),
        # 15m spent: 5m remain (< grace): it fires a grace period after the restart.
        (16, 25, T0 + (15 + 25) * MIN + 10 * MIN - 20 * MIN),
        # 25m spent: it was firing: active_at stays where it was.
        (26, 25, T0),
    ],
)
def test_for_state_is_restored_after_a_gap_as_prometheus_restores_it(
    tmp_path: Path,
    sqlite_store: MetricsStore,
    pending_minutes: int,
    gap_minutes: int,
    expected_active_at: float,
) -> None:
    groups = _groups(tmp_path, LocalEngine(sqlite_store))
    states = MemoryAlertStates()
    before = _minutes(T0, pending_minutes)
    _run(sqlite_store, groups, states, before)
    restart = before[-1] + gap_minutes * MIN
    after = _run(sqlite_store, groups, states, [restart])
    assert _hot(after) == {"0": ("pending", expected_active_at), "1": ("pending", expected_active_at)}
    # Prometheus writes no ALERTS at its first evaluation after a restart.
    assert sqlite_store.query_range("ALERTS", [], restart, restart) == []
    # From then on the alert fires once its restored clock has run for 20 minutes, not before.
    fires_at = max(expected_active_at + 20 * MIN, restart + MIN)
    steps = _minutes(restart + MIN, int((fires_at - restart) / MIN))
    if len(steps) > 1:
        assert {s for s, _ in _hot(_run(sqlite_store, groups, states, steps[:-1])).values()} == {"pending"}
    assert {s for s, _ in _hot(_run(sqlite_store, groups, states, steps[-1:])).values()} == {"firing"}


def test_no_restore_beyond_the_outage_tolerance(tmp_path: Path, sqlite_store: MetricsStore) -> None:
    groups = _groups(tmp_path, LocalEngine(sqlite_store))
    states = MemoryAlertStates()
    before = _minutes(T0, 6)
    _run(sqlite_store, groups, states, before)
    restart = before[-1] + 61 * MIN  # past the default hour of tolerance
    assert _hot(_run(sqlite_store, groups, states, [restart]))["0"] == ("pending", restart)


def test_no_restore_for_a_hold_shorter_than_the_grace_period(
    tmp_path: Path, sqlite_store: MetricsStore
) -> None:
    groups = _groups(tmp_path, LocalEngine(sqlite_store), for_="5m")
    states = MemoryAlertStates()
    before = _minutes(T0, 3)
    _run(sqlite_store, groups, states, before)
    restart = before[-1] + 20 * MIN
    assert _hot(_run(sqlite_store, groups, states, [restart]))["0"] == ("pending", restart)


def test_without_a_gap_the_group_continues_and_writes_alerts(
    tmp_path: Path, sqlite_store: MetricsStore
) -> None:
    groups = _groups(tmp_path, LocalEngine(sqlite_store))
    states = MemoryAlertStates()
    _run(sqlite_store, groups, states, _minutes(T0, 3))
    # Two minutes later: one interval missed, still within two intervals.
    after = _run(sqlite_store, groups, states, [T0 + 4 * MIN])
    assert _hot(after)["0"] == ("pending", T0)
    assert len(sqlite_store.query_range("ALERTS", [], T0 + 4 * MIN, T0 + 4 * MIN)) == 3  # Hot x2, TwoHot


@pytest.mark.parametrize(
    ("previous", "at", "gap"),
    [(None, T0, True), (T0 - 120, T0, False), (T0 - 121, T0, True), (T0 - 60, T0, False)],
)
def test_is_gap(previous: float | None, at: float, gap: bool) -> None:
    assert is_gap(previous, at, 60.0, RestoreSettings()) is gap


def test_ended_alert_series_leave_instant_queries_at_once(tmp_path: Path) -> None:
    """Prometheus writes StaleNaN for the series a rule stopped returning: the pending
    series ends when the alert fires, both series end when it resolves; without the
    markers each would answer for the 5-minute lookback."""
    store = MetricsStore.from_url(f"sqlite:///{tmp_path / 's.db'}")
    engine = LocalEngine(store)
    groups = _groups(tmp_path, engine, for_="1m")
    states = MemoryAlertStates()
    _run(store, groups, states, [T0, T0 + MIN], restore=None)  # pending at T0, firing at T0+1m

    def instant(expr: str, at: float) -> set[tuple[tuple[str, str], ...]]:
        result = LocalEngine(store).instant(expr, at)
        assert isinstance(result, list)
        return {tuple(sorted(s.labels.items())) for s in result}

    assert instant('ALERTS{alertstate="pending", alertname="Hot"}', T0 + MIN) == set()
    assert len(instant('ALERTS{alertstate="firing", alertname="Hot"}', T0 + MIN)) == 2
    # Both GPUs cool down: the alert resolves and its series end at this evaluation.
    for t in (T0 + 2 * MIN,):
        _temps(store, t, value=20.0)
        evaluate_groups(groups, engine, at=t, store=store, states=states, restore=None)
    assert instant('ALERTS{alertname="Hot"}', T0 + 2 * MIN) == set()
    assert instant('ALERTS_FOR_STATE{alertname="Hot"}', T0 + 2 * MIN) == set()
    # A minute earlier they were there: the markers end them, not the lookback.
    assert len(instant('ALERTS_FOR_STATE{alertname="Hot"}', T0 + MIN)) == 2
