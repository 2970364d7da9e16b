"""The local engine against a real Prometheus 2.42 on the same history: same labels, same values.

tests/rules/corpus.py generates ~100 series over 4 hours (15 s scrapes): counters
with resets, gauges with NaNs, histograms, a jittered instance, one with a gap,
one that goes stale. They are written to the store and, through
``promtool tsdb create-blocks-from openmetrics``, into a Prometheus TSDB. Every
corpus expression is evaluated at instants chosen to hit the edges (on a sample,
between samples, inside the gap, exactly 5 minutes after the stale series' last
sample and a millisecond later, after the end of the data): both engines must
return the same label sets with values equal within 1e-9 (NaN equal to NaN), or
both must fail.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest

from mlinfra.promql.engine import LocalEngine
from mlinfra.promql.interface import QueryError, QueryResult
from mlinfra.rules.prometheus_engine import PrometheusEngine
from mlinfra.samples import Sample
from mlinfra.store import MetricsStore
from tests.rules.corpus import (
    COMPLETE,
    CORPUS,
    MINUTE,
    STALE_AFTER,
    generate,
    numeric_series,
    shipped_rule_exprs,
)
from tests.support.prometheus_tsdb import prometheus_with_history

pytestmark = pytest.mark.integration

START = 1_700_000_000_000
DURATION = 240 * MINUTE
INSTANTS_MS = (
    START + 60 * MINUTE,  # on every regular series' sample; range edges on samples too
    START + 60 * MINUTE + 7_500,  # between samples
    START + 110 * MINUTE,  # inside instance 2's gap (its last sample is 10 minutes old)
    START + 125 * MINUTE,  # just after the gap: its ranges see few samples
    START + STALE_AFTER + 5 * MINUTE,  # exactly the lookback after the stale series' last sample
    START + STALE_AFTER + 5 * MINUTE + 1,  # a millisecond later: gone
    START + 200 * MINUTE + 123,
    START + DURATION + 5 * MINUTE,  # after the end of the data: only lookbacks reach back
)
REL = 0.0  # bit-identical (issue 14): only NaN = NaN is special


@pytest.fixture(scope="module")
def engines(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalEngine, PrometheusEngine]]:
    history = [*generate(4, START, DURATION, 15_000), *numeric_series(START, DURATION, 15_000)]
    store = MetricsStore.from_url(f"sqlite:///{tmp_path_factory.mktemp('differential') / 'store.db'}")
    store.write_samples(Sample(s.name, s.labels, v, t / 1000) for s in history for t, v in s.points)
    with prometheus_with_history(history) as prom:
        remote = PrometheusEngine(prom.url, timeout=30)
        yield LocalEngine(store), remote
        remote.close()
    store.engine.dispose()


def _normalise(result: QueryResult) -> float | dict[tuple[tuple[str, str], ...], float]:
    if isinstance(result, float):
        return result
    out = {tuple(sorted(s.labels.items())): s.value for s in result}
    assert len(out) == len(result), "duplicate label sets in one result"
    return out


def _same(a: float, b: float) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return a == b or abs(a - b) <= REL * max(abs(a), abs(b))


def _evaluate(engine: LocalEngine | PrometheusEngine, expr: str, at_ms: int) -> object:
    try:
        return _normalise(engine.instant(expr, at_ms / 1000))
    except QueryError as e:
        return e


def test_corpus_is_large_enough() -> None:
    assert len(set(CORPUS)) == len(CORPUS) >= 60


# The shipped rules (include/alert_rules) run on the same data: the generator emits their metrics.
EXPRESSIONS = list(dict.fromkeys([*CORPUS, *shipped_rule_exprs(), *COMPLETE]))


@pytest.mark.parametrize("expr", EXPRESSIONS)
def test_local_engine_agrees_with_prometheus(
    engines: tuple[LocalEngine, PrometheusEngine], expr: str
) -> None:
    local, remote = engines
    local.check(expr)  # the corpus is all within what the local engine supports
    problems = []
    for at in INSTANTS_MS:
        mine, theirs = _evaluate(local, expr, at), _evaluate(remote, expr, at)
        when = f"t=start+{(at - START) / 60_000:g}m"
        if isinstance(mine, Exception) or isinstance(theirs, Exception):
            if not (isinstance(mine, Exception) and isinstance(theirs, Exception)):
                problems.append(f"{when}: local {mine!r} vs prometheus {theirs!r}")
            continue
        if isinstance(mine, float) or isinstance(theirs, float):
            if not (isinstance(mine, float) and isinstance(theirs, float) and _same(mine, theirs)):
                problems.append(f"{when}: local {mine!r} vs prometheus {theirs!r}")
            continue
        assert isinstance(mine, dict)
        assert isinstance(theirs, dict)
        if mine.keys() != theirs.keys():
            problems.append(
                f"{when}: label sets differ: only local {sorted(mine.keys() - theirs.keys())}, "
                f"only prometheus {sorted(theirs.keys() - mine.keys())}"
            )
        for labels in mine.keys() & theirs.keys():
            if not _same(mine[labels], theirs[labels]):
                problems.append(
                    f"{when}: {dict(labels)}: local {mine[labels]!r} vs prometheus {theirs[labels]!r}"
                )
    assert not problems, f"{expr}:\n" + "\n".join(problems)


def test_the_edges_are_really_exercised(engines: tuple[LocalEngine, PrometheusEngine]) -> None:
    """The instants above mean something only if the data has these properties."""
    _, remote = engines
    stale = 'req_total{instance="node-3"}'
    assert len(remote.instant(stale, INSTANTS_MS[4] / 1000)) == 3  # type: ignore[arg-type]
    assert remote.instant(stale, INSTANTS_MS[5] / 1000) == []
    assert remote.instant('req_total{instance="node-2"}', INSTANTS_MS[2] / 1000) == []  # in the gap
    history = list(generate(4, START, DURATION, 15_000))
    counters = [s.points for s in history if s.name.endswith("_total")]
    assert any(b[1] < a[1] for pts in counters for a, b in zip(pts, pts[1:], strict=False)), (
        "no counter reset"
    )
    assert any(math.isnan(v) for s in history if s.name == "nan_gauge" for _, v in s.points)
    assert any(t % 15_000 for s in history for t, _ in s.points), "no jittered timestamps"
