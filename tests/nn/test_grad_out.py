"""``Parameter._grad_out``: a linear layer's backward computes the gradient into a given array (what
``gradbox.distributed`` uses to skip copying it into the buffer it exchanges), with the same result."""
import numpy as np
import pytest

import gradbox as gb
from gradbox import nn


def _grads(model, x, y, arm, twice=False):
    loss_fn = nn.CrossEntropyLoss()
    bufs = []
    if arm:
        for p in model.parameters():
            p._grad_out = np.full(p.shape, np.nan, p.dtype)  # NOTE: NaN: any place not written shows
            bufs.append(p._grad_out)
    out = model(gb.Tensor(x))
    if twice:  # every layer used a second time, on other inputs: each gradient is a sum of two
        out = out + model(gb.Tensor(x[::-1].copy()))
    loss_fn(out, y).backward()
    return [p.grad.copy() for p in model.parameters()], bufs


@pytest.mark.parametrize("twice", [False, True])
def test_gradients_computed_into_the_given_arrays_are_the_same(twice):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(16, 5)), rng.integers(0, 3, 16)
    model = nn.Sequential(nn.Linear(5, 5, dtype=np.float64, rng=1), nn.ReLU(), nn.Linear(5, 3, dtype=np.float64, rng=2))
    ref, _ = _grads(model, x, y, arm=False, twice=twice)
    model.zero_grad()
    got, bufs = _grads(model, x, y, arm=True, twice=twice)
    for r, g in zip(ref, got):
        np.testing.assert_allclose(g, r, rtol=1e-14, atol=1e-15)
    params = list(model.parameters())
    # each parameter's gradient is its array unless the parameter was used twice (then a new array, the
    # array holding one of the two terms), and the array is used once: the next backward allocates
    assert all(p._grad_out is None for p in params)
    for p, buf in zip(params, bufs):
        assert (p.grad is buf) is not twice


def test_an_existing_gradient_is_accumulated_not_overwritten():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(8, 4)), rng.integers(0, 2, 8)
    lin = nn.Linear(4, 2, dtype=np.float64, rng=0)
    nn.CrossEntropyLoss()(lin(gb.Tensor(x)), y).backward()
    first = lin.weight.grad.copy()
    buf = np.zeros_like(lin.weight.data)
    lin.weight._grad_out = buf
    nn.CrossEntropyLoss()(lin(gb.Tensor(x)), y).backward()  # NOTE: grad is not None: accumulates, buf unused
    np.testing.assert_allclose(lin.weight.grad, 2 * first, rtol=1e-14)
    assert lin.weight._grad_out is buf and not buf.any()
