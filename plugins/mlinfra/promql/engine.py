"""The local query engine: PromQL evaluated over the metrics store, with Prometheus's semantics.

Parsing is done by the ``promql-parser`` package; :mod:`mlinfra.promql.compile`
turns its syntax tree into a plan (refusing, at :meth:`LocalEngine.check` time,
everything it cannot evaluate; its docstring lists what it can) and the plan runs
against :class:`~mlinfra.store.MetricsStore`::

    engine = LocalEngine(store)
    engine.check('sum by (model) (rate(:tensorflow:serving:request_count[5m])) > 10')
    engine.instant('ml_gpu_temperature_celsius > 85', at=1_800_000_000.0)
    # [InstantSample(labels={'__name__': 'ml_gpu_temperature_celsius', 'gpu_id': '3'}, value=91.0)]

    # Several expressions at one instant share their reads (the rule set after a sweep):
    with engine.session(at=1_800_000_000.0) as session:
        for expr in exprs:
            session.instant(expr)
        session.invalidate("job:requests:rate5m")   # after writing a recording rule's output

    # The same expressions at many instants (a backtest): each selector read once per chunk
    # of the range, not once per step (mlinfra.promql.range_eval); results are bit-identical.
    with engine.range_session(exprs, start=t1, end=t2) as ranged:
        for t in times:
            with ranged.session(t) as session:
                session.instant(exprs[0])
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import ExitStack, contextmanager

from mlinfra.gc_pause import collection_paused
from mlinfra.promql.batching import batches
from mlinfra.promql.compile import Plan, compile_expr
from mlinfra.promql.interface import EvalError, InstantSample, QueryError, QueryEvaluationError, QueryResult
from mlinfra.promql.plan import Node
from mlinfra.promql.range_eval import chunk_length, prefetch_chunk
from mlinfra.promql.storage import EvaluationContext, SeriesCatalog
from mlinfra.store import MetricsStore

__all__ = ["DEFAULT_LOOKBACK", "EvaluationSession", "LocalEngine", "RangeSession"]

DEFAULT_LOOKBACK = 300.0  # seconds: Prometheus's --query.lookback-delta default
_PLAN_CACHE_SIZE = 4096


class LocalEngine:
    """PromQL over a :class:`MetricsStore`, with Prometheus 2.42's semantics (see the module doc).

    :param store: where the series are.
    :param lookback: seconds an instant selector looks back for the latest sample
        (Prometheus's ``--query.lookback-delta``, 5 minutes).
    :param subquery_step: seconds between a subquery's steps when it names none
        (``x[1h:]``): Prometheus uses its ``global.evaluation_interval``, 1 minute by default.
    """

    name = "local"

    def __init__(
        self, store: MetricsStore, *, lookback: float = DEFAULT_LOOKBACK, subquery_step: float = 60.0
    ):
        if lookback <= 0:
            raise ValueError(f"lookback must be > 0 seconds, got {lookback!r}")
        if subquery_step <= 0:
            raise ValueError(f"subquery_step must be > 0 seconds, got {subquery_step!r}")
        self.subquery_step_ms = round(subquery_step * 1000)
        self.store = store
        self.lookback_ms = round(lookback * 1000)
        self._plans: dict[str, Plan | QueryError] = {}
        self._catalog = SeriesCatalog()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"LocalEngine({self.store.description})"

    # ------------------------------------------------------------ compile

    def _plan(self, expr: str) -> Plan:
        cached = self._plans.get(expr)
        if cached is None:
            try:
                cached = compile_expr(expr)
            except QueryError as e:
                cached = e
            with self._lock:
                if len(self._plans) >= _PLAN_CACHE_SIZE:
                    self._plans.clear()
                self._plans[expr] = cached
        if isinstance(cached, QueryError):
            raise type(cached)(str(cached))
        return cached

    def check(self, expr: str) -> None:
        """Raise :class:`QuerySyntaxError` or :class:`UnsupportedExpression` unless ``expr`` runs here."""
        self._plan(expr)

    # ------------------------------------------------------------ evaluate

    def instant(self, expr: str, at: float) -> QueryResult:
        """Evaluate ``expr`` at ``at`` (seconds since the epoch): a vector, or a float for scalars."""
        with self.session(at) as session:
            return session.instant(expr)

    def instant_many(self, exprs: Sequence[str], at: float) -> list[QueryResult | QueryError]:
        """Evaluate several expressions at one instant, sharing reads; errors are returned in place.

        Families of expressions that differ only in one label's value (one per model, as
        a scaling plan has) are evaluated as one grouped expression
        (:mod:`mlinfra.promql.batching`), with the same answers; a family whose grouped
        expression fails is evaluated member by member, so errors stay in place.
        """
        out: list[QueryResult | QueryError] = []
        family = batches(exprs)
        grouped: dict[str, dict[str, list[InstantSample]] | None] = {}
        with self.session(at) as session:
            # The members of a family are not planned: their family's expression reads for them.
            session.prepare(
                dict.fromkeys([e for e in exprs if e not in family] + [b.expr for b in family.values()])
            )
            for expr in exprs:
                batch = family.get(expr)
                if batch is not None:
                    if batch.expr not in grouped:
                        grouped[batch.expr] = _by_label(session, batch.expr, batch.label)
                    groups = grouped[batch.expr]
                    if groups is not None:
                        out.append(list(groups.get(batch.value, [])))
                        continue
                try:
                    out.append(session.instant(expr))
                except QueryError as e:
                    out.append(e)
        return out

    @contextmanager
    def session(self, at: float) -> Iterator[EvaluationSession]:
        """Evaluations at one instant that share series and sample reads (one connection).

        Reads are cached for the session's life: after writing to the store (a
        recording rule's output), call :meth:`EvaluationSession.invalidate`.
        """
        ctx = EvaluationContext(
            self.store, self._catalog, round(float(at) * 1000), self.lookback_ms, self.subquery_step_ms
        )
        with collection_paused(), ctx.connected():
            yield EvaluationSession(self, ctx)

    @contextmanager
    def range_session(
        self, exprs: Iterable[str], *, start: float, end: float, chunk: float | None = None
    ) -> Iterator[RangeSession]:
        """``exprs`` at many instants of ``[start, end]``, each selector read once per chunk of it.

        ``chunk``: seconds of steps served by one read (default: 6 hours, or 4 times the
        widest window the expressions read); it bounds the memory, never the results.
        """
        ranged = RangeSession(self, exprs, start, end, chunk)
        with collection_paused():
            try:
                yield ranged
            finally:
                ranged.close()


def _by_label(session: EvaluationSession, expr: str, label: str) -> dict[str, list[InstantSample]] | None:
    """A grouped expression's samples by their ``label``, each as its member's answer (no labels)."""
    try:
        result = session.instant(expr)
    except QueryError:
        return None
    if not isinstance(result, list):  # pragma: no cover - an aggregation is always a vector
        return None
    return {s.labels.get(label, ""): [InstantSample({}, s.value)] for s in result}


class EvaluationSession:
    """Expressions evaluated at one instant with shared reads; made by :meth:`LocalEngine.session`."""

    def __init__(self, engine: LocalEngine, ctx: EvaluationContext):
        self._engine = engine
        self._ctx = ctx

    @property
    def at(self) -> float:
        return self._ctx.t_ms / 1000

    def prepare(self, exprs: Iterable[str]) -> None:
        """Announce the expressions to come, so that their windows of one metric are read together.

        Optional (results are the same without it); expressions that do not compile
        are skipped here and raise from :meth:`instant`.
        """
        for expr in exprs:
            try:
                self._ctx.want(self._engine._plan(expr).windows)
            except QueryError:
                continue

    def instant(self, expr: str) -> QueryResult:
        plan = self._engine._plan(expr)
        self._ctx.want(plan.windows)
        try:
            with self._ctx.connected():
                value = plan.root.eval(self._ctx)
        except EvalError as e:
            raise QueryEvaluationError(f"{expr!r} at {self.at:.3f}: {e}") from None
        if isinstance(value, float):
            return value
        return [InstantSample(dict(labels), v) for labels, v in value]

    def invalidate(self, metric_name: str | None = None) -> None:
        """Forget cached reads of ``metric_name`` (all of them when ``None``)."""
        self._ctx.invalidate(metric_name)


class RangeSession:
    """Announced expressions over ``[start, end]``; made by :meth:`LocalEngine.range_session`.

    ``session(t)`` gives an :class:`EvaluationSession` at ``t`` whose reads slice what
    the chunk holding ``t`` read once for all its steps (see
    :mod:`mlinfra.promql.range_eval`). Steps should come in ascending order (one
    before the current chunk reads a new chunk from there: correct, only slower).
    Reads are of the store as it is when each chunk starts: after writing to it,
    call :meth:`invalidate`. It also answers ``instant`` and ``check``, so it stands
    where a :class:`~mlinfra.promql.interface.QueryEngine` is expected.
    """

    def __init__(
        self, engine: LocalEngine, exprs: Iterable[str], start: float, end: float, chunk: float | None = None
    ):
        self.engine = engine
        self.name = engine.name
        self.end_ms = round(float(end) * 1000)
        self._roots: list[Node] = []
        for expr in exprs:
            try:
                self._roots.append(engine._plan(expr).root)
            except QueryError:
                continue  # raised again, with its message, when a step evaluates it
        if chunk is not None and chunk <= 0:
            raise ValueError(f"chunk must be > 0 seconds, got {chunk!r}")
        self.chunk_ms = (
            chunk_length(self._roots, engine.lookback_ms) if chunk is None else round(chunk * 1000)
        )
        self._stack = ExitStack()
        self._chunk: tuple[int, int, EvaluationContext] | None = None

    def check(self, expr: str) -> None:
        self.engine.check(expr)

    def instant(self, expr: str, at: float) -> QueryResult:
        with self.session(at) as session:
            return session.instant(expr)

    @contextmanager
    def session(self, at: float) -> Iterator[EvaluationSession]:
        t_ms = round(float(at) * 1000)
        yield EvaluationSession(self.engine, self._chunk_at(t_ms).step_context(t_ms))

    def invalidate(self, metric_name: str | None = None) -> None:
        """Forget the chunk's reads of ``metric_name`` (all when None): later steps read it afresh."""
        if self._chunk is not None:
            self._chunk[2].invalidate(metric_name)

    def close(self) -> None:
        self._chunk = None
        self._stack.close()

    def _chunk_at(self, t_ms: int) -> EvaluationContext:
        chunk = self._chunk
        if chunk is not None and chunk[0] <= t_ms <= chunk[1]:
            return chunk[2]
        self.close()
        engine = self.engine
        lo, hi = t_ms, max(t_ms, min(t_ms + self.chunk_ms, self.end_ms))
        ctx = EvaluationContext(
            engine.store, engine._catalog, lo, engine.lookback_ms, engine.subquery_step_ms
        )
        self._stack = ExitStack()
        self._stack.enter_context(ctx.connected())
        prefetch_chunk(ctx, self._roots, lo, hi)
        self._chunk = (lo, hi, ctx)
        return ctx
