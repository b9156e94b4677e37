"""The optimizer's seams: step hooks (PyTorch's names and signature), per-parameter state in
``state_dict`` (and 0.1's format still loading), and a parameter listed twice refused."""
import json

import numpy as np
import pytest

import gradbox as gb
from gradbox import nn, optim
from gradbox.train import Trainer, build_mlp, load_checkpoint_file


def _param(values):
    return nn.Parameter(np.asarray(values, dtype=np.float64))


# --- hooks -------------------------------------------------------------------------------
def test_a_pre_hook_that_changes_the_gradients_changes_the_update():
    """What a distributed optimizer does: average (here: scale) p.grad before the update."""
    w, ref = _param([1.0, -2.0]), _param([1.0, -2.0])
    opt, ref_opt = optim.SGD([w], lr=0.1, momentum=0.9), optim.SGD([ref], lr=0.1, momentum=0.9)
    calls = []

    def average(optimizer, args, kwargs):
        calls.append((optimizer, args, kwargs))
        for p in optimizer.params:
            p.grad = p.grad / 4  # as if four processes' gradients were averaged, three of them zero

    opt.register_step_pre_hook(average)
    for g in ([0.5, 1.0], [-1.0, 2.0]):
        w.grad, ref.grad = np.array(g), np.array(g) / 4
        opt.step()
        ref_opt.step()
    assert calls == [(opt, (), {}), (opt, (), {})]
    np.testing.assert_array_equal(w.data, ref.data)
    plain = _param([1.0, -2.0])
    plain_opt = optim.SGD([plain], lr=0.1, momentum=0.9)
    for g in ([0.5, 1.0], [-1.0, 2.0]):
        plain.grad = np.array(g)
        plain_opt.step()
    assert not np.allclose(plain.data, w.data)  # negative control: the hook did change the update


def test_hooks_run_in_order_around_the_update_and_are_removable():
    w = _param([1.0])
    opt = optim.Adam([w], lr=0.1)
    seen = []
    h1 = opt.register_step_pre_hook(lambda o, a, k: seen.append(("pre1", float(w.data[0]))))
    h2 = opt.register_step_pre_hook(lambda o, a, k: seen.append(("pre2", float(w.data[0]))))
    h3 = opt.register_step_post_hook(lambda o, a, k: seen.append(("post", float(w.data[0]))))
    w.grad = np.array([1.0])
    opt.step()
    assert [s[0] for s in seen] == ["pre1", "pre2", "post"]
    assert seen[0][1] == seen[1][1] == 1.0 and seen[2][1] < 1.0  # the post-hook sees the updated weight
    for h in (h1, h2, h3):
        h.remove()
    h1.remove()  # a second remove does nothing
    seen.clear()
    opt.step()
    assert seen == []


def test_a_handle_removes_its_hook_on_leaving_a_with_block():
    opt = optim.SGD([_param([1.0])], lr=0.1)
    seen = []
    with opt.register_step_post_hook(lambda o, a, k: seen.append(1)):
        opt.step()
    opt.step()
    assert seen == [1]


def test_a_pre_hook_may_replace_the_step_arguments():
    w = _param([3.0])
    opt = optim.SGD([w], lr=0.1)

    def closure():
        opt.zero_grad()
        loss = (w * w).sum()
        loss.backward()
        return loss

    posted = []
    opt.register_step_pre_hook(lambda o, args, kwargs: ((), {"closure": closure}))
    opt.register_step_post_hook(lambda o, args, kwargs: posted.append((args, kwargs)))
    loss = opt.step()
    assert loss.item() == 9.0  # the closure ran: its loss is returned, as torch.optim returns it
    np.testing.assert_allclose(w.data, [3.0 - 0.1 * 6.0])
    assert posted == [((), {"closure": closure})]


def test_bad_hooks_are_refused_with_the_reason():
    opt = optim.SGD([_param([1.0])], lr=0.1)
    with pytest.raises(TypeError, match=r"register_step_pre_hook\(hook\): expected a callable"):
        opt.register_step_pre_hook(3)
    with pytest.raises(TypeError, match=r"register_step_post_hook\(hook\): expected a callable"):
        opt.register_step_post_hook(None)
    opt.register_step_pre_hook(lambda o, a, k: "new args")
    with pytest.raises(RuntimeError, match=r"expected None or a tuple \(new_args, new_kwargs\), received 'new args'"):
        opt.step()


# --- duplicates --------------------------------------------------------------------------
def test_a_parameter_listed_twice_is_refused():
    w = _param([1.0])
    with pytest.raises(ValueError, match=r"SGD\(params\): expected each parameter once, received the parameter "
                                         r"list with duplicates \(params\[1\] is params\[0\]\)"):
        optim.SGD([w, w], lr=0.1)
    v = _param([2.0])
    with pytest.raises(ValueError, match=r"params\[2\] is params\[0\]"):
        optim.Adam([w, v, w])


def test_a_model_with_a_shared_parameter_is_updated_once_per_step():
    shared = nn.Linear(3, 3, rng=0)
    model = nn.Sequential(shared, nn.Tanh(), shared)
    before = shared.weight.data.copy()
    opt = optim.SGD(model.parameters(), lr=0.1)  # parameters() yields the shared ones once
    assert len(opt.params) == 2
    shared.weight.grad = np.ones_like(before)
    shared.bias.grad = np.zeros_like(shared.bias.data)
    opt.step()
    np.testing.assert_allclose(shared.weight.data, before - 0.1)


# --- state_dict --------------------------------------------------------------------------
def _late_run(cls, kwargs, steps, params=None, opt=None, start=0):
    """Steps with random gradients; parameter 1 has none at the first step of the whole run."""
    rng = np.random.default_rng(0)
    grads = [[rng.standard_normal(p) for p in ((3, 2), (4,))] for _ in range(10)]
    if params is None:
        params = [_param(np.ones((3, 2))), _param(np.arange(4.0))]
        opt = cls(params, **kwargs)
    for t in range(start, start + steps):
        for i, p in enumerate(params):
            p.grad = None if (t, i) == (0, 1) else grads[t][i].copy()
        opt.step()
    return params, opt


@pytest.mark.parametrize("cls,kwargs", [(optim.Adam, dict(lr=0.1)), (optim.AdamW, dict(lr=0.1, weight_decay=0.1)),
                                        (optim.RMSprop, dict(lr=0.01))])
def test_state_dict_holds_each_parameters_steps_and_resumes_exactly(cls, kwargs):
    ref, _ = _late_run(cls, kwargs, 6)
    params, opt = _late_run(cls, kwargs, 3)
    sd = opt.state_dict()
    assert sd["step_count"] == 3
    assert sd["state"]["0.step"] == 3 and sd["state"]["1.step"] == 2
    assert sd["state"]["0.step"].dtype == np.int64 and sd["state"]["0.step"].shape == ()
    fresh = [_param(p.data.copy()) for p in params]
    opt2 = cls(fresh, lr=0.5)
    opt2.load_state_dict(json.loads(json.dumps({k: v for k, v in sd.items() if k != "state"})) | {"state": sd["state"]})
    assert [s["step"] for s in opt2.state] == [3, 2]
    _late_run(cls, kwargs, 3, fresh, opt2, start=3)
    for a, b in zip(ref, fresh):
        np.testing.assert_array_equal(a.data, b.data)


def test_a_state_in_0_1_format_loads_with_the_global_step_count():
    """gradbox 0.1 stored one step count and no '<i>.step' entries: each parameter takes that count."""
    params = [_param(np.ones((3, 2))), _param(np.arange(4.0))]
    opt = optim.Adam(params, lr=0.1)
    rng = np.random.default_rng(1)
    for _ in range(4):
        for p in params:
            p.grad = rng.standard_normal(p.shape)
        opt.step()
    sd = opt.state_dict()
    old = dict(sd, state={k: v for k, v in sd["state"].items() if not k.endswith(".step")})
    opt2 = optim.Adam([_param(p.data.copy()) for p in params], lr=0.1)
    opt2.load_state_dict(old)
    assert [s["step"] for s in opt2.state] == [4, 4] and opt2.step_count == 4
    for o in (opt, opt2):
        for p in o.params:
            p.grad = np.full(p.shape, 0.5)
        o.step()
    for a, b in zip(opt.params, opt2.params):
        np.testing.assert_array_equal(a.data, b.data)


def test_a_checkpoint_keeps_the_steps_and_a_0_1_checkpoint_still_resumes(tmp_path):
    rng = np.random.default_rng(42)
    X = rng.normal(size=(40, 4)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64)

    def trainer(seed=0):
        gb.manual_seed(seed)
        model = build_mlp(4, [8], 2)
        return Trainer(model, None, optim.Adam(model.parameters(), lr=0.01), batch_size=8, seed=7, verbose=0)

    ref = trainer()
    ref.fit(X, y, epochs=3)
    part = trainer()
    part.fit(X, y, epochs=2)
    part.save_checkpoint(tmp_path / "ckpt.gbx")
    arrays, meta = load_checkpoint_file(tmp_path / "ckpt.gbx")
    assert [int(arrays[f"optim.{i}.step"]) for i in range(4)] == [10] * 4
    old = ({k: v for k, v in arrays.items() if not k.endswith(".step")}, meta)  # what 0.1 wrote
    for state in ((arrays, meta), old):
        resumed = trainer(seed=5)
        resumed.load_checkpoint(state)
        resumed.fit(X, y, epochs=3)
        for p, q in zip(ref.model.parameters(), resumed.model.parameters()):
            np.testing.assert_array_equal(p.data, q.data)


def _adam_state():
    params = [_param(np.ones(2)), _param(np.ones(3))]
    opt = optim.Adam(params, lr=0.1)
    params[0].grad = np.ones(2)
    opt.step()
    return opt, opt.state_dict()


@pytest.mark.parametrize("change,message", [
    (lambda sd: sd["state"].update({"0.bogus": np.ones(2)}), r"expected keys '<param index < 2>\.<one of \['exp_avg', "
                                                               r"'exp_avg_sq', 'step'\]>', received '0.bogus'"),
    (lambda sd: sd["state"].update({"0.step": np.array(0)}), r"\['0.step'\]: expected an integer step count >= 1"),
    (lambda sd: sd["state"].update({"0.step": np.array(1.5)}), r"expected an integer step count"),
    (lambda sd: sd["state"].pop("0.exp_avg_sq"), r"expected parameter 0's buffers \['exp_avg', 'exp_avg_sq'\] "
                                                  r"together, received it without \['exp_avg_sq'\]"),
    (lambda sd: sd["state"].update({"1.step": np.array(3)}), r"expected parameter 1's buffers with its step count"),
    (lambda sd: sd["hyper"].update(lr=-0.5), r"Adam.load_state_dict\(lr\): expected a finite number >= 0.0"),
    (lambda sd: sd["hyper"].update(beta2=1.0), r"\(beta2\): expected a finite number >= 0.0 and < 1.0"),
    (lambda sd: sd.update(step_count=-3), r"\['step_count'\]: expected an integer >= 0"),
    (lambda sd: sd.pop("hyper"), r"expected a dict with 'step_count', 'hyper' and 'state'"),
])
def test_load_state_dict_refuses_a_forged_state_and_changes_nothing(change, message):
    opt, sd = _adam_state()
    before = opt.state_dict()
    change(sd)
    with pytest.raises(ValueError, match=message):
        opt.load_state_dict(sd)
    after = opt.state_dict()
    assert after["hyper"] == before["hyper"] and after["step_count"] == before["step_count"]
    assert after["state"].keys() == before["state"].keys()


def test_a_new_state_with_one_step_count_missing_is_refused():
    params = [_param(np.ones(2)), _param(np.ones(3))]
    opt = optim.Adam(params, lr=0.1)
    for p in params:
        p.grad = np.ones(p.shape)
    opt.step()
    sd = opt.state_dict()
    del sd["state"]["1.step"]
    with pytest.raises(ValueError, match=r"expected a step count '1.step' for parameter 1"):
        opt.load_state_dict(sd)
