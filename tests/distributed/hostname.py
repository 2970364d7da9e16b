"""``[core] hostname_callable`` for the distributed test: each process's "container" name.

In the compose stack every Airflow process runs in a container of its own, so task
instances record the worker container's host name. Here all of them share one machine:
the test gives each process ``CONTAINER_HOSTNAME`` (the compose service name, or
``airflow-worker-1``/``-2``) and Airflow reads it through this callable.
"""

from __future__ import annotations

import os
import socket


def container_hostname() -> str:
    return os.environ.get("CONTAINER_HOSTNAME") or socket.getfqdn()
