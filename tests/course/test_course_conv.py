"""gradbox.course, course 4 week 1 ("Convolutional Neural Networks: Step by Step"): the notebook's
published expected outputs, and agreement with the engine's layers (NHWC <-> NCHW) to 1e-12."""
import numpy as np
import pytest

from gradbox import Tensor, course, nn
from gradbox.nn import functional as F


def close(actual, published, digits):
    """The notebook prints 12 significant digits (v2) or full precision (v3)."""
    np.testing.assert_allclose(actual, published, rtol=10.0 ** -digits, atol=10.0 ** -digits)


def test_zero_pad():
    np.random.seed(1)
    x = np.random.randn(4, 3, 3, 2)
    x_pad = course.zero_pad(x, 2)
    assert x_pad.shape == (4, 7, 7, 2)
    np.testing.assert_array_equal(x_pad[1, 1], np.zeros((7, 2)))
    np.testing.assert_array_equal(x_pad[:, 2:5, 2:5, :], x)
    close(x[1, 1], [[0.90085595, -0.68372786], [-0.12289023, -0.93576943], [-0.26788808, 0.53035547]], 8)


def test_conv_single_step():
    np.random.seed(1)
    a_slice_prev = np.random.randn(4, 4, 3)
    W = np.random.randn(4, 4, 3)
    b = np.random.randn(1, 1, 1)
    close(course.conv_single_step(a_slice_prev, W, b), -6.999089450680221, 13)


@pytest.fixture
def conv_v2():
    """The v2 notebook's conv_forward test case: A_prev (10, 4, 4, 3), W (2, 2, 3, 8), pad 2, stride 2."""
    np.random.seed(1)
    A_prev = np.random.randn(10, 4, 4, 3)
    W = np.random.randn(2, 2, 3, 8)
    b = np.random.randn(1, 1, 1, 8)
    return course.conv_forward(A_prev, W, b, {"pad": 2, "stride": 2})


def test_conv_forward_v2(conv_v2):
    Z, cache_conv = conv_v2
    close(np.mean(Z), 0.0489952035289, 12)
    close(Z[3, 2, 1], [-0.61490741, -6.7439236, -2.55153897, 1.75698377, 3.56208902, 0.53036437, 5.18531798,
                       8.75898442], 8)
    close(cache_conv[0][1][2][3], [-0.20075807, 0.18656139, 0.41005165], 8)


def test_conv_forward_v3():
    """The v3 notebook: A_prev (10, 5, 7, 4), W (3, 3, 4, 8), pad 1, stride 2."""
    np.random.seed(1)
    A_prev = np.random.randn(10, 5, 7, 4)
    W = np.random.randn(3, 3, 4, 8)
    b = np.random.randn(1, 1, 1, 8)
    Z, cache_conv = course.conv_forward(A_prev, W, b, {"pad": 1, "stride": 2})
    assert Z.shape == (10, 3, 4, 8)
    close(np.mean(Z), 0.6923608807576933, 13)
    close(Z[3, 2, 1], [-1.28912231, 2.27650251, 6.61941931, 0.95527176, 8.25132576, 2.31329639, 13.00689405,
                       2.34576051], 8)
    close(cache_conv[0][1][2][3], [-1.1191154, 1.9560789, -0.3264995, -1.34267579], 8)


def test_conv_backward(conv_v2):
    Z, cache_conv = conv_v2
    np.random.seed(1)
    dA, dW, db = course.conv_backward(Z, cache_conv)
    close(np.mean(dA), 1.45243777754, 11)
    close(np.mean(dW), 1.72699145831, 11)
    close(np.mean(db), 7.83923256462, 11)


def test_pool_forward():
    np.random.seed(1)
    A_prev = np.random.randn(2, 4, 4, 3)
    hparameters = {"stride": 2, "f": 3}
    A, _ = course.pool_forward(A_prev, hparameters)
    close(A, [[[[1.74481176, 0.86540763, 1.13376944]]], [[[1.13162939, 1.51981682, 2.18557541]]]], 8)
    A, _ = course.pool_forward(A_prev, hparameters, mode="average")
    close(A, [[[[0.02105773, -0.20328806, -0.40389855]]], [[[-0.22154621, 0.51716526, 0.48155844]]]], 8)


def test_create_mask_from_window():
    np.random.seed(1)
    x = np.random.randn(2, 3)
    np.testing.assert_array_equal(course.create_mask_from_window(x), [[True, False, False], [False, False, False]])


def test_distribute_value():
    np.testing.assert_array_equal(course.distribute_value(2, (2, 2)), [[0.5, 0.5], [0.5, 0.5]])


@pytest.mark.parametrize("shape", [(2,), (2, 2, 2), (0, 2), (2, -1), (2.0, 2), "22", None, (True, 2)])
def test_distribute_value_names_a_bad_shape(shape):
    with pytest.raises(ValueError, match=r"distribute_value: expected shape a pair of positive ints \(n_H, n_W\), "
                                         r"received "):
        course.distribute_value(2, shape)


def test_pool_backward():
    np.random.seed(1)
    A_prev = np.random.randn(5, 5, 3, 2)
    A, cache = course.pool_forward(A_prev, {"stride": 1, "f": 2})
    dA = np.random.randn(5, 4, 2, 2)
    close(np.mean(dA), 0.145713902729, 12)
    close(course.pool_backward(dA, cache, mode="max")[1, 1], [[0.0, 0.0], [5.05844394, -1.68282702], [0.0, 0.0]], 8)
    close(course.pool_backward(dA, cache, mode="average")[1, 1],
          [[0.08485462, 0.2787552], [1.26461098, -0.25749373], [1.17975636, -0.53624893]], 8)


def test_conv_backward_without_padding():
    """pad = 0 works (the notebook's ``[pad:-pad]`` would return an empty array)."""
    rng = np.random.default_rng(0)
    Z, cache = course.conv_forward(rng.normal(size=(2, 5, 5, 1)), rng.normal(size=(3, 3, 1, 2)),
                                   rng.normal(size=(1, 1, 1, 2)), {"pad": 0, "stride": 1})
    dA, _, _ = course.conv_backward(np.ones_like(Z), cache)
    assert dA.shape == (2, 5, 5, 1) and np.abs(dA).sum() > 0


# --- the engine computes the same numbers in NCHW ------------------------------------------------------
def nchw(a):
    return np.ascontiguousarray(a.transpose(0, 3, 1, 2))


def nhwc(a):
    return a.transpose(0, 2, 3, 1)


@pytest.mark.parametrize("seed", range(12))
def test_conv_agrees_with_engine(seed):
    rng = np.random.default_rng(seed)
    f, stride, pad = int(rng.integers(1, 5)), int(rng.integers(1, 4)), int(rng.integers(0, 3))
    m, c_prev, c = int(rng.integers(1, 4)), int(rng.integers(1, 4)), int(rng.integers(1, 5))
    h, w = int(max(f - 2 * pad, 1) + rng.integers(0, 5)), int(max(f - 2 * pad, 1) + rng.integers(0, 5))
    A_prev, W, b = rng.normal(size=(m, h, w, c_prev)), rng.normal(size=(f, f, c_prev, c)), rng.normal(size=(1, 1, 1, c))
    Z, cache = course.conv_forward(A_prev, W, b, {"pad": pad, "stride": stride})
    dZ = rng.normal(size=Z.shape)
    dA, dW, db = course.conv_backward(dZ, cache)

    conv = nn.Conv2d(c_prev, c, f, stride=stride, padding=pad, dtype=np.float64, rng=0)
    conv.weight.data[...] = W.transpose(3, 2, 0, 1)  # (f, f, n_C_prev, n_C) -> (out, in, kh, kw)
    conv.bias.data[...] = b.reshape(-1)
    x = Tensor(nchw(A_prev), requires_grad=True)
    out = conv(x)
    out.backward(nchw(dZ))
    np.testing.assert_allclose(nhwc(out.data), Z, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(nhwc(x.grad), dA, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(conv.weight.grad.transpose(2, 3, 1, 0), dW, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(conv.bias.grad, db.reshape(-1), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("mode", ["max", "average"])
def test_pool_agrees_with_engine(seed, mode):
    rng = np.random.default_rng(100 + seed)
    f, stride = int(rng.integers(1, 4)), int(rng.integers(1, 4))
    m, c, h, w = int(rng.integers(1, 4)), int(rng.integers(1, 4)), int(f + rng.integers(0, 5)), int(f + rng.integers(0, 5))
    A_prev = rng.permutation(m * h * w * c).reshape(m, h, w, c) * 0.1  # distinct: one maximum per window
    A, cache = course.pool_forward(A_prev, {"f": f, "stride": stride}, mode=mode)
    dA = rng.normal(size=A.shape)
    dA_prev = course.pool_backward(dA, cache, mode=mode)
    pool = (F.max_pool2d if mode == "max" else F.avg_pool2d)
    x = Tensor(nchw(A_prev), requires_grad=True)
    out = pool(x, f, stride)
    out.backward(nchw(dA))
    np.testing.assert_allclose(nhwc(out.data), A, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(nhwc(x.grad), dA_prev, rtol=1e-12, atol=1e-12)


def test_course_errors():
    with pytest.raises(ValueError, match=r"conv_forward: expected A_prev of shape \(m, n_H, n_W, n_C\)"):
        course.conv_forward(np.zeros((4, 4, 3)), np.zeros((2, 2, 3, 1)), np.zeros((1, 1, 1, 1)), {"pad": 0, "stride": 1})
    with pytest.raises(ValueError, match=r"conv_forward: expected hparameters with key 'pad'"):
        course.conv_forward(np.zeros((1, 4, 4, 3)), np.zeros((2, 2, 3, 1)), np.zeros((1, 1, 1, 1)), {"stride": 1})
    with pytest.raises(ValueError, match=r"expected W of shape \(f, f, 3, n_C\)"):
        course.conv_forward(np.zeros((1, 4, 4, 3)), np.zeros((2, 2, 2, 1)), np.zeros((1, 1, 1, 1)), {"pad": 0, "stride": 1})
    with pytest.raises(ValueError, match=r"pool_forward: expected mode"):
        course.pool_forward(np.zeros((1, 4, 4, 3)), {"f": 2, "stride": 2}, mode="min")
