"""``Tensor``: a NumPy array that remembers the box that made it."""
from __future__ import annotations

import numbers
import operator
from heapq import heappop, heappush

import numpy as np


_FLOATS = (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64))


def _to_array(data, dtype=None, name="data") -> np.ndarray:
    """Convert user data to an ndarray, refusing what a network cannot hold."""
    if isinstance(data, Tensor):
        data = data.data
    if isinstance(data, np.ndarray):
        arr = data
    else:
        try:
            arr = np.asarray(data)
        except ValueError:  # ragged nested lists
            lengths = [len(r) if hasattr(r, "__len__") else "scalar" for r in list(data)[:6]]
            raise ValueError(
                f"{name}: expected a rectangular array, received a ragged sequence (row lengths {lengths})"
            ) from None
        # NOTE: like torch.tensor, Python floats default to float32; a NumPy float64 scalar
        # keeps its dtype (as torch.tensor(np.float64(1.0)) does).
        if dtype is None and arr.dtype == np.float64 and not isinstance(data, np.generic):
            arr = arr.astype(np.float32)
    if arr.dtype.kind not in "fiub":
        raise TypeError(
            f"{name}: expected numeric (float, int or bool) data, received dtype {arr.dtype}"
        )
    if dtype is not None:
        dtype = np.dtype(dtype)
        if dtype.kind not in "fiub":
            raise TypeError(f"dtype: expected a float, int or bool dtype, received {dtype}")
        if arr.dtype != dtype:
            arr = arr.astype(dtype)
    return arr


class Tensor:
    """An n-dimensional array with reverse-mode automatic differentiation.

    Parameters
    ----------
    data : array_like
        The values. NumPy float arrays keep their dtype; Python floats become
        float32 (PyTorch's habit). Writing into ``.data`` in place updates the tensor.
    requires_grad : bool
        Record operations on this tensor so that ``backward`` fills ``.grad``.
    dtype : numpy dtype, optional
        Convert to this dtype.

    Notes
    -----
    Version counter (PyTorch's): ``x._version`` counts the in-place changes made through
    the tensor (``x.data = a``, ``x.data += 1``, ``x[i] = v``). A box records the versions
    of the inputs it saves; backward raises ``RuntimeError`` if one changed since, instead
    of returning a silently wrong gradient. Writes into the array itself
    (``x.data[...] = v``, an optimizer's in-place update) are NumPy's and are not counted,
    as PyTorch's ``.data`` is not.

    Examples
    --------
    >>> import gradbox as gb
    >>> x = gb.Tensor([2.0, 3.0], requires_grad=True)
    >>> (x * x).sum().backward()
    >>> x.grad
    array([4., 6.], dtype=float32)
    """

    # NOTE: _seq (creation order of a box output) is set by Function.apply, only on tensors with a box.
    # _version counts the in-place changes made through the tensor (PyTorch's version counter).
    __slots__ = ("_data", "_version", "grad", "requires_grad", "_ctx", "_retain", "_seq", "name", "__weakref__")
    __array_priority__ = 1000  # make ndarray * Tensor call Tensor.__rmul__

    def __init__(self, data, requires_grad: bool = False, dtype=None, name: str | None = None):
        arr = _to_array(data, dtype)
        if requires_grad and arr.dtype not in _FLOATS:
            raise TypeError(
                f"requires_grad=True: expected a floating-point tensor, received dtype {arr.dtype}"
            )
        self._data = arr
        self._version = 0
        self.grad = None
        self.requires_grad = bool(requires_grad)
        self._ctx = None
        self._retain = False
        self.name = name

    @classmethod
    def _from_op(cls, data: np.ndarray, requires_grad: bool) -> "Tensor":
        t = cls.__new__(cls)
        t._data = data
        t._version = 0
        t.grad = None
        t.requires_grad = requires_grad
        t._ctx = None
        t._retain = False
        t.name = None
        return t

    # --- the data and its version counter ----------------------------------
    def _set_data(self, value):
        # NOTE: ``x.data = a`` and ``x.data += 1`` (Python turns augmented assignment to an
        # attribute into get, in-place op, set) both land here, so both bump the version.
        self._data = value
        self._version += 1

    #: The values (an ndarray). Assigning to it, or ``x.data += ...``, bumps ``_version``;
    #: writing into the array itself (``x.data[...] = v``) is NumPy's business and is not
    #: seen, as PyTorch's ``.data`` is not tracked either. ``x[...] = v`` is tracked.
    # NOTE: the getter is a C-level attrgetter: about 30 ns a read, instead of 45 for a def.
    data = property(operator.attrgetter("_data"), _set_data)

    def __setitem__(self, index, value):
        """``x[index] = value`` in place; bumps the version counter, like PyTorch's in-place ops.

        Refused while recording for a tensor that requires grad: gradbox does not record
        in-place operations in the graph, so the gradient would be silently wrong.
        """
        if self.requires_grad and _grad_enabled():
            raise RuntimeError(
                f"x[...] = value: a tensor of shape {self.shape} that requires grad cannot be changed in place "
                f"while gradients are recorded; do it under gradbox.no_grad(), or build a new tensor"
            )
        if isinstance(value, Tensor):
            value = value._data
        self._data[index] = value
        self._version += 1

    # --- plain properties -------------------------------------------------
    shape = property(lambda self: self.data.shape)
    dtype = property(lambda self: self.data.dtype)
    ndim = property(lambda self: self.data.ndim)
    size = property(lambda self: self.data.size)
    is_leaf = property(lambda self: self._ctx is None)

    def __len__(self):
        return len(self.data)

    def numpy(self) -> np.ndarray:
        """The underlying array (shared, not copied), like ``torch.Tensor.numpy``."""
        return self.data

    def item(self) -> float:
        if self.data.size != 1:
            raise ValueError(f"item(): expected a tensor with one element, received shape {self.shape}")
        return self.data.item()

    def detach(self) -> "Tensor":
        """A tensor sharing the same data, cut from the graph."""
        return Tensor._from_op(self.data, False)

    def astype(self, dtype) -> "Tensor":
        from . import ops

        return ops.cast(self, dtype)

    def zero_grad(self) -> None:
        self.grad = None

    def retain_grad(self) -> None:
        """Keep ``.grad`` on this non-leaf tensor after backward (for pictures)."""
        self._retain = True

    def __repr__(self):
        extra = ", requires_grad=True" if self.requires_grad else ""
        if self._ctx is not None:
            extra = f", grad_fn={self._ctx.name}"
        body = np.array2string(self.data, separator=", ", prefix="Tensor(")
        return f"Tensor({body}, dtype={self.dtype}{extra})"

    def __bool__(self):
        raise TypeError("the truth value of a Tensor is ambiguous; compare .item() or use .data")

    # --- backpropagation --------------------------------------------------
    def backward(self, grad=None, retain_graph: bool = False) -> None:
        """Backpropagate from this tensor, accumulating ``.grad`` on leaves.

        Boxes run newest first, from a heap of pending outputs (no recursion, so a
        10,000-deep chain is fine). A node that is used many times receives the sum
        of its gradients before its own box runs. Unless ``retain_graph`` is true,
        each box's cache is freed as soon as it has been used.
        """
        if not self.requires_grad:
            raise RuntimeError("backward(): this tensor does not require grad and has no graph")
        if grad is None:
            if self.data.size != 1:
                raise ValueError(
                    f"backward(): grad can be implicit only for a scalar output; "
                    f"received shape {self.shape}, so pass grad= of that shape"
                )
            grad = np.empty_like(self.data)  # NOTE: empty + fill: two C calls; np.ones_like is Python-level (~3 µs)
            grad.fill(1)
        else:
            # NOTE: dtype= at once: a Python float must not pass through float32 on its way
            grad = _to_array(grad, dtype=self.dtype, name="grad")
            if grad.shape != self.shape:
                raise ValueError(f"backward(grad=...): expected shape {self.shape}, received {grad.shape}")
            grad = grad.astype(self.dtype, copy=False)

        if self._ctx is None:  # a leaf: its gradient is the seed itself
            self.grad = grad.copy() if self.grad is None else _nd(self.grad + grad)
            return
        # NOTE: no separate topological sort. Every box output carries the sequence number
        # of its creation (Function.apply), and a tensor is always created after its inputs,
        # so running boxes newest first (a heap keyed by -seq, as PyTorch's engine does)
        # never runs a box before all of its output's consumers have delivered their
        # gradients. One pass; leaves are only collected and stored at the end.
        grads = {id(self): grad}
        fresh = set()  # ids of nodes whose pending gradient is an array nobody else holds
        leaves = []
        heap = [(-self._seq, self)]
        while heap:
            node = heappop(heap)[1]
            key = id(node)
            g = grads.pop(key)
            if node._retain:
                node.grad = _nd(g).copy() if node.grad is None else _nd(node.grad + g)
            ctx = node._ctx
            if ctx._released:
                raise RuntimeError(
                    "backward(): this graph was already used and freed; pass retain_graph=True "
                    "to the first backward() to backpropagate twice"
                )
            # NOTE: the version check, inline (a call per box cost 0.3 µs): a saved input,
            # or the output, changed in place since forward makes this box's cache stale
            saved = ctx._versions
            if saved is not None:
                for parent, version in zip(ctx.parents, saved):
                    if parent._version != version:
                        _check_versions(node, ctx, saved)
            if node._version:
                _check_versions(node, ctx, None)
            in_grads = ctx.backward(g)
            if not isinstance(in_grads, tuple):
                in_grads = (in_grads,)
            owned = ctx.returns_fresh_grads
            for parent, pg in zip(ctx.parents, in_grads):
                if pg is None or not parent.requires_grad:
                    continue
                key = id(parent)
                if key in grads:
                    grads[key] = grads[key] + pg
                    fresh.add(key)
                    continue
                grads[key] = pg
                if owned:
                    fresh.add(key)
                if parent._ctx is None:
                    leaves.append(parent)
                else:
                    heappush(heap, (-parent._seq, parent))
            if not retain_graph:
                ctx.release()
        for leaf in leaves:
            key = id(leaf)
            g = grads[key]
            # NOTE: copy on first store (a box may hand the same array to two inputs),
            # unless the array is known fresh: the leaf then simply takes it over.
            if leaf.grad is not None:
                leaf.grad = _nd(leaf.grad + g)
            elif isinstance(g, np.generic):  # a 0-d sum comes back as a NumPy scalar
                leaf.grad = np.asarray(g)
            else:
                # NOTE: .copy(), not np.array(g, copy=True): a method follows the array's own module
                leaf.grad = g if key in fresh else g.copy()

    # --- operators (defined in ops.py) ------------------------------------
    def __add__(self, other):
        return ops.add(self, other)

    def __radd__(self, other):
        return ops.add(other, self)

    def __sub__(self, other):
        return ops.sub(self, other)

    def __rsub__(self, other):
        return ops.sub(other, self)

    def __mul__(self, other):
        return ops.mul(self, other)

    def __rmul__(self, other):
        return ops.mul(other, self)

    def __truediv__(self, other):
        return ops.div(self, other)

    def __rtruediv__(self, other):
        return ops.div(other, self)

    def __pow__(self, exponent):
        return ops.pow(self, exponent)

    def __rpow__(self, base):
        return ops.pow(base, self)

    def pow(self, exponent):
        return ops.pow(self, exponent)

    def __abs__(self):
        return ops.abs(self)

    def __neg__(self):
        return ops.neg(self)

    def __matmul__(self, other):
        return ops.matmul(self, other)

    def __rmatmul__(self, other):
        return ops.matmul(other, self)

    def __getitem__(self, index):
        return ops.getitem(self, index)

    def sum(self, axis=None, keepdims=False):
        return ops.sum(self, axis, keepdims)

    def mean(self, axis=None, keepdims=False):
        return ops.mean(self, axis, keepdims)

    def max(self, axis=None, keepdims=False):
        return ops.max(self, axis, keepdims)

    def min(self, axis=None, keepdims=False):
        return ops.min(self, axis, keepdims)

    def sum_to(self, shape):
        return ops.sum_to(self, shape)

    def sum_to_size(self, *shape):
        """PyTorch's name for ``sum_to``."""
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        return ops.sum_to(self, shape)

    def broadcast_to(self, shape):
        return ops.broadcast_to(self, shape)

    def clip(self, min=None, max=None):  # noqa: A002 - torch's names
        return ops.clip(self, min, max)

    clamp = clip  # PyTorch's other name

    def abs(self):
        return ops.abs(self)

    def sin(self):
        return ops.sin(self)

    def cos(self):
        return ops.cos(self)

    def reshape(self, *shape):
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        return ops.reshape(self, shape)

    def transpose(self, *axes):
        if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
            axes = tuple(axes[0])
        return ops.transpose(self, axes or None)

    @property
    def T(self):
        return ops.transpose(self, None)

    def exp(self):
        return ops.exp(self)

    def log(self):
        return ops.log(self)

    def relu(self):
        return ops.relu(self)

    def sigmoid(self):
        return ops.sigmoid(self)

    def tanh(self):
        return ops.tanh(self)


def _nd(a):
    """NumPy turns 0-d results into scalars; a gradient stays a (0-d) array."""
    return np.asarray(a) if isinstance(a, np.generic) else a


def _describe(t: Tensor) -> str:
    name = f" {t.name!r}" if t.name else ""
    return f"Tensor{name} of shape {t.shape}"


def _check_versions(node: Tensor, ctx, saved) -> None:
    """Refuse to backpropagate through a box whose saved arrays were changed in place."""
    # NOTE: called only once a version differs (the engine compares inline); builds the message.
    if node._version and ctx.saves_output:
        raise RuntimeError(
            "one of the variables needed for gradient computation has been modified by an inplace "
            f"operation: {_describe(node)} (the output of {ctx.name}) is at version {node._version}; "
            "expected version 0"
        )
    if saved is None:
        return
    parents = ctx.parents
    for i, (t, v) in enumerate(zip(parents, saved)):
        if t._version != v:
            which = "the input" if len(parents) == 1 else f"input {i}"
            raise RuntimeError(
                "one of the variables needed for gradient computation has been modified by an inplace "
                f"operation: {_describe(t)} ({which} of {ctx.name}) is at version {t._version}; "
                f"expected version {v}"
            )


def as_tensor(value, like: Tensor | None = None) -> Tensor:
    """Wrap a constant. Python scalars take the dtype of ``like`` (no upcast)."""
    if isinstance(value, Tensor):
        return value
    if isinstance(value, (numbers.Number, np.number)) and not isinstance(value, (bool, np.bool_)):
        if isinstance(value, complex) or np.iscomplexobj(value):
            raise TypeError(f"expected a real number, received complex value {value!r}")
        dtype = like.dtype if like is not None and like.dtype in _FLOATS else np.float32
        if like is None and isinstance(value, np.floating):
            dtype = value.dtype
        return Tensor._from_op(np.asarray(value, dtype=dtype), False)
    return Tensor(value)


from . import ops  # noqa: E402  (ops needs Tensor; Tensor's operators need ops)
from .function import is_grad_enabled as _grad_enabled  # noqa: E402
