"""The deploy's pre-flight: is the requested model version where TF Serving will look for it?

Run before anything touches the cluster, so a typo in the version or a forgotten
upload is refused in seconds with the exact path, instead of a crash-looping pod (an S3
bucket is needed, so these lines are skipped as doctests; ``tests/deploy/test_artifacts.py``
runs them against a real S3 API)::

    >>> check = check_artifact(fleet.model("half-plus-two"), 3)  # doctest: +SKIP
    >>> check.uri, check.size_bytes  # doctest: +SKIP
    ('s3://ml-models/prod/half_plus_two/3/saved_model.pb', 9_876)
    >>> check_artifact(fleet.model("half-plus-two"), 4)  # doctest: +SKIP
    Traceback (most recent call last):
    ...
    mlinfra.exceptions.ArtifactMissing: invalid deploy request:
      version 4 of model 'half-plus-two': s3://ml-models/prod/half_plus_two/4/saved_model.pb does not
      exist; versions under s3://ml-models/prod/half_plus_two: 1, 2, 3

What each kind of ``serving.model_base_path`` gets checked for:

* ``s3://`` / ``gs://``: ``<base>/<version>/saved_model.pb`` exists (its size is reported),
  read through Airflow's ``ObjectStoragePath`` with ``serving.artifacts_conn_id``;
* ``pvc://<claim>/<path>``: the PersistentVolumeClaim exists in the model's namespace and
  is ``Bound``, through the Kubernetes API (``kubernetes.conn_id``, RBAC ``get
  persistentvolumeclaims``). Only a pod that mounts the claim can see the files on it:
  the version itself is proven by TF Serving loading it (the readiness probe and the
  model wait), not here;
* an image path: nothing to check from outside the image; the same later steps prove it.

Errors: :class:`~mlinfra.exceptions.ArtifactMissing` (not there; not retryable),
:class:`~mlinfra.exceptions.ArtifactStoreError` (denied, no credentials, no filesystem
for the scheme; not retryable), :class:`~mlinfra.exceptions.ArtifactStoreUnavailable`
(store or API unreachable; retry). Messages name the connection, never its secrets.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from mlinfra.exceptions import ArtifactMissing, ArtifactStoreError, ArtifactStoreUnavailable

if TYPE_CHECKING:
    from mlinfra.config import ArtifactLocation, Model

log = logging.getLogger(__name__)

SAVED_MODEL = "saved_model.pb"
MAX_LISTED_VERSIONS = 10
# Seconds for one Kubernetes API call (connect, read): a pre-flight must not hang a task.
KUBE_REQUEST_TIMEOUT = (5.0, 30.0)


@dataclass(frozen=True)
class ArtifactCheck:
    """What the pre-flight looked at and found (also the task's XCom, via :meth:`to_dict`).

    ``size_bytes`` is the size of ``saved_model.pb``; None where it cannot be seen from
    outside a pod (``pvc``, ``image``), and then ``verified`` is False.
    """

    scheme: str
    uri: str
    size_bytes: int | None
    verified: bool
    message: str
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_artifact(model: Model, version: int, *, api_client: Any | None = None) -> ArtifactCheck:
    """Check that ``version`` of fleet ``model`` can be served; see the module docstring.

    ``api_client`` (a ``kubernetes.client.ApiClient``) is used for ``pvc://`` instead of
    the one of ``KubernetesHook(conn_id=model.kubernetes.conn_id)``.
    """
    started = time.monotonic()
    location = model.serving.artifact
    if location.scheme in ("s3", "gs"):
        uri, size = _check_object_store(model, location, version)
        message = f"version {version} of model {model.name!r}: {uri} ({size} bytes)"
        return ArtifactCheck(location.scheme, uri, size, True, message, time.monotonic() - started)
    if location.scheme == "pvc":
        uri = _check_claim(model, location, api_client)
        message = (
            f"version {version} of model {model.name!r}: PersistentVolumeClaim {uri} is Bound; "
            f"{location.version_uri(version)}/{SAVED_MODEL} is proven by TF Serving loading it"
        )
        return ArtifactCheck("pvc", uri, None, False, message, time.monotonic() - started)
    uri = f"{location.version_uri(version)}/{SAVED_MODEL}"
    message = (
        f"version {version} of model {model.name!r}: {uri} is inside the image; "
        "it is proven by TF Serving loading it"
    )
    return ArtifactCheck("image", uri, None, False, message, time.monotonic() - started)


# --------------------------------------------------------------------------- s3:// and gs://


def _check_object_store(model: Model, location: ArtifactLocation, version: int) -> tuple[str, int]:
    from airflow.sdk import ObjectStoragePath

    conn_id = model.serving.artifacts_conn_id
    uri = f"{location.version_uri(version)}/{SAVED_MODEL}"
    what = f"version {version} of model {model.name!r}"
    try:
        conn = _connection(conn_id)
    except Exception as e:  # a secrets backend that does not answer
        raise ArtifactStoreUnavailable(
            f"{what}: cannot read connection {conn_id!r} ({type(e).__name__}); retry later"
        ) from None
    if conn is None:
        # The Amazon provider would quietly fall back to the worker's own AWS identity and
        # report "cannot connect" or "denied" much later: name the typo now.
        raise ArtifactStoreError(
            f"{what}: serving.artifacts_conn_id {conn_id!r} is not an Airflow connection; define it "
            f"(Admin > Connections, or AIRFLOW_CONN_{str(conn_id).upper()}), without login and "
            "password to use the worker's own cloud identity"
        )
    try:
        path = ObjectStoragePath(uri, conn_id=conn_id)
        # A long-lived worker keeps one filesystem per connection, and s3fs caches listings:
        # an upload made after an earlier check must be seen now.
        path.fs.invalidate_cache()
        info = path.fs.info(path.path)
    except FileNotFoundError:
        versions, listed = _existing_versions(location, conn_id)
        raise ArtifactMissing(
            f"{what}: {uri} does not exist; {_describe_versions(location, version, versions, listed)}",
            uri=uri,
            existing_versions=versions[-MAX_LISTED_VERSIONS:],
        ) from None
    except Exception as e:
        raise _store_error(e, what=what, uri=uri, conn_id=conn_id) from None
    if info.get("type") != "file":
        raise ArtifactMissing(f"{what}: {uri} is a folder, not the SavedModel file TF Serving loads", uri=uri)
    return uri, int(info.get("size") or 0)


def _existing_versions(location: ArtifactLocation, conn_id: str | None) -> tuple[list[int], str]:
    """The numeric folders under the base (TF Serving's versions), and a note when they cannot be listed."""
    from airflow.sdk import ObjectStoragePath

    try:
        base = ObjectStoragePath(location.base_uri, conn_id=conn_id)
        names = [child.name for child in base.iterdir()]
    except FileNotFoundError:
        return [], "nothing exists"
    except Exception as e:  # the missing version is the answer; the listing is a courtesy
        log.warning("cannot list %s: %s", location.base_uri, _scrub(str(e), conn_id))
        return [], "cannot be listed"
    return sorted(int(n) for n in names if n.isdigit() and int(n) > 0), ""


def _describe_versions(location: ArtifactLocation, version: int, versions: list[int], note: str) -> str:
    base = location.base_uri
    if note:
        return f"under {base} {note}"
    if not versions:
        return f"no version folders (1, 2, ...) under {base}"
    shown = versions[-MAX_LISTED_VERSIONS:]
    more = f" (and {len(versions) - len(shown)} older)" if len(versions) > len(shown) else ""
    text = f"versions under {base}: {', '.join(map(str, shown))}{more}"
    if version in versions:
        text += f"; the folder {version}/ exists but holds no {SAVED_MODEL} (an upload in progress?)"
    return text


def _store_error(error: Exception, *, what: str, uri: str, conn_id: str | None) -> Exception:
    """The project's error for what the object store (or its client) raised."""
    text = _scrub(f"{type(error).__name__}: {error}", conn_id)
    where = f"{what}: cannot check {uri} with connection {conn_id!r}"
    if isinstance(error, PermissionError):
        return ArtifactStoreError(
            f"{where}: access denied ({text}); check its credentials and the bucket policy"
        )
    # botocore's, matched by name: s3fs raises them, and botocore need not be installed here.
    if type(error).__name__ in ("NoCredentialsError", "PartialCredentialsError"):
        return ArtifactStoreError(f"{where}: the connection has no usable credentials ({text})")
    if isinstance(error, ValueError) and "No filesystem registered" in str(error):
        provider = "apache-airflow-providers-google (gcsfs)" if uri.startswith("gs://") else "its provider"
        return ArtifactStoreError(
            f"{where}: no filesystem for this scheme: install {provider} on the workers"
        )
    # Refused, timed out, DNS, TLS, 5xx, throttled: the store may answer on the next try.
    return ArtifactStoreUnavailable(f"{where}: the object store did not answer ({text}); retry later")


_USERINFO = re.compile(r"(?<=://)[^/@\s]+@")


def _scrub(text: str, conn_id: str | None) -> str:
    """``text`` without the connection's secrets (and any ``user:password@`` in a URL)."""
    text = _USERINFO.sub("***@", text)
    for secret in _connection_secrets(conn_id):
        text = text.replace(secret, "***")
    return text


def _connection(conn_id: str | None) -> Any | None:
    """The Airflow connection ``conn_id``, or None when it is not defined."""
    if not conn_id:
        return None
    from airflow.sdk import BaseHook

    try:
        return BaseHook.get_connection(conn_id)
    except Exception as e:
        # AirflowNotFoundException (its module moved between Airflow versions: matched by name).
        if type(e).__name__ == "AirflowNotFoundException":
            return None
        raise


def _connection_secrets(conn_id: str | None) -> list[str]:
    try:
        conn = _connection(conn_id)
    except Exception:  # an unreadable connection cannot leak into a message either
        return []
    if conn is None:
        return []
    values = [conn.login, conn.password]
    extra = conn.extra_dejson or {}
    values += [v for k, v in extra.items() if re.search(r"secret|token|key|password", k, re.I)]
    # Longest first, so a secret that contains another is replaced whole.
    return sorted({v for v in values if isinstance(v, str) and len(v) >= 4}, key=len, reverse=True)


# --------------------------------------------------------------------------- pvc://


def _check_claim(model: Model, location: ArtifactLocation, api_client: Any | None) -> str:
    from urllib3.exceptions import HTTPError

    from mlinfra.kube_import import import_kubernetes, kubernetes_hook_class

    import_kubernetes()  # before the first kubernetes import: its client then loads name by name
    from kubernetes.client import CoreV1Api
    from kubernetes.client.exceptions import ApiException

    namespace, claim = model.kubernetes.namespace, str(location.bucket_or_claim)
    uri = f"{namespace}/{claim}"
    what = f"model {model.name!r}: PersistentVolumeClaim {uri}"
    if api_client is None:
        api_client = kubernetes_hook_class()(conn_id=model.kubernetes.conn_id).api_client
    try:
        found = CoreV1Api(api_client).read_namespaced_persistent_volume_claim(
            claim, namespace, _request_timeout=KUBE_REQUEST_TIMEOUT
        )
    except ApiException as e:
        status = int(e.status or 0)
        if status == 404:
            raise ArtifactMissing(
                f"{what} does not exist (serving.model_base_path is {location.base_uri})", uri=uri
            ) from None
        if status in (401, 403):
            raise ArtifactStoreError(
                f"{what}: the Kubernetes API refused 'get persistentvolumeclaims' in namespace "
                f"{namespace!r} (HTTP {status}) for connection {model.kubernetes.conn_id!r}: "
                "grant it (include/k8s/rbac.yaml)"
            ) from None
        raise ArtifactStoreUnavailable(
            f"{what}: the Kubernetes API answered HTTP {status} {e.reason}; retry later"
        ) from None
    except (HTTPError, OSError) as e:
        raise ArtifactStoreUnavailable(
            f"{what}: the Kubernetes API of connection {model.kubernetes.conn_id!r} cannot be reached "
            f"({type(e).__name__}); retry later"
        ) from None
    phase = getattr(found.status, "phase", None) if found.status is not None else None
    if phase != "Bound":
        raise ArtifactMissing(
            f"{what} is {phase or 'without a phase'}, not Bound: no volume holds the model yet",
            uri=uri,
        )
    return uri
