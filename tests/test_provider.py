"""mlinfra.provider: the connection types Airflow's ProvidersManager registers from the entry point."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import airflow
import jsonschema
import pytest

from mlinfra import provider
from mlinfra.hooks.tf_serving import DEFAULT_GRPC_PORT

ROOT = Path(__file__).resolve().parents[1]
AIRFLOW_DIR = Path(airflow.__file__).parent


def test_provider_info_follows_airflows_schema() -> None:
    schema = json.loads((AIRFLOW_DIR / "provider_info.schema.json").read_text())
    jsonschema.validate(provider.get_provider_info(), schema)


def test_the_entry_point_names_the_function() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    target = project["entry-points"]["apache_airflow_provider"]["provider_info"]
    module, _, name = target.partition(":")
    assert getattr(importlib.import_module(module), name) is provider.get_provider_info


@pytest.mark.parametrize("entry", provider.CONNECTION_TYPES, ids=lambda e: e["connection-type"])
def test_each_connection_type_names_its_hook(entry: dict) -> None:
    module, _, name = entry["hook-class-name"].rpartition(".")
    hook = getattr(importlib.import_module(module), name)
    assert hook.conn_type == entry["connection-type"]
    assert hook.hook_name == entry["hook-name"]


@pytest.mark.parametrize("entry", provider.CONNECTION_TYPES, ids=lambda e: e["connection-type"])
def test_field_behaviour_follows_airflows_schema(entry: dict) -> None:
    schema = json.loads((AIRFLOW_DIR / "customized_form_field_behaviours.schema.json").read_text())
    jsonschema.validate(provider.field_behaviour(entry["connection-type"]), schema)


def test_hooks_return_the_declared_behaviour() -> None:
    from mlinfra.hooks.prometheus import PrometheusHook
    from mlinfra.hooks.tf_serving import TFServingHook

    assert TFServingHook.get_ui_field_behaviour() == provider.field_behaviour("tf_serving")
    assert PrometheusHook.get_ui_field_behaviour() == provider.field_behaviour("prometheus")
    assert provider.field_behaviour("tf_serving")["placeholders"]["port"] == str(DEFAULT_GRPC_PORT)


def test_tf_serving_form_fields_are_the_extras_the_hook_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    from mlinfra.hooks.tf_serving import TFServingHook

    (entry,) = [c for c in provider.CONNECTION_TYPES if c["connection-type"] == "tf_serving"]
    assert set(entry["conn-fields"]) == {
        "rest_url", "timeout", "tls", "server_name", "ca_cert", "client_cert", "client_key"
    }  # fmt: skip
    # What the form saves: the fields as plain keys of the extra, booleans as booleans.
    extra = {"rest_url": "http://tfs:8501", "timeout": 4, "tls": True, "server_name": "tfs.example"}
    monkeypatch.setenv(
        "AIRFLOW_CONN_TFS_FORM",
        json.dumps({"conn_type": "tf_serving", "host": "tfs", "port": 8500, "extra": extra}),
    )
    hook = TFServingHook("tfs_form")
    assert (hook.rest_url, hook.timeout, hook.grpc_target) == ("http://tfs:8501", 4.0, "tfs:8500")
    assert hook._tls is not None
    assert hook._tls.server_name == "tfs.example"


@pytest.mark.integration
def test_airflow_lists_the_provider_and_its_hooks(tmp_path: Path) -> None:
    """Build the package's metadata as `make setup` installs it, and ask the Airflow CLI."""
    wheels = tmp_path / "wheels"
    # The backend (uv_build) runs the uv-build program it finds on PATH: the venv's own.
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", wheels, ROOT],
        check=True,
        cwd=tmp_path,
        env={**os.environ, "PATH": path},
    )
    site = tmp_path / "site"
    with zipfile.ZipFile(next(wheels.glob("mlinfra-*.whl"))) as wheel:
        wheel.extractall(site, [n for n in wheel.namelist() if ".dist-info/" in n])
    env = {
        "PATH": str(Path(sys.executable).parent),
        "HOME": str(tmp_path),
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "PYTHONPATH": f"{site}:{ROOT / 'plugins'}",
    }
    airflow_cli = str(Path(sys.executable).parent / "airflow")
    providers = subprocess.run(
        [airflow_cli, "providers", "list"], env=env, capture_output=True, text=True, check=True
    ).stdout
    assert any(line.split("|")[0].strip() == "mlinfra" for line in providers.splitlines())
    hooks = subprocess.run(
        [airflow_cli, "providers", "hooks"], env=env, capture_output=True, text=True, check=True
    ).stdout
    for conn_type, hook in [
        ("tf_serving", "mlinfra.hooks.tf_serving.TFServingHook"),
        ("prometheus", "mlinfra.hooks.prometheus.PrometheusHook"),
        ("alertmanager", "mlinfra.hooks.alertmanager.AlertmanagerHook"),
    ]:
        rows = [[cell.strip() for cell in line.split("|")[:2]] for line in hooks.splitlines()]
        assert [conn_type, hook] in rows, hooks
