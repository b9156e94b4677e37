"""nn.functional.affine, the linear box's forward: float32 X·Wᵀ with 2-64 rows into at least 64 outputs runs as
W·Xᵀ (OpenBLAS's sgemm is slow at the first layout there), unless the product is one of at most 262,144 m·k·n. The same values to rounding, a C-contiguous (m, out)
result of the input's dtype, and the documented rule: which product ran shows in the bits."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gradbox.nn import functional as F

threadpoolctl = pytest.importorskip("threadpoolctl")


def operands(rng, m, i, o, dtype, bias):
    x = rng.standard_normal((m, i)).astype(dtype)
    w = rng.standard_normal((o, i)).astype(dtype)
    b = {"none": None, "1-D": rng.standard_normal(o), "2-D": rng.standard_normal((1, o))}[bias]
    return x, w, None if b is None else b.astype(dtype)


@settings(max_examples=80, deadline=None)
@given(m=st.one_of(st.integers(2, 64), st.integers(1, 130)), i=st.integers(1, 300),
       o=st.one_of(st.integers(64, 200), st.integers(1, 200)),
       dtype=st.sampled_from([np.float32, np.float64]), bias=st.sampled_from(["none", "1-D", "2-D"]),
       seed=st.integers(0, 2**31 - 1))
def test_affine_equals_x_wt_plus_b_to_rounding(m, i, o, dtype, bias, seed):
    x, w, b = operands(np.random.default_rng(seed), m, i, o, dtype, bias)
    got = F.affine(x, w, b)
    assert got.shape == (m, o) and got.dtype == dtype and got.flags.c_contiguous
    x64, w64 = x.astype(np.float64), w.astype(np.float64)
    want = x64 @ w64.T + (0 if b is None else b.astype(np.float64))
    # NOTE: the k-term dot product's bound, k·eps·(|x||w|ᵀ), and one rounding more for the bias
    eps = np.finfo(dtype).eps
    bound = i * eps * (np.abs(x64) @ np.abs(w64).T) + eps * np.abs(want)
    assert np.all(np.abs(got - want) <= bound)


@pytest.mark.parametrize("m,i,o,dtype,as_wxt", [
    (32, 784, 256, np.float32, True),    # the MLP's first layer at batch 32
    (2, 4096, 64, np.float32, True),     # the smallest batch and output the rule takes
    (8, 100, 64, np.float32, False),     # a product OpenBLAS runs on one thread anyway (m·k·n <= 262,144)
    (64, 4096, 128, np.float32, True),   # the CIFAR-shaped net's dense layer at batch 64
    (32, 400, 120, np.float32, True),    # LeNet's
    (1, 784, 256, np.float32, False),    # one sample: the latency path
    (65, 784, 256, np.float32, False),   # past the batch limit
    (32, 84, 10, np.float32, False),     # too few outputs
    (32, 784, 63, np.float32, False),
    (32, 784, 256, np.float64, False),   # float64 gains nothing
])
@pytest.mark.parametrize("bias", [True, False])
def test_the_product_runs_as_the_rule_says(m, i, o, dtype, as_wxt, bias):
    x, w, b = operands(np.random.default_rng(m + i + o), m, i, o, dtype, "1-D" if bias else "none")
    # NOTE: on one BLAS thread, so that each product's bits depend on its layout only
    with threadpoolctl.threadpool_limits(1, user_api="blas"):
        got = F.affine(x, w, b)
        want = np.dot(w, x.T).T if as_wxt else x.dot(w.T)
        want = want + b if bias else want
    np.testing.assert_array_equal(got, want)


def test_a_linear_layer_trains_the_same_either_way():
    """Float32 steps of a small MLP at batch 32 (W·Xᵀ) against the same in float64 (X·Wᵀ): the float32 run
    follows the float64 one to float32's precision."""
    import gradbox as gb
    from gradbox import nn

    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((32, 100)), rng.integers(0, 10, 32)
    runs = {}
    for dtype in (np.float32, np.float64):
        model = nn.Sequential(nn.Linear(100, 64, rng=0, dtype=dtype), nn.ReLU(), nn.Linear(64, 10, rng=1, dtype=dtype))
        opt = gb.optim.SGD(model.parameters(), lr=0.1)
        for _ in range(5):
            opt.zero_grad()
            loss = nn.CrossEntropyLoss()(model(X.astype(dtype)), y)
            loss.backward()
            opt.step()
        runs[dtype] = [p.data.astype(np.float64) for p in model.parameters()]
    for a, b in zip(runs[np.float32], runs[np.float64]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("xd,wd,bd", [(np.float32, np.float64, np.float32), (np.float64, np.float32, None),
                                      (np.float32, np.float16, None), (np.float32, np.float32, np.float64)])
def test_mixed_dtypes_keep_numpys_result_type(xd, wd, bd):
    """The functional form takes any float tensors: a float32 batch with a float64 weight is NumPy's product
    (float64), as before the W·Xᵀ rule (which is for float32 with float32 only)."""
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((32, 784)).astype(xd), rng.standard_normal((256, 784)).astype(wd)
    b = None if bd is None else rng.standard_normal(256).astype(bd)
    got = F.affine(x, w, b)
    want = x.dot(w.T)
    if b is not None:
        want += b
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-3)
