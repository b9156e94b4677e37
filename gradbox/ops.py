"""Primitive boxes. Each is a ``Function`` with the notes' forward and backward.

Every backward returns ``upstream gradient x local gradient`` for each input,
summed back over broadcast dimensions (``unbroadcast``). Boxes compute with the array
module of their inputs (``_xp``: NumPy for NumPy arrays, else ``backend.get_array_module``),
so that another array library with NumPy's API can follow without touching the ops.
"""
from __future__ import annotations

import builtins
import math

import numpy as np

from . import _blas
from ._fast import FAST as _FAST
from .backend import get_array_module
from .function import Function, unbroadcast
from .tensor import _FLOATS, Tensor, as_tensor


_FLOAT_SET = frozenset(_FLOATS)
_ndarray = np.ndarray


def _xp(a):
    """The array module of ``a`` (``backend.get_array_module``), where a box creates or computes arrays.

    NOTE: NumPy's own arrays answer with one type test (about 40 ns); only other arrays
    (a CuPy array, or an ndarray subclass registered as one) pay for the full lookup.
    """
    return np if a.__class__ is _ndarray else get_array_module(a)  # NOTE: a hashed lookup, not up to three dtype comparisons

# NOTE: exp(-large) underflows to 0 by design; that is exact, not an error worth a warning.
_quiet = np.errstate(under="ignore")


def _pair(a, b):
    """Turn two operands into tensors of one float dtype, refusing silent upcasts."""
    if isinstance(a, Tensor) and not isinstance(b, Tensor):
        b = as_tensor(b, like=a)
    elif isinstance(b, Tensor) and not isinstance(a, Tensor):
        a = as_tensor(a, like=b)
    else:
        a, b = as_tensor(a), as_tensor(b)
    da, db = a.dtype, b.dtype
    if da != db:
        if da in _FLOATS and db in _FLOATS:
            raise TypeError(
                f"expected operands of one dtype, received {da} and {db}; "
                f"convert one with .astype() (gradbox never upcasts silently)"
            )
        # a constant of ints or bools joins the float side (masks, labels)
        if da in _FLOATS and not b.requires_grad:
            b = Tensor._from_op(b.data.astype(da), False)
        elif db in _FLOATS and not a.requires_grad:
            a = Tensor._from_op(a.data.astype(db), False)
    return a, b


def _check_broadcast(op, a, b):
    try:
        np.broadcast_shapes(a.shape, b.shape)
    except ValueError:
        raise ValueError(
            f"{op}: expected shapes that broadcast together, received {a.shape} and {b.shape}"
        ) from None


# --- arithmetic -------------------------------------------------------------
class Add(Function):
    saves_inputs, saves_output = False, False
    def forward(self, a, b):
        self.shapes = a.shape, b.shape
        return a + b

    def backward(self, g):
        sa, sb = self.shapes
        return unbroadcast(g, sa), unbroadcast(g, sb)


class Sub(Function):
    saves_inputs, saves_output = False, False
    def forward(self, a, b):
        self.shapes = a.shape, b.shape
        return a - b

    def backward(self, g):
        sa, sb = self.shapes
        return unbroadcast(g, sa), unbroadcast(-g, sb)


class Mul(Function):
    saves_inputs, saves_output = True, False
    def forward(self, a, b):
        self.a, self.b = a, b
        return a * b

    def backward(self, g):
        a, b = self.a, self.b
        ga = unbroadcast(g * b, a.shape) if self.needs_input_grad[0] else None
        gb = unbroadcast(g * a, b.shape) if self.needs_input_grad[1] else None
        return ga, gb


class Div(Function):
    saves_inputs, saves_output = True, False
    def forward(self, a, b):
        self.a, self.b = a, b
        return a / b

    def backward(self, g):
        a, b = self.a, self.b
        ga = unbroadcast(g / b, a.shape) if self.needs_input_grad[0] else None
        gb = unbroadcast(-g * a / (b * b), b.shape) if self.needs_input_grad[1] else None
        return ga, gb


class Neg(Function):
    saves_inputs, saves_output = False, False
    def forward(self, a):
        return -a

    def backward(self, g):
        return -g


class Pow(Function):
    saves_inputs, saves_output = True, False
    def forward(self, a, exponent):
        self.a, self.exponent = a, exponent
        return a**exponent

    def backward(self, g):
        a, p = self.a, self.exponent
        if p == 0:  # NOTE: d/da a^0 = 0 everywhere, also at a = 0 where p·a^(p-1) is 0·inf (PyTorch: 0)
            return _xp(a).zeros_like(g)
        return g * (p * a ** (p - 1))


class PowTensor(Function):
    """a ** b with a tensor exponent: d/da = b·a^(b-1), d/db = a^b·log(a)."""

    saves_inputs, saves_output = True, True

    def forward(self, a, b):
        self.a, self.b = a, b
        with np.errstate(invalid="ignore", divide="ignore"):
            self.out = a**b
        return self.out

    def backward(self, g):
        a, b, out = self.a, self.b, self.out
        xp = _xp(a)
        ga = gb = None
        with np.errstate(invalid="ignore", divide="ignore"):
            if self.needs_input_grad[0]:
                # NOTE: PyTorch's convention: where b == 0 the gradient is 0 (not 0·a^-1, NaN at a = 0)
                ga = unbroadcast(xp.where(b == 0, 0, g * (b * a ** (b - 1))).astype(g.dtype, copy=False), a.shape)
            if self.needs_input_grad[1]:
                # NOTE: PyTorch's convention: where a == 0 and b >= 0 the gradient is 0 (not 0·log 0)
                gb = unbroadcast(xp.where((a == 0) & (b >= 0), 0, g * (out * xp.log(a))).astype(g.dtype, copy=False),
                                 b.shape)
        return ga, gb


class MatMul(Function):
    saves_inputs, saves_output = True, False
    def forward(self, a, b):
        self.a, self.b = a, b
        return a @ b

    def backward(self, g):
        a, b = self.a, self.b
        # NOTE: 1-D operands are promoted to matrices and squeezed back, as np.matmul does.
        a2 = a[None, :] if a.ndim == 1 else a
        b2 = b[:, None] if b.ndim == 1 else b
        g2 = g
        xp = _xp(a)
        if a.ndim == 1 and b.ndim == 1:  # a dot product: the 0-d gradient becomes (1, 1)
            g2 = g2.reshape((1, 1))
        elif a.ndim == 1:
            g2 = xp.expand_dims(g2, -2)
        elif b.ndim == 1:
            g2 = xp.expand_dims(g2, -1)
        ga = gb = None
        if self.needs_input_grad[0]:
            ga = unbroadcast(g2 @ b2.swapaxes(-1, -2), a2.shape).reshape(a.shape)
        if self.needs_input_grad[1]:
            gb = unbroadcast(a2.swapaxes(-1, -2) @ g2, b2.shape).reshape(b.shape)
        return ga, gb


def add(a, b):
    a, b = _pair(a, b)
    _check_broadcast("add", a, b)
    return Add.apply(a, b)


def sub(a, b):
    a, b = _pair(a, b)
    _check_broadcast("sub", a, b)
    return Sub.apply(a, b)


def mul(a, b):
    """The multiply gate: each input's gradient is upstream x the other input."""
    a, b = _pair(a, b)
    _check_broadcast("mul", a, b)
    return Mul.apply(a, b)


def div(a, b):
    a, b = _pair(a, b)
    _check_broadcast("div", a, b)
    return Div.apply(a, b)


def neg(a):
    return Neg.apply(as_tensor(a))


def pow(a, exponent):  # noqa: A001 - mirrors the operator's name
    """a ** exponent, elementwise; ``exponent`` a number or a tensor (then ``2 ** x`` works too).

    d/da = exponent·a^(exponent-1); for a tensor exponent also d/dexponent = a^exponent·log(a)
    (0 where a = 0 and exponent >= 0, as in PyTorch).

    >>> import gradbox as gb
    >>> gb.pow(2.0, gb.Tensor([1.0, 3.0])).data
    array([2., 8.], dtype=float32)
    """
    if isinstance(exponent, (int, float, np.integer, np.floating)) and not isinstance(a, (int, float, np.number)):
        a = as_tensor(a)
        return Pow.apply(a, exponent=a.dtype.type(exponent) if a.dtype in _FLOATS else exponent)
    if not isinstance(exponent, (Tensor, np.ndarray, int, float, np.number, list)):
        raise TypeError(f"pow: expected a number or a tensor exponent, received {type(exponent).__name__}")
    a, b = _pair(a, exponent)
    if a.dtype not in _FLOAT_SET:
        raise TypeError(f"pow: expected floating-point operands for a tensor exponent, received dtype {a.dtype}")
    _check_broadcast("pow", a, b)
    return PowTensor.apply(a, b)


def matmul(a, b):
    """Matrix product ``a @ b``; d/da = G bᵀ and d/db = aᵀ G for the upstream gradient G.

    >>> import gradbox as gb
    >>> gb.matmul(gb.Tensor([[1.0, 2.0]]), gb.Tensor([[3.0], [4.0]])).data
    array([[11.]], dtype=float32)
    """
    a, b = _pair(a, b)
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError(f"matmul: expected operands with at least 1 dimension, received {a.shape} and {b.shape}")
    ka = a.shape[-1]
    kb = b.shape[0] if b.ndim == 1 else b.shape[-2]
    if ka != kb:
        raise ValueError(
            f"matmul: expected inner dimensions to agree, received {a.shape} @ {b.shape} ({ka} != {kb})"
        )
    return MatMul.apply(a, b)


# --- reductions and shape ---------------------------------------------------
def _norm_axis(axis, ndim, op):
    if axis is None:
        return None
    axes = axis if isinstance(axis, tuple) else (axis,)
    out = []
    for ax in axes:
        if not isinstance(ax, (int, np.integer)) or not -ndim <= ax < builtins.max(ndim, 1):
            raise ValueError(f"{op}(axis={axis}): expected axes in [-{ndim}, {ndim}), received {ax}")
        out.append(int(ax) % builtins.max(ndim, 1))
    return tuple(out)


class Sum(Function):
    saves_inputs, saves_output = False, False
    def forward(self, a, axis, keepdims):
        self.shape, self.axis, self.keepdims = a.shape, axis, keepdims
        return a.sum(axis=axis, keepdims=keepdims)  # NOTE: a 0-d result is kept an array by Function.apply

    def backward(self, g):
        xp = _xp(g)
        if self.axis is not None and not self.keepdims:
            g = xp.expand_dims(g, self.axis)
        return xp.broadcast_to(g, self.shape).copy()


class SumTo(Function):
    """Sum over broadcast dimensions down to ``shape`` (DeZero's ``sum_to``); the adjoint of ``broadcast_to``."""

    saves_inputs, saves_output = False, False

    def forward(self, a, shape):
        self.shape = a.shape
        return unbroadcast(a, shape)

    def backward(self, g):
        return _xp(g).broadcast_to(g, self.shape).copy()


class BroadcastTo(Function):
    """Repeat ``a`` along broadcast dimensions; backward sums them back (``sum_to``)."""

    saves_inputs, saves_output = False, False

    def forward(self, a, shape):
        self.shape = a.shape
        # NOTE: a copy, not NumPy's read-only view: the result is an ordinary writable array
        return _xp(a).broadcast_to(a, shape).copy()

    def backward(self, g):
        return unbroadcast(g, self.shape)


class Max(Function):
    saves_inputs, saves_output = True, False
    def forward(self, a, axis, keepdims):
        self.a, self.axis, self.keepdims = a, axis, keepdims
        self.out = out = self._extreme(a, axis)
        # NOTE: drop the kept axes of the one reduction instead of scanning ``a`` twice;
        # a copy, so that writing into the result cannot change the cache.
        return out if keepdims else (out.reshape(()) if axis is None else out.squeeze(axis=axis)).copy()

    def backward(self, g):
        if self.axis is None:
            g = g.reshape((1,) * self.a.ndim)
        elif not self.keepdims:
            g = _xp(g).expand_dims(g, self.axis)
        # NOTE: ties share the gradient equally (the max gate routes, never duplicates).
        mask = (self.a == self.out).astype(self.a.dtype)
        mask /= mask.sum(axis=self.axis, keepdims=True)
        return mask * g

    @staticmethod
    def _extreme(a, axis):
        return a.max(axis=axis, keepdims=True)


class Min(Max):
    """The minimum: ``Max``'s box with the other extreme (ties share the gradient, as torch.amin)."""

    @staticmethod
    def _extreme(a, axis):
        return a.min(axis=axis, keepdims=True)


class Reshape(Function):
    saves_inputs, saves_output = False, False
    def forward(self, a, shape):
        self.shape = a.shape
        return a.reshape(shape)

    def backward(self, g):
        return g.reshape(self.shape)


class Transpose(Function):
    saves_inputs, saves_output = False, False
    def forward(self, a, axes):
        self.axes = axes
        return a.transpose(axes)

    def backward(self, g):
        if self.axes is None:
            return g.transpose()
        return g.transpose(tuple(np.argsort(self.axes)))  # NOTE: argsort of a tuple: host-side axes


class GetItem(Function):
    saves_inputs, saves_output = False, False
    def forward(self, a, index):
        self.shape, self.dtype, self.index = a.shape, a.dtype, index
        return a[index]  # NOTE: one element comes back a NumPy scalar; Function.apply makes it 0-d

    def backward(self, g):
        xp = _xp(g)
        out = xp.zeros(self.shape, dtype=self.dtype)
        # NOTE: add.at sums repeated indices (x[[0, 0]]), which plain assignment would drop.
        xp.add.at(out, self.index, g)
        return out


class Cast(Function):
    saves_inputs, saves_output = False, False
    def forward(self, a, dtype):
        self.dtype = a.dtype
        return a.astype(dtype)

    def backward(self, g):
        return g.astype(self.dtype)


def sum(a, axis=None, keepdims=False):  # noqa: A001
    """Sum over ``axis`` (all axes when None); d/da sum(a) = 1: the upstream gradient is copied back.

    >>> import gradbox as gb
    >>> gb.sum(gb.Tensor([[1.0, 2.0], [3.0, 4.0]]), axis=1).data
    array([3., 7.], dtype=float32)
    """
    a = as_tensor(a)
    return Sum.apply(a, axis=_norm_axis(axis, a.ndim, "sum"), keepdims=bool(keepdims))


def mean(a, axis=None, keepdims=False):
    """Mean over ``axis`` (all axes when None); d/da mean(a) = 1/n for each of the n entries.

    >>> import gradbox as gb
    >>> gb.mean(gb.Tensor([[1.0, 2.0], [3.0, 4.0]]), axis=0).data
    array([2., 3.], dtype=float32)
    """
    a = as_tensor(a)
    axes = _norm_axis(axis, a.ndim, "mean")
    count = a.size if axes is None else math.prod([a.shape[i] for i in axes])
    if count == 0:
        raise ValueError(f"mean: expected a non-empty reduction, received shape {a.shape} with axis={axis}")
    return Sum.apply(a, axis=axes, keepdims=bool(keepdims)) * (1.0 / count)


def max(a, axis=None, keepdims=False):  # noqa: A001
    """Maximum over ``axis`` (all axes when None); the gradient goes to the maximum entries (ties share it).

    >>> import gradbox as gb
    >>> x = gb.Tensor([1.0, 3.0, 2.0], requires_grad=True)
    >>> gb.max(x).backward(); x.grad
    array([0., 1., 0.], dtype=float32)
    """
    a = as_tensor(a)
    axes = _norm_axis(axis, a.ndim, "max")
    if a.size == 0:
        raise ValueError(f"max: expected a non-empty tensor, received shape {a.shape}")
    return Max.apply(a, axis=axes, keepdims=bool(keepdims))


def reshape(a, shape):
    """The same entries in a new ``shape`` (one -1 allowed); the gradient is reshaped back.

    >>> import gradbox as gb
    >>> gb.reshape(gb.Tensor([1.0, 2.0, 3.0, 4.0]), (2, 2)).shape
    (2, 2)
    """
    a = as_tensor(a)
    shape = tuple([int(s) for s in shape])
    # NOTE: NumPy's own check, inside the box's forward (the only thing there that raises ValueError); a
    # trial reshape of a new int8 array first cost an allocation and 1.3 µs per call (a Flatten per CNN step)
    try:
        return Reshape.apply(a, shape=shape)
    except ValueError:
        raise ValueError(f"reshape: expected a shape with {a.size} elements, received {shape} for {a.shape}") from None


def transpose(a, axes=None):
    """Permute the axes (reverse them when ``axes`` is None); the gradient takes the inverse permutation.

    >>> import gradbox as gb
    >>> gb.transpose(gb.Tensor([[1.0, 2.0, 3.0]])).shape
    (3, 1)
    """
    a = as_tensor(a)
    if axes is not None:
        axes = tuple(int(x) for x in axes)
        if sorted(ax % builtins.max(a.ndim, 1) for ax in axes) != list(range(a.ndim)):
            raise ValueError(f"transpose: expected a permutation of {a.ndim} axes, received {axes}")
    return Transpose.apply(a, axes=axes)


def getitem(a, index):
    a = as_tensor(a)
    if isinstance(index, Tensor):
        index = index.data
    if isinstance(index, tuple):
        index = tuple(i.data if isinstance(i, Tensor) else i for i in index)
    try:
        a.data[index]
    except IndexError as exc:
        raise IndexError(f"index: expected an index valid for shape {a.shape}, received {index!r} ({exc})") from None
    return GetItem.apply(a, index=index)


def cast(a, dtype):
    a = as_tensor(a)
    dtype = np.dtype(dtype)
    if dtype not in _FLOATS:
        raise TypeError(f"astype: expected a float dtype, received {dtype}")
    if a.dtype == dtype:
        return a
    return Cast.apply(a, dtype=dtype)


# --- elementwise ------------------------------------------------------------
class Exp(Function):
    saves_inputs, saves_output = False, True
    @_quiet
    def forward(self, a):
        self.out = _xp(a).exp(a)
        return self.out

    def backward(self, g):
        return g * self.out


class Log(Function):
    saves_inputs, saves_output = True, False
    def forward(self, a):
        self.a = a
        return _xp(a).log(a)

    def backward(self, g):
        return g / self.a


def _relu(a: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """max(a, 0), NaN kept.

    NOTE: NumPy skips its SIMD loop for maximum against a broadcast scalar; against a
    zero row it is vectorised: 128 x 256 float32 in 7 µs instead of 13. Same values.
    Below about 2,000 entries allocating the row costs more than it saves (one sample
    of 256: 0.85 µs against the scalar, 1.23 µs with the row), so small arrays use the scalar.
    """
    xp = np if type(a) is np.ndarray else _xp(a)  # NOTE: _xp's own test inlined: on the latency path
    if a.size <= 2048:
        return xp.maximum(a, a.dtype.type(0), out=out)
    if a.ndim > 2 and a.flags.c_contiguous and (out is None or out.flags.c_contiguous):
        # NOTE: an image batch as one row per sample: against a zero row of W entries (28, 10) NumPy runs
        # an inner loop per image row; per sample (C·H·W) LeNet's (128, 6, 28, 28) took 0.083 ms instead
        # of 0.196, (128, 16, 10, 10) 0.041 instead of 0.119 (BENCHMARKS.md, "Convolutions, sixth session")
        out = xp.empty_like(a) if out is None else out
        xp.maximum(a.reshape(a.shape[0], -1), xp.zeros(a[0].size, a.dtype), out=out.reshape(a.shape[0], -1))
        return out
    return xp.maximum(a, xp.zeros(a.shape[-1:], a.dtype), out=out)


class ReLU(Function):
    returns_fresh_grads = True
    saves_inputs, saves_output = False, True

    def forward(self, a):
        # NOTE: keep the output, not a mask: the mask (out > 0, the same as a > 0, NaN
        # included) is built only if backward runs, so inference never pays for it.
        self.out = relu_forward(a)
        return self.out

    def backward(self, g):
        return relu_backward(self.out, g)


def relu_forward(a, out=None):
    """max(a, 0) into ``out`` (``a`` itself allowed) or a new array: the ReLU box's forward, and that of boxes
    that end in a ReLU (``Conv2dMaxPoolFunction``)."""
    parts = _pass_threads(a)
    if parts > 1:  # a large pass in a CNN's step: shared among gradbox's threads by samples
        out = np.empty_like(a) if out is None else out
        _blas.run_split(lambda i, j: _relu(a[i:j], out[i:j]), len(a), parts)
        return out
    return _relu(a, out)


def relu_backward(out, g):
    """dA = dZ·(out > 0) for a ReLU whose output is ``out``: the ReLU box's backward, and that of boxes that
    end in a ReLU (``Conv2dMaxPoolFunction``). A new array."""
    fast = _FAST["mod"]
    if (fast and _FAST["wanted"] and type(g) is np.ndarray and g.dtype == out.dtype and g.dtype in _FAST_DTYPES
            and g.flags.c_contiguous and out.flags.c_contiguous):
        # NOTE: the compiled kernels, once a convolution or pooling has loaded them (an MLP's process
        # never imports numba for this): one pass instead of three, the same bits (tested)
        return fast.relu_backward(out, g)
    # NOTE: the mask cast to g's dtype first, then one in-place product: 15-30% less than
    # multiply(g, mask, dtype=...), whose loop casts the booleans in small buffers (0.77 against
    # 0.96 ms for a (64, 32, 32, 32) float32 batch); the same values, NaN outputs included (mask 0)
    parts = _pass_threads(out)
    if parts > 1 and type(g) is np.ndarray and g.shape == out.shape and g.flags.c_contiguous:
        # a large pass in a CNN's step, shared by rows as the forward's: the same values per element
        grad = np.empty(out.shape, dtype=g.dtype)
        o2, g2, r2 = _rows(out), _rows(g), _rows(grad)

        def part(i, j):
            np.greater(o2[i:j], 0, out=r2[i:j])
            r2[i:j] *= g2[i:j]

        _blas.run_split(part, len(o2), parts)
        return grad
    grad = (out > 0).astype(g.dtype)
    grad *= g
    return grad


_FAST_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _pass_threads(a) -> int:
    """Threads to share an elementwise pass over ``a`` among (``_blas.pass_threads``): a C-contiguous
    NumPy array of at least 2 dimensions only, else 1."""
    if type(a) is not np.ndarray or a.ndim < 2 or not a.flags.c_contiguous:
        return 1
    return _blas.pass_threads(a.nbytes)


def _rows(a):
    """``a`` as rows of its last axis (a view: ``a`` is C-contiguous)."""
    return a.reshape(-1, a.shape[-1])


class LeakyReLU(Function):
    saves_inputs, saves_output = False, False
    def forward(self, a, slope):
        self.scale = _xp(a).where(a > 0, a.dtype.type(1), a.dtype.type(slope))
        return a * self.scale

    def backward(self, g):
        return g * self.scale


@_quiet
def _sigmoid(a):
    # NOTE: exp(-|a|) never overflows, so this is exact and finite for any input.
    xp = _xp(a)
    e = xp.exp(-xp.abs(a))
    return xp.where(a >= 0, 1 / (1 + e), e / (1 + e))


class Sigmoid(Function):
    saves_inputs, saves_output = False, True
    @_quiet
    def forward(self, a):
        self.out = _sigmoid(a)
        return self.out

    @_quiet
    def backward(self, g):
        s = self.out
        return g * s * (1 - s)


class LogSigmoid(Function):
    saves_inputs, saves_output = True, False
    @_quiet
    def forward(self, a):
        self.a = a
        xp = _xp(a)
        return xp.minimum(a, 0) - xp.log1p(xp.exp(-xp.abs(a)))

    @_quiet
    def backward(self, g):
        return g * _sigmoid(-self.a)


class Tanh(Function):
    saves_inputs, saves_output = False, True
    def forward(self, a):
        self.out = _xp(a).tanh(a)
        return self.out

    def backward(self, g):
        return g * (1 - self.out * self.out)


@_quiet
def _log_softmax(a, axis):
    xp = _xp(a)
    shifted = a - a.max(axis=axis, keepdims=True)
    return shifted - xp.log(xp.exp(shifted).sum(axis=axis, keepdims=True))


class Softmax(Function):
    saves_inputs, saves_output = False, True
    @_quiet
    def forward(self, a, axis):
        self.axis = axis
        self.out = _xp(a).exp(_log_softmax(a, axis))
        return self.out

    @_quiet
    def backward(self, g):
        s = self.out
        return s * (g - (g * s).sum(axis=self.axis, keepdims=True))


class LogSoftmax(Function):
    saves_inputs, saves_output = False, False
    @_quiet
    def forward(self, a, axis):
        self.axis = axis
        out = _log_softmax(a, axis)
        self.softmax = _xp(a).exp(out)
        return out

    @_quiet
    def backward(self, g):
        return g - self.softmax * g.sum(axis=self.axis, keepdims=True)


class Maximum(Function):
    saves_inputs, saves_output = True, False
    def forward(self, a, b):
        self.a, self.b = a, b
        return _xp(a).maximum(a, b)

    def backward(self, g):
        a, b = self.a, self.b
        # NOTE: on a tie each side gets half, as in torch.maximum.
        wa = (a > b) + 0.5 * (a == b)
        ga = unbroadcast(g * wa.astype(g.dtype), a.shape) if self.needs_input_grad[0] else None
        gb = unbroadcast(g * (1 - wa).astype(g.dtype), b.shape) if self.needs_input_grad[1] else None
        return ga, gb


def _float(a, op):
    if not isinstance(a, Tensor):
        a = as_tensor(a)
    if a.data.dtype not in _FLOAT_SET:
        raise TypeError(f"{op}: expected a floating-point tensor, received dtype {a.dtype}")
    return a


def _axis1(axis, ndim, op):
    if ndim == 0:
        raise ValueError(f"{op}: expected a tensor with at least 1 dimension, received a scalar")
    return _norm_axis(axis, ndim, op)[0]


def exp(a):
    """e^a elementwise; d/da exp(a) = exp(a) (the cached output).

    >>> import gradbox as gb
    >>> gb.exp(gb.Tensor([0.0])).data
    array([1.], dtype=float32)
    """
    return Exp.apply(_float(a, "exp"))


def log(a):
    """Natural logarithm elementwise; d/da log(a) = 1/a.

    >>> import gradbox as gb
    >>> gb.log(gb.Tensor([1.0])).data
    array([0.], dtype=float32)
    """
    return Log.apply(_float(a, "log"))


def relu(a):
    """max(a, 0) elementwise; d/da relu(a) = 1 where a > 0, else 0.

    >>> import gradbox as gb
    >>> gb.relu(gb.Tensor([-1.0, 2.0])).data
    array([0., 2.], dtype=float32)
    """
    return ReLU.apply(_float(a, "relu"))


def leaky_relu(a, negative_slope=0.01):
    """a where a > 0, else negative_slope·a; d/da = 1 where a > 0, else negative_slope.

    Parameters
    ----------
    negative_slope : float in [0, 1)

    >>> import gradbox as gb
    >>> gb.leaky_relu(gb.Tensor([-1.0, 2.0]), 0.5).data
    array([-0.5,  2. ], dtype=float32)
    """
    if not 0 <= negative_slope < 1:
        raise ValueError(f"leaky_relu(negative_slope): expected a value in [0, 1), received {negative_slope}")
    return LeakyReLU.apply(_float(a, "leaky_relu"), slope=float(negative_slope))


def sigmoid(a):
    """σ(a) = 1 / (1 + e^-a) elementwise, stable for any a; d/da σ(a) = σ(a)(1 - σ(a)).

    >>> import gradbox as gb
    >>> gb.sigmoid(gb.Tensor([0.0])).data
    array([0.5], dtype=float32)
    """
    return Sigmoid.apply(_float(a, "sigmoid"))


def log_sigmoid(a):
    """log σ(a) = min(a, 0) - log(1 + e^-|a|), finite for any a; d/da log σ(a) = σ(-a).

    >>> import gradbox as gb
    >>> round(gb.log_sigmoid(gb.Tensor([0.0])).item(), 4)
    -0.6931
    """
    return LogSigmoid.apply(_float(a, "log_sigmoid"))


def tanh(a):
    """tanh(a) elementwise; d/da tanh(a) = 1 - tanh(a)².

    >>> import gradbox as gb
    >>> round(gb.tanh(gb.Tensor([1.0])).item(), 4)
    0.7616
    """
    return Tanh.apply(_float(a, "tanh"))


def softmax(a, axis=-1):
    """s_i = e^{a_i} / Σ_j e^{a_j} along ``axis``, computed stably; ds_i/da_j = s_i(δ_ij - s_j).

    >>> import gradbox as gb
    >>> round(gb.softmax(gb.Tensor([[1.0, 1.0]]))[0, 1].item(), 4)
    0.5
    """
    a = _float(a, "softmax")
    return Softmax.apply(a, axis=_axis1(axis, a.ndim, "softmax"))


def log_softmax(a, axis=-1):
    """a - log Σ_j e^{a_j} along ``axis``, computed stably; backward: G - softmax(a)·ΣG.

    >>> import gradbox as gb
    >>> round(gb.log_softmax(gb.Tensor([0.0, 0.0]))[0].item(), 4)
    -0.6931
    """
    a = _float(a, "log_softmax")
    return LogSoftmax.apply(a, axis=_axis1(axis, a.ndim, "log_softmax"))


def maximum(a, b):
    """Elementwise maximum of two tensors. The max gate: the upstream gradient goes to the larger input.

    >>> import gradbox as gb
    >>> gb.maximum(gb.Tensor([1.0, 5.0]), 3.0).data
    array([3., 5.], dtype=float32)
    """
    a, b = _pair(a, b)
    _check_broadcast("maximum", a, b)
    return Maximum.apply(a, b)


# --- the ops DeZero and micrograd users reach for (issue 14) -----------------
class Abs(Function):
    saves_inputs, saves_output = True, False

    def forward(self, a):
        self.a = a
        return _xp(a).abs(a)

    def backward(self, g):
        # NOTE: sign(0) = 0: the gradient at the kink is 0, as in PyTorch.
        return g * _xp(g).sign(self.a)


class Sin(Function):
    saves_inputs, saves_output = True, False

    def forward(self, a):
        self.a = a
        return _xp(a).sin(a)

    def backward(self, g):
        return g * _xp(g).cos(self.a)


class Cos(Function):
    saves_inputs, saves_output = True, False

    def forward(self, a):
        self.a = a
        return _xp(a).cos(a)

    def backward(self, g):
        return -g * _xp(g).sin(self.a)


class Clip(Function):
    saves_inputs, saves_output = True, False

    def forward(self, a, lo, hi):
        self.a, self.lo, self.hi = a, lo, hi
        return _xp(a).clip(a, lo, hi)

    def backward(self, g):
        # NOTE: the gradient passes where lo <= a <= hi, bounds included (PyTorch's clamp).
        a, inside = self.a, True
        if self.lo is not None:
            inside = a >= self.lo
        if self.hi is not None:
            inside = inside & (a <= self.hi)
        return _xp(g).multiply(g, inside, dtype=g.dtype)


def _shape_arg(shape, op):
    if isinstance(shape, (int, np.integer)):
        shape = (shape,)
    try:
        return tuple(int(s) for s in shape)
    except (TypeError, ValueError):
        raise TypeError(f"{op}(shape): expected a tuple of ints, received {shape!r}") from None


def sum_to(a, shape):
    """Sum ``a`` over its broadcast dimensions down to ``shape`` (DeZero's ``sum_to``, torch's ``sum_to_size``).

    The adjoint of ``broadcast_to``: its gradient is the upstream gradient broadcast back.

    >>> import gradbox as gb
    >>> gb.sum_to(gb.Tensor([[1.0, 2.0], [3.0, 4.0]]), (1, 2)).data
    array([[4., 6.]], dtype=float32)
    """
    a = as_tensor(a)
    shape = _shape_arg(shape, "sum_to")
    ok = len(shape) <= a.ndim and all(s == n or s == 1 for s, n in zip(shape[::-1], a.shape[::-1]))
    if not ok:
        raise ValueError(f"sum_to(shape): expected a shape that {a.shape} broadcasts from, received {shape}")
    return SumTo.apply(a, shape=shape)


def broadcast_to(a, shape):
    """Repeat ``a`` along broadcast dimensions to ``shape``, as ``np.broadcast_to``; backward is ``sum_to``.

    >>> import gradbox as gb
    >>> gb.broadcast_to(gb.Tensor([1.0, 2.0]), (2, 2)).data
    array([[1., 2.],
           [1., 2.]], dtype=float32)
    """
    a = as_tensor(a)
    shape = _shape_arg(shape, "broadcast_to")
    try:
        ok = np.broadcast_shapes(a.shape, shape) == shape
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(f"broadcast_to(shape): expected a shape that {a.shape} broadcasts to, received {shape}")
    return BroadcastTo.apply(a, shape=shape)


def min(a, axis=None, keepdims=False):  # noqa: A001
    """Minimum over ``axis`` (all axes when None); the gradient goes to the minimum entries (ties share it).

    >>> import gradbox as gb
    >>> x = gb.Tensor([1.0, 3.0, 2.0], requires_grad=True)
    >>> gb.min(x).backward(); x.grad
    array([1., 0., 0.], dtype=float32)
    """
    a = as_tensor(a)
    axes = _norm_axis(axis, a.ndim, "min")
    if a.size == 0:
        raise ValueError(f"min: expected a non-empty tensor, received shape {a.shape}")
    return Min.apply(a, axis=axes, keepdims=bool(keepdims))


def clip(a, min=None, max=None):  # noqa: A002 - torch.clip's argument names
    """Limit the entries to [min, max] (either may be None); torch's ``clip``/``clamp``.

    The gradient passes where min <= a <= max, the bounds included (PyTorch's convention).

    >>> import gradbox as gb
    >>> gb.clip(gb.Tensor([-2.0, 0.5, 2.0]), -1.0, 1.0).data
    array([-1. ,  0.5,  1. ], dtype=float32)
    """
    a = _float(a, "clip")
    if min is None and max is None:
        raise ValueError("clip: expected at least one of min and max, received neither")
    bounds = []
    for name, v in (("min", min), ("max", max)):
        if v is not None and (isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer, np.floating))):
            raise TypeError(f"clip({name}): expected a number or None, received {type(v).__name__}")
        bounds.append(None if v is None else a.dtype.type(v))
    lo, hi = bounds
    if lo is not None and hi is not None and not lo <= hi:
        raise ValueError(f"clip: expected min <= max, received min={min} and max={max}")
    return Clip.apply(a, lo=lo, hi=hi)


def abs(a):  # noqa: A001
    """|a| elementwise; d/da |a| = sign(a), 0 at a = 0 (as PyTorch).

    >>> import gradbox as gb
    >>> gb.abs(gb.Tensor([-2.0, 3.0])).data
    array([2., 3.], dtype=float32)
    """
    return Abs.apply(_float(a, "abs"))


def sin(a):
    """sin(a) elementwise; d/da sin(a) = cos(a).

    >>> import gradbox as gb
    >>> gb.sin(gb.Tensor([0.0])).data
    array([0.], dtype=float32)
    """
    return Sin.apply(_float(a, "sin"))


def cos(a):
    """cos(a) elementwise; d/da cos(a) = -sin(a).

    >>> import gradbox as gb
    >>> gb.cos(gb.Tensor([0.0])).data
    array([1.], dtype=float32)
    """
    return Cos.apply(_float(a, "cos"))
