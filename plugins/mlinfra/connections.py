"""Airflow connections: the one place credentials and endpoints come from.

The embedded default runs with no connections at all; each optional component
(Kubernetes, TF Serving, Pushgateway, Prometheus, the store) is used only when
its connection exists. :func:`get_connection` returns ``None`` for "not
configured" so callers can report "skipped" instead of failing.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from airflow.sdk import Connection

log = logging.getLogger(__name__)


def get_connection(conn_id: str) -> Connection | None:
    """The Airflow connection ``conn_id``, or ``None`` when it is not defined."""
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        return BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        return None


def connection_exists(conn_id: str) -> bool:
    return get_connection(conn_id) is not None
