"""The local engine's reads from the metrics store: series metadata and sample windows.

One :class:`EvaluationContext` per evaluation instant; every selector of every
expression evaluated at that instant reads through it, so each window of a metric
is read once::

    ctx = EvaluationContext(store, SeriesCatalog(), t_ms=1_800_000_000_000, lookback_ms=300_000)
    with ctx.connected():
        refs, points = ctx.points(selector, lo_ms, hi_ms)   # series and their (ts, value) lists

Reads are raw DB-API cursor calls (no per-row SQLAlchemy layer: this is the hot
path). A :class:`SeriesCatalog` caches series metadata across evaluations while
the metric's rows are unchanged.
"""

from __future__ import annotations

import copy
import json
import threading
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from mlinfra.exceptions import StoreError
from mlinfra.promql.interface import EvalError, QueryEvaluationError
from mlinfra.promql.parse import NAME, Labels, Points, Selector
from mlinfra.samples import is_stale_nan
from mlinfra.store import MetricsStore, samples_table, series_table
from mlinfra.store_values import from_db

__all__ = ["EvaluationContext", "Points", "SeriesCatalog", "SeriesRef"]

# A whole-metric read: (lo ms, hi ms, series id -> points).
Window = tuple[int, int, dict[int, Points]]
# A selector's read over a wide span: (lo ms, hi ms, series id -> points, series id -> timestamps).
Span = tuple[int, int, dict[int, Points], dict[int, list[int]]]

_CACHE_SIZE = 4096
_LABELS_CACHE_SIZE = 2_000_000
# Below this many selected series (and a quarter of the metric's series), samples
# are read by series id; above it, by metric name in one join (one query, no IN lists).
_BY_ID_LIMIT = 2000
_ID_CHUNK = 500


@dataclass(frozen=True, slots=True)
class SeriesRef:
    id: int
    labels: Labels
    labels_dict: dict[str, str]


def _by_labels(ref: SeriesRef) -> Labels:
    return ref.labels


def store_problem(e: BaseException) -> str:
    """The first line of a database error's message (the driver's, when it wraps one)."""
    orig = getattr(e, "orig", None) or e
    return (str(orig).strip().splitlines() or [type(orig).__name__])[0]


class SeriesCatalog:
    """Series metadata of a store, cached across evaluations while unchanged (one per engine).

    Safe to share between threads: cache writes hold a lock; a race only re-reads.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._labels: dict[tuple[str, str], tuple[Labels, dict[str, str]]] = {}
        self._series: dict[str | None, tuple[tuple[Any, ...], list[SeriesRef]]] = {}

    def series_of(self, ctx: EvaluationContext, name: str | None) -> list[SeriesRef]:
        """Series of ``name`` (all when None), read through ``ctx`` unless cached and current.

        The cache is checked against (count, highest id, total labels length) of the
        metric's rows: new series, deleted ones and a deleted id reused for other
        labels all change it, for one small aggregate query instead of a full read.
        """
        s = series_table.name
        where, params = ("WHERE name = ?", (name,)) if name is not None else ("", ())
        version = tuple(
            ctx.fetch(f"SELECT count(*), max(id), sum(length(labels)) FROM {s} {where}", params)[0]
        )
        cached = self._series.get(name)
        if cached is not None and cached[0] == version:
            return cached[1]
        if name is None:
            rows = ctx.fetch(f"SELECT id, name, labels FROM {s}", ())
            refs = [self._ref(sid, sname, text) for sid, sname, text in rows]
        else:
            rows = ctx.fetch(f"SELECT id, labels FROM {s} WHERE name = ?", (name,))
            refs = [self._ref(sid, name, text) for sid, text in rows]
        # In Prometheus's order (the index's: by label set), so that sums add up in the same order.
        refs.sort(key=_by_labels)
        with self._lock:
            if len(self._series) >= _CACHE_SIZE:
                self._series.clear()
            self._series[name] = (version, refs)
        return refs

    def _ref(self, sid: int, name: str, text: str) -> SeriesRef:
        key = (name, text)
        hit = self._labels.get(key)
        if hit is None:
            raw = json.loads(text)
            d = {str(k): str(v) for k, v in raw.items() if v != "" and k != NAME}
            d[NAME] = name
            hit = (tuple(sorted(d.items())), d)
            if len(self._labels) >= _LABELS_CACHE_SIZE:
                self._labels.clear()
            self._labels[key] = hit
        return SeriesRef(sid, hit[0], hit[1])


class EvaluationContext:
    """Per-instant state: the instant and every read made so far (shared by all selectors).

    :param store: where the series are.
    :param catalog: the series metadata cache (the engine's, shared across instants).
    :param t_ms: the evaluation instant, milliseconds since the epoch.
    :param lookback_ms: how far an instant selector looks back for the latest sample.
    """

    def __init__(
        self,
        store: MetricsStore,
        catalog: SeriesCatalog,
        t_ms: int,
        lookback_ms: int,
        subquery_step_ms: int = 60_000,
    ):
        self.store = store
        self.catalog = catalog
        self.t_ms = t_ms
        # The query's own instant: what ``@ start()`` and ``@ end()`` mean, inside subqueries too.
        self.query_ms = t_ms
        self.lookback_ms = lookback_ms
        self.subquery_step_ms = subquery_step_ms
        # Whole-selector reads over a wide span (a subquery's), sliced for each of its steps.
        self._spans: dict[tuple[Any, ...], list[Span]] = {}
        self._series: dict[str | None, list[SeriesRef]] = {}
        self._selected: dict[tuple[Any, ...], list[SeriesRef]] = {}
        self._index: dict[tuple[str | None, str], dict[str, list[SeriesRef]]] = {}
        self._reads: dict[tuple[Any, ...], dict[int, Points]] = {}
        self._windows: dict[str, list[Window]] = {}
        self._wanted: dict[str, list[tuple[int, int]]] = {}
        self._conn: sa.Connection | None = None
        # Series read with a staleness marker among their samples: range vectors drop the
        # markers of these (Prometheus: "stale samples are not returned in range vectors").
        self.stale_ids: set[int] = set()

    def at_time(self, t_ms: int) -> EvaluationContext:
        """This context at another instant (a subquery's step), sharing every read and the connection.

        ``query_ms`` stays the outer query's instant: ``@ start()``/``@ end()`` inside a
        subquery mean the query's time, not the step's (as in Prometheus).
        """
        other = copy.copy(self)
        other.t_ms = t_ms
        return other

    def step_context(self, t_ms: int) -> EvaluationContext:
        """A fresh context at ``t_ms`` that slices this one's prefetched spans instead of reading.

        For a range evaluation (:mod:`mlinfra.promql.range_eval`): the per-instant reads
        of a step are its own (dropped with it, so memory stays that of one step), while
        the series metadata, the wide spans and the connection are this context's.
        """
        other = copy.copy(self)
        other.t_ms = other.query_ms = t_ms
        other._spans = {k: list(v) for k, v in self._spans.items()}
        other._series = dict(self._series)
        other._selected = dict(self._selected)
        other._index = dict(self._index)
        other._reads = {}
        other._windows = {}
        other._wanted = {}
        return other

    # ------------------------------------------------------------ connection

    @contextmanager
    def connected(self) -> Iterator[None]:
        if self._conn is not None:
            yield
            return
        store = self.store
        try:
            store.create_schema()
            conn = store.engine.connect()
        except (StoreError, sa.exc.DBAPIError) as e:
            raise QueryEvaluationError(
                f"metrics store {store.description} is unavailable: {store_problem(e)}"
            ) from e
        self._conn = conn
        try:
            yield
        finally:
            self._conn = None
            conn.close()

    def fetch(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        """Rows as plain tuples from a raw DB-API cursor; ``?`` placeholders on every database."""
        conn = self._conn
        if conn is None:  # pragma: no cover - every evaluation runs inside connected()
            raise RuntimeError("evaluation outside a connection")
        if conn.dialect.paramstyle != "qmark":
            sql = sql.replace("?", "%s")  # psycopg2's positional style
        try:
            cur = conn.connection.cursor()
            try:
                cur.execute(sql, tuple(params))
                return list(cur.fetchall())
            finally:
                cur.close()
        except conn.dialect.loaded_dbapi.Error as e:
            raise EvalError(f"metrics store {self.store.description}: {store_problem(e)}") from e

    def invalidate(self, name: str | None = None) -> None:
        """Forget the reads of metric ``name`` (all when None), after writing to the store."""
        if name is None:
            self._series.clear()
            self._selected.clear()
            self._index.clear()
            self._reads.clear()
            self._windows.clear()
            self._spans.clear()
            return
        # Selectors without a metric name ({__name__=~"..."}) may cover ``name`` too.
        self._windows.pop(name, None)
        self._series.pop(name, None)
        self._series.pop(None, None)
        for key in [k for k in self._selected if k[0] in (name, None)]:
            del self._selected[key]
        for key in [k for k in self._index if k[0] in (name, None)]:
            del self._index[key]
        for key in [k for k in self._reads if k[0] in (name, None)]:
            del self._reads[key]
        for key in [k for k in self._spans if k[0] in (name, None)]:
            del self._spans[key]

    # ------------------------------------------------------------ series

    def series_named(self, name: str | None) -> list[SeriesRef]:
        """Series of metric ``name`` (all when None), from the catalog when still current."""
        refs = self._series.get(name)
        if refs is None:
            refs = self._series[name] = self.catalog.series_of(self, name)
        return refs

    def select(self, sel: Selector) -> list[SeriesRef]:
        key = (sel.name, sel.matchers_key)
        refs = self._selected.get(key)
        if refs is None:
            candidates = self.series_named(sel.name)
            tests = sel.tests
            if tests:
                # An equality matcher narrows the candidates to one bucket of the label
                # index before every matcher is tested: 500 selectors ``{model="m-i"}`` over
                # the same metric cost one pass over its series, not 500.
                equal = [(label, value) for op, label, value in sel.matchers if op == "=" and value]
                if equal:
                    candidates = min(
                        (self._label_index(sel.name, label).get(value, []) for label, value in equal), key=len
                    )
                refs = [r for r in candidates if all(test(r.labels_dict) for test in tests)]
            else:
                refs = candidates
            self._selected[key] = refs
        return refs

    def _label_index(self, name: str | None, label: str) -> dict[str, list[SeriesRef]]:
        """The series of metric ``name`` by their value of ``label`` (those without it left
        out), each bucket in the catalog's order; built once per evaluation session."""
        index = self._index.get((name, label))
        if index is None:
            index = {}
            for r in self.series_named(name):
                value = r.labels_dict.get(label)
                if value is not None:
                    index.setdefault(value, []).append(r)
            self._index[(name, label)] = index
        return index

    # ------------------------------------------------------------ samples

    def want(self, windows: Iterable[tuple[str, int, int]]) -> None:
        """Note the windows (metric, span ms or -1 for the lookback, offset ms) to come,
        so that overlapping ones become one read per metric."""
        for name, span, offset in windows:
            hi = self.t_ms - offset
            self._wanted.setdefault(name, []).append((hi - (span if span >= 0 else self.lookback_ms), hi))

    def points(self, sel: Selector, lo: int, hi: int) -> tuple[list[SeriesRef], dict[int, Points]]:
        """Selected series and their samples with ``lo <= ts <= hi`` (ms); each window read once."""
        refs = self.select(sel)
        if not refs:
            return refs, {}
        key = (sel.name, sel.matchers_key, lo, hi)
        got = self._reads.get(key)
        if got is not None:
            return refs, got
        for span_lo, span_hi, data, times in self._spans.get(key[:2], ()):
            if span_lo <= lo and hi <= span_hi:
                got = self._reads[key] = _slice_span(data, times, lo, hi)
                return refs, got
        everything = self.series_named(sel.name)
        # One read of the whole metric when the selectors announced for it (prepare/want)
        # are likely to select a quarter of its series between them (500 selectors of one
        # series each, as a scaling plan has: one read, not 500); by id otherwise.
        selectors = max(1, len(self._wanted.get(sel.name, ()))) if sel.name is not None else 1
        by_name = sel.name is not None and (
            len(refs) > _BY_ID_LIMIT
            or len(refs) * selectors * 4 > len(everything)
            or len(refs) == len(everything)
        )
        wide = self._covering(sel.name, lo, hi, read=by_name)
        if wide is None:
            got = self._read(None, [r.id for r in refs], lo, hi)
        elif wide[0] == lo and wide[1] == hi:
            got = wide[2]
        else:
            data = wide[2]
            got = {}
            for r in refs:
                pts = data.get(r.id)
                if pts:
                    part = _slice(pts, lo, hi)
                    if part:
                        got[r.id] = part
        self._reads[key] = got
        return refs, got

    def prefetch(self, sel: Selector, lo: int, hi: int) -> None:
        """Read ``sel`` over [lo, hi] once, so that narrower reads inside it (a subquery's steps) slice it."""
        refs, got = self.points(sel, lo, hi)
        if refs:
            # Each series' timestamps on their own, so that slicing bisects in C without a key.
            times = {sid: [p[0] for p in pts] for sid, pts in got.items()}
            self._spans.setdefault((sel.name, sel.matchers_key), []).append((lo, hi, got, times))

    def _covering(self, name: str | None, lo: int, hi: int, *, read: bool) -> Window | None:
        """A whole-metric read that covers [lo, hi]; with ``read``, make one (merging overlapping wants)."""
        if name is None:
            return None
        windows = self._windows.setdefault(name, [])
        for w in windows:
            if w[0] <= lo and hi <= w[1]:
                return w
        if not read:
            return None
        # Grow [lo, hi] by every window the evaluation will want that overlaps it.
        wanted = sorted(self._wanted.get(name, ()))
        grown = True
        while grown:
            grown = False
            for a, b in wanted:
                if a <= hi and b >= lo and (a < lo or b > hi):
                    lo, hi, grown = min(lo, a), max(hi, b), True
        w = (lo, hi, self._read(name, [], lo, hi))
        windows.append(w)
        return w

    def _read(self, name: str | None, ids: list[int], lo: int, hi: int) -> dict[int, Points]:
        x, s = samples_table.name, series_table.name
        if name is not None:
            batches = [
                self.fetch(
                    f"SELECT x.series_id, x.ts, x.value FROM {x} x JOIN {s} s ON s.id = x.series_id "
                    "WHERE s.name = ? AND x.ts >= ? AND x.ts <= ?",
                    (name, lo, hi),
                )
            ]
        else:
            ids = sorted(ids)
            batches = []
            for i in range(0, len(ids), _ID_CHUNK):
                chunk = ids[i : i + _ID_CHUNK]
                batches.append(
                    self.fetch(
                        f"SELECT series_id, ts, value FROM {x} "
                        f"WHERE series_id IN ({','.join('?' * len(chunk))}) AND ts >= ? AND ts <= ?",
                        (*chunk, lo, hi),
                    )
                )
        return _group_points(batches, self.stale_ids)


def _ts(point: tuple[int, float]) -> int:
    return point[0]


def _slice(pts: Points, lo: int, hi: int) -> Points:
    if pts[0][0] >= lo and pts[-1][0] <= hi:
        return pts
    return pts[bisect_left(pts, lo, key=_ts) : bisect_right(pts, hi, key=_ts)]


def _slice_span(data: dict[int, Points], times: dict[int, list[int]], lo: int, hi: int) -> dict[int, Points]:
    """Every series of a span, cut to [lo, hi] (ms); series left without a sample are left out."""
    out: dict[int, Points] = {}
    for sid, pts in data.items():
        ts = times[sid]
        i, j = bisect_left(ts, lo), bisect_right(ts, hi)
        if i < j:
            out[sid] = pts[i:j]
    return out


def _group_points(batches: list[list[tuple[Any, ...]]], stale_ids: set[int]) -> dict[int, Points]:
    """Rows (series id, ts, value) -> series id -> time-ordered points; ids with markers into ``stale_ids``.

    No ORDER BY in the SQL: SQLite's plan yields rows by series and time already,
    and sorting there costs a temporary B-tree. Order is checked here instead, and a
    series whose rows came out of order (another plan, another database) is sorted.
    """
    out: dict[int, Points] = {}
    disordered = False
    current = -1
    last_ts = 0
    pts: Points = []
    for rows in batches:
        for sid, ts, v in rows:
            if sid != current:
                current = sid
                got = out.get(sid)
                if got is None:
                    pts = out[sid] = []
                else:
                    pts = got
                    disordered = True
            elif ts < last_ts:
                disordered = True
            last_ts = ts
            if v.__class__ is not float or v != v:  # NULL, or a stored staleness marker
                v = from_db(v)
                if is_stale_nan(v):
                    stale_ids.add(sid)
            pts.append((ts, v))
    if disordered:
        for series_points in out.values():
            series_points.sort()
    return out
