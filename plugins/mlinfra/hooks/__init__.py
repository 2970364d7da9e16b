"""Clients for the systems mlinfra talks to, configured from Airflow connections."""
