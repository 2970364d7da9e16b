"""The Airflow plugin: registers mlinfra's UI with Airflow.

Loaded through ``plugins/mlinfra_plugin.py`` (see ``plugins/.airflowignore`` for why
the package itself is hidden from Airflow's file-by-file plugin loader). It adds:

* ``fastapi_apps``: :mod:`mlinfra.ui.app` mounted by the API server under ``/mlinfra``
  (the ML Fleet page, its JSON, ``/mlinfra/metrics``), every route behind Airflow's
  own authentication;
* ``external_views``: "ML Fleet" in Airflow's navigation (the page in an iframe at
  ``/plugin/ml-fleet``);
* ``global_operator_extra_links``: :mod:`mlinfra.ui.links` (deploy -> model on the
  fleet page, report -> report.html, scale -> the Deployment's audit entry).

Every Airflow process loads plugins, so nothing heavy happens here: the FastAPI app
is built on the API server's first request to it (:class:`LazyASGIApp`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.plugins_manager import AirflowPlugin

from mlinfra.ui.links import GLOBAL_LINKS

if TYPE_CHECKING:
    from fastapi import FastAPI

URL_PREFIX = "/mlinfra"


class LazyASGIApp:
    """An ASGI app that builds :func:`mlinfra.ui.app.create_app` on its first request.

    Only the API server serves requests; the scheduler, workers and dag-processor load
    the plugin too and should not pay for FastAPI, Jinja2 and Airflow's security module.
    """

    def __init__(self) -> None:
        self._app: FastAPI | None = None

    @property
    def app(self) -> FastAPI:
        if self._app is None:
            from mlinfra.ui.app import create_app

            self._app = create_app()
        return self._app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)

    def __repr__(self) -> str:  # shown by `airflow plugins` and /api/v2/plugins
        return "mlinfra.ui.app.create_app()"


class MlinfraPlugin(AirflowPlugin):
    name = "mlinfra"
    fastapi_apps = [{"app": LazyASGIApp(), "url_prefix": URL_PREFIX, "name": "mlinfra"}]
    external_views = [
        {
            "name": "ML Fleet",
            "href": f"{URL_PREFIX}/fleet",
            "url_route": "ml-fleet",
            "destination": "nav",
            "nav_top_level": True,
            "icon": f"{URL_PREFIX}/static/icon.svg",
        }
    ]
    global_operator_extra_links = GLOBAL_LINKS
