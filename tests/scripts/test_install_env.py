"""scripts/install_env.sh (what `make setup` runs): uv installs the pins, pip takes over when uv fails;
a new venv sits on a shared environment built once per set of pins.

A tiny project with one pinned requirement stands in for this one, so the test takes
seconds; it needs the package index (marked integration).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
UV_PIN = next(line for line in (ROOT / "constraints.txt").read_text().splitlines() if line.startswith("uv=="))


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "requirements.txt").write_text("six==1.17.0\n")
    (tmp_path / "requirements-dev.txt").write_text(f"{UV_PIN}\n")
    (tmp_path / "constraints.txt").write_text(f"six==1.17.0\n{UV_PIN}\n")
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "tiny"\nversion = "0.1"\n[tool.setuptools]\npy-modules = []\n'
        '[build-system]\nrequires = ["setuptools>=61"]\nbuild-backend = "setuptools.build_meta"\n'
    )
    subprocess.run([sys.executable, "-m", "venv", str(tmp_path / "venv")], check=True)
    return tmp_path


def install(project: Path, venv: str = "venv", **env: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(ROOT / "scripts" / "install_env.sh"), str(project / venv)],
        cwd=project,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    check = subprocess.run([str(project / venv / "bin" / "python"), "-c", "import six"], capture_output=True)
    assert check.returncode == 0, "the pinned requirement is not installed"
    return result


def test_uv_installs_the_pins(project: Path) -> None:
    result = install(project, MLINFRA_INSTALLER="uv")
    assert f"installed with uv {UV_PIN.split('==')[1]}" in result.stdout


def test_pip_takes_over_when_uv_fails(project: Path) -> None:
    fake = project / "fakebin"
    fake.mkdir()
    version = UV_PIN.split("==")[1]
    (fake / "uv").write_text(
        f'#!/bin/sh\n[ "$1" = "--version" ] && {{ echo "uv {version}"; exit 0; }}\necho boom >&2; exit 2\n'
    )
    (fake / "uv").chmod(0o755)
    result = install(project, MLINFRA_INSTALLER="uv", PATH=f"{fake}:{os.environ['PATH']}")
    assert "falling back to pip" in result.stderr
    assert "installed with pip" in result.stdout


def _clone(project: Path, to: Path) -> Path:
    to.mkdir()
    for name in ("requirements.txt", "requirements-dev.txt", "constraints.txt", "pyproject.toml"):
        (to / name).write_text((project / name).read_text())
    return to


def test_a_new_venv_sits_on_a_shared_environment_built_once(project: Path, tmp_path: Path) -> None:
    envs = tmp_path / "envs"
    first = install(project, "thin", MLINFRA_ENV_CACHE=str(envs), MLINFRA_INSTALLER="uv")
    assert "building the shared environment" in first.stdout
    (shared,) = [p for p in envs.iterdir() if p.is_dir()]
    assert (shared / ".complete").exists()
    thin = project / "thin"
    # The pin lives in the shared environment only; the thin venv reaches it through a .pth.
    assert not list((thin / "lib").glob("python3*/site-packages/six.py"))
    assert list((shared / "lib").glob("python3*/site-packages/six.py"))
    assert (thin / ".mlinfra-shared-env").read_text().strip() == str(shared)
    # Native programs of the shared bin/ are linked, console scripts re-pointed at the thin python.
    assert (thin / "bin" / "uv").resolve() == (shared / "bin" / "uv").resolve()
    # The project itself is installed (editable) in the thin venv, not in the shared one.
    listed = subprocess.run(
        [str(thin / "bin" / "python"), "-c", "import importlib.metadata as m; print(m.version('tiny'))"],
        capture_output=True,
        text=True,
    )
    assert listed.stdout.strip() == "0.1", listed.stderr
    assert not list((shared / "lib").glob("python3*/site-packages/*tiny*"))

    # A second clone with the same pins links to the same environment: nothing is installed.
    other = _clone(project, tmp_path / "clone")
    second = install(other, "venv", MLINFRA_ENV_CACHE=str(envs), MLINFRA_INSTALLER="uv")
    assert "building the shared environment" not in second.stdout
    assert f"uses the shared environment {shared}" in second.stdout
    assert [p for p in envs.iterdir() if p.is_dir()] == [shared]

    # Other pins, another environment; an interrupted build (no .complete) is built again.
    (other / "constraints.txt").write_text((other / "constraints.txt").read_text() + "\n")
    (shared / ".complete").unlink()
    third = install(project, "thin", MLINFRA_ENV_CACHE=str(envs), MLINFRA_INSTALLER="uv")
    assert "building the shared environment" in third.stdout
    assert (shared / ".complete").exists()


def test_an_existing_full_venv_is_installed_into_as_before(project: Path, tmp_path: Path) -> None:
    envs = tmp_path / "envs"
    result = install(project, MLINFRA_ENV_CACHE=str(envs), MLINFRA_INSTALLER="uv")
    assert "shared environment" not in result.stdout
    assert list((project / "venv" / "lib").glob("python3*/site-packages/six.py"))
    assert not envs.exists()
