"""The rest of PromQL on the local engine, case by case with hand-computed Prometheus 2.42 answers.

Subquery steps, ``@``, many-to-one matching, ``topk`` ties, ``label_replace``'s Go
expansion, regex semantics, ``timestamp``; the differential test compares all of it
with a real Prometheus too, these say why each answer is what it is.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlinfra.promql.engine import LocalEngine
from mlinfra.promql.interface import QueryEvaluationError, QuerySyntaxError
from mlinfra.store import MetricsStore
from tests.promql.test_engine import L, T, put, q


@pytest.fixture
def store(tmp_path: Path) -> Iterator[MetricsStore]:
    s = MetricsStore.from_url(f"sqlite:///{tmp_path / 'store.db'}")
    yield s
    s.engine.dispose()


@pytest.fixture
def engine(store: MetricsStore) -> LocalEngine:
    return LocalEngine(store)


def test_subquery_steps_are_aligned_to_multiples_of_the_step_and_include_both_ends(
    store: MetricsStore, engine: LocalEngine
) -> None:
    # A sample every 10 s from T; T + 40 s is a multiple of 60 s (steps are aligned to the epoch).
    put(store, "g", {}, [(t, float(t)) for t in range(0, 641, 10)])
    # [T+340-120, T+340] stepped by 60 s: T+220, T+280, T+340, both ends included.
    assert q(engine, "count_over_time(g[2m:1m])", 340) == {(): 3.0}
    assert q(engine, "sum_over_time(g[2m:1m])", 340) == {(): 840.0}
    # At T+370 the steps are T+280 and T+340 (T+250 is not a multiple of 60 s).
    assert q(engine, "sum_over_time(g[2m:1m])", 370) == {(): 620.0}
    # Without a step: the engine's default (Prometheus's evaluation interval, 1 minute).
    assert q(engine, "count_over_time(g[2m:])", 340) == {(): 3.0}
    assert q(engine, "max_over_time(g[2m:1m] offset 1m)", 340) == {(): 280.0}


def test_at_modifier_pins_the_time_and_start_end_mean_the_query_instant(
    store: MetricsStore, engine: LocalEngine
) -> None:
    put(store, "g", {}, [(0, 1.0), (100, 2.0), (200, 3.0)])
    assert q(engine, f"g @ {T + 100:.0f}", 200) == {L(__name__="g"): 2.0}
    assert q(engine, f"g @ {T + 200:.0f} offset 100s", 0) == {L(__name__="g"): 2.0}
    assert q(engine, "g @ end()", 100) == {L(__name__="g"): 2.0}
    assert q(engine, f"timestamp(g @ {T + 150:.0f})", 0) == {(): T + 100}
    # Inside a subquery, start() is still the query's instant.
    assert q(engine, "max_over_time((g @ start())[5m:1m])", 100) == {(): 2.0}


def test_group_left_copies_labels_from_the_one_side_and_keeps_the_many_side_s(
    store: MetricsStore, engine: LocalEngine
) -> None:
    put(store, "req", {"host": "a", "code": "200"}, [(0, 10.0)])
    put(store, "req", {"host": "a", "code": "500"}, [(0, 2.0)])
    put(store, "info", {"host": "a", "team": "ml", "empty": ""}, [(0, 1.0)])
    got = q(engine, "req * on(host) group_left(team) info", 0)
    assert got == {L(host="a", code="200", team="ml"): 10.0, L(host="a", code="500", team="ml"): 2.0}
    # group_right: the labels are the right side's; a comparison keeps the left (one) side's value.
    assert q(engine, "info < on(host) group_right req", 0) == {
        L(__name__="req", host="a", code="200"): 1.0,
        L(__name__="req", host="a", code="500"): 1.0,
    }
    with pytest.raises(QueryEvaluationError, match="many-to-many matching not allowed"):
        engine.instant("info * on(host) group_left req", T)


def test_topk_ties_keep_the_series_go_s_heap_keeps(store: MetricsStore, engine: LocalEngine) -> None:
    for i in "abcd":
        put(store, "g", {"i": i}, [(0, 1.0)])
    # Series arrive in label order a, b, c, d; equal values never replace the heap's top.
    assert set(q(engine, "topk(2, g)", 0)) == {L(__name__="g", i="a"), L(__name__="g", i="b")}  # type: ignore[arg-type]
    assert q(engine, "topk(0, g)", 0) == {}
    assert q(engine, 'count_values("v", g)', 0) == {L(v="1"): 4.0}


def test_label_replace_expands_like_go(store: MetricsStore, engine: LocalEngine) -> None:
    put(store, "t", {"instance": "host-1:9100"}, [(0, 1.0)])

    def replaced(repl: str, regex: str = "(?P<host>[^:]+):(.*)") -> str:
        out = engine.instant(f'label_replace(t, "x", "{repl}", "instance", "{regex}")', T)
        assert isinstance(out, list)
        return out[0].labels.get("x", "")

    assert replaced("$1") == "host-1"
    assert replaced("${1}_$2") == "host-1_9100"
    assert replaced("$1_$2") == "9100"  # "$1_" names the group "1_", which is empty
    assert replaced("$host") == "host-1"
    assert replaced("$$1") == "$1"
    assert replaced("${1") == "${1"  # malformed: the $ is text
    assert replaced("$1", "nomatch") == ""  # no match: no label added


def test_regexes_are_re2_anchored_and_dot_does_not_match_a_newline(
    store: MetricsStore, engine: LocalEngine
) -> None:
    put(store, "t", {"v": "Web-1"}, [(0, 1.0)])
    put(store, "t", {"v": "a\nb"}, [(0, 2.0)])
    assert q(engine, 't{v=~"(?i)web-.*"}', 0) == {L(__name__="t", v="Web-1"): 1.0}
    assert q(engine, 't{v=~"web"}', 0) == {}  # anchored at both ends
    assert q(engine, 't{v=~"a.b"}', 0) == {}  # Prometheus 2: "." does not match "\n"
    assert q(engine, 't{v=~"(?s)a.b"}', 0) == {L(__name__="t", v="a\nb"): 2.0}
    for refused in ('t{v=~"(?<=a)b"}', 't{v=~"(?<name>x)"}', 'label_replace(t, "a", "b", "v", "(")'):
        with pytest.raises(QuerySyntaxError):
            engine.check(refused)


def test_timestamp_of_a_selector_is_the_sample_s_time_of_anything_else_the_evaluation_time(
    store: MetricsStore, engine: LocalEngine
) -> None:
    put(store, "g", {}, [(0, 1.0), (90, 2.0)])
    assert q(engine, "timestamp(g)", 100) == {(): T + 90}
    assert q(engine, "timestamp(g * 1)", 100) == {(): T + 100}
    assert q(engine, "time()", 100) == T + 100


def test_functions_of_2_42_with_their_edge_cases(store: MetricsStore, engine: LocalEngine) -> None:
    put(store, "g", {}, [(0, 1.0), (60, 1.0), (120, 3.0), (180, 2.0), (240, math.nan), (300, math.nan)])
    assert q(engine, "changes(g[5m])", 300) == {(): 3.0}  # NaN to NaN is no change
    assert q(engine, "resets(g[5m])", 300) == {(): 1.0}
    assert q(engine, "round(vector(2.5))", 0) == {(): 3.0}  # ties round up
    assert q(engine, "round(vector(-2.5))", 0) == {(): -2.0}
    assert q(engine, "clamp(vector(5), 3, 1)", 0) == {}  # max < min: empty
    assert q(engine, "scalar(vector(1) + vector(2))", 0) == 3.0
    assert q(engine, "year(vector(951782400))", 0) == {(): 2000.0}
    assert q(engine, "day_of_month(vector(951782400))", 0) == {(): 29.0}
    with pytest.raises(QueryEvaluationError, match="invalid smoothing factor"):
        engine.instant("holt_winters(g[5m], 1, 0.5)", T + 300)


@pytest.mark.parametrize("expr", ["g[5m]", "rate(g[5m])[10m:1m]", '"text"', '("text")'])
def test_a_string_or_range_vector_value_loads_and_fails_each_evaluation_as_in_prometheus(
    store: MetricsStore, engine: LocalEngine, expr: str
) -> None:
    # promtool check rules accepts such a rule; Prometheus fails it at every evaluation.
    put(store, "g", {}, [(0, 1.0)])
    engine.check(expr)
    with pytest.raises(QueryEvaluationError, match="rule result is not a vector or scalar"):
        engine.instant(expr, T)


def test_go_s_literal_quoting_in_regexes_is_understood(store: MetricsStore, engine: LocalEngine) -> None:
    # promql-parser's Rust regex lacks \Q...\E; Go's regexp (and so Prometheus) has it.
    put(store, "t", {"v": "a.*"}, [(0, 1.0)])
    put(store, "t", {"v": "abc"}, [(0, 2.0)])
    assert q(engine, 't{v=~"a\\\\Q.*\\\\E"}', 0) == {L(__name__="t", v="a.*"): 1.0}
    with pytest.raises(QuerySyntaxError):  # Prometheus: the open \Q quotes its closing ")$" too
        engine.check('t{v=~"a\\\\Q.*"}')
    assert q(engine, 't{v=~"a.*"}', 0) == {L(__name__="t", v="a.*"): 1.0, L(__name__="t", v="abc"): 2.0}
