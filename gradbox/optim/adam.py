"""Adam and AdamW: momentum and RMSprop together, with bias correction counted per parameter."""
from __future__ import annotations

import math

import numpy as np

from .._validation import check
from .optimizer import FRACTION, NON_NEGATIVE, POSITIVE, Optimizer, _fusable


class Adam(Optimizer):
    """Adam: m ← β1·m + (1-β1)·g;  v ← β2·v + (1-β2)·g²;  W ← W - lr·m̂ / (√v̂ + eps).

    m̂ = m / (1-β1^t) and v̂ = v / (1-β2^t) undo the zero start, where t counts the updates this
    parameter received (``state[i]["step"]``): a parameter whose first gradient arrives at the
    optimizer's third step gets t = 1 there, as in PyTorch. ``weight_decay`` adds weight_decay·W to
    g (L2, coupled; see ``AdamW``).

    >>> import gradbox as gb
    >>> w = gb.nn.Parameter([1.0]); w.grad = w.data * 0 + 0.5
    >>> gb.optim.Adam([w], lr=0.1).step(); round(w.item(), 4)
    0.9
    """

    decoupled = False
    _state_keys = ("exp_avg", "exp_avg_sq")
    _elementwise = True
    _counts_steps = True
    _constraints = {"lr": NON_NEGATIVE, "beta1": FRACTION, "beta2": FRACTION, "eps": POSITIVE,
                    "weight_decay": NON_NEGATIVE}

    def __init__(self, params, lr=0.001, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, fused=None):
        who = type(self).__name__
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"{who}(betas): expected a pair (beta1, beta2), received {betas!r}")
        c = self._constraints
        defaults = dict(
            lr=check(who, "lr", lr, c["lr"]),
            beta1=check(who, "betas[0]", betas[0], c["beta1"]),
            beta2=check(who, "betas[1]", betas[1], c["beta2"]),
            eps=check(who, "eps", eps, c["eps"]),
            weight_decay=check(who, "weight_decay", weight_decay, c["weight_decay"]),
        )
        super().__init__(params, defaults, fused)

    def _update(self, w, g, state):
        if "exp_avg" not in state:  # NOTE: not setdefault, which would allocate on every step
            state["exp_avg"], state["exp_avg_sq"], state["step"] = np.zeros_like(w), np.zeros_like(w), 0
        t = state["step"] = state["step"] + 1  # NOTE: this parameter's own count, as PyTorch
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
