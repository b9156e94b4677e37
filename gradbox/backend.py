"""The one seam that picks the array module (DeZero's ``get_array_module``).

Every op asks ``get_array_module(x)`` for the module that owns its arrays instead of
naming NumPy directly, so another array library with NumPy's API (CuPy) can follow
without touching every op. Today only NumPy is wired in; nothing else is imported.
"""
from __future__ import annotations

import sys

import numpy as np


def get_array_module(*arrays):
    """The array module of the first argument that is a CuPy array, else ``numpy``.

    CuPy is looked up only if the user already imported it (never imported here).

    >>> import numpy as np
    >>> get_array_module(np.zeros(2)) is np
    True
    """
    cupy = sys.modules.get("cupy")
    if cupy is not None:
        from .tensor import Tensor

        for a in arrays:
            # NOTE: unwrap Tensors only: arrays have a ``.data`` of their own (a buffer, or
            # CuPy's MemoryPointer), which must not be mistaken for a Tensor's values.
            if isinstance(a, Tensor):
                a = a._data
            if isinstance(a, cupy.ndarray):
                return cupy
    return np
