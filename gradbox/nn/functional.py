"""Fused boxes for layers and losses (one graph node each, so overhead stays small)."""
from __future__ import annotations

import math

import numpy as np

from .._blas import SERIAL_GEMM as _SERIAL_GEMM
from .._blas import dot as _dot
from .._heap import keep_heap
from ..errors import NonFiniteError, all_finite, first_nonfinite
from ..function import Function
from ..ops import _quiet, _sigmoid
from ..tensor import _FLOATS, Tensor, as_tensor


def _ones(n: int, dtype) -> np.ndarray:
    # NOTE: np.ones is a Python-level function (1.5 µs); empty + fill is two C calls (0.5 µs)
    out = np.empty(n, dtype)
    out.fill(1)
    return out


def affine(x: np.ndarray, w: np.ndarray, b: np.ndarray | None) -> np.ndarray:
    """X Wᵀ + b on bare arrays: the arithmetic of ``LinearFunction`` and of no-graph inference.

    NOTE: ``ndarray.dot`` and a 2-D view of b: the same BLAS call and sum as ``x @ w.T + b``
    (bit-identical on the same BLAS thread count), with less dispatch: about 1 µs less per layer on a
    single sample. Products large enough for OpenBLAS to split go through ``gradbox._blas.dot`` (one
    thread when small and skinny); the size is tested inline, so that single-sample inference does not
    pay that call (0.3 µs a layer). The box's forward and the no-graph path both come here: same bits.
    For float32 batches of 2-64 rows into 64 or more outputs the product runs as W·Xᵀ instead (faster
    there; the values equal to rounding, see ``_WXT_BATCH``).
    """
    o = w.shape[0]
    if x.size * o <= _SERIAL_GEMM:  # NOTE: first, so that one sample (the latency path) pays one comparison
        out = x.dot(w.T)
    elif x.ndim == 2 and 2 <= x.shape[0] <= _WXT_BATCH and o >= _WXT_OUT and x.dtype == np.float32 == w.dtype:
        # NOTE: OpenBLAS's sgemm runs X·Wᵀ with few rows of X 1.2-1.9x slower than the same product as W·Xᵀ
        # (784 -> 256 at batch 32: 223 against 155 µs on one thread); so Zᵀ = W·Xᵀ, and the bias is added
        # in the one pass that copies Zᵀ back to rows (BENCHMARKS.md, "Linear layers: W·Xᵀ at small batches")
        zt = _dot(w, x.T, out=np.empty((o, x.shape[0]), x.dtype))
        out = np.empty((x.shape[0], o), x.dtype)
        if b is not None and b.ndim == 1:
            np.add(zt.T, b, out=out)
            b = None  # NOTE: added; a bias of another shape is added below, as for the other products
        else:
            np.copyto(out, zt.T)
    else:
        out = _dot(x, w.T)
    # NOTE: the step's largest temporaries are this size (ReLU's output, the gradients of both): without
    # it, a fresh process faulted them in every step (the MLP at batch 1024: 1,716 faults, 17.1 against 13.1 ms)
    keep_heap(out.nbytes)
    if b is not None:
        out += b[None] if b.ndim == 1 and out.ndim == 2 else b
    return out


#: float32 batches (with a float32 W) of 2 to this many rows, into at least ``_WXT_OUT`` outputs, run X·Wᵀ as W·Xᵀ (``affine``),
#: unless the product is one OpenBLAS runs on one thread anyway (``SERIAL_GEMM``: m·k·n up to 262,144).
#: NOTE: measured, one BLAS thread, float32 (two threads alike): 8 x 784 -> 256 1.88x faster, 32 x 784 -> 256
#: 1.44x, 32 x 400 -> 120 1.33x, 64 x 4096 -> 128 1.20x; 128 x 400 -> 120 0.95x and from 512 rows 0.79-0.85x
#: slower, into 10 outputs 0.77x; float64 gains nothing (0.80-1.07x), nor does one row (0.94x)
_WXT_BATCH = 64
_WXT_OUT = 64


class LinearFunction(Function):
    """Z = X Wᵀ + b, the notes' Z[l] = W[l] A[l-1] + b[l] in batch-first layout.

    Backward, with dZ the upstream gradient (the 1/m already lives in the loss):
    dX = dZ W, dW = dZᵀ X, db = Σ_rows dZ. dX is skipped when X needs no gradient.
    """

    returns_fresh_grads = True  # three new arrays from matmul and sum

    def forward(self, x, w, b=None):
        self.x, self.w = x, w
        return affine(x, w, b)

    def backward(self, g):
        need = self.needs_input_grad
        # NOTE: ndarray.dot (inside _dot), not @: the same BLAS call with less dispatch (about 1 µs each);
        # small products on one BLAS thread (gradbox._blas)
        gx = _dot(g, self.w) if need[0] else None
        gw = _dot(g.T, self.x, out=_grad_out(self.parents[1])) if need[1] else None
        # NOTE: the column sums of dZ as one BLAS product with a ones vector: half the time of
        # g.sum(axis=0) from batch 32 up (128 x 256: 2.8 vs 5.7 µs).
        gb = _dot(_ones(g.shape[0], g.dtype), g, out=_grad_out(self.parents[2])) if len(need) > 2 and need[2] else None
        return gx, gw, gb


def _grad_out(param):
    """The array a parameter's gradient may be computed into (``Parameter._grad_out``), once; else None."""
    out = getattr(param, "_grad_out", None)
    if out is None or param.grad is not None:
        return None
    param._grad_out = None
    return out


class DropoutFunction(Function):
    def forward(self, x, p, rng):
        # NOTE: inverted dropout: scale at train time so eval needs no change.
        self.mask = (rng.random(x.shape) >= p).astype(x.dtype) / x.dtype.type(1.0 - p)
        return x * self.mask

    def backward(self, g):
        return g * self.mask


def _row_max(z: np.ndarray) -> np.ndarray:
    """Max of each row, as a column (N, 1).

    NOTE: NumPy reduces a short inner axis slowly (6.7 µs for 128 x 10); reducing the
    transposed copy along its outer axis is vectorised across rows (2.4 µs; 512 x 10:
    23 -> 3.9 µs). For wide rows the direct reduction is the faster one.
    """
    if z.shape[1] <= 32:
        return np.ascontiguousarray(z.T).max(axis=0)[:, None]
    return z.max(axis=1, keepdims=True)


class CrossEntropyFunction(Function):
    """Mean softmax cross-entropy of logits (N, C) and integer labels (N,).

    Backward is (softmax(logits) - one_hot(labels)) / N, with respect to the logits.
    """

    returns_fresh_grads = True

    @_quiet
    def forward(self, logits, labels):
        n, c = logits.shape
        shifted = logits - _row_max(logits)
        probs = np.exp(shifted)
        total = probs.dot(_ones(c, probs.dtype))[:, None]  # NOTE: row sums by BLAS, 6x faster for 10 columns
        probs /= total
        self.labels, self.probs = labels, probs
        # NOTE: loss_i = log Σ_j exp(z_ij - max_i) - (z_iy - max_i). Both terms are >= 0, so
        # summing them apart cancels nothing; one exp in all (the log-softmax form took two).
        self.rows = rows = np.arange(n)
        loss = (np.log(total).sum() - shifted[rows, labels].sum()) / n
        return np.asarray(loss, dtype=logits.dtype)

    @_quiet
    def backward(self, g):
        grad = self.probs.copy()
        grad[self.rows, self.labels] -= 1
        grad *= float(g) / len(grad)  # NOTE: a Python scalar: no 0-d array op
        return grad, None


class BCEWithLogitsFunction(Function):
    """Mean of max(z,0) - z·y + log(1 + exp(-|z|)): finite for any logit z."""

    @_quiet
    def forward(self, z, y):
        self.z, self.y = z, y
        loss = np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z)))
        return np.asarray(loss.mean(), dtype=z.dtype)

    @_quiet
    def backward(self, g):
        n = self.z.size
        gz = (_sigmoid(self.z) - self.y) * (g / n) if self.needs_input_grad[0] else None
        gy = -self.z * (g / n) if self.needs_input_grad[1] else None
        return gz, gy


class MSEFunction(Function):
    def forward(self, pred, target):
        self.diff = pred - target
        return np.asarray((self.diff * self.diff).mean(), dtype=pred.dtype)

    def backward(self, g):
        gp = self.diff * (2 * g / self.diff.size)
        return gp if self.needs_input_grad[0] else None, -gp if self.needs_input_grad[1] else None


# --- validation -----------------------------------------------------------------
def _as_float_input(x, who: str, name: str = "input") -> Tensor:
    if not isinstance(x, Tensor):
        x = Tensor(x)
    if x.data.dtype not in _FLOATS:
        raise TypeError(f"{who}: expected a floating-point {name}, received dtype {x.dtype}")
    return x


def _batch_check(x: Tensor, who: str, ndim: int = 2, name: str = "input"):
    if x.ndim != ndim or x.shape[0] == 0:
        expect = "(N, C)" if ndim == 2 else "(N,)"
        raise ValueError(f"{who}: expected a non-empty {name} of shape {expect}, received {x.shape}")


def linear(x, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    inputs = (x, weight) if bias is None else (x, weight, bias)
    return LinearFunction.apply(*inputs)


def dropout(x: Tensor, p: float, training: bool = True, rng=None) -> Tensor:
    from ..random import resolve_rng

    if not training or p == 0:
        return x
    return DropoutFunction.apply(x, p=p, rng=resolve_rng(rng))


def cross_entropy(logits, labels) -> Tensor:
    who = "CrossEntropyLoss"
    logits = _as_float_input(logits, who, "logits")
    _batch_check(logits, who, 2, "logits")
    y = labels.data if isinstance(labels, Tensor) else np.asarray(labels)
    if y.dtype.kind not in "iu":
        raise TypeError(f"{who}: expected integer class labels, received dtype {y.dtype} (use y.astype(int))")
    n, c = logits.shape
    if y.shape != (n,):
        raise ValueError(f"{who}: expected labels of shape ({n},) to match logits {logits.shape}, received {y.shape}")
    # NOTE: one max over the labels viewed as unsigned finds negatives too (they wrap to huge values)
    if y.size and y.view(_unsigned(y.dtype)).max() >= c:
        raise ValueError(f"{who}: expected labels in [0, {c}), received values in [{y.min()}, {y.max()}]")
    _check_finite(who, logits=logits)
    return _finite_loss(CrossEntropyFunction.apply(logits, Tensor._from_op(y, False)), who)


def _unsigned(dtype: np.dtype) -> np.dtype:
    """The unsigned integer dtype of the same size and byte order (cached: a string parse per call cost 1 µs)."""
    u = _UNSIGNED.get(dtype)
    if u is None:
        u = _UNSIGNED[dtype] = np.dtype(dtype.str.replace("i", "u"))
    return u


_UNSIGNED: dict = {}


def _check_finite(who: str, **inputs) -> None:
    """Refuse NaN/inf inputs by name before a loss is computed."""
    for name, t in inputs.items():
        if t.dtype.kind == "f" and not all_finite(t.data):
            raise NonFiniteError(f"{who}: expected finite {name}, received {first_nonfinite(t.data)}")


def _finite_loss(loss: Tensor, who: str) -> Tensor:
    """Refuse a non-finite loss computed from finite inputs (an overflow inside the loss)."""
    if not math.isfinite(loss.data):
        raise NonFiniteError(f"{who}: expected a finite loss, received {loss.data} from finite inputs")
    return loss


def _target_like(pred: Tensor, target, who: str) -> Tensor:
    target = target if isinstance(target, Tensor) else as_tensor(np.asarray(target))
    if target.dtype != pred.dtype:
        if target.requires_grad:
            raise TypeError(f"{who}: expected target of dtype {pred.dtype}, received {target.dtype}")
        target = Tensor._from_op(target.data.astype(pred.dtype), False)
    if target.shape != pred.shape:
        if target.size == pred.size and pred.ndim == 2 and pred.shape[1] == 1 and target.ndim == 1:
            target = target.reshape(pred.shape)  # (N,) labels for (N, 1) logits
        else:
            raise ValueError(f"{who}: expected target of shape {pred.shape} to match input, received {target.shape}")
    return target


def binary_cross_entropy_with_logits(logits, target) -> Tensor:
    who = "BCEWithLogitsLoss"
    logits = _as_float_input(logits, who, "logits")
    if logits.ndim == 0 or logits.shape[0] == 0:
        raise ValueError(f"{who}: expected non-empty logits of shape (N,) or (N, 1), received {logits.shape}")
    target = _target_like(logits, target, who)
    t = target.data
    if t.size and (np.nanmin(t) < 0 or np.nanmax(t) > 1):
        raise ValueError(f"{who}: expected targets in [0, 1], received values in [{t.min()}, {t.max()}]")
    _check_finite(who, logits=logits, target=target)
    return _finite_loss(BCEWithLogitsFunction.apply(logits, target), who)


def mse_loss(pred, target) -> Tensor:
    who = "MSELoss"
    pred = _as_float_input(pred, who)
    if pred.size == 0:
        raise ValueError(f"{who}: expected a non-empty input, received shape {pred.shape}")
    target = _target_like(pred, target, who)
    _check_finite(who, input=pred, target=target)
    return _finite_loss(MSEFunction.apply(pred, target), who)
from ._conv_functional import avg_pool2d, batch_norm, conv2d, max_pool2d, use_fast_kernels  # noqa: E402,F401
