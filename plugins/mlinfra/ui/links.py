"""Operator extra links: buttons on a task instance's page that open mlinfra's own pages.

===========================  =====================================  ==========================================
link                         shown on                               opens
===========================  =====================================  ==========================================
``ML Fleet: model``          every task of ``model_deploy``, and    ``/mlinfra/fleet#model-<model>``: the
                             the deploy operators anywhere          model the run deployed
``Daily report``             every task of ``metrics_report``       ``/mlinfra/reports/<day>/report.html``
``Deployment audit``         ``ScaleDeploymentOperator`` tasks and  ``/mlinfra/audit/<ns>/<deployment>#scale-<ms>``:
                             every task of ``model_scale``          the scale event in the Deployment's audit
===========================  =====================================  ==========================================

They are *global* links (``AirflowPlugin.global_operator_extra_links``): the API
server asks each one for every task and shows only those that return a URL. A
link finds its target in the store by the task's run id (the row the run wrote),
so the operators need not know about it; a task whose run has not written its
row yet shows no button.

>>> FleetModelLink().get_link(operator, ti_key=ti.key)   # doctest: +SKIP
'/mlinfra/fleet#model-half-plus-two'
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import quote

from airflow.sdk import BaseOperatorLink

if TYPE_CHECKING:
    from airflow.sdk.types import TaskInstanceKey

    from mlinfra.store import MetricsStore

log = logging.getLogger(__name__)

UI_PREFIX = "/mlinfra"


def _operator_class(operator: Any) -> str:
    # On the API server the operator is a SerializedBaseOperator that keeps the class name as task_type.
    return str(getattr(operator, "task_type", None) or type(operator).__name__)


def _base() -> str:
    from mlinfra.ui.app import airflow_base_path

    return airflow_base_path() + UI_PREFIX


class _StoreLink(BaseOperatorLink):
    """A link that applies to some DAGs / operator classes and resolves through the store."""

    dag_ids: ClassVar[frozenset[str]] = frozenset()
    operator_classes: ClassVar[frozenset[str]] = frozenset()
    table: ClassVar[str] = ""

    def applies_to(self, operator: Any, ti_key: TaskInstanceKey) -> bool:
        return ti_key.dag_id in self.dag_ids or _operator_class(operator) in self.operator_classes

    def get_link(self, operator: Any, *, ti_key: TaskInstanceKey) -> str:
        if not self.applies_to(operator, ti_key):
            return ""
        try:
            from mlinfra.store import MetricsStore

            rows = self.rows_of_run(MetricsStore.from_connection(), ti_key.run_id)
            return self.url(rows, ti_key)
        except Exception:
            # The task page must render even when the store is down: no button, one log line.
            log.exception("extra link %r: cannot read %s for run %s", self.name, self.table, ti_key.run_id)
            return ""

    def rows_of_run(self, store: MetricsStore, run_id: str) -> list[dict[str, Any]]:
        """What the run recorded in :attr:`table`, through the table owner's query."""
        raise NotImplementedError

    def url(self, rows: list[dict[str, Any]], ti_key: TaskInstanceKey) -> str:
        raise NotImplementedError


class FleetModelLink(_StoreLink):
    """Deploy tasks -> the deployed model's row on the ML Fleet page."""

    name = "ML Fleet: model"
    dag_ids = frozenset({"model_deploy"})
    operator_classes = frozenset(
        {"ApplyManifestsOperator", "ModelRollbackOperator", "TFServingSmokeTestOperator"}
    )
    table = "mlinfra_deployments"

    def rows_of_run(self, store: MetricsStore, run_id: str) -> list[dict[str, Any]]:
        from mlinfra.deploy.records import DeploymentRecords

        record = DeploymentRecords(store).get(run_id)
        return [] if record is None else [record.to_dict()]

    def url(self, rows: list[dict[str, Any]], ti_key: TaskInstanceKey) -> str:
        if not rows:
            return f"{_base()}/fleet"
        return f"{_base()}/fleet#model-{quote(str(rows[0]['model']))}"


class DailyReportLink(_StoreLink):
    """Report tasks -> the run's ``report.html``."""

    name = "Daily report"
    dag_ids = frozenset({"metrics_report"})
    table = "mlinfra_reports"

    def rows_of_run(self, store: MetricsStore, run_id: str) -> list[dict[str, Any]]:
        from mlinfra.reports.records import report_records

        return report_records(store, run_id=run_id)

    def url(self, rows: list[dict[str, Any]], ti_key: TaskInstanceKey) -> str:
        if not rows:
            return ""
        start = max(r["interval_start"] for r in rows)
        day = datetime.fromtimestamp(start, UTC).strftime("%Y-%m-%d")
        return f"{_base()}/reports/{day}/report.html"


class DeploymentAuditLink(_StoreLink):
    """Scale tasks -> the scale event in the Kubernetes Deployment's audit trail."""

    name = "Deployment audit"
    dag_ids = frozenset({"model_scale"})
    operator_classes = frozenset({"ScaleDeploymentOperator"})
    table = "mlinfra_scale_events"

    def rows_of_run(self, store: MetricsStore, run_id: str) -> list[dict[str, Any]]:
        from mlinfra.scaling.records import ScaleRecords

        return [e.to_dict() for e in ScaleRecords(store).scale_events(run_id=run_id)]

    def url(self, rows: list[dict[str, Any]], ti_key: TaskInstanceKey) -> str:
        if not rows:
            return ""
        # A mapped scale task writes one row per model; map_index picks it in a stable order.
        rows = sorted(
            rows, key=lambda r: (str(r.get("namespace")), str(r.get("deployment")), r.get("ts") or 0)
        )
        index = ti_key.map_index if 0 <= ti_key.map_index < len(rows) else len(rows) - 1
        row = rows[index]
        ns, dep = quote(str(row.get("namespace"))), quote(str(row.get("deployment")))
        return f"{_base()}/audit/{ns}/{dep}#scale-{round((row.get('ts') or 0) * 1000)}"


GLOBAL_LINKS: list[BaseOperatorLink] = [FleetModelLink(), DailyReportLink(), DeploymentAuditLink()]
