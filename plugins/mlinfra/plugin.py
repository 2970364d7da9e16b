"""The Airflow plugin: registers mlinfra with Airflow.

Loaded through ``plugins/mlinfra_plugin.py`` (see ``plugins/.airflowignore`` for why
the package itself is hidden from Airflow's file-by-file plugin loader). The UI
(fleet page, ``/mlinfra/metrics``), external views and operator extra links are
added here as those features land.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin


class MlinfraPlugin(AirflowPlugin):
    name = "mlinfra"
