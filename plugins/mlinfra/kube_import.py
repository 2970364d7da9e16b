"""The cncf provider's ``KubernetesHook`` without loading ``kubernetes_asyncio`` until it is used.

The provider's hook module imports ``kubernetes_asyncio``'s ``client``, ``config`` and
``watch`` at its top for its ``AsyncKubernetesHook``. Its ``client`` package imports
every generated model and API class at once: about 39 MB and 0.6 s in each task
process, where the sweep's sync tasks (``collect_kubernetes``, ``plan_scaling``) and
the deploy operators never touch it (issue 16: their peak RSS against a no-op task).

:func:`kubernetes_hook_class` imports the provider's hook module with those three
modules (and the package above them) standing in ``sys.modules`` as *deferred*
modules: each has its real ``__path__``, so a light submodule such as
``kubernetes_asyncio.client.exceptions`` (which the provider's helper functions import)
still imports for real, and the first attribute read from any of them loads the real
packages and forwards to them from then on. So the async hook, run in the triggerer or
in the same process, works unchanged; exception classes keep their identity (the real
``client`` package imports the same ``exceptions`` module object).

Nothing is deferred when ``kubernetes_asyncio`` is already imported (the triggerer, an
async trigger's test), and nothing else in the process changes.

    >>> hook_cls = kubernetes_hook_class()
    >>> hook_cls.__name__
    'KubernetesHook'
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import threading
import types
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook

__all__ = ["DEFERRED", "kubernetes_hook_class"]

HOOK_MODULE = "airflow.providers.cncf.kubernetes.hooks.kubernetes"
# The heavy packages, parents first: ``client``'s __init__ imports every API class and
# model, and ``kubernetes_asyncio``'s imports ``client`` (and ``dynamic``, ``stream``).
DEFERRED = ("kubernetes_asyncio", "kubernetes_asyncio.client", "kubernetes_asyncio.client.models")
# What the provider's modules read from them at import time, served from the light
# submodule that defines it (the real one, so identity holds after loading the rest):
# ``kube_client`` subclasses ``ApiClient`` at its top. Anything else read from a deferred
# package loads them all.
# A submodule read as an attribute (``from kubernetes_asyncio.client import rest``) is
# imported on its own, as the import system would.
LIGHT = {
    "kubernetes_asyncio.client": {
        "ApiClient": "kubernetes_asyncio.client.api_client",
        "Configuration": "kubernetes_asyncio.client.configuration",
        "ApiException": "kubernetes_asyncio.client.exceptions",
    },
}
_lock = threading.RLock()


class _Deferred(types.ModuleType):
    """A package that loads itself (and the others deferred with it) at its first attribute read."""

    _mlinfra_target: types.ModuleType | None = None

    def __getattr__(self, name: str) -> Any:  # only for names the stand-in itself lacks
        target = self._mlinfra_target
        if target is None:
            light = LIGHT.get(self.__name__, {}).get(name)
            if light is not None:
                return getattr(importlib.import_module(light), name)
            if not name.startswith("__") and importlib.util.find_spec(f"{self.__name__}.{name}") is not None:
                return importlib.import_module(f"{self.__name__}.{name}")
            target = _load_all()[self.__name__]
        return getattr(target, name)


def _load_all() -> dict[str, types.ModuleType]:
    """Replace every deferred stand-in in ``sys.modules`` by its real package; each forwards to it."""
    with _lock:
        stand_ins = {name: sys.modules.get(name) for name in DEFERRED}
        for name in DEFERRED:
            if isinstance(sys.modules.get(name), _Deferred):
                del sys.modules[name]
        real = {name: importlib.import_module(name) for name in DEFERRED}
        for name, stand_in in stand_ins.items():
            if isinstance(stand_in, _Deferred):
                stand_in._mlinfra_target = real[name]
        return real


def _defer() -> bool:
    """Put deferred stand-ins in ``sys.modules``; False (nothing done) when the package is loaded or absent."""
    if any(name in sys.modules for name in DEFERRED):
        return False
    spec = importlib.util.find_spec(DEFERRED[0])
    if spec is None or spec.submodule_search_locations is None:
        return False
    made: dict[str, _Deferred] = {}
    for name in DEFERRED:
        parent, _, child = name.rpartition(".")
        locations = (
            [f"{path}/{child}" for path in made[parent].__path__]
            if parent
            else list(spec.submodule_search_locations)
        )
        module = _Deferred(name)
        module.__path__ = locations
        module.__package__ = name
        module.__spec__ = importlib.util.spec_from_loader(name, loader=None, is_package=True)
        if module.__spec__ is not None:
            module.__spec__.submodule_search_locations = locations
        made[name] = module
        if parent:
            setattr(made[parent], child, module)
    sys.modules.update(made)
    return True


def kubernetes_hook_class() -> type[KubernetesHook]:
    """The provider's ``KubernetesHook`` class, its module imported with ``kubernetes_asyncio`` deferred."""
    with _lock:
        if HOOK_MODULE not in sys.modules:
            _defer()
        module = importlib.import_module(HOOK_MODULE)
    hook: type[KubernetesHook] = module.KubernetesHook
    return hook
