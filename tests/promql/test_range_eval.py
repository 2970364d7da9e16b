"""Range evaluation (``LocalEngine.range_session``) against instant evaluation: bit-identical.

The differential corpus's history (tests/rules/corpus.py: counters with resets, gauges
with NaNs, histograms, a jittered instance, one scraped half as often with a 20-minute
gap, one that stops 150 minutes in) is evaluated with every corpus expression (every
function, aggregation, operator, ``offset``, ``@``, subqueries) at steps that hit the
edges: on samples, between them, inside the gap, exactly the lookback after the stale
series' last sample and a millisecond later. Each step's result through a range
session must equal ``engine.instant`` at that step: same series, same order, same bits.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from mlinfra.promql.engine import LocalEngine
from mlinfra.promql.interface import QueryError, QueryResult
from mlinfra.promql.range_eval import merged_spans, selector_spans
from mlinfra.samples import Sample
from mlinfra.store import MetricsStore
from tests.rules.corpus import COMPLETE, CORPUS, MINUTE, STALE_AFTER, generate, numeric_series

START = 1_700_000_000_000
DURATION = 240 * MINUTE
LOOKBACK = 5 * MINUTE
EDGES = (
    START + STALE_AFTER + LOOKBACK,  # the stale instance's last sample is exactly the lookback ago
    START + STALE_AFTER + LOOKBACK + 1,  # a millisecond later: gone
    START + 110 * MINUTE,  # inside instance 2's gap
    START + 125 * MINUTE + 7_500,  # just after it, between samples
    START + DURATION + LOOKBACK,  # after the data: only lookbacks reach back
)
# Regular steps (on samples, 13-minute stride so they cross chunk boundaries unevenly) plus the edges.
STEPS_MS = sorted({*range(START + 30 * MINUTE, START + DURATION, 13 * MINUTE), *EDGES})
EXPRESSIONS = list(dict.fromkeys([*CORPUS, *COMPLETE]))


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalEngine]:
    history = [*generate(4, START, DURATION, 30_000), *numeric_series(START, DURATION, 30_000)]
    store = MetricsStore.from_url(f"sqlite:///{tmp_path_factory.mktemp('range') / 'store.db'}")
    store.write_samples(Sample(s.name, s.labels, v, t / 1000) for s in history for t, v in s.points)
    yield LocalEngine(store, lookback=LOOKBACK / 1000)
    store.engine.dispose()


def _bits(result: QueryResult | QueryError) -> object:
    """The result with every value as its IEEE bits (NaN payloads and -0.0 included), order kept."""
    if isinstance(result, QueryError):
        return ("error", str(result))
    if isinstance(result, float):
        return struct.pack("<d", result)
    return [(tuple(sorted(s.labels.items())), struct.pack("<d", s.value)) for s in result]


def _instant(engine: LocalEngine, expr: str, at_ms: int) -> object:
    try:
        return _bits(engine.instant(expr, at_ms / 1000))
    except QueryError as e:
        return _bits(e)


@pytest.mark.parametrize("chunk_minutes", [None, 20])
def test_every_step_equals_the_instant_evaluation(engine: LocalEngine, chunk_minutes: int | None) -> None:
    """20-minute chunks are shorter than the widest windows (1 h): chunk edges are crossed often."""
    chunk = None if chunk_minutes is None else chunk_minutes * 60.0
    problems = []
    with engine.range_session(
        EXPRESSIONS, start=STEPS_MS[0] / 1000, end=STEPS_MS[-1] / 1000, chunk=chunk
    ) as ranged:
        for at in STEPS_MS:
            with ranged.session(at / 1000) as session:
                for expr in EXPRESSIONS:
                    try:
                        got = _bits(session.instant(expr))
                    except QueryError as e:
                        got = _bits(e)
                    if got != _instant(engine, expr, at):
                        problems.append(f"{expr} at start+{(at - START) / MINUTE:g}m")
    assert not problems, f"{len(problems)} differences:\n" + "\n".join(problems[:20])


def test_the_edges_are_really_exercised(engine: LocalEngine) -> None:
    stale = 'req_total{instance="node-3"}'
    with engine.range_session([stale], start=EDGES[0] / 1000, end=EDGES[1] / 1000) as ranged:
        assert len(ranged.instant(stale, EDGES[0] / 1000)) == 3  # type: ignore[arg-type]
        assert ranged.instant(stale, EDGES[1] / 1000) == []
        assert ranged.instant('req_total{instance="node-2"}', EDGES[2] / 1000) == []  # in the gap


def test_windows_of_one_selector_are_read_together() -> None:
    """rate(x[5m]) and x offset 1h over [t1, t2]: one read of x from t1 - 1h - 5m to t2."""
    from mlinfra.promql.compile import compile_expr

    roots = [compile_expr(e).root for e in ("rate(x[5m])", "x offset 1h", "max_over_time(x[10m:1m])")]
    spans = [
        s for r in roots for s in selector_spans(r, 10_000_000, 20_000_000, (10_000_000, 20_000_000), 300_000)
    ]
    merged = merged_spans(spans)
    assert [(sel.name, lo, hi) for sel, lo, hi in merged] == [
        ("x", 10_000_000 - 3_600_000 - 300_000, 20_000_000),
    ]
    # A fixed @ far away stays a read of its own.
    at = compile_expr("x @ 100").root
    far = merged_spans([*spans, *selector_spans(at, 10_000_000, 20_000_000, (0, 0), 300_000)])
    assert [(lo, hi) for _, lo, hi in far] == [
        (100_000 - 300_000, 100_000),
        (10_000_000 - 3_900_000, 20_000_000),
    ]


def test_a_chunk_must_be_positive(engine: LocalEngine) -> None:
    with (
        pytest.raises(ValueError, match="chunk must be > 0 seconds"),
        engine.range_session(["x"], start=0, end=1, chunk=0),
    ):
        pass


def test_steps_inside_a_chunk_read_no_samples(tmp_path: Path) -> None:
    """The batching itself: after a chunk's read, its steps slice it (no sample query at all)."""
    store = MetricsStore.from_url(f"sqlite:///{tmp_path / 'store.db'}")
    store.write_samples(
        Sample("x", {"i": str(i)}, float(m % 7), START / 1000 + m * 60) for i in range(3) for m in range(240)
    )
    statements: list[str] = []

    @sa.event.listens_for(store.engine, "connect")
    def trace(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.set_trace_callback(statements.append)

    store.engine.dispose()  # new connections, traced
    engine = LocalEngine(store)
    exprs = ["sum(rate(x[5m]))", "x > 3", "max_over_time(x[10m:1m])", "x offset 30m"]
    steps = [START / 1000 + 3600 + k * 300 for k in range(24)]
    got = []
    with engine.range_session(exprs, start=steps[0], end=steps[-1]) as ranged:
        for i, t in enumerate(steps):
            with ranged.session(t) as session:
                got.append([session.instant(expr) for expr in exprs])
            if i == 0:
                after_first = sum("mlinfra_samples" in s for s in statements)
    assert after_first > 0
    assert sum("mlinfra_samples" in s for s in statements) == after_first
    assert got == [[engine.instant(expr, t) for expr in exprs] for t in steps]
    store.engine.dispose()
