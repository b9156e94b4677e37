"""issue 12 property 6: ops ask ``backend.get_array_module`` for the module that owns their arrays.

A test double stands in for CuPy: a module registered as ``sys.modules['cupy']`` whose
``ndarray`` is a NumPy subclass and whose functions record their calls. Tensors holding such
arrays must be computed by that module (forward and backward), NumPy arrays by NumPy.
"""
import sys
import types

import numpy as np
import pytest

import gradbox as gb
from gradbox import Tensor
from gradbox.backend import get_array_module


class FakeArray(np.ndarray):
    pass


def _wrap(value):
    return value.view(FakeArray) if isinstance(value, np.ndarray) and not isinstance(value, FakeArray) else value


class _Recorded:
    """A NumPy callable (function or ufunc) that records its name and returns FakeArrays."""

    def __init__(self, module, name, target):
        self._module, self._name, self._target = module, name, target

    def __call__(self, *args, **kwargs):
        self._module.calls.append(self._name)
        return _wrap(self._target(*args, **kwargs))

    def __getattr__(self, attr):  # ufunc methods: add.at
        return _Recorded(self._module, f"{self._name}.{attr}", getattr(self._target, attr))


class FakeCupy(types.ModuleType):
    def __init__(self):
        super().__init__("cupy")
        self.ndarray = FakeArray
        self.calls = []

    def __getattr__(self, name):
        return _Recorded(self, name, getattr(np, name))


@pytest.fixture
def fake_cupy(monkeypatch):
    fake = FakeCupy()
    monkeypatch.setitem(sys.modules, "cupy", fake)
    return fake


def fake(a):
    return np.asarray(a, dtype=np.float64).view(FakeArray)


def test_get_array_module_picks_the_registered_module(fake_cupy):
    assert get_array_module(np.zeros(2)) is np
    assert get_array_module(fake([1.0])) is fake_cupy
    assert get_array_module(np.zeros(2), Tensor(fake([1.0]))) is fake_cupy  # tensors are looked into


def test_get_array_module_without_cupy_is_numpy(monkeypatch):
    monkeypatch.delitem(sys.modules, "cupy", raising=False)
    assert get_array_module(np.zeros(2), 3.0) is np


def test_ops_on_foreign_arrays_are_dispatched_to_their_module(fake_cupy):
    x = Tensor(fake([[0.5, -1.0, 2.0], [1.5, 0.2, -0.3]]), requires_grad=True)
    y = (gb.exp(x) + gb.sin(x) * gb.cos(x) + gb.abs(x) + gb.relu(x) + gb.tanh(x) + gb.sigmoid(x)
         + gb.log_softmax(x) + gb.clip(x, -0.5, 0.5))
    z = (y[0] * 2.0).sum() + gb.log(gb.abs(x) + 1.0).sum() + gb.max(x) + gb.min(x, axis=1).sum()
    assert isinstance(z.data, FakeArray)
    for name in ("exp", "sin", "cos", "abs", "maximum", "tanh", "log", "clip", "where"):
        assert name in fake_cupy.calls, name
    fake_cupy.calls.clear()
    z.backward()
    assert isinstance(x.grad, FakeArray)
    # backward allocates and scatters with the array's own module, not with NumPy
    for name in ("zeros", "add.at", "broadcast_to", "multiply", "sign", "expand_dims"):
        assert name in fake_cupy.calls, name
    # and the values are NumPy's: the same computation on plain arrays gives the same gradient
    xn = Tensor(np.asarray(x.data).view(np.ndarray).copy(), requires_grad=True)
    yn = (gb.exp(xn) + gb.sin(xn) * gb.cos(xn) + gb.abs(xn) + gb.relu(xn) + gb.tanh(xn) + gb.sigmoid(xn)
          + gb.log_softmax(xn) + gb.clip(xn, -0.5, 0.5))
    zn = (yn[0] * 2.0).sum() + gb.log(gb.abs(xn) + 1.0).sum() + gb.max(xn) + gb.min(xn, axis=1).sum()
    zn.backward()
    np.testing.assert_allclose(np.asarray(x.grad), xn.grad, rtol=1e-12)


def test_numpy_arrays_never_consult_the_foreign_module(fake_cupy):
    x = Tensor(np.array([[0.5, -1.0], [2.0, 0.1]]), requires_grad=True)
    (gb.exp(x)[0] + gb.relu(x).sum() + gb.sin(x).max()).sum().backward()
    assert fake_cupy.calls == []
    assert type(x.grad) is np.ndarray
