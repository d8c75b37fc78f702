"""Decode numeric OPC UA arrays straight into numpy, for the collector's sessions only.

asyncua decodes a Float or Double array into a list of Python floats; turning a 2,560-sample
list back into a numpy array costs as much again as the decoding (about a fifth of the CPU a
notification costs). ``install()`` wraps asyncua's array decoder (idempotent): while the
context variable ``NUMPY_ARRAYS`` is true, Float and Double arrays decode to read-only
little-endian numpy arrays (``float32``/``float64``), every other type and every caller without
the variable (any other asyncua client or server in the process) get asyncua's own lists.

The collector sets the variable in its task; the tasks asyncua starts from it (the publish loop,
the keep-alive watchdog) inherit it, so publish responses of the collector's sessions decode to
numpy. Multi-dimensional arrays stay nested lists of numpy rows.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from typing import Any

import numpy as np
from asyncua import ua
from asyncua.ua import ua_binary

NUMPY_ARRAYS: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "opcua_numpy_arrays", default=False
)
_DTYPES: dict[ua.VariantType, np.dtype[np.floating[Any]]] = {
    ua.VariantType.Float: np.dtype("<f4"),
    ua.VariantType.Double: np.dtype("<f8"),
}
_installed: list[Callable[..., Any]] = []


def install() -> None:
    """Wrap ``asyncua.ua.ua_binary.unpack_uatype_array`` once per process."""
    if _installed:
        return
    original = ua_binary.unpack_uatype_array
    _installed.append(original)

    def unpack_uatype_array(vtype: ua.VariantType, data: Any) -> Any:
        dtype = _DTYPES.get(vtype)
        if dtype is None or not NUMPY_ARRAYS.get():
            return original(vtype, data)
        length = ua_binary.Primitives.Int32.unpack(data)
        if length < 0:  # -1: a null array
            return None
        return np.frombuffer(bytes(data.read(dtype.itemsize * length)), dtype=dtype)

    ua_binary.unpack_uatype_array = unpack_uatype_array
