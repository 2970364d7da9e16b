"""LocalEngine: every supported construct against hand-computed Prometheus 2.42 answers.

The differential test (test_differential.py) compares with a real Prometheus; these
pin the semantics down case by case, and need nothing but SQLite.
"""

from __future__ import annotations

import math
import time

import pytest

from mlinfra.promql.engine import LocalEngine
from mlinfra.promql.interface import (
    InstantSample,
    QueryEngine,
    QueryEvaluationError,
    QuerySyntaxError,
    UnsupportedExpression,
)
from mlinfra.samples import STALE_NAN, Sample
from mlinfra.store import MetricsStore

T = 1_700_000_000.0  # a round base time; samples at T + seconds


@pytest.fixture
def store(sqlite_store: MetricsStore) -> MetricsStore:
    return sqlite_store


@pytest.fixture
def engine(store: MetricsStore) -> LocalEngine:
    return LocalEngine(store)


def put(store: MetricsStore, name: str, labels: dict[str, str], points: list[tuple[float, float]]) -> None:
    store.write_samples(Sample(name, labels, v, T + t) for t, v in points)


def q(engine: LocalEngine, expr: str, at: float) -> dict[tuple[tuple[str, str], ...], float] | float:
    """Result as {sorted labels: value} (or the scalar), at T + ``at`` seconds."""
    result = engine.instant(expr, T + at)
    if isinstance(result, float):
        return result
    return {tuple(sorted(s.labels.items())): s.value for s in result}


def L(**labels: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(labels.items()))


def test_implements_the_query_engine_protocol(engine: LocalEngine) -> None:
    assert isinstance(engine, QueryEngine)
    assert engine.name == "local"


# ---------------------------------------------------------------------- selectors


def test_instant_selector_takes_latest_sample_within_a_closed_five_minute_lookback(
    store: MetricsStore, engine: LocalEngine
) -> None:
    put(store, "g", {"i": "a"}, [(0, 1.0), (60, 2.0)])
    put(store, "g", {"i": "b"}, [(0, 5.0)])
    assert q(engine, "g", 60) == {L(__name__="g", i="a"): 2.0, L(__name__="g", i="b"): 5.0}
    assert q(engine, "g", 59) == {L(__name__="g", i="a"): 1.0, L(__name__="g", i="b"): 5.0}
    # Exactly 5 minutes old is still in (Prometheus 2.x), a millisecond more is not.
    assert q(engine, "g", 300) == {L(__name__="g", i="a"): 2.0, L(__name__="g", i="b"): 5.0}
    assert q(engine, "g", 300.001) == {L(__name__="g", i="a"): 2.0}
    assert q(engine, "g", 360.001) == {}
    assert q(engine, "g", -1) == {}  # nothing yet


def test_lookback_is_configurable(store: MetricsStore) -> None:
    put(store, "g", {}, [(0, 1.0)])
    assert q(LocalEngine(store, lookback=60), "g", 61) == {}
    assert q(LocalEngine(store, lookback=120), "g", 61) == {L(__name__="g"): 1.0}
    with pytest.raises(ValueError, match="lookback"):
        LocalEngine(store, lookback=0)


def test_the_four_matchers_and_name_matchers(store: MetricsStore, engine: LocalEngine) -> None:
    for inst in ("node-1", "node-2", "node-10"):
        put(store, "up", {"instance": inst}, [(0, 1.0)])
    put(store, "down", {"instance": "node-1"}, [(0, 0.0)])
    names = lambda expr: sorted(dict(k)["instance"] for k in q(engine, expr, 0))  # type: ignore[union-attr]  # noqa: E731
    assert names('up{instance="node-1"}') == ["node-1"]
    assert names('up{instance!="node-1"}') == ["node-10", "node-2"]
    assert names('up{instance=~"node-1"}') == ["node-1"]  # anchored: not node-10
    assert names('up{instance=~"node-1.*"}') == ["node-1", "node-10"]
    assert names('up{instance!~"node-[12]"}') == ["node-10"]
    assert names('up{missing=""}') == ["node-1", "node-10", "node-2"]  # absent label == ""
    assert names('{__name__=~"up|down", instance="node-1"}') == ["node-1", "node-1"]
    assert q(engine, '{__name__="down"}', 0) == {L(__name__="down", instance="node-1"): 0.0}


def test_offset_shifts_the_window(store: MetricsStore, engine: LocalEngine) -> None:
    put(store, "g", {}, [(0, 1.0), (600, 2.0)])
    assert q(engine, "g offset 10m", 600) == {L(__name__="g"): 1.0}
    assert q(engine, "g offset 10m", 599) == {}
    assert q(engine, "count_over_time(g[10m] offset 1m)", 660) == {(): 2.0}


def test_nan_values_survive_the_store(store: MetricsStore, engine: LocalEngine) -> None:
    put(store, "g", {}, [(0, math.nan)])
    (value,) = q(engine, "g", 0).values()  # type: ignore[union-attr]
    assert math.isnan(value)


# ---------------------------------------------------------------------- rate family


def test_rate_increase_extrapolate_like_prometheus(store: MetricsStore, engine: LocalEngine) -> None:
    put(store, "c", {}, [(0, 0.0), (60, 10.0), (120, 20.0), (180, 30.0), (240, 40.0)])
    # Range [-60, 240]: the counter starts at 0 at t=0, so no extrapolation before it.
    assert q(engine, "increase(c[5m])", 240) == {(): pytest.approx(40.0)}
    assert q(engine, "rate(c[5m])", 240) == {(): pytest.approx(40.0 / 300)}
    # Range [30, 270]: samples 60..240 (30 s from each edge, < 1.1 x 60 s): extrapolate both ways.
    assert q(engine, "increase(c[4m])", 270) == {(): pytest.approx(30 * 240 / 180)}


def test_rate_handles_counter_resets(store: MetricsStore, engine: LocalEngine) -> None:
    put(store, "c", {}, [(0, 100.0), (60, 110.0), (120, 5.0), (180, 15.0)])
    # increase = 15 - 100 + 110 (the value before the reset), extrapolated by half an
    # interval at the start (60 s away >= 1.1 x 60 s? no: 60 < 66, so by 60 s) ...
    # range [-60, 180]: start gap 60 < 66 -> +60; end gap 0 -> factor 240/180.
    assert q(engine, "increase(c[4m])", 180) == {(): pytest.approx(25.0 * 240 / 180)}
    assert q(engine, "irate(c[4m])", 180) == {(): pytest.approx(10.0 / 60)}
    assert q(engine, "irate(c[4m])", 120) == {(): pytest.approx(5.0 / 60)}  # reset: last value / interval


def test_delta_extrapolates_and_limits_to_half_an_interval(store: MetricsStore, engine: LocalEngine) -> None:
    put(store, "g", {}, [(60, 5.0), (120, 7.0), (180, 9.0)])
    # Range [-60, 240]: 120 s before the first sample (>= 66: +30 s), 60 s after the last (+60 s).
    assert q(engine, "delta(g[5m])", 240) == {(): pytest.approx(4.0 * 210 / 120)}


def test_rate_needs_two_samples_and_drops_the_name(store: MetricsStore, engine: LocalEngine) -> None:
    put(store, "c", {"job": "a"}, [(0, 1.0)])
    put(store, "c", {"job": "b"}, [(0, 1.0), (30, 4.0)])
    result = q(engine, "rate(c[1m])", 30)
    assert list(result) == [L(job="b")]  # type: ignore[arg-type]


def test_range_selector_includes_both_ends(store: MetricsStore, engine: LocalEngine) -> None:
    put(store, "g", {}, [(0, 1.0), (60, 2.0), (120, 3.0)])
    assert q(engine, "count_over_time(g[2m])", 120) == {(): 3.0}
    assert q(engine, "count_over_time(g[2m])", 120.001) == {(): 2.0}


def test_over_time_functions(store: MetricsStore, engine: LocalEngine) -> None:
    put(store, "g", {"k": "v"}, [(0, 4.0), (10, -2.0), (20, 7.0), (30, 1.0)])
    assert q(engine, "avg_over_time(g[1m])", 30) == {L(k="v"): 2.5}
    assert q(engine, "min_over_time(g[1m])", 30) == {L(k="v"): -2.0}
    assert q(engine, "max_over_time(g[1m])", 30) == {L(k="v"): 7.0}
    assert q(engine, "sum_over_time(g[1m])", 30) == {L(k="v"): 10.0}
    assert q(engine, "count_over_time(g[15s])", 30) == {L(k="v"): 2.0}


def test_max_over_time_skips_a_leading_nan(store: MetricsStore, engine: LocalEngine) -> None:
    put(store, "g", {}, [(0, math.nan), (10, 3.0), (20, 1.0)])
    assert q(engine, "max_over_time(g[1m])", 20) == {(): 3.0}
    assert q(engine, "min_over_time(g[1m])", 20) == {(): 1.0}


# ---------------------------------------------------------------------- operators


def test_scalar_arithmetic_follows_ieee(engine: LocalEngine) -> None:
    assert q(engine, "1 + 2 * 3", 0) == 7.0
    assert q(engine, "2 ^ 3 ^ 2", 0) == 512.0  # right-associative
    assert q(engine, "7 % 3", 0) == 1.0
    assert q(engine, "-7 % 3", 0) == -1.0  # Go's Mod keeps the dividend's sign
    assert q(engine, "1 / 0", 0) == math.inf
    assert q(engine, "-1 / 0", 0) == -math.inf
    assert math.isnan(q(engine, "0 / 0", 0))  # type: ignore[arg-type]
    assert math.isnan(q(engine, "5 % 0", 0))  # type: ignore[arg-type]
    assert math.isnan(q(engine, "(-8) ^ 0.5", 0))  # type: ignore[arg-type]
    assert q(engine, "1 < bool 2", 0) == 1.0
    assert q(engine, "-(1 + 1)", 0) == -2.0


def test_vector_scalar_operators(store: MetricsStore, engine: LocalEngine) -> None:
    put(store, "g", {"i": "1"}, [(0, 10.0)])
    put(store, "g", {"i": "2"}, [(0, 90.0)])
    assert q(engine, "g * 2", 0) == {L(i="1"): 20.0, L(i="2"): 180.0}  # arithmetic drops the name
    assert q(engine, "100 - g", 0) == {L(i="1"): 90.0, L(i="2"): 10.0}
    assert q(engine, "g > 50", 0) == {L(__name__="g", i="2"): 90.0}  # filter keeps name and value
    assert q(engine, "50 < g", 0) == {L(__name__="g", i="2"): 90.0}  # the vector's value, scalar left
    assert q(engine, "g > bool 50", 0) == {L(i="1"): 0.0, L(i="2"): 1.0}
    assert q(engine, "g / 0", 0) == {L(i="1"): math.inf, L(i="2"): math.inf}
    assert q(engine, "-g", 0) == {L(i="1"): -10.0, L(i="2"): -90.0}


def test_one_to_one_matching(store: MetricsStore, engine: LocalEngine) -> None:
    for inst, used, total in (("a", 30.0, 60.0), ("b", 50.0, 100.0)):
        put(store, "used", {"instance": inst, "kind": "x"}, [(0, used)])
        put(store, "total", {"instance": inst, "kind": "y"}, [(0, total)])
    assert q(engine, "used / ignoring(kind) total", 0) == {L(instance="a"): 0.5, L(instance="b"): 0.5}
    assert q(engine, "used / on(instance) total", 0) == {L(instance="a"): 0.5, L(instance="b"): 0.5}
    assert q(engine, "used / total", 0) == {}  # kind differs: no match
    assert q(engine, "used > on(instance) total * 0.5 - 5", 0) == {
        L(instance="a"): 30.0,
        L(instance="b"): 50.0,
    }
    assert q(engine, "used > bool ignoring(kind) total", 0) == {L(instance="a"): 0.0, L(instance="b"): 0.0}
    # Comparison without bool keeps the left side's labels, name included.
    assert q(engine, "used < ignoring(kind) total", 0) == {
        L(__name__="used", instance="a"): 30.0,
        L(__name__="used", instance="b"): 50.0,
    }


def test_many_to_many_is_refused_like_prometheus(store: MetricsStore, engine: LocalEngine) -> None:
    put(store, "g", {"i": "1"}, [(0, 1.0)])
    put(store, "g", {"i": "2"}, [(0, 2.0)])
    put(store, "h", {}, [(0, 3.0)])
    with pytest.raises(
        QueryEvaluationError, match="found duplicate series for the match group {} on the right"
    ):
        engine.instant("h + on() g", T)
    with pytest.raises(QueryEvaluationError, match="many-to-one matching must be explicit"):
        engine.instant("g + on() h", T)


def test_duplicate_label_sets_are_an_error(store: MetricsStore, engine: LocalEngine) -> None:
    put(store, "a", {"i": "1"}, [(0, 1.0)])
    put(store, "b", {"i": "1"}, [(0, 2.0)])
    with pytest.raises(QueryEvaluationError, match="vector cannot contain metrics with the same labelset"):
        engine.instant('{__name__=~"a|b"} * 2', T)
    assert len(engine.instant('{__name__=~"a|b"} > 0', T)) == 2  # names kept: distinct  # type: ignore[arg-type]


def test_set_operators(store: MetricsStore, engine: LocalEngine) -> None:
    put(store, "a", {"i": "1"}, [(0, 1.0)])
    put(store, "a", {"i": "2"}, [(0, 2.0)])
    put(store, "b", {"i": "2"}, [(0, 20.0)])
    put(store, "b", {"i": "3"}, [(0, 30.0)])
    assert q(engine, "a and b", 0) == {L(__name__="a", i="2"): 2.0}
    assert q(engine, "a unless b", 0) == {L(__name__="a", i="1"): 1.0}
    assert q(engine, "a or b", 0) == {
        L(__name__="a", i="1"): 1.0,
        L(__name__="a", i="2"): 2.0,
        L(__name__="b", i="3"): 30.0,
    }
    assert q(engine, "a and on() b", 0) == {L(__name__="a", i="1"): 1.0, L(__name__="a", i="2"): 2.0}
    assert q(engine, "a unless ignoring(i) b", 0) == {}
    assert q(engine, "a and nothing", 0) == {}


# ---------------------------------------------------------------------- aggregations


def test_aggregations_by_and_without(store: MetricsStore, engine: LocalEngine) -> None:
    for job, inst, v in (("api", "1", 1.0), ("api", "2", 3.0), ("db", "3", 10.0)):
        put(store, "g", {"job": job, "instance": inst}, [(0, v)])
    assert q(engine, "sum(g)", 0) == {(): 14.0}
    assert q(engine, "sum by (job) (g)", 0) == {L(job="api"): 4.0, L(job="db"): 10.0}
    assert q(engine, "sum without (instance) (g)", 0) == {L(job="api"): 4.0, L(job="db"): 10.0}
    assert q(engine, "avg by (job) (g)", 0) == {L(job="api"): 2.0, L(job="db"): 10.0}
    assert q(engine, "min(g)", 0) == {(): 1.0}
    assert q(engine, "max by (job) (g)", 0) == {L(job="api"): 3.0, L(job="db"): 10.0}
    assert q(engine, "count without (job, instance) (g)", 0) == {(): 3.0}
    assert q(engine, "count(g > 100)", 0) == {}  # nothing to count: no sample, not 0
    assert q(engine, "sum by (__name__) (g)", 0) == {L(__name__="g"): 14.0}
    assert q(engine, "sum by (nope) (g)", 0) == {(): 14.0}


def test_min_max_skip_nan_like_prometheus(store: MetricsStore, engine: LocalEngine) -> None:
    put(store, "g", {"i": "1"}, [(0, math.nan)])
    put(store, "g", {"i": "2"}, [(0, 5.0)])
    assert q(engine, "max(g)", 0) == {(): 5.0}
    assert q(engine, "min(g)", 0) == {(): 5.0}
    assert math.isnan(q(engine, "sum(g)", 0)[()])  # type: ignore[index]


# ---------------------------------------------------------------------- functions


def test_abs_and_clamps(store: MetricsStore, engine: LocalEngine) -> None:
    put(store, "g", {"i": "1"}, [(0, -3.0)])
    put(store, "g", {"i": "2"}, [(0, 8.0)])
    assert q(engine, "abs(g)", 0) == {L(i="1"): 3.0, L(i="2"): 8.0}
    assert q(engine, "clamp_min(g, 0)", 0) == {L(i="1"): 0.0, L(i="2"): 8.0}
    assert q(engine, "clamp_max(g, 2 + 3)", 0) == {L(i="1"): -3.0, L(i="2"): 5.0}


def test_absent_derives_labels_from_equality_matchers(store: MetricsStore, engine: LocalEngine) -> None:
    put(store, "present", {"job": "a"}, [(0, 1.0)])
    assert q(engine, "absent(present)", 0) == {}
    assert q(engine, "absent(nothing)", 0) == {(): 1.0}
    assert q(engine, 'absent(nothing{job="x", instance=~"i.*"})', 0) == {L(job="x"): 1.0}
    assert q(engine, 'absent(nothing{job="x", job="y", env="prod"})', 0) == {L(env="prod"): 1.0}
    assert q(engine, 'absent(sum(nothing{job="x"}))', 0) == {(): 1.0}
    assert q(engine, 'absent(present{job="b"})', 0) == {L(job="b"): 1.0}


def bucket_points(store: MetricsStore, labels: dict[str, str], counts: dict[str, float]) -> None:
    for le, count in counts.items():
        put(store, "h_bucket", {**labels, "le": le}, [(0, count)])


def test_histogram_quantile_interpolates_within_a_bucket(store: MetricsStore, engine: LocalEngine) -> None:
    bucket_points(store, {"job": "api"}, {"0.1": 10, "0.5": 30, "1": 40, "+Inf": 40})
    # rank 20 of 40 is half way through the (0.1, 0.5] bucket (10 -> 30).
    assert q(engine, "histogram_quantile(0.5, h_bucket)", 0) == {L(job="api"): pytest.approx(0.3)}
    # rank 5 in the first bucket interpolates from 0.
    assert q(engine, "histogram_quantile(0.125, h_bucket)", 0) == {L(job="api"): pytest.approx(0.05)}
    # The top rank lands in the +Inf bucket's neighbour: its upper bound.
    assert q(engine, "histogram_quantile(1, h_bucket)", 0) == {L(job="api"): 1.0}
    assert q(engine, "histogram_quantile(1.5, h_bucket)", 0) == {L(job="api"): math.inf}
    assert q(engine, "histogram_quantile(-0.5, h_bucket)", 0) == {L(job="api"): -math.inf}


def test_histogram_quantile_corner_cases(store: MetricsStore, engine: LocalEngine) -> None:
    bucket_points(store, {"case": "noinf"}, {"0.1": 1, "1": 2})
    bucket_points(store, {"case": "nonmono"}, {"1": 10, "2": 5, "+Inf": 10})
    bucket_points(store, {"case": "empty"}, {"1": 0, "+Inf": 0})
    put(store, "h_bucket", {"case": "nole"}, [(0, 3.0)])
    got = q(engine, "histogram_quantile(0.5, h_bucket)", 0)
    assert isinstance(got, dict)
    assert math.isnan(got[L(case="noinf")])
    assert got[L(case="nonmono")] == pytest.approx(0.5)  # bucket "2" raised to 10: rank 5 in (0, 1]
    assert math.isnan(got[L(case="empty")])
    assert L(case="nole") not in got  # no le label: skipped


def test_le_labels_parse_as_go_parses_them(store: MetricsStore, engine: LocalEngine) -> None:
    # Prometheus reads le with strconv.ParseFloat: "1_0" is 10 (Go's digit separator),
    # " 20" (whitespace) is not a number, so that bucket is skipped.
    bucket_points(store, {"job": "api"}, {"1_0": 10, " 20": 15, "+Inf": 20})
    assert q(engine, "histogram_quantile(0.25, h_bucket)", 0) == {L(job="api"): pytest.approx(5.0)}
    assert q(engine, "histogram_quantile(0.75, h_bucket)", 0) == {L(job="api"): 10.0}


# ---------------------------------------------------------------------- check()


@pytest.mark.parametrize(
    ("expr", "construct"),
    [
        # Known to promql-parser, but newer than Prometheus 2.42:
        ('sort_by_label(g, "a")', "the function sort_by_label(), which Prometheus 2.42 does not have"),
        ("mad_over_time(g[5m])", "the function mad_over_time(), which Prometheus 2.42 does not have"),
        ("limitk(1, g)", "the aggregation limitk, which Prometheus 2.42 does not have"),
        ("histogram_stddev(g)", "the function histogram_stddev(), which Prometheus 2.42 does not have"),
        # promql-parser cannot read an @ before 1970 (it panics):
        ("g @ -5", "an @ timestamp before 1970"),
    ],
)
def test_check_refuses_what_it_cannot_evaluate(engine: LocalEngine, expr: str, construct: str) -> None:
    with pytest.raises(UnsupportedExpression) as err:
        engine.check(expr)
    assert str(err.value).startswith(f"unsupported by the local engine: {construct}")
    assert "; use the prometheus engine" in str(err.value)
    with pytest.raises(UnsupportedExpression):  # instant() refuses the same way, cached or not
        engine.instant(expr, T)


@pytest.mark.parametrize("expr", ["sum(", "rate(g)", "1 > 2", "g{", "g and 1"])
def test_check_reports_syntax_errors_with_the_parsers_message(engine: LocalEngine, expr: str) -> None:
    with pytest.raises(QuerySyntaxError, match="invalid PromQL"):
        engine.check(expr)


def test_check_accepts_the_supported_language(engine: LocalEngine) -> None:
    engine.check(
        "histogram_quantile(0.99, sum by (le, job) (rate(x_bucket{job=~'a.*'}[5m] offset 1m))) > bool 0.2"
        " and on(job) (abs(delta(g[10m])) > clamp_min(g, 1) unless absent(up))"
    )


def test_invalid_regex_is_a_syntax_error(engine: LocalEngine) -> None:
    with pytest.raises(QuerySyntaxError, match="regex"):
        engine.check('g{a=~"("}')


# ---------------------------------------------------------------------- sessions and caches


def test_session_shares_reads_until_invalidated(store: MetricsStore, engine: LocalEngine) -> None:
    put(store, "g", {}, [(0, 1.0)])
    with engine.session(T) as session:
        assert session.instant("g") == [InstantSample({"__name__": "g"}, 1.0)]
        put(store, "g", {}, [(0, 2.0)])
        assert session.instant("g") == [InstantSample({"__name__": "g"}, 1.0)]  # cached read
        session.invalidate("g")
        assert session.instant("g") == [InstantSample({"__name__": "g"}, 2.0)]
    assert engine.instant("g", T) == [InstantSample({"__name__": "g"}, 2.0)]


def test_new_series_are_seen_by_the_next_evaluation(store: MetricsStore, engine: LocalEngine) -> None:
    put(store, "g", {"i": "1"}, [(0, 1.0)])
    assert len(engine.instant("g", T)) == 1  # type: ignore[arg-type]
    put(store, "g", {"i": "2"}, [(0, 1.0)])
    assert len(engine.instant("g", T)) == 2  # type: ignore[arg-type]


def test_instant_many_returns_errors_in_place(store: MetricsStore, engine: LocalEngine) -> None:
    put(store, "g", {"i": "1"}, [(0, 1.0), (60, 3.0)])
    put(store, "g", {"i": "2"}, [(0, 1.0), (60, 2.0)])
    out = engine.instant_many(["sum(g)", "limitk(1, g)", "g + on() g", "increase(g[1m])", "1"], T + 60)
    assert out[0] == [InstantSample({}, 5.0)]
    assert isinstance(out[1], UnsupportedExpression)
    assert isinstance(out[2], QueryEvaluationError)
    assert {s.labels["i"]: s.value for s in out[3]} == {"1": 2.0, "2": 1.0}  # type: ignore[union-attr]
    assert out[4] == 1.0


def test_overlapping_windows_read_once_give_the_same_answers(
    store: MetricsStore, engine: LocalEngine
) -> None:
    put(store, "c", {}, [(t, float(t)) for t in range(0, 3601, 60)])
    exprs = ["c", "rate(c[5m])", "increase(c[1h])", "count_over_time(c[10m] offset 5m)", "c offset 2h"]
    shared = engine.instant_many(exprs, T + 3600)
    alone = [engine.instant(e, T + 3600) for e in exprs]
    assert shared == alone
    assert alone[3] == [InstantSample({}, 11.0)]


def test_many_selectors_of_one_metric_use_the_label_index_and_answer_as_alone(
    store: MetricsStore, engine: LocalEngine
) -> None:
    """A scaling plan's shape: one selector per model over the same metric (the label
    index and one whole-metric read), next to matchers the index cannot answer."""
    for i in range(40):
        for gpu in ("0", "1"):
            put(store, "util", {"model": f"m{i}", "gpu": gpu}, [(0, float(i)), (60, float(i + 1))])
    put(store, "util", {"gpu": "0"}, [(60, 99.0)])  # no model label
    exprs = [f'avg(util{{model="m{i}"}})' for i in range(40)]
    exprs += [
        'util{model="m3", gpu="1"}',  # two equalities: the smaller bucket, then every matcher
        'util{model="nobody"}',
        'util{model=""}',  # absent label: not in the index, matched by the test
        'util{model="m5", gpu!="0"}',
        'count(util{model=~"m1.*"})',
        'sum(rate(util{model="m7"}[5m]))',
    ]
    shared = engine.instant_many(exprs, T + 60)
    alone = [engine.instant(e, T + 60) for e in exprs]
    assert shared == alone
    assert shared[12] == [InstantSample({}, 13.0)]  # avg of m12's two GPUs at 60 s
    assert [s.labels for s in shared[40]] == [{"__name__": "util", "model": "m3", "gpu": "1"}]  # type: ignore[union-attr]
    assert shared[41] == []
    assert [s.value for s in shared[42]] == [99.0]  # type: ignore[union-attr]
    assert [s.labels["gpu"] for s in shared[43]] == ["1"]  # type: ignore[union-attr]
    assert shared[44] == [InstantSample({}, 22.0)]  # m1 and m10..m19, two GPUs each


# ---------------------------------------------------------------------- the store's side


def test_an_unreachable_store_is_an_evaluation_error() -> None:
    from tests.support.services import free_port

    store = MetricsStore.from_url(f"postgresql+psycopg2://u:p@127.0.0.1:{free_port()}/nothing")
    with pytest.raises(QueryEvaluationError, match="metrics store .* is unavailable"):
        LocalEngine(store).instant("up", T)
    store.engine.dispose()


@pytest.mark.integration
def test_postgresql_store_gives_the_same_answers_as_sqlite(postgres_url: str, store: MetricsStore) -> None:
    import secrets

    import sqlalchemy as sa

    # A database of its own: the session's PostgreSQL is shared with other tests.
    database = f"rules_{secrets.token_hex(4)}"
    admin = sa.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {database}"))
    admin.dispose()
    pg = MetricsStore.from_url(sa.make_url(postgres_url).set(database=database))
    for target in (store, pg):
        for i in range(3):
            put(target, "c", {"i": str(i)}, [(t, t * (i + 1.0)) for t in range(0, 601, 15)])
            put(
                target,
                "g",
                {"i": str(i)},
                [(t, math.nan if t == 600 and i == 0 else t % 7) for t in range(0, 601, 30)],
            )
    exprs = [
        "rate(c[5m])",
        "sum by (i) (increase(c[10m]))",
        "g",
        'g{i=~"1|2"} offset 1m',
        "max_over_time(g[2m]) - on(i) min_over_time(g[2m])",
        '{__name__=~"c|g", i="2"}',
    ]
    sqlite_answers = LocalEngine(store).instant_many(exprs, T + 600)
    pg_answers = LocalEngine(pg).instant_many(exprs, T + 600)
    for expr, a, b in zip(exprs, sqlite_answers, pg_answers, strict=True):
        assert isinstance(a, list), expr
        assert a, expr
        assert isinstance(b, list)
        got_a = {tuple(sorted(s.labels.items())): s.value for s in a}
        got_b = {tuple(sorted(s.labels.items())): s.value for s in b}
        assert got_a.keys() == got_b.keys(), expr
        for k in got_a:
            assert got_a[k] == pytest.approx(got_b[k], nan_ok=True), (expr, k)
    pg.engine.dispose()


def test_the_garbage_collector_is_paused_only_during_a_session(
    store: MetricsStore, engine: LocalEngine
) -> None:
    import gc

    put(store, "g", {}, [(0, 1.0)])
    assert gc.isenabled()
    with engine.session(T) as session:
        assert not gc.isenabled()
        with engine.session(T) as inner:  # nested: still paused when the inner one ends
            inner.instant("g")
        assert not gc.isenabled()
        session.instant("g")
    assert gc.isenabled()
    with pytest.raises(UnsupportedExpression), engine.session(T) as failing:
        failing.instant("limitk(1, g)")
    assert gc.isenabled()
    gc.disable()
    try:
        engine.instant("g", T)
        assert not gc.isenabled()  # a collector that was off stays off
    finally:
        gc.enable()


def test_regex_matchers_are_re2_linear_time_and_anchored(store: MetricsStore, engine: LocalEngine) -> None:
    # (a+)+b against "a" * 28 backtracks for ~15 s in Python's re; RE2 answers at once.
    put(store, "m", {"path": "a" * 28}, [(100.0, 1.0)])
    put(store, "m", {"path": "aab"}, [(100.0, 2.0)])
    start = time.monotonic()
    assert q(engine, 'm{path=~"(a+)+b"}', 100.0) == {L(__name__="m", path="aab"): 2.0}
    assert time.monotonic() - start < 5


# ---------------------------------------------------------------------- staleness markers


def test_a_series_whose_latest_sample_is_a_staleness_marker_is_gone_at_once(store, engine) -> None:
    put(store, "up", {"gpu": "0"}, [(0, 1.0), (60, STALE_NAN), (180, 1.0)])
    put(store, "up", {"gpu": "1"}, [(0, 1.0), (60, 1.0)])
    assert q(engine, "up", 59) == {L(__name__="up", gpu="0"): 1.0, L(__name__="up", gpu="1"): 1.0}
    # From the marker on, no value, though the sample at 0 is inside the lookback...
    assert q(engine, "up", 60) == {L(__name__="up", gpu="1"): 1.0}
    assert q(engine, "up", 179) == {L(__name__="up", gpu="1"): 1.0}
    assert q(engine, "timestamp(up)", 120) == {L(gpu="1"): T + 60}
    assert q(engine, 'absent(up{gpu="0"})', 120) == {L(gpu="0"): 1.0}
    # ...until the series' next sample.
    assert q(engine, 'up{gpu="0"}', 180) == {L(__name__="up", gpu="0"): 1.0}


def test_range_vectors_leave_staleness_markers_out(store, engine) -> None:
    put(store, "req_total", {}, [(0, 1.0), (15, 2.0), (30, STALE_NAN), (45, 4.0)])
    put(store, "gone", {}, [(0, STALE_NAN), (15, STALE_NAN)])
    assert q(engine, "count_over_time(req_total[1m])", 45) == {(): 3.0}
    assert q(engine, "last_over_time(req_total[20s])", 30) == {L(__name__="req_total"): 2.0}
    assert q(engine, "sum_over_time(req_total[1m])", 45) == {(): 7.0}
    # A series with nothing but markers in the range is not in the range vector at all.
    assert q(engine, "count_over_time(gone[1m])", 15) == {}
    assert q(engine, "absent_over_time(gone[1m])", 15) == {(): 1.0}
    # Subqueries evaluate instant selectors at each step (T+10s, T+25s, T+40s: steps are
    # aligned to the epoch and T is 5 s past a multiple of 15 s): T+40s sees the marker.
    assert q(engine, "count_over_time(req_total[45s:15s])", 45) == {(): 2.0}
