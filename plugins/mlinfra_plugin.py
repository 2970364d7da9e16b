"""Entry point for Airflow's plugin loader; the plugin itself is mlinfra.plugin."""

from mlinfra.plugin import MlinfraPlugin

__all__ = ["MlinfraPlugin"]
