"""The box: a ``Function`` is one forward/backward pair from the notes.

Each call of ``SomeFunction.apply(*inputs)`` creates a *new* instance. That
instance is the per-call context: whatever ``forward`` stores on ``self`` is the
notes' cache, and it belongs to this call alone. A layer used twice in one graph
therefore has two independent caches, and backward stays correct.
"""
from __future__ import annotations

import contextlib
import itertools
import threading

import numpy as np

_state = threading.local()


def is_grad_enabled() -> bool:
    """True unless inside ``no_grad``: whether operations are being recorded for backward.

    >>> import gradbox as gb
    >>> with gb.no_grad():
    ...     print(gb.is_grad_enabled())
    False
    """
    return getattr(_state, "enabled", True)


class no_grad(contextlib.ContextDecorator):
    """Context manager (or decorator) in which no graph is recorded (inference, updates).

    >>> import gradbox as gb
    >>> w = gb.Tensor([1.0], requires_grad=True)
    >>> with gb.no_grad():
    ...     y = w * 2
    >>> y.requires_grad
    False
    """

    # NOTE: a small class, not @contextmanager: entering and leaving a generator-based
    # manager cost about 2 µs, a noticeable share of a single-sample prediction.
    __slots__ = ("_previous",)

    def __enter__(self):
        self._previous = getattr(_state, "enabled", True)
        _state.enabled = False
        return None

    def __exit__(self, *exc):
        _state.enabled = self._previous
        return False


class Function:
    """Base class of every differentiable box.

    Subclasses implement ``forward(self, *arrays, **params) -> ndarray`` and
    ``backward(self, grad_output) -> tuple`` with one gradient (or ``None``) per
    input. ``self.needs_input_grad`` tells ``backward`` which gradients are
    wanted, so a box can skip work (``Linear`` skips dX for raw data).

    Examples
    --------
    >>> import gradbox as gb
    >>> class Square(gb.Function):
    ...     def forward(self, a):
    ...         self.a = a  # the cache, private to this call
    ...         return a * a
    ...     def backward(self, g):
    ...         return (g * 2 * self.a,)
    >>> x = gb.Tensor([3.0], requires_grad=True)
    >>> Square.apply(x).sum().backward(); x.grad
    array([6.], dtype=float32)
    """

    # set by apply(); documented here so that subclasses know they exist
    parents: tuple = ()
    needs_input_grad: tuple = ()
    #: NOTE: a box sets this to True only when every array its ``backward`` returns is
    #: newly allocated and referenced by nothing else (not ``grad_output`` itself, not a
    #: view, not a cached array, never one array for two inputs). The engine then stores
    #: such an array as a leaf's ``.grad`` without the defensive copy (it saves a
    #: weight-sized memcpy per parameter and step). Custom boxes keep the safe default.
    returns_fresh_grads: bool = False
    #: NOTE: the version counter. A box whose ``backward`` reads its inputs (or its output)
    #: keeps these True: ``apply`` then records each input's ``_version`` and backward
    #: refuses to run if one has changed since (PyTorch's "modified by an inplace
    #: operation"). Boxes that keep only shapes set them to False (no check, no cost).
    saves_inputs: bool = True
    saves_output: bool = True
    _versions = None  # the inputs' versions at forward time (set by apply when saves_inputs)
    _released: bool = False  # set by release(); backward refuses a released box

    def forward(self, *arrays, **params):  # pragma: no cover - interface
        raise NotImplementedError

    def backward(self, grad_output):  # pragma: no cover - interface
        raise NotImplementedError

    @classmethod
    def apply(cls, *inputs, **params):
        # NOTE: Tensor is bound on first use (tensor.py imports this module); a
        # function-level import here cost about 1 µs on every op.
        Tensor = _Tensor or _bind_tensor()
        tensors = inputs
        for t in inputs:
            if not isinstance(t, Tensor):
                tensors = tuple([t if isinstance(t, Tensor) else _as_tensor(t) for t in inputs])
                break
        ctx = cls()
        # NOTE: list comprehensions, not generator expressions: about 0.2 µs less each.
        needs = ctx.needs_input_grad = tuple([t.requires_grad for t in tensors])
        out = ctx.forward(*[t._data for t in tensors], **params)
        if isinstance(out, _SCALARS):  # NOTE: NumPy returns scalars from 0-d math; keep a 0-d array
            out = np.asarray(out)
        requires_grad = True in needs and getattr(_state, "enabled", True)
        result = Tensor._from_op(out, requires_grad)
        if requires_grad:
            ctx.parents = tensors
            if cls.saves_inputs:
                ctx._versions = tuple([t._version for t in tensors])
            result._ctx = ctx
            result._seq = next(_sequence)  # creation order: backward runs newest first
        return result

    def release(self) -> None:
        """Drop the cache once backward has used it (memory stays flat)."""
        # NOTE: a new instance dict in one assignment; the graph's structure stays for pictures
        self.__dict__ = {"parents": self.parents, "needs_input_grad": self.needs_input_grad, "_released": True}
        # NOTE: _versions goes with the cache: a released box is refused before any check

    @property
    def name(self) -> str:
        return type(self).__name__


_Tensor = None
_as_tensor = None
_SCALARS = (np.generic, float, int)
_sequence = itertools.count()


def _bind_tensor():
    global _Tensor, _as_tensor
    from .tensor import Tensor, as_tensor

    _Tensor, _as_tensor = Tensor, as_tensor
    return Tensor


def unbroadcast(grad: np.ndarray, shape: tuple) -> np.ndarray:
    """Sum ``grad`` back to ``shape``: the adjoint of NumPy broadcasting."""
    if grad.shape == shape:
        return grad
    extra = grad.ndim - len(shape)
    if extra > 0:
        grad = grad.sum(axis=tuple(range(extra)))
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    if axes:
        grad = grad.sum(axis=axes, keepdims=True)
    return grad.reshape(shape)
