"""Sequential's fused layers (``fuse_layers``): a ReLU directly followed by a MaxPool2d runs after the pooling,
with the outputs and gradients of the order written (ties, all-negative windows, padding and overlapping
windows included); a Conv2d directly followed by a tiling MaxPool2d (and a ReLU) runs as one box, bit for bit
the boxes' values and gradients on every chunked path; only exactly those layers are fused, and it can be
switched off."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gradbox as gb
from gradbox import Tensor, nn

from gradbox.nn import _conv_functional as CF

from ..conftest import gradcheck_ok
from .test_conv import chunked, distinct, kernels  # noqa: F401 (the shared fixtures: NumPy path and compiled kernels)


def _run(model, x, g, swap, needs_x=True):
    """Output and input gradient of ``model`` on ``x`` with the cotangent ``g``, swapped or as written."""
    model.fuse_layers = swap
    for p in model.parameters():
        p.grad = None
    X = Tensor(x, requires_grad=needs_x)
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


def test_the_graph_shows_what_ran_and_the_switch_restores_the_layers_as_written():
    model = nn.Sequential(nn.Conv2d(1, 2, 3, rng=0), nn.ReLU(), nn.MaxPool2d(2))
    x = Tensor(np.ones((1, 1, 6, 6), np.float32))
    assert _box_names(model(x)) == ["Conv2dMaxPoolFunction"]  # the ReLU after the pooling, in the box
    model.fuse_layers = False
    assert _box_names(model(x)) == ["MaxPool2dFunction", "ReLU", "Conv2dFunction"]
    model.fuse_layers = True
    model.append(nn.ReLU()).append(nn.MaxPool2d(2))  # a module added later is part of the order
    assert _box_names(model(Tensor(np.ones((1, 1, 10, 10), np.float32)))) == [
        "ReLU", "MaxPool2dFunction", "Conv2dMaxPoolFunction"]
    model[2].stride = 1  # no longer tiling: the convolution and the pooling run one after the other
    assert _box_names(model(Tensor(np.ones((1, 1, 10, 10), np.float32)))) == [
        "ReLU", "MaxPool2dFunction", "ReLU", "MaxPool2dFunction", "Conv2dFunction"]


class MyReLU(nn.ReLU):
    pass


@pytest.mark.parametrize("layers", [
    [nn.ReLU(), nn.AvgPool2d(2)],          # averaging does not commute with ReLU
    [nn.Conv2d(1, 1, 1), nn.AvgPool2d(2)],  # only max pooling is fused with a convolution
    [nn.Conv2d(1, 1, 1), nn.BatchNorm2d(1), nn.MaxPool2d(2)],  # not adjacent
    [nn.Tanh(), nn.MaxPool2d(2)],          # only ReLU keeps the ties of a window as they were
    [MyReLU(), nn.MaxPool2d(2)],           # a subclass may compute something else
    [nn.MaxPool2d(2), nn.ReLU()],          # already in that order
], ids=["avg-pool", "conv-avg-pool", "conv-bn-pool", "tanh", "relu-subclass", "pool-first"])
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
    monkeypatch.setattr(nn.Sequential, "fuse_layers", False)
    assert _box_names(model(x)) == ["MaxPool2dFunction", "ReLU"]


def _conv_pool_model(c, o, k, padding, pool, dtype, seed, relu=False):
    conv = nn.Conv2d(c, o, k, padding=padding, dtype=dtype, rng=seed)
    return nn.Sequential(conv, nn.MaxPool2d(pool), *([nn.ReLU()] if relu else []))


@pytest.mark.parametrize("relu", [False, True], ids=["conv-pool", "conv-pool-relu"])
@pytest.mark.parametrize("seed", range(6))
def test_fused_convolution_and_pooling_equal_the_two_boxes_bit_for_bit(seed, relu, chunked):
    rng = np.random.default_rng(seed)
    k, pool = int(rng.integers(1, 4)), tuple(int(p) for p in rng.integers(1, 4, size=2))
    c, o, n = int(rng.integers(1, 4)), int(rng.integers(1, 5)), int(rng.integers(1, 7))
    h, w = int(rng.integers(k + pool[0], 13)), int(rng.integers(k + pool[1], 13))
    padding = int(rng.integers(0, 2))
    dtype = (np.float32, np.float64)[seed % 2]
    model = _conv_pool_model(c, o, k, padding, pool, dtype, seed, relu)
    x = (rng.integers(-4, 5, size=(n, c, h, w)) * 0.5).astype(dtype)  # ties within windows, zeros
    g = rng.standard_normal(model(x).shape).astype(dtype)
    fused, written = _run(model, x, g, True), _run(model, x, g, False)
    model.fuse_layers = True
    assert [type(m).__name__ for m in model._make_order()] == ["_ConvMaxPool"]
    assert _box_names(model(x)) == ["Conv2dMaxPoolFunction"]
    for a, b in zip([fused[0], fused[1], *fused[2]], [written[0], written[1], *written[2]]):
        assert a.dtype == b.dtype and a.shape == b.shape
        assert np.array_equal(a, b) and np.array_equal(np.signbit(a), np.signbit(b))


def test_fused_box_in_a_whole_cnn_trains_as_the_layers_as_written(kernels):
    def make():
        return nn.Sequential(nn.Conv2d(1, 6, 5, padding=2, rng=0), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Conv2d(6, 16, 5, rng=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                             nn.Linear(400, 10, rng=2))
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((64, 1, 28, 28)).astype(np.float32), rng.integers(0, 10, 64)
    params = []
    for fuse in (True, False):
        model = make()
        model.fuse_layers = fuse
        opt = gb.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        for step in range(3):
            opt.zero_grad()
            nn.CrossEntropyLoss()(model(X[step * 16:step * 16 + 48]), y[step * 16:step * 16 + 48]).backward()
            opt.step()
        params.append([p.data.copy() for p in model.parameters()])
    for a, b in zip(*params):
        np.testing.assert_array_equal(a, b)


def test_fused_pair_keeps_the_layers_errors():
    model = nn.Sequential(nn.Conv2d(3, 2, 3, rng=0), nn.MaxPool2d(2))
    with pytest.raises(ValueError, match=r"Conv2d\(in_channels=3\): expected input of shape \(N, 3, H, W\), "
                                          r"received \(2, 1, 8, 8\)"):
        model(np.zeros((2, 1, 8, 8), np.float32))
    with pytest.raises(ValueError, match=r"MaxPool2d.*expected a kernel no larger than the padded input"):
        nn.Sequential(nn.Conv2d(1, 2, 3, rng=0), nn.MaxPool2d(4))(np.zeros((1, 1, 5, 5), np.float32))
    with pytest.raises(TypeError, match="expected input of dtype float32, received float64"):
        model(np.zeros((1, 3, 8, 8)))
    assert isinstance(CF.Conv2dMaxPoolFunction(), CF.Conv2dFunction)


def test_the_pooling_runs_inside_the_compiled_parts_only(kernels):
    from gradbox import _blas

    model = nn.Sequential(nn.Conv2d(1, 6, 5, padding=2, rng=0), nn.MaxPool2d(2))
    x = Tensor(np.random.default_rng(0).standard_normal((48, 1, 28, 28)).astype(np.float32), requires_grad=True)
    out = model(x)  # 48 images of 78 KB columns: chunked
    box = out._ctx
    assert type(box) is CF.Conv2dMaxPoolFunction and box.chunks is not None
    # the NumPy path pools after the chunks (its pooling inside two threads' parts was slower)
    assert box.fused is (kernels == "fast" and _blas.gemm_address(np.float32) != 0)
    assert (box.__dict__.get("argmax") is not None) is box.fused


def test_fused_lenet_equals_torch_over_training_steps(kernels):
    """LeNet's blocks fused (a chunked batch: the pooling inside the compiled parts) against PyTorch, float64."""
    torch = pytest.importorskip("torch")
    ours = nn.Sequential(nn.Conv2d(1, 6, 5, padding=2, dtype=np.float64, rng=0), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(6, 16, 5, dtype=np.float64, rng=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(400, 10, dtype=np.float64, rng=2))
    theirs = torch.nn.Sequential(torch.nn.Conv2d(1, 6, 5, padding=2), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
                                 torch.nn.Conv2d(6, 16, 5), torch.nn.ReLU(), torch.nn.MaxPool2d(2), torch.nn.Flatten(),
                                 torch.nn.Linear(400, 10)).double()
    with torch.no_grad():
        for p, tp in zip(ours.parameters(), theirs.parameters()):
            tp.copy_(torch.from_numpy(p.data))
    assert [type(m).__name__ for m in ours._make_order()] == ["_ConvStack", "Flatten", "Linear"]
    opt = gb.optim.SGD(ours.parameters(), lr=0.05, momentum=0.9)
    topt = torch.optim.SGD(theirs.parameters(), lr=0.05, momentum=0.9)
    rng = np.random.default_rng(0)
    for step in range(3):
        X, y = rng.normal(size=(24, 1, 28, 28)), rng.integers(0, 10, size=24)  # 24 x 157 KB of columns: chunked
        opt.zero_grad()
        loss = nn.CrossEntropyLoss()(ours(X), y)
        loss.backward()
        topt.zero_grad()
        tloss = torch.nn.functional.cross_entropy(theirs(torch.from_numpy(X)), torch.from_numpy(y))
        tloss.backward()
        assert gb.relative_error(np.asarray(loss.data), np.asarray(tloss.item())) < 1e-10
        for p, tp in zip(ours.parameters(), theirs.parameters()):
            assert gb.relative_error(p.grad, tp.grad.numpy()) < 1e-10, step
        opt.step()
        topt.step()


def _stack_model(rng, dtype, seed):
    """2-3 blocks (Conv2d, MaxPool2d and a ReLU or not) in a row, random geometry, some without bias, then
    Flatten: Sequential runs them as one _ConvStack; and an input that fits them."""
    layers, c = [], int(rng.integers(1, 3))
    h = w = int(rng.integers(12, 16))
    h0, c0 = h, c
    for j in range(int(rng.integers(2, 4))):
        k, pool, padding = int(rng.integers(1, 4)), int(rng.integers(1, 4)), int(rng.integers(0, 2))
        if (h + 2 * padding - k + 1) // pool < 1:
            k, pool, padding = 1, 1, 0
        o = int(rng.integers(1, 4))
        layers += [nn.Conv2d(c, o, k, padding=padding, bias=bool(rng.integers(0, 4)), dtype=dtype, rng=seed + j),
                   nn.MaxPool2d(pool)] + ([nn.ReLU()] if rng.integers(0, 2) else [])
        c, h = o, (h + 2 * padding - k + 1) // pool
    return nn.Sequential(*layers, nn.Flatten()), (c0, h0, w)


@pytest.fixture(params=["chunks", "one-chunk"])
def share(request, chunked, monkeypatch):
    """On top of ``chunked``: one-image chunks, or each thread's share of the batch as one chunk (whose
    columns the stack box keeps from its forward for its backward)."""
    if request.param == "one-chunk":
        monkeypatch.setitem(CF._SHARE_BYTES, "numpy", 1 << 40)
    return request.param


@pytest.mark.parametrize("seed", range(8))
def test_stacked_blocks_equal_the_layers_as_written_bit_for_bit(seed, share):
    """Blocks in a row as one box (Conv2dStackFunction: each thread's images through every block in one part,
    on the NumPy path, the columns kept where each thread has one chunk), or block by block: the values and
    gradients of the layers as written, bit for bit, on every chunked path, with the input needing a gradient
    or not."""
    from gradbox import _blas

    rng = np.random.default_rng(seed)
    dtype = (np.float32, np.float64)[seed % 2]
    model, (c, h, w) = _stack_model(rng, dtype, seed)
    n = int(rng.integers(1, 7))
    x = (rng.integers(-4, 5, size=(n, c, h, w)) * 0.5).astype(dtype)  # ties within windows, zeros
    g = rng.standard_normal(model(x).shape).astype(dtype)
    model.fuse_layers = True
    assert [type(m).__name__ for m in model._make_order()] == ["_ConvStack", "Flatten"]
    stacked = _box_names(model(Tensor(x, requires_grad=True)))[1]
    merges = CF._kernels(np.dtype(dtype)) is None and n > 1 and _blas.threads() > 1
    assert stacked == ("Conv2dStackFunction" if merges else "Conv2dMaxPoolFunction")
    for needs_x in (True, False):
        got, want = _run(model, x, g, True, needs_x), _run(model, x, g, False, needs_x)
        for a, b in zip([got[0], got[1], *got[2]], [want[0], want[1], *want[2]]):
            assert (a is None) == (b is None)
            if a is not None:
                assert a.dtype == b.dtype and a.shape == b.shape
                assert np.array_equal(a, b) and np.array_equal(np.signbit(a), np.signbit(b))


def test_stacked_blocks_with_frozen_parameters_and_a_second_backward(share):
    """A frozen block (no dW, db) before or after one that learns: the written layers' gradients; and a second
    backward (retain_graph) that reads the same cache (the kept columns too): exactly twice the first
    gradients."""
    rng = np.random.default_rng(3)
    for frozen in (0, 3):
        model = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1, dtype=np.float64, rng=0), nn.ReLU(), nn.MaxPool2d(2),
                              nn.Conv2d(3, 4, 3, dtype=np.float64, rng=1), nn.MaxPool2d(2), nn.ReLU())
        for p in model[frozen].parameters():
            p.requires_grad = False
        x = rng.normal(size=(5, 2, 12, 10))
        g = rng.normal(size=model(x).shape)
        got, want = _run(model, x, g, True, False), _run(model, x, g, False, False)
        for a, b in zip(got[2], want[2]):
            assert (a is None) == (b is None) and (a is None or np.array_equal(a, b))
        assert sum(a is None for a in got[2]) == 2  # the frozen block's weight and bias
        for p in model.parameters():
            p.grad = None
        out = model(x)
        box = out._ctx
        kept = type(box) is CF.Conv2dStackFunction and share == "one-chunk"
        assert (box.__dict__.get("bufs") is not None) is kept
        out.backward(g, retain_graph=True)
        first = [None if p.grad is None else p.grad.copy() for p in model.parameters()]
        out.backward(g)
        for a, p in zip(first, model.parameters()):
            assert (a is None and p.grad is None) or np.array_equal(p.grad, 2 * a)


@pytest.mark.parametrize("threads", [2, 3])
@pytest.mark.parametrize("wide", [False, True], ids=["short-rows", "wide-rows"])
@pytest.mark.parametrize("seed", range(3))
def test_stacked_blocks_pass_gradcheck(seed, wide, threads, monkeypatch):
    """The stack box itself, float64 central differences, for x and every block's W and b (NumPy path, every
    convolution chunked by image on 2-3 threads, as the chunked fixture does)."""
    from gradbox import _blas
    from gradbox.nn import functional as F

    previous = F.use_fast_kernels(False)
    monkeypatch.setattr(CF, "_CHUNK_BYTES", 1)
    monkeypatch.setitem(CF._SHARE_BYTES, "numpy", 0)
    monkeypatch.setitem(CF._WIDE_CHUNK_ROWS, "numpy", 1 if wide else None)
    monkeypatch.setattr(_blas, "threads", lambda: threads)
    try:
        rng = np.random.default_rng(100 + seed)
        c, o1, o2 = (int(v) for v in rng.integers(1, 4, size=3))
        k1, k2 = (int(v) for v in rng.integers(1, 4, size=2))
        n = int(rng.integers(2, 5))
        x = distinct(rng, (n, c, 11, 12))
        w1, b1 = rng.normal(size=(o1, c, k1, k1)), rng.normal(size=o1)
        w2, b2 = rng.normal(size=(o2, o1, k2, k2)), rng.normal(size=o2)
        blocks = ((True, (1, 1), (1, 1), (2, 2), True), (True, (1, 1), (0, 0), (2, 2), False))
        specs = [(w1.shape, (1, 1), (1, 1), (2, 2)), (w2.shape, (1, 1), (0, 0), (2, 2))]
        plan = CF._stack_plan(x.shape, x.dtype, specs)
        assert plan is not None and len(plan[0][0]) == min(threads, n)
        gradcheck_ok(lambda *t: CF.Conv2dStackFunction.apply(*t, blocks=blocks, plan=plan), [x, w1, b1, w2, b2])
    finally:
        F.use_fast_kernels(previous)
