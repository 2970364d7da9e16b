"""Rendered manifests against the Kubernetes OpenAPI schema of the cluster's version.

The schemas are the ones ``kubernetes-validate`` bundles (JSON Schema generated from
Kubernetes' OpenAPI document), in their *strict* form: a field the API does not define
is refused, as ``kubectl apply --validate=strict`` and server-side field validation do.
A template typo is caught before anything is written to a cluster::

    >>> from mlinfra.config import load_fleet
    >>> from mlinfra.deploy.manifests import manifest_values, render_manifests
    >>> from mlinfra.deploy.params import validate_request
    >>> fleet = load_fleet()
    >>> request = validate_request({"model": "half-plus-two", "version": 2, "image_tag": "2.14.1"}, fleet)
    >>> rendered = render_manifests(manifest_values(fleet.model("half-plus-two"), request, run_id="m", replicas=2))
    >>> validate_manifests(rendered.objects, "1.35")        # None when every object passes
    >>> bad_deployment = rendered.objects[2]
    >>> bad_deployment["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    >>> validate_manifests([bad_deployment], "1.35")
    Traceback (most recent call last):
    ...
    mlinfra.exceptions.ManifestError: manifests do not match the Kubernetes 1.35 API schema:
      Deployment 'half-plus-two': spec.template.spec.containers[0].imagePullPolicyy: unknown field
      (did you mean 'imagePullPolicy'?); accepted here: args, command, env, ...

Every problem of every object is reported at once. Loading a schema (the shared
definitions are 1.4 MB of JSON per version) happens once per process and version;
a validation after that is a few milliseconds.

Nothing here is imported at module level beyond the standard library: the fleet
loader (DAG parse time) asks :func:`supported_kubernetes_versions`, which only lists
a folder.
"""

from __future__ import annotations

import difflib
import functools
import importlib.util
import json
import re
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlinfra.exceptions import ManifestError

if TYPE_CHECKING:
    from jsonschema import ValidationError
    from jsonschema.protocols import Validator

# The minor the fleet validates against when ``kubernetes_version`` is not set: one
# still in upstream support (https://kubernetes.io/releases/: the three newest minors
# get patches) and offered by the managed services; older than the newest so that a
# field only the newest API knows is refused rather than silently dropped by an older
# cluster. Change it with the fleet file's ``kubernetes_version``.
DEFAULT_KUBERNETES_VERSION = "1.35"
KUBERNETES_VERSION_PATTERN = re.compile(r"^1\.[0-9]{1,3}$")
_SCHEMA_DIR = re.compile(r"^v(1\.[0-9]+)\.[0-9]+-local-strict$")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


def _package_dir() -> Path | None:
    # find_spec does not import the package (jsonschema, referencing): a folder lookup only.
    spec = importlib.util.find_spec("kubernetes_validate")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


@functools.cache
def _schema_dirs() -> dict[str, Path]:
    """Kubernetes minor ("1.35") -> folder of its strict schemas."""
    package = _package_dir()
    if package is None:
        return {}
    root = package / "kubernetes-json-schema"
    out: dict[str, Path] = {}
    for d in root.iterdir() if root.is_dir() else ():
        m = _SCHEMA_DIR.match(d.name)
        if m and (d / "_definitions.json").is_file():
            out[m[1]] = d
    return out


def _minor_key(version: str) -> tuple[int, int]:
    major, minor = version.split(".")
    return int(major), int(minor)


def supported_kubernetes_versions() -> list[str]:
    """The Kubernetes minors ("1.25", ..., "1.37") whose schemas the installed kubernetes-validate bundles.

    Empty when kubernetes-validate is not installed.
    """
    return sorted(_schema_dirs(), key=_minor_key)


def kubernetes_version_problem(version: Any) -> str | None:
    """Why ``version`` cannot be a fleet's ``kubernetes_version``, or None (used by the fleet loader)."""
    if not isinstance(version, str):
        hint = " (quote it: YAML reads 1.30 as the number 1.3)" if isinstance(version, float) else ""
        return f'must be a string like "{DEFAULT_KUBERNETES_VERSION}"{hint}, got {version!r}'
    supported = supported_kubernetes_versions()
    if not supported:
        return "cannot be checked: the kubernetes-validate package is not installed (requirements.txt)"
    if version not in supported:
        return (
            f"must be a Kubernetes minor whose schema kubernetes-validate bundles "
            f"({supported[0]} to {supported[-1]}), got {version!r}"
        )
    return None


# --------------------------------------------------------------------------- schemas (cached)

_load_lock = threading.Lock()


@functools.cache
def _registry(version: str) -> Any:
    """The shared ``_definitions.json`` of ``version`` as a ``referencing`` registry (loaded once)."""
    from referencing import Registry, Resource

    definitions = json.loads((_schema_dirs()[version] / "_definitions.json").read_text(encoding="utf-8"))
    return Resource.from_contents(definitions) @ Registry()


def _schema_file(kind: str, api_version: str) -> str:
    # kubernetes-validate's naming: <kind>-<group without domain>-<version>.json, e.g.
    # deployment-apps-v1.json, configmap-v1.json, role-rbac-v1.json.
    group_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    return f"{kind.lower()}-{group_version}.json"


@functools.cache
def _validator(version: str, kind: str, api_version: str) -> Validator | None:
    """A compiled validator for one kind of one Kubernetes minor; None when no such schema exists."""
    from jsonschema import Draft202012Validator
    from referencing import Resource

    if not re.fullmatch(r"[A-Za-z0-9]+", kind) or not re.fullmatch(r"[A-Za-z0-9./-]+", api_version):
        return None  # never build a file name from arbitrary text
    path = _schema_dirs()[version] / _schema_file(kind, api_version)
    if not path.is_file():
        return None
    schema = json.loads(path.read_text(encoding="utf-8"))
    with _load_lock:  # one thread loads the 1.4 MB definitions; the others wait for them
        registry = Resource.from_contents(schema) @ _registry(version)
    return Draft202012Validator(schema, registry=registry)


# --------------------------------------------------------------------------- validation


def schema_problems(objects: Sequence[dict[str, Any]], kubernetes_version: str) -> list[str]:
    """One line per problem, ``<Kind> '<name>': <field path>: <what is wrong>``; empty when all pass.

    Raises :class:`ManifestError` when ``kubernetes_version`` has no bundled schema.
    """
    if kubernetes_version not in _schema_dirs():
        supported = supported_kubernetes_versions()
        raise ManifestError(
            f"kubernetes_version: no bundled schema for Kubernetes {kubernetes_version!r}; "
            f"supported: {', '.join(supported) or 'none (kubernetes-validate is not installed)'}"
        )
    problems: list[str] = []
    for index, obj in enumerate(objects):
        if not isinstance(obj, dict):
            problems.append(f"object {index}: must be a mapping, got {type(obj).__name__}")
            continue
        kind, api_version = obj.get("kind"), obj.get("apiVersion")
        name = (obj.get("metadata") or {}).get("name") if isinstance(obj.get("metadata"), dict) else None
        where = (
            f"{kind or f'object {index}'} {name!r}" if name is not None else f"{kind or f'object {index}'}"
        )
        if not isinstance(kind, str) or not isinstance(api_version, str):
            problems.append(f"{where}: apiVersion and kind must be strings, got {api_version!r}, {kind!r}")
            continue
        validator = _validator(kubernetes_version, kind, api_version)
        if validator is None:
            problems.append(
                f"{where}: Kubernetes {kubernetes_version} has no kind {kind!r} in apiVersion {api_version!r}"
            )
            continue
        for error in sorted(validator.iter_errors(obj), key=lambda e: [str(p) for p in e.absolute_path]):
            problems.extend(f"{where}: {line}" for line in _describe(error))
    return problems


def validate_manifests(objects: list[dict[str, Any]], kubernetes_version: str) -> None:
    """Raise :class:`ManifestError` listing every field of ``objects`` the Kubernetes API would refuse.

    ``kubernetes_version`` is a minor, ``"1.35"`` (the fleet's ``kubernetes_version``).
    """
    problems = schema_problems(objects, kubernetes_version)
    if problems:
        raise ManifestError(
            f"manifests do not match the Kubernetes {kubernetes_version} API schema:\n"
            + "\n".join(f"  {p}" for p in problems)
        )


def _field_path(parts: Iterable[str | int]) -> str:
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _IDENTIFIER.match(part):
            out += f".{part}" if out else part
        else:  # label and annotation keys: app.kubernetes.io/name
            out += f"[{json.dumps(part)}]"
    return out or "(the object)"


def _types(schema: Any) -> list[str]:
    """The JSON types a (sub)schema accepts, null left out (every optional field allows it)."""
    if not isinstance(schema, dict):
        return []
    if "type" in schema:
        kinds = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        return [k for k in kinds if k != "null"]
    out: list[str] = []
    for key in ("oneOf", "anyOf"):
        for sub in schema.get(key, []):
            out.extend(t for t in _types(sub) if t not in out)
    return out


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    return {dict: "object", list: "array", str: "string", float: "number", type(None): "null"}.get(
        type(value), type(value).__name__
    )


def _short(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def _describe(error: ValidationError) -> list[str]:
    path = list(error.absolute_path)
    schema = error.schema if isinstance(error.schema, dict) else {}
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        known = list(schema.get("properties", {}))
        out = []
        for key in error.instance:
            if key in known:
                continue
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            accepted = ", ".join(known) if known else "no fields"
            out.append(f"{_field_path([*path, key])}: unknown field{hint}; accepted here: {accepted}")
        return out
    if error.validator == "required" and isinstance(error.instance, dict):
        required = error.validator_value if isinstance(error.validator_value, list) else []
        return [
            f"{_field_path([*path, key])}: required field is missing"
            for key in required
            if key not in error.instance
        ]
    got = f"got {_json_type(error.instance)} {_short(error.instance)}"
    if error.validator in ("type", "oneOf", "anyOf"):
        expected = " or ".join(_types(schema)) or "another value"
        return [f"{_field_path(path)}: expected {expected}, {got}"]
    if error.validator == "enum":
        allowed = ", ".join(_short(v) for v in error.validator_value or [] if v is not None)
        return [f"{_field_path(path)}: must be one of {allowed}; {got}"]
    return [f"{_field_path(path)}: {error.message}"]
