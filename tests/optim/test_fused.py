"""The fused (numba) optimizer updates give exactly the NumPy path's results, and fall back cleanly."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gradbox as gb
from gradbox import optim

CONFIGS = [
    (optim.SGD, dict(lr=0.1)),
    (optim.SGD, dict(lr=0.1, weight_decay=0.01)),
    (optim.SGD, dict(lr=0.05, momentum=0.9)),
    (optim.SGD, dict(lr=0.05, momentum=0.5, weight_decay=0.1)),
    (optim.SGD, dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.1)),
    (optim.RMSprop, dict(lr=0.01)),
    (optim.RMSprop, dict(lr=0.01, alpha=0.9, weight_decay=0.1)),
    (optim.Adam, dict(lr=0.01)),
    (optim.Adam, dict(lr=0.01, betas=(0.8, 0.99), weight_decay=0.1)),
    (optim.AdamW, dict(lr=0.01)),
    (optim.AdamW, dict(lr=0.1, weight_decay=0.5)),
]
IDS = [f"{cls.__name__}-{'-'.join(f'{k}={v}' for k, v in kw.items())}" for cls, kw in CONFIGS]
shapes = st.lists(st.lists(st.integers(1, 6), min_size=0, max_size=3).map(tuple), min_size=1, max_size=4)


def trajectory(cls, kwargs, dtype, fused, shape_list, seed, steps=5):
    """Parameters and optimizer state after ``steps`` updates with random gradients."""
    rng = np.random.default_rng(seed)
    params = [gb.nn.Parameter(rng.standard_normal(s).astype(dtype)) for s in shape_list]
    opt = cls(params, fused=fused, **kwargs)
    for _ in range(steps):
        for p in params:
            p.grad = (rng.standard_normal(p.shape) * 10.0 ** rng.integers(-3, 3)).astype(dtype)
        opt.step()
    return opt, [p.data for p in params], opt.state_dict()["state"]


def assert_same(a, b):
    _, wa, sa = a
    _, wb, sb = b
    for x, y in zip(wa, wb):
        assert x.dtype == y.dtype and np.array_equal(x, y), np.max(np.abs(x - y))
    assert sa.keys() == sb.keys()
    for k in sa:
        assert np.array_equal(sa[k], sb[k]), k


needs_numba = pytest.mark.skipif(
    optim._fused_kernels() is None, reason="the fused updates need numba (pip install 'gradbox[fast]')"
)


@needs_numba
@pytest.mark.parametrize("cls, kwargs", CONFIGS, ids=IDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@settings(max_examples=8)
@given(shape_list=shapes, seed=st.integers(0, 2**16))
def test_fused_is_bit_identical_to_numpy(cls, kwargs, dtype, shape_list, seed):
    fused = trajectory(cls, kwargs, dtype, True, shape_list, seed)
    plain = trajectory(cls, kwargs, dtype, False, shape_list, seed)
    assert fused[0].fused and not plain[0].fused
    assert_same(fused, plain)


@needs_numba
@pytest.mark.parametrize("cls, kwargs", CONFIGS, ids=IDS)
def test_fused_is_bit_identical_on_layer_sized_arrays(cls, kwargs):
    # NOTE: the kernels' loops are vectorised; long arrays run the SIMD body, short ones mostly its tail
    shape_list = [(256, 784), (256,), (10, 129)]
    assert_same(trajectory(cls, kwargs, np.float32, True, shape_list, 7, steps=3),
                trajectory(cls, kwargs, np.float32, False, shape_list, 7, steps=3))


@needs_numba
def test_fusing_is_opt_in_as_in_pytorch():
    assert optim.SGD([gb.nn.Parameter([1.0])]).fused is False
    assert optim.Adam([gb.nn.Parameter([1.0])], fused=False).fused is False
    assert optim.AdamW([gb.nn.Parameter([1.0])], fused=True).fused is True


@needs_numba
def test_a_training_run_is_the_same_with_and_without_fusion():
    def train(fused):
        gb.manual_seed(0)
        model = gb.nn.Sequential(gb.nn.Linear(4, 8), gb.nn.ReLU(), gb.nn.Linear(8, 3))
        opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9, fused=fused)
        rng = np.random.default_rng(0)
        x, y = rng.standard_normal((32, 4)).astype(np.float32), rng.integers(0, 3, 32)
        for _ in range(20):
            loss = gb.nn.CrossEntropyLoss()(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        return [p.data.copy() for p in model.parameters()]

    for a, b in zip(train(True), train(False)):
        assert np.array_equal(a, b)


@needs_numba
@pytest.mark.parametrize("layout", ["fortran", "strided", "float16", "grad dtype", "read-only"])
def test_arrays_the_kernels_do_not_take_fall_back_to_numpy(layout):
    rng = np.random.default_rng(3)
    base = rng.standard_normal((6, 4)).astype(np.float32)
    grads = [rng.standard_normal((6, 4)).astype(np.float32) for _ in range(3)]
    results = []
    for fused in (True, False):
        p = gb.nn.Parameter(base.copy())
        if layout == "fortran":
            p.data = np.asfortranarray(p.data)
        elif layout == "strided":
            p.data = np.repeat(p.data, 2, axis=1)[:, ::2]
        elif layout == "float16":
            p.data = p.data.astype(np.float16)
        opt = optim.Adam([p], lr=0.1, fused=fused)
        for g in grads:
            p.grad = g.astype(np.float64) if layout == "grad dtype" else g.astype(p.data.dtype)
            if layout == "read-only":
                p.data.flags.writeable = False
                with pytest.raises(ValueError, match="read-only"):
                    opt.step()
                break
            opt.step()
        results.append(p.data)
    assert results[0].dtype == results[1].dtype and np.array_equal(results[0], results[1])


@needs_numba
def test_state_moves_between_fused_and_numpy_optimizers():
    a = trajectory(optim.SGD, dict(lr=0.1, momentum=0.9), np.float32, True, [(3, 2)], 0, steps=3)
    b = trajectory(optim.SGD, dict(lr=0.1, momentum=0.9), np.float32, False, [(3, 2)], 0, steps=3)
    opt_a, opt_b = a[0], b[0]
    opt_b.load_state_dict(opt_a.state_dict())
    g = np.ones((3, 2), np.float32)
    for opt in (opt_a, opt_b):
        opt.params[0].grad = g
        opt.step()
    assert np.array_equal(opt_a.params[0].data, opt_b.params[0].data)


@pytest.mark.parametrize("error", [ImportError("No module named 'numba'"), RuntimeError("cannot cache function")])
def test_without_a_working_numba_fused_true_says_why_and_the_default_works(monkeypatch, error):
    def broken():
        raise error

    monkeypatch.setattr(optim.optimizer, "_KERNELS", None)
    monkeypatch.setattr(optim.optimizer, "_load_kernels", broken)
    assert optim.Adam([gb.nn.Parameter([1.0])]).fused is False
    with pytest.raises(ImportError, match=r"SGD\(fused=True\): expected a working numba \(pip install "
                                          r"\"gradbox\[fast\]\"\), received " + type(error).__name__):
        optim.SGD([gb.nn.Parameter([1.0])], fused=True)
    p = gb.nn.Parameter([1.0])
    p.grad = np.array([0.5], np.float32)
    optim.SGD([p], lr=0.1).step()
    assert p.data[0] == np.float32(1.0) - np.float32(0.1) * np.float32(0.5)


@needs_numba
def test_numba_without_jit_is_not_used(monkeypatch):
    import numba

    monkeypatch.setattr(optim.optimizer, "_KERNELS", None)
    monkeypatch.setattr(numba.config, "DISABLE_JIT", True)
    with pytest.raises(ImportError, match="NUMBA_DISABLE_JIT"):
        optim.SGD([gb.nn.Parameter([1.0])], fused=True)


def test_fused_must_be_a_bool_or_none():
    with pytest.raises(TypeError, match=r"SGD\(fused\): expected True, False or None, received 'yes'"):
        optim.SGD([gb.nn.Parameter([1.0])], fused="yes")
