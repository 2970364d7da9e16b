"""Why an alert fired: each transition stored with its values, and ``mlinfra alerts explain``."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from mlinfra.cli import main
from mlinfra.promql.engine import LocalEngine
from mlinfra.rules.evaluate import evaluate_groups
from mlinfra.rules.explain import split_comparison
from mlinfra.rules.files import load_rule_file
from mlinfra.rules.state import StoreAlertStates
from mlinfra.samples import Sample
from mlinfra.store import MetricsStore

T0 = 1_800_000_000.0
MIN = 60.0

RULES = """
groups:
  - name: jobs
    rules:
      - alert: ErrorsHigh
        expr: sum by (job) (errors) > on(job) limit
        for: 2m
      - alert: Hot
        expr: temp > 80
"""


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("a > 80", ("a", ">", "80")),
        ("rate(x[5m]) >= on(job) group_left b", ("rate(x[5m])", ">=", "b")),
        ('sum by (job) (x{a=">"}) / 2 > bool 3', ('sum by (job) (x{a=">"}) / 2', ">", "3")),
        ("x<=3", ("x", "<=", "3")),
        ("a > 1 and b < 2", None),
        ("(a > 1)", None),
        ("absent(up)", None),
    ],
)
def test_split_comparison(expr: str, expected: tuple[str, str, str] | None) -> None:
    assert split_comparison(expr) == expected


def _write(store: MetricsStore, at: float, errors_b: float) -> None:
    store.write_samples(
        [
            Sample("errors", {"job": "api", "pod": "api-1"}, 7.0, at),
            Sample("errors", {"job": "api", "pod": "api-2"}, 5.0, at),
            Sample("errors", {"job": "db", "pod": "db-1"}, errors_b, at),
            Sample("limit", {"job": "api"}, 10.0, at),
            Sample("limit", {"job": "db"}, 10.0, at),
            Sample("temp", {"gpu": "0"}, 85.0, at),
        ]
    )


@pytest.fixture
def evaluated(tmp_path: Path, sqlite_store: MetricsStore) -> MetricsStore:
    path = tmp_path / "jobs.yaml"
    path.write_text(textwrap.dedent(RULES))
    engine = LocalEngine(sqlite_store)
    groups = load_rule_file(path, engine=engine)
    states = StoreAlertStates(sqlite_store)
    for i in range(4):
        at = T0 + i * MIN
        _write(sqlite_store, at, 1.0)
        evaluate_groups(groups, engine, at=at, store=sqlite_store, states=states)
    return sqlite_store


def test_each_transition_is_stored_with_its_values(evaluated: MetricsStore) -> None:
    rows = StoreAlertStates(evaluated).explanations("ErrorsHigh", at=T0 + 10 * MIN)
    assert len(rows) == 1
    row = rows[0]
    assert (row["labels"], row["from_state"], row["to_state"], row["ts"]) == (
        {"alertname": "ErrorsHigh", "job": "api"},
        "pending",
        "firing",
        T0 + 2 * MIN,
    )
    why = row["explanation"]
    assert why["value"] == 12.0
    assert why["comparison"] == {
        "op": ">",
        "left": "sum by (job) (errors)",
        "right": "limit",
        "left_value": 12.0,
        "right_value": 10.0,
    }
    assert (why["pending_since"], why["for"]) == (T0, 120.0)
    assert why["aggregation"] == "sum by (job) (errors)"
    assert [(c["labels"]["pod"], c["value"]) for c in why["contributors"]] == [("api-1", 7.0), ("api-2", 5.0)]
    # Asked at a time before it fired: the pending transition.
    earlier = StoreAlertStates(evaluated).explanations("ErrorsHigh", at=T0 + MIN)
    assert [(r["from_state"], r["to_state"]) for r in earlier] == [("inactive", "pending")]


def test_cli_explain(evaluated: MetricsStore, capsys: pytest.CaptureFixture[str]) -> None:
    url = str(evaluated.engine.url)
    assert main(["alerts", "explain", "ErrorsHigh", "--at", str(T0 + 3 * MIN), "--store-url", url]) == 0
    out = capsys.readouterr().out
    assert 'ErrorsHigh {job="api"}: pending -> firing at 2027-01-15T08:02:00Z' in out
    assert "comparison (held): 12.0 > 10.0" in out
    assert "pending since 2027-01-15T08:00:00Z (for: 120s)" in out
    assert (
        'top inputs of sum by (job) (errors):\n    {__name__="errors", job="api", pod="api-1"} = 7.0' in out
    )
    assert main(["alerts", "explain", "Nope", "--store-url", url]) == 1
    assert "no explained transition of Nope" in capsys.readouterr().out
