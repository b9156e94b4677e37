"""Optimizers: they train, validate their arguments, and resume exactly."""
import numpy as np
import pytest

import gradbox as gb
from gradbox import nn, optim

CONFIGS = [
    ("SGD", dict(lr=0.5)),
    ("SGD", dict(lr=0.1, momentum=0.9)),
    ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4)),
    ("RMSprop", dict(lr=0.01)),
    ("Adam", dict(lr=0.01)),
    ("AdamW", dict(lr=0.01, weight_decay=0.01)),
]


def spiral_problem(seed=0):
    rng = np.random.default_rng(seed)
    n = 60
    t = np.linspace(0.2, 3.5, n)
    X = np.concatenate([np.c_[t * np.cos(t + k * 2.1), t * np.sin(t + k * 2.1)] for k in range(3)]).astype(np.float32)
    X += rng.normal(scale=0.05, size=X.shape).astype(np.float32)
    y = np.repeat(np.arange(3), n)
    return X, y


def make_model(seed=0):
    return nn.Sequential(nn.Linear(2, 32, rng=seed), nn.Tanh(), nn.Linear(32, 3, rng=seed + 1))


@pytest.mark.parametrize("name,kwargs", CONFIGS)
def test_each_optimizer_drives_the_loss_down(name, kwargs):
    X, y = spiral_problem()
    model = make_model()
    opt = getattr(optim, name)(model.parameters(), **kwargs)
    loss_fn = nn.CrossEntropyLoss()
    losses = []
    for _ in range(150):
        loss = loss_fn(model(X), y)  # 1. forward and 2. cost
        opt.zero_grad()
        loss.backward()  # 3. backward
        opt.step()  # 4. update
        losses.append(loss.item())
    assert losses[-1] < 0.6 * losses[0], (name, losses[0], losses[-1])
    assert all(np.isfinite(losses))


@pytest.mark.parametrize(
    "factory,message",
    [
        (lambda p: optim.SGD(p, lr=-0.1), r"SGD\(lr\): expected a finite number >= 0.0, received -0.1"),
        (lambda p: optim.SGD(p, lr=float("nan")), r"SGD\(lr\): expected a finite number"),
        (lambda p: optim.SGD(p, lr=0.1, momentum=1.5), r"SGD\(momentum\): expected a finite number >= 0.0 and < 1.0"),
        (lambda p: optim.SGD(p, lr=0.1, nesterov=True), r"SGD\(nesterov=True\): expected momentum > 0"),
        (lambda p: optim.Adam(p, betas=(0.9,)), r"Adam\(betas\): expected a pair"),
        (lambda p: optim.Adam(p, eps=0), r"Adam\(eps\): expected a finite number > 0.0"),
        (lambda p: optim.RMSprop(p, alpha=1.0), r"RMSprop\(alpha\)"),
        (lambda p: optim.AdamW(p, weight_decay=-1), r"AdamW\(weight_decay\)"),
    ],
)
def test_arguments_are_validated(factory, message):
    with pytest.raises(ValueError, match=message):
        factory(make_model().parameters())


def test_params_must_be_ordered_and_non_empty():
    model = make_model()
    with pytest.raises(TypeError, match="received a set"):
        optim.SGD(set(model.parameters()), lr=0.1)
    with pytest.raises(ValueError, match="expected at least one parameter"):
        optim.SGD([], lr=0.1)
    with pytest.raises(TypeError, match=r"params\[0\]\): expected a Tensor with requires_grad=True"):
        optim.SGD([gb.Tensor([1.0])], lr=0.1)


def test_the_update_is_the_notes_rule():
    w = nn.Parameter(np.array([1.0, 2.0]))
    w.grad = np.array([0.5, -1.0])
    optim.SGD([w], lr=0.1).step()
    np.testing.assert_allclose(w.data, [1.0 - 0.05, 2.0 + 0.1])


def test_parameters_without_grad_are_left_alone():
    a, b = nn.Parameter(np.ones(2)), nn.Parameter(np.ones(2))
    a.grad = np.ones(2)
    optim.Adam([a, b], lr=0.1).step()
    np.testing.assert_array_equal(b.data, np.ones(2))
    assert not np.array_equal(a.data, np.ones(2))


def run(model, opt, steps):
    """``steps`` full-batch training steps on the spiral problem."""
    X, y = spiral_problem()
    loss_fn = nn.CrossEntropyLoss()
    for _ in range(steps):
        opt.zero_grad()
        loss_fn(model(X), y).backward()
        opt.step()


@pytest.mark.parametrize("name,kwargs", CONFIGS)
def test_state_dict_resumes_exactly(name, kwargs):
    ref = make_model()
    ref_opt = getattr(optim, name)(ref.parameters(), **kwargs)
    run(ref, ref_opt, 10)

    first = make_model()
    first_opt = getattr(optim, name)(first.parameters(), **kwargs)
    run(first, first_opt, 4)
    saved_model, saved_opt = first.state_dict(), first_opt.state_dict()

    resumed = make_model(seed=7)  # different start: everything must come from the state
    resumed.load_state_dict(saved_model)
    opt = getattr(optim, name)(resumed.parameters(), lr=0.123)
    opt.load_state_dict(saved_opt)
    run(resumed, opt, 6)
    for p, q in zip(ref.parameters(), resumed.parameters()):
        np.testing.assert_array_equal(p.data, q.data)


def test_dropping_the_optimizer_state_would_be_caught():
    """Negative control: a resume that forgets momentum differs from the uninterrupted run."""
    ref = make_model()
    run(ref, optim.SGD(ref.parameters(), lr=0.1, momentum=0.9), 6)
    part = make_model()
    run(part, optim.SGD(part.parameters(), lr=0.1, momentum=0.9), 3)
    run(part, optim.SGD(part.parameters(), lr=0.1, momentum=0.9), 3)  # a fresh optimizer: state lost
    assert not np.array_equal(ref[0].weight.data, part[0].weight.data)


def test_load_state_dict_validates():
    model = make_model()
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    with pytest.raises(ValueError, match="expected state of a SGD, received 'Adam'"):
        opt.load_state_dict(optim.Adam(model.parameters()).state_dict())
    sd = opt.state_dict()
    sd["state"] = {"0.momentum_buffer": np.zeros(3, dtype=np.float32)}
    with pytest.raises(ValueError, match=r"expected float32 array of shape \(32, 2\)"):
        opt.load_state_dict(sd)
