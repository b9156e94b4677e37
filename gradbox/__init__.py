"""gradbox: explicit, checkable, fast forward and backward propagation.

The core (``Tensor``, ``Function``, ops, ``nn``, ``optim``, gradient checking)
imports NumPy only. Training, files, datasets, pictures and the course API are
loaded on first use, so ``import gradbox`` stays fast.
"""
from importlib import import_module as _import_module

from . import nn, optim
from .errors import NonFiniteError
from .function import Function, is_grad_enabled, no_grad
from .gradcheck import check_gradients, gradcheck, relative_error
from .ops import (
    broadcast_to, clip, cos, exp, leaky_relu, log, log_sigmoid, log_softmax, matmul, maximum, mean, relu,
    reshape, sigmoid, sin, softmax, sum_to, tanh, transpose,
)
from .ops import abs, max, min, pow, sum  # noqa: A004 - the names users expect, as in torch
from .random import get_rng_state, manual_seed, set_rng_state
from .tensor import Tensor

__version__ = "0.1.0"

# name -> module that defines it; imported on first access (PEP 562)
_LAZY = {
    "fit": "train", "History": "train", "Trainer": "train",
    "save": "io", "load": "io", "save_model": "io", "load_model": "io",
    "explain": "report", "ExplainReport": "report",
    "course": None, "viz": None, "datasets": None, "data": None, "io": None, "train": None,
}


def __getattr__(name):
    if name in _LAZY:
        module = _import_module(f".{_LAZY[name] or name}", __name__)
        value = module if _LAZY[name] is None else getattr(module, name)
        globals()[name] = value  # resolve once; later lookups skip __getattr__
        return value
    raise AttributeError(f"module 'gradbox' has no attribute {name!r}")


def tensor(data, requires_grad=False, dtype=None) -> Tensor:
    """Create a ``Tensor`` (``torch.tensor``'s habit); the arguments are ``Tensor``'s.

    >>> import gradbox as gb
    >>> gb.tensor([1.0, 2.0], requires_grad=True).dtype
    dtype('float32')
    """
    return Tensor(data, requires_grad=requires_grad, dtype=dtype)


__all__ = [
    "Tensor", "tensor", "Function", "NonFiniteError", "no_grad", "is_grad_enabled", "nn", "optim",
    "gradcheck", "check_gradients", "relative_error", "manual_seed", "get_rng_state", "set_rng_state",
    "exp", "log", "relu", "leaky_relu", "sigmoid", "log_sigmoid", "tanh", "softmax", "log_softmax",
    "maximum", "matmul", "sum", "mean", "max", "reshape", "transpose",
    "sum_to", "broadcast_to", "clip", "sin", "cos", *_LAZY,
    # NOTE: gb.min, gb.abs and gb.pow are not in __all__: `from gradbox import *` must not
    # replace the builtins min, abs and pow (which take non-tensors)
]
