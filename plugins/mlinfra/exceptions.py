"""Project exceptions: narrow classes, each naming what the user can fix.

Airflow's contributing guide asks new code not to raise ``AirflowException``;
tasks fail just as well on these, and callers can catch exactly what they expect.
"""

from __future__ import annotations


class MlinfraError(Exception):
    """Base class of every error this project raises on purpose."""


class FleetConfigError(MlinfraError):
    """``include/fleet.yaml`` (or another fleet file) is missing or invalid.

    ``problems`` holds one line per problem, each naming the file and field path.
    """

    def __init__(self, path: str, problems: list[str]):
        self.path = path
        self.problems = problems
        super().__init__("\n".join(f"{path}: {p}" for p in problems))


class StoreError(MlinfraError):
    """The metrics store cannot be reached or used; the message names the connection."""


class StoreConflict(StoreError):
    """A store write lost a race with a concurrent one and was rolled back; running it again is safe."""


class CollectorError(MlinfraError):
    """A collector could not read its source (the sweep records it as down)."""


class CollectorUnavailable(CollectorError):
    """A collector's source does not exist on this machine (no NVML driver, ...).

    Not a failure of the sweep: the collector reports ``mlinfra_collector_up 0``.
    """


class ReportStorageError(MlinfraError):
    """Report files could not be written where the reports go (object storage or a folder); names it."""


class ExportError(MlinfraError):
    """Samples could not be exported (Pushgateway refused or unreachable)."""


class TFServingError(MlinfraError):
    """A TF Serving call failed; ``status`` is the gRPC code name or the HTTP status.

    ``server_message`` is what the server said (gRPC details or the REST ``error``).
    """

    def __init__(self, message: str, *, target: str = "", status: str = "", server_message: str = ""):
        self.target = target
        self.status = status
        self.server_message = server_message
        super().__init__(message)


class TFServingModelNotFound(TFServingError):
    """The server does not know the model (or version): gRPC NOT_FOUND or HTTP 404."""


class TFServingUnavailable(TFServingError):
    """The server cannot be reached: refused, timed out, TLS failure, gRPC UNAVAILABLE."""


class TFServingConfigError(MlinfraError):
    """The connection's TLS settings are inconsistent or name a file that cannot be read."""


class RuleFileError(MlinfraError):
    """A rule file is invalid; the message names the file, line and rule."""


class RolloutFailed(MlinfraError):
    """A Kubernetes rollout did not complete."""


class CanaryAborted(MlinfraError):
    """A canary was aborted (analysis, rollout, approval): the stable version was left as it was."""


class SmokeTestFailed(MlinfraError):
    """A TF Serving smoke test found a wrong output, an error or a slow response."""


class PrometheusError(MlinfraError):
    """A Prometheus HTTP API call failed; the message names the server and what it said.

    ``server`` is the base URL, ``status`` the HTTP status (0 when no response came),
    ``error_type`` and ``error`` Prometheus's own ``errorType``/``error`` fields.
    """

    def __init__(
        self, message: str, *, server: str = "", status: int = 0, error_type: str = "", error: str = ""
    ):
        self.server = server
        self.status = status
        self.error_type = error_type
        self.error = error
        super().__init__(message)


class PrometheusUnavailable(PrometheusError):
    """Prometheus could not be reached or did not answer in time (refused, timeout, TLS failure)."""


class DeployRequestError(MlinfraError):
    """A deploy request (the model_deploy form or a run's conf) is invalid.

    ``problems`` holds one line per problem, each naming the parameter and what is accepted.
    """

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("invalid deploy request:\n" + "\n".join(f"  {p}" for p in problems))


class ManifestError(MlinfraError):
    """Rendered Kubernetes manifests failed their checks (names, kinds, namespace, values)."""


class SmokeFileError(MlinfraError):
    """A smoke file (``include/smoke/<model>.json``) is missing or invalid; names file and field."""


class ModelLoadFailed(MlinfraError):
    """TF Serving did not make the model version AVAILABLE; carries the server's error message."""


class RollbackFailed(MlinfraError):
    """A rollback could not restore the previous spec: the cluster is left partially changed."""


class DeployFailed(MlinfraError):
    """A deploy ended without promoting the new version (rolled back or failed); says why."""


class InvalidRuleFile(RuleFileError):
    """A rule file was refused; ``problems`` holds one entry per problem (file, line, group, rule).

    Each problem prints as ``path:line: group 'g', rule 'r': message``.
    """

    def __init__(self, path: str, problems: list):
        self.path = path
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class AlertmanagerError(MlinfraError):
    """Alertmanager refused the alerts or could not be reached; the message names the URL and status."""


class AirflowApiError(MlinfraError):
    """Airflow's public REST API refused a request or could not be reached; ``status`` is the
    HTTP status when there was an answer."""

    def __init__(self, message: str, *, status: int | None = None):
        super().__init__(message)
        self.status = status


class ScaleRequestError(MlinfraError):
    """A manual scale request (the model_scale form or a run's conf) is invalid.

    ``problems`` holds one line per problem, each naming the parameter and what is accepted.
    """

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("invalid scale request:\n" + "\n".join(f"  {p}" for p in problems))


class ScaleFailed(MlinfraError):
    """A Deployment could not be scaled: the API refused, the count changed under us, or it timed out."""


class ScaleForbidden(ScaleFailed):
    """The service account may not do what scaling needs; names the verb, resource and namespace.

    ``verb``, ``resource`` (``deployments/scale``...), ``api_group`` and ``namespace``
    say exactly which permission is missing (``include/k8s/rbac.yaml`` grants them).
    """

    def __init__(self, message: str, *, verb: str, resource: str, api_group: str, namespace: str):
        self.verb = verb
        self.resource = resource
        self.api_group = api_group
        self.namespace = namespace
        super().__init__(message)


class ArtifactMissing(DeployRequestError):
    """The requested model version is not where the fleet file says; nothing was changed.

    ``uri`` is exactly what was looked for (``s3://bucket/prefix/3/saved_model.pb``, or the
    PersistentVolumeClaim); ``existing_versions`` the versions found under the base path
    (the newest ten at most). Not retryable: upload the version, or fix ``model_base_path``.
    """

    def __init__(self, message: str, *, uri: str, existing_versions: list[int] | None = None):
        self.uri = uri
        self.existing_versions = existing_versions or []
        super().__init__([message])


class ArtifactStoreError(MlinfraError):
    """The artifact store refused the pre-flight for a reason a retry does not fix.

    Access denied (the connection's credentials or the bucket policy; RBAC for a claim),
    no credentials, no filesystem for the scheme. The message names the connection,
    never its secrets.
    """


class ArtifactStoreUnavailable(MlinfraError):
    """The object store or the Kubernetes API could not be reached (refused, timeout, 5xx): retry."""


class TemplatedValueError(MlinfraError, ValueError):
    """A parameter (often rendered from a template, so a string) is not a value of its kind.

    The message names the parameter, what it got and what is accepted.
    """


class ConditionError(MlinfraError, ValueError):
    """An analysis condition (``result < 0.01``) is not one mlinfra evaluates, or cannot be evaluated.

    The message quotes the condition and names what is not allowed (or what went wrong
    with this ``result``) and what is accepted. A ``ValueError`` too, so that fleet-file
    validation reports it with the file, line and field.
    """
