"""mlinfra_canary_runs / mlinfra_canary_measurements: a retry resumes, never duplicates."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from mlinfra.deploy.canary.records import CanaryRecords
from mlinfra.store import MetricsStore


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.integration)])
def records(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[CanaryRecords]:
    if request.param == "sqlite":
        yield CanaryRecords(MetricsStore.from_url(f"sqlite:///{tmp_path / 'store.db'}"))
        return
    postgres_url: str = request.getfixturevalue("postgres_url")
    database = f"canary_{secrets.token_hex(4)}"
    admin = sa.create_engine(postgres_url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{database}"'))
    admin.dispose()
    url = sa.make_url(postgres_url).set(database=database).render_as_string(hide_password=False)
    store = MetricsStore.from_url(url)
    yield CanaryRecords(store)
    store.engine.dispose()


def test_start_is_idempotent_and_keeps_the_position(records: CanaryRecords) -> None:
    records.start("r1", model="m", stable_version=1, canary_version=2, steps=3, stable_replicas=4)
    records.save_state("r1", step=2, entered=True, pause_until=1_800_000_030.5, weight=25, canary_replicas=2)
    # A retried task calls start again: the position must survive.
    records.start("r1", model="m", stable_version=1, canary_version=2, steps=3, stable_replicas=4)
    run = records.get("r1")
    assert run is not None
    assert (run.step, run.entered, run.pause_until, run.weight, run.canary_replicas) == (
        2,
        True,
        1_800_000_030.5,
        25,
        2,
    )
    assert (run.phase, run.stable_replicas, run.ended_at) == ("running", 4, None)
    assert run.started_at.tzinfo is not None


def test_unknown_state_fields_and_phases_are_refused(records: CanaryRecords) -> None:
    records.start("r1", model="m", stable_version=1, canary_version=2, steps=1)
    with pytest.raises(ValueError, match="unknown canary state field"):
        records.save_state("r1", outcome="x")
    with pytest.raises(ValueError, match="phase must be one of"):
        records.save_state("r1", phase="done")
    with pytest.raises(ValueError, match="ends promoted or aborted"):
        records.finish("r1", "running")


def test_the_first_final_phase_and_reason_stay(records: CanaryRecords) -> None:
    records.start("r1", model="m", stable_version=1, canary_version=2, steps=1)
    records.finish("r1", "aborted", reason="analysis error-rate failed")
    records.finish("r1", "promoted", reason="later")
    run = records.get("r1")
    assert run is not None
    assert (run.phase, run.reason) == ("aborted", "analysis error-rate failed")
    assert run.ended_at is not None


def test_a_measurement_is_written_once(records: CanaryRecords) -> None:
    records.start("r1", model="m", stable_version=1, canary_version=2, steps=2)
    first = {
        "step": 1,
        "seq": 0,
        "metric": "latency",
        "verdict": "successful",
        "value": 0.05,
        "stable_value": 0.04,
    }
    assert records.add_measurement("r1", **first, detail={"n": 60}, measured_at=1_800_000_000.0) is True
    # A retry that re-records the same seq changes nothing.
    assert (
        records.add_measurement("r1", **{**first, "verdict": "failed"}, measured_at=1_800_000_001.0) is False
    )
    assert records.add_measurement("r1", step=1, seq=1, metric="latency", verdict="failed", value=float("nan"),
                                   measured_at=1_800_000_030.0) is True  # fmt: skip
    records.add_measurement("r1", step=0, seq=0, metric="golden", verdict="inconclusive", measured_at=1.0)
    got = records.measurements("r1")
    assert [(m.step, m.metric, m.seq, m.verdict) for m in got] == [
        (0, "golden", 0, "inconclusive"),
        (1, "latency", 0, "successful"),
        (1, "latency", 1, "failed"),
    ]
    assert got[1].model == "m"  # taken from the run
    assert got[1].detail == {"n": 60}
    assert got[1].stable_value == 0.04
    assert got[2].value is None  # NaN: no value
    assert [m.seq for m in records.measurements("r1", step=1)] == [0, 1]
    assert records.measurements("other") == []


def test_runs_for_model_newest_first(records: CanaryRecords) -> None:
    for run_id in ("a", "b", "c"):
        records.start(
            run_id, model="m" if run_id != "b" else "other", stable_version=1, canary_version=2, steps=1
        )
    assert [r.run_id for r in records.runs_for_model("m")] == ["c", "a"]
    assert records.runs_for_model("m", limit=1)[0].to_dict()["run_id"] == "c"


def test_latest_runs_is_each_model_s_newest(records: CanaryRecords) -> None:
    assert records.latest_runs() == {}
    for run_id, model in (("a", "m"), ("b", "other"), ("c", "m")):
        records.start(run_id, model=model, stable_version=1, canary_version=2, steps=1)
    latest = records.latest_runs()
    assert {m: r.run_id for m, r in latest.items()} == {"m": "c", "other": "b"}
    assert latest["m"] == records.runs_for_model("m", limit=1)[0]


def test_measurements_of_runs_as_measurements_gives_them(records: CanaryRecords) -> None:
    for run_id in ("r1", "r2"):
        records.start(run_id, model="m", stable_version=1, canary_version=2, steps=2)
    for step, seq, metric in ((1, 1, "latency"), (0, 0, "golden"), (1, 0, "latency")):
        records.add_measurement(
            "r1", step=step, seq=seq, metric=metric, verdict="successful", step_kind="analysis", value=1.0
        )
    got = records.measurements_of_runs(["r1", "r2", "none"])
    assert got == {"r1": records.measurements("r1"), "r2": [], "none": []}
    assert [(m.step, m.metric, m.seq) for m in got["r1"]] == [
        (0, "golden", 0),
        (1, "latency", 1),
        (1, "latency", 0),
    ]
    assert records.measurements_of_runs([]) == {}
