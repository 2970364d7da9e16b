"""The command line: rules check / rules test / query (the other commands are covered by their modules' tests)."""

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
    bad.write_text("groups:\n  - name: g\n    rules:\n      - alert: X\n        expr: topk(2, up)\n")
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
    assert 'ml_cpu_usage_percent{core="all", host="h"} => 91.5' in capsys.readouterr().out
    assert (
        main(["query", "sum(ml_cpu_usage_percent) * 2", "--time", "2027-01-15T08:10:00Z", "--store-url", url])
        == 0
    )
    assert "empty result" in capsys.readouterr().out  # 10 minutes after the sample: outside the lookback
    assert main(["query", "topk(1, up)", "--store-url", url]) == 1
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
    assert main([*argv, "--store-url", f"sqlite:///{tmp_path / 's.db'}"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(expected)
    assert "Traceback" not in err


def test_fleet_check_of_a_recursive_alias_is_an_error_message(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text("models: &m [*m]\ncost: {gpu_hour: 1, cpu_hour: 1}\n")
    assert main(["fleet", "check", "--file", str(fleet)]) == 1
    assert "models[0]: input should be a valid dictionary" in capsys.readouterr().err
