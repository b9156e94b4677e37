"""The optimizers equal torch.optim in float64 step for step, per-parameter step counts included.

One parameter first receives a gradient at step 2 (its ``grad`` is None at step 1, so it is skipped)
and another misses step 4: PyTorch counts steps per parameter, and so must Adam's bias correction.
"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gradbox as gb
from gradbox import optim

torch = pytest.importorskip("torch")

SHAPES = [(4, 3), (5,), (2, 3, 2)]
STEPS = 7
# (step, parameter index) pairs where the parameter has no gradient
MISSING = {(1, 1), (4, 2)}

CASES = [
    ("Adam", dict(lr=0.01), {}),
    ("Adam", dict(lr=0.05, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1), {}),
    ("AdamW", dict(lr=0.01), {}),
    ("AdamW", dict(lr=0.05, weight_decay=0.3, betas=(0.5, 0.9)), {}),
    ("AdamW", dict(lr=0.01, weight_decay=0.0), {}),
    ("RMSprop", dict(lr=0.01), {}),
    ("RMSprop", dict(lr=0.02, alpha=0.9, eps=1e-6, weight_decay=0.1), {}),
    ("SGD", dict(lr=0.1), {}),
    ("SGD", dict(lr=0.1, weight_decay=0.05), {}),
    ("SGD", dict(lr=0.05, momentum=0.9), {}),
    ("SGD", dict(lr=0.05, momentum=0.5, weight_decay=0.1), {}),
    ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01), {}),
]
IDS = [f"{name}-{'-'.join(f'{k}={v}' for k, v in kw.items())}" for name, kw, _ in CASES]


def gradients(seed=0, missing=MISSING):
    rng = np.random.default_rng(seed)
    return [[None if (t, i) in missing else rng.standard_normal(s) * 10.0 ** rng.integers(-2, 2)
             for i, s in enumerate(SHAPES)] for t in range(1, STEPS + 1)]


def run_gradbox(name, kwargs, fused=None, seed=0, cls=None, missing=MISSING):
    rng = np.random.default_rng(100 + seed)
    params = [gb.nn.Parameter(rng.standard_normal(s)) for s in SHAPES]
    opt = (cls or getattr(optim, name))(params, fused=fused, **kwargs)
    for grads in gradients(seed, missing):
        for p, g in zip(params, grads):
            p.grad = None if g is None else g.copy()
        opt.step()
    return opt, [p.data for p in params]


def run_torch(name, kwargs, seed=0, missing=MISSING):
    rng = np.random.default_rng(100 + seed)
    params = [torch.tensor(rng.standard_normal(s), dtype=torch.float64, requires_grad=True) for s in SHAPES]
    opt = getattr(torch.optim, name)(params, **kwargs)
    for grads in gradients(seed, missing):
        for p, g in zip(params, grads):
            p.grad = None if g is None else torch.tensor(g)
        opt.step()
    return opt, [p.detach().numpy() for p in params]


@pytest.mark.parametrize("name,kwargs,_", CASES, ids=IDS)
def test_equals_pytorch_in_float64_with_a_parameter_that_starts_late(name, kwargs, _):
    ours, w_ours = run_gradbox(name, kwargs)
    theirs, w_theirs = run_torch(name, kwargs)
    assert all(w.dtype == np.float64 for w in w_ours)
    for a, b in zip(w_ours, w_theirs):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    for i, tp in enumerate(theirs.param_groups[0]["params"]):
        ts = theirs.state[tp]
        if "step" in ts:  # SGD keeps no step count, in either library
            assert ours.state[i]["step"] == int(ts["step"])
        for key in ("exp_avg", "exp_avg_sq", "square_avg", "momentum_buffer"):
            if key in ts and ts[key] is not None:
                np.testing.assert_allclose(ours.state[i][key], ts[key].numpy(), rtol=1e-10, atol=1e-12)


def test_the_late_parameter_counts_its_own_steps():
    opt, _ = run_gradbox("Adam", dict(lr=0.01))
    assert opt.step_count == STEPS
    assert [s["step"] for s in opt.state] == [STEPS, STEPS - 1, STEPS - 1]


def test_a_global_step_count_would_be_caught():
    """Negative control: bias correction by the optimizer's step count (0.1's rule) misses PyTorch."""
    ours, w_ours = run_gradbox("Adam", dict(lr=0.05))

    class GlobalStepAdam(optim.Adam):
        def _update(self, w, g, state):
            super()._update(w, g, state)
            state["step"] = self.step_count  # the next update uses the global count

    _, w_global = run_gradbox("Adam", dict(lr=0.05), cls=GlobalStepAdam)
    _, w_theirs = run_torch("Adam", dict(lr=0.05))
    assert not np.allclose(w_global[1], w_theirs[1], rtol=1e-6)
    np.testing.assert_allclose(w_ours[1], w_theirs[1], rtol=1e-10)


needs_numba = pytest.mark.skipif(optim._fused_kernels() is None, reason="fused updates need numba")


@needs_numba
@pytest.mark.parametrize("name,kwargs,_", CASES, ids=IDS)
def test_fused_equals_plain_and_pytorch_with_a_late_parameter(name, kwargs, _):
    fused, w_fused = run_gradbox(name, kwargs, fused=True, seed=3)
    plain, w_plain = run_gradbox(name, kwargs, fused=False, seed=3)
    _, w_theirs = run_torch(name, kwargs, seed=3)
    assert fused.fused and not plain.fused
    for a, b, c in zip(w_fused, w_plain, w_theirs):
        assert np.array_equal(a, b)
        np.testing.assert_allclose(a, c, rtol=1e-10, atol=1e-12)
    assert [s.get("step") for s in fused.state] == [s.get("step") for s in plain.state]


@settings(max_examples=30)
@given(case=st.sampled_from([c for c in CASES if c[0] != "SGD"]),
       missing=st.sets(st.tuples(st.integers(1, STEPS), st.integers(0, len(SHAPES) - 1)), max_size=10),
       seed=st.integers(0, 2**16))
def test_any_pattern_of_missing_gradients_equals_pytorch(case, missing, seed):
    name, kwargs, _ = case
    ours, w_ours = run_gradbox(name, kwargs, seed=seed, missing=missing)
    theirs, w_theirs = run_torch(name, kwargs, seed=seed, missing=missing)
    for a, b in zip(w_ours, w_theirs):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    for i, tp in enumerate(theirs.param_groups[0]["params"]):
        assert ours.state[i].get("step") == (int(theirs.state[tp]["step"]) if tp in theirs.state else None)
