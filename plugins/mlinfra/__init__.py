"""mlinfra: Airflow operations for a fleet of TensorFlow Serving models on Kubernetes.

The package is importable both as an installed distribution (``pip install -e .``)
and through Airflow's plugins folder; keep this module free of heavy imports.
"""

__version__ = "0.1.0"
