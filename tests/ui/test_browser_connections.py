"""The connection form in a real browser: mlinfra's provider adds TF Serving with its own fields.

Uses the session's demo and signed-in page (``tests/ui/conftest.py``: ``make demo`` in a
temporary folder, Debian's Chromium through Playwright). The provider comes from the installed
package's entry point (``apache_airflow_provider``): after changing ``pyproject.toml``
re-run ``make setup`` so the metadata has it.
"""

from __future__ import annotations

import re
from importlib.metadata import entry_points
from typing import Any

import pytest

from tests.ui.browser_support import ARTIFACTS, Demo

pytestmark = pytest.mark.integration


def test_add_connection_offers_tf_serving_with_its_fields(page: Any, demo: Demo) -> None:
    names = [
        ep.value
        for ep in entry_points(group="apache_airflow_provider")
        if ep.dist and ep.dist.name == "mlinfra"
    ]
    assert names == ["mlinfra.provider:get_provider_info"], (
        "the installed mlinfra has no provider entry point: re-run `make setup`"
    )
    page.goto(f"{demo.base}/connections")
    page.get_by_role("button", name=re.compile(r"Add Connection", re.I)).click()
    form = page.get_by_role("dialog")
    type_select = form.get_by_role("combobox").first
    type_select.click()
    type_select.fill("TensorFlow")
    page.get_by_role("option", name=re.compile(r"TensorFlow Serving")).click()
    # Relabelled standard fields, then the provider's own fields (an accordion, closed at first).
    for label in ("gRPC host", "gRPC port"):
        form.get_by_text(label, exact=True).first.wait_for()
    form.get_by_role("button", name="Extra Fields", exact=True).click()
    for label in ("REST URL", "Timeout (seconds)", "TLS server name", "CA certificate", "Client key"):
        form.get_by_text(label, exact=True).first.wait_for()
    # Hidden by the field behaviour: TF Serving has no login.
    assert form.get_by_text("Login", exact=True).count() == 0
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "connections-tf-serving.png"), full_page=True)
