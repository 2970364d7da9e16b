"""The provider's KubernetesHook with ``kubernetes_asyncio`` deferred (mlinfra.kube_import).

Each check runs in a fresh interpreter: whether a package is loaded is a property of
the process, and this one has loaded ``kubernetes_asyncio`` through other tests.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def _run(script: str, *args: str) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "plugins"), str(ROOT)])}
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def test_the_sync_hook_loads_no_async_models_or_apis() -> None:
    got = _run(
        """
        import json, sys
        from mlinfra.kube_import import kubernetes_hook_class
        hook = kubernetes_hook_class()(conn_id="kubernetes_default")
        print(json.dumps({
            "hook": type(hook).__module__,
            "models": sorted(n for n in sys.modules if n.startswith("kubernetes_asyncio.client.models.")),
            "apis": sorted(n for n in sys.modules if n.startswith("kubernetes_asyncio.client.api.")),
        }))
        """
    )
    assert got == {
        "hook": "airflow.providers.cncf.kubernetes.hooks.kubernetes",
        "models": [],
        "apis": [],
    }


def test_the_async_side_loads_in_full_at_first_use_with_class_identity_kept() -> None:
    """What the provider's async hook and kube_client hold is the real package, once touched."""
    got = _run(
        """
        import asyncio, json, sys
        from mlinfra.kube_import import kubernetes_hook_class
        kubernetes_hook_class()
        from airflow.providers.cncf.kubernetes.hooks import kubernetes as hooks
        from airflow.providers.cncf.kubernetes import kube_client
        from airflow.providers.cncf.kubernetes.kubernetes_helper_functions import AsyncApiException
        api = hooks.async_client.CoreV1Api           # the first read of a heavy name loads all
        import kubernetes_asyncio, kubernetes_asyncio.client as real

        async def decode():
            client = real.ApiClient()
            try:
                pod = client.deserialize(type("R", (), {"data": '{"metadata": {"name": "p"}}'})(), "V1Pod")
            finally:
                await client.close()
            return type(pod).__name__, pod.metadata.name

        print(json.dumps({
            "real_package": type(sys.modules["kubernetes_asyncio.client"]).__name__,
            "api": api is real.CoreV1Api,
            "api_client": real.ApiClient in kube_client._TimeoutAsyncK8sApiClient.__mro__,
            "exception": AsyncApiException is real.ApiException is hooks.async_client.ApiException,
            "config": hooks.async_config.load_kube_config is kubernetes_asyncio.config.load_kube_config,
            "watch": hooks.async_watch.Watch is kubernetes_asyncio.watch.Watch,
            "decoded": decode and asyncio.run(decode()),
        }))
        """
    )
    assert got == {
        "real_package": "module",
        "api": True,
        "api_client": True,
        "exception": True,
        "config": True,
        "watch": True,
        "decoded": ["V1Pod", "p"],
    }


def test_nothing_is_deferred_once_kubernetes_asyncio_is_loaded() -> None:
    got = _run(
        """
        import json, sys
        import kubernetes_asyncio
        from mlinfra.kube_import import kubernetes_hook_class
        kubernetes_hook_class()
        print(json.dumps([type(sys.modules[n]).__name__ for n in
              ("kubernetes_asyncio", "kubernetes_asyncio.client", "kubernetes_asyncio.client.models")]))
        """
    )
    assert got == ["module", "module", "module"]


# --------------------------------------------------------------------------- the sync client, name by name

# What an API server answers (trimmed): nested models, lists, maps, quantities, timestamps.
DEPLOYMENT = {
    "kind": "Deployment",
    "apiVersion": "apps/v1",
    "metadata": {
        "name": "half-plus-two",
        "namespace": "serving",
        "uid": "0b6f1f8e-3c2d-4a51-9d8e-2f7c1a9b4e10",
        "resourceVersion": "4711",
        "generation": 3,
        "creationTimestamp": "2026-11-20T12:00:00Z",
        "labels": {"app": "half-plus-two", "mlinfra.io/version": "2"},
        "annotations": {"deployment.kubernetes.io/revision": "3"},
        "managedFields": [
            {
                "manager": "mlinfra",
                "operation": "Apply",
                "apiVersion": "apps/v1",
                "time": "2026-11-20T12:00:00Z",
                "fieldsType": "FieldsV1",
                "fieldsV1": {"f:spec": {"f:replicas": {}}},
            }
        ],
    },
    "spec": {
        "replicas": 3,
        "selector": {"matchLabels": {"app": "half-plus-two"}},
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": "25%"}},
        "template": {
            "metadata": {"labels": {"app": "half-plus-two"}},
            "spec": {
                "containers": [
                    {
                        "name": "serving",
                        "image": "tensorflow/serving:2.19.0",
                        "args": ["--model_name=half_plus_two"],
                        "ports": [{"name": "grpc", "containerPort": 8500, "protocol": "TCP"}],
                        "env": [{"name": "MODEL_NAME", "value": "half_plus_two"}],
                        "resources": {"limits": {"nvidia.com/gpu": "1"}, "requests": {"cpu": "500m"}},
                        "readinessProbe": {"httpGet": {"path": "/v1/models/half_plus_two", "port": 8501}},
                        "volumeMounts": [{"name": "config", "mountPath": "/config"}],
                    }
                ],
                "volumes": [{"name": "config", "configMap": {"name": "half-plus-two-config-2"}}],
                "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
            },
        },
        "progressDeadlineSeconds": 600,
    },
    "status": {
        "observedGeneration": 3,
        "replicas": 3,
        "readyReplicas": 2,
        "availableReplicas": 2,
        "conditions": [
            {
                "type": "Available",
                "status": "True",
                "lastUpdateTime": "2026-11-20T12:01:00Z",
                "lastTransitionTime": "2026-11-20T12:01:00Z",
                "reason": "MinimumReplicasAvailable",
                "message": "Deployment has minimum availability.",
            }
        ],
    },
}
POD_LIST = {
    "kind": "PodList",
    "apiVersion": "v1",
    "metadata": {"resourceVersion": "4712"},
    "items": [
        {
            "metadata": {
                "name": "half-plus-two-7c9d-x2x4q",
                "namespace": "serving",
                "labels": {"app": "half-plus-two"},
                "ownerReferences": [
                    {
                        "apiVersion": "apps/v1",
                        "kind": "ReplicaSet",
                        "name": "half-plus-two-7c9d",
                        "uid": "5e0c1d2a-8f3b-4c6d-a1e2-b3c4d5e6f708",
                        "controller": True,
                    }
                ],
            },
            "spec": {
                "nodeName": "gpu-node-1",
                "containers": [{"name": "serving", "image": "tensorflow/serving"}],
            },
            "status": {
                "phase": "Running",
                "podIP": "10.0.0.12",
                "startTime": "2026-11-20T12:00:05Z",
                "conditions": [{"type": "Ready", "status": "True"}],
                "containerStatuses": [
                    {
                        "name": "serving",
                        "ready": True,
                        "restartCount": 7,
                        "image": "tensorflow/serving",
                        "imageID": "",
                        "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                        "lastState": {
                            "terminated": {
                                "exitCode": 137,
                                "reason": "OOMKilled",
                                "finishedAt": "2026-11-20T12:03:00Z",
                            }
                        },
                    }
                ],
            },
        }
    ],
}

DESERIALIZE = """
    import json, sys
    if sys.argv[1] == "lazy":
        from mlinfra.kube_import import import_kubernetes
        import_kubernetes()
    from kubernetes.client import ApiClient

    class Response:  # what RESTResponse hands deserialize()
        def __init__(self, data):
            self.data = json.dumps(data)

    deployment_json, pods_json = json.loads(sys.argv[2])
    api = ApiClient()
    deployment = api.deserialize(Response(deployment_json), "V1Deployment")
    pods = api.deserialize(Response(pods_json), "V1PodList")
    import kubernetes.client, kubernetes.client.models as models
    pod = pods.items[0]
    status = pod.status.container_statuses[0]
    print(json.dumps({
        "package": type(kubernetes.client).__name__,
        "loaded_models": len([n for n in sys.modules if n.startswith("kubernetes.client.models.")]),
        "sanitized": [api.sanitize_for_serialization(deployment), api.sanitize_for_serialization(pods)],
        "classes": [
            type(deployment) is kubernetes.client.V1Deployment is models.V1Deployment,
            type(pods) is models.V1PodList and type(pod) is models.V1Pod,
            isinstance(status.last_state.terminated, kubernetes.client.V1ContainerStateTerminated),
            type(deployment.spec.template.spec.containers[0].resources) is models.V1ResourceRequirements,
            type(deployment.metadata.creation_timestamp).__name__,
        ],
        "values": [deployment.spec.strategy.rolling_update.max_surge, status.restart_count,
                   status.state.waiting.reason, pod.metadata.owner_references[0].controller],
    }))
"""


def test_the_sync_hook_loads_only_the_client_classes_it_reads() -> None:
    got = _run(
        """
        import json, sys
        from mlinfra.kube_import import kubernetes_hook_class
        hook = kubernetes_hook_class()(conn_id="kubernetes_default")
        import kubernetes.client
        core, apps = kubernetes.client.CoreV1Api, kubernetes.client.AppsV1Api  # what the hook builds
        print(json.dumps({
            "types": [type(sys.modules[n]).__name__ for n in
                      ("kubernetes.client", "kubernetes.client.api", "kubernetes.client.models")],
            "models": sorted(n for n in sys.modules if n.startswith("kubernetes.client.models.")),
            "apis": sorted(n for n in sys.modules if n.startswith("kubernetes.client.api.")),
            "same": core is kubernetes.client.api.core_v1_api.CoreV1Api,
        }))
        """
    )
    assert got == {
        "types": ["_NameByName"] * 3,
        # The hook module's own `from kubernetes.client.models import V1Deployment`, and
        # kubernetes.utils' CustomObjectsApi import; nothing else of the ~800 classes.
        "models": ["kubernetes.client.models.v1_deployment"],
        "apis": [
            "kubernetes.client.api.apps_v1_api",
            "kubernetes.client.api.core_v1_api",
            "kubernetes.client.api.custom_objects_api",
        ],
        "same": True,
    }


def test_deserialising_api_answers_gives_the_real_classes_and_the_same_objects() -> None:
    argument = json.dumps([DEPLOYMENT, POD_LIST])
    lazy = _run(DESERIALIZE, "lazy", argument)
    real = _run(DESERIALIZE, "real", argument)

    assert lazy["package"] == "_NameByName"
    assert real["package"] == "module"
    assert lazy["sanitized"] == real["sanitized"]
    assert lazy["classes"] == real["classes"] == [True, True, True, True, "datetime"]
    assert lazy["values"] == real["values"] == ["25%", 7, "CrashLoopBackOff", True]
    # Only the models these two answers hold, not the whole package.
    assert 10 < lazy["loaded_models"] < 60 < real["loaded_models"]


def test_dir_loads_the_whole_client_and_leaves_the_namespace_of_the_real_package() -> None:
    """After a full load nothing is deferred: plain modules holding what the real __init__ binds."""
    namespace = """
        import json, sys
        if sys.argv[1] == "lazy":
            from mlinfra import kube_import
            kube_import.import_kubernetes()
            import kubernetes.client
            pod, core = kubernetes.client.V1Pod, kubernetes.client.CoreV1Api  # some read before
            dir(kubernetes.client.models)
            kept = pod is kubernetes.client.models.v1_pod.V1Pod and core is kubernetes.client.api.CoreV1Api
            assert kept and not kube_import._pending
        import kubernetes.client, kubernetes.client.models, kubernetes.client.api
        out = {}
        for m in (kubernetes.client, kubernetes.client.models, kubernetes.client.api):
            out[m.__name__] = {
                name: [type(v).__name__, v.__module__ if isinstance(v, type) else v if isinstance(v, str) else None]
                for name, v in vars(m).items() if name not in ("__spec__", "__loader__")
            }
            out[m.__name__]["<type>"] = type(m).__name__
            out[m.__name__]["<origin>"] = m.__spec__.origin
            out[m.__name__]["<path>"] = list(m.__path__)
        print(json.dumps(out))
    """
    lazy, real = _run(namespace, "lazy"), _run(namespace, "real")

    assert lazy == real
    assert real["kubernetes.client"]["<type>"] == "module"
    assert len(real["kubernetes.client.models"]) > 1500  # ~770 classes and their modules


def test_a_star_import_sees_every_name_as_from_the_real_package() -> None:
    got = _run(
        """
        import json, sys, warnings
        from mlinfra.kube_import import import_kubernetes
        import_kubernetes()
        warnings.simplefilter("ignore", DeprecationWarning)
        import kubernetes.client.apis as apis  # the deprecated alias: `from kubernetes.client.api import *`
        from kubernetes.client.models import *
        print(json.dumps({
            "apis": sorted(n for n in vars(apis) if n.endswith("Api")) == sorted(
                n for n in vars(sys.modules["kubernetes.client.api"]) if n.endswith("Api")),
            "api_count": len([n for n in vars(apis) if n.endswith("Api")]),
            "model": V1Pod is sys.modules["kubernetes.client.models.v1_pod"].V1Pod,
            "types": [type(sys.modules[n]).__name__ for n in
                      ("kubernetes.client", "kubernetes.client.api", "kubernetes.client.models")],
        }))
        """
    )
    assert got == {"apis": True, "api_count": 65, "model": True, "types": ["module"] * 3}


def test_an_unknown_name_is_an_attribute_error_as_in_the_real_package() -> None:
    got = _run(
        """
        import json
        from mlinfra.kube_import import import_kubernetes
        models = import_kubernetes().client.models
        try:
            models.V1NoSuchKind
        except AttributeError as e:
            error = str(e)
        print(json.dumps({
            "error": error,
            "hasattr": [hasattr(models, n) for n in ("V1Pod", "v1_service", "V1NoSuchKind", "no.such", "__all__")],
            "type": type(models).__name__,
        }))
        """
    )
    assert got == {
        "error": "module 'kubernetes.client.models' has no attribute 'V1NoSuchKind'",
        # A submodule read as an attribute imports (the real __init__ imported it); asking
        # for __all__ loads everything, and the real package has no __all__.
        "hasattr": [True, True, False, False, False],
        "type": "module",
    }


def test_nothing_is_made_lazy_once_kubernetes_is_loaded_or_an_init_is_not_the_generated_list() -> None:
    script = """
        import json, sys
        from mlinfra import kube_import
        names = ("kubernetes.client", "kubernetes.client.api", "kubernetes.client.models")
        if sys.argv[1] == "loaded":
            import kubernetes
        else:
            kube_import._generated_init = lambda text: None
        kube_import.kubernetes_hook_class()
        print(json.dumps({"types": [type(sys.modules[n]).__name__ for n in names]}))
    """
    for case in ("loaded", "not the generated list"):
        assert _run(script, case) == {"types": ["module"] * 3}, case


def test_only_the_generators_plain_init_is_accepted() -> None:
    from mlinfra.kube_import import _generated_init

    plain = textwrap.dedent(
        '''
        # coding: utf-8

        # flake8: noqa
        """
            Kubernetes

            The version of the OpenAPI document: release-1.36
        """


        from __future__ import absolute_import

        __version__ = "36.0.3"

        # import apis into sdk package
        from kubernetes.client.api.core_v1_api import CoreV1Api
        from kubernetes.client.models.v1_pod import V1Pod
        '''
    )
    parsed = _generated_init(plain)
    assert parsed is not None
    namespace, names = parsed
    assert (
        namespace["__doc__"] == "\n    Kubernetes\n\n    The version of the OpenAPI document: release-1.36\n"
    )
    assert namespace["__version__"] == "36.0.3"
    assert names == {
        "CoreV1Api": "kubernetes.client.api.core_v1_api",
        "V1Pod": "kubernetes.client.models.v1_pod",
    }
    for extra in (
        "import os",
        "from kubernetes.client.models.v1_pod import V1Pod as Pod",
        "from kubernetes.client.models import *",
        "V1Pod = None",
        '"""a late string"""',
    ):
        assert _generated_init(plain + extra + "\n") is None, extra
