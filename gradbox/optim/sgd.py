"""Stochastic gradient descent: the notes' update W := W - α·dW, with momentum and weight decay."""
from __future__ import annotations

import numpy as np

from .._validation import validate
from .optimizer import FRACTION, NON_NEGATIVE, Optimizer, _fusable


class SGD(Optimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum and weight decay.

    g ← dW + weight_decay·W;  v ← momentum·v + g;  W ← W - lr·(g + momentum·v if nesterov else v).
    The first momentum step sets v ← g, as PyTorch's ``torch.optim.SGD`` (whose results it matches).

    >>> import gradbox as gb
    >>> w = gb.nn.Parameter([1.0]); w.grad = w.data * 0 + 0.5
    >>> gb.optim.SGD([w], lr=0.1).step(); w.data
    array([0.95], dtype=float32)
    """

    _state_keys = ("momentum_buffer",)
    _elementwise = True
    _constraints = {"lr": NON_NEGATIVE, "momentum": FRACTION, "weight_decay": NON_NEGATIVE}

    def __init__(self, params, lr=0.01, momentum=0.0, nesterov=False, weight_decay=0.0, fused=None):
        defaults = validate("SGD", dict(lr=lr, momentum=momentum, weight_decay=weight_decay), self._constraints)
        defaults["nesterov"] = bool(nesterov)
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
