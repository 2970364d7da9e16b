"""Skip, or fail under CI, when a real component cannot be found.

``make test`` on a laptop without PostgreSQL skips that suite with one line
saying why; CI sets ``MLINFRA_REQUIRE_INTEGRATION=1`` and the same situation
fails, so a green CI always means the real component was exercised.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable

import pytest


def integration_required() -> bool:
    return os.environ.get("MLINFRA_REQUIRE_INTEGRATION", "") not in ("", "0", "false", "no")


def unavailable(component: str, reason: str) -> None:
    """Skip (locally) or fail (CI) because ``component`` cannot be used here."""
    message = f"{component} unavailable: {reason}"
    if integration_required():
        pytest.fail(
            f"{message} (MLINFRA_REQUIRE_INTEGRATION=1 turns this skip into a failure)", pytrace=False
        )
    pytest.skip(message)


def require_binary(component: str, candidates: Iterable[str]) -> str:
    """The first of ``candidates`` found on PATH (or as an absolute path), else skip/fail."""
    tried = list(candidates)
    for c in tried:
        found = c if os.path.isabs(c) and os.access(c, os.X_OK) else shutil.which(c)
        if found:
            return found
    unavailable(component, f"none of {', '.join(tried)} is installed")
    raise AssertionError("unreachable")
