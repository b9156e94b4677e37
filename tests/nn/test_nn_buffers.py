"""Buffers (issue 12, property 2): register_buffer, named_buffers, state_dict/load_state_dict,
astype, with PyTorch's semantics where they apply."""
import numpy as np
import pytest

import gradbox as gb
from gradbox import nn


class Stats(nn.Module):
    def __init__(self, n=3):
        super().__init__()
        self.weight = nn.Parameter(np.ones(n, np.float32))
        self.register_buffer("running_mean", np.zeros(n, np.float32))
        self.register_buffer("num_batches", np.zeros((), np.int64))
        self.register_buffer("cache", np.zeros(n, np.float32), persistent=False)
        self.register_buffer("empty", None)

    def forward(self, x):
        return x * self.weight


def _pair():
    return nn.Sequential(Stats(), nn.ReLU(), Stats(2))


def test_named_buffers_state_dict_and_parameters():
    model = _pair()
    assert [n for n, _ in model.named_buffers()] == ["0.running_mean", "0.num_batches", "0.cache",
                                                      "2.running_mean", "2.num_batches", "2.cache"]
    assert list(model.state_dict()) == ["0.weight", "2.weight", "0.running_mean", "0.num_batches",
                                        "2.running_mean", "2.num_batches"]
    assert [n for n, _ in model.named_parameters()] == ["0.weight", "2.weight"]  # an optimizer never sees buffers
    assert all(isinstance(b, np.ndarray) for b in model.buffers())


def test_state_dict_copies_and_load_state_dict_writes_buffers_in_place():
    model = _pair()
    sd = model.state_dict()
    sd["0.running_mean"][:] = 5  # a copy: the model is unchanged
    assert not model[0].running_mean.any()
    live = model[0].running_mean
    sd["0.num_batches"] = np.array(4)
    model.load_state_dict(sd)
    assert model[0].running_mean is live and (live == 5).all() and model[0].num_batches == 4
    bad = dict(sd, **{"2.running_mean": np.zeros(3, np.float32)})
    with pytest.raises(ValueError, match=r"load_state_dict\['2.running_mean'\]: expected shape \(2,\)"):
        model.load_state_dict(bad)
    assert (model[0].running_mean == 5).all()
    with pytest.raises(ValueError, match="missing"):
        model.load_state_dict({k: v for k, v in sd.items() if k != "2.num_batches"})


def test_assigning_a_buffer_attribute_updates_the_buffer():
    m = Stats()
    m.running_mean = np.array([1.0, 2.0, 3.0], np.float32)
    np.testing.assert_array_equal(m.state_dict()["running_mean"], [1.0, 2.0, 3.0])
    m.running_mean = gb.Tensor([4.0, 5.0, 6.0])
    assert isinstance(m.running_mean, np.ndarray) and m._buffers["running_mean"] is m.running_mean


def test_register_buffer_rejects_bad_names():
    m = Stats()
    with pytest.raises(KeyError, match="already a parameter"):
        m.register_buffer("weight", np.zeros(1))
    with pytest.raises(ValueError, match="without '.'"):
        m.register_buffer("a.b", np.zeros(1))


def test_astype_converts_floating_buffers_and_keeps_integer_ones():
    m = Stats().astype(np.float64)
    assert m.weight.dtype == np.float64 and m.running_mean.dtype == np.float64 and m.cache.dtype == np.float64
    assert m.num_batches.dtype == np.int64 and m.empty is None


def test_buffer_semantics_match_pytorch():
    torch = pytest.importorskip("torch")

    class TStats(torch.nn.Module):
        def __init__(self, n=3):
            super().__init__()
            self.weight = torch.nn.Parameter(torch.ones(n))
            self.register_buffer("running_mean", torch.zeros(n))
            self.register_buffer("num_batches", torch.zeros((), dtype=torch.int64))
            self.register_buffer("cache", torch.zeros(n), persistent=False)
            self.register_buffer("empty", None)

    ours, theirs = _pair(), torch.nn.Sequential(TStats(), torch.nn.ReLU(), TStats(2))
    assert [n for n, _ in ours.named_buffers()] == [n for n, _ in theirs.named_buffers()]
    # NOTE: the same keys; gradbox lists every parameter before every buffer (PyTorch goes module by
    # module), so that the parameters keep the places 0.1's files and optimizers gave them.
    assert sorted(ours.state_dict()) == sorted(theirs.state_dict())
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]
    theirs.double()
    ours.astype(np.float64)
    for (n, b), (tn, tb) in zip(ours.named_buffers(), theirs.named_buffers(), strict=True):
        assert str(b.dtype) == str(tb.dtype).replace("torch.", ""), n
    sd = {k: v.numpy() for k, v in theirs.state_dict().items()}
    sd["0.running_mean"] = np.arange(3.0)
    ours.load_state_dict(sd)
    np.testing.assert_array_equal(ours[0].running_mean, np.arange(3.0))
