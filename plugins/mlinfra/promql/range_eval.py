"""Range evaluation: the same expressions at many instants, each selector read once for the range.

What Prometheus's range queries do (``/api/v1/query_range``: one read of every
selector for ``[start - lookback, end]``, then a step through it), for a caller that
needs the instants one at a time (a backtest runs the alert state machine between
steps)::

    with engine.range_session(exprs, start=t1, end=t2) as ranged:
        for t in times:                      # ascending, within [t1, t2]
            with ranged.session(t) as session:
                session.instant(exprs[0])    # bit-identical to engine.instant(exprs[0], t)

Before the first step of each chunk of the range, every selector of every announced
expression (inside subqueries and with ``offset`` and ``@`` too) is read once for
the whole chunk plus its lookback or range; a step then slices those reads. Chunks
bound the memory to a few hours of samples at a time, whatever the range. An
expression that was not announced (a template's ``query``) still works: its reads
are the step's own, as in :meth:`LocalEngine.session`.

:class:`~mlinfra.promql.engine.RangeSession` (made by ``LocalEngine.range_session``)
also answers ``instant``/``session``/``check`` at any instant, so it stands where a
:class:`~mlinfra.promql.interface.QueryEngine` is expected; this module holds what it
reads.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING

from mlinfra.promql.parse import Selector
from mlinfra.promql.plan import InstantSelector, Node, SelectorRange, Subquery

if TYPE_CHECKING:
    from mlinfra.promql.storage import EvaluationContext

__all__ = ["CHUNK_MS", "chunk_length", "merged_spans", "prefetch_chunk", "selector_spans"]

# Steps are grouped into chunks of at least this long (and at least 4 times the widest
# window, so that re-reading a window's overlap costs at most a quarter more).
CHUNK_MS = 6 * 3_600_000

# (selector, lo ms, hi ms): what a selector reads for evaluation instants in a range.
SelectorSpan = tuple[Selector, int, int]


def selector_spans(
    node: Node, lo: int, hi: int, query: tuple[int, int], lookback_ms: int
) -> Iterator[SelectorSpan]:
    """Every sample window a node reads when evaluated at each instant of ``[lo, hi]`` (ms).

    ``query`` is the range of the queries' own instants (what ``@ start()`` means).
    Subqueries widen the range of their inner nodes by their own range and offset.
    """
    if isinstance(node, InstantSelector | SelectorRange):
        sel = node.sel
        span = node.range_ms if isinstance(node, SelectorRange) else lookback_ms
        if sel.at is None:
            a, b = lo, hi
        elif sel.at.fixed_ms is None:
            a, b = query
        else:
            a = b = sel.at.fixed_ms
        yield sel, a - sel.offset_ms - span, b - sel.offset_ms
        return
    if isinstance(node, Subquery):
        if node.at is None:
            a, b = lo, hi
        elif node.at.fixed_ms is None:
            a, b = query
        else:
            a = b = node.at.fixed_ms
        yield from selector_spans(
            node.inner, a - node.offset_ms - node.range_ms, b - node.offset_ms, query, lookback_ms
        )
        return
    for child in node.children():
        yield from selector_spans(child, lo, hi, query, lookback_ms)


def merged_spans(spans: Iterable[SelectorSpan]) -> list[SelectorSpan]:
    """Overlapping spans of one selector (same name and matchers) merged into one read."""
    by_key: dict[tuple[object, ...], tuple[Selector, list[tuple[int, int]]]] = {}
    for sel, lo, hi in spans:
        by_key.setdefault((sel.name, sel.matchers_key), (sel, []))[1].append((lo, hi))
    out: list[SelectorSpan] = []
    for sel, intervals in by_key.values():
        intervals.sort()
        cur_lo, cur_hi = intervals[0]
        for lo, hi in intervals[1:]:
            if lo <= cur_hi:
                cur_hi = max(cur_hi, hi)
            else:
                out.append((sel, cur_lo, cur_hi))
                cur_lo, cur_hi = lo, hi
        out.append((sel, cur_lo, cur_hi))
    return out


def chunk_length(roots: Sequence[Node], lookback_ms: int) -> int:
    """How long (ms) a chunk of steps is for these plans: CHUNK_MS, or 4 times the widest window."""
    widest = max(
        (hi - lo for root in roots for _, lo, hi in selector_spans(root, 0, 0, (0, 0), lookback_ms)),
        default=0,
    )
    return max(CHUNK_MS, 4 * widest)


def prefetch_chunk(ctx: EvaluationContext, roots: Sequence[Node], lo: int, hi: int) -> None:
    """Read, through ``ctx``, every window the plans read at the instants of ``[lo, hi]`` (ms)."""
    spans = (s for root in roots for s in selector_spans(root, lo, hi, (lo, hi), ctx.lookback_ms))
    for sel, a, b in merged_spans(spans):
        ctx.prefetch(sel, a, b)
