"""Losses, gradients and optimizer steps match PyTorch autograd in float64 (skipped without torch)."""
import numpy as np
import pytest

import gradbox as gb
from gradbox import nn

torch = pytest.importorskip("torch")
RTOL = 1e-10


def rel(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    denom = np.linalg.norm(a) + np.linalg.norm(b)
    return 0.0 if denom == 0 else np.linalg.norm(a - b) / denom


ACTS = {
    "relu": (nn.ReLU, torch.nn.ReLU),
    "tanh": (nn.Tanh, torch.nn.Tanh),
    "sigmoid": (nn.Sigmoid, torch.nn.Sigmoid),
    "leaky_relu": (lambda: nn.LeakyReLU(0.05), lambda: torch.nn.LeakyReLU(0.05)),
}


def twin_networks(rng, dims, act, dropout=False):
    ours, theirs = [], []
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        lin = nn.Linear(a, b, dtype=np.float64, rng=int(rng.integers(1 << 30)))
        lin.bias.data[:] = rng.normal(size=b) * 0.1
        tl = torch.nn.Linear(a, b, dtype=torch.float64)
        with torch.no_grad():
            tl.weight.copy_(torch.from_numpy(lin.weight.data))
            tl.bias.copy_(torch.from_numpy(lin.bias.data))
        ours.append(lin)
        theirs.append(tl)
        if i < len(dims) - 2:
            ours.append(ACTS[act][0]())
            theirs.append(ACTS[act][1]())
    return nn.Sequential(*ours), torch.nn.Sequential(*theirs)


def compare_grads(ours, theirs):
    for (name, p), tp in zip(ours.named_parameters(), theirs.parameters()):
        assert p.shape == tuple(tp.shape), name
        assert rel(p.grad, tp.grad.numpy()) < RTOL, name


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("act", sorted(ACTS))
def test_random_mlp_cross_entropy_matches_torch(act, seed):
    rng = np.random.default_rng(seed)
    dims = [int(d) for d in rng.integers(1, 12, size=int(rng.integers(2, 6)))]
    dims[-1] = max(dims[-1], 2)
    ours, theirs = twin_networks(rng, dims, act)
    m = int(rng.integers(1, 20))
    X, y = rng.normal(size=(m, dims[0])), rng.integers(0, dims[-1], size=m)
    loss = nn.CrossEntropyLoss()(ours(X), y)
    tloss = torch.nn.CrossEntropyLoss()(theirs(torch.from_numpy(X)), torch.from_numpy(y))
    assert rel(loss.item(), tloss.item()) < RTOL
    loss.backward()
    tloss.backward()
    compare_grads(ours, theirs)


@pytest.mark.parametrize("seed", range(10))
def test_bce_with_logits_and_input_gradient_match_torch(seed):
    rng = np.random.default_rng(50 + seed)
    ours, theirs = twin_networks(rng, [5, 7, 4, 1], "tanh")
    X = rng.normal(size=(9, 5))
    y = rng.integers(0, 2, size=(9, 1)).astype(np.float64)
    x_ours = gb.Tensor(X, requires_grad=True)
    x_t = torch.tensor(X, requires_grad=True)
    loss = nn.BCEWithLogitsLoss()(ours(x_ours), y)
    tloss = torch.nn.BCEWithLogitsLoss()(theirs(x_t), torch.from_numpy(y))
    assert rel(loss.item(), tloss.item()) < RTOL
    loss.backward()
    tloss.backward()
    compare_grads(ours, theirs)
    assert rel(x_ours.grad, x_t.grad.numpy()) < RTOL


@pytest.mark.parametrize("seed", range(10))
def test_mse_regression_matches_torch(seed):
    rng = np.random.default_rng(80 + seed)
    ours, theirs = twin_networks(rng, [3, 8, 8, 2], "sigmoid")
    X, Y = rng.normal(size=(6, 3)), rng.normal(size=(6, 2))
    loss = nn.MSELoss()(ours(X), Y)
    tloss = torch.nn.MSELoss()(theirs(torch.from_numpy(X)), torch.from_numpy(Y))
    assert rel(loss.item(), tloss.item()) < RTOL
    loss.backward()
    tloss.backward()
    compare_grads(ours, theirs)


def test_extreme_logits_match_torch():
    z = np.array([[1e3, -1e3, 0.0], [-800.0, 750.0, 3.0]])
    y = np.array([1, 0])
    ours = gb.Tensor(z, requires_grad=True)
    tz = torch.tensor(z, requires_grad=True)
    loss = nn.CrossEntropyLoss()(ours, y)
    tloss = torch.nn.functional.cross_entropy(tz, torch.from_numpy(y))
    loss.backward()
    tloss.backward()
    assert np.isfinite(loss.item()) and rel(loss.item(), tloss.item()) < RTOL
    assert rel(ours.grad, tz.grad.numpy()) < RTOL
    b = np.array([1e4, -1e4, 30.0, -30.0])
    t = np.array([0.0, 1.0, 1.0, 0.0])
    ob = gb.Tensor(b, requires_grad=True)
    tb = torch.tensor(b, requires_grad=True)
    l1 = nn.BCEWithLogitsLoss()(ob, t)
    l2 = torch.nn.functional.binary_cross_entropy_with_logits(tb, torch.from_numpy(t))
    l1.backward()
    l2.backward()
    assert rel(l1.item(), l2.item()) < RTOL and rel(ob.grad, tb.grad.numpy()) < RTOL


@pytest.mark.parametrize(
    "op",
    ["softmax", "log_softmax", "sigmoid", "tanh", "relu", "exp", "log_sigmoid", "max", "mean", "maximum", "pow"],
)
def test_ops_match_torch(op):
    rng = np.random.default_rng(7)
    x = rng.normal(size=(4, 5)) * 3
    other = rng.normal(size=(5,))
    g = rng.normal(size=(4, 5))
    ours = gb.Tensor(np.abs(x) if op == "pow" else x, requires_grad=True)
    theirs = torch.tensor(ours.data, requires_grad=True)
    f_ours = {
        "softmax": lambda t: gb.softmax(t, axis=1), "log_softmax": lambda t: gb.log_softmax(t, axis=0),
        "sigmoid": gb.sigmoid, "tanh": gb.tanh, "relu": gb.relu, "exp": gb.exp, "log_sigmoid": gb.log_sigmoid,
        "max": lambda t: t.max(axis=1, keepdims=True) * 1.0, "mean": lambda t: t.mean(axis=0, keepdims=True),
        "maximum": lambda t: gb.maximum(t, other), "pow": lambda t: t**1.5,
    }[op]
    f_theirs = {
        "softmax": lambda t: torch.softmax(t, 1), "log_softmax": lambda t: torch.log_softmax(t, 0),
        "sigmoid": torch.sigmoid, "tanh": torch.tanh, "relu": torch.relu, "exp": torch.exp,
        "log_sigmoid": torch.nn.functional.logsigmoid,
        "max": lambda t: t.amax(1, keepdim=True), "mean": lambda t: t.mean(0, keepdim=True),
        "maximum": lambda t: torch.maximum(t, torch.from_numpy(other)), "pow": lambda t: t**1.5,
    }[op]
    out, tout = f_ours(ours), f_theirs(theirs)
    assert rel(out.data, tout.detach().numpy()) < RTOL
    gg = np.broadcast_to(g[:, :1] if out.shape[1] == 1 else g[:1] if out.shape[0] == 1 else g, out.shape).copy()
    out.backward(gg)
    tout.backward(torch.from_numpy(gg))
    assert rel(ours.grad, theirs.grad.numpy()) < RTOL


OPTIMS = [
    ("SGD", dict(lr=0.1), dict(lr=0.1)),
    ("SGD", dict(lr=0.05, momentum=0.9), dict(lr=0.05, momentum=0.9)),
    ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3),
     dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3)),
    ("RMSprop", dict(lr=0.01, alpha=0.9, weight_decay=1e-3), dict(lr=0.01, alpha=0.9, weight_decay=1e-3)),
    ("Adam", dict(lr=0.01, weight_decay=1e-3), dict(lr=0.01, weight_decay=1e-3)),
    ("AdamW", dict(lr=0.01), dict(lr=0.01)),
]


@pytest.mark.parametrize("name,kw,tkw", OPTIMS)
def test_optimizer_trajectories_match_torch(name, kw, tkw):
    rng = np.random.default_rng(3)
    ours, theirs = twin_networks(rng, [4, 6, 3], "relu")
    opt = getattr(gb.optim, name)(ours.parameters(), **kw)
    topt = getattr(torch.optim, name)(theirs.parameters(), **tkw)
    for step in range(8):
        X, y = rng.normal(size=(10, 4)), rng.integers(0, 3, size=10)
        opt.zero_grad()
        topt.zero_grad()
        nn.CrossEntropyLoss()(ours(X), y).backward()
        torch.nn.functional.cross_entropy(theirs(torch.from_numpy(X)), torch.from_numpy(y)).backward()
        opt.step()
        topt.step()
    for p, tp in zip(ours.parameters(), theirs.parameters()):
        assert rel(p.data, tp.detach().numpy()) < 1e-9, name
