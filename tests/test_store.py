"""The metrics store against SQLite and a real PostgreSQL server."""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from mlinfra.exceptions import StoreError
from mlinfra.samples import STALE_NAN, Sample, is_stale_nan
from mlinfra.store import LabelMatcher, MetricsStore, samples_table, series_table
from mlinfra.store_engine import url_from_connection

T0 = 1_800_000_000.0  # a fixed logical time (2027-01-15)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.integration)])
def store(request: pytest.FixtureRequest, tmp_path) -> MetricsStore:
    if request.param == "sqlite":
        return MetricsStore.from_url(f"sqlite:///{tmp_path / 'store.db'}")
    url = request.getfixturevalue("postgres_url")
    s = MetricsStore.from_url(url)
    s.create_schema()
    with s.engine.begin() as conn:  # each test starts from empty tables on the shared server
        conn.execute(sa.text("TRUNCATE mlinfra_samples, mlinfra_series, mlinfra_sweeps, mlinfra_staging"))
    return s


def gpu(i: int, util: float) -> Sample:
    return Sample("ml_gpu_utilization_percent", {"gpu_id": i, "host": "node-a"}, util)


def test_write_and_read_back(store: MetricsStore) -> None:
    n = store.write_sweep(T0, [gpu(0, 10), gpu(1, 20), Sample("ml_cpu_usage_percent", {"core": "all"}, 5)])
    assert n == 3
    got = store.query_range("ml_gpu_utilization_percent", (), T0 - 60, T0)
    assert sorted((s.labels["gpu_id"], pts) for s, pts in got) == [("0", [(T0, 10.0)]), ("1", [(T0, 20.0)])]


def test_rewriting_a_sweep_replaces_it(store: MetricsStore) -> None:
    store.write_sweep(T0, [gpu(0, 10), gpu(1, 20)], run_id="r1")
    store.write_sweep(T0, [gpu(0, 11)], run_id="r1")  # the retry saw only GPU 0
    got = {s.labels["gpu_id"]: pts for s, pts in store.query_range("ml_gpu_utilization_percent", (), T0, T0)}
    assert got == {"0": [(T0, 11.0)]}
    assert [(r.ts, r.samples, r.run_id) for r in store.sweeps(T0, T0 + 1)] == [(T0, 1, "r1")]


def test_sweeps_at_other_times_are_untouched(store: MetricsStore) -> None:
    store.write_sweep(T0, [gpu(0, 10)])
    store.write_sweep(T0 + 300, [gpu(0, 30)])
    store.write_sweep(T0, [gpu(0, 12)])
    ((series, pts),) = store.query_range("ml_gpu_utilization_percent", (), T0, T0 + 300)
    assert pts == [(T0, 12.0), (T0 + 300, 30.0)]


def test_duplicate_series_in_one_sweep_keeps_the_last(store: MetricsStore) -> None:
    assert store.write_sweep(T0, [gpu(0, 1), gpu(0, 2)]) == 1
    ((_, pts),) = store.query_range("ml_gpu_utilization_percent", (), T0, T0)
    assert pts == [(T0, 2.0)]


def test_label_matchers_follow_prometheus_semantics(store: MetricsStore) -> None:
    store.write_sweep(
        T0,
        [
            Sample("up", {"job": "a", "zone": "eu"}, 1),
            Sample("up", {"job": "b", "zone": "us"}, 1),
            Sample("up", {"job": "c"}, 0),
        ],
    )

    def jobs(*ms: LabelMatcher) -> list[str]:
        return sorted(s.labels["job"] for s in store.select_series("up", ms))

    assert jobs(LabelMatcher("job", "=", "a")) == ["a"]
    assert jobs(LabelMatcher("job", "!=", "a")) == ["b", "c"]
    assert jobs(LabelMatcher("zone", "=~", "e.")) == ["a"]
    assert jobs(LabelMatcher("zone", "=~", "e")) == []  # regexes are fully anchored
    assert jobs(LabelMatcher("zone", "!~", "eu|us")) == ["c"]
    assert jobs(LabelMatcher("zone", "=", "")) == ["c"]  # a missing label equals ""
    assert [
        s.labels["job"]
        for s in store.select_series(
            None, [LabelMatcher("__name__", "=", "up"), LabelMatcher("job", "=", "b")]
        )
    ] == ["b"]


def test_range_boundaries(store: MetricsStore) -> None:
    for i in range(5):
        store.write_sweep(T0 + 60 * i, [gpu(0, i)])
    (sid,) = [s.id for s in store.select_series("ml_gpu_utilization_percent")]
    closed = store.read_samples([sid], T0 + 60, T0 + 180)[sid]
    half_open = store.read_samples([sid], T0 + 60, T0 + 180, include_start=False)[sid]
    assert [v for _, v in closed] == [1.0, 2.0, 3.0]
    assert [v for _, v in half_open] == [2.0, 3.0]


def test_nan_and_special_values_round_trip(store: MetricsStore) -> None:
    store.write_sweep(T0, [gpu(0, math.nan), gpu(1, math.inf), gpu(2, -0.5)])
    got = {
        s.labels["gpu_id"]: pts[0][1]
        for s, pts in store.query_range("ml_gpu_utilization_percent", (), T0, T0)
    }
    assert math.isnan(got["0"])
    assert got["1"] == math.inf
    assert got["2"] == -0.5


def test_write_samples_upserts_by_timestamp(store: MetricsStore) -> None:
    store.write_samples([Sample("x", {}, 1, T0), Sample("x", {}, 2, T0 + 60)])
    store.write_samples([Sample("x", {}, 5, T0 + 60)])
    ((_, pts),) = store.query_range("x", (), T0, T0 + 60)
    assert pts == [(T0, 1.0), (T0 + 60, 5.0)]
    with pytest.raises(ValueError, match="no timestamp"):
        store.write_samples([Sample("x", {}, 1)])


def test_staging_round_trip_and_replacement(store: MetricsStore) -> None:
    store.stage("run-1", "gpu", T0, [gpu(0, 1)])
    store.stage("run-1", "gpu", T0, [gpu(0, 2), gpu(1, 3)])  # a retried collector task
    store.stage("run-1", "host", T0, [Sample("ml_memory_usage_percent", {}, 40)])
    store.stage("run-2", "gpu", T0 + 300, [gpu(0, 9)])
    staged = store.staged("run-1")
    assert sorted(staged) == ["gpu", "host"]
    assert [s.value for s in staged["gpu"]] == [2.0, 3.0]
    assert store.clear_staged("run-1") == 2
    assert store.staged("run-1") == {}
    assert list(store.staged("run-2")) == ["gpu"]


def test_retention_deletes_old_samples_and_empty_series(store: MetricsStore) -> None:
    store.write_sweep(T0, [gpu(0, 1), Sample("kube_pod_status_phase", {"pod": "old-pod-abc"}, 1)])
    store.write_sweep(T0 + 3600, [gpu(0, 2)])
    deleted, series_deleted = store.apply_retention(T0 + 1)
    assert (deleted, series_deleted) == (2, 1)
    assert store.select_series("kube_pod_status_phase") == []
    ((_, pts),) = store.query_range("ml_gpu_utilization_percent", (), T0 - 10, T0 + 3600)
    assert pts == [(T0 + 3600, 2.0)]
    assert [r.ts for r in store.sweeps(0, T0 + 7200)] == [T0 + 3600]
    # Writing again after retention re-creates series whose rows were deleted.
    store.write_sweep(T0 + 7200, [Sample("kube_pod_status_phase", {"pod": "old-pod-abc"}, 1)])
    assert len(store.select_series("kube_pod_status_phase")) == 1


def test_datetimes_must_be_aware(store: MetricsStore) -> None:
    store.write_sweep(datetime.fromtimestamp(T0, UTC), [gpu(0, 1)])
    assert store.sweeps(T0, T0 + 1)[0].ts == T0
    with pytest.raises(ValueError, match="naive datetime"):
        store.write_sweep(datetime(2027, 1, 1), [gpu(0, 1)])


def test_concurrent_sweeps_do_not_duplicate_series(store: MetricsStore) -> None:
    # Parallel writers racing to create the same series must end with one row per series.
    errors: list[BaseException] = []

    def writer(k: int) -> None:
        try:
            store.write_sweep(T0 + k, [gpu(i, k) for i in range(20)])
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with store.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(series_table)).scalar() == 20
        assert conn.execute(sa.select(sa.func.count()).select_from(samples_table)).scalar() == 80


def test_unreachable_store_names_itself() -> None:
    store = MetricsStore.from_url("postgresql+psycopg2://mlinfra:secret@127.0.0.1:9/nowhere")
    with pytest.raises(StoreError) as err:
        store.write_sweep(T0, [gpu(0, 1)])
    message = str(err.value)
    assert "127.0.0.1:9/nowhere" in message
    assert "secret" not in message  # the password never reaches a log line


def test_sqlite_default_uses_wal(tmp_path) -> None:
    store = MetricsStore.from_url(f"sqlite:///{tmp_path / 'deep' / 'store.db'}")
    store.write_sweep(T0, [gpu(0, 1)])
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"


class _Conn:
    def __init__(self, conn_type: str, **kw: object) -> None:
        self.conn_id = "mlinfra_store"
        self.conn_type = conn_type
        self.extra = kw.pop("extra", None)
        self.extra_dejson = self.extra or {}
        for k in ("host", "login", "password", "schema", "port"):
            setattr(self, k, kw.get(k))


def test_urls_from_connections(tmp_path) -> None:
    pg = url_from_connection(
        _Conn("postgres", host="db", port=5433, login="u", password="p", schema="mlinfra")
    )
    assert pg.render_as_string(hide_password=False) == "postgresql+psycopg2://u:p@db:5433/mlinfra"
    lite = url_from_connection(_Conn("sqlite", host=str(tmp_path / "s.db")))
    assert lite.database == str(tmp_path / "s.db")
    explicit = url_from_connection(_Conn("generic", extra={"sqlalchemy_url": "sqlite:///x.db"}))
    assert explicit.database == "x.db"
    with pytest.raises(StoreError, match="accepts postgres, sqlite"):
        url_from_connection(_Conn("mysql", host="db"))


@pytest.mark.usefixtures("airflow_loaded")
def test_from_connection_without_connection_uses_sqlite_under_airflow_home(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))
    monkeypatch.delenv("AIRFLOW_CONN_MLINFRA_STORE", raising=False)
    store = MetricsStore.from_connection()
    assert store.engine.url.database == str(tmp_path / "mlinfra" / "store.db")
    store.write_sweep(T0, [gpu(0, 1)])
    assert (tmp_path / "mlinfra" / "store.db").exists()


def test_from_connection_uses_the_airflow_connection(tmp_path, monkeypatch) -> None:
    path = tmp_path / "via-conn.db"
    monkeypatch.setenv("AIRFLOW_CONN_MLINFRA_STORE", f'{{"conn_type": "sqlite", "host": "{path}"}}')
    store = MetricsStore.from_connection()
    assert store.engine.url.database == str(path)
    assert "mlinfra_store" in store.description


# ---------------------------------------------------------------------- conflicts and regexes (issue 11)


@contextlib.contextmanager
def _delete_series_before_samples_insert(store: MetricsStore, *, times: int) -> Iterator[list[int]]:
    """Make the database delete the sweep's series just before its samples go in, ``times`` times.

    That is what a retention run committing between the sweep's series lookup and its
    insert does on PostgreSQL: the insert then violates the samples' foreign key.
    """
    fired: list[int] = []

    def race(conn, cursor, statement, parameters, context, executemany) -> None:  # type: ignore[no-untyped-def]
        if len(fired) < times and statement.lstrip().upper().startswith("INSERT INTO MLINFRA_SAMPLES"):
            fired.append(1)
            cursor.execute("DELETE FROM mlinfra_series")

    # Engines are shared per URL: the hook must not outlive this test.
    sa.event.listen(store.engine, "before_cursor_execute", race)
    try:
        yield fired
    finally:
        sa.event.remove(store.engine, "before_cursor_execute", race)


def test_a_sweep_losing_a_race_with_retention_is_retried_and_written(store: MetricsStore) -> None:
    store.write_sweep(T0 - 300, [gpu(0, 1)])
    with _delete_series_before_samples_insert(store, times=1) as fired:
        assert store.write_sweep(T0, [gpu(0, 42)], run_id="r") == 1

    assert fired == [1]
    assert [pts for _, pts in store.query_range("ml_gpu_utilization_percent", (), T0, T0)] == [[(T0, 42.0)]]


def test_a_write_that_keeps_conflicting_raises_store_error_not_integrity_error(store: MetricsStore) -> None:
    store.write_sweep(T0 - 300, [gpu(0, 1)])
    with (
        _delete_series_before_samples_insert(store, times=100),
        pytest.raises(StoreError, match="concurrent write conflicted") as err,
    ):
        store.write_sweep(T0, [gpu(0, 42)], run_id="r")
    assert not isinstance(err.value, sa.exc.IntegrityError)
    assert store.sweep_at(T0) is None  # rolled back: nothing half-written


def test_regex_matchers_run_in_linear_time(store: MetricsStore) -> None:
    # Python's backtracking re needs ~2**n steps for (a+)+b against "a" * n: ~15 s at n=28.
    store.write_sweep(T0, [Sample("m", {"path": "a" * 28}, 1), Sample("m", {"path": "aab"}, 2)])
    start = time.monotonic()
    hits = store.select_series("m", [LabelMatcher("path", "=~", "(a+)+b")])
    assert time.monotonic() - start < 5
    assert [s.labels["path"] for s in hits] == ["aab"]


def test_regex_matchers_use_re2_syntax_like_prometheus(store: MetricsStore) -> None:
    store.write_sweep(T0, [Sample("m", {"v": "x\ny"}, 1), Sample("m", {"v": "by"}, 2)])
    # "." matches a newline (Prometheus 3 compiles matchers with (?s)), and anchors are implied.
    assert [s.labels["v"] for s in store.select_series("m", [LabelMatcher("v", "=~", "x.y")])] == ["x\ny"]
    assert store.select_series("m", [LabelMatcher("v", "=~", "y")]) == []
    # Look-behind is Perl, not RE2: Prometheus refuses it, so do we.
    with pytest.raises(ValueError, match="invalid perl operator"):
        store.select_series("m", [LabelMatcher("v", "=~", "(?<=b)y")])


def test_the_sqlite_busy_timeout_is_configurable(tmp_path, monkeypatch) -> None:
    import sqlite3

    monkeypatch.setenv("MLINFRA_STORE_BUSY_TIMEOUT", "0.5")
    path = tmp_path / "locked.db"
    store = MetricsStore.from_url(f"sqlite:///{path}")
    store.create_schema()
    holder = sqlite3.connect(path)
    holder.isolation_level = None
    holder.execute("BEGIN IMMEDIATE")  # another writer holds the lock
    try:
        start = time.monotonic()
        with pytest.raises(StoreError, match="database is locked"):
            store.write_sweep(T0, [gpu(0, 1)])
        assert time.monotonic() - start < 5
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        store.engine.dispose()


@pytest.mark.parametrize("value", ["soon", "0", "inf"])
def test_a_bad_busy_timeout_is_refused_naming_the_variable(tmp_path, monkeypatch, value: str) -> None:
    monkeypatch.setenv("MLINFRA_STORE_BUSY_TIMEOUT", value)
    with pytest.raises(StoreError, match="MLINFRA_STORE_BUSY_TIMEOUT"):
        MetricsStore.from_url(f"sqlite:///{tmp_path / f'bad-{value}.db'}")


def test_staging_is_cleared_by_when_it_was_staged_not_by_logical_time(store: MetricsStore) -> None:
    # A backfilled run of last month stages now: its staging must survive a day-old cleanup.
    store.stage("backfill", "host", T0 - 30 * 86400, [gpu(0, 1)])
    assert store.clear_staged(staged_before=time.time() - 3600) == 0
    assert set(store.staged("backfill")) == {"host"}
    assert store.clear_staged(staged_before=time.time() + 60) == 1


def test_staleness_markers_round_trip_apart_from_plain_nan(store: MetricsStore) -> None:
    from mlinfra.promql.engine import LocalEngine

    n = store.write_sweep(T0, [gpu(0, 10), gpu(1, math.nan), gpu(2, STALE_NAN)])
    assert n == 2  # a marker is not a sample of the sweep
    assert store.sweep_at(T0).samples == 2
    plain = {s.labels["gpu_id"]: s.value for s in store.sweep_samples(T0)}
    assert plain.keys() == {"0", "1"}
    assert math.isnan(plain["1"])
    assert not is_stale_nan(plain["1"])
    with_markers = {s.labels["gpu_id"]: s.value for s in store.sweep_samples(T0, stale=True)}
    assert is_stale_nan(with_markers["2"])
    assert not is_stale_nan(with_markers["1"])
    ranged = {s.labels["gpu_id"]: pts for s, pts in store.query_range(None, (), T0, T0, stale=True)}
    assert is_stale_nan(ranged["2"][0][1])
    assert "2" not in {s.labels["gpu_id"] for s, _ in store.query_range(None, (), T0, T0)}
    # The engine's own reads (raw cursors) tell the marker from a NaN on this database too.
    store.write_samples([Sample("x", {}, 1.0, T0 - 60), Sample("x", {}, STALE_NAN, T0)])
    engine = LocalEngine(store)
    assert engine.instant("x", T0) == []
    assert [s.value for s in engine.instant("x", T0 - 1)] == [1.0]
    assert [s.value for s in engine.instant("count_over_time(x[5m])", T0)] == [1.0]
    # An upsert replaces a marker by a value and back.
    store.write_samples([Sample("x", {}, 2.0, T0)])
    assert [s.value for s in engine.instant("x", T0)] == [2.0]
    store.write_samples([Sample("x", {}, STALE_NAN, T0)])
    assert engine.instant("x", T0) == []


def test_current_samples_are_the_newest_of_each_series_in_the_window(store: MetricsStore) -> None:
    store.write_sweep(T0 - 600, [gpu(0, 1), gpu(1, 1), gpu(2, 1), Sample("ml_cpu_usage_percent", {}, 5)])
    store.write_sweep(T0 - 300, [gpu(0, 2), gpu(2, STALE_NAN)])  # GPU 2 went away
    store.write_sweep(T0, [gpu(0, 3), Sample("other", {}, 7)])
    store.write_sweep(T0 + 300, [gpu(0, 4)])  # after the window

    got = store.current_samples(["ml_gpu_utilization_percent", "ml_cpu_usage_percent"], T0 - 300, T0)

    # GPU 1's newest sample is older than the window; GPU 2's newest one is a staleness marker.
    assert [(s.name, s.labels.get("gpu_id"), s.value, s.timestamp) for s in got] == [
        ("ml_gpu_utilization_percent", "0", 3.0, T0),
    ]
    wider = store.current_samples(["ml_gpu_utilization_percent", "ml_cpu_usage_percent"], T0 - 600, T0)
    assert sorted((s.name, s.labels.get("gpu_id"), s.value, s.timestamp) for s in wider) == [
        ("ml_cpu_usage_percent", None, 5.0, T0 - 600),
        ("ml_gpu_utilization_percent", "0", 3.0, T0),
        ("ml_gpu_utilization_percent", "1", 1.0, T0 - 600),
    ]
    assert store.current_samples([], T0 - 600, T0) == []
