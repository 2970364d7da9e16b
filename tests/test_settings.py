"""mlinfra.settings: one source per setting, and the README's table generated from it."""

from __future__ import annotations

import logging
import re
import subprocess
from pathlib import Path

import pytest

from mlinfra import settings
from mlinfra.deploy.settings import DeploySettings

ROOT = Path(__file__).resolve().parents[1]
# MLINFRA_ names in the repository that are not settings someone sets.
NOT_SETTINGS = {
    "MLINFRA_STORE",  # part of AIRFLOW_CONN_MLINFRA_STORE, a connection
    "MLINFRA_SAMPLES",  # the table's name in SQL
    "MLINFRA_STORE_FAULTS",  # a fault-injection marker inside tests
    "MLINFRA_TEST_ABSENT_K8S",  # a connection id the tests make sure is absent
    "MLINFRA_K8S_STANDIN_URL",  # printed by the stand-in for a shell, not read
    "MLINFRA_DEMO_K8S_URL",  # printed by make demo for the user, not read
    "MLINFRA_DEMO_TF_SERVING_REST",  # likewise
}


def readme_table() -> str:
    text = (ROOT / "README.md").read_text()
    match = re.search(r"<!-- settings-table:start[^>]*-->\n(.*?)<!-- settings-table:end -->", text, re.S)
    assert match, "README.md lost its settings-table markers"
    return match.group(1)


def test_readme_table_is_the_generated_one() -> None:
    assert readme_table() == settings.environment_table(), (
        "README's settings table is stale: paste the output of `python -m mlinfra.settings`"
    )


def test_every_mlinfra_variable_in_the_repository_is_registered() -> None:
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True)
    found: set[str] = set()
    for name in files.stdout.split():
        path = ROOT / name
        if (
            name in ("README.md", "tests/test_settings.py")
            or not path.is_file()
            or path.suffix in (".png", ".pb", ".db")
        ):
            continue
        found |= set(re.findall(r"\bMLINFRA_[A-Z0-9_]*[A-Z0-9]\b", path.read_text(errors="replace")))
    unregistered = sorted(found - {s.name for s in settings.ENVIRONMENT} - NOT_SETTINGS)
    assert not unregistered, f"add these to mlinfra.settings.ENVIRONMENT: {unregistered}"


def test_names_are_unique() -> None:
    names = [s.name for s in settings.ENVIRONMENT]
    assert len(names) == len(set(names))


def test_the_sweep_schedule_follows_the_interval() -> None:
    # Airflow reads the schedule; the reports' step and the docs read the interval.
    assert (settings.SWEEP_INTERVAL, settings.SWEEP_SCHEDULE) == (300.0, "*/5 * * * *")
    assert settings.SWEEP_RUN_TIMEOUT < settings.SWEEP_INTERVAL


def test_sweep_scale_timeout_default_fits_the_run() -> None:
    assert settings.sweep_scale_timeout({}) == 180.0
    assert settings.sweep_scale_timeout({}) <= settings.SWEEP_RUN_TIMEOUT - settings.SWEEP_SCALE_MARGIN


def test_sweep_scale_timeout_is_cut_to_the_run_timeout_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="mlinfra.settings"):
        got = settings.sweep_scale_timeout({"MLINFRA_SWEEP_SCALE_TIMEOUT": "10m"})
    assert got == settings.SWEEP_RUN_TIMEOUT - settings.SWEEP_SCALE_MARGIN
    assert "MLINFRA_SWEEP_SCALE_TIMEOUT=600.0s is longer than the sweep's run timeout" in caplog.text


def test_manual_scale_timeout_is_its_own_setting() -> None:
    env = {"MLINFRA_SWEEP_SCALE_TIMEOUT": "1m"}
    assert settings.manual_scale_timeout(env) == 600.0
    assert settings.manual_scale_timeout({"MLINFRA_SCALE_TIMEOUT": "20m"}) == 1200.0


def test_a_bad_duration_names_the_variable() -> None:
    with pytest.raises(ValueError, match=r"MLINFRA_SCALE_POLL_INTERVAL='fast'"):
        settings.scale_poll_interval({"MLINFRA_SCALE_POLL_INTERVAL": "fast"})


def test_empty_means_the_default() -> None:
    assert settings.scale_poll_interval({"MLINFRA_SCALE_POLL_INTERVAL": ""}) == 5.0


def test_deploy_settings_defaults_are_the_registered_ones() -> None:
    assert DeploySettings.from_env({}) == DeploySettings()
    assert DeploySettings().rollout_timeout == 900.0
    assert DeploySettings.from_env({"MLINFRA_DEPLOY_MODEL_TIMEOUT": "2m"}).model_timeout == 120.0


def test_unknown_setting_is_a_key_error() -> None:
    with pytest.raises(KeyError):
        settings.setting("MLINFRA_NOPE")
