"""The command line: rules check / rules test / query / report / store series, and what every command announces."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlinfra.cli import main, parse_time
from mlinfra.samples import Sample
from mlinfra.store import MetricsStore

ROOT = Path(__file__).resolve().parents[1]


def test_rules_check_accepts_the_shipped_files_and_refuses_a_bad_one(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    shipped = sorted(str(p) for p in (ROOT / "include" / "alert_rules").glob("*.yaml"))
    assert main(["rules", "check", *shipped]) == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text("groups:\n  - name: g\n    rules:\n      - alert: X\n        expr: limitk(2, up)\n")
    assert main(["rules", "check", shipped[0], str(bad)]) == 1
    err = capsys.readouterr().err
    assert f"{bad}:5: group 'g', rule 'X': expr: unsupported by the local engine" in err


def test_rules_test_exit_code(capsys) -> None:  # type: ignore[no-untyped-def]
    data = ROOT / "tests" / "rules" / "data"
    assert main(["rules", "test", str(data / "edge_test.yaml")]) == 0
    assert main(["rules", "test", str(data / "failing_test.yaml")]) == 1
    assert "exp:" in capsys.readouterr().err


def test_query_evaluates_on_the_store(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp_path / 'store.db'}"
    store = MetricsStore.from_url(url)
    store.write_sweep(1_800_000_000, [Sample("ml_cpu_usage_percent", {"core": "all", "host": "h"}, 91.5)])
    assert main(["query", "ml_cpu_usage_percent > 85", "--time", "1800000060", "--store-url", url]) == 0
    out = capsys.readouterr()
    assert 'ml_cpu_usage_percent{core="all", host="h"} => 91.5 @ 2027-01-15T08:01:00Z' in out.out
    assert f"mlinfra: store {url.replace('sqlite:///', 'sqlite:///')}" in out.err
    assert (
        main(["query", "sum(ml_cpu_usage_percent) * 2", "--time", "2027-01-15T08:10:00Z", "--store-url", url])
        == 0
    )
    assert "empty result" in capsys.readouterr().out  # 10 minutes after the sample: outside the lookback
    assert main(["query", "limitk(1, up)", "--store-url", url]) == 1
    assert "unsupported by the local engine" in capsys.readouterr().err


def test_parse_time() -> None:
    assert parse_time("1800000000") == 1_800_000_000.0
    assert parse_time("2027-01-15T08:00:00Z") == 1_800_000_000.0
    assert parse_time("2027-01-15T08:00:00+01:00") == 1_800_000_000.0 - 3600


def test_fleet_check_validates_each_models_manifests_against_the_schema(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlinfra.config import load_fleet
    from mlinfra.deploy import manifests

    fleet_file = ROOT / "include" / "fleet.yaml"
    assert main(["fleet", "check", "--file", str(fleet_file)]) == 0
    out = capsys.readouterr().out
    version = load_fleet(fleet_file).kubernetes_version
    assert f"manifests against the Kubernetes {version} API schema:\n  half-plus-two: ok\n" in out
    assert "\n  resnet50-classifier: ok\n" in out

    # A template typo (the same templates, one field misspelt): refused per model, with the path.
    for name in manifests.TEMPLATES:
        (tmp_path / name).write_text((manifests.TEMPLATE_DIR / name).read_text())
    template = tmp_path / "deployment.yaml.j2"
    template.write_text(template.read_text().replace("imagePullPolicy:", "imagePullPolicyy:", 1))
    original = manifests.render_manifests
    monkeypatch.setattr(manifests, "render_manifests", lambda values: original(values, tmp_path))
    assert main(["fleet", "check", "--file", str(fleet_file)]) == 1
    out = capsys.readouterr().out
    for model in ("half-plus-two", "resnet50-classifier"):
        assert (
            f"  {model}: 1 problem(s)\n    Deployment '{model}': spec.template.spec.containers[0].imagePullPolicyy: unknown field"
            in out
        )


# ---------------------------------------------------------------------- bad values (issue 11)


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["store", "series", "m", "--since", "bogus"], "error: --since 'bogus': not a Prometheus duration"),
        (["store", "retention", "--keep", "3 days"], "error: --keep '3 days': not a Prometheus duration"),
        (["query", "up", "--time", "nan"], "error: --time 'nan': use finite epoch seconds"),
        (["query", "up", "--time", "inf"], "error: --time 'inf': use finite epoch seconds"),
    ],
)
def test_bad_option_values_are_reported_in_one_line(tmp_path: Path, capsys, argv, expected) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "s.db").touch()  # an existing (empty) SQLite store: the option is what is wrong
    url = f"sqlite:///{tmp_path / 's.db'}"
    assert main([*argv, "--store-url", url]) == 1
    err = capsys.readouterr().err
    # The first line says which store and Airflow the command uses; then the error.
    assert err.splitlines()[-1].startswith(expected)
    assert "Traceback" not in err


def test_fleet_check_of_a_recursive_alias_is_an_error_message(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text("models: &m [*m]\ncost: {gpu_hour: 1, cpu_hour: 1}\n")
    assert main(["fleet", "check", "--file", str(fleet)]) == 1
    assert "models[0]: input should be a valid dictionary" in capsys.readouterr().err


@pytest.mark.usefixtures("airflow_loaded")
def test_every_command_says_which_store_airflow_and_fleet_it_uses(
    tmp_path: Path, capsys, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("AIRFLOW_CONN_MLINFRA_STORE", raising=False)
    assert main(["fleet", "check"]) == 0
    err = capsys.readouterr().err
    assert (
        f"mlinfra: Airflow AIRFLOW_HOME={tmp_path / 'home'}; AIRFLOW_CONN_MLINFRA_STORE not set; fleet "
        in err
    )


@pytest.mark.usefixtures("airflow_loaded")
def test_reading_a_store_that_does_not_exist_names_it_instead_of_creating_it(
    tmp_path: Path, capsys, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "wrong-home"))
    monkeypatch.delenv("AIRFLOW_CONN_MLINFRA_STORE", raising=False)
    assert main(["store", "series", "ml_cpu_usage_percent"]) == 1
    err = capsys.readouterr().err
    missing = tmp_path / "wrong-home" / "mlinfra" / "store.db"
    assert f"error: no store at {missing}" in err
    assert "source .demo/env.sh" in err
    assert not missing.exists()


def test_store_series_prints_rfc3339_times(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    import time

    from mlinfra.timestamps import rfc3339

    url = f"sqlite:///{tmp_path / 'store.db'}"
    t = float(int(time.time()) - 60)
    MetricsStore.from_url(url).write_sweep(t, [Sample("ml_cpu_usage_percent", {"core": "all"}, 3.5)])
    assert main(["store", "series", "ml_cpu_usage_percent", "--store-url", url]) == 0
    assert f'ml_cpu_usage_percent{{core="all"}} 3.5  at {rfc3339(t)} (1m' in capsys.readouterr().out


def test_report_of_today_so_far(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    import time

    url = f"sqlite:///{tmp_path / 'store.db'}"
    now = time.time()
    store = MetricsStore.from_url(url)
    for k in range(3):
        store.write_sweep(
            now - 300 * (k + 1), [Sample("ml_cpu_usage_percent", {"core": "all", "host": "h"}, 5.0)]
        )
    out_dir = tmp_path / "out"
    assert main(["report", "--day", "today", "--store-url", url, "--out", str(out_dir)]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("report of [")
    (folder,) = out_dir.iterdir()
    assert "--" in folder.name  # an interval shorter than a day is named by its bounds
    html = (folder / "report.html").read_text()
    assert "Data interval" in html


def test_day_interval() -> None:
    import pytest

    from mlinfra.cli import day_interval
    from mlinfra.exceptions import MlinfraError

    now = 1_800_050_000.0  # 2027-01-15 21:53:20 UTC
    assert day_interval("today", now) == (1_800_000_000.0 - 8 * 3600, now)
    assert day_interval("yesterday", now) == (1_800_000_000.0 - 8 * 3600 - 86400, 1_800_000_000.0 - 8 * 3600)
    assert day_interval("2027-01-10", now)[1] - day_interval("2027-01-10", now)[0] == 86400
    with pytest.raises(MlinfraError, match="has not started yet"):
        day_interval("2027-02-01", now)
    with pytest.raises(MlinfraError, match="use today, yesterday or a date"):
        day_interval("last week", now)


def test_store_retention_prunes_samples_recommendations_and_rule_snapshots(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    import time

    from mlinfra.config import ScalingPolicy
    from mlinfra.rules.state import StoreAlertStates
    from mlinfra.scaling.decision import decide
    from mlinfra.scaling.records import ScaleRecords

    url = f"sqlite:///{tmp_path / 'store.db'}"
    store = MetricsStore.from_url(url)
    now = float(int(time.time()))  # whole seconds: the store keeps milliseconds
    old, recent = now - 3 * 3600, now - 600
    policy = ScalingPolicy.model_validate(
        {"min_replicas": 1, "max_replicas": 4, "target": {"expr": "m", "value": 1}}
    )
    records, states = ScaleRecords(store), StoreAlertStates(store)
    for ts in (old, recent):
        store.write_sweep(ts, [Sample("ml_cpu_usage_percent", {"core": "all", "host": "h"}, 1.0)])
        records.save_decisions([decide(policy, model="m", at=ts, current=1, metric=1.0)])
        # Two snapshots of one group: the older is pruned, the group's latest always stays.
        states.save("rules.yaml", "g", ts, {}, [])
    assert main(["store", "retention", "--keep", "1h", "--store-url", url]) == 0
    out = capsys.readouterr().out
    assert "deleted 1 samples, 0 empty series, 1 scale recommendations and 1 rule-group snapshots" in out
    assert [d["at"] for d in records.decisions("m")] == [recent]
    assert [p[0] for _, points in store.query_range("ml_cpu_usage_percent", [], 0, now) for p in points] == [
        recent
    ]
