"""The FastAPI app the Airflow API server mounts under ``/mlinfra`` (see :mod:`mlinfra.plugin`).

Routes (all behind Airflow's own authentication: the UI's session cookie or an
``Authorization: Bearer <JWT>`` from ``POST /auth/token``; 401/403 otherwise):

=================================  =====================================================
``GET /mlinfra/fleet``              the "ML Fleet" page (``?hours=1|6|24``, ``&alerts=all``)
``GET /mlinfra/api/fleet``          the same data as JSON
``GET /mlinfra/metrics``            the latest sweep in the Prometheus text format
``GET /mlinfra/audit/{ns}/{name}``  every deploy and scale event of one Deployment
``GET /mlinfra/reports/{day}/{f}``  a daily report's ``report.html|json|csv`` (``today``: today
                                    so far, built on request)
``GET /mlinfra/trigger/{dag_id}``   a trigger form prefilled for ``?model=`` (Deploy, Scale,
                                    Roll back; see :mod:`mlinfra.ui.trigger`)
``GET /mlinfra/backtest``           backtest a rule file over a window (``?file=&start=&end=&step=``;
                                    see :mod:`mlinfra.ui.rule_pages`)
``GET /mlinfra/alerts/{name}/why``  why an alert fired (``?labels={json}&at=``)
=================================  =====================================================

Links to Airflow's own pages carry ``data-airflow``; ``static/frame.js`` opens them in
Airflow's window when the page is shown inside Airflow's navigation (a sandboxed
iframe: ``target="_top"`` and popups do nothing there), and as plain links otherwise.

Build it yourself for tests or another server::

    app = create_app(store=lambda: MetricsStore.from_url("sqlite:///:memory:"), fleet=load_fleet)

Who may see it: any user the auth manager lets see the Airflow website
(``AccessView.WEBSITE``), the same check as Airflow's own UI pages.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote, unquote, urlsplit

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

from mlinfra.config import Fleet, load_fleet
from mlinfra.gc_pause import collection_paused
from mlinfra.metric_families import typed_exposition
from mlinfra.samples import Sample
from mlinfra.store import MetricsStore
from mlinfra.ui.alert_groups import ALERTS_SHOWN_PER_RULE, group_alerts
from mlinfra.ui.chart import time_chart
from mlinfra.ui.decision_rows import decision_rows
from mlinfra.ui.fleet import DEFAULT_HOURS, find_report, latest_sweep_samples, read_audit, read_fleet_view
from mlinfra.ui.trigger import TRIGGER_DAGS

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"
STATIC_TYPES = {
    ".svg": "image/svg+xml",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
}
REPORT_FILES = {
    "report.html": "text/html; charset=utf-8",
    "report.json": "application/json",
    "report.csv": "text/csv; charset=utf-8",
}
DEMO_ENV = "MLINFRA_DEMO"
# The classic text format, named as Prometheus 2.x expects it (prometheus_client's
# CONTENT_TYPE_LATEST now says version=1.0.0, which older scrapers do not know).
EXPOSITION_TYPE = "text/plain; version=0.0.4; charset=utf-8"
URL_PREFIX = "/mlinfra"


def demo_mode() -> bool:
    """True under ``make demo``: the page says that the cluster is simulated."""
    from mlinfra.templated import parse_bool

    return parse_bool(DEMO_ENV, os.environ.get(DEMO_ENV), default=False)


def airflow_base_path() -> str:
    """The path Airflow's UI lives under (``[api] base_url``), '' at the root."""
    from airflow.configuration import conf

    base = conf.get("api", "base_url", fallback="") or ""
    return urlsplit(base).path.rstrip("/")


def dag_run_url(base: str, dag_id: str | None, run_id: str | None) -> str | None:
    """The Airflow UI page of a DAG run."""
    if not dag_id or not run_id:
        return None
    return f"{base}/dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}"


# ---------------------------------------------------------------------- formatting (Jinja filters)


def _ago(ts: float | None, now: float | None = None) -> str:
    if ts is None:
        return "never"
    delta = (time.time() if now is None else now) - ts
    future = delta < 0
    delta = abs(delta)
    if delta < 90:
        text = f"{int(delta)}s"
    elif delta < 90 * 60:
        text = f"{int(delta // 60)}m"
    elif delta < 36 * 3600:
        text = f"{delta / 3600:.1f}h"
    else:
        text = f"{delta / 86400:.1f}d"
    return f"in {text}" if future else f"{text} ago"


def _utc(ts: float | None) -> str:
    if ts is None:
        return ""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 60:
        return f"{seconds:.0f}s"
    return f"{int(seconds // 60)}m {int(seconds % 60):02d}s"


def _gib(value: float | None) -> str:
    return "" if value is None else f"{value / 2**30:.1f} GiB"


def _num(value: Any, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{float(value):.{digits}f}"


_DICT_ATTRIBUTES = frozenset(dir(dict))


class _ViewEnvironment(Environment):
    """Jinja's environment, with ``m.name`` on a plain dict looked up as an item first.

    Jinja tries ``getattr(m, "name")`` first and takes the item once that raises: one
    exception per lookup, a third of the render of a 500-model page (its views are dicts).
    For a name that is no attribute of ``dict`` the item is what Jinja ends up with
    anyway; ``items``, ``get`` and the other dict attributes keep Jinja's order.
    """

    def getattr(self, obj: Any, attribute: str) -> Any:
        if type(obj) is dict and attribute not in _DICT_ATTRIBUTES:
            try:
                return obj[attribute]
            except KeyError:
                pass
        return super().getattr(obj, attribute)


def _environment() -> Environment:
    env = _ViewEnvironment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        ago=_ago, utc=_utc, duration=_duration, gib=_gib, num=_num, quote=lambda s: quote(str(s))
    )
    # time_chart() escapes every text it embeds, so its markup is safe as is.
    env.globals["chart"] = lambda *a, **kw: Markup(time_chart(*a, **kw))
    env.globals["decision_rows"] = decision_rows
    return env


# ---------------------------------------------------------------------- the app


def _require_airflow_user() -> Callable[..., Any]:
    """Airflow's own dependency: the request's user must be allowed to see the website."""
    from airflow.api_fastapi.auth.managers.models.resource_details import AccessView
    from airflow.api_fastapi.core_api.security import requires_access_view

    return requires_access_view(AccessView.WEBSITE)


def create_app(
    *,
    store: Callable[[], MetricsStore] = MetricsStore.from_connection,
    fleet: Callable[[], Fleet] = load_fleet,
    auth: Callable[..., Any] | None = None,
    rules_dir: Path | None = None,
) -> FastAPI:
    """The mlinfra UI app. ``store``/``fleet`` are factories called per request (tests pass their own).

    ``auth`` is the FastAPI dependency every route depends on; the default is
    Airflow's ``requires_access_view(AccessView.WEBSITE)``. ``rules_dir``: the rule files
    the backtest page offers (default: the sweep's, ``include/alert_rules``).
    """
    app = FastAPI(
        title="mlinfra",
        description="ML Fleet page, its JSON and the latest sweep for Prometheus",
        dependencies=[Depends(auth or _require_airflow_user())],
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.exception_handler(HTTPException)(_friendly_auth_errors)
    pages = _Pages(store=store, fleet=fleet, templates=_environment())
    _add_fleet_routes(app, pages)
    _add_report_route(app, pages)
    _add_trigger_route(app, pages)
    _add_rule_routes(app, pages, rules_dir)
    _add_static_route(app)
    return app


@dataclass(frozen=True)
class _Pages:
    """What the routes share: the store and fleet factories (called per request) and the templates."""

    store: Callable[[], MetricsStore]
    fleet: Callable[[], Fleet]
    templates: Environment

    def render(self, name: str, request: Request, **context: Any) -> HTMLResponse:
        # Read Airflow's configuration once per page: a fleet page links ~1000 runs.
        airflow = airflow_base_path()
        html = self.templates.get_template(name).render(
            prefix=str(request.scope.get("root_path", "")).rstrip("/") or URL_PREFIX,
            airflow=airflow,
            demo=demo_mode(),
            now=time.time(),
            run_url=lambda dag_id, run_id: dag_run_url(airflow, dag_id, run_id),
            trigger_dags=TRIGGER_DAGS,
            **context,
        )
        return HTMLResponse(html, headers={"Cache-Control": "no-store"})

    def view(self, hours: float) -> dict[str, Any]:
        data = read_fleet_view(self.store(), self.fleet(), hours=hours)
        data["demo"] = demo_mode()
        return data


async def _friendly_auth_errors(request: Request, exc: HTTPException) -> Response:
    # A browser that lost its session gets a page with a way back in, with the same status.
    if exc.status_code in (401, 403) and "text/html" in request.headers.get("accept", ""):
        login = f"{airflow_base_path()}/auth/login?next={quote(str(request.url.path))}"
        what = "Sign in to Airflow" if exc.status_code == 401 else "Your Airflow user may not see this page"
        body = (
            f"<!doctype html><title>mlinfra: {exc.status_code}</title><body style='font-family:sans-serif'>"
            f"<h1>{what}</h1><p>{exc.detail}</p><p><a href='{login}' target='_top'>Sign in</a></p>"
        )
        return HTMLResponse(body, status_code=exc.status_code)
    return await http_exception_handler(request, exc)


def _add_fleet_routes(app: FastAPI, pages: _Pages) -> None:
    """The fleet page, its JSON, the latest sweep for Prometheus, and one Deployment's audit."""

    @app.get("/", include_in_schema=False)
    def index(request: Request) -> RedirectResponse:
        return RedirectResponse(f"{request.scope.get('root_path', '')}/fleet")

    @app.get("/fleet", response_class=HTMLResponse)
    def fleet_page(
        request: Request,
        hours: float = Query(DEFAULT_HOURS, gt=0, le=24 * 14),
        alerts: Literal["grouped", "all"] = Query("grouped", description="all: every alert of every rule"),
    ) -> HTMLResponse:
        s = pages.store()
        with collection_paused():
            view = pages.view(hours)
            groups = group_alerts(view["alerts"], None if alerts == "all" else ALERTS_SHOWN_PER_RULE)
            return pages.render(
                "fleet.html", request, view=view, alert_groups=groups, store_description=s.description
            )

    @app.get("/api/fleet")
    def fleet_json(hours: float = Query(DEFAULT_HOURS, gt=0, le=24 * 14)) -> JSONResponse:
        with collection_paused():
            return JSONResponse(_json_safe(pages.view(hours)), headers={"Cache-Control": "no-store"})

    @app.get("/metrics")
    def metrics() -> Response:
        ts, samples = latest_sweep_samples(pages.store())
        if ts is not None:
            samples.append(Sample("mlinfra_latest_sweep_timestamp_seconds", {}, ts))
        return Response(typed_exposition(samples), media_type=EXPOSITION_TYPE)

    @app.get("/audit/{namespace}/{deployment}", response_class=HTMLResponse)
    def audit(request: Request, namespace: str, deployment: str) -> HTMLResponse:
        found = read_audit(pages.store(), pages.fleet(), namespace, deployment)
        return pages.render("audit.html", request, audit=found)


def _add_report_route(app: FastAPI, pages: _Pages) -> None:
    @app.get("/reports/{day}/{name}")
    def report_file(day: str, name: str) -> Response:
        if name not in REPORT_FILES:
            raise HTTPException(404, f"no such report file {name!r}; one of {sorted(REPORT_FILES)}")
        if day == "today":
            # Today so far, [00:00 UTC, now): built on request, never stored (the day is not over).
            from mlinfra.reports.aggregate import build_report
            from mlinfra.reports.render import render_all

            now = time.time()
            report = build_report(pages.store(), pages.fleet(), now - now % 86400, now)
            return Response(render_all(report)[name], media_type=REPORT_FILES[name])
        row = find_report(pages.store(), day)
        if row is None:
            raise HTTPException(404, f"no report for {day} in the store (run metrics_report for that day)")
        content = _read_report(str(row["path"]), name)
        return Response(content, media_type=REPORT_FILES[name])


def _add_trigger_route(app: FastAPI, pages: _Pages) -> None:
    @app.get("/trigger/{dag_id}", response_class=HTMLResponse)
    def trigger_form(request: Request, dag_id: str, model: str = Query(...)) -> HTMLResponse:
        from mlinfra.ui.trigger import form_fields

        if dag_id not in TRIGGER_DAGS:
            raise HTTPException(404, f"no form for {dag_id!r}; one of {', '.join(TRIGGER_DAGS)}")
        the_fleet = pages.fleet()
        try:
            fleet_model = the_fleet.model(model)
        except KeyError:
            raise HTTPException(
                404, f"no model {model!r}; one of {', '.join(the_fleet.model_names)}"
            ) from None
        data = read_fleet_view(pages.store(), the_fleet, hours=1)
        current = next(m for m in data["models"] if m["name"] == fleet_model.name)
        return pages.render(
            "trigger.html",
            request,
            dag_id=dag_id,
            label=TRIGGER_DAGS[dag_id],
            model=fleet_model,
            fields=form_fields(dag_id, current, fleet_model),
            snapshot_ts=(data.get("sweep") or {}).get("ts"),
        )


def _add_rule_routes(app: FastAPI, pages: _Pages, rules_dir: Path | None) -> None:
    from mlinfra.ui import rule_pages

    def folder() -> Path:
        if rules_dir is not None:
            return rules_dir
        from mlinfra.rules.evaluate import DEFAULT_RULES_DIR

        return DEFAULT_RULES_DIR

    rule_pages.register(app, pages.render, pages.store, folder)


def _add_static_route(app: FastAPI) -> None:
    @app.get("/static/{name}")
    def static(name: str) -> Response:
        path = STATIC / name
        if path.suffix not in STATIC_TYPES or path.parent != STATIC or not path.is_file():
            raise HTTPException(404, "not found")
        return Response(path.read_bytes(), media_type=STATIC_TYPES[path.suffix])


def _read_report(folder: str, name: str) -> bytes:
    """``name`` inside the report folder ``folder`` (a ``file://`` URL, a path, or any object-store URL)."""
    parts = urlsplit(folder)
    try:
        if parts.scheme in ("", "file"):
            return (Path(unquote(parts.path)) / name).read_bytes()
        from airflow.sdk import ObjectStoragePath

        return (ObjectStoragePath(folder) / name).read_bytes()
    except FileNotFoundError as e:
        raise HTTPException(404, f"{name} is missing from {folder}") from e
    except OSError as e:
        raise HTTPException(502, f"cannot read {name} from {folder}: {e}") from e


def _json_safe(value: Any) -> Any:
    """NaN/inf are not JSON: they become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return value
