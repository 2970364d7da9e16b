"""Kubernetes manifests of one model version: render, parse back, check.

Templates live in ``include/k8s/*.yaml.j2`` (data, not code). They are rendered by a
*sandboxed* Jinja environment whose ``finalize`` turns every ``{{ expression }}`` into
a quoted YAML scalar (or a flow mapping of quoted scalars), so no value, however
hostile (quotes, newlines, ``&anchors``, ``*aliases``, ``{{``), can add YAML structure.
The text is then parsed back and checked before anyone may apply it::

    >>> from mlinfra.config import load_fleet
    >>> from mlinfra.deploy.params import validate_request
    >>> fleet = load_fleet()
    >>> request = validate_request({"model": "half-plus-two", "version": 2, "image_tag": "2.14.1"}, fleet)
    >>> values = manifest_values(fleet.model("half-plus-two"), request, run_id="manual__1", replicas=2)
    >>> rendered = render_manifests(values)
    >>> [o["kind"] for o in rendered.objects]
    ['ConfigMap', 'Service', 'Deployment']

A canary of the same request (:func:`canary_values`) is ``<name>-canary``, serving both
versions with the TF Serving version labels ``stable`` and ``canary``::

    >>> canary = render_manifests(canary_values(values, stable_version=1, replicas=1))
    >>> [o["metadata"]["name"] for o in canary.objects][1:]
    ['half-plus-two-canary', 'half-plus-two-canary']
    >>> canary.by_kind("Deployment")["spec"]["selector"]["matchLabels"]
    {'app': 'half-plus-two', 'track': 'canary'}

A model version owns its configuration: an ``immutable: true`` ConfigMap named by a hash
of its content (``<deployment>-config-<sha256[:10]>``) that only the new pod template
mounts, so no kubelet can re-project a rewritten config into running pods (which would
drop the version they serve). :func:`mlinfra.deploy.kube.collect_config_maps` deletes
those no pod template of the Deployment or of its kept ReplicaSets mounts any more.

:class:`~mlinfra.exceptions.ManifestError` names the object and field of any problem.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from mlinfra.config import DNS1035_LABEL, PROJECT_ROOT
from mlinfra.exceptions import ManifestError

if TYPE_CHECKING:
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    from mlinfra.config import Model
    from mlinfra.deploy.params import DeployRequest

TEMPLATE_DIR = PROJECT_ROOT / "include" / "k8s"
TEMPLATES = ("configmap.yaml.j2", "service.yaml.j2", "deployment.yaml.j2")
# Applied in this order: the config and the Service exist before pods that use them.
KINDS = {"ConfigMap": "v1", "Service": "v1", "Deployment": "apps/v1"}
GRPC_PORT, REST_PORT = 8500, 8501
DEFAULT_MODEL_BASE_PATH = "/models/{model_name}"
PVC_MOUNT = "/models/pvc"  # where a pvc:// claim is mounted in the TF Serving container
# Annotations that name the run: they do not make a deploy "a change" on their own.
RUN_ANNOTATIONS = frozenset(
    {"mlinfra.io/airflow-dag-id", "mlinfra.io/airflow-run-id", "mlinfra.io/triggered-by"}
)

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
NAME_RULES = {  # names as the API server checks them (a Service's: ValidateServiceName)
    "ConfigMap": (DNS1123_SUBDOMAIN, "a DNS-1123 subdomain"),
    "Service": (re.compile(DNS1035_LABEL), "a DNS-1035 label (starts with a letter)"),
}
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$")
LABEL_KEY = re.compile(
    r"^([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)


@dataclass(frozen=True)
class ManifestValues:
    """Everything the templates may use, as typed values (never pre-formatted YAML)."""

    name: str
    namespace: str
    model: str  # the fleet name
    model_name: str  # TF Serving's model name
    version: int
    image: str
    replicas: int
    cpu: str
    memory: str
    gpus: int
    model_base_path: str
    dag_id: str
    run_id: str
    triggered_by: str
    progress_deadline_seconds: int = 600
    # A Kubernetes Secret whose keys become the TF Serving container's environment
    # (object-store credentials): never the Airflow connection itself.
    credentials_secret: str | None = None
    # A PersistentVolumeClaim holding the versions (pvc:// base paths), mounted read-only.
    model_claim: str | None = None
    kubernetes_version: str | None = None  # validate against this version's OpenAPI schema
    # A canary: Deployment "<name>-canary" (pods labelled track: canary, still app: <name>, so
    # the model's Service spreads over both tracks) serving stable_version and version.
    track: str | None = None  # None: the stable; "canary"
    stable_version: int | None = None
    canary_service: bool = True

    @property
    def object_name(self) -> str:
        """The Deployment's (and its own Service's) name: ``<name>`` or ``<name>-canary``."""
        return f"{self.name}-canary" if self.track == "canary" else self.name

    @property
    def labels(self) -> dict[str, str]:
        track = {"track": self.track} if self.track else {}
        return {"app": self.name, "model": self.model, "version": str(self.version), **track}

    @property
    def selector(self) -> dict[str, str]:
        # Immutable on a Deployment: only the app label (and the track), so a new version is an update.
        return {"app": self.name, **({"track": self.track} if self.track else {})}

    @property
    def config_labels(self) -> dict[str, str]:
        """Labels of the version's ConfigMap: what the garbage collector selects on."""
        return {**self.labels, **config_map_selector(self.object_name)}

    @property
    def kinds(self) -> list[str]:
        """The kinds rendered, in apply order (a canary may go without its own Service)."""
        if self.track == "canary" and not self.canary_service:
            return ["ConfigMap", "Deployment"]
        return list(KINDS)

    @property
    def served_versions(self) -> dict[str, int]:
        """TF Serving version label -> version: the stable's own, or both on a canary."""
        if self.track == "canary" and self.stable_version is not None:
            return {"stable": self.stable_version, "canary": self.version}
        return {"stable": self.version}


CONFIG_OF_LABEL = "mlinfra.io/config-of"
MANAGED_BY = {"app.kubernetes.io/managed-by": "mlinfra"}


def config_map_selector(deployment: str) -> dict[str, str]:
    """The labels every per-version ConfigMap of ``deployment`` carries (and only those)."""
    return {**MANAGED_BY, CONFIG_OF_LABEL: deployment}


def config_map_name(deployment: str, data: Any) -> str:
    """``<deployment>-config-<first 10 hex of sha256(data)>``: the same content, the same name."""
    digest = hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:10]
    return f"{deployment}-config-{digest}"


def manifest_values(
    model: Model,
    request: DeployRequest,
    *,
    run_id: str,
    replicas: int,
    dag_id: str = "model_deploy",
    triggered_by: str = "",
    model_base_path: str | None = None,
    progress_deadline_seconds: int = 600,
    kubernetes_version: str | None = None,
) -> ManifestValues:
    """The values for ``request`` of fleet ``model`` in run ``run_id``.

    The base path TF Serving reads follows ``serving.model_base_path``: ``s3://``/``gs://``
    as they are (TF Serving reads object stores itself, with ``credentials_secret``),
    ``pvc://<claim>/<path>`` as the claim mounted at ``/models/pvc/<claim>``, and a path
    inside the image as it is.
    """
    artifact = model.serving.artifact
    claim = artifact.bucket_or_claim if artifact.scheme == "pvc" else None
    if model_base_path is None:
        if artifact.scheme == "pvc":
            model_base_path = f"{PVC_MOUNT}/{claim}" + (f"/{artifact.path}" if artifact.path else "")
        else:
            model_base_path = artifact.base_uri
    return ManifestValues(
        name=model.kubernetes.deployment,
        namespace=model.kubernetes.namespace,
        model=model.name,
        model_name=model.serving.model_name,
        version=request.version,
        image=request.image,
        replicas=replicas,
        cpu=model.resources.cpu,
        memory=model.resources.memory,
        gpus=model.resources.gpus,
        model_base_path=model_base_path,
        dag_id=dag_id,
        run_id=run_id,
        triggered_by=triggered_by,
        progress_deadline_seconds=progress_deadline_seconds,
        credentials_secret=model.serving.credentials_secret,
        model_claim=claim,
        kubernetes_version=kubernetes_version,
    )


def canary_values(
    values: ManifestValues, *, stable_version: int, replicas: int, service: bool = True
) -> ManifestValues:
    """The canary's values next to the stable at ``stable_version`` (which must be lower:
    an unlabelled request on a canary pod gets the highest version, so it must be the canary)."""
    from dataclasses import replace

    if values.version <= stable_version:
        raise ManifestError(
            f"a canary must be a higher version than the stable ({stable_version}), got {values.version}"
        )
    return replace(
        values, track="canary", stable_version=stable_version, replicas=replicas, canary_service=service
    )


# --------------------------------------------------------------------------- YAML-safe output


def yaml_scalar(text: str) -> str:
    """``text`` as a double-quoted YAML scalar that reads back as exactly ``text``.

    Everything outside printable ASCII is escaped, so line breaks (including the
    Unicode ones YAML folds), tabs and control characters survive the round trip.
    """
    out = ['"']
    for ch in text:
        code = ord(ch)
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif 0x20 <= code < 0x7F:
            out.append(ch)
        elif code <= 0xFF:
            out.append(f"\\x{code:02x}")
        elif code <= 0xFFFF:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)


def to_yaml_value(value: Any) -> str:
    """The ``finalize`` of the environment: any template value as inert YAML."""
    from jinja2 import Undefined

    if isinstance(value, Undefined):
        str(value)  # StrictUndefined raises UndefinedError naming the variable
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ManifestError(f"cannot put the non-finite number {value!r} into a manifest")
        return repr(value)
    if isinstance(value, str):
        return yaml_scalar(value)
    if isinstance(value, Mapping):
        items = ", ".join(f"{yaml_scalar(str(k))}: {to_yaml_value(v)}" for k, v in value.items())
        return "{" + items + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(to_yaml_value(v) for v in value) + "]"
    raise ManifestError(f"cannot put a {type(value).__name__} into a manifest")


def environment(template_dir: Path = TEMPLATE_DIR) -> ImmutableSandboxedEnvironment:
    """The sandboxed environment: no attribute access to internals, strict undefined, inert output."""
    from jinja2 import FileSystemLoader, StrictUndefined
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    return ImmutableSandboxedEnvironment(
        loader=FileSystemLoader(str(template_dir)),
        undefined=StrictUndefined,
        autoescape=False,
        finalize=to_yaml_value,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


# --------------------------------------------------------------------------- render and check


def model_config_text(
    model_name: str, base_path: str, version: int, *, labels: Mapping[str, int] | None = None
) -> str:
    """TF Serving's ``--model_config_file`` (text protobuf), serving exactly the labelled versions.

    ``labels`` (default ``{"stable": version}``) are TF Serving version labels; every version
    they name is served (``specific`` policy), so a label-addressed client can pin either.
    """
    labels = dict(labels) if labels else {"stable": int(version)}
    versions = sorted({int(version), *(int(v) for v in labels.values())})
    lines = [
        "model_config_list {",
        "  config {",
        f"    name: {_proto_string(model_name)}",
        f"    base_path: {_proto_string(base_path)}",
        '    model_platform: "tensorflow"',
        "    model_version_policy {",
        "      specific { " + " ".join(f"versions: {v}" for v in versions) + " }",
        "    }",
        *(f"    version_labels {{ key: {_proto_string(k)} value: {int(v)} }}" for k, v in labels.items()),
        "  }",
        "}",
    ]
    return "\n".join(lines) + "\n"


def _proto_string(text: str) -> str:
    # Text-format protobuf string: octal escapes for anything not printable ASCII.
    out = ['"']
    for byte in text.encode():
        ch = chr(byte)
        if ch in ('"', "\\", "'"):
            out.append("\\" + ch)
        elif 0x20 <= byte < 0x7F:
            out.append(ch)
        else:
            out.append(f"\\{byte:03o}")
    out.append('"')
    return "".join(out)


@dataclass(frozen=True)
class RenderedManifests:
    """Checked objects (apply order) and the YAML text they came from."""

    objects: list[dict[str, Any]]
    text: str

    def by_kind(self, kind: str) -> dict[str, Any]:
        for obj in self.objects:
            if obj["kind"] == kind:
                return obj
        raise KeyError(kind)

    def to_dict(self) -> dict[str, Any]:
        return {"objects": self.objects, "text": self.text}


def render_manifests(values: ManifestValues, template_dir: Path = TEMPLATE_DIR) -> RenderedManifests:
    """Render the three templates, parse them back and :func:`check_manifests` the result."""
    from jinja2 import TemplateError

    env = environment(template_dir)
    context: dict[str, Any] = {
        **asdict(values),
        "config_map_name": f"{values.name}-config",  # replaced by the content-derived name below
        "labels": values.labels,
        "config_labels": values.config_labels,
        "selector": values.selector,
        "grpc_port": GRPC_PORT,
        "rest_port": REST_PORT,
        "rest_port_text": str(REST_PORT),
        # GetModelMetadata needs the version loaded: 404 unless it is AVAILABLE, so a pod that
        # lost its version leaves the Service (the status URL would still answer 200 with END).
        "readiness_path": f"/v1/models/{values.model_name}/versions/{values.version}/metadata",
        "model_config": model_config_text(
            values.model_name, values.model_base_path, values.version, labels=values.served_versions
        ),
        "name": values.object_name,
        "pvc_mount": f"{PVC_MOUNT}/{values.model_claim}" if values.model_claim else None,
    }
    templates = [
        t for t in TEMPLATES if values.kinds != ["ConfigMap", "Deployment"] or t != "service.yaml.j2"
    ]
    texts = []
    try:
        # The name derives from the content, so the content is rendered first.
        draft = _parse_one(env.get_template(templates[0]).render(context), templates[0])
        context["config_map_name"] = config_map_name(values.object_name, draft.get("data"))
        texts.append(env.get_template(templates[0]).render(context))
        for template in templates[1:]:
            texts.append(env.get_template(template).render(context))
    except TemplateError as e:
        raise ManifestError(f"include/k8s: cannot render the manifests: {e}") from e
    text = "---\n".join(texts)
    objects = [_parse_one(t, name) for t, name in zip(texts, templates, strict=True)]
    check_manifests(objects, values)
    if values.kubernetes_version:
        from mlinfra.deploy.schema import validate_manifests

        validate_manifests(objects, values.kubernetes_version)
    return RenderedManifests(objects, text)


def _parse_one(text: str, source: str) -> dict[str, Any]:
    try:
        tokens = list(yaml.scan(text, Loader=yaml.SafeLoader))
        documents = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as e:
        raise ManifestError(f"{source}: the rendered manifest is not valid YAML: {e}") from None
    if any(isinstance(t, yaml.AnchorToken | yaml.AliasToken | yaml.TagToken) for t in tokens):
        raise ManifestError(f"{source}: the rendered manifest contains YAML anchors, aliases or tags")
    if len(documents) != 1 or not isinstance(documents[0], dict):
        raise ManifestError(
            f"{source}: must render exactly one YAML mapping, got {len(documents)} document(s)"
        )
    return documents[0]


def check_manifests(objects: list[dict[str, Any]], values: ManifestValues) -> None:
    """Kinds, names (DNS-1123), namespace, labels, image and annotations are what was asked for."""
    problems: list[str] = []
    kinds = [o.get("kind") for o in objects]
    if kinds != values.kinds:
        problems.append(f"expected the kinds {', '.join(values.kinds)} in that order, got {kinds}")
    for obj in objects:
        kind = obj.get("kind")
        meta = obj.get("metadata") or {}
        where = f"{kind} {meta.get('name')!r}"
        if kind in KINDS and obj.get("apiVersion") != KINDS[kind]:
            problems.append(f"{where}: apiVersion must be {KINDS[kind]}, got {obj.get('apiVersion')!r}")
        name = meta.get("name")
        pattern, rule = NAME_RULES.get(str(kind), (DNS1123_LABEL, "a DNS-1123 label"))
        if not isinstance(name, str) or not pattern.match(name):
            problems.append(f"{where}: metadata.name must be {rule}")
        expected_name = (
            config_map_name(values.object_name, obj.get("data"))
            if kind == "ConfigMap"
            else values.object_name
        )
        if name != expected_name:
            problems.append(f"{where}: metadata.name must be {expected_name!r}")
        namespace = meta.get("namespace")
        if not isinstance(namespace, str) or not DNS1123_LABEL.match(namespace):
            problems.append(f"{where}: metadata.namespace must be a DNS-1123 label, got {namespace!r}")
        elif namespace != values.namespace:
            problems.append(f"{where}: metadata.namespace must be {values.namespace!r}, got {namespace!r}")
        problems.extend(_label_problems(where, "metadata.labels", meta.get("labels")))
        if kind == "ConfigMap" and obj.get("immutable") is not True:
            problems.append(f"{where}: immutable must be true (a version's config never changes)")
    if not problems:
        problems.extend(_deployment_problems(objects[-1], values, objects[0]["metadata"]["name"]))
    if problems:
        raise ManifestError(
            "rendered manifests failed their checks:\n" + "\n".join(f"  {p}" for p in problems)
        )


def _label_problems(where: str, field: str, labels: Any) -> list[str]:
    if not isinstance(labels, dict):
        return [f"{where}: {field} must be a mapping"]
    out = []
    for key, value in labels.items():
        if not isinstance(key, str) or not LABEL_KEY.match(key):
            out.append(f"{where}: {field}: invalid label key {key!r}")
        if not isinstance(value, str) or not LABEL_VALUE.match(value):
            out.append(
                f"{where}: {field}[{key!r}]: invalid label value {value!r} (63 characters of [A-Za-z0-9_.-])"
            )
    return out


def _deployment_problems(dep: dict[str, Any], values: ManifestValues, config_map: str) -> list[str]:
    where = f"Deployment {values.object_name!r}"
    spec = dep.get("spec") or {}
    template = spec.get("template") or {}
    mounted = template_config_maps(template)
    if mounted != {config_map}:
        problems_cm = [
            f"{where}: the pod template must mount exactly the ConfigMap {config_map!r}, got {sorted(mounted)}"
        ]
    else:
        problems_cm = []
    labels = (template.get("metadata") or {}).get("labels") or {}
    problems = _label_problems(where, "spec.template.metadata.labels", labels)
    selector = (spec.get("selector") or {}).get("matchLabels") or {}
    if not selector or any(labels.get(k) != v for k, v in selector.items()):
        problems.append(f"{where}: spec.selector.matchLabels must select the pod template's labels")
    containers = (template.get("spec") or {}).get("containers") or []
    if [c.get("image") for c in containers] != [values.image]:
        problems.append(f"{where}: the only container's image must be {values.image!r}")
    if spec.get("replicas") != values.replicas or isinstance(spec.get("replicas"), bool):
        problems.append(f"{where}: spec.replicas must be {values.replicas}")
    annotations = (dep.get("metadata") or {}).get("annotations") or {}
    expected = {
        "mlinfra.io/airflow-dag-id": values.dag_id,
        "mlinfra.io/airflow-run-id": values.run_id,
        "mlinfra.io/triggered-by": values.triggered_by,
    }
    if annotations != expected:
        # A value that changed on the way through YAML was not rendered inertly.
        problems.append(f"{where}: metadata.annotations do not read back as rendered")
    return problems_cm + problems


def template_config_maps(template: dict[str, Any]) -> set[str]:
    """Names of the ConfigMaps a pod template mounts as volumes."""
    volumes = ((template or {}).get("spec") or {}).get("volumes") or []
    return {v["configMap"]["name"] for v in volumes if isinstance(v, dict) and v.get("configMap")}


# --------------------------------------------------------------------------- live objects and diffs

SERVER_FIELDS = ("uid", "resourceVersion", "generation", "creationTimestamp", "managedFields", "selfLink")
SERVER_ANNOTATIONS = ("deployment.kubernetes.io/revision", "kubectl.kubernetes.io/last-applied-configuration")


def clean_live(obj: dict[str, Any] | None) -> dict[str, Any] | None:
    """A live object without what the server owns (status, uid, resourceVersion, ...): re-appliable."""
    if obj is None:
        return None
    out = copy.deepcopy(obj)
    out.pop("status", None)
    meta = out.setdefault("metadata", {})
    for key in SERVER_FIELDS:
        meta.pop(key, None)
    annotations = meta.get("annotations")
    if isinstance(annotations, dict):
        for key in SERVER_ANNOTATIONS:
            annotations.pop(key, None)
        if not annotations:
            meta.pop("annotations")
    return out


def without_run_annotations(obj: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(obj)
    meta = out.get("metadata") or {}
    annotations = meta.get("annotations")
    if isinstance(annotations, dict):
        for key in RUN_ANNOTATIONS:
            annotations.pop(key, None)
        if not annotations:
            meta.pop("annotations")
    return out


def is_subset(desired: Any, live: Any) -> bool:
    """Every field of ``desired`` has the same value in ``live`` (lists: same length, item by item)."""
    if isinstance(desired, dict):
        return isinstance(live, dict) and all(k in live and is_subset(v, live[k]) for k, v in desired.items())
    if isinstance(desired, list):
        return (
            isinstance(live, list)
            and len(desired) == len(live)
            and all(is_subset(d, x) for d, x in zip(desired, live, strict=True))
        )
    # 1 == 1.0 is the same quantity; True == 1 is not the same field value.
    return bool(desired == live) and isinstance(desired, bool) == isinstance(live, bool)


def needs_apply(desired: dict[str, Any], live: dict[str, Any] | None) -> bool:
    """Whether applying ``desired`` would change ``live`` (run annotations alone do not count)."""
    if live is None:
        return True
    return not is_subset(without_run_annotations(desired), live)


def managed_view(desired: Any, live: Any) -> Any:
    """``live`` reduced to the fields ``desired`` sets: what a diff of "our" fields compares."""
    if isinstance(desired, dict):
        if not isinstance(live, dict):
            return live
        return {k: managed_view(v, live[k]) for k, v in desired.items() if k in live}
    if isinstance(desired, list) and isinstance(live, list):
        return [managed_view(d, x) for d, x in zip(desired, live, strict=False)] + live[len(desired) :]
    return live


def diff_objects(desired: list[dict[str, Any]], live: Mapping[str, dict[str, Any] | None]) -> str:
    """A unified diff (live -> desired) of the fields mlinfra manages, one section per object."""
    import difflib

    out: list[str] = []
    for obj in desired:
        kind, name = obj["kind"], obj["metadata"]["name"]
        current = live.get(kind)
        want = without_run_annotations(obj)
        have = without_run_annotations(managed_view(obj, current)) if current is not None else None
        a = yaml.safe_dump(have, sort_keys=False, width=10_000).splitlines() if have is not None else []
        b = yaml.safe_dump(want, sort_keys=False, width=10_000).splitlines()
        label = f"{kind}/{name}"
        lines = list(
            difflib.unified_diff(
                a,
                b,
                fromfile=f"live {label}" if have is not None else "(absent)",
                tofile=f"new {label}",
                lineterm="",
            )
        )
        out.extend(lines if lines else [f"= {label}: unchanged"])
    return "\n".join(out) + "\n"
