"""Smoke predictions against the exact new version, over gRPC and REST.

::

    TFServingSmokeTestOperator(task_id="smoke_test", model="half-plus-two", version=2)

The fleet model names everything else: the TF Serving connection and addresses, the
smoke file (``smoke_file``, format in :mod:`mlinfra.deploy.smoke`) and the latency SLO
(``slo.p99_latency_ms``). The result table goes to the task log; the report is the
return value (XCom) and is also pushed under the key ``smoke_report`` before a
failure, so the deploy record keeps the figures of a failed test too.

Latency is judged as :mod:`mlinfra.deploy.smoke` describes (warm-up excluded; a
percentile without enough samples is "not judged", logged as a warning, never a
pass or fail on the slowest request).

A failed smoke test fails the task without retries: a flaky pass on a retry must not
promote a model that answered wrongly once.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from mlinfra.exceptions import MlinfraError, SmokeFileError, SmokeTestFailed
from mlinfra.task_failure import fail_without_retry
from mlinfra.templated import parse_bool, parse_int

if TYPE_CHECKING:
    from mlinfra.config import Fleet, Model
    from mlinfra.hooks.tf_serving import TFServingHook


class TFServingSmokeTestOperator(BaseOperator):
    """Run ``include/smoke/<model>.json`` against ``version`` of fleet model ``model``.

    :param model: the fleet model's name (templated).
    :param version: the model version to test (templated).
    :param protocols: ``["grpc", "rest"]`` subset; default: the smoke file's.
    :param smoke_file: a smoke file path overriding the fleet's (relative to include/).
    :param run_smoke: ``False`` skips the task (templated, e.g. ``{{ params.run_smoke }}``).
    :param budget_s: no request starts after this many seconds; the ones left unsent fail the
        test without retry (default: 80% of ``execution_timeout``, when it has one). The
        task's own timeout fails it without retry too: a version too slow to be tested in
        time must not be promoted by a second try that happens to be faster.
    """

    template_fields: Sequence[str] = ("model", "version", "run_smoke")
    ui_color = "#f5d5e0"

    def __init__(
        self,
        *,
        model: str,
        version: int | str,
        protocols: list[str] | None = None,
        smoke_file: str | None = None,
        run_smoke: bool | str = True,
        budget_s: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if budget_s is None and self.execution_timeout is not None:
            budget_s = 0.8 * self.execution_timeout.total_seconds()
        self.budget_s = budget_s
        self.model = model
        self.version = version
        self.protocols = protocols
        self.smoke_file = smoke_file
        self.run_smoke = run_smoke

    @cached_property
    def fleet(self) -> Fleet:
        from mlinfra.config import load_fleet

        return load_fleet()

    @cached_property
    def fleet_model(self) -> Model:
        return self.fleet.model(self.model)

    @cached_property
    def hook(self) -> TFServingHook:
        from mlinfra.hooks.tf_serving import TFServingHook

        return TFServingHook.for_model(self.fleet_model)

    def execute(self, context: Any) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowSkipException

        from mlinfra.deploy.smoke import load_smoke_spec

        try:
            if not parse_bool("run_smoke", self.run_smoke, default=True):
                raise AirflowSkipException("run_smoke is off: no smoke predictions")
            version = parse_int("version", self.version, minimum=0)
        except MlinfraError as e:
            raise fail_without_retry(e) from e
        model = self.fleet_model
        try:
            spec = load_smoke_spec(self.fleet.include_path(self.smoke_file or model.smoke_file))
        except SmokeFileError as e:
            raise fail_without_retry(e) from e
        from airflow.sdk.exceptions import AirflowTaskTimeout

        try:
            return self._run(context, model, version, spec)
        except AirflowTaskTimeout as e:
            failure = SmokeTestFailed(
                f"smoke test of {model.name} version {version} did not finish within the task's "
                f"execution_timeout ({self.execution_timeout})"
            )
            failure.__cause__ = e
            raise fail_without_retry(failure) from failure
        finally:
            if "hook" in self.__dict__:
                self.hook.close()
                del self.__dict__["hook"]

    def _run(self, context: Any, model: Model, version: int, spec: Any) -> dict[str, Any]:
        """Predict, log the table, push the report; a failed test fails without retry."""
        from mlinfra.deploy.smoke_run import run_smoke

        report = run_smoke(
            self.hook,
            model.serving.model_name,
            version,
            spec,
            slo_p99_ms=model.slo.p99_latency_ms,
            protocols=self.protocols,
            budget_s=self.budget_s,
        )
        self.log.info("smoke test of %s version %s:\n%s", model.name, version, report.table())
        for note in report.not_judged:
            # Not a failure: a percentile over too few requests would only be the slowest one.
            self.log.warning("latency not judged: %s", note)
        result = report.to_dict()
        context["ti"].xcom_push(key="smoke_report", value=result)
        if not report.passed:
            raise fail_without_retry(
                SmokeTestFailed(
                    f"smoke test of {model.name} version {version} failed: " + "; ".join(report.problems)
                )
            )
        return result
