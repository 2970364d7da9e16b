"""TF Serving's canonical test model, ``half_plus_two`` (y = 0.5 * x + 2), built with TensorFlow.

Builds a TF Serving model base path (one numbered SavedModel directory per
version) and caches it, so only the first run pays for TensorFlow::

    base = build_half_plus_two(cache_dir() / "half_plus_two")    # <base>/1/saved_model.pb
    build_half_plus_two(base, versions=(1, 2))                   # adds <base>/2/, keeps 1

The signatures match the model in TF Serving's own test data: ``serving_default``
and ``predict`` take ``x`` (float32, shape [None]) and return ``y``.

This module and the stand-in are the only test code that imports TensorFlow, and
they do it inside functions: the pytest process imports the path helpers only.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[2]
CACHE_ENV = "MLINFRA_TEST_CACHE"


def cache_dir() -> Path:
    """Where built test models live: ``$MLINFRA_TEST_CACHE`` or ``.pytest_cache/mlinfra``.

    The TensorFlow version is part of the path: a SavedModel written by one version
    is rebuilt, not trusted, after an upgrade.
    """
    root = Path(os.environ.get(CACHE_ENV) or PROJECT_ROOT / ".pytest_cache" / "mlinfra")
    try:
        tf_version = importlib.metadata.version("tensorflow")
    except importlib.metadata.PackageNotFoundError:
        tf_version = "none"
    return root / f"tf-{tf_version}"


def half_plus_two_base_path() -> Path:
    """The cached model base path of ``half_plus_two`` (may not be built yet)."""
    return cache_dir() / "half_plus_two"


def is_built(base_path: Path, version: int) -> bool:
    return (base_path / str(version) / "saved_model.pb").is_file()


def build_half_plus_two(base_path: str | os.PathLike[str], versions: Iterable[int] = (1,)) -> Path:
    """Write ``<base_path>/<version>/`` for each missing version; returns ``base_path``.

    Each version is written to a temporary sibling and renamed into place, so a
    concurrent build or a server polling the base path never sees half a model.
    """
    base = Path(base_path)
    missing = [v for v in versions if not is_built(base, v)]
    if not missing:
        return base
    import tensorflow as tf

    base.mkdir(parents=True, exist_ok=True)
    for version in missing:
        module = _half_plus_two_module(tf)
        with tempfile.TemporaryDirectory(prefix=f".building-{version}-", dir=base) as tmp:
            staged = Path(tmp) / "model"
            tf.saved_model.save(
                module,
                str(staged),
                signatures={"serving_default": module.serve, "predict": module.serve},
            )
            try:
                staged.rename(base / str(version))
            except OSError:
                # Someone else finished the same version first: theirs is as good.
                if not is_built(base, version):
                    raise
    return base


def _half_plus_two_module(tf: Any) -> Any:
    class HalfPlusTwo(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = tf.Variable(0.5, name="a")
            self.b = tf.Variable(2.0, name="b")

        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
        def serve(self, x: Any) -> dict[str, Any]:
            return {"y": self.a * x + self.b}

    return HalfPlusTwo()


def remove(base_path: str | os.PathLike[str]) -> None:
    """Delete a built base path (tests that need a fresh one)."""
    shutil.rmtree(base_path, ignore_errors=True)


if __name__ == "__main__":
    print(build_half_plus_two(half_plus_two_base_path()))
