"""scripts/install_env.sh (what `make setup` runs): uv installs the pins, pip takes over when uv fails.

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


def install(project: Path, **env: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(ROOT / "scripts" / "install_env.sh"), str(project / "venv")],
        cwd=project,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    check = subprocess.run(
        [str(project / "venv" / "bin" / "python"), "-c", "import six"], capture_output=True
    )
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
