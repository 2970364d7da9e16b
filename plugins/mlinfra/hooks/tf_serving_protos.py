"""TF Serving's protobuf and gRPC modules without importing TensorFlow.

The generated ``tensorflow_serving.apis.*_pb2`` modules import
``tensorflow.core.framework.tensor_pb2`` and friends. Those are plain generated
protobuf modules, but reaching them through the ``tensorflow`` package runs
``tensorflow/__init__.py``, which loads all of TensorFlow (about 3 s and 700 MB)
just to talk to a server. :func:`load_protos` imports them through a stub
``tensorflow`` package instead, so only the generated modules are loaded::

    >>> protos = load_protos()
    >>> request = protos.predict_pb2.PredictRequest()
    >>> request.model_spec.name = "half_plus_two"
    >>> request.inputs["x"].CopyFrom(make_tensor_proto([1.0, 2.0], "float32"))
    >>> tensor_to_list(request.inputs["x"])
    [1.0, 2.0]

The tensor helpers cover what smoke requests need (float, double, int and
string tensors, nested lists or numpy arrays) and never need TensorFlow either.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import sys
import threading
import types
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "Protos",
    "load_protos",
    "make_tensor_proto",
    "tensor_to_list",
]


@dataclass(frozen=True)
class Protos:
    """The loaded modules, named as in ``tensorflow_serving.apis`` / ``tensorflow.core``."""

    predict_pb2: Any
    get_model_status_pb2: Any
    model_pb2: Any
    prediction_service_pb2_grpc: Any
    model_service_pb2_grpc: Any
    tensor_pb2: Any
    tensor_shape_pb2: Any
    types_pb2: Any
    error_codes_pb2: Any


_lock = threading.Lock()
_protos: Protos | None = None

_MODULES = {
    "predict_pb2": "tensorflow_serving.apis.predict_pb2",
    "get_model_status_pb2": "tensorflow_serving.apis.get_model_status_pb2",
    "model_pb2": "tensorflow_serving.apis.model_pb2",
    "prediction_service_pb2_grpc": "tensorflow_serving.apis.prediction_service_pb2_grpc",
    "model_service_pb2_grpc": "tensorflow_serving.apis.model_service_pb2_grpc",
    "tensor_pb2": "tensorflow.core.framework.tensor_pb2",
    "tensor_shape_pb2": "tensorflow.core.framework.tensor_shape_pb2",
    "types_pb2": "tensorflow.core.framework.types_pb2",
    "error_codes_pb2": "tensorflow.core.protobuf.error_codes_pb2",
}


def load_protos() -> Protos:
    """Import TF Serving's API modules once per process (thread-safe), TensorFlow-free.

    If real TensorFlow is already imported it is used as is. Otherwise a stub
    ``tensorflow`` package whose ``__path__`` is the installed TensorFlow directory
    stands in while the generated modules import, and is removed afterwards so a
    later ``import tensorflow`` still gets the real package.
    """
    global _protos
    if _protos is not None:
        return _protos
    with _lock:
        if _protos is None:
            _protos = _import_protos()
        return _protos


def _import_protos() -> Protos:
    stub: types.ModuleType | None = None
    if "tensorflow" not in sys.modules:
        spec = importlib.util.find_spec("tensorflow")
        if spec is None or not spec.submodule_search_locations:
            raise ImportError(
                "TF Serving's protos need the 'tensorflow' package files (tensorflow-serving-api "
                "depends on it); install tensorflow-serving-api"
            )
        stub = types.ModuleType("tensorflow")
        stub.__path__ = list(spec.submodule_search_locations)
        stub_spec = importlib.machinery.ModuleSpec("tensorflow", None, is_package=True)
        stub_spec.submodule_search_locations = stub.__path__
        stub.__spec__ = stub_spec
        sys.modules["tensorflow"] = stub
    try:
        modules = {field: importlib.import_module(name) for field, name in _MODULES.items()}
    finally:
        if stub is not None and sys.modules.get("tensorflow") is stub:
            # Keep tensorflow.core.* (plain generated modules, already referenced by the
            # serving protos) but drop the stub itself so the real package can load later.
            del sys.modules["tensorflow"]
    return Protos(**modules)


# --------------------------------------------------------------------------- tensors

# dtype name -> (DataType enum name, TensorProto field holding the values)
_DTYPES: dict[str, tuple[str, str]] = {
    "float32": ("DT_FLOAT", "float_val"),
    "float64": ("DT_DOUBLE", "double_val"),
    "int32": ("DT_INT32", "int_val"),
    "int64": ("DT_INT64", "int64_val"),
    "bool": ("DT_BOOL", "bool_val"),
    "string": ("DT_STRING", "string_val"),
}
_ALIASES = {"float": "float32", "double": "float64", "int": "int64", "str": "string", "bytes": "string"}


def _shape_of(values: Any) -> list[int]:
    shape: list[int] = []
    node = values
    while isinstance(node, list | tuple):
        shape.append(len(node))
        if not node:
            break
        node = node[0]
    return shape


def _flatten(values: Any, shape: Sequence[int], path: str = "") -> list[Any]:
    if not shape:
        if isinstance(values, list | tuple):
            raise ValueError(f"ragged nested list at {path or 'top level'}: expected a scalar")
        return [values]
    if not isinstance(values, list | tuple) or len(values) != shape[0]:
        got = len(values) if isinstance(values, list | tuple) else "a scalar"
        raise ValueError(f"ragged nested list at {path or 'top level'}: expected {shape[0]} items, got {got}")
    out: list[Any] = []
    for i, v in enumerate(values):
        out.extend(_flatten(v, shape[1:], f"{path}[{i}]"))
    return out


def _infer_dtype(flat: list[Any]) -> str:
    if any(isinstance(v, str | bytes) for v in flat):
        return "string"
    if flat and all(isinstance(v, bool) for v in flat):
        return "bool"
    if all(isinstance(v, int) and not isinstance(v, bool) for v in flat) and flat:
        return "int64"
    return "float32"


def make_tensor_proto(values: Any, dtype: str | None = None, shape: Sequence[int] | None = None) -> Any:
    """A ``tensorflow.TensorProto`` from a scalar, nested list or numpy array.

    ``dtype`` is one of float32 (alias float), float64 (double), int32, int64 (int),
    bool, string; by default it follows the values (numpy dtype, or float32 for
    numbers as TF Serving's examples do)::

        >>> t = make_tensor_proto([[1.0], [2.0]], "float32")
        >>> [d.size for d in t.tensor_shape.dim], list(t.float_val)
        ([2, 1], [1.0, 2.0])
    """
    protos = load_protos()
    if hasattr(values, "tolist") and hasattr(values, "dtype"):  # numpy array or scalar
        if dtype is None:
            kind = str(values.dtype)
            dtype = "string" if kind.startswith(("<U", "|S", "object")) else kind
        values = values.tolist()
    inferred_shape = _shape_of(values)
    flat = _flatten(values, inferred_shape)
    name = _ALIASES.get(dtype, dtype) if dtype else _infer_dtype(flat)
    if name not in _DTYPES:
        raise ValueError(f"unsupported dtype {dtype!r}; accepted: {', '.join([*_DTYPES, *_ALIASES])}")
    enum_name, field = _DTYPES[name]
    final_shape = list(shape) if shape is not None else inferred_shape
    size = 1
    for d in final_shape:
        size *= d
    if size != len(flat):
        raise ValueError(f"shape {final_shape} needs {size} values, got {len(flat)}")
    tensor = protos.tensor_pb2.TensorProto(dtype=protos.types_pb2.DataType.Value(enum_name))
    for d in final_shape:
        tensor.tensor_shape.dim.add(size=d)
    if name == "string":
        getattr(tensor, field).extend(v.encode() if isinstance(v, str) else bytes(v) for v in flat)
    elif name == "bool":
        getattr(tensor, field).extend(bool(v) for v in flat)
    elif name.startswith("int"):
        getattr(tensor, field).extend(int(v) for v in flat)
    else:
        getattr(tensor, field).extend(float(v) for v in flat)
    return tensor


def _decode_flat(tensor: Any) -> list[Any]:
    protos = load_protos()
    dtype = protos.types_pb2.DataType.Name(tensor.dtype)
    if tensor.tensor_content:
        # The server's usual encoding: raw little-endian bytes of the whole tensor.
        import numpy as np

        np_types = {
            "DT_FLOAT": "<f4",
            "DT_DOUBLE": "<f8",
            "DT_INT32": "<i4",
            "DT_INT64": "<i8",
            "DT_BOOL": "?",
            "DT_UINT8": "u1",
            "DT_INT8": "i1",
            "DT_INT16": "<i2",
            "DT_UINT32": "<u4",
            "DT_UINT64": "<u8",
            "DT_HALF": "<f2",
        }
        if dtype not in np_types:
            raise ValueError(f"cannot decode tensor_content of dtype {dtype}")
        return list(np.frombuffer(tensor.tensor_content, dtype=np_types[dtype]).tolist())
    fields = {
        "DT_FLOAT": "float_val",
        "DT_DOUBLE": "double_val",
        "DT_INT32": "int_val",
        "DT_INT16": "int_val",
        "DT_INT8": "int_val",
        "DT_UINT8": "int_val",
        "DT_INT64": "int64_val",
        "DT_UINT32": "uint32_val",
        "DT_UINT64": "uint64_val",
        "DT_BOOL": "bool_val",
        "DT_STRING": "string_val",
        "DT_HALF": "half_val",
    }
    if dtype not in fields:
        raise ValueError(f"unsupported tensor dtype {dtype}")
    if dtype == "DT_HALF":
        import numpy as np

        return list(np.array(tensor.half_val, dtype="<u2").view("<f2").astype(float).tolist())
    values = list(getattr(tensor, fields[dtype]))
    if dtype == "DT_STRING":
        values = [v.decode("utf-8", errors="replace") for v in values]
    return values


def tensor_to_list(tensor: Any) -> Any:
    """A TensorProto as nested Python lists (a scalar for rank 0); strings are decoded.

    Handles both encodings servers use: typed repeated fields and ``tensor_content``.
    A tensor that lists one value for many elements (TensorFlow's compact form for
    constants) is expanded.
    """
    shape = [d.size for d in tensor.tensor_shape.dim]
    flat = _decode_flat(tensor)
    size = 1
    for d in shape:
        size *= d
    if len(flat) == 1 and size > 1:
        flat = flat * size
    if len(flat) != size:
        raise ValueError(f"tensor of shape {shape} holds {len(flat)} values")
    if not shape:
        return flat[0]

    def build(offset: int, dims: list[int]) -> tuple[list[Any], int]:
        if len(dims) == 1:
            return flat[offset : offset + dims[0]], offset + dims[0]
        out = []
        for _ in range(dims[0]):
            item, offset = build(offset, dims[1:])
            out.append(item)
        return out, offset

    return build(0, shape)[0]
