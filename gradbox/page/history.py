"""``GradNormHistory``: a training callback that records each parameter's gradient norm per epoch.

The explain page draws these next to the loss curves ("across training"):

>>> import numpy as np, gradbox as gb
>>> from gradbox.page import GradNormHistory
>>> model = gb.nn.Sequential(gb.nn.Linear(4, 3, rng=0))
>>> rec = GradNormHistory()
>>> X, y = np.random.default_rng(0).normal(size=(16, 4)).astype(np.float32), np.arange(16) % 3
>>> h = gb.fit(model, X, y, epochs=2, batch_size=8, callbacks=[rec], verbose=0)
>>> sorted(rec.history), len(rec.history["grad_norm.0.weight"])
(['grad_norm.0.bias', 'grad_norm.0.weight'], 2)
"""
from __future__ import annotations

import numpy as np

from ..train import Callback

__all__ = ["GradNormHistory"]


class GradNormHistory(Callback):
    """Mean over the epoch's steps of ‖∂J/∂θ‖ for every parameter θ.

    ``history`` is ``{"grad_norm.<parameter name>": [one value per epoch]}``; merge it
    with the run's ``History`` (``{**h.as_dict(), **rec.history}``) and pass it to
    ``explain_page(..., history=...)``. The gradients are read after each step's
    backward (they stay on the parameters until the next step's ``zero_grad``).
    """

    def __init__(self):
        self.history = {}
        self._sums, self._steps = {}, 0

    def on_epoch_begin(self, epoch, logs=None):
        self._sums, self._steps = {}, 0

    def on_batch_end(self, step, logs=None):
        for name, p in self.trainer.model.named_parameters():
            if p.grad is not None:
                self._sums[name] = self._sums.get(name, 0.0) + float(np.linalg.norm(p.grad.astype(np.float64)))
        self._steps += 1

    def on_epoch_end(self, epoch, logs=None):
        for name, total in self._sums.items():
            self.history.setdefault(f"grad_norm.{name}", []).append(total / max(self._steps, 1))

    def get_state(self):
        return {"history": self.history}, {}

    def set_state(self, meta, arrays):
        self.history = {k: list(v) for k, v in meta.get("history", {}).items()}
