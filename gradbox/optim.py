"""Optimizers: the notes' update W := W - α·dW, and its refinements.

All updates happen in place on ``param.data`` and follow PyTorch's formulas, so
results match ``torch.optim`` step for step.
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from .tensor import Tensor


def _check(name, value, who, low=0.0, high=None, low_open=False):
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value > low if low_open else value >= low) and (high is None or value < high)
    if not ok:
        bound = f"{'>' if low_open else '>='} {low}" + (f" and < {high}" if high is not None else "")
        raise ValueError(f"{who}({name}): expected a finite number {bound}, received {value!r}")
    return float(value)


def _fused_kernels():
    """The compiled kernels (``gradbox._fused_kernels``), or None when numba is missing or unusable."""
    global _KERNELS, _KERNELS_ERROR
    if _KERNELS is None:
        try:
            kernels = _load_kernels()
        except Exception as exc:  # noqa: BLE001
            # NOTE: not only ImportError: an installed numba may refuse this NumPy, or find no
            # writable cache folder (RuntimeError at decoration). The NumPy path is always there.
            kernels, _KERNELS_ERROR = False, f"{type(exc).__name__}: {exc}"
        _KERNELS = kernels
    return _KERNELS or None


def _load_kernels():
    import numba

    if numba.config.DISABLE_JIT:  # NOTE: uncompiled, the kernels would be pure-Python loops
        raise RuntimeError("NUMBA_DISABLE_JIT is set")
    from . import _fused_kernels

    return _fused_kernels


_KERNELS = None
_KERNELS_ERROR = "numba is not installed"
_FUSED_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _fusable(w, g, *buffers) -> bool:
    """The kernels take C-contiguous float32/float64 arrays of one shape and dtype (flattened as views,
    so they write through); anything else goes to the NumPy path."""
    return (w.dtype in _FUSED_DTYPES and g.dtype == w.dtype and g.shape == w.shape and w.flags.c_contiguous
            and w.flags.writeable and g.flags.c_contiguous
            and all(b.dtype == w.dtype and b.shape == w.shape and b.flags.c_contiguous for b in buffers))


class Optimizer:
    """Base class: keeps an ordered list of parameters and per-parameter state.

    ``fused``: ``True`` runs each parameter update as one compiled pass (numba, ``pip install
    "gradbox[fast]"``) instead of 4-10 NumPy passes; ``None`` (default) or ``False`` use NumPy, as
    PyTorch's optimizers default to their unfused loop on the CPU. Both paths give bit-identical
    results (the same float operations in the same order). Fusing pays off for long runs of large
    layers: loading numba and the kernels costs about 0.8-1.3 s and 125 MB once per process.
    Subclasses implement ``_update(w, g, state)``; use one of them (``SGD``, ``Adam``, ...).

    >>> import gradbox as gb
    >>> w = gb.nn.Parameter([2.0]); opt = gb.optim.SGD([w], lr=0.25)
    >>> opt.zero_grad(); (w * w).sum().backward(); opt.step(); w.data
    array([1.], dtype=float32)
    """

    def __init__(self, params, defaults: dict, fused=None):
        who = type(self).__name__
        if fused is not None and not isinstance(fused, bool):
            raise TypeError(f"{who}(fused): expected True, False or None, received {fused!r}")
        kernels = _fused_kernels() if fused else None
        if fused and kernels is None:
            raise ImportError(f'{who}(fused=True): expected a working numba (pip install "gradbox[fast]"), '
                              f"received {_KERNELS_ERROR}")
        self._kernels = kernels
        self.fused = kernels is not None
        if isinstance(params, (set, frozenset)):
            raise TypeError(f"{who}(params): expected an ordered iterable of parameters, received a set (order is random)")
        if isinstance(params, Tensor):
            raise TypeError(f"{who}(params): expected an iterable of parameters, received a single Tensor")
        self.params = list(params)
        if not self.params:
            raise ValueError(f"{who}(params): expected at least one parameter, received an empty list")
        for i, p in enumerate(self.params):
            if not isinstance(p, Tensor) or not p.requires_grad:
                raise TypeError(f"{who}(params[{i}]): expected a Tensor with requires_grad=True, received {p!r:.60}")
        self.defaults = dict(defaults)
        for k, v in defaults.items():
            setattr(self, k, v)
        self.state = [dict() for _ in self.params]
        self.step_count = 0

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def step(self) -> None:
        self.step_count += 1
        for p, state in zip(self.params, self.state):
            if p.grad is not None:
                self._update(p.data, p.grad, state)

    def _update(self, w, g, state):  # pragma: no cover - interface
        raise NotImplementedError

    def state_dict(self) -> dict:
        """Hyperparameters, step count and per-parameter buffers (copies)."""
        hyper = {k: getattr(self, k) for k in self.defaults}
        state = {f"{i}.{k}": np.array(v, copy=True) for i, s in enumerate(self.state) for k, v in s.items()}
        return {"type": type(self).__name__, "hyper": hyper, "step_count": self.step_count, "state": state}

    def load_state_dict(self, sd: dict) -> None:
        who = f"{type(self).__name__}.load_state_dict"
        if not isinstance(sd, dict) or sd.get("type") != type(self).__name__:
            got = sd.get("type") if isinstance(sd, dict) else type(sd).__name__
            raise ValueError(f"{who}: expected state of a {type(self).__name__}, received {got!r}")
        new_state = [dict() for _ in self.params]
        for key, value in sd["state"].items():
            index, _, name = key.partition(".")
            if not index.isdigit() or int(index) >= len(self.params):
                raise ValueError(f"{who}: expected keys '<param index>.<buffer>', received {key!r}")
            p = self.params[int(index)]
            value = np.asarray(value)
            if value.shape != p.shape or value.dtype != p.dtype:
                raise ValueError(
                    f"{who}[{key!r}]: expected {p.dtype} array of shape {p.shape}, received {value.dtype} {value.shape}"
                )
            new_state[int(index)][name] = value.copy()
        for k in self.defaults:
            if k in sd["hyper"]:
                setattr(self, k, sd["hyper"][k])
        self.state = new_state
        self.step_count = int(sd["step_count"])


class SGD(Optimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum and weight decay.

    g ← dW + weight_decay·W;  v ← momentum·v + g;  W ← W - lr·(g + momentum·v if nesterov else v).

    >>> import gradbox as gb
    >>> w = gb.nn.Parameter([1.0]); w.grad = w.data * 0 + 0.5
    >>> gb.optim.SGD([w], lr=0.1).step(); w.data
    array([0.95], dtype=float32)
    """

    def __init__(self, params, lr=0.01, momentum=0.0, nesterov=False, weight_decay=0.0, fused=None):
        who = "SGD"
        defaults = dict(
            lr=_check("lr", lr, who),
            momentum=_check("momentum", momentum, who, high=1.0),
            weight_decay=_check("weight_decay", weight_decay, who),
            nesterov=bool(nesterov),
        )
        if nesterov and momentum == 0:
            raise ValueError("SGD(nesterov=True): expected momentum > 0, received momentum=0")
        super().__init__(params, defaults, fused)

    def _update(self, w, g, state):
        buf = state.get("momentum_buffer")
        if self._kernels is not None:
            # NOTE: the first momentum step (buffer = gradient) stays on the NumPy path below
            dt = w.dtype.type
            if not self.momentum and _fusable(w, g):
                return self._kernels.sgd_plain(w.ravel(), g.ravel(), dt(self.lr), dt(self.weight_decay))
            if buf is not None and _fusable(w, g, buf):
                return self._kernels.sgd(w.ravel(), g.ravel(), buf.ravel(), dt(self.lr), dt(self.momentum),
                                         dt(self.weight_decay), self.nesterov)
        if self.weight_decay:
            g = g + self.weight_decay * w
        if self.momentum:
            if buf is None:
                buf = state["momentum_buffer"] = np.array(g, copy=True, order="C")  # NOTE: C order: fusable
            else:
                buf *= self.momentum
                buf += g
            g = g + self.momentum * buf if self.nesterov else buf
        w -= w.dtype.type(self.lr) * g


class RMSprop(Optimizer):
    """RMSprop: s ← alpha·s + (1-alpha)·g²;  W ← W - lr·g / (√s + eps).

    >>> import gradbox as gb
    >>> w = gb.nn.Parameter([1.0]); w.grad = w.data * 0 + 0.5
    >>> gb.optim.RMSprop([w], lr=0.01).step(); round(w.item(), 4)
    0.9
    """

    def __init__(self, params, lr=0.01, alpha=0.99, eps=1e-8, weight_decay=0.0, fused=None):
        who = "RMSprop"
        defaults = dict(
            lr=_check("lr", lr, who),
            alpha=_check("alpha", alpha, who, high=1.0),
            eps=_check("eps", eps, who, low_open=True),
            weight_decay=_check("weight_decay", weight_decay, who),
        )
        super().__init__(params, defaults, fused)

    def _update(self, w, g, state):
        s = state.get("square_avg")
        if s is None:  # NOTE: not setdefault, which would allocate zeros on every step
            s = state["square_avg"] = np.zeros_like(w)
        if self._kernels is not None and _fusable(w, g, s):
            dt = w.dtype.type
            return self._kernels.rmsprop(w.ravel(), g.ravel(), s.ravel(), dt(self.lr), dt(self.alpha),
                                         dt(1 - self.alpha), dt(self.eps), dt(self.weight_decay))
        if self.weight_decay:
            g = g + self.weight_decay * w
        s *= self.alpha
        s += (1 - self.alpha) * g * g
        w -= self.lr * g / (np.sqrt(s) + self.eps)


class Adam(Optimizer):
    """Adam: m ← β1·m + (1-β1)·g;  v ← β2·v + (1-β2)·g²;  W ← W - lr·m̂ / (√v̂ + eps).

    m̂ = m / (1-β1^t) and v̂ = v / (1-β2^t) undo the zero start; ``weight_decay`` adds
    weight_decay·W to g (L2, coupled; see ``AdamW``).

    >>> import gradbox as gb
    >>> w = gb.nn.Parameter([1.0]); w.grad = w.data * 0 + 0.5
    >>> gb.optim.Adam([w], lr=0.1).step(); round(w.item(), 4)
    0.9
    """

    decoupled = False

    def __init__(self, params, lr=0.001, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, fused=None):
        who = type(self).__name__
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"{who}(betas): expected a pair (beta1, beta2), received {betas!r}")
        defaults = dict(
            lr=_check("lr", lr, who),
            beta1=_check("betas[0]", betas[0], who, high=1.0),
            beta2=_check("betas[1]", betas[1], who, high=1.0),
            eps=_check("eps", eps, who, low_open=True),
            weight_decay=_check("weight_decay", weight_decay, who),
        )
        super().__init__(params, defaults, fused)

    def _update(self, w, g, state):
        t = self.step_count  # NOTE: one step counter for all parameters
        if "exp_avg" not in state:  # NOTE: not setdefault, which would allocate on every step
            state["exp_avg"], state["exp_avg_sq"] = np.zeros_like(w), np.zeros_like(w)
        m, v = state["exp_avg"], state["exp_avg_sq"]
        if self._kernels is not None and _fusable(w, g, m, v):
            dt = w.dtype.type
            decay = self.decoupled and self.weight_decay
            return self._kernels.adam(
                w.ravel(), g.ravel(), m.ravel(), v.ravel(),
                dt(self.beta1), dt(1 - self.beta1), dt(self.beta2), dt(1 - self.beta2),
                dt(self.lr / (1 - self.beta1**t)), dt(math.sqrt(1 - self.beta2**t)), dt(self.eps),
                dt(0 if decay else self.weight_decay), dt(1 - self.lr * self.weight_decay if decay else 1),
            )
        if self.weight_decay:
            if self.decoupled:
                w *= 1 - self.lr * self.weight_decay
            else:
                g = g + self.weight_decay * w
        m *= self.beta1
        m += (1 - self.beta1) * g
        v *= self.beta2
        v += (1 - self.beta2) * g * g
        bias1 = 1 - self.beta1**t
        bias2 = 1 - self.beta2**t
        denom = np.sqrt(v) / math.sqrt(bias2) + self.eps
        w -= (self.lr / bias1) * m / denom


class AdamW(Adam):
    """Adam with decoupled weight decay: W ← W·(1 - lr·weight_decay) before the Adam step.

    >>> import gradbox as gb
    >>> w = gb.nn.Parameter([1.0]); w.grad = w.data * 0 + 0.5
    >>> gb.optim.AdamW([w], lr=0.1, weight_decay=0.01).step(); round(w.item(), 4)
    0.899
    """

    decoupled = True

    def __init__(self, params, lr=0.001, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01, fused=None):
        super().__init__(params, lr, betas, eps, weight_decay, fused)
