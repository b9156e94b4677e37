"""RMSprop: each weight's step scaled by a running root mean square of its gradients."""
from __future__ import annotations

import numpy as np

from .._validation import validate
from .optimizer import FRACTION, NON_NEGATIVE, POSITIVE, Optimizer, _fusable


class RMSprop(Optimizer):
    """RMSprop: s ← alpha·s + (1-alpha)·g²;  W ← W - lr·g / (√s + eps).

    Each parameter's updates are counted in ``state[i]["step"]``, as PyTorch counts them (the
    update does not use the count).

    >>> import gradbox as gb
    >>> w = gb.nn.Parameter([1.0]); w.grad = w.data * 0 + 0.5
    >>> gb.optim.RMSprop([w], lr=0.01).step(); round(w.item(), 4)
    0.9
    """

    _state_keys = ("square_avg",)
    _elementwise = True
    _counts_steps = True
    _constraints = {"lr": NON_NEGATIVE, "alpha": FRACTION, "eps": POSITIVE, "weight_decay": NON_NEGATIVE}

    def __init__(self, params, lr=0.01, alpha=0.99, eps=1e-8, weight_decay=0.0, fused=None):
        defaults = validate("RMSprop", dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay),
                            self._constraints)
        super().__init__(params, defaults, fused)

    def _update(self, w, g, state):
        s = state.get("square_avg")
        if s is None:  # NOTE: not setdefault, which would allocate zeros on every step
            s = state["square_avg"] = np.zeros_like(w)
            state["step"] = 0
        state["step"] += 1
        if self._kernels is not None and _fusable(w, g, s):
            dt = w.dtype.type
            return self._kernels.rmsprop(w.ravel(), g.ravel(), s.ravel(), dt(self.lr), dt(self.alpha),
                                         dt(1 - self.alpha), dt(self.eps), dt(self.weight_decay))
        if self.weight_decay:
            g = g + self.weight_decay * w
        s *= self.alpha
        s += (1 - self.alpha) * g * g
        w -= self.lr * g / (np.sqrt(s) + self.eps)
