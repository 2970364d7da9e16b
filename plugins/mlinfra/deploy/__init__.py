"""Deploying one model version: request validation, manifests, apply/rollback, smoke tests, records.

Pure core of the ``model_deploy`` DAG; the Airflow shell is in ``mlinfra.operators``,
``mlinfra.sensors`` and ``mlinfra.triggers``.
"""
