"""Moved to ``gradbox.optim._kernels``; this name stays importable (it imports numba)."""
from .optim._kernels import adam, rmsprop, sgd, sgd_plain  # noqa: F401
