"""Backtesting rules over stored history: timelines, nothing written, --compare, the CLI."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import sqlalchemy as sa

from mlinfra.cli import main
from mlinfra.promql.engine import LocalEngine
from mlinfra.rules.backtest import backtest, compare, evaluation_times
from mlinfra.rules.evaluate import evaluate_groups
from mlinfra.rules.files import load_rule_file
from mlinfra.rules.state import MemoryAlertStates, StoreAlertStates
from mlinfra.samples import Sample
from mlinfra.store import MetricsStore

T0 = 1_800_000_000.0
MIN = 60.0

RULES = """
groups:
  - name: gpu
    rules:
      - record: gpu:temp:max
        expr: max by (host) (temp)
      - alert: Hot
        expr: temp > {threshold}
        for: 10m
        labels: {{severity: page}}
        annotations:
          summary: "{{{{ $labels.gpu }}}} at {{{{ $value }}}}"
"""

# gpu 0: hot from minute 10 to 40 (fires at 20, resolved at 40), then 95 at minutes 60-65
# (pending, dropped before firing); gpu 1: 85 from minute 30 on (over 80 only).
TEMPS = {
    "0": lambda m: 95.0 if 10 <= m < 40 or 60 <= m < 66 else 50.0,
    "1": lambda m: 85.0 if m >= 30 else 40.0,
}


def _write_rules(path: Path, threshold: float) -> Path:
    path.write_text(textwrap.dedent(RULES.format(threshold=threshold)))
    return path


@pytest.fixture
def history(sqlite_store: MetricsStore) -> MetricsStore:
    sqlite_store.write_samples(
        Sample("temp", {"gpu": gpu, "host": "n1"}, f(m), T0 + m * MIN)
        for gpu, f in TEMPS.items()
        for m in range(90)
    )
    return sqlite_store


def test_timeline_of_each_alert(tmp_path: Path, history: MetricsStore) -> None:
    engine = LocalEngine(history)
    groups = load_rule_file(_write_rules(tmp_path / "r.yaml", 80), engine=engine)
    result = backtest(groups, engine, start=T0, end=T0 + 89 * MIN, step=5 * MIN)
    assert result.evaluations == 18
    got = [
        (e.labels["gpu"], e.pending_from, e.firing_from, e.resolved_at, e.pending_value, e.resolved_value)
        for e in result.episodes
    ]
    assert got == [
        ("0", T0 + 10 * MIN, T0 + 20 * MIN, T0 + 40 * MIN, 95.0, 95.0),
        ("1", T0 + 30 * MIN, T0 + 40 * MIN, None, 85.0, None),
        ("0", T0 + 60 * MIN, None, T0 + 70 * MIN, 95.0, 95.0),
    ]
    assert all(e.labels["severity"] == "page" for e in result.episodes)
    assert len(result.fired) == 2
    assert result.errors == []


def test_nothing_is_written(tmp_path: Path, history: MetricsStore) -> None:
    engine = LocalEngine(history)
    groups = load_rule_file(_write_rules(tmp_path / "r.yaml", 80), engine=engine)
    backtest(groups, engine, start=T0, end=T0 + 89 * MIN, step=5 * MIN)
    assert history.select_series("gpu:temp:max") == []
    assert history.select_series("ALERTS") == []
    assert StoreAlertStates(history).current() == []
    with history.begin() as conn:
        assert conn.execute(sa.text("select count(*) from mlinfra_rule_group_evaluations")).scalar() == 0


def test_same_transitions_as_evaluating_step_by_step(tmp_path: Path, history: MetricsStore) -> None:
    engine = LocalEngine(history)
    groups = load_rule_file(_write_rules(tmp_path / "r.yaml", 80), engine=engine)
    times = evaluation_times(T0, T0 + 89 * MIN, 5 * MIN)
    one_by_one = MemoryAlertStates()
    for t in times:
        evaluate_groups(groups, engine, at=t, states=one_by_one)
    result = backtest(groups, engine, start=times[0], end=times[-1], step=5 * MIN)
    firing_times = sorted(tr.ts for _, _, tr in one_by_one.transitions if tr.to_state == "firing")
    assert firing_times == sorted(e.firing_from for e in result.fired)


def test_compare_says_what_the_change_would_have_changed(tmp_path: Path, history: MetricsStore) -> None:
    engine = LocalEngine(history)
    window = {"start": T0, "end": T0 + 89 * MIN, "step": 5 * MIN}
    old = backtest(load_rule_file(_write_rules(tmp_path / "old.yaml", 80), engine=engine), engine, **window)
    new = backtest(load_rule_file(_write_rules(tmp_path / "new.yaml", 90), engine=engine), engine, **window)
    diff = compare(old, new)
    assert diff.delta == -1
    assert [(e.labels["gpu"], e.firing_from) for e in diff.only_old] == [("1", T0 + 40 * MIN)]
    assert diff.only_new == []
    assert diff.summary() == "this change would have fired 1 fewer time (1 unchanged, 1 gone, 0 new)"


@pytest.mark.parametrize(
    ("start", "end", "step", "message"),
    [
        (T0, T0 - 1, 60, "before it starts"),
        (T0, T0 + 60, 0, "step must be > 0"),
        (T0, T0 + 1e9, 1, "more than"),
    ],
)
def test_bad_windows_are_refused(start: float, end: float, step: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        evaluation_times(start, end, step)


def test_cli_table_json_and_compare(
    tmp_path: Path, history: MetricsStore, capsys: pytest.CaptureFixture[str]
) -> None:
    url = str(history.engine.url)
    new = _write_rules(tmp_path / "new.yaml", 90)
    old = _write_rules(tmp_path / "old.yaml", 80)
    window = ["--from", str(T0), "--to", "2027-01-15T09:29:00Z", "--step", "5m", "--store-url", url]
    assert main(["rules", "backtest", str(new), *window]) == 0
    table = capsys.readouterr().out
    assert "18 evaluations from 2027-01-15T08:00:00Z to 2027-01-15T09:29:00Z every 300s" in table
    assert 'Hot    {gpu="0", host="n1", severity="page"}  2027-01-15T08:10:00Z  2027-01-15T08:20:00Z' in table

    assert main(["rules", "backtest", str(new), *window, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [e["firing_from"] for e in data["episodes"]] == [T0 + 20 * MIN, None]

    assert main(["rules", "backtest", str(new), *window, "--compare", str(old)]) == 0
    out = capsys.readouterr().out
    assert "this change would have fired 1 fewer time" in out
    assert '- Hot {gpu="1", host="n1", severity="page"} firing from 2027-01-15T08:40:00Z' in out


def test_cli_refuses_a_bad_step(
    tmp_path: Path, history: MetricsStore, capsys: pytest.CaptureFixture[str]
) -> None:
    rules = _write_rules(tmp_path / "r.yaml", 90)
    args = ["rules", "backtest", str(rules), "--from", str(T0), "--to", str(T0 + 60), "--step", "five"]
    assert main([*args, "--store-url", str(history.engine.url)]) == 1
    assert "--step 'five'" in capsys.readouterr().err


class _StepByStep:
    """The same LocalEngine without its range path: one evaluation session per step (the old backtest)."""

    def __init__(self, engine: LocalEngine):
        self.engine = engine
        self.name = engine.name
        self.check = engine.check
        self.instant = engine.instant
        self.session = engine.session


def test_the_batched_backtest_equals_step_by_step_evaluation(
    tmp_path: Path, sqlite_store: MetricsStore
) -> None:
    """Gaps, a series going stale, NaNs, counter resets (the differential corpus), `for` and templates."""
    from tests.rules.corpus import MINUTE, generate

    start_ms = 1_700_000_000_000
    history = list(generate(4, start_ms, 240 * MINUTE, 60_000))
    sqlite_store.write_samples(Sample(s.name, s.labels, v, t / 1000) for s in history for t, v in s.points)
    exprs = [
        "cpu_percent > 60",
        "rate(req_total[5m]) > 9",
        "sum by (job) (rate(errors_total[5m])) / sum by (job) (rate(req_total[5m])) > 0.04",
        'absent(req_total{instance="node-3"})',
        "avg_over_time(temp_celsius[15m]) > 75",
        "nan_gauge > 10 or nan_gauge != nan_gauge",
        "max_over_time(cpu_percent[20m:1m]) - min_over_time(cpu_percent[20m:1m]) > 30",
    ]
    rules = [
        {"alert": f"A{i}", "expr": e, "for": "4m", "annotations": {"v": '{{ $value }} {{ query "1" }}'}}
        for i, e in enumerate(exprs)
    ]
    path = tmp_path / "r.yaml"
    path.write_text(json.dumps({"groups": [{"name": "g", "rules": rules}]}))
    engine = LocalEngine(sqlite_store)
    groups = load_rule_file(path, engine=engine)
    window = {"start": start_ms / 1000 + 10 * 60, "end": start_ms / 1000 + 250 * 60, "step": 90.0}
    batched = backtest(groups, engine, **window)
    stepwise = backtest(groups, _StepByStep(engine), **window)  # type: ignore[arg-type]
    assert batched.errors == stepwise.errors == []
    assert [_episode_text(e) for e in batched.episodes] == [_episode_text(e) for e in stepwise.episodes]
    assert len(batched.episodes) > 10
    assert len({e.alertname for e in batched.fired}) >= 5


def _episode_text(episode: object) -> str:
    return repr(vars(episode))  # repr: NaN values compare equal as text, and bit patterns print alike
