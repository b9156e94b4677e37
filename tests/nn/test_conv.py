"""Conv2d, MaxPool2d, AvgPool2d and BatchNorm: float64 gradient checks on >= 20 random configurations,
bad-input errors, and the layers' configs.

Configurations draw kernel 1-5, stride 1-3, padding 0-2 (pooling: at most half the kernel), non-square
inputs and kernels, size-1 channels and batches. The relative error must be below 1e-7.
"""
import itertools
import os

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import gradbox as gb
from gradbox import Tensor, _blas, nn
from gradbox.nn import _conv_functional as CF
from gradbox.nn import functional as F

from ..conftest import GRADCHECK_ERRORS
from ..conftest import gradcheck_ok as check
from .._paths import ROOT

N_CONFIGS = 24


@pytest.fixture(params=["numpy", "fast"])
def kernels(request):
    """Run a test on the NumPy path and (when numba is installed) on the compiled kernels."""
    if request.param == "fast":
        pytest.importorskip("numba")
    previous = F.use_fast_kernels(request.param == "fast")
    yield request.param
    F.use_fast_kernels(previous)


def conv_config(seed):
    """A random convolution: (x shape, weight shape, stride, padding), the padded input >= the kernel."""
    rng = np.random.default_rng(seed)
    kh, kw = (int(k) for k in rng.integers(1, 6, size=2))
    stride = tuple(int(s) for s in rng.integers(1, 4, size=2))
    padding = tuple(int(p) for p in rng.integers(0, 3, size=2))
    n, c, o = int(rng.choice([1, 2, 3])), int(rng.choice([1, 2, 3])), int(rng.choice([1, 2, 4]))
    h = int(max(kh - 2 * padding[0], 1) + rng.integers(0, 5))
    w = int(max(kw - 2 * padding[1], 1) + rng.integers(0, 5))
    return rng, (n, c, h, w), (o, c, kh, kw), stride, padding


def pool_config(seed):
    rng = np.random.default_rng(1000 + seed)
    kh, kw = (int(k) for k in rng.integers(1, 6, size=2))
    stride = tuple(int(s) for s in rng.integers(1, 4, size=2))
    padding = (int(rng.integers(0, min(2, kh // 2) + 1)), int(rng.integers(0, min(2, kw // 2) + 1)))
    n, c = int(rng.choice([1, 2, 3])), int(rng.choice([1, 2, 3]))
    h = int(max(kh - 2 * padding[0], 1) + rng.integers(0, 5))
    w = int(max(kw - 2 * padding[1], 1) + rng.integers(0, 5))
    return rng, (n, c, h, w), (kh, kw), stride, padding


def distinct(rng, shape):
    """Values at least 0.01 apart, so that no window's maximum is within eps of a tie."""
    return (rng.permutation(int(np.prod(shape))).reshape(shape) - np.prod(shape) / 2) * 0.01


def test_configurations_cover_the_issue_ranges():
    convs = [conv_config(s) for s in range(N_CONFIGS)]
    assert {w[2] for _, _, w, _, _ in convs} | {w[3] for _, _, w, _, _ in convs} == {1, 2, 3, 4, 5}
    assert {s for _, _, _, st, _ in convs for s in st} == {1, 2, 3}
    assert {p for _, _, _, _, pd in convs for p in pd} == {0, 1, 2}
    assert any(x[0] == 1 for _, x, _, _, _ in convs) and any(x[1] == 1 for _, x, _, _, _ in convs)
    assert any(x[2] != x[3] for _, x, _, _, _ in convs)


@pytest.mark.parametrize("seed", range(N_CONFIGS))
def test_conv2d_gradcheck(seed, kernels):
    rng, xs, ws, stride, padding = conv_config(seed)
    x, w, b = rng.normal(size=xs), rng.normal(size=ws), rng.normal(size=ws[0])
    check(lambda x, w, b: F.conv2d(x, w, b, stride=stride, padding=padding), [x, w, b])


@pytest.fixture(params=["standard", "wide"])
def unfolding(request, kernels):
    """Force one unfolding of stride-1 convolutions (the library picks per kernel size) on either kernel set."""
    key = "fast" if kernels == "fast" else "numpy"
    previous = CF._WIDE_MIN_AREA[key]
    CF._WIDE_MIN_AREA[key] = 1 if request.param == "wide" else None
    yield request.param
    CF._WIDE_MIN_AREA[key] = previous


@pytest.mark.parametrize("seed", range(N_CONFIGS))
def test_both_unfoldings_agree_and_pass_gradcheck(seed, unfolding):
    """The wide (OH·Wp rows) and standard (OH·OW rows) unfoldings give the same convolution and gradients."""
    rng, xs, ws, _, padding = conv_config(seed)
    x, w, b = rng.normal(size=xs), rng.normal(size=ws), rng.normal(size=ws[0])
    check(lambda x, w, b: F.conv2d(x, w, b, padding=padding), [x, w, b])
    X, W, B = (Tensor(a, requires_grad=True) for a in (x, w, b))
    out = F.conv2d(X, W, B, padding=padding)
    g = rng.normal(size=out.shape)
    out.backward(g)
    # the reference: a direct sum over the kernel offsets, no unfolding at all
    xp = np.pad(x, ((0, 0), (0, 0), (padding[0],) * 2, (padding[1],) * 2))
    oh, ow = out.shape[2:]
    ref = np.zeros(out.shape) + b[:, None, None]
    dxp, dw = np.zeros_like(xp), np.zeros_like(w)
    for i in range(ws[2]):
        for j in range(ws[3]):
            patch = xp[:, :, i:i + oh, j:j + ow]
            ref += np.einsum("oc,nchw->nohw", w[:, :, i, j], patch)
            dw[:, :, i, j] = np.einsum("nohw,nchw->oc", g, patch)
            dxp[:, :, i:i + oh, j:j + ow] += np.einsum("oc,nohw->nchw", w[:, :, i, j], g)
    dx = dxp[:, :, padding[0]:padding[0] + xs[2], padding[1]:padding[1] + xs[3]]
    np.testing.assert_allclose(out.data, ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(X.grad, dx, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(W.grad, dw, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(B.grad, g.sum(axis=(0, 2, 3)), rtol=1e-12, atol=1e-12)


@pytest.fixture(params=[(path, threads) for path in ("fast", "fast-python", "numpy", "numpy-wide")
                         for threads in (1, 2, 3)], ids=lambda p: f"{p[0]}-{p[1]}")
def chunked(request, monkeypatch):
    """Every convolution cut into chunks of one image, shared among 1-3 threads, with the compiled kernels
    (each thread's chunks in one compiled call, ``_conv_forward_part``, or ``fast-python``: the chunk loop in
    Python, as where NumPy's GEMM cannot be called from compiled code) or the NumPy path's: its short rows,
    or (``numpy-wide``) every stride-1 chunk unfolded over wide rows (``_im2col_wide``, ``_fold_wide``; the
    library does so from ``_WIDE_CHUNK_ROWS`` rows up).

    NOTE: the library chunks only batches whose columns exceed ``_CHUNK_BYTES`` (1 MB), on as many threads
    as NumPy's BLAS may use, each thread's share as one chunk up to ``_SHARE_BYTES``; the test shrinks the
    two and sets the threads, so that small float64 problems take the chunked path whatever the machine's cores."""
    path, threads = request.param
    if path.startswith("fast"):
        pytest.importorskip("numba")
    previous = F.use_fast_kernels(path.startswith("fast"))
    if path == "fast-python":  # NOTE: as where NumPy's GEMM has no address gradbox knows (another BLAS)
        monkeypatch.setattr(_blas, "gemm_address", lambda dtype: 0)
    monkeypatch.setitem(CF._WIDE_CHUNK_ROWS, "numpy", 1 if path == "numpy-wide" else None)
    monkeypatch.setattr(CF, "_CHUNK_BYTES", 1)
    monkeypatch.setitem(CF._SHARE_BYTES, "numpy", 0)
    monkeypatch.setattr(_blas, "threads", lambda: threads)
    yield threads
    F.use_fast_kernels(previous)


def test_compiled_parts_run_where_numpy_blas_is_openblas_with_64_bit_integers():
    """The compiled chunk parts call NumPy's own OpenBLAS GEMM: its address is found wherever NumPy's wheel
    brought it (the "64_" build); the chunked tests above then exercise the compiled parts, not the loop."""
    pytest.importorskip("numba")
    ctl = _blas._controller()
    if not isinstance(ctl, _blas._OpenBLAS) or "64_" not in os.path.basename(ctl.filepath):
        pytest.skip("NumPy's BLAS here is not a 64-bit-integer OpenBLAS found by gradbox")
    from gradbox import _conv_kernels as K
    for dtype in (np.float32, np.float64):
        assert _blas.gemm_address(dtype) != 0
        assert CF._compiled_parts(K, np.dtype(dtype)) == _blas.gemm_address(dtype)
    assert CF._compiled_parts(CF._NumpyKernels, np.dtype(np.float32)) == 0
    assert _blas.gemm_address(np.int32) == 0


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_chunk_groups_cover_the_batch_in_equal_runs(threads, monkeypatch):
    """``_chunk_groups``: None while the batch's columns fit one chunk; else every image once, in consecutive
    chunks of sizes within one image, one group a thread; each thread's share one chunk while it takes at most
    ``share_bytes`` (the NumPy path's ``_SHARE_BYTES``: LeNet's first conv at batch 32 as two chunks of 16 images
    on two threads), else chunks of about ``_CHUNK_BYTES``."""
    monkeypatch.setattr(_blas, "threads", lambda: threads)
    share = CF._SHARE_BYTES["numpy"]
    assert CF._chunk_groups(1, 1 << 30, share) is None and CF._chunk_groups(8, CF._CHUNK_BYTES // 8, share) is None
    for n, image_bytes, share in itertools.product((2, 3, 7, 32, 128),
                                                   (25 * 784 * 4, 150 * 100 * 4, 288 * 196 * 4, CF._CHUNK_BYTES + 1),
                                                   (0, share)):
        groups = CF._chunk_groups(n, image_bytes, share)
        if n * image_bytes <= CF._CHUNK_BYTES:
            assert groups is None
            continue
        chunks = [c for g in groups for c in g]
        assert chunks[0][0] == 0 and chunks[-1][1] == n
        assert all(a[1] == b[0] for a, b in zip(chunks, chunks[1:]))
        sizes = [e - a for a, e in chunks]
        assert max(sizes) - min(sizes) <= 1 and min(sizes) >= 1
        assert len(groups) == min(threads, n)
        if n * image_bytes <= min(threads, n) * share:
            assert all(len(g) == 1 for g in groups)
        else:
            assert max(sizes) * image_bytes <= CF._CHUNK_BYTES + image_bytes
    if threads == 2:
        assert CF._chunk_groups(32, 25 * 784 * 4, CF._SHARE_BYTES["numpy"]) == [[(0, 16)], [(16, 32)]]
        assert CF._chunk_groups(32, 25 * 784 * 4, CF._SHARE_BYTES["fast"]) == [[(0, 8), (8, 16)], [(16, 24), (24, 32)]]


def conv_run(x, w, b, g, stride, padding, need_x=True):
    X, W, B = Tensor(x, requires_grad=need_x), Tensor(w, requires_grad=True), Tensor(b, requires_grad=True)
    out = F.conv2d(X, W, B, stride=stride, padding=padding)
    out.backward(g)
    return out.data, X.grad, W.grad, B.grad


@pytest.mark.parametrize("seed", range(N_CONFIGS))
def test_chunked_convolution_equals_the_whole_batch_and_passes_gradcheck(seed, chunked, monkeypatch):
    """Chunk by chunk on 1-3 threads (forward, dX, dW, db) = the whole batch at once, to float64 rounding."""
    rng, xs, ws, stride, padding = conv_config(seed)
    xs = (int(rng.integers(2, 8)),) + xs[1:]  # NOTE: a batch of one is never chunked
    x, w, b = rng.normal(size=xs), rng.normal(size=ws), rng.normal(size=ws[0])
    assert CF._chunk_groups(xs[0], 8) is not None
    check(lambda x, w, b: F.conv2d(x, w, b, stride=stride, padding=padding), [x, w, b])
    g = rng.normal(size=F.conv2d(Tensor(x), Tensor(w), Tensor(b), stride=stride, padding=padding).shape)
    for need_x, dw_rows in [(True, 0), (True, 1 << 30), (False, 0), (False, 1 << 30)]:
        # NOTE: need_x False: a first layer's backward (no dX); dw_rows: dW from one product over the chunk
        # or one per image (the library picks by the columns' rows)
        monkeypatch.setattr(CF, "_BATCHED_DW_ROWS", dw_rows)
        got = conv_run(x, w, b, g, stride, padding, need_x)
        again = conv_run(x, w, b, g, stride, padding, need_x)
        for a, c in zip(got, again):  # the sums over chunks run in one order: a run repeats to the bit
            assert (a is None and c is None) or np.array_equal(a, c)
        with monkeypatch.context() as m:
            m.setattr(CF, "_CHUNK_BYTES", 1 << 60)
            want = conv_run(x, w, b, g, stride, padding, need_x)
        for a, c in zip(got, want):
            if c is None:
                assert a is None
            else:
                np.testing.assert_allclose(a, c, rtol=1e-12, atol=1e-12)


def test_chunked_convolution_backward_twice_with_retain_graph(chunked):
    """A second backward (retain_graph) reads the same cache: exactly twice the first gradients."""
    rng = np.random.default_rng(5)
    x, w, b = rng.normal(size=(5, 3, 9, 8)), rng.normal(size=(4, 3, 3, 3)), rng.normal(size=4)
    X, W, B = Tensor(x, requires_grad=True), Tensor(w, requires_grad=True), Tensor(b, requires_grad=True)
    out = F.conv2d(X, W, B, padding=1)
    g = rng.normal(size=out.shape)
    out.backward(g, retain_graph=True)
    first = [X.grad.copy(), W.grad.copy(), B.grad.copy()]
    out.backward(g)
    for a, t in zip(first, (X, W, B)):
        np.testing.assert_array_equal(t.grad, 2 * a)


def test_chunked_convolution_in_float32_and_without_grad(chunked):
    rng = np.random.default_rng(7)
    x = rng.normal(size=(9, 3, 12, 10)).astype(np.float32)
    w, b = rng.normal(size=(5, 3, 3, 3)).astype(np.float32), rng.normal(size=5).astype(np.float32)
    with gb.no_grad():
        got = F.conv2d(Tensor(x), Tensor(w), Tensor(b), padding=1).data
    want = F.conv2d(Tensor(x.astype(np.float64)), Tensor(w.astype(np.float64)), Tensor(b.astype(np.float64)),
                    padding=1).data
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("frozen", [True, False])
def test_chunked_convolution_without_bias_or_with_frozen_weights(chunked, monkeypatch, bias, frozen):
    """The chunked backward's other input combinations: no bias; W frozen (dX only, no columns kept)."""
    rng = np.random.default_rng(11)
    x, w, b = rng.normal(size=(6, 2, 7, 9)), rng.normal(size=(3, 2, 3, 2)), rng.normal(size=3)

    def run():
        X, W = Tensor(x, requires_grad=True), Tensor(w, requires_grad=not frozen)
        B = Tensor(b, requires_grad=True) if bias else None
        out = F.conv2d(X, W, B, stride=(2, 1), padding=1)
        out.backward(np.linspace(-1, 1, out.data.size).reshape(out.shape))
        return out.data, X.grad, W.grad, None if B is None else B.grad

    got = run()
    monkeypatch.setattr(CF, "_CHUNK_BYTES", 1 << 60)
    want = run()
    assert (got[2] is None) == frozen and (got[3] is None) == (not bias)
    for a, c in zip(got, want):
        assert (a is None) == (c is None)
        if a is not None:
            np.testing.assert_allclose(a, c, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("seed", range(N_CONFIGS))
def test_max_pool2d_gradcheck(seed, kernels):
    rng, xs, kernel, stride, padding = pool_config(seed)
    check(lambda x: F.max_pool2d(x, kernel, stride, padding), [distinct(rng, xs)])


@pytest.mark.parametrize("seed", range(N_CONFIGS))
def test_avg_pool2d_gradcheck(seed, kernels):
    rng, xs, kernel, stride, padding = pool_config(seed)
    check(lambda x: F.avg_pool2d(x, kernel, stride, padding), [rng.normal(size=xs)])


def bn_shape(seed):
    rng = np.random.default_rng(2000 + seed)
    rank = int(rng.choice([2, 3, 4]))
    shape = [int(rng.integers(1, 5)), int(rng.choice([1, 2, 3]))] + [int(rng.integers(1, 4)) for _ in range(rank - 2)]
    if np.prod(shape) // shape[1] < 3:
        # NOTE: with 2 values per channel x̂ = ±1 whatever x is: dx is ~0 and its relative error is noise
        shape[0] = 3
    return rng, tuple(shape)


@pytest.mark.parametrize("seed", range(N_CONFIGS))
@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_gradcheck(seed, training):
    rng, shape = bn_shape(seed)
    c = shape[1]
    x, w, b = rng.normal(size=shape) * 2 + 1, rng.normal(size=c), rng.normal(size=c)
    mean, var = rng.normal(size=c), rng.uniform(0.5, 2, size=c)
    check(lambda x, w, b: F.batch_norm(x, mean.copy(), var.copy(), w, b, training=training, eps=1e-3), [x, w, b])


@pytest.mark.parametrize("seed", range(N_CONFIGS))
def test_cnn_layers_gradcheck(seed):
    """Every parameter of a small CNN (Conv2d, BatchNorm2d in eval, pools, Flatten, Linear, BatchNorm1d)."""
    rng, xs, ws, stride, padding = conv_config(seed)
    conv = nn.Conv2d(ws[1], ws[0], ws[2:], stride=stride, padding=padding, dtype=np.float64, rng=seed)
    bn = nn.BatchNorm2d(ws[0], dtype=np.float64)
    oc, oh, ow = conv.output_shape(xs[1:])
    bn.running_mean[:] = rng.normal(size=ws[0])
    bn.running_var[:] = rng.uniform(0.5, 2, size=ws[0])
    bn.weight.data[:] = rng.normal(size=ws[0])
    pool = nn.AvgPool2d((min(2, oh), min(2, ow)), stride=1)
    _, ph, pw = pool.output_shape((oc, oh, ow))
    model = nn.Sequential(conv, bn, nn.Tanh(), pool, nn.Flatten(), nn.Linear(oc * ph * pw, 3, dtype=np.float64, rng=seed),
                          nn.BatchNorm1d(3, dtype=np.float64))
    X, y = rng.normal(size=xs), rng.integers(0, 3, size=xs[0])
    report = gb.check_gradients(model, nn.CrossEntropyLoss(), X, y)
    GRADCHECK_ERRORS.append(report.max_rel_error)
    assert report.passed, report


# --- the first layer skips dX ------------------------------------------------------------------
def test_conv_skips_dx_for_raw_input():
    conv = nn.Conv2d(2, 3, 3, dtype=np.float64, rng=0)
    x = Tensor(np.random.default_rng(0).normal(size=(2, 2, 5, 5)))
    out = conv(x)
    calls = []
    original = CF._col2im
    try:
        CF._col2im = lambda *a: calls.append(1) or original(*a)
        out.sum().backward()
    finally:
        CF._col2im = original
    assert calls == [] and x.grad is None and conv.weight.grad is not None


# --- im2col and col2im are adjoint ----------------------------------------------------------------
@pytest.mark.parametrize("seed", range(10))
def test_col2im_is_the_adjoint_of_im2col(seed, kernels):
    rng, xs, ws, stride, padding = conv_config(seed)
    x = rng.normal(size=xs)
    cols = CF.im2col(x, ws[2:], stride, padding)
    c = rng.normal(size=cols.shape)
    assert np.isclose((cols * c).sum(), (x * CF.col2im(c, xs, ws[2:], stride, padding)).sum(), rtol=1e-12)


# --- errors -----------------------------------------------------------------------------------------
def test_conv2d_wrong_channels():
    conv = nn.Conv2d(3, 4, 3, rng=0)
    with pytest.raises(ValueError, match=r"Conv2d\(in_channels=3\): expected input of shape \(N, 3, H, W\), "
                                          r"received \(2, 1, 8, 8\)"):
        conv(np.zeros((2, 1, 8, 8), np.float32))


def test_conv2d_three_dimensional_input():
    with pytest.raises(ValueError, match=r"expected input of shape \(N, 3, H, W\), received \(32, 28, 28\)"):
        nn.Conv2d(in_channels=3, out_channels=2, kernel_size=3, rng=0)(np.zeros((32, 28, 28), np.float32))


def test_conv2d_kernel_larger_than_padded_input():
    with pytest.raises(ValueError, match=r"expected a kernel no larger than the padded input \(4, 4\), received "
                                          r"kernel \(5, 5\)"):
        nn.Conv2d(1, 2, 5, padding=1, rng=0)(np.zeros((1, 1, 2, 2), np.float32))


def test_conv2d_refuses_non_finite_raw_input():
    x = np.zeros((1, 1, 4, 4), np.float32)
    x[0, 0, 1, 2] = np.nan
    with pytest.raises(gb.NonFiniteError, match=r"Conv2d\(in_channels=1\): expected finite input, received"):
        nn.Conv2d(1, 2, 3, rng=0)(x)


def test_conv2d_dtype_mismatch():
    with pytest.raises(TypeError, match="expected input of dtype float32, received float64"):
        nn.Conv2d(1, 2, 3, rng=0)(np.zeros((1, 1, 4, 4)))


@pytest.mark.parametrize("kwargs, match", [
    (dict(kernel_size=0), r"Conv2d\(kernel_size\): expected a positive int or a pair"),
    (dict(kernel_size=(2, 2, 2)), r"Conv2d\(kernel_size\)"),
    (dict(kernel_size=3, stride=0), r"Conv2d\(stride\)"),
    (dict(kernel_size=3, padding=-1), r"Conv2d\(padding\): expected a non-negative int"),
    (dict(kernel_size=3, init="zeros"), r"Conv2d\(init\): expected one of"),
    (dict(kernel_size=3, padding="Same"), r"Conv2d\(padding\): expected a non-negative int, a pair of them, "
                                          r"'same' or 'valid', received 'Same'"),
    (dict(kernel_size=3, padding=np.array([1, 1])), r"Conv2d\(padding\): expected a non-negative int"),
    (dict(kernel_size=3, stride=2, padding="same"), r"Conv2d\(padding='same'\): expected stride 1 .* "
                                                    r"received stride \(2, 2\)"),
    (dict(kernel_size=(3, 4), padding="same"), r"Conv2d\(padding='same'\): expected odd kernel sizes .* "
                                               r"received kernel_size \(3, 4\)"),
])
def test_conv2d_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        nn.Conv2d(1, 2, **kwargs)


@pytest.mark.parametrize("kernel", [1, 3, 5, (3, 5), (1, 7)])
def test_conv2d_padding_same_keeps_the_size_and_valid_is_none(kernel):
    x = np.random.default_rng(0).normal(size=(2, 3, 9, 8))
    same = nn.Conv2d(3, 4, kernel, padding="same", dtype=np.float64, rng=0)
    kh, kw = same.kernel_size
    assert same.padding == ((kh - 1) // 2, (kw - 1) // 2)
    assert same(x).shape == (2, 4, 9, 8)
    # the name resolves at construction: the config, the repr and a rebuilt layer carry the pair
    assert same.get_config()["padding"] == [(kh - 1) // 2, (kw - 1) // 2]
    assert nn.Conv2d(**same.get_config()).padding == same.padding
    w = Tensor(same.weight.data)
    assert np.array_equal(F.conv2d(Tensor(x), w, padding="same").data,
                          F.conv2d(Tensor(x), w, padding=same.padding).data)
    assert nn.Conv2d(3, 4, kernel, padding="valid", rng=0).padding == (0, 0)
    assert np.array_equal(F.conv2d(Tensor(x), w, padding="valid").data, F.conv2d(Tensor(x), w).data)


def test_conv2d_functional_padding_names_are_checked():
    x, w = Tensor(np.zeros((1, 1, 5, 5))), Tensor(np.zeros((1, 1, 2, 2)))
    with pytest.raises(ValueError, match=r"conv2d\(padding='same'\): expected odd kernel sizes"):
        F.conv2d(x, w, padding="same")
    with pytest.raises(ValueError, match=r"conv2d\(padding='same'\): expected stride 1"):
        F.conv2d(x, Tensor(np.zeros((1, 1, 3, 3))), stride=(1, 2), padding="same")
    with pytest.raises(ValueError, match=r"conv2d\(padding\): expected .* 'same' or 'valid', received 'full'"):
        F.conv2d(x, w, padding="full")


def test_pool_errors():
    with pytest.raises(ValueError, match=r"MaxPool2d\(padding\): expected at most half the kernel size"):
        nn.MaxPool2d(2, padding=2)
    with pytest.raises(ValueError, match=r"expected input of shape \(N, C, H, W\), received \(4, 4\)"):
        nn.MaxPool2d(2)(np.zeros((4, 4), np.float32))
    with pytest.raises(ValueError, match="expected a kernel no larger than the padded input"):
        nn.AvgPool2d(3)(np.zeros((1, 1, 2, 2), np.float32))


@pytest.mark.parametrize("layer", [nn.MaxPool2d, nn.AvgPool2d])
def test_pool_window_changed_after_construction_is_checked_and_used(layer):
    # the layer keeps its checked window between calls; an attribute set later is checked again and used
    x = np.arange(2 * 3 * 8 * 8, dtype=np.float32).reshape(2, 3, 8, 8)
    pool = layer(2)
    assert pool(x).shape == (2, 3, 4, 4)
    pool.kernel_size, pool.stride = 4, [4, 2]
    want = F.max_pool2d(x, 4, (4, 2)) if layer is nn.MaxPool2d else F.avg_pool2d(x, 4, (4, 2))
    np.testing.assert_array_equal(pool(x).data, want.data)
    assert pool(x).shape == (2, 3, 2, 3)
    pool.stride = 0
    with pytest.raises(ValueError, match=rf"{layer.__name__}\(kernel_size=4\)\(stride\): expected a positive int"):
        pool(x)
    pool.stride, pool.padding = 2, 3
    with pytest.raises(ValueError, match=r"\(padding\): expected at most half the kernel size"):
        pool(x)


def test_batch_norm_errors():
    with pytest.raises(ValueError, match=r"BatchNorm2d\(num_features=3\): expected input of shape \(N, 3, H, W\), "
                                          r"received \(2, 3\)"):
        nn.BatchNorm2d(3)(np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match=r"BatchNorm1d\(num_features=4\): expected input of shape \(N, 4\) or"):
        nn.BatchNorm1d(4)(np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match="expected more than 1 value per channel when training"):
        nn.BatchNorm1d(3)(np.zeros((1, 3), np.float32))
    with pytest.raises(ValueError, match=r"BatchNorm1d\(momentum\)"):
        nn.BatchNorm1d(3, momentum=2)
    # the constructor and a model file's config (from_config) apply the same constraints
    for build in (lambda **kw: nn.BatchNorm1d(3, **kw), lambda **kw: nn.BatchNorm1d.from_config({"num_features": 3, **kw})):
        with pytest.raises(ValueError, match=r"BatchNorm1d\(eps\): expected a positive finite number, received inf"):
            build(eps=float("inf"))
        with pytest.raises(ValueError, match=r"BatchNorm1d\(momentum\): expected a number in \[0, 1\], received 2"):
            build(momentum=2)
    with pytest.raises(TypeError, match="expected input of dtype float32, received float64"):
        nn.BatchNorm1d(3)(np.zeros((4, 3)))


# --- configuration and buffers ------------------------------------------------------------------------
@pytest.mark.parametrize("layer", [
    lambda: nn.Conv2d(3, 8, (3, 5), stride=(1, 2), padding=(1, 0), bias=False, dtype=np.float64, rng=0),
    lambda: nn.MaxPool2d(3, stride=2, padding=1),
    lambda: nn.AvgPool2d((2, 3)),
    lambda: nn.BatchNorm1d(5, eps=1e-3, momentum=0.2),
    lambda: nn.BatchNorm2d(4, dtype=np.float64),
])
def test_layers_rebuild_from_their_config(layer):
    import json

    from gradbox.nn.module import get_layer_class, layer_name

    m = layer()
    config = json.loads(json.dumps(m.get_config()))  # JSON-friendly
    rebuilt = get_layer_class(layer_name(m)).from_config(config)
    assert type(rebuilt) is type(m) and rebuilt.get_config() == m.get_config()
    assert [(k, v.shape, v.dtype) for k, v in rebuilt.state_dict().items()] == \
        [(k, v.shape, v.dtype) for k, v in m.state_dict().items()]


def test_batch_norm_buffers_in_state_dict_and_eval():
    bn = nn.BatchNorm2d(2)
    x = np.random.default_rng(0).normal(2.0, 3.0, size=(8, 2, 4, 4)).astype(np.float32)
    for _ in range(3):
        bn(x)
    sd = bn.state_dict()
    assert list(sd) == ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]
    assert int(sd["num_batches_tracked"]) == 3
    other = nn.BatchNorm2d(2)
    other.load_state_dict(sd)
    bn.eval(), other.eval()
    np.testing.assert_array_equal(bn(x).data, other(x).data)
    with gb.no_grad():
        before = bn.running_mean.copy()
        bn.train()(x)  # training under no_grad still updates the running statistics
        assert not np.array_equal(before, bn.running_mean)


def test_conv_init_uses_conv_fans():
    conv = nn.Conv2d(16, 32, 3, init="he_uniform", rng=0)
    bound = np.sqrt(6 / (16 * 9))
    assert np.abs(conv.weight.data).max() <= bound and np.abs(conv.weight.data).max() > 0.9 * bound
    conv = nn.Conv2d(16, 32, 3, init="xavier_uniform", rng=0)
    bound = np.sqrt(6 / ((16 + 32) * 9))
    assert np.abs(conv.weight.data).max() <= bound and np.abs(conv.weight.data).max() > 0.9 * bound


def test_float32_training_step_runs():
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1, rng=0), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Flatten(), nn.Linear(4 * 4 * 4, 3, rng=0))
    opt = gb.optim.SGD(model.parameters(), lr=0.1)
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(16, 1, 8, 8)).astype(np.float32), rng.integers(0, 3, 16)
    losses = []
    for _ in range(20):
        opt.zero_grad()
        loss = nn.CrossEntropyLoss()(model(X), y)
        loss.backward()
        opt.step()
        losses.append(float(loss.data))
    assert all(p.grad.dtype == np.float32 for p in model.parameters())
    assert losses[-1] < 0.5 * losses[0]


@pytest.mark.parametrize("name", ["gradbox.nn._conv_functional", "gradbox.nn.conv", "gradbox.nn.pooling",
                                  "gradbox.nn.normalization"])
def test_docstring_examples(name):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0 and result.attempted > 0


# --- the compiled kernels (numba) -------------------------------------------------------------------
def run_ops(seed, fast):
    """Outputs and gradients of every op on a float32 configuration, on one path."""
    previous = F.use_fast_kernels(fast)
    try:
        rng, xs, ws, stride, padding = conv_config(seed)
        x, w, b = (rng.normal(size=s).astype(np.float32) for s in (xs, ws, ws[:1]))
        X, W, B = (Tensor(a, requires_grad=True) for a in (x, w, b))
        out = F.conv2d(X, W, B, stride=stride, padding=padding)
        out.backward(rng.normal(size=out.shape).astype(np.float32))
        results = [out.data, X.grad, W.grad, B.grad]
        rng, xs, kernel, stride, padding = pool_config(seed)
        x = rng.normal(size=xs).astype(np.float32)
        for fn in (F.max_pool2d, F.avg_pool2d):
            X = Tensor(x, requires_grad=True)
            out = fn(X, kernel, stride, padding)
            out.backward(rng.normal(size=out.shape).astype(np.float32))
            results += [out.data, X.grad]
        return results
    finally:
        F.use_fast_kernels(previous)


@pytest.mark.parametrize("seed", range(N_CONFIGS))
def test_fast_kernels_equal_numpy_path_in_float32(seed):
    pytest.importorskip("numba")
    for fast, slow in zip(run_ops(seed, True), run_ops(seed, False)):
        assert fast.dtype == slow.dtype == np.float32
        np.testing.assert_allclose(fast, slow, rtol=1e-5, atol=1e-5 * max(1.0, float(np.abs(slow).max())))


@settings(max_examples=100, deadline=None)
@given(n=st.integers(1, 3), c=st.integers(1, 3), h=st.integers(1, 9), w=st.integers(1, 9),
       kh=st.integers(1, 3), kw=st.integers(1, 3), sh=st.integers(1, 2), sw=st.integers(1, 2),
       sliced=st.booleans(), writeable=st.booleans())
def test_strided_views_equal_as_strided(n, c, h, w, kh, kw, sh, sw, sliced, writeable):
    """``_strided`` (the ndarray constructor on a contiguous base, ``as_strided`` on any other) gives the
    views ``as_strided`` gives: the same elements, and writeable only when asked."""
    assume(kh <= h and kw <= w)
    base = np.arange(n * c * h * (w + 1), dtype=np.float32).reshape(n, c, h, w + 1)
    x = base[..., :w] if sliced else np.ascontiguousarray(base[..., :w])  # a sliced base is not contiguous
    s = x.strides
    oh, ow = (h - kh) // sh + 1, (w - kw) // sw + 1
    shape, strides = (n, c, oh, ow, kh, kw), (s[0], s[1], s[2] * sh, s[3] * sw, s[2], s[3])
    got = CF._strided(x, shape, strides, writeable=writeable)
    want = np.lib.stride_tricks.as_strided(x, shape, strides, writeable=False)
    np.testing.assert_array_equal(got, want)
    assert got.flags.writeable == writeable
    if writeable:  # a write lands in the base
        got[0, 0, 0, 0, 0, 0] = -1.0
        assert x[0, 0, 0, 0] == -1.0


@settings(max_examples=150, deadline=None)
@given(n=st.integers(1, 3), c=st.integers(1, 3), h=st.integers(1, 12), w=st.integers(1, 40),
       kh=st.integers(1, 5), kw=st.integers(1, 5), ph=st.integers(0, 3), pw=st.integers(0, 3),
       dtype=st.sampled_from([np.float32, np.float64]), work=st.sampled_from(["none", "enough", "short"]))
def test_compiled_stride1_unfolding_equals_numpy_path_bitwise(n, c, h, w, kh, kw, ph, pw, dtype, work):
    """The compiled stride-1 im2col (padded copy, then runs in vector moves of 8, the last one overlapping)
    gives the NumPy path's columns bit for bit: runs shorter than 8, exactly 8, and longer, with and
    without a work buffer for the padded copy (one too short is not used)."""
    pytest.importorskip("numba")
    from gradbox import _conv_kernels as K
    assume(h + 2 * ph >= kh and w + 2 * pw >= kw)
    x = np.random.default_rng(n * 1000 + h * 40 + w).normal(size=(n, c, h, w)).astype(dtype)
    size = n * c * (h + 2 * ph) * (w + 2 * pw)
    buf = None if work == "none" else np.full(size + 3 if work == "enough" else size - 1, np.nan, dtype)
    oh, ow = h + 2 * ph - kh + 1, w + 2 * pw - kw + 1
    cols = np.full((c * kh * kw, n * oh * ow), np.nan, dtype)
    out = K.im2col(x, (kh, kw), (1, 1), (ph, pw), cols=cols, work=buf)
    assert out is cols
    np.testing.assert_array_equal(cols, CF._NumpyKernels.im2col(x, (kh, kw), (1, 1), (ph, pw)))


def test_kernels_load_lazily_and_switch_off_by_environment():
    import os
    import subprocess
    import sys

    pytest.importorskip("numba")
    code = ("import sys, numpy as np, gradbox as gb; assert 'gradbox._conv_kernels' not in sys.modules; "
            "assert 'numba' not in sys.modules; "
            "gb.nn.functional.max_pool2d(np.ones((1, 1, 2, 2)), 2); print('gradbox._conv_kernels' in sys.modules)")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    for value, loaded in (("1", "True"), ("0", "False")):
        env["GRADBOX_FAST"] = value
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
        assert out.stdout.strip() == loaded, out.stderr


# --- model files --------------------------------------------------------------------------------------
def test_model_file_round_trip_of_a_cnn_with_batch_norm(tmp_path):
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1, rng=0), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(4, 6, (3, 2), stride=(1, 2), bias=False, init="xavier_normal", rng=1), nn.BatchNorm2d(6, momentum=0.2),
        nn.ReLU(), nn.AvgPool2d(2, stride=1, padding=1), nn.Flatten(), nn.Linear(6 * 3 * 3, 8, rng=2),
        nn.BatchNorm1d(8, eps=1e-3), nn.ReLU(), nn.Linear(8, 3, rng=3),
    )
    X = np.random.default_rng(0).normal(2.0, 1.5, size=(16, 1, 8, 8)).astype(np.float32)
    for _ in range(3):
        model(X)  # training steps move the running statistics away from 0 and 1
    path = tmp_path / "cnn.gbx"
    gb.io.save_model(path, model)
    loaded = gb.io.load_model(path).model
    assert [type(m) for m in loaded] == [type(m) for m in model]
    assert [m.get_config() for m in loaded] == [m.get_config() for m in model]
    ours, theirs = model.state_dict(), loaded.state_dict()
    assert list(ours) == list(theirs) and "1.running_var" in ours and int(theirs["1.num_batches_tracked"]) == 3
    for k in ours:
        np.testing.assert_array_equal(ours[k], theirs[k])
        assert ours[k].dtype == theirs[k].dtype
    model.eval(), loaded.eval()
    with gb.no_grad():
        np.testing.assert_array_equal(model(X).data, loaded(X).data)


@pytest.mark.parametrize("entry, match", [
    ({"type": "Conv2d", "in_channels": 0, "out_channels": 2, "kernel_size": 3}, r"Conv2d\(in_channels\)"),
    ({"type": "Conv2d", "in_channels": 1, "out_channels": 2, "kernel_size": [3, 3, 3]}, r"Conv2d\(kernel_size\)"),
    ({"type": "MaxPool2d", "kernel_size": 2, "stride": True}, r"MaxPool2d\(stride\)"),
    ({"type": "BatchNorm2d", "num_features": 4, "momentum": 1.5}, r"BatchNorm2d\(momentum\)"),
    ({"type": "BatchNorm1d", "num_features": 4, "dtype": "int8"}, r"BatchNorm1d\(dtype\)"),
])
def test_bad_layer_configs_are_refused(entry, match):
    from gradbox.nn.module import entry_state_specs

    with pytest.raises(ValueError, match=match):
        entry_state_specs(entry, "model[0]")


# --- property-based: any geometry -----------------------------------------------------------------
from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@st.composite
def geometries(draw):
    kh, kw = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    ph, pw = draw(st.integers(0, 2)), draw(st.integers(0, 2))
    h = draw(st.integers(max(kh - 2 * ph, 1), 9))
    w = draw(st.integers(max(kw - 2 * pw, 1), 9))
    return ((draw(st.integers(1, 3)), draw(st.integers(1, 3)), h, w), (kh, kw),
            (draw(st.integers(1, 3)), draw(st.integers(1, 3))), (ph, pw))


@given(geometries(), st.integers(0, 2**31 - 1))
def test_conv_output_shape_and_adjointness_for_any_geometry(geometry, seed):
    """The notes' size formula, and <im2col(x), c> = <x, col2im(c)> (col2im is im2col's adjoint)."""
    xs, kernel, stride, padding = geometry
    rng = np.random.default_rng(seed)
    x = rng.normal(size=xs)
    w = rng.normal(size=(2, xs[1]) + kernel)
    out = F.conv2d(x, w, stride=stride, padding=padding)
    expect = tuple(CF.conv_output_size(n, k, s, p) for n, k, s, p in zip(xs[2:], kernel, stride, padding))
    assert out.shape == (xs[0], 2) + expect
    cols = CF.im2col(x, kernel, stride, padding)
    c = rng.normal(size=cols.shape)
    assert np.isclose((cols * c).sum(), (x * CF.col2im(c, xs, kernel, stride, padding)).sum(), rtol=1e-10, atol=1e-10)


@given(geometries(), st.integers(0, 2**31 - 1))
def test_pooling_gradients_route_every_upstream_value(geometry, seed):
    """Max pooling sends each dA to exactly one input (Σ dX = Σ dA); average pooling spreads it, the share
    that falls on padding lost: Σ dX = <dA, avg_pool(ones)> (the backward is the forward's adjoint)."""
    xs, kernel, stride, padding = geometry
    padding = (min(padding[0], kernel[0] // 2), min(padding[1], kernel[1] // 2))
    rng = np.random.default_rng(seed)
    x = rng.normal(size=xs)
    for fn in (F.max_pool2d, F.avg_pool2d):
        X = Tensor(x, requires_grad=True)
        out = fn(X, kernel, stride, padding)
        g = rng.normal(size=out.shape)
        out.backward(g)
        if fn is F.max_pool2d:
            assert np.isclose(X.grad.sum(), g.sum())
            assert np.count_nonzero(X.grad) <= g.size
        else:
            share = F.avg_pool2d(np.ones(xs), kernel, stride, padding).data
            assert np.isclose(X.grad.sum(), (g * share).sum())


@pytest.mark.parametrize("kernel", [(1, 1), (1, 2), (2, 1), (16, 16), (17, 16)])
@pytest.mark.parametrize("fast", [False, True])
def test_max_pool_of_one_offset_and_of_windows_past_255_offsets(kernel, fast):
    """The max pool's argmax for a single-offset window (the copy, no comparison) and for windows of 256 offsets
    and more (argmax wider than uint8): outputs and dX equal a direct reference, ties to the first maximum."""
    if fast:
        pytest.importorskip("numba")
    rng = np.random.default_rng(7)
    # NOTE: rounded values: ties; a row or column no window reaches where the kernel is larger than 1
    x = np.round(rng.normal(size=(2, 3) + tuple(2 * k + (k > 1) for k in kernel)), 1)
    g = rng.normal(size=(2, 3, 2, 2))
    previous = F.use_fast_kernels(fast)
    try:
        X = Tensor(x, requires_grad=True)
        out = F.max_pool2d(X, kernel)
        out.backward(g)
    finally:
        F.use_fast_kernels(previous)
    want, dx = np.empty(g.shape), np.zeros(x.shape)
    for i in range(2):
        for j in range(2):
            window = x[:, :, i * kernel[0]:(i + 1) * kernel[0], j * kernel[1]:(j + 1) * kernel[1]]
            flat = window.reshape(2, 3, -1)
            want[:, :, i, j] = flat.max(axis=-1)
            first = flat.argmax(axis=-1)  # NOTE: the first maximum, as PyTorch
            for n in range(2):
                for c in range(3):
                    a, b = divmod(int(first[n, c]), kernel[1])
                    dx[n, c, i * kernel[0] + a, j * kernel[1] + b] += g[n, c, i, j]
    assert np.array_equal(out.data, want)
    assert np.array_equal(X.grad, dx)


def test_switching_kernels_between_forward_and_backward():
    """A max pool's backward follows the path its forward took (they store the argmax differently)."""
    pytest.importorskip("numba")
    x = distinct(np.random.default_rng(0), (2, 3, 6, 6))
    grads = []
    for first in (True, False):
        previous = F.use_fast_kernels(first)
        try:
            X = Tensor(x, requires_grad=True)
            out = F.max_pool2d(X, 3, 2, 1)
            F.use_fast_kernels(not first)
            out.backward(np.ones(out.shape))
            grads.append(X.grad)
        finally:
            F.use_fast_kernels(previous)
    np.testing.assert_array_equal(grads[0], grads[1])


def test_float16_uses_the_numpy_path():
    x = np.random.default_rng(0).normal(size=(1, 2, 5, 5)).astype(np.float16)
    w = np.random.default_rng(1).normal(size=(3, 2, 3, 3)).astype(np.float16)
    out = F.conv2d(x, w, padding=1)
    assert out.dtype == np.float16 and out.shape == (1, 3, 5, 5)
    assert F.max_pool2d(x, 2).dtype == np.float16


@settings(max_examples=80, deadline=None)
@given(nb=st.integers(1, 5), c=st.integers(1, 4), o=st.integers(1, 4), h=st.integers(1, 9), w=st.integers(1, 9),
       kh=st.integers(1, 5), kw=st.integers(1, 5), ph=st.integers(0, 2), pw=st.integers(0, 2),
       seed=st.integers(0, 2**31 - 1))
def test_wide_fold_of_several_images_equals_the_direct_sum(nb, c, o, h, w, kh, kw, ph, pw, seed):
    """``_fold_wide`` adds dX of a stride-1 convolution from dZ over wide rows, all of a chunk's images in one
    strided sum (each image's products in a padded plane of its rows): equal to the direct sum over the
    kernel offsets for every batch, kernel and padding, added to what ``dx`` held."""
    assume(h + 2 * ph >= kh and w + 2 * pw >= kw)
    rng = np.random.default_rng(seed)
    hp, wp = h + 2 * ph, w + 2 * pw
    oh, ow = hp - kh + 1, wp - kw + 1
    wt = rng.normal(size=(o, c, kh, kw))
    g = rng.normal(size=(nb, o, oh, ow))
    dz = np.zeros((o, nb, oh, wp))  # wide rows: dZ is 0 in the kw - 1 wide columns
    dz[..., :ow] = g.transpose(1, 0, 2, 3)
    before = rng.normal(size=(nb, c, h, w))
    dx = before.copy()
    work = np.full(CF._fold_work(nb, c * kh * kw, (kh, kw), oh, hp, wp), np.nan)  # NOTE: all of it written first
    CF._fold_wide(wt.reshape(o, -1), dz.reshape(o, -1), (kh, kw), (ph, pw), dx, work)
    dxp = np.zeros((nb, c, hp, wp))
    for i in range(kh):
        for j in range(kw):
            dxp[:, :, i:i + oh, j:j + ow] += np.einsum("oc,nohw->nchw", wt[:, :, i, j], g)
    np.testing.assert_allclose(dx, before + dxp[:, :, ph:ph + h, pw:pw + w], rtol=1e-12, atol=1e-12)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 3), c=st.integers(1, 3), h=st.integers(2, 13), w=st.integers(2, 13), k=st.integers(2, 3),
       dtype=st.sampled_from([np.float32, np.float64]), seed=st.integers(0, 2**31 - 1))
def test_numpy_max_pool_copied_offsets_equal_the_strided_loop(n, c, h, w, k, dtype, seed):
    """The NumPy path's tiling max pool copies the window offsets out first (up to _POOL_COPY_BYTES a part):
    outputs, argmax and dX equal the loop over the strided views, bit for bit, ties and odd sizes included."""
    from gradbox.nn import _conv_functional as CF

    assume(h >= k and w >= k)
    rng = np.random.default_rng(seed)
    x = np.maximum(rng.integers(-2, 3, size=(n, c, h, w)), 0).astype(dtype)  # NOTE: ReLU'd few values: ties
    g = rng.normal(size=(n, c, h // k, w // k)).astype(dtype)
    results = []
    previous, bytes_ = F.use_fast_kernels(False), CF._POOL_COPY_BYTES
    try:
        for limit in (bytes_, 0):  # the copy, then the strided views
            CF._POOL_COPY_BYTES = limit
            X = Tensor(x, requires_grad=True)
            out = F.max_pool2d(X, k)
            arg = out._ctx.argmax  # NOTE: before backward, which releases the box's cache
            out.backward(g)
            results.append((out.data, arg, X.grad))
    finally:
        CF._POOL_COPY_BYTES = bytes_
        F.use_fast_kernels(previous)
    for a, b in zip(*results):
        assert np.array_equal(a, b)


@pytest.mark.parametrize("seed", range(N_CONFIGS))
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_numpy_max_pool_shared_among_threads_gives_the_same_bits(seed, threads, monkeypatch):
    """The NumPy path's max pooling of a large batch is shared among gradbox's threads by planes: outputs
    and dX equal one pass over the whole batch, bit for bit, ties and -inf windows included."""
    rng, xs, kernel, stride, padding = pool_config(seed)
    xs = (int(rng.integers(2, 5)), int(rng.integers(1, 4))) + xs[2:]
    x = rng.integers(-2, 3, size=xs).astype(np.float64)  # NOTE: few values: many ties
    x[0, 0, :1] = -np.inf
    g = None

    def run():
        nonlocal g
        X = Tensor(x, requires_grad=True)
        out = F.max_pool2d(X, kernel, stride, padding)
        g = rng.normal(size=out.shape) if g is None else g
        out.backward(g)
        return out.data, X.grad

    previous = F.use_fast_kernels(False)
    try:
        want = run()
        monkeypatch.setattr(_blas, "pass_threads", lambda nbytes: threads)
        got = run()
    finally:
        F.use_fast_kernels(previous)
    for a, b in zip(got, want):
        assert np.array_equal(a, b)
