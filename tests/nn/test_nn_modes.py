"""One forward per layer (issue 12, property 7) and eval_mode (property 9)."""
import numpy as np
import pytest

import gradbox as gb
from gradbox import nn


class Doubled(nn.Linear):
    """A subclass that changes what the layer computes."""

    def forward(self, x):
        return super().forward(x) * 2


class ShiftedReLU(nn.ReLU):
    def forward(self, x):
        return super().forward(x) + 1


class Plain(nn.Linear):
    """A subclass that does not touch forward: it keeps the fast path."""


@pytest.mark.parametrize("model", [
    lambda: nn.Sequential(Doubled(4, 3, rng=0), nn.ReLU(), Doubled(3, 2, rng=1)),
    lambda: nn.Sequential(nn.Linear(4, 3, rng=0), ShiftedReLU(), nn.Linear(3, 2, rng=1)),
    lambda: nn.Sequential(nn.Linear(4, 3, rng=0), nn.Tanh(), Doubled(3, 2, rng=1)),
])
def test_a_subclass_forward_gives_the_same_predictions_with_and_without_grad(model):
    model = model()
    x = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    with_grad = model(x).data
    with gb.no_grad():
        without = model(x).data
    np.testing.assert_array_equal(without, with_grad)


def test_the_doubling_subclass_really_doubles():
    base, doubled = nn.Linear(4, 3, rng=0), Doubled(4, 3, rng=0)
    x = np.ones((2, 4), np.float32)
    with gb.no_grad():
        np.testing.assert_array_equal(nn.Sequential(doubled)(x).data, 2 * nn.Sequential(base)(x).data)


def test_built_in_layers_and_plain_subclasses_keep_the_fast_path():
    assert nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Dropout(0.1), nn.LeakyReLU(), nn.Sigmoid(), nn.Tanh(),
                         Plain(3, 2), nn.Softmax())._make_plan()
    assert not nn.Sequential(Doubled(2, 2))._make_plan()
    assert not nn.Sequential(nn.Linear(2, 2), ShiftedReLU())._make_plan()


def test_eval_mode_restores_each_submodules_own_mode():
    model = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5), nn.Sequential(nn.Dropout(0.5)))
    model[2].eval()
    before = [m.training for m in model.modules()]
    assert before == [True, True, True, False, False]
    with nn.eval_mode(model) as m:
        assert m is model and not any(x.training for x in model.modules())
    assert [m.training for m in model.modules()] == before
    with pytest.raises(RuntimeError):
        with nn.eval_mode(model):
            raise RuntimeError("boom")
    assert [m.training for m in model.modules()] == before


def test_explain_leaves_the_mode_as_it_was():
    model = nn.Sequential(nn.Linear(3, 4, rng=0), nn.Dropout(0.2), nn.ReLU(), nn.Linear(4, 2, rng=1))
    model[1].eval()
    before = [m.training for m in model.modules()]
    gb.explain(model, np.ones((4, 3), np.float32), np.array([0, 1, 0, 1]))
    assert [m.training for m in model.modules()] == before
