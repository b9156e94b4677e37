"""Batch normalisation: ``BatchNorm1d`` for (N, C) or (N, C, L), ``BatchNorm2d`` for (N, C, H, W)."""
from __future__ import annotations

import numpy as np

from .._validation import interval, one_of, positive_float, positive_int, validate
from ..tensor import Tensor
from . import _conv_functional as CF
from .module import Module, Parameter, _layer_dtype


class _BatchNorm(Module):
    ranks: tuple = ()
    layout: str = ""
    _parameter_constraints = {"num_features": positive_int, "eps": positive_float,
                              "momentum": interval("real", 0, 1), "dtype": one_of("float32", "float64")}

    def __init__(self, num_features, eps=1e-5, momentum=0.1, dtype=np.float32):
        super().__init__()
        who = type(self).__name__
        # NOTE: the same constraints as a model file's config (check_config); dtype may also be a NumPy type here
        args = validate(who, {"num_features": num_features, "eps": eps, "momentum": momentum},
                        self._parameter_constraints)
        dtype = _layer_dtype(dtype, who)
        self.num_features, self.eps, self.momentum = args["num_features"], args["eps"], args["momentum"]
        c = self.num_features
        self.weight = Parameter(np.ones(c, dtype=dtype))  # γ
        self.bias = Parameter(np.zeros(c, dtype=dtype))  # β
        self.register_buffer("running_mean", np.zeros(c, dtype=dtype))
        self.register_buffer("running_var", np.ones(c, dtype=dtype))
        self.register_buffer("num_batches_tracked", np.zeros((), dtype=np.int64))

    def get_config(self) -> dict:
        return {"num_features": self.num_features, "eps": self.eps, "momentum": self.momentum,
                "dtype": self.weight.dtype.name}

    @classmethod
    def state_specs(cls, config):
        config = cls.check_config(config)
        c, dtype = config["num_features"], np.dtype(config.get("dtype", "float32"))
        return [("weight", (c,), dtype), ("bias", (c,), dtype), ("running_mean", (c,), dtype),
                ("running_var", (c,), dtype), ("num_batches_tracked", (), np.dtype(np.int64))]

    def forward(self, x):
        who = f"{type(self).__name__}(num_features={self.num_features})"
        x = x if isinstance(x, Tensor) else Tensor(x)
        if x.ndim not in self.ranks or x.shape[1] != self.num_features or x.shape[0] == 0:
            raise ValueError(f"{who}: expected input of shape {self.layout.format(C=self.num_features)}, "
                             f"received {x.shape}")
        if x.dtype != self.weight.dtype:
            raise TypeError(f"{who}: expected input of dtype {self.weight.dtype}, received {x.dtype} "
                            f"(convert with .astype(np.{self.weight.dtype}))")
        if self.training:
            # NOTE: under data parallelism the statistics are the global batch's (at least one sample per rank)
            if x.size // x.shape[1] <= 1 and CF._batch_stats_sync() is None:
                raise ValueError(f"{who}: expected more than 1 value per channel when training, received {x.shape}")
            self.num_batches_tracked += 1
        # NOTE: the running statistics are updated in place by batch_norm (the buffers' arrays)
        return CF.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                             training=self.training, momentum=self.momentum, eps=self.eps)

    def output_shape(self, input_shape: tuple) -> tuple:
        return tuple(input_shape)

    def extra_repr(self):
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}"


class BatchNorm1d(_BatchNorm):
    """Batch normalisation of (N, C) or (N, C, L): ``y = γ·(x - μ)/sqrt(var + eps) + β`` per feature.

    Parameters
    ----------
    num_features : int
        C.
    eps : float
        Added to the variance.
    momentum : float
        ``running ← (1 - momentum)·running + momentum·batch`` (PyTorch's convention).
    dtype : float32 or float64

    Attributes
    ----------
    weight, bias : Parameter of shape (C,) -- γ (ones) and β (zeros)
    running_mean, running_var : buffers of shape (C,) -- zeros and ones at first; the unbiased
        batch variance enters running_var, as in PyTorch
    num_batches_tracked : buffer, the number of training batches seen

    Shape
    -----
    - Input: (N, C) or (N, C, L)
    - Output: the input's shape

    Notes
    -----
    Training normalises with the batch's mean and (biased) variance; ``eval()`` with the running
    ones. The cache is x̂ and 1/σ; backward, with dx̂ = dy·γ and m values per feature:
    ``dx = (1/σ)/m·(m·dx̂ - Σdx̂ - x̂·Σ(dx̂·x̂))``, ``dγ = Σ dy·x̂``, ``dβ = Σ dy``.

    Examples
    --------
    >>> import gradbox as gb, numpy as np
    >>> bn = gb.nn.BatchNorm1d(3)
    >>> bn(np.random.default_rng(0).normal(size=(8, 3)).astype(np.float32)).shape, bn.running_mean.shape
    ((8, 3), (3,))
    """

    ranks = (2, 3)
    layout = "(N, {C}) or (N, {C}, L)"


class BatchNorm2d(_BatchNorm):
    """Batch normalisation of (N, C, H, W) per channel: ``y = γ·(x - μ)/sqrt(var + eps) + β``.

    Statistics are over the batch and every pixel (N·H·W values per channel). Parameters,
    attributes and formulas are ``BatchNorm1d``'s.

    Shape
    -----
    - Input: (N, C, H, W)
    - Output: the input's shape

    Examples
    --------
    >>> import gradbox as gb, numpy as np
    >>> bn = gb.nn.BatchNorm2d(2)
    >>> y = bn(np.random.default_rng(0).normal(size=(4, 2, 3, 3)).astype(np.float32))
    >>> y.shape, bn.eval().training
    ((4, 2, 3, 3), False)
    """

    ranks = (4,)
    layout = "(N, {C}, H, W)"
