"""The promtool-format runner's pieces: Go formatting, reports, exit codes (reading: test_promtool_files)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlinfra.rules.promtool import (
    go_duration,
    go_labels,
    model_duration,
    run_test_file,
    run_test_files,
)

DATA = Path(__file__).parent / "data"


@pytest.mark.parametrize(
    ("seconds", "go", "model"),
    [
        (0, "0s", "0s"),
        (90, "1m30s", "1m30s"),
        (3600, "1h0m0s", "1h"),
        (0.5, "500ms", "500ms"),
        (864000, "240h0m0s", "10d"),
        (604800, "168h0m0s", "1w"),
    ],
)
def test_durations_print_like_go_and_prometheus(seconds: float, go: str, model: str) -> None:
    assert go_duration(seconds) == go
    assert model_duration(seconds) == model


def test_labels_print_like_prometheus() -> None:
    assert go_labels({"b": 'say "hi"', "a": "x\ny"}) == '{a="x\\ny", b="say \\"hi\\""}'


def test_exit_codes_and_report(capsys) -> None:  # type: ignore[no-untyped-def]
    assert run_test_files([DATA / "edge_test.yaml"]) == 0
    assert run_test_files([DATA / "edge_test.yaml", DATA / "failing_test.yaml"]) == 1
    out = capsys.readouterr()
    assert out.out.count("  SUCCESS") == 2
    assert "alertname: HighMemoryUsage, time: 6m" in out.err


def test_stale_in_input_series_is_a_staleness_marker(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    f = tmp_path / "stale_test.yaml"
    body = (
        "rule_files: []\ntests:\n  - input_series:\n      - series: up\n        values: '1 stale'\n"
        "    promql_expr_test:\n      - expr: up\n        eval_time: {t}\n        exp_samples: {exp}\n"
    )
    f.write_text(body.format(t="1m", exp="[]"))
    assert run_test_file(f) is True, capsys.readouterr().err
    # The sample before the marker is inside the lookback: without the marker it would be returned.
    f.write_text(body.format(t="1m", exp="[{labels: 'up', value: 1}]"))
    assert run_test_file(f) is False
    f.write_text(body.format(t="59s", exp="[{labels: 'up', value: 1}]"))
    assert run_test_file(f) is True, capsys.readouterr().err


def test_unknown_fields_and_missing_rule_files(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    f = tmp_path / "bad_test.yaml"
    f.write_text("rule_files: [nope.yaml]\nevaluation_intervl: 1m\ntests: []\n")
    assert run_test_file(f) is False
    assert "field evaluation_intervl not found in type main.unitTestFile" in capsys.readouterr().err
    f.write_text("rule_files: [nope.yaml]\ntests: []\n")
    assert run_test_file(f) is False
    assert "no such file or directory" in capsys.readouterr().err
