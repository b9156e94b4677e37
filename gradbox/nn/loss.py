"""Losses. Each returns the mean over the batch, as a scalar tensor."""
from __future__ import annotations

from . import functional as F
from .module import _Stateless


class CrossEntropyLoss(_Stateless):
    """Softmax cross-entropy of logits and integer labels, one fused box.

    L = -1/N Σ_i log softmax(z_i)[y_i];  dL/dz = (softmax(z) - one_hot(y)) / N.

    Shape
    -----
    - Input: logits (N, C), float
    - Target: labels (N,), integers in [0, C)
    - Output: scalar

    Examples
    --------
    >>> import gradbox as gb
    >>> loss = gb.nn.CrossEntropyLoss()(gb.Tensor([[2.0, 0.5]]), [0])
    >>> round(loss.item(), 4)
    0.2014
    """

    def forward(self, logits, labels):
        return F.cross_entropy(logits, labels)


class BCEWithLogitsLoss(_Stateless):
    """Binary cross-entropy on logits: mean of max(z,0) - z·y + log(1 + e^{-|z|}).

    Finite for logits of any size; dL/dz = (sigmoid(z) - y) / N.

    Shape
    -----
    - Input: logits (N,) or (N, 1)
    - Target: same shape as the input (or (N,) for (N, 1) logits), values in [0, 1]
    - Output: scalar

    Examples
    --------
    >>> import gradbox as gb
    >>> loss = gb.nn.BCEWithLogitsLoss()(gb.Tensor([0.0]), gb.Tensor([1.0]))
    >>> round(loss.item(), 4)
    0.6931
    """

    def forward(self, logits, target):
        return F.binary_cross_entropy_with_logits(logits, target)


class MSELoss(_Stateless):
    """Mean squared error: mean((input - target)^2); d/dinput = 2(input - target)/N.

    Shape
    -----
    - Input: any shape; Target: the same shape; Output: scalar

    Examples
    --------
    >>> import gradbox as gb
    >>> round(gb.nn.MSELoss()(gb.Tensor([1.0, 3.0]), gb.Tensor([0.0, 0.0])).item(), 4)
    5.0
    """

    def forward(self, pred, target):
        return F.mse_loss(pred, target)
