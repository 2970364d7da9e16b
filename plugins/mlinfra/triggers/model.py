"""Wait in the triggerer until TF Serving reports a model version AVAILABLE.

Polls ``ModelService.GetModelStatus`` through :class:`~mlinfra.hooks.tf_serving.TFServingHook`;
the gRPC call blocks, so it runs in the event loop's executor::

    ModelVersionAvailableTrigger(
        tf_serving_conn_id="tf_serving_half_plus_two", model_name="half_plus_two", version=2,
        deadline=time.time() + 600,
    )
    # -> TriggerEvent({"status": "success" | "failed" | "timeout", "message": ..., "versions": [...]})

``version=None`` waits for *any* AVAILABLE version (after rolling back to a spec that
did not name one). A version that ends in state END with an error fails the wait with
the server's own error message; NOT_FOUND (not discovered yet) and an unreachable
server are waited out until ``deadline``, and the timeout message says which.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from mlinfra.exceptions import MlinfraError, TFServingModelNotFound


def evaluate_versions(versions: list[dict[str, Any]], version: int | None) -> tuple[str, str]:
    """``("success" | "failed" | "waiting", message)`` for GetModelStatus's answer."""
    mine = [v for v in versions if version is None or v["version"] == version]
    if any(v["state"] == "AVAILABLE" for v in mine):
        ok = max(v["version"] for v in mine if v["state"] == "AVAILABLE")
        return "success", f"version {ok} is AVAILABLE"
    for v in mine:
        if v["state"] == "END" and v.get("error_code", "OK") != "OK":
            return "failed", (
                f"version {v['version']} failed to load: {v['error_code']}: {v.get('error_message') or 'no message'}"
            )
    states = ", ".join(f"{v['version']}: {v['state']}" for v in versions) or "no versions"
    return "waiting", f"waiting for {'version ' + str(version) if version else 'any version'} ({states})"


class ModelVersionAvailableTrigger(BaseTrigger):
    """Poll TF Serving until ``model_name`` version ``version`` is AVAILABLE.

    :param tf_serving_conn_id: Airflow connection of type ``tf_serving``.
    :param model_name: TF Serving's model name.
    :param version: the version to wait for; ``None`` for any.
    :param deadline: UNIX time after which the wait ends with status ``timeout``.
    :param poll_interval: seconds between polls.
    :param default_grpc_target: used when the connection has no host (the fleet's address).
    :param default_rest_url: likewise for REST.
    """

    def __init__(
        self,
        tf_serving_conn_id: str,
        model_name: str,
        version: int | None,
        *,
        deadline: float,
        poll_interval: float = 5.0,
        default_grpc_target: str | None = None,
        default_rest_url: str | None = None,
    ):
        super().__init__()
        self.tf_serving_conn_id = tf_serving_conn_id
        self.model_name = model_name
        self.version = version
        self.deadline = float(deadline)
        self.poll_interval = float(poll_interval)
        self.default_grpc_target = default_grpc_target
        self.default_rest_url = default_rest_url

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "tf_serving_conn_id": self.tf_serving_conn_id,
                "model_name": self.model_name,
                "version": self.version,
                "deadline": self.deadline,
                "poll_interval": self.poll_interval,
                "default_grpc_target": self.default_grpc_target,
                "default_rest_url": self.default_rest_url,
            },
        )

    def _status(self) -> list[dict[str, Any]]:
        from mlinfra.hooks.tf_serving import TFServingHook

        with TFServingHook(
            self.tf_serving_conn_id,
            default_grpc_target=self.default_grpc_target,
            default_rest_url=self.default_rest_url,
            timeout=max(min(self.poll_interval * 2, 10.0), 1.0),
        ) as hook:
            return hook.get_model_status(self.model_name)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        loop = asyncio.get_running_loop()
        what = f"TF Serving model {self.model_name!r}"
        last = "no answer yet"
        versions: list[dict[str, Any]] = []
        while True:
            try:
                versions = await loop.run_in_executor(None, self._status)
            except TFServingModelNotFound as e:
                last = f"model not found yet: {e.server_message or e}"
            except MlinfraError as e:  # unreachable, TLS, config: may pass until the deadline
                last = str(e)
                self.log.warning("%s: %s", what, last)
            else:
                verdict, message = evaluate_versions(versions, self.version)
                if verdict != "waiting":
                    log = self.log.info if verdict == "success" else self.log.error
                    log("%s: %s", what, message)
                    yield TriggerEvent(
                        {"status": verdict, "message": f"{what}: {message}", "versions": versions}
                    )
                    return
                if message != last:
                    self.log.info("%s: %s", what, message)
                last = message
            remaining = self.deadline - time.time()
            if remaining <= 0:
                yield TriggerEvent(
                    {
                        "status": "timeout",
                        "message": f"{what}: version {self.version or '(any)'} not AVAILABLE by the deadline; last: {last}",
                        "versions": versions,
                    }
                )
                return
            await asyncio.sleep(min(self.poll_interval, remaining))
