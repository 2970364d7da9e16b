"""The local query engine: PromQL evaluated over the metrics store, with Prometheus's semantics.

Parsing is done by the ``promql-parser`` package; this module compiles its syntax
tree into a small plan (refusing, at :meth:`LocalEngine.check` time, everything it
cannot evaluate) and runs the plan against :class:`~mlinfra.store.MetricsStore`::

    engine = LocalEngine(store)
    engine.check('sum by (model) (rate(:tensorflow:serving:request_count[5m])) > 10')
    engine.instant('ml_gpu_temperature_celsius > 85', at=1_800_000_000.0)
    # [InstantSample(labels={'__name__': 'ml_gpu_temperature_celsius', 'gpu_id': '3'}, value=91.0)]

    # Several expressions at one instant share their reads (the rule set after a sweep):
    with engine.session(at=1_800_000_000.0) as session:
        for expr in exprs:
            session.instant(expr)
        session.invalidate("job:requests:rate5m")   # after writing a recording rule's output

What it evaluates, with the semantics of Prometheus 2.42 (the target the
differential tests compare against):

* instant selectors (latest sample in the 5-minute lookback window ``[t-5m, t]``)
  and range selectors (every sample in ``[t-range, t]``), the four matcher types,
  ``offset``;
* number literals, parentheses, unary minus;
* arithmetic (``+ - * / % ^``) and comparison operators (with ``bool``), between
  scalars and vectors, with one-to-one vector matching (``on``/``ignoring``), and
  the set operators ``and``/``or``/``unless``;
* aggregations ``sum avg min max count`` with ``by``/``without``;
* functions ``rate irate increase delta abs clamp_min clamp_max absent
  avg_over_time min_over_time max_over_time sum_over_time count_over_time
  histogram_quantile``.

Anything else raises :class:`UnsupportedExpression` from :meth:`LocalEngine.check`
(``unsupported by the local engine: <construct>; use the prometheus engine``), so a
rule file using it is refused when it loads, never during evaluation.
"""

from __future__ import annotations

import gc
import json
import math
import re
import threading
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import promql_parser as pp
import sqlalchemy as sa

from mlinfra.exceptions import StoreError
from mlinfra.label_regex import LabelRegexError, compile_label_regex
from mlinfra.rules.engine import (
    InstantSample,
    QueryError,
    QueryEvaluationError,
    QueryResult,
    QuerySyntaxError,
    UnsupportedExpression,
)
from mlinfra.rules.quantile import bucket_quantile
from mlinfra.store import MetricsStore, samples_table, series_table

__all__ = ["DEFAULT_LOOKBACK", "EvaluationSession", "LocalEngine"]

DEFAULT_LOOKBACK = 300.0  # seconds: Prometheus's --query.lookback-delta default

# A label set as Prometheus keeps it: sorted (name, value) pairs, no empty values.
Labels = tuple[tuple[str, str], ...]
Vector = list[tuple[Labels, float]]
Points = list[tuple[int, float]]  # (timestamp ms, value), time-ordered
Value = Vector | float

NAME = "__name__"
_NAN = math.nan
_INF = math.inf
_PLAN_CACHE_SIZE = 4096
_LABELS_CACHE_SIZE = 2_000_000
# Below this many selected series (and a quarter of the metric's series), samples
# are read by series id; above it, by metric name in one join (one query, no IN lists).
_BY_ID_LIMIT = 2000
_ID_CHUNK = 500


def _unsupported(construct: str) -> UnsupportedExpression:
    return UnsupportedExpression(f"unsupported by the local engine: {construct}; use the prometheus engine")


class _EvalError(Exception):
    """An evaluation-time error; re-raised as QueryEvaluationError naming the expression."""


# ====================================================================== Go float semantics
# PromQL runs on Go's float64 operations, which never raise; Python's do.


def _div(a: float, b: float) -> float:
    try:
        return a / b
    except ZeroDivisionError:
        if a == 0 or math.isnan(a):
            return _NAN
        return math.copysign(_INF, a) * math.copysign(1.0, b)


def _mod(a: float, b: float) -> float:
    try:
        return math.fmod(a, b)
    except ValueError:  # fmod(inf, y), fmod(x, 0): NaN in Go
        return _NAN


def _is_odd_int(y: float) -> bool:
    return math.isfinite(y) and y == math.floor(y) and math.fmod(y, 2.0) != 0


def _pow(a: float, b: float) -> float:
    try:
        return math.pow(a, b)
    except ValueError:
        if a == 0 and b < 0:  # Go: Pow(±0, y<0) = ±Inf
            return math.copysign(_INF, a) if _is_odd_int(b) else _INF
        return _NAN
    except OverflowError:
        return -_INF if a < 0 and _is_odd_int(b) else _INF


def _go_max(x: float, y: float) -> float:
    if x == _INF or y == _INF:
        return _INF
    if math.isnan(x) or math.isnan(y):
        return _NAN
    if x == 0 and x == y:
        return y if math.copysign(1.0, x) < 0 else x
    return x if x > y else y


def _go_min(x: float, y: float) -> float:
    if x == -_INF or y == -_INF:
        return -_INF
    if math.isnan(x) or math.isnan(y):
        return _NAN
    if x == 0 and x == y:
        return x if math.copysign(1.0, x) < 0 else y
    return x if x < y else y


_GO_FLOAT = re.compile(
    r"[+-]?(?:inf|infinity|nan|\d+\.?\d*(?:e[+-]?\d+)?|\.\d+(?:e[+-]?\d+)?)", re.IGNORECASE
)


def _parse_le(text: str | None) -> float | None:
    """Go's strconv.ParseFloat for the ``le`` label (no whitespace, no underscores); None if invalid."""
    if text is None:
        return None
    if _GO_FLOAT.fullmatch(text):
        value = float(text)
        return value if not math.isinf(value) or "inf" in text.lower() else None  # Go: out of range
    try:
        return float.fromhex(text) if text.lower().lstrip("+-").startswith("0x") and "_" not in text else None
    except ValueError:
        return None


_ARITH: dict[str, Callable[[float, float], float]] = {
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "*": lambda a, b: a * b,
    "/": _div,
    "%": _mod,
    "^": _pow,
}
_COMPARE: dict[str, Callable[[float, float], bool]] = {
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    ">": lambda a, b: a > b,
    "<": lambda a, b: a < b,
    ">=": lambda a, b: a >= b,
    "<=": lambda a, b: a <= b,
}
_SET_OPS = frozenset({"and", "or", "unless"})


# ====================================================================== label helpers


def _drop_name(labels: Labels) -> Labels:
    for name, _ in labels:
        if name == NAME:
            return tuple(p for p in labels if p[0] != NAME)
    return labels


def _labels_str(labels: Labels) -> str:
    """Prometheus's ``Labels.String()``: ``{__name__="x", job="api"}``."""
    return "{" + ", ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in labels) + "}"


def _check_unique(vec: Vector) -> Vector:
    if len({labels for labels, _ in vec}) != len(vec):
        raise _EvalError("vector cannot contain metrics with the same labelset")
    return vec


def _signature(names: frozenset[str], on: bool) -> Callable[[Labels], Labels]:
    """Prometheus's matching signature: the ``on`` labels, or all but ``ignoring`` ones and the name."""
    if on:
        return lambda labels: tuple(p for p in labels if p[0] in names)
    excluded = names | {NAME}
    return lambda labels: tuple(p for p in labels if p[0] not in excluded)


# ====================================================================== evaluation context


@dataclass(frozen=True, slots=True)
class _SeriesRef:
    id: int
    labels: Labels
    labels_dict: dict[str, str]


class _Context:
    """Per-evaluation state: the instant and every read made so far (shared by all selectors)."""

    def __init__(self, engine: LocalEngine, t_ms: int):
        self.engine = engine
        self.t_ms = t_ms
        self._series: dict[str | None, list[_SeriesRef]] = {}
        self._selected: dict[tuple[Any, ...], list[_SeriesRef]] = {}
        self._reads: dict[tuple[Any, ...], dict[int, Points]] = {}
        self._windows: dict[str, list[_Window]] = {}  # whole-metric reads: (lo, hi, points)
        self._wanted: dict[str, list[tuple[int, int]]] = {}
        self._conn: sa.Connection | None = None

    # ------------------------------------------------------------ connection

    @contextmanager
    def connected(self) -> Iterator[None]:
        if self._conn is not None:
            yield
            return
        store = self.engine.store
        try:
            store.create_schema()
            conn = store.engine.connect()
        except (StoreError, sa.exc.DBAPIError) as e:
            raise QueryEvaluationError(
                f"metrics store {store.description} is unavailable: {_reason(e)}"
            ) from e
        self._conn = conn
        try:
            yield
        finally:
            self._conn = None
            conn.close()

    def _fetch(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        """Rows as plain tuples from a raw DB-API cursor (no per-row SQLAlchemy layer: it is the hot path)."""
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
            raise _EvalError(f"metrics store {self.engine.store.description}: {_reason(e)}") from e

    def invalidate(self, name: str | None = None) -> None:
        if name is None:
            self._series.clear()
            self._selected.clear()
            self._reads.clear()
            self._windows.clear()
            return
        # Selectors without a metric name ({__name__=~"..."}) may cover ``name`` too.
        self._windows.pop(name, None)
        self._series.pop(name, None)
        self._series.pop(None, None)
        for key in [k for k in self._selected if k[0] in (name, None)]:
            del self._selected[key]
        for key in [k for k in self._reads if k[0] in (name, None)]:
            del self._reads[key]

    # ------------------------------------------------------------ series

    def series_named(self, name: str | None) -> list[_SeriesRef]:
        """Series of metric ``name`` (all when None), from the engine's cache when still current."""
        refs = self._series.get(name)
        if refs is None:
            refs = self._series[name] = self.engine._series_of(self, name)
        return refs

    def select(self, sel: _Selector) -> list[_SeriesRef]:
        key = (sel.name, sel.matchers_key)
        refs = self._selected.get(key)
        if refs is None:
            candidates = self.series_named(sel.name)
            tests = sel.tests
            refs = (
                [r for r in candidates if all(test(r.labels_dict) for test in tests)] if tests else candidates
            )
            self._selected[key] = refs
        return refs

    # ------------------------------------------------------------ samples

    def want(self, plan: _Plan) -> None:
        """Note the windows ``plan`` will read, so that overlapping ones become one read per metric."""
        for name, span, offset in plan.windows:
            hi = self.t_ms - offset
            self._wanted.setdefault(name, []).append(
                (hi - (span if span >= 0 else self.engine.lookback_ms), hi)
            )

    def points(self, sel: _Selector, lo: int, hi: int) -> tuple[list[_SeriesRef], dict[int, Points]]:
        """Selected series and their samples with ``lo <= ts <= hi`` (ms); each window read once."""
        refs = self.select(sel)
        if not refs:
            return refs, {}
        key = (sel.name, sel.matchers_key, lo, hi)
        got = self._reads.get(key)
        if got is not None:
            return refs, got
        everything = self.series_named(sel.name)
        by_name = sel.name is not None and (
            len(refs) > _BY_ID_LIMIT or len(refs) * 4 > len(everything) or len(refs) == len(everything)
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

    def _covering(self, name: str | None, lo: int, hi: int, *, read: bool) -> _Window | None:
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
                self._fetch(
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
                    self._fetch(
                        f"SELECT series_id, ts, value FROM {x} "
                        f"WHERE series_id IN ({','.join('?' * len(chunk))}) AND ts >= ? AND ts <= ?",
                        (*chunk, lo, hi),
                    )
                )
        return _group_points(batches)


_Window = tuple[int, int, dict[int, Points]]


def _ts(point: tuple[int, float]) -> int:
    return point[0]


def _slice(pts: Points, lo: int, hi: int) -> Points:
    if pts[0][0] >= lo and pts[-1][0] <= hi:
        return pts
    return pts[bisect_left(pts, lo, key=_ts) : bisect_right(pts, hi, key=_ts)]


def _reason(e: BaseException) -> str:
    orig = getattr(e, "orig", None) or e
    return (str(orig).strip().splitlines() or [type(orig).__name__])[0]


def _group_points(batches: list[list[tuple[Any, ...]]]) -> dict[int, Points]:
    """Rows (series id, ts, value) -> series id -> time-ordered points.

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
            pts.append((ts, _NAN if v is None else v))
    if disordered:
        for series_points in out.values():
            series_points.sort()
    return out


# ====================================================================== plan nodes


class _Node:
    is_scalar = False

    def eval(self, ctx: _Context) -> Value:
        raise NotImplementedError

    def vector(self, ctx: _Context) -> Vector:
        out = self.eval(ctx)
        if isinstance(out, float):  # pragma: no cover - the compiler checks the types
            raise _EvalError("expected an instant vector, got a scalar")
        return out

    def scalar(self, ctx: _Context) -> float:
        out = self.eval(ctx)
        if not isinstance(out, float):  # pragma: no cover - the compiler checks the types
            raise _EvalError("expected a scalar, got an instant vector")
        return out


class _Number(_Node):
    is_scalar = True

    def __init__(self, value: float):
        self.value = float(value)

    def eval(self, ctx: _Context) -> float:
        return self.value


def _matcher_test(op: str, label: str, value: str) -> Callable[[dict[str, str]], bool]:
    if op == "=":
        return lambda d: d.get(label, "") == value
    if op == "!=":
        return lambda d: d.get(label, "") != value
    try:
        rx = compile_label_regex(value)
    except LabelRegexError as e:
        raise QuerySyntaxError(f"invalid regular expression {value!r} for label {label!r}: {e}") from e
    if op == "=~":
        return lambda d: rx.fullmatch(d.get(label, "")) is not None
    return lambda d: rx.fullmatch(d.get(label, "")) is None


_MATCH_OPS = (
    (pp.MatchOp.Equal, "="),
    (pp.MatchOp.NotEqual, "!="),
    (pp.MatchOp.Re, "=~"),
    (pp.MatchOp.NotRe, "!~"),
)


def _match_op(op: Any) -> str:
    # The parser's enums compare equal but are not hashable.
    for member, text in _MATCH_OPS:
        if op == member:
            return text
    raise _unsupported(f"the label matcher {op!r}")  # pragma: no cover - the four are all there is


class _Selector:
    """A vector selector's matchers and offset (shared by instant and range selectors)."""

    def __init__(self, vs: pp.VectorSelector):
        if vs.at is not None:
            raise _unsupported("the @ modifier")
        if vs.matchers.or_matchers:
            raise _unsupported("'or' between label matchers")
        self.name: str | None = vs.name
        matchers: list[tuple[str, str, str]] = []
        for m in vs.matchers.matchers:
            op = _match_op(m.op)
            if m.name == NAME and op == "=" and self.name is None:
                self.name = m.value  # {__name__="x"} reads like x{}
                continue
            matchers.append((op, m.name, m.value))
        self.matchers = matchers
        self.matchers_key = tuple(sorted(matchers))
        self.tests = [_matcher_test(op, label, value) for op, label, value in matchers]
        self.offset_ms = _ms(vs.offset) if vs.offset is not None else 0


def _ms(delta: timedelta) -> int:
    return round(delta.total_seconds() * 1000)


class _InstantSelector(_Node):
    def __init__(self, sel: _Selector):
        self.sel = sel

    def eval(self, ctx: _Context) -> Vector:
        hi = ctx.t_ms - self.sel.offset_ms
        refs, points = ctx.points(self.sel, hi - ctx.engine.lookback_ms, hi)
        out: Vector = []
        for r in refs:
            pts = points.get(r.id)
            if pts:
                out.append((r.labels, pts[-1][1]))
        return out


class _RangeFunction(_Node):
    """A function over a range selector: ``fn(selector[range])``; the name is dropped."""

    def __init__(self, fn: Callable[[Points, int, int, int], float | None], ms: pp.MatrixSelector):
        self.fn = fn
        self.sel = _Selector(ms.vector_selector)
        self.range_ms = _ms(ms.range)

    def eval(self, ctx: _Context) -> Vector:
        hi = ctx.t_ms - self.sel.offset_ms
        lo = hi - self.range_ms
        refs, points = ctx.points(self.sel, lo, hi)
        fn, range_ms = self.fn, self.range_ms
        out: Vector = []
        for r in refs:
            pts = points.get(r.id)
            if pts:
                value = fn(pts, lo, hi, range_ms)
                if value is not None:
                    out.append((_drop_name(r.labels), value))
        return _check_unique(out)


def _extrapolated_rate(is_counter: bool, is_rate: bool) -> Callable[[Points, int, int, int], float | None]:
    """Prometheus's ``extrapolatedRate`` (promql/functions.go) for rate, increase and delta."""

    def fn(pts: Points, range_start: int, range_end: int, range_ms: int) -> float | None:
        n = len(pts)
        if n < 2:
            return None
        first_t, first_v = pts[0]
        last_t, last_v = pts[-1]
        result = last_v - first_v
        if is_counter:
            prev = first_v
            for i in range(1, n):
                v = pts[i][1]
                if v < prev:
                    result += prev
                prev = v
        duration_to_start = (first_t - range_start) / 1000
        duration_to_end = (range_end - last_t) / 1000
        sampled = (last_t - first_t) / 1000
        average = sampled / (n - 1)
        if is_counter and result > 0 and first_v >= 0:
            duration_to_zero = sampled * (first_v / result)
            if duration_to_zero < duration_to_start:
                duration_to_start = duration_to_zero
        threshold = average * 1.1
        extrapolate_to = sampled
        extrapolate_to += duration_to_start if duration_to_start < threshold else average / 2
        extrapolate_to += duration_to_end if duration_to_end < threshold else average / 2
        factor = extrapolate_to / sampled
        if is_rate:
            factor /= range_ms / 1000
        return result * factor

    return fn


def _irate(pts: Points, range_start: int, range_end: int, range_ms: int) -> float | None:
    if len(pts) < 2:
        return None
    prev_t, prev_v = pts[-2]
    last_t, last_v = pts[-1]
    result = last_v if last_v < prev_v else last_v - prev_v
    interval = last_t - prev_t
    if interval == 0:
        return None
    return result / (interval / 1000)


def _avg_over_time(pts: Points, *_: int) -> float:
    mean = 0.0
    count = 0.0
    for _t, v in pts:
        count += 1
        if math.isinf(mean):
            if math.isinf(v) and (mean > 0) == (v > 0):
                continue
            if not math.isinf(v) and not math.isnan(v):
                continue
        mean += v / count - mean / count
    return mean


def _min_over_time(pts: Points, *_: int) -> float:
    best = pts[0][1]
    for _t, v in pts:
        if v < best or math.isnan(best):
            best = v
    return best


def _max_over_time(pts: Points, *_: int) -> float:
    best = pts[0][1]
    for _t, v in pts:
        if v > best or math.isnan(best):
            best = v
    return best


def _sum_over_time(pts: Points, *_: int) -> float:
    total = 0.0
    for _t, v in pts:
        total += v
    return total


def _count_over_time(pts: Points, *_: int) -> float:
    return float(len(pts))


_RANGE_FUNCTIONS: dict[str, Callable[[Points, int, int, int], float | None]] = {
    "rate": _extrapolated_rate(is_counter=True, is_rate=True),
    "increase": _extrapolated_rate(is_counter=True, is_rate=False),
    "delta": _extrapolated_rate(is_counter=False, is_rate=False),
    "irate": _irate,
    "avg_over_time": _avg_over_time,
    "min_over_time": _min_over_time,
    "max_over_time": _max_over_time,
    "sum_over_time": _sum_over_time,
    "count_over_time": _count_over_time,
}


class _Abs(_Node):
    def __init__(self, arg: _Node):
        self.arg = arg

    def eval(self, ctx: _Context) -> Vector:
        return _check_unique([(_drop_name(labels), abs(v)) for labels, v in self.arg.vector(ctx)])


class _Clamp(_Node):
    def __init__(self, arg: _Node, bound: _Node, fn: Callable[[float, float], float]):
        self.arg, self.bound, self.fn = arg, bound, fn

    def eval(self, ctx: _Context) -> Vector:
        vec = self.arg.vector(ctx)
        bound, fn = self.bound.scalar(ctx), self.fn
        return _check_unique([(_drop_name(labels), fn(bound, v)) for labels, v in vec])


class _Absent(_Node):
    def __init__(self, arg: _Node, raw_arg: Any):
        self.arg = arg
        self.labels = self._absent_labels(raw_arg)

    @staticmethod
    def _absent_labels(raw: Any) -> Labels:
        # Prometheus's createLabelsForAbsentFunction: equality matchers give labels,
        # a label matched any other way (or twice) is left out; only a bare selector counts.
        if isinstance(raw, pp.MatrixSelector):
            raw = raw.vector_selector
        if not isinstance(raw, pp.VectorSelector):
            return ()
        labels: dict[str, str] = {}
        dropped: set[str] = set()
        for m in raw.matchers.matchers:
            if m.name == NAME:
                continue
            if m.op == pp.MatchOp.Equal and m.name not in labels:
                labels[m.name] = m.value
            else:
                dropped.add(m.name)
        return tuple(sorted((k, v) for k, v in labels.items() if k not in dropped and v != ""))

    def eval(self, ctx: _Context) -> Vector:
        return [] if self.arg.vector(ctx) else [(self.labels, 1.0)]


class _HistogramQuantile(_Node):
    def __init__(self, q: _Node, arg: _Node):
        self.q, self.arg = q, arg

    def eval(self, ctx: _Context) -> Vector:
        q = self.q.scalar(ctx)
        groups: dict[Labels, tuple[Labels, list[tuple[float, float]]]] = {}
        for labels, v in self.arg.vector(ctx):
            d = dict(labels)
            upper = _parse_le(d.get("le"))
            if upper is None:
                continue
            key = tuple(p for p in labels if p[0] != "le")
            group = groups.get(key)
            if group is None:
                group = groups[key] = (tuple(p for p in key if p[0] != NAME), [])
            group[1].append((upper, v))
        return _check_unique([(out, bucket_quantile(q, buckets)) for out, buckets in groups.values()])


class _Negate(_Node):
    def __init__(self, arg: _Node):
        self.arg = arg
        self.is_scalar = arg.is_scalar

    def eval(self, ctx: _Context) -> Value:
        value = self.arg.eval(ctx)
        if isinstance(value, float):
            return -value
        return _check_unique([(_drop_name(labels), -v) for labels, v in value])


class _Aggregate(_Node):
    def __init__(self, op: str, arg: _Node, labels: list[str] | None, without: bool):
        self.op, self.arg, self.without = op, arg, without
        self.grouping = list(labels or [])
        self.grouping_set = frozenset(self.grouping)

    def _group_of(self, labels: Labels) -> Labels:
        if self.without:
            drop = self.grouping_set
            return tuple(p for p in labels if p[0] not in drop and p[0] != NAME)
        keep = self.grouping_set
        return tuple(p for p in labels if p[0] in keep)

    def eval(self, ctx: _Context) -> Vector:
        vec = self.arg.vector(ctx)
        op = self.op
        groups: dict[Labels, list[float]] = {}  # [value, count]
        group_of = self._group_of
        if not self.without and not self.grouping:
            group_of = lambda labels: ()  # noqa: E731 - the by () / no-clause case: one group
        for labels, v in vec:
            key = group_of(labels)
            g = groups.get(key)
            if g is None:
                groups[key] = [v, 1.0]
                continue
            if op == "sum":
                g[0] += v
            elif op == "avg":
                g[1] += 1
                mean = g[0]
                if math.isinf(mean):
                    if math.isinf(v) and (mean > 0) == (v > 0):
                        continue
                    if not math.isinf(v) and not math.isnan(v):
                        continue
                g[0] = mean + (v / g[1] - mean / g[1])
            elif op == "max":
                if g[0] < v or math.isnan(g[0]):
                    g[0] = v
            elif op == "min":
                if g[0] > v or math.isnan(g[0]):
                    g[0] = v
            else:  # count
                g[1] += 1
        if op == "count":
            return [(key, g[1]) for key, g in groups.items()]
        return [(key, g[0]) for key, g in groups.items()]


class _Binary(_Node):
    def __init__(self, op: str, lhs: _Node, rhs: _Node, modifier: Any):
        self.op, self.lhs, self.rhs = op, lhs, rhs
        self.is_scalar = lhs.is_scalar and rhs.is_scalar
        self.return_bool = bool(modifier.return_bool) if modifier is not None else False
        matching = modifier.matching if modifier is not None else None
        self.on = matching is not None and matching.type == pp.LabelModifierType.Include
        self.matching_labels = list(matching.labels) if matching is not None else []
        self.signature = _signature(frozenset(self.matching_labels), self.on)
        self.arith = _ARITH.get(op)
        self.compare = _COMPARE.get(op)
        self.drops_name = self.arith is not None or self.return_bool

    def eval(self, ctx: _Context) -> Value:
        left = self.lhs.eval(ctx)
        right = self.rhs.eval(ctx)
        if isinstance(left, float) and isinstance(right, float):
            if self.arith is not None:
                return self.arith(left, right)
            compare = self.compare
            if compare is None:  # pragma: no cover - the parser refuses set operators on scalars
                raise _EvalError(f"operator {self.op} between scalars")
            return 1.0 if compare(left, right) else 0.0
        if isinstance(right, float):
            return _check_unique(self._vector_scalar(left, right, swap=False))  # type: ignore[arg-type]
        if isinstance(left, float):
            return _check_unique(self._vector_scalar(right, left, swap=True))
        if self.op in _SET_OPS:
            return self._set_op(left, right)
        return _check_unique(self._vector_vector(left, right))

    def _vector_scalar(self, vec: Vector, scalar: float, *, swap: bool) -> Vector:
        out: Vector = []
        arith, compare, return_bool = self.arith, self.compare, self.return_bool
        for labels, v in vec:
            lv, rv = (scalar, v) if swap else (v, scalar)
            if arith is not None:
                out.append((_drop_name(labels), arith(lv, rv)))
                continue
            keep = compare(lv, rv)  # type: ignore[misc]
            if return_bool:
                out.append((_drop_name(labels), 1.0 if keep else 0.0))
            elif keep:
                out.append((labels, v))  # the vector's value, even with the scalar on the left
        return out

    def _vector_vector(self, lhs: Vector, rhs: Vector) -> Vector:
        sig = self.signature
        right: dict[Labels, tuple[Labels, float]] = {}
        for labels, v in rhs:
            key = sig(labels)
            if key in right:
                raise _EvalError(
                    f"found duplicate series for the match group {_labels_str(key)} on the right "
                    f"hand-side of the operation: [{_labels_str(labels)}, {_labels_str(right[key][0])}]"
                    ";many-to-many matching not allowed: matching labels must be unique on one side"
                )
            right[key] = (labels, v)
        matched: set[Labels] = set()
        out: Vector = []
        arith, compare, return_bool = self.arith, self.compare, self.return_bool
        keep_set = frozenset(self.matching_labels)
        for labels, lv in lhs:
            key = sig(labels)
            hit = right.get(key)
            if hit is None:
                continue
            rv = hit[1]
            if arith is not None:
                value, keep = arith(lv, rv), True
            else:
                value, keep = lv, compare(lv, rv)  # type: ignore[misc]
            if return_bool:
                value, keep = (1.0 if keep else 0.0), True
            if not keep:
                continue
            if key in matched:
                raise _EvalError(
                    "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)"
                )
            matched.add(key)
            if self.on:
                result = tuple(p for p in labels if p[0] in keep_set)
            else:
                result = tuple(p for p in labels if p[0] not in keep_set)
            if self.drops_name:
                result = _drop_name(result)
            out.append((result, value))
        return out

    def _set_op(self, lhs: Vector, rhs: Vector) -> Vector:
        sig = self.signature
        if self.op == "and":
            if not lhs or not rhs:
                return []
            right = {sig(labels) for labels, _ in rhs}
            return [s for s in lhs if sig(s[0]) in right]
        if self.op == "or":
            if not lhs:
                return list(rhs)
            if not rhs:
                return list(lhs)
            left = {sig(labels) for labels, _ in lhs}
            return _check_unique(list(lhs) + [s for s in rhs if sig(s[0]) not in left])
        right = {sig(labels) for labels, _ in rhs}  # unless
        return [s for s in lhs if sig(s[0]) not in right]


# ====================================================================== compiler

_AGGREGATIONS = frozenset({"sum", "avg", "min", "max", "count"})
_VECTOR_FUNCTIONS = frozenset({"abs", "clamp_min", "clamp_max", "absent", "histogram_quantile"})


def _compile(node: Any) -> _Node:
    if isinstance(node, pp.ParenExpr):
        return _compile(node.expr)
    if isinstance(node, pp.NumberLiteral):
        return _Number(node.val)
    if isinstance(node, pp.StringLiteral):
        raise _unsupported("string literals")
    if isinstance(node, pp.VectorSelector):
        return _InstantSelector(_Selector(node))
    if isinstance(node, pp.MatrixSelector):
        raise _unsupported("a range vector outside a supported function")
    if isinstance(node, pp.SubqueryExpr):
        raise _unsupported("subqueries")
    if isinstance(node, pp.UnaryExpr):
        return _Negate(_compile(node.expr))
    if isinstance(node, pp.AggregateExpr):
        op = str(node.op)
        if op not in _AGGREGATIONS:
            raise _unsupported(f"the aggregation {op}")
        if node.param is not None:  # pragma: no cover - only parameterised aggregations take one
            raise _unsupported(f"a parameter to {op}")
        mod = node.modifier
        without = mod is not None and mod.type == pp.AggModifierType.Without
        return _Aggregate(op, _compile(node.expr), list(mod.labels) if mod is not None else None, without)
    if isinstance(node, pp.Call):
        return _compile_call(node)
    if isinstance(node, pp.BinaryExpr):
        return _compile_binary(node)
    raise _unsupported(f"the expression type {type(node).__name__}")


def _compile_call(node: pp.Call) -> _Node:
    name = node.func.name
    args = list(node.args)
    if name in _RANGE_FUNCTIONS:
        arg = args[0]
        while isinstance(arg, pp.ParenExpr):  # pragma: no cover - the parser wants a range vector here
            arg = arg.expr
        if isinstance(arg, pp.SubqueryExpr):
            raise _unsupported("subqueries")
        if not isinstance(arg, pp.MatrixSelector):  # pragma: no cover - the parser checks types
            raise _unsupported(f"{name}() of anything but a range selector")
        return _RangeFunction(_RANGE_FUNCTIONS[name], arg)
    if name not in _VECTOR_FUNCTIONS:
        raise _unsupported(f"the function {name}()")
    compiled = [_compile(a) for a in args]
    if name == "abs":
        return _Abs(compiled[0])
    if name == "clamp_min":
        return _Clamp(compiled[0], compiled[1], _go_max)
    if name == "clamp_max":
        return _Clamp(compiled[0], compiled[1], _go_min)
    if name == "absent":
        return _Absent(compiled[0], args[0])
    return _HistogramQuantile(compiled[0], compiled[1])


def _compile_binary(node: pp.BinaryExpr) -> _Node:
    op = str(node.op)
    if op not in _ARITH and op not in _COMPARE and op not in _SET_OPS:
        raise _unsupported(f"the operator {op}")
    mod = node.modifier
    if mod is not None:
        if mod.card in (pp.VectorMatchCardinality.ManyToOne, pp.VectorMatchCardinality.OneToMany):
            raise _unsupported("group_left/group_right (many-to-one matching)")
        fill = mod.fill_values
        if fill is not None and (fill.lhs is not None or fill.rhs is not None):
            raise _unsupported("fill modifiers")
    return _Binary(op, _compile(node.lhs), _compile(node.rhs), mod)


_gc_lock = threading.Lock()
_gc_pauses = 0
_gc_was_enabled = True


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while evaluating.

    An evaluation allocates one small tuple or list per sample and makes no
    reference cycles (reference counting frees everything), but each allocation
    burst triggers collections that walk every long-lived object, the series cache
    included: at 100k series that was 40% of the time and made the cost grow
    faster than the series count. Pauses nest across threads; the last one out
    restores the collector (only if it was on).
    """
    global _gc_pauses, _gc_was_enabled
    with _gc_lock:
        if _gc_pauses == 0:
            _gc_was_enabled = gc.isenabled()
            gc.disable()
        _gc_pauses += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_pauses -= 1
            if _gc_pauses == 0 and _gc_was_enabled:
                gc.enable()


@dataclass(frozen=True, slots=True)
class _Plan:
    expr: str
    root: _Node
    # (metric name, span ms or -1 for the lookback, offset ms) of every named selector.
    windows: tuple[tuple[str, int, int], ...] = ()


def _windows(node: _Node) -> Iterator[tuple[str, int, int]]:
    if isinstance(node, _InstantSelector | _RangeFunction):
        if node.sel.name is not None:
            span = node.range_ms if isinstance(node, _RangeFunction) else -1
            yield node.sel.name, span, node.sel.offset_ms
        return
    for child in vars(node).values():
        if isinstance(child, _Node):
            yield from _windows(child)


# ====================================================================== the engine


class LocalEngine:
    """PromQL over a :class:`MetricsStore`, with Prometheus 2.42's semantics (see the module doc).

    :param store: where the series are.
    :param lookback: seconds an instant selector looks back for the latest sample
        (Prometheus's ``--query.lookback-delta``, 5 minutes).
    """

    name = "local"

    def __init__(self, store: MetricsStore, *, lookback: float = DEFAULT_LOOKBACK):
        if lookback <= 0:
            raise ValueError(f"lookback must be > 0 seconds, got {lookback!r}")
        self.store = store
        self.lookback_ms = round(lookback * 1000)
        self._plans: dict[str, _Plan | QueryError] = {}
        self._labels: dict[tuple[str, str], tuple[Labels, dict[str, str]]] = {}
        self._series_cache: dict[str | None, tuple[tuple[Any, ...], list[_SeriesRef]]] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"LocalEngine({self.store.description})"

    # ------------------------------------------------------------ compile

    def _plan(self, expr: str) -> _Plan:
        cached = self._plans.get(expr)
        if cached is None:
            try:
                root = self._compile(expr)
                cached = _Plan(expr, root, tuple(_windows(root)))
            except QueryError as e:
                cached = e
            with self._lock:
                if len(self._plans) >= _PLAN_CACHE_SIZE:
                    self._plans.clear()
                self._plans[expr] = cached
        if isinstance(cached, QueryError):
            raise type(cached)(str(cached))
        return cached

    @staticmethod
    def _compile(expr: str) -> _Node:
        try:
            ast = pp.parse(expr)
        except ValueError as e:
            raise QuerySyntaxError(f"invalid PromQL {expr!r}: {e}") from None
        try:
            root = _compile(ast)
        except UnsupportedExpression as e:
            raise UnsupportedExpression(f"{e} (in {expr!r})") from None
        return root

    def check(self, expr: str) -> None:
        """Raise :class:`QuerySyntaxError` or :class:`UnsupportedExpression` unless ``expr`` runs here."""
        self._plan(expr)

    # ------------------------------------------------------------ evaluate

    def instant(self, expr: str, at: float) -> QueryResult:
        """Evaluate ``expr`` at ``at`` (seconds since the epoch): a vector, or a float for scalars."""
        with self.session(at) as session:
            return session.instant(expr)

    def instant_many(self, exprs: Sequence[str], at: float) -> list[QueryResult | QueryError]:
        """Evaluate several expressions at one instant, sharing reads; errors are returned in place."""
        out: list[QueryResult | QueryError] = []
        with self.session(at) as session:
            session.prepare(exprs)
            for expr in exprs:
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
        ctx = _Context(self, round(float(at) * 1000))
        with _gc_paused(), ctx.connected():
            yield EvaluationSession(self, ctx)

    # ------------------------------------------------------------ series metadata

    def _series_of(self, ctx: _Context, name: str | None) -> list[_SeriesRef]:
        """Series of ``name`` (all when None): cached across evaluations while unchanged.

        The cache is checked against (count, highest id, total labels length) of the
        metric's rows: new series, deleted ones and a deleted id reused for other
        labels all change it, for one small aggregate query instead of a full read.
        """
        s = series_table.name
        where, params = ("WHERE name = ?", (name,)) if name is not None else ("", ())
        version = tuple(
            ctx._fetch(f"SELECT count(*), max(id), sum(length(labels)) FROM {s} {where}", params)[0]
        )
        cached = self._series_cache.get(name)
        if cached is not None and cached[0] == version:
            return cached[1]
        if name is None:
            rows = ctx._fetch(f"SELECT id, name, labels FROM {s}", ())
            refs = [self._parse_labels(sid, sname, text) for sid, sname, text in rows]
        else:
            rows = ctx._fetch(f"SELECT id, labels FROM {s} WHERE name = ?", (name,))
            refs = [self._parse_labels(sid, name, text) for sid, text in rows]
        with self._lock:
            if len(self._series_cache) >= _PLAN_CACHE_SIZE:
                self._series_cache.clear()
            self._series_cache[name] = (version, refs)
        return refs

    def _parse_labels(self, sid: int, name: str, text: str) -> _SeriesRef:
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
        return _SeriesRef(sid, hit[0], hit[1])


class EvaluationSession:
    """Expressions evaluated at one instant with shared reads; made by :meth:`LocalEngine.session`."""

    def __init__(self, engine: LocalEngine, ctx: _Context):
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
                self._ctx.want(self._engine._plan(expr))
            except QueryError:
                continue

    def instant(self, expr: str) -> QueryResult:
        plan = self._engine._plan(expr)
        self._ctx.want(plan)
        try:
            with self._ctx.connected():
                value = plan.root.eval(self._ctx)
        except _EvalError as e:
            raise QueryEvaluationError(f"{expr!r} at {self.at:.3f}: {e}") from None
        if isinstance(value, float):
            return value
        return [InstantSample(dict(labels), v) for labels, v in value]

    def invalidate(self, metric_name: str | None = None) -> None:
        """Forget cached reads of ``metric_name`` (all of them when ``None``)."""
        self._ctx.invalidate(metric_name)
