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

ROOT = Path(__file__).resolve().parents[1]


def _run(script: str) -> dict[str, object]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "plugins"), str(ROOT)])}
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True, env=env, timeout=120
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
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
            "sync_models": "kubernetes.client.models.v1_pod" in sys.modules,
        }))
        """
    )
    assert got == {
        "hook": "airflow.providers.cncf.kubernetes.hooks.kubernetes",
        "models": [],
        "apis": [],
        "sync_models": True,  # the sync client, which the hook does use, is loaded as usual
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
