"""Optimizers: the notes' update W := W - α·dW, and its refinements.

All updates happen in place on ``param.data`` and follow PyTorch's formulas, so results match
``torch.optim`` step for step (per-parameter step counts included).

- ``optimizer.py``: the base ``Optimizer`` (parameters, per-parameter state, step hooks,
  ``state_dict``) and the loader of the optional compiled kernels;
- ``sgd.py``, ``rmsprop.py``, ``adam.py`` (``Adam``, ``AdamW``): one file per update rule;
- ``_kernels.py``: the fused numba updates (``fused=True``), imported only when asked for.

>>> import gradbox as gb
>>> w = gb.nn.Parameter([1.0]); w.grad = w.data * 0 + 0.5
>>> opt = gb.optim.Adam([w], lr=0.1); opt.step(); opt.state[0]["step"]
1
"""
from .adam import Adam, AdamW
from .optimizer import Optimizer, RemovableHandle, _fusable, _fused_kernels
from .rmsprop import RMSprop
from .sgd import SGD

__all__ = ["Optimizer", "SGD", "RMSprop", "Adam", "AdamW", "RemovableHandle"]
