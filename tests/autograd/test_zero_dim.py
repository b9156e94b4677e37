"""issue 14 item 14: results of ops on 0-d tensors are 0-d arrays, never NumPy scalars; so are 0-d gradients."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gradbox as gb
from gradbox import Tensor, nn

OPS = {
    "add": lambda x: x + x, "sub": lambda x: x - 1.0, "rsub": lambda x: 1.0 - x, "mul": lambda x: x * x,
    "div": lambda x: x / 3.0, "rdiv": lambda x: 2.0 / x, "neg": lambda x: -x, "pow": lambda x: x**2,
    "rpow": lambda x: 2.0**x, "tpow": lambda x: x**x, "exp": gb.exp, "log": gb.log, "relu": gb.relu,
    "tanh": gb.tanh, "sigmoid": gb.sigmoid, "mean": gb.mean, "sum": gb.sum, "max": gb.max, "min": gb.min,
    "abs": gb.abs, "sin": gb.sin, "cos": gb.cos, "clip": lambda x: gb.clip(x, 0.1, 5.0),
    "maximum": lambda x: gb.maximum(x, 1.0), "leaky_relu": gb.leaky_relu, "log_sigmoid": gb.log_sigmoid,
    "index": lambda x: gb.reshape(x, (1,))[0], "reshape": lambda x: gb.reshape(x, ()),
    "broadcast_to": lambda x: gb.broadcast_to(x, ()), "sum_to": lambda x: gb.sum_to(x, ()),
    "dot": lambda x: gb.matmul(gb.broadcast_to(x, (3,)), gb.broadcast_to(x, (3,))),
}


@pytest.mark.parametrize("name", sorted(OPS))
@settings(max_examples=15)
@given(value=st.floats(0.05, 4.0), dtype=st.sampled_from([np.float32, np.float64]))
def test_results_and_gradients_of_0d_tensors_are_0d_arrays(name, value, dtype):
    x = Tensor(np.array(value, dtype=dtype), requires_grad=True)
    y = OPS[name](x)
    assert type(y.data) is np.ndarray and y.shape == () and y.dtype == dtype, type(y.data)
    y.data[...] = y.data  # writing into .data works (it failed on a NumPy scalar)
    y = OPS[name](x)
    y.backward()
    assert type(x.grad) is np.ndarray and x.grad.shape == () and x.grad.dtype == dtype, type(x.grad)
    y2 = OPS[name](x)
    y2.backward()  # accumulation keeps the array too
    assert type(x.grad) is np.ndarray and x.grad.shape == ()


def test_negative_control_pow_of_0d():
    y = Tensor(np.array(2.0)) ** 2
    assert isinstance(y.data, np.ndarray) and y.data.shape == ()
    y.data[...] = 5.0
    assert y.item() == 5.0


def test_1d_at_1d_is_a_0d_array():
    a = Tensor(np.arange(3.0), requires_grad=True)
    y = a @ a
    assert type(y.data) is np.ndarray and y.shape == ()
    y.backward()
    assert a.grad.tolist() == [0.0, 2.0, 4.0]


def test_0d_parameter_grad_is_a_0d_array():
    p = nn.Parameter(np.array(1.5))
    (p * p).backward()
    assert type(p.grad) is np.ndarray and p.grad.shape == ()
    p.grad = None
    p.backward(np.float64(2.0))  # a leaf seeded directly
    assert type(p.grad) is np.ndarray and p.grad.shape == ()
    p.backward(np.float64(1.0))
    assert type(p.grad) is np.ndarray and float(p.grad) == 3.0
    gb.optim.SGD([p], lr=0.1).step()  # an optimizer writes into the 0-d data in place
    assert type(p.data) is np.ndarray and p.data.shape == ()


def test_retained_0d_grad_is_an_array():
    x = Tensor(np.array(2.0), requires_grad=True)
    h = x * 3.0
    h.retain_grad()
    (h * h).backward()
    assert type(h.grad) is np.ndarray and h.grad.shape == ()
