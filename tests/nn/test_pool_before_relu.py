"""Sequential runs a ReLU directly followed by a MaxPool2d after the pooling (``pool_before_relu``): the same
outputs and gradients as the order written, ties, all-negative windows, padding and overlapping windows
included; the swap happens only for exactly those two layers, and can be switched off."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gradbox as gb
from gradbox import Tensor, nn

from .test_conv import kernels  # noqa: F401 (the shared fixture: NumPy path and compiled kernels)


def _run(model, x, g, swap):
    """Output and input gradient of ``model`` on ``x`` with the cotangent ``g``, swapped or as written."""
    model.pool_before_relu = swap
    for p in model.parameters():
        p.grad = None
    X = Tensor(x, requires_grad=True)
    out = model(X)
    out.backward(g)
    return out.data, X.grad, [p.grad for p in model.parameters()]


def _assert_same(a, b):
    # NOTE: equal values; a zero may differ in sign (relu(-0) pooled vs pooled then relu'd), which == ignores
    np.testing.assert_array_equal(a, b)


windows = st.tuples(st.integers(1, 3), st.integers(1, 3)).flatmap(
    lambda k: st.tuples(st.just(k), st.tuples(st.integers(1, 3), st.integers(1, 3)),
                        st.tuples(st.integers(0, k[0] // 2), st.integers(0, k[1] // 2))))


@settings(max_examples=40, deadline=None)
@given(window=windows, n=st.integers(1, 3), c=st.integers(1, 3), h=st.integers(3, 9), w=st.integers(3, 9),
       seed=st.integers(0, 2**31 - 1), dtype=st.sampled_from([np.float32, np.float64]))
def test_swapped_relu_and_pool_give_the_written_order_s_values_and_gradients(window, n, c, h, w, seed, dtype):
    kernel, stride, padding = window
    rng = np.random.default_rng(seed)
    # small integers: many ties, exact zeros, whole windows of negatives
    x = rng.integers(-3, 4, size=(n, c, h, w)).astype(dtype)
    model = nn.Sequential(nn.ReLU(), nn.MaxPool2d(kernel, stride, padding))
    out = model(x)
    g = rng.integers(-2, 3, size=out.shape).astype(dtype)
    swapped, written = _run(model, x, g, True), _run(model, x, g, False)
    _assert_same(swapped[0], written[0])
    _assert_same(swapped[1], written[1])


@pytest.mark.parametrize("batch", [2, 48])  # 48: the chunked convolution on gradbox's threads
def test_cnn_with_swapped_blocks_equals_the_written_order(batch, kernels):
    rng = np.random.default_rng(batch)
    model = nn.Sequential(nn.Conv2d(2, 6, 3, padding=1, dtype=np.float64, rng=0), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Conv2d(6, 8, 3, dtype=np.float64, rng=1), nn.ReLU(), nn.MaxPool2d(3, 2, 1),
                          nn.Flatten(), nn.Linear(8 * 3 * 3, 5, dtype=np.float64, rng=2))
    x = rng.normal(size=(batch, 2, 14, 14))
    g = rng.normal(size=(batch, 5))
    swapped, written = _run(model, x, g, True), _run(model, x, g, False)
    _assert_same(swapped[0], written[0])
    _assert_same(swapped[1], written[1])
    for a, b in zip(swapped[2], written[2]):
        _assert_same(a, b)


def _box_names(t):
    """The boxes from the output back to the input, along first parents."""
    names = []
    while t._ctx is not None:
        names.append(t._ctx.name)
        t = t._ctx.parents[0]
    return names


def test_the_graph_shows_the_order_run_and_the_switch_restores_the_written_one():
    model = nn.Sequential(nn.Conv2d(1, 2, 3, rng=0), nn.ReLU(), nn.MaxPool2d(2))
    x = Tensor(np.ones((1, 1, 6, 6), np.float32))
    assert _box_names(model(x)) == ["ReLU", "MaxPool2dFunction", "Conv2dFunction"]
    model.pool_before_relu = False
    assert _box_names(model(x)) == ["MaxPool2dFunction", "ReLU", "Conv2dFunction"]
    model.pool_before_relu = True
    model.append(nn.ReLU()).append(nn.MaxPool2d(2))  # a module added later is part of the order
    assert _box_names(model(Tensor(np.ones((1, 1, 10, 10), np.float32)))) == [
        "ReLU", "MaxPool2dFunction", "ReLU", "MaxPool2dFunction", "Conv2dFunction"]


class MyReLU(nn.ReLU):
    pass


@pytest.mark.parametrize("layers", [
    [nn.ReLU(), nn.AvgPool2d(2)],          # averaging does not commute with ReLU
    [nn.Tanh(), nn.MaxPool2d(2)],          # only ReLU keeps the ties of a window as they were
    [MyReLU(), nn.MaxPool2d(2)],           # a subclass may compute something else
    [nn.MaxPool2d(2), nn.ReLU()],          # already in that order
], ids=["avg-pool", "tanh", "relu-subclass", "pool-first"])
def test_only_a_plain_relu_before_a_max_pool_is_swapped(layers):
    model = nn.Sequential(*layers)
    assert model._make_order() == tuple(layers)


def test_a_relu_with_its_own_forward_is_not_swapped():
    relu, pool = nn.ReLU(), nn.MaxPool2d(2)
    relu.forward = lambda x: gb.relu(x) * 2  # noqa: E731 (an instance's own forward)
    model = nn.Sequential(relu, pool)
    assert model._make_order() == (relu, pool)
    x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
    np.testing.assert_array_equal(model(x).data[0, 0], [[10, 14], [26, 30]])


def test_the_class_switch_turns_it_off_for_every_model(monkeypatch):
    model = nn.Sequential(nn.ReLU(), nn.MaxPool2d(2))
    x = Tensor(np.ones((1, 1, 4, 4), np.float32), requires_grad=True)
    assert _box_names(model(x)) == ["ReLU", "MaxPool2dFunction"]
    monkeypatch.setattr(nn.Sequential, "pool_before_relu", False)
    assert _box_names(model(x)) == ["MaxPool2dFunction", "ReLU"]
