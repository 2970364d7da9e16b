"""Collectors: pure functions that read one source and return samples.

Each ``collect_*`` function takes its client (NVML module, psutil, a Kubernetes
API client, a TF Serving hook) as an argument with a sensible default, so tests
hand in the stand-in. :func:`run_collector` wraps any of them so that one failing
source never hides the others and every collector reports
``mlinfra_collector_up`` and ``mlinfra_collector_duration_seconds``.
"""

from mlinfra.collectors.base import CollectorResult, PartialCollection, run_collector

__all__ = ["CollectorResult", "PartialCollection", "run_collector"]
