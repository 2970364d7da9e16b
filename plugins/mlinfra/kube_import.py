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
import __future__

import ast
import builtins
import importlib
import importlib.util
import re
import sys
import threading
import types
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook

__all__ = ["DEFERRED", "SYNC_PACKAGES", "import_kubernetes", "kubernetes_hook_class"]

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
            import_kubernetes()
        module = importlib.import_module(HOOK_MODULE)
    hook: type[KubernetesHook] = module.KubernetesHook
    return hook


# --------------------------------------------------------------------------- the sync client, name by name

# The generated packages of the sync client whose __init__ imports every API class or model.
SYNC_PACKAGES = ("kubernetes.client", "kubernetes.client.api", "kubernetes.client.models")
_IMPORT_LINE = re.compile(r"from (kubernetes\.client(?:\.\w+)+) import (\w+)")
_VERSION_LINE = re.compile(r"""__version__ = ("[^"\\]*"|'[^'\\]*')""")
# package -> (its stand-in, {name: the module its __init__ imports the name from}), while lazy.
_pending: dict[str, tuple[types.ModuleType, dict[str, str]]] = {}


class _NameByName(types.ModuleType):
    """A generated package whose names load at first read, each from the module its ``__init__`` names."""

    def __getattr__(self, name: str) -> Any:  # only for names not loaded yet
        entry = _pending.get(self.__name__)
        where = entry[1].get(name) if entry is not None and entry[0] is self else None
        if where is not None:
            value = getattr(importlib.import_module(where), name)
            setattr(self, name, value)
            return value
        if name == "__all__":
            # ``from package import *``: the real package has no ``__all__``, so the star
            # import takes every public name of its namespace, which must be complete first.
            _load_sync_client()
        elif (
            name.isidentifier()
            and not name.startswith("__")
            and importlib.util.find_spec(f"{self.__name__}.{name}") is not None
        ):
            # A submodule read as an attribute, which the real __init__ would have imported.
            return importlib.import_module(f"{self.__name__}.{name}")
        raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}")

    def __dir__(self) -> list[str]:
        _load_sync_client()
        return sorted(self.__dict__)


def _generated_init(text: str) -> tuple[dict[str, Any], dict[str, str]] | None:
    """``(namespace, {name: module})`` of a generated ``__init__``; None if it holds anything else.

    Accepted, line by line: comments, the module docstring, ``from __future__ import
    absolute_import``, ``__version__ = "..."`` and ``from kubernetes.client.<module> import
    <Name>``: what the OpenAPI generator writes. Anything else (another client version
    generated differently) and the package is imported as usual.
    """
    namespace: dict[str, Any] = {"__doc__": None, "__builtins__": builtins.__dict__}
    names: dict[str, str] = {}
    lines = iter(text.splitlines())
    statements = 0
    for line in lines:
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        statements += 1
        if statements == 1 and stripped.startswith('"""'):
            block = [stripped]
            closed = len(stripped) >= 6 and stripped.endswith('"""')
            while not closed:
                following = next(lines, None)
                if following is None:
                    return None
                block.append(following)
                closed = following.rstrip().endswith('"""')
            namespace["__doc__"] = ast.literal_eval("\n".join(block).rstrip())
        elif stripped == "from __future__ import absolute_import":
            namespace["absolute_import"] = __future__.absolute_import
        elif found := _VERSION_LINE.fullmatch(stripped):
            namespace["__version__"] = ast.literal_eval(found.group(1))
        elif found := _IMPORT_LINE.fullmatch(stripped):
            names[found.group(2)] = found.group(1)
        else:
            return None
    return namespace, names


def _lazy_sync_client() -> bool:
    """Put name-by-name stand-ins for :data:`SYNC_PACKAGES` in ``sys.modules``; False when not possible.

    Only before ``kubernetes`` is imported, and only when each package's ``__init__`` is
    the generator's plain list of imports.
    """
    if any(name in sys.modules for name in ("kubernetes", *SYNC_PACKAGES)):
        return False
    spec = importlib.util.find_spec("kubernetes")
    if spec is None or not spec.submodule_search_locations:
        return False
    root = Path(list(spec.submodule_search_locations)[0])
    made: dict[str, tuple[types.ModuleType, dict[str, str]]] = {}
    for package in SYNC_PACKAGES:
        folder = root.joinpath(*package.split(".")[1:])
        init = folder / "__init__.py"
        try:
            parsed = _generated_init(init.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, SyntaxError, ValueError):
            parsed = None
        package_spec = importlib.util.spec_from_file_location(
            package, init, submodule_search_locations=[str(folder)]
        )
        if parsed is None or package_spec is None:
            return False
        module = importlib.util.module_from_spec(package_spec)
        module.__dict__.update(parsed[0])
        module.__class__ = _NameByName
        made[package] = (module, parsed[1])
    client = made["kubernetes.client"][0]
    # The real __init__ imports both subpackages, so they are attributes of ``client``;
    # ``ApiClient.deserialize`` reads ``kubernetes.client.models`` as one.
    client.__dict__["api"] = made["kubernetes.client.api"][0]
    client.__dict__["models"] = made["kubernetes.client.models"][0]
    _pending.update(made)
    sys.modules.update({name: module for name, (module, _) in made.items()})
    return True


def _load_sync_client() -> None:
    """Load every name of every stand-in; from then on they are plain modules, nothing deferred."""
    with _lock:
        for module, names in list(_pending.values()):
            for name, where in names.items():
                if name not in module.__dict__:
                    setattr(module, name, getattr(importlib.import_module(where), name))
        for package, (module, _) in list(_pending.items()):
            module.__class__ = types.ModuleType
            del _pending[package]


def import_kubernetes() -> types.ModuleType:
    """The sync ``kubernetes`` package; when imported here first, its generated client loads name by name.

    ``kubernetes.client`` (and its ``api`` and ``models`` subpackages) then import an API
    class or model at its first read, from the module the package's own ``__init__``
    imports it from: the same class object, so ``isinstance`` and ``except`` work across
    every path. ``dir()`` or a star import of one of them loads them all in full, after
    which they are plain modules. Call it before any ``from kubernetes... import``.

        >>> import_kubernetes().client.CoreV1Api.__module__
        'kubernetes.client.api.core_v1_api'
    """
    with _lock:
        if "kubernetes" not in sys.modules:
            _lazy_sync_client()
        return importlib.import_module("kubernetes")
