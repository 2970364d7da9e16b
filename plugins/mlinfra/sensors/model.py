"""Wait until TF Serving reports a model version AVAILABLE, without holding a worker slot.

::

    TFServingModelVersionSensor(
        task_id="wait_model",
        tf_serving_conn_id="tf_serving_half_plus_two",
        model_name="half_plus_two",
        version=2,
        timeout=600,
    )

A version whose load failed fails the task with the server's own error message
(no retries: the same files would fail the same way); a timeout does too.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator

from mlinfra.exceptions import MlinfraError, ModelLoadFailed, TFServingModelNotFound
from mlinfra.task_failure import fail_without_retry
from mlinfra.templated import parse_optional_int
from mlinfra.triggers.model import ModelVersionAvailableTrigger, evaluate_versions

if TYPE_CHECKING:
    from mlinfra.hooks.tf_serving import TFServingHook


class TFServingModelVersionSensor(BaseSensorOperator):
    """Succeed when ``model_name`` version ``version`` is AVAILABLE on TF Serving.

    :param tf_serving_conn_id: Airflow connection of type ``tf_serving``.
    :param model_name: TF Serving's model name.
    :param version: the version (templated); ``None`` waits for any version.
    :param default_grpc_target: the fleet's address, used when the connection has no host.
    :param default_rest_url: likewise for REST.
    :param poll_interval: seconds between polls.
    :param deferrable: defer to the triggerer (default).
    """

    template_fields: Sequence[str] = (
        "tf_serving_conn_id",
        "model_name",
        "version",
        "default_grpc_target",
        "default_rest_url",
    )
    ui_color = "#fde8c8"

    def __init__(
        self,
        *,
        tf_serving_conn_id: str,
        model_name: str,
        version: int | str | None,
        default_grpc_target: str | None = None,
        default_rest_url: str | None = None,
        poll_interval: float = 5.0,
        deferrable: bool = True,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("poke_interval", poll_interval)
        super().__init__(**kwargs)
        self.tf_serving_conn_id = tf_serving_conn_id
        self.model_name = model_name
        self.version = version
        self.default_grpc_target = default_grpc_target
        self.default_rest_url = default_rest_url
        self.poll_interval = poll_interval
        self.deferrable = deferrable

    def _version(self) -> int | None:
        return parse_optional_int("version", self.version, minimum=0)

    @cached_property
    def hook(self) -> TFServingHook:
        """One hook (one gRPC channel) for every poke of this task."""
        from mlinfra.hooks.tf_serving import TFServingHook

        return TFServingHook(
            self.tf_serving_conn_id,
            default_grpc_target=self.default_grpc_target,
            default_rest_url=self.default_rest_url,
            # As the trigger: a poll must not outlast the interval by much.
            timeout=max(min(self.poll_interval * 2, 10.0), 1.0),
        )

    def _trigger(self) -> ModelVersionAvailableTrigger:
        return ModelVersionAvailableTrigger(
            self.tf_serving_conn_id,
            self.model_name,
            self._version(),
            deadline=time.time() + self.timeout,
            poll_interval=self.poll_interval,
            default_grpc_target=self.default_grpc_target,
            default_rest_url=self.default_rest_url,
        )

    def poke(self, context: Any) -> bool:
        try:
            versions = self.hook.get_model_status(self.model_name)
        except TFServingModelNotFound:
            return False
        except MlinfraError as e:
            self.log.warning("TF Serving not answering yet: %s", e)
            return False
        verdict, message = evaluate_versions(versions, self._version())
        self.log.info("model %s: %s", self.model_name, message)
        if verdict == "failed":
            raise fail_without_retry(ModelLoadFailed(f"model {self.model_name}: {message}"))
        return verdict == "success"

    def execute(self, context: Any) -> Any:
        try:
            if not self.deferrable:
                return super().execute(context)
            if self.poke(context):
                return None
        finally:
            if "hook" in self.__dict__:
                self.hook.close()
                del self.__dict__["hook"]
        self.defer(
            trigger=self._trigger(),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout + 60),
        )

    def execute_complete(self, context: Any, event: dict[str, Any]) -> list[dict[str, Any]]:
        if event.get("status") == "success":
            self.log.info("%s", event.get("message"))
            return list(event.get("versions") or [])
        raise fail_without_retry(ModelLoadFailed(event.get("message") or "model did not become AVAILABLE"))
