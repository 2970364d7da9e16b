"""Prefilled trigger forms and links that work inside Airflow's sandboxed frame (the app, no Airflow DB)."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import pytest

from mlinfra.config import load_fleet
from mlinfra.store import MetricsStore
from mlinfra.ui.trigger import form_fields, image_tag
from tests.ui.fleet_data import fill_store


@pytest.fixture
def client(sqlite_store: MetricsStore) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    from mlinfra.ui.app import create_app

    fill_store(sqlite_store, time.time(), hours=2)
    app = create_app(store=lambda: sqlite_store, fleet=load_fleet, auth=lambda: None)
    with TestClient(app, root_path="/mlinfra") as c:
        yield c


def inputs(html: str) -> dict[str, str]:
    return {
        m.group(1): (re.search(r'value="([^"]*)"', m.group(0)) or re.search("()", "")).group(1)
        for m in re.finditer(r'<input id="f-[^"]+" name="([^"]+)"[^>]*>', html, re.S)
    }


@pytest.mark.parametrize(
    ("image", "tag"),
    [
        ("tensorflow/serving:2.14.1", "2.14.1"),
        ("registry:5000/tf/serving:2.14.1-gpu", "2.14.1-gpu"),
        ("registry:5000/tf/serving", None),
        ("tensorflow/serving:2.14.1@sha256:abc", "2.14.1"),
        (None, None),
    ],
)
def test_image_tag(image: str | None, tag: str | None) -> None:
    assert image_tag(image) == tag


def test_forms_are_prefilled_with_where_the_model_stands() -> None:
    model = load_fleet().model("resnet50-classifier")
    view = {"deployed_version": 7, "image": "tensorflow/serving:2.14.1-gpu", "replicas": {"desired": 3}}

    deploy = {f.name: f for f in form_fields("model_deploy", view, model)}
    assert (deploy["model"].value, deploy["model"].type) == ("resnet50-classifier", "fixed")
    assert (deploy["version"].value, deploy["image_tag"].value, deploy["replicas"].value) == (
        7,
        "2.14.1-gpu",
        3,
    )
    assert "2-8 for this model" in deploy["replicas"].help

    scale = {f.name: f for f in form_fields("model_scale", view, model)}
    assert scale["replicas"].value == 3
    assert "2-8 for this model" in scale["replicas"].help
    assert "cooldown (3m)" in scale["hold"].help

    rollback = [f.name for f in form_fields("model_rollback", view, model)]
    assert rollback == ["model", "version", "reason"]
    with pytest.raises(KeyError):
        form_fields("infra_health_sweep", view, model)


def test_the_fleet_page_links_work_inside_airflows_sandboxed_frame(client: Any) -> None:
    html = client.get("/fleet").text
    # target=_top and target=_blank do nothing in a frame without allow-top-navigation/allow-popups.
    assert "target=" not in html
    airflow_links = re.findall(r"<a ([^>]*)href=\"/dags/[^\"]*\"", html)
    assert airflow_links, "the page links no Airflow run"
    assert all("data-airflow" in attrs for attrs in airflow_links)
    assert '<script src="/mlinfra/static/frame.js" defer></script>' in html
    script = client.get("/static/frame.js")
    assert script.headers["content-type"].startswith("text/javascript")
    assert "top.history.pushState" in script.text


def test_every_model_has_deploy_scale_and_rollback_buttons_opening_prefilled_forms(client: Any) -> None:
    html = client.get("/fleet").text
    for dag_id in ("model_deploy", "model_scale", "model_rollback"):
        assert f'href="/mlinfra/trigger/{dag_id}?model=half-plus-two"' in html

    view = client.get("/api/fleet").json()
    hpt = next(m for m in view["models"] if m["name"] == "half-plus-two")
    form = client.get("/trigger/model_scale", params={"model": "half-plus-two"})
    assert form.status_code == 200
    values = inputs(form.text)
    assert values["model"] == "half-plus-two"
    assert values["replicas"] == str(hpt["replicas"]["desired"])
    assert 'data-dag="model_scale"' in form.text

    deploy = inputs(client.get("/trigger/model_deploy", params={"model": "half-plus-two"}).text)
    assert deploy["version"] == str(hpt["deployed_version"])
    assert deploy["image_tag"] == (image_tag(hpt["image"]) or "")


def test_unknown_forms_and_models_are_404s_naming_what_exists(client: Any) -> None:
    r = client.get("/trigger/infra_health_sweep", params={"model": "half-plus-two"})
    assert r.status_code == 404
    assert "model_deploy, model_scale, model_rollback" in r.json()["detail"]
    r = client.get("/trigger/model_scale", params={"model": "nope"})
    assert r.status_code == 404
    assert "half-plus-two, resnet50-classifier" in r.json()["detail"]


@pytest.mark.slow  # draws the report's charts with matplotlib
def test_today_so_far_is_built_on_request(client: Any) -> None:
    html = client.get("/fleet").text
    assert 'href="/mlinfra/reports/today/report.html"' in html
    report = client.get("/reports/today/report.html")
    assert report.status_code == 200
    assert "Data interval" in report.text
    data = client.get("/reports/today/report.json").json()
    assert data["interval"]["start"].endswith("T00:00:00Z")
