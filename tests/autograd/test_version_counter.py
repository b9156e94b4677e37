"""issue 14 item 12: in-place changes between forward and backward raise, as PyTorch's version counter.

gradbox 0.1 returned 20 instead of 6 for d(x·x)/dx at x = 3 after ``x.data += 7``.
"""
import numpy as np
import pytest

import gradbox as gb
from gradbox import Tensor, nn

MSG = "modified by an inplace operation"


def test_negative_control_x_times_x():
    x = Tensor([3.0], requires_grad=True)
    y = x * x
    x.data += 7  # 0.1 backpropagated 2·10 = 20 here
    with pytest.raises(RuntimeError, match=r"Tensor of shape \(1,\) \(input 0 of Mul\) is at version 1; "
                                           r"expected version 0"):
        y.backward()


@pytest.mark.parametrize("change", ["augmented", "assign", "setitem"])
def test_every_tracked_change_bumps_the_version_and_is_caught(change):
    x = Tensor(np.array([3.0, -1.0, 2.0]), requires_grad=True, name="x")
    y = gb.exp(x) * x
    v0 = x._version
    if change == "augmented":
        x.data *= 2
    elif change == "assign":
        x.data = x.data + 1
    else:
        with gb.no_grad():
            x[1] = 5.0
    assert x._version == v0 + 1
    with pytest.raises(RuntimeError, match=r"Tensor 'x' of shape \(3,\)") as info:
        y.sum().backward()
    assert MSG in str(info.value)


def test_a_changed_output_that_backward_needs_is_caught():
    x = Tensor([0.5, 1.0], requires_grad=True)
    y = gb.tanh(x)  # tanh's backward reads its output
    y.data = y.data * 0
    with pytest.raises(RuntimeError, match=r"\(the output of Tanh\) is at version 1"):
        y.sum().backward()


def test_changes_that_backward_does_not_need_pass():
    # Add keeps only shapes, so changing its inputs afterwards cannot make its gradient wrong
    x = Tensor([1.0, 2.0], requires_grad=True)
    y = x + 1.0
    x.data += 1
    y.sum().backward()
    assert x.grad.tolist() == [1.0, 1.0]
    # the output of a box that does not read it (Add) may be changed too
    z = Tensor([1.0], requires_grad=True) + 1.0
    z.data = z.data * 3
    z.sum().backward()


def test_a_weight_changed_between_forward_and_backward_is_caught():
    lin = nn.Linear(3, 2, rng=0)
    loss = lin(np.ones((4, 3), np.float32)).sum()
    lin.weight.data -= 0.1
    with pytest.raises(RuntimeError, match=MSG):
        loss.backward()


def test_optimizer_steps_after_backward_never_raise_on_the_next_graph():
    rng = np.random.default_rng(0)
    model = nn.Sequential(nn.Linear(4, 8, rng=0), nn.ReLU(), nn.Linear(8, 3, rng=1))
    X, y = rng.normal(size=(16, 4)).astype(np.float32), rng.integers(0, 3, 16)
    for opt in (gb.optim.SGD(model.parameters(), lr=0.1, momentum=0.9), gb.optim.Adam(model.parameters())):
        losses = []
        for _ in range(5):
            opt.zero_grad()
            loss = nn.CrossEntropyLoss()(model(X), y)
            loss.backward()
            opt.step()
            for p in model.parameters():  # a hand-made update through the setter, after backward
                p.data = p.data * 1.0
            losses.append(loss.item())
        assert losses[-1] < losses[0]


def test_retain_graph_then_change_then_backward_again_raises():
    w = Tensor([2.0], requires_grad=True)
    y = (w * w).sum()
    y.backward(retain_graph=True)
    assert w.grad.tolist() == [4.0]
    w.data = np.array([5.0], np.float32)
    with pytest.raises(RuntimeError, match=MSG):
        y.backward()


def test_setitem_while_recording_is_refused_and_allowed_under_no_grad():
    w = Tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(RuntimeError, match=r"requires grad cannot be changed in place"):
        w[0] = 3.0
    with gb.no_grad():
        w[0] = 3.0
    assert w.data.tolist() == [3.0, 2.0] and w._version == 1
    c = Tensor([1.0, 2.0])  # a constant may be written at any time
    c[:] = Tensor([4.0, 5.0])
    assert c.data.tolist() == [4.0, 5.0]


def test_custom_boxes_are_checked_by_default():
    class Square(gb.Function):
        def forward(self, a):
            self.a = a
            return a * a

        def backward(self, g):
            return g * 2 * self.a

    x = Tensor([3.0], requires_grad=True)
    y = Square.apply(x)
    x.data += 1
    with pytest.raises(RuntimeError, match=r"\(the input of Square\)"):
        y.backward()


def test_an_optimizer_step_between_forward_and_backward_is_caught():
    # NOTE: the optimizer writes into p.data in place; without the version bump this
    # backward would silently use the updated weight (a wrong gradient).
    w = gb.nn.Parameter(np.array([3.0]))
    opt = gb.optim.SGD([w], lr=0.1)
    loss = (w * w).sum()
    w.grad = np.array([1.0])
    opt.step()
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()
