"""Exceptions that callers may want to catch by name."""


class NonFiniteError(ValueError):
    """NaN or inf where finite numbers are required (data, logits, a loss)."""


def first_nonfinite(arr) -> str:
    """Describe the first NaN/inf entry of ``arr``, for an error message."""
    import numpy as np

    bad = np.argwhere(~np.isfinite(arr))
    if not len(bad):
        return "no non-finite value"
    idx = tuple(int(i) for i in bad[0])
    return f"{arr[idx]} at index {idx if len(idx) != 1 else idx[0]} ({len(bad)} non-finite in all)"
