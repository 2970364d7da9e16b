"""pyproject.toml against the pins: the package's dependencies are requirements.txt's, and
its build backend is one both installers of `make setup` can use without the network.

uv builds a project whose backend is uv_build natively (no Python build step) only when
the backend's version range includes uv's own version; pip builds it with the uv-build
pinned in requirements-dev.txt (no build isolation). If either pin moves out of the range,
`make setup` still works but silently falls back to a slower path, so this test says so.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]


def _requirement_lines(name: str) -> list[str]:
    lines = (ROOT / name).read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def _pin(name: str) -> str:
    for line in _requirement_lines("constraints.txt"):
        requirement = Requirement(line)
        if canonicalize_name(requirement.name) == canonicalize_name(name):
            (spec,) = requirement.specifier
            return spec.version
    raise AssertionError(f"{name} is not pinned in constraints.txt")


PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_the_package_depends_on_exactly_the_pins_of_requirements_txt() -> None:
    assert PYPROJECT["project"]["dependencies"] == _requirement_lines("requirements.txt")


def test_the_build_backend_range_takes_the_pinned_uv_and_uv_build() -> None:
    (backend,) = [Requirement(r) for r in PYPROJECT["build-system"]["requires"]]
    assert PYPROJECT["build-system"]["build-backend"] == "uv_build"
    assert backend.name == "uv_build"
    # uv's native build: the range must include the installer's own version.
    assert backend.specifier.contains(_pin("uv")), (backend, _pin("uv"))
    # pip's fallback (no build isolation) uses the backend installed from requirements-dev.txt.
    assert backend.specifier.contains(_pin("uv-build")), (backend, _pin("uv-build"))
    assert f"uv-build=={_pin('uv-build')}" in _requirement_lines("requirements-dev.txt")


def test_the_module_root_is_airflows_plugins_folder() -> None:
    settings = PYPROJECT["tool"]["uv"]["build-backend"]
    assert (ROOT / settings["module-root"] / settings["module-name"] / "__init__.py").is_file()
