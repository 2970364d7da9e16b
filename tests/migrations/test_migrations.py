"""Store migrations: a first-release store upgrades to head with its data, on SQLite and PostgreSQL.

The first release's schema is the fixture ``first_release.<dialect>.sql``, generated
once from commit ca27896's table definitions and never edited.
"""

from __future__ import annotations

import json
import math
import secrets
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from mlinfra import migrations
from mlinfra.deploy.records import DeploymentRecords
from mlinfra.exceptions import StoreError
from mlinfra.schema import target_metadata
from mlinfra.store import MetricsStore

HERE = Path(__file__).parent
T0 = 1_800_000_000.0


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.integration)])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL of an empty database of this test's own."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
        return
    postgres_url: str = request.getfixturevalue("postgres_url")
    database = f"migrations_{secrets.token_hex(4)}"
    admin = sa.create_engine(postgres_url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{database}"'))
    admin.dispose()
    yield sa.make_url(postgres_url).set(database=database).render_as_string(hide_password=False)


def _schema_diff(engine: sa.Engine) -> list[object]:
    """What differs between the database and today's table definitions (the version table aside)."""
    with engine.connect() as conn:
        ctx = MigrationContext.configure(
            conn,
            opts={
                "compare_type": True,
                "include_name": lambda name, kind, _parent: name != migrations.VERSION_TABLE,
            },
        )
        return list(compare_metadata(ctx, target_metadata()))


def _first_release_store(url: str) -> sa.Engine:
    """The store as the first release left it: its DDL, then rows as its writer wrote them."""
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    ddl = (HERE / f"first_release.{engine.dialect.name}.sql").read_text()
    code = "\n".join(line for line in ddl.splitlines() if not line.startswith("--"))
    statements = [s.strip() for s in code.split(";") if s.strip()]
    assert len(statements) == 6  # 4 tables, 2 indexes
    labels = [json.dumps({"gpu_id": str(i), "host": "node-a"}, sort_keys=True) for i in range(3)]
    with engine.begin() as conn:
        for statement in statements:
            conn.exec_driver_sql(statement)
        conn.execute(
            sa.text(
                "INSERT INTO mlinfra_series (id, fingerprint, name, labels) VALUES (:id, :fp, :name, :labels)"
            ),
            [
                {"id": i + 1, "fp": f"{i:040d}", "name": "ml_gpu_utilization_percent", "labels": labels[i]}
                for i in range(3)
            ],
        )
        conn.execute(
            sa.text("INSERT INTO mlinfra_samples (series_id, ts, value) VALUES (:sid, :ts, :v)"),
            [
                {
                    "sid": i + 1,
                    "ts": round((T0 + k * 300) * 1000),
                    "v": None if (i, k) == (2, 1) else 10.0 * i + k,
                }
                for i in range(3)
                for k in range(4)
            ],
        )
        conn.execute(
            sa.text(
                "INSERT INTO mlinfra_sweeps (ts, run_id, written_at, samples, summary) "
                "VALUES (:ts, :run_id, :at, 3, :summary)"
            ),
            [
                {
                    "ts": round((T0 + k * 300) * 1000),
                    "run_id": f"scheduled__{k}",
                    "at": datetime(2027, 1, 15, tzinfo=UTC),
                    "summary": json.dumps({"k": k}),
                }
                for k in range(4)
            ],
        )
        conn.execute(
            sa.text(
                "INSERT INTO mlinfra_staging (run_id, collector, ts, payload, created_at) "
                "VALUES ('scheduled__9', 'gpu', :ts, '[]', :at)"
            ),
            {"ts": round((T0 + 2700) * 1000), "at": datetime(2027, 1, 15, tzinfo=UTC)},
        )
    return engine


def test_first_release_store_upgrades_to_head_with_its_data(empty_url: str) -> None:
    engine = _first_release_store(empty_url)
    assert migrations.current(engine) is None  # made before migrations existed

    result = migrations.upgrade(engine)

    assert (result.before, result.after, result.adopted) == (
        "0001_first_release",
        migrations.head(),
        True,
    )
    assert migrations.current(engine) == migrations.head()
    assert _schema_diff(engine) == []
    if engine.dialect.name == "sqlite":
        with engine.connect() as conn:
            sql = conn.execute(
                sa.text("SELECT sql FROM sqlite_master WHERE name = 'mlinfra_samples'")
            ).scalar_one()
        assert "WITHOUT ROWID" in sql.upper()

    store = MetricsStore.from_url(empty_url)
    got = {
        s.labels["gpu_id"]: pts
        for s, pts in store.query_range("ml_gpu_utilization_percent", (), T0, T0 + 900)
    }
    assert got["0"] == [(T0 + k * 300, float(k)) for k in range(4)]
    assert got["1"] == [(T0 + k * 300, 10.0 + k) for k in range(4)]
    assert got["2"][0] == (T0, 20.0)
    assert math.isnan(got["2"][1][1])  # NULL stays NaN
    assert [(r.ts, r.run_id, r.summary) for r in store.sweeps(T0, T0 + 1200)] == [
        (T0 + k * 300, f"scheduled__{k}", {"k": k}) for k in range(4)
    ]
    assert store.staged("scheduled__9") == {"gpu": []}
    # Writers of the new tables and of the old ones work on the upgraded store.
    store.write_sweep(T0 + 1200, [])
    records = DeploymentRecords(store)
    records.start("manual__1", model="half-plus-two", version=2)
    assert records.get("manual__1") is not None
    # Retention on the rebuilt samples table still cascades from series.
    assert store.apply_retention(T0 + 1200) == (12, 3)


def test_a_fresh_store_is_created_at_head_by_the_migrations(empty_url: str) -> None:
    store = MetricsStore.from_url(empty_url)
    store.write_sweep(T0, [])  # the first use creates the schema
    assert migrations.current(store.engine) == migrations.head()
    assert _schema_diff(store.engine) == []
    again = migrations.upgrade(store.engine)
    assert (again.before, again.after, again.changed) == (migrations.head(), migrations.head(), False)


def test_at_head_the_check_is_one_query(empty_url: str) -> None:
    engine = sa.create_engine(empty_url, poolclass=sa.pool.NullPool)
    migrations.upgrade(engine)
    statements: list[str] = []
    sa.event.listen(engine, "before_cursor_execute", lambda _c, _cur, stmt, *_a: statements.append(stmt))
    migrations.ensure_current(engine)
    assert len(statements) == 1, statements
    assert migrations.VERSION_TABLE in statements[0]


def test_concurrent_upgrades_migrate_once(empty_url: str) -> None:
    # Separate engines, as separate task processes would have.
    engines = [sa.create_engine(empty_url, poolclass=sa.pool.NullPool) for _ in range(4)]
    start = threading.Barrier(len(engines))
    results: list[migrations.UpgradeResult] = []
    errors: list[BaseException] = []

    def run(engine: sa.Engine) -> None:
        start.wait()
        try:
            results.append(migrations.upgrade(engine))
        except BaseException as e:  # collected: asserted below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(e,)) for e in engines]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(r.changed for r in results) == [False, False, False, True]
    assert {r.after for r in results} == {migrations.head()}
    assert _schema_diff(engines[0]) == []


def test_a_store_from_a_newer_mlinfra_is_refused(empty_url: str) -> None:
    engine = sa.create_engine(empty_url, poolclass=sa.pool.NullPool)
    migrations.upgrade(engine)
    with engine.begin() as conn:
        conn.execute(sa.text(f"UPDATE {migrations.VERSION_TABLE} SET version_num = '9999_from_the_future'"))
    with pytest.raises(StoreError, match="9999_from_the_future.*newer mlinfra"):
        migrations.upgrade(engine)
    with pytest.raises(StoreError, match="9999_from_the_future"):
        MetricsStore.from_url(empty_url).write_sweep(T0, [])


def test_downgrade_to_the_first_release_and_back(empty_url: str) -> None:
    """Every revision's downgrade undoes its upgrade (the first release's schema comes back)."""
    engine = _first_release_store(empty_url)
    migrations.upgrade(engine)
    migrations.downgrade(engine, "0001_first_release")
    assert migrations.current(engine) == "0001_first_release"
    assert set(sa.inspect(engine).get_table_names()) == {
        "mlinfra_series",
        "mlinfra_samples",
        "mlinfra_sweeps",
        "mlinfra_staging",
        migrations.VERSION_TABLE,
    }
    migrations.upgrade(engine)
    assert _schema_diff(engine) == []


def test_scale_recommendations_keep_their_policy_through_0009_and_back(empty_url: str) -> None:
    """0009 stores a recommendation's policy once, by digest: rows written before and after it,
    and after a downgrade to 0008, read back as the same whole decisions."""
    from mlinfra.config import ScalingPolicy
    from mlinfra.scaling.decision import decide, skipped
    from mlinfra.scaling.records import ScaleRecords

    policy = ScalingPolicy.model_validate(
        {"min_replicas": 1, "max_replicas": 6, "target": {"expr": "up", "value": 50}}
    )
    decisions = [
        decide(policy, model="m", at=T0, current=2, metric=90.0),
        skipped("n", T0, "no Airflow connection 'k8s'", namespace="serving", deployment="n"),
    ]
    engine = sa.create_engine(empty_url, poolclass=sa.pool.NullPool)
    migrations.upgrade(engine)
    records = ScaleRecords(MetricsStore.from_url(empty_url))
    records.save_decisions(decisions, run_id="r1")
    expected = [{**d.to_dict(), "run_id": "r1"} for d in decisions]
    assert records.decisions() == expected
    with engine.connect() as conn:
        stored = conn.execute(sa.text("SELECT decision FROM mlinfra_scale_recommendations")).scalars().all()
        policies = conn.execute(sa.text("SELECT count(*) FROM mlinfra_scale_policies")).scalar_one()
    assert policies == 2  # m's, and the skipped decision's {}
    assert all('"max_replicas"' not in row for row in stored), stored  # the policy is not repeated

    migrations.downgrade(engine, "0008_canary")
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT decision FROM mlinfra_scale_recommendations ORDER BY model"))
        assert [json.loads(r) for (r,) in rows] == [d.to_dict() for d in decisions]  # as 0008 wrote them

    migrations.upgrade(engine)
    assert _schema_diff(engine) == []
    assert records.decisions() == expected  # rows from before 0009 keep their policy in the JSON


def test_cli_current_and_upgrade(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from mlinfra.cli import main

    url = f"sqlite:///{tmp_path / 'store.db'}"
    _first_release_store(url)
    assert main(["store", "current", "--store-url", url]) == 0
    assert capsys.readouterr().out.startswith("none: an empty store, or one made before migrations")
    assert main(["store", "upgrade", "--store-url", url, "--revision", "0002_deployments"]) == 0
    assert "upgraded 0001_first_release (made before migrations: adopted) -> 0002_deployments" in (
        capsys.readouterr().out
    )
    assert main(["store", "current", "--store-url", url]) == 0
    assert (
        capsys.readouterr().out
        == f"0002_deployments (head: {migrations.head()}); run: mlinfra store upgrade\n"
    )
    assert main(["store", "upgrade", "--store-url", url]) == 0
    assert f"upgraded 0002_deployments -> {migrations.head()}" in capsys.readouterr().out
    assert main(["store", "upgrade", "--store-url", url]) == 0
    assert f"already at {migrations.head()}" in capsys.readouterr().out
    assert main(["store", "current", "--store-url", url]) == 0
    assert capsys.readouterr().out == f"{migrations.head()} (head)\n"
    assert main(["store", "upgrade", "--store-url", url, "--revision", "bogus"]) == 1
    assert "--revision 'bogus': unknown; known: 0001_first_release" in capsys.readouterr().err
