"""Weight initialisers. Weights never start at zero.

With identical weights every hidden unit of a layer computes the same function
and receives the same gradient, so they stay identical forever (the notes'
symmetry problem). Random scales keep the variance of activations stable:
He for ReLU-like units, Xavier/Glorot for tanh and sigmoid.
"""
from __future__ import annotations

import math

from .._validation import check, one_of, positive_float
from ..random import resolve_rng
from ..tensor import Tensor


def _fans(tensor: Tensor):
    """(fan_in, fan_out) as PyTorch computes them, for a weight of any rank >= 2.

    A weight (out, in, *kernel) -- Linear's (out, in), a convolution's (out, in, kh, kw) --
    has fan_in = in·prod(kernel) and fan_out = out·prod(kernel): the number of inputs that
    feed one output unit, and of outputs that one input unit feeds.
    """
    shape = tensor.shape
    if len(shape) < 2 or 0 in shape:
        raise ValueError(f"init: expected a non-empty weight of shape (out, in, *kernel), received shape {shape}")
    receptive = math.prod(shape[2:])
    return shape[1] * receptive, shape[0] * receptive


def _fill(tensor, sample):
    tensor.data[...] = sample.astype(tensor.dtype, copy=False)
    return tensor


def he_normal_(tensor: Tensor, rng=None) -> Tensor:
    """Fill with N(0, 2/fan_in) (He et al., 2015), in place."""
    fan_in, _ = _fans(tensor)
    return _fill(tensor, resolve_rng(rng).normal(0.0, math.sqrt(2.0 / fan_in), tensor.shape))


def he_uniform_(tensor: Tensor, rng=None) -> Tensor:
    """Fill with U(-b, b), b = sqrt(6/fan_in), in place."""
    fan_in, _ = _fans(tensor)
    bound = math.sqrt(6.0 / fan_in)
    return _fill(tensor, resolve_rng(rng).uniform(-bound, bound, tensor.shape))


def xavier_normal_(tensor: Tensor, rng=None) -> Tensor:
    """Fill with N(0, 2/(fan_in + fan_out)) (Glorot and Bengio, 2010), in place."""
    fan_in, fan_out = _fans(tensor)
    return _fill(tensor, resolve_rng(rng).normal(0.0, math.sqrt(2.0 / (fan_in + fan_out)), tensor.shape))


def xavier_uniform_(tensor: Tensor, rng=None) -> Tensor:
    """Fill with U(-b, b), b = sqrt(6/(fan_in + fan_out)), in place."""
    fan_in, fan_out = _fans(tensor)
    bound = math.sqrt(6.0 / (fan_in + fan_out))
    return _fill(tensor, resolve_rng(rng).uniform(-bound, bound, tensor.shape))


def normal_(tensor: Tensor, std: float = 0.01, rng=None) -> Tensor:
    """Fill with N(0, std^2): the notes' ``np.random.randn(...) * 0.01``."""
    std = check("normal_", "std", std, positive_float)
    return _fill(tensor, resolve_rng(rng).normal(0.0, std, tensor.shape))


INITIALIZERS = {
    "he_normal": he_normal_,
    "he_uniform": he_uniform_,
    "xavier_normal": xavier_normal_,
    "xavier_uniform": xavier_uniform_,
    "normal": normal_,
}


def get_initializer(name: str):
    return INITIALIZERS[check("init", "name", name, one_of(*sorted(INITIALIZERS)))]
