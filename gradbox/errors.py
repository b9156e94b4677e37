"""Exceptions that callers may want to catch by name."""
import math

import numpy as np


class NonFiniteError(ValueError):
    """NaN or inf where finite numbers are required (data, logits, a loss); a ``ValueError``.

    >>> import gradbox as gb
    >>> gb.nn.Linear(1, 1, rng=0)([[float("nan")]])
    Traceback (most recent call last):
    gradbox.errors.NonFiniteError: Linear(in_features=1): expected finite input, received nan at index (0, 0)...
    """


def all_finite(a) -> bool:
    """True when every entry of the float array ``a`` is finite.

    NOTE: first one BLAS dot product a·a. It is NaN or inf whenever an entry is (NaN
    propagates, inf² = inf), so a finite result proves the array finite; a non-finite
    one may be a mere overflow of large finite values, and only then the exact scan
    decides. The dot is faster than ``isfinite(a).all()`` at every size measured (784
    floats: 1.6 vs 3.2 µs; 47M: 6 vs 15 ms) and raises no floating-point warnings
    (``vdot`` is not a ufunc). The exact scan goes in slices of rows, so its temporary
    mask stays small.
    """
    if a.dtype.kind == "f" and a.flags.c_contiguous and math.isfinite(np.vdot(a, a)):
        return True
    if a.size <= _SLICE or a.ndim == 0:
        return bool(np.isfinite(a).all())
    rows = max(1, _SLICE * len(a) // a.size)
    return all(bool(np.isfinite(a[i : i + rows]).all()) for i in range(0, len(a), rows))


_SLICE = 1 << 20  # elements per scan: a 1 MB mask


def first_nonfinite(arr) -> str:
    """Describe the first NaN/inf entry of ``arr``, for an error message."""
    bad = np.argwhere(~np.isfinite(arr))
    if not len(bad):
        return "no non-finite value"
    idx = tuple(int(i) for i in bad[0])
    return f"{arr[idx]} at index {idx if len(idx) != 1 else idx[0]} ({len(bad)} non-finite in all)"
