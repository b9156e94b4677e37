"""Exceptions that callers may want to catch by name."""
import numpy as np


class NonFiniteError(ValueError):
    """NaN or inf where finite numbers are required (data, logits, a loss)."""


def all_finite(a) -> bool:
    """True when every entry of the float array ``a`` is finite.

    NOTE: one sum is the cheap first check (NaN and inf propagate into it); only a
    non-finite sum, which may be a mere overflow, needs the full scan.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        return bool(np.isfinite(a.sum())) or bool(np.isfinite(a).all())


def first_nonfinite(arr) -> str:
    """Describe the first NaN/inf entry of ``arr``, for an error message."""
    bad = np.argwhere(~np.isfinite(arr))
    if not len(bad):
        return "no non-finite value"
    idx = tuple(int(i) for i in bad[0])
    return f"{arr[idx]} at index {idx if len(idx) != 1 else idx[0]} ({len(bad)} non-finite in all)"
