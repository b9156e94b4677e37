"""Conv2d, pooling and BatchNorm equal PyTorch in float64 (skipped without torch): outputs, input and
parameter gradients, running statistics over several steps, eval mode (1e-10), and a whole CNN
trained for a few steps (1e-9)."""
import numpy as np
import pytest

import gradbox as gb
from gradbox import Tensor, nn
from gradbox.nn import functional as F

from .test_conv import conv_config, distinct, kernels, pool_config  # noqa: F401 (kernels: the shared fixture)

torch = pytest.importorskip("torch")
TF = torch.nn.functional
TOL = 1e-10
TORCH_ERRORS = []


def rel(a, b):
    """gradbox.relative_error in float64, recorded for the summary test."""
    err = gb.relative_error(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64))
    TORCH_ERRORS.append(err)
    return err


def t(a, grad=True):
    return torch.tensor(np.asarray(a), dtype=torch.float64, requires_grad=grad)


@pytest.mark.parametrize("seed", range(24))
def test_conv2d_equals_torch(seed, kernels):
    rng, xs, ws, stride, padding = conv_config(seed)
    x, w, b = rng.normal(size=xs), rng.normal(size=ws), rng.normal(size=ws[0])
    X, W, B = (Tensor(a, requires_grad=True) for a in (x, w, b))
    out = F.conv2d(X, W, B, stride=stride, padding=padding)
    g = rng.normal(size=out.shape)
    out.backward(g)
    tx, tw, tb = t(x), t(w), t(b)
    tout = TF.conv2d(tx, tw, tb, stride=stride, padding=padding)
    tout.backward(torch.from_numpy(g))
    assert out.shape == tuple(tout.shape)
    for ours, theirs in ((out.data, tout), (X.grad, tx.grad), (W.grad, tw.grad), (B.grad, tb.grad)):
        assert rel(ours, theirs.detach().numpy()) < TOL


@pytest.mark.parametrize("padding", ["same", "valid"])
@pytest.mark.parametrize("kernel", [1, 3, (3, 5), (5, 1)])
def test_conv2d_padding_names_equal_torch(padding, kernel, kernels):
    rng = np.random.default_rng(7)
    conv = nn.Conv2d(2, 3, kernel, padding=padding, dtype=np.float64, rng=0)
    tconv = torch.nn.Conv2d(2, 3, kernel, padding=padding, dtype=torch.float64)
    with torch.no_grad():
        tconv.weight.copy_(torch.from_numpy(conv.weight.data))
        tconv.bias.copy_(torch.from_numpy(conv.bias.data))
    x = rng.normal(size=(2, 2, 7, 6))
    X, tx = Tensor(x, requires_grad=True), t(x)
    out, tout = conv(X), tconv(tx)
    assert out.shape == tuple(tout.shape)
    g = rng.normal(size=out.shape)
    out.backward(g)
    tout.backward(torch.from_numpy(g))
    for ours, theirs in ((out.data, tout), (X.grad, tx.grad), (conv.weight.grad, tconv.weight.grad),
                         (conv.bias.grad, tconv.bias.grad)):
        assert rel(ours, theirs.detach().numpy()) < TOL


@pytest.mark.parametrize("seed", range(24))
@pytest.mark.parametrize("kind", ["max", "avg"])
def test_pooling_equals_torch(seed, kind, kernels):
    rng, xs, kernel, stride, padding = pool_config(seed)
    x = distinct(rng, xs) if kind == "max" else rng.normal(size=xs)
    ours_fn, theirs_fn = (F.max_pool2d, TF.max_pool2d) if kind == "max" else (F.avg_pool2d, TF.avg_pool2d)
    X = Tensor(x, requires_grad=True)
    out = ours_fn(X, kernel, stride, padding)
    g = rng.normal(size=out.shape)
    out.backward(g)
    tx = t(x)
    tout = theirs_fn(tx, kernel, stride, padding)
    tout.backward(torch.from_numpy(g))
    assert rel(out.data, tout.detach().numpy()) < TOL
    assert rel(X.grad, tx.grad.numpy()) < TOL


def test_max_pool_ties_go_where_torch_sends_them(kernels):
    x = np.zeros((1, 1, 4, 4))
    x[0, 0, 1:3, 1:3] = 1.0  # four tied maxima shared by overlapping windows
    X = Tensor(x, requires_grad=True)
    F.max_pool2d(X, 2, 1).sum().backward()
    tx = t(x)
    TF.max_pool2d(tx, 2, 1).sum().backward()
    np.testing.assert_array_equal(X.grad, tx.grad.numpy())


def test_max_pool_of_minus_infinity_with_padding_goes_where_torch_sends_it(kernels):
    """Every real pixel -inf, as the padding: the gradient goes to the window's first real pixel."""
    x = np.full((1, 2, 5, 4), -np.inf)
    x[0, 1, 2, 2] = 1.0
    X = Tensor(x, requires_grad=True)
    out = F.max_pool2d(X, 3, 2, 1)
    out.sum().backward()
    tx = t(x)
    tout = TF.max_pool2d(tx, 3, 2, 1)
    tout.sum().backward()
    np.testing.assert_array_equal(out.data, tout.detach().numpy())
    np.testing.assert_array_equal(X.grad, tx.grad.numpy())


@pytest.mark.parametrize("kernel", [(2, 2), (3, 3), (2, 3), (1, 2)])
@pytest.mark.parametrize("size", [(8, 8), (7, 9), (5, 4)])
def test_tiling_max_pool_equals_torch_with_ties(kernel, size, kernels):
    """Windows that tile the input (stride = kernel, no padding: the backward writes each tile once),
    on a ReLU'd input full of tied zeros, odd sizes leaving rows and columns no window reaches."""
    rng = np.random.default_rng(sum(kernel) * 10 + sum(size))
    x = np.maximum(rng.normal(size=(3, 2) + size), 0.0)
    x[0, 0, :2, :2] = 0.5  # a window of four equal maxima
    X = Tensor(x, requires_grad=True)
    out = F.max_pool2d(X, kernel)
    g = rng.normal(size=out.shape)
    out.backward(g)
    tx = t(x)
    tout = TF.max_pool2d(tx, kernel)
    tout.backward(torch.from_numpy(g))
    np.testing.assert_array_equal(out.data, tout.detach().numpy())
    np.testing.assert_array_equal(X.grad, tx.grad.numpy())


@pytest.mark.parametrize("shape", [(6, 3), (5, 4, 7), (4, 3, 5, 6), (1, 2, 3, 3)])
def test_batch_norm_equals_torch_over_steps(shape):
    rng = np.random.default_rng(sum(shape))
    c = shape[1]
    ours = (nn.BatchNorm2d if len(shape) == 4 else nn.BatchNorm1d)(c, momentum=0.3, dtype=np.float64)
    theirs = (torch.nn.BatchNorm2d if len(shape) == 4 else torch.nn.BatchNorm1d)(c, momentum=0.3, dtype=torch.float64)
    w, b = rng.normal(size=c), rng.normal(size=c)
    ours.weight.data[:] = w
    ours.bias.data[:] = b
    with torch.no_grad():
        theirs.weight.copy_(torch.from_numpy(w))
        theirs.bias.copy_(torch.from_numpy(b))
    for step in range(4):
        x = rng.normal(1.5, 2.0, size=shape)
        g = rng.normal(size=shape)
        ours.zero_grad()
        X = Tensor(x, requires_grad=True)
        out = ours(X)
        out.backward(g)
        tx = t(x)
        theirs.zero_grad()
        tout = theirs(tx)
        tout.backward(torch.from_numpy(g))
        pairs = [(out.data, tout), (X.grad, tx.grad), (ours.weight.grad, theirs.weight.grad),
                 (ours.bias.grad, theirs.bias.grad), (ours.running_mean, theirs.running_mean),
                 (ours.running_var, theirs.running_var)]
        for a, b_ in pairs:
            assert rel(a, b_.detach().numpy()) < TOL, step
        assert int(ours.num_batches_tracked) == int(theirs.num_batches_tracked)
    ours.eval(), theirs.eval()
    x, g = rng.normal(size=shape), rng.normal(size=shape)
    X, tx = Tensor(x, requires_grad=True), t(x)
    out, tout = ours(X), theirs(tx)
    out.backward(g)
    tout.backward(torch.from_numpy(g))
    assert rel(out.data, tout.detach().numpy()) < TOL
    assert rel(X.grad, tx.grad.numpy()) < TOL


def twin_cnn(seed):
    """A CNN with every new layer, and its PyTorch twin with the same weights.

    NOTE: no bias before a BatchNorm (practice): its exact gradient is 0 and a relative error of ~1e-17 noise is meaningless.
    """
    ours = nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1, bias=False, dtype=np.float64, rng=seed), nn.BatchNorm2d(4, dtype=np.float64), nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(4, 6, (3, 2), stride=(1, 2), padding=(1, 0), bias=False, dtype=np.float64, rng=seed + 1),
        nn.BatchNorm2d(6, dtype=np.float64), nn.ReLU(), nn.AvgPool2d(2, stride=1, padding=1),
        nn.Flatten(), nn.Linear(6 * 5 * 3, 16, bias=False, dtype=np.float64, rng=seed + 2), nn.BatchNorm1d(16, dtype=np.float64),
        nn.ReLU(), nn.Linear(16, 5, dtype=np.float64, rng=seed + 3),
    )
    theirs = torch.nn.Sequential(
        torch.nn.Conv2d(2, 4, 3, padding=1, bias=False), torch.nn.BatchNorm2d(4), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(4, 6, (3, 2), stride=(1, 2), padding=(1, 0), bias=False), torch.nn.BatchNorm2d(6), torch.nn.ReLU(),
        torch.nn.AvgPool2d(2, stride=1, padding=1), torch.nn.Flatten(), torch.nn.Linear(90, 16, bias=False),
        torch.nn.BatchNorm1d(16), torch.nn.ReLU(), torch.nn.Linear(16, 5),
    ).double()
    rng = np.random.default_rng(seed)
    for (_, p), (_, tp) in zip(ours.named_parameters(), theirs.named_parameters()):
        if p.ndim == 1:
            p.data[:] = rng.normal(size=p.shape) * 0.1 + (1.0 if "weight" in _ else 0.0)
        with torch.no_grad():
            tp.copy_(torch.from_numpy(p.data))
    return ours, theirs


def test_whole_cnn_equals_torch_over_training_steps():
    ours, theirs = twin_cnn(3)
    opt = gb.optim.SGD(ours.parameters(), lr=0.05, momentum=0.9)
    topt = torch.optim.SGD(theirs.parameters(), lr=0.05, momentum=0.9)
    rng = np.random.default_rng(0)
    for step in range(5):
        X, y = rng.normal(size=(8, 2, 8, 8)), rng.integers(0, 5, size=8)
        opt.zero_grad()
        loss = nn.CrossEntropyLoss()(ours(X), y)
        loss.backward()
        topt.zero_grad()
        tloss = TF.cross_entropy(theirs(torch.from_numpy(X)), torch.from_numpy(y))
        tloss.backward()
        assert rel(loss.data, tloss.item()) < 1e-9
        for (name, p), tp in zip(ours.named_parameters(), theirs.parameters()):
            assert rel(p.grad, tp.grad.numpy()) < 1e-9, (step, name)
        opt.step()
        topt.step()
    for (name, b), (_, tb) in zip(ours.named_buffers(), theirs.named_buffers()):
        assert rel(b, tb.numpy()) < 1e-9, name
    ours.eval(), theirs.eval()
    X = rng.normal(size=(4, 2, 8, 8))
    with gb.no_grad(), torch.no_grad():
        assert rel(ours(X).data, theirs(torch.from_numpy(X)).numpy()) < 1e-9


@pytest.mark.parametrize("batch", [1, 3])
def test_scratch_arrays_reused_across_steps_keep_training_equal_to_torch(batch, kernels):
    """Columns, dZ and dcols large enough (>= 1 MB) to come back to the scratch list and serve the next
    step: several SGD steps, a no-grad forward in between, and a batch of 1 (where a transpose of the
    output or of the gradient is already contiguous, so a view would alias), all equal to torch."""
    rng = np.random.default_rng(batch)
    convs = [nn.Conv2d(6, 32, 3, padding=1, dtype=np.float64, rng=0),
             nn.Conv2d(32, 32, 5, padding=2, dtype=np.float64, rng=1)]
    ours = nn.Sequential(convs[0], nn.ReLU(), convs[1], nn.ReLU(), nn.Flatten(),
                         nn.Linear(32 * 24 * 24, 3, dtype=np.float64, rng=2))
    theirs = torch.nn.Sequential(torch.nn.Conv2d(6, 32, 3, padding=1), torch.nn.ReLU(),
                                 torch.nn.Conv2d(32, 32, 5, padding=2), torch.nn.ReLU(), torch.nn.Flatten(),
                                 torch.nn.Linear(32 * 24 * 24, 3)).double()
    with torch.no_grad():
        for p, tp in zip(ours.parameters(), theirs.parameters()):
            tp.copy_(torch.from_numpy(p.data))
    opt, topt = gb.optim.SGD(ours.parameters(), lr=0.01), torch.optim.SGD(theirs.parameters(), lr=0.01)
    kept = []
    for step in range(3):
        X, y = rng.normal(size=(batch, 6, 24, 24)), rng.integers(0, 3, size=batch)
        opt.zero_grad(), topt.zero_grad()
        loss = nn.CrossEntropyLoss()(ours(X), y)
        loss.backward()
        tloss = TF.cross_entropy(theirs(torch.from_numpy(X)), torch.from_numpy(y))
        tloss.backward()
        assert rel(loss.data, tloss.item()) < 1e-10
        for (name, p), tp in zip(ours.named_parameters(), theirs.parameters()):
            assert rel(p.grad, tp.grad.numpy()) < 1e-10, (step, name)
        opt.step(), topt.step()
        with gb.no_grad():  # outputs handed out are never scratch: an earlier one stays as it was
            out = nn.Sequential(convs[0], nn.ReLU(), convs[1])(X)
            kept.append((out, out.data.copy()))
    for out, copy in kept:
        np.testing.assert_array_equal(out.data, copy)
    from gradbox.nn import _conv_functional as CF
    assert 0 < len(CF._SCRATCH.free) <= CF._Scratch.SLOTS  # arrays came back, no more than the bound


def test_report_worst_error():
    """Prints the worst relative error of this file's comparisons (run after the others)."""
    assert TORCH_ERRORS and max(TORCH_ERRORS) < 1e-9
    print(f"\nworst relative error against torch: {max(TORCH_ERRORS):.2e} over {len(TORCH_ERRORS)} comparisons")
