"""Layers that describe themselves (issue 12, property 1): the registry, get_config/from_config,
state_specs, and model files that go through them (0.1 files, shared parameters, buffers,
user layers, forged sizes)."""
import os
import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gradbox as gb
from gradbox import Tensor, nn
from gradbox import io as gio
from tests._helpers import serialize
from gradbox.nn.module import LAYERS, get_layer_class, layer_name, state_slots

from .._paths import DATA as _DATA

DATA = str(_DATA)

# One instance of every layer type gradbox registers, with non-default arguments where it has any.
EXAMPLES = {
    "Linear": lambda: nn.Linear(3, 2, bias=False, dtype=np.float64, init="xavier_normal", rng=0),
    "ReLU": nn.ReLU, "Sigmoid": nn.Sigmoid, "Tanh": nn.Tanh, "Flatten": nn.Flatten,
    "LeakyReLU": lambda: nn.LeakyReLU(0.2),
    "Softmax": lambda: nn.Softmax(dim=0),
    "Dropout": lambda: nn.Dropout(0.3),
    "Sequential": lambda: nn.Sequential(nn.Linear(2, 4, rng=0), nn.Tanh(), nn.Sequential(nn.Linear(4, 1, rng=1))),
    "CrossEntropyLoss": nn.CrossEntropyLoss, "BCEWithLogitsLoss": nn.BCEWithLogitsLoss, "MSELoss": nn.MSELoss,
    # issue 13 (convolutional layers)
    "Conv2d": lambda: nn.Conv2d(3, 4, (3, 2), stride=2, padding=(1, 0), bias=False, dtype=np.float64,
                                init="xavier_normal", rng=0),
    "MaxPool2d": lambda: nn.MaxPool2d(3, stride=2, padding=1), "AvgPool2d": lambda: nn.AvgPool2d((2, 3)),
    "BatchNorm1d": lambda: nn.BatchNorm1d(5, eps=1e-3, momentum=0.2),
    "BatchNorm2d": lambda: nn.BatchNorm2d(4, dtype=np.float64),
}


def _gradbox_layers():
    return sorted(name for name, cls in LAYERS.items() if cls.__module__.startswith("gradbox."))


def _example(name):
    if name in EXAMPLES:
        return EXAMPLES[name]()
    return get_layer_class(name)()  # a layer type without constructor arguments


def test_every_gradbox_layer_is_registered_by_its_class_name():
    for name in ("Linear", "ReLU", "Sigmoid", "Tanh", "LeakyReLU", "Softmax", "Dropout", "Flatten", "Sequential"):
        assert get_layer_class(name) is getattr(nn, name)
        assert layer_name(_example(name)) == name
    with pytest.raises(TypeError, match=r"layer type: expected one of \[.*'Linear'.*\], received 'Conv9d'"):
        get_layer_class("Conv9d")


@pytest.mark.parametrize("name", _gradbox_layers())
def test_get_config_rebuilds_the_same_layer_and_state_specs_match_it(name):
    try:
        layer = _example(name)
    except TypeError as exc:  # a new layer type that needs arguments: add it to EXAMPLES
        pytest.fail(f"add an example of {name} to EXAMPLES: {exc}")
    config = layer.get_config()
    assert gio.json.loads(gio.json.dumps(config)) == config  # JSON-friendly, and survives the round trip
    cls = type(layer)
    rebuilt = cls.from_config(config)
    assert type(rebuilt) is cls and rebuilt.get_config() == config
    built = [(n, tuple(a.shape), np.dtype(a.dtype)) for n, _, _, a in state_slots(rebuilt)]
    assert [(n, tuple(s), np.dtype(d)) for n, s, d in cls.state_specs(config)] == built
    assert [(n, a.shape) for n, a in layer.state_dict().items()] == [(n, a.shape) for n, a in
                                                                     rebuilt.state_dict().items()]


def test_linear_config_carries_dtype_as_a_string_and_a_non_default_init():
    assert nn.Linear(2, 3, rng=0).get_config() == {"in_features": 2, "out_features": 3, "bias": True,
                                                   "dtype": "float32"}
    config = nn.Linear(2, 3, dtype=np.float64, init="he_normal", rng=0).get_config()
    assert config["dtype"] == "float64" and config["init"] == "he_normal"
    half = nn.Linear.from_config({"in_features": 2, "out_features": 3, "dtype": "float16"})
    assert half.weight.dtype == np.float16 and half.get_config()["dtype"] == "float16"


def test_state_specs_check_declared_sizes_without_allocating():
    tracemalloc.start()
    try:
        specs = nn.Linear.state_specs({"in_features": 10 ** 9, "out_features": 10 ** 9})
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert specs[0] == ("weight", (10 ** 9, 10 ** 9), np.dtype(np.float32)) and peak < 1_000_000
    with pytest.raises(ValueError, match=r"Linear\(in_features\): expected a positive int, received -1"):
        nn.Linear.state_specs({"in_features": -1, "out_features": 2})


def test_a_forged_header_is_refused_before_any_layer_is_built(tmp_path):
    small = nn.Linear(3, 2, rng=0)
    table = {f"model.0.{k}": v for k, v in small.state_dict().items()}
    spec = [{"type": "Linear", "in_features": 20_000, "out_features": 10_000}]  # 800 MB if it were built
    path = tmp_path / "forged.gbx"
    path.write_bytes(serialize(table, {}, model={"spec": spec, "parameters": {f"0.{k}": f"model.0.{k}"
                                                                                   for k in small.state_dict()}}))
    tracemalloc.start()
    try:
        with pytest.raises(gio.ModelFileError, match=r"'0.weight': expected \(10000, 20000\) float32, "
                                                      r"received \(2, 3\) float32"):
            gb.load_model(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 10_000_000


# --------------------------------------------------------------------------- 0.1 model files
@pytest.mark.parametrize("name", ["model_v0_1.gbx", "model_v0_1_f64.gbx"])
def test_model_files_written_by_0_1_still_load_and_predict_the_same(tmp_path, name):
    path = os.path.join(DATA, name)
    file = gb.load_model(path)
    with gb.no_grad():
        out = file.model(file.arrays["X"]).data
    np.testing.assert_array_equal(out, file.arrays["expected"])
    assert file.spec == gio.model_to_spec(file.model)
    # NOTE: writing the loaded model again gives the very same bytes: the 0.1 format is unchanged
    gb.save_model(tmp_path / name, file.model, arrays=file.arrays, metadata=file.metadata)
    assert (tmp_path / name).read_bytes() == open(path, "rb").read()


# --------------------------------------------------------------------------- shared parameters
def test_a_parameter_shared_by_two_layers_saves_and_loads_as_one(tmp_path):
    a, b = nn.Linear(3, 3, rng=0), nn.Linear(3, 3, rng=1)
    b.weight = a.weight  # tied weights, separate biases
    b.bias.data[:] = [0.5, -0.5, 1.0]
    model = nn.Sequential(a, nn.Tanh(), b)
    gb.save_model(tmp_path / "tied.gbx", model)
    stored = gb.load(tmp_path / "tied.gbx")
    assert sorted(stored) == ["model.0.bias", "model.0.weight", "model.2.bias"]
    loaded = gb.load_model(tmp_path / "tied.gbx").model
    assert loaded[2].weight is loaded[0].weight and loaded[2].bias is not loaded[0].bias
    assert [n for n, _ in loaded.named_parameters()] == [n for n, _ in model.named_parameters()]
    x = np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32)
    np.testing.assert_array_equal(loaded(x).data, model(x).data)
    loss = loaded(x).sum()
    loss.backward()  # one gradient, accumulated from both uses
    assert loaded[0].weight.grad is not None


def test_one_layer_used_twice_saves_and_loads(tmp_path):
    layer = nn.Linear(2, 2, rng=0)
    model = nn.Sequential(layer, nn.ReLU(), layer)
    gb.save_model(tmp_path / "twice.gbx", model)
    loaded = gb.load_model(tmp_path / "twice.gbx").model
    assert loaded[0].weight is loaded[2].weight and loaded[0].bias is loaded[2].bias
    assert len(list(loaded.parameters())) == 2
    x = np.array([[1.0, -2.0]], np.float32)
    np.testing.assert_array_equal(loaded(x).data, model(x).data)


# --------------------------------------------------------------------------- users' layers, buffers
class RunningCentre(nn.Module):
    """A user's layer with a parameter, persistent buffers (float and int) and a non-persistent one;
    it does not declare state_specs, so a loader builds it to learn its arrays."""

    def __init__(self, features):
        super().__init__()
        self.features = features
        self.scale = nn.Parameter(np.ones(features, np.float32))
        self.register_buffer("running_mean", np.zeros(features, np.float32))
        self.register_buffer("seen", np.zeros((), np.int64))
        self.register_buffer("scratch", np.zeros(features, np.float32), persistent=False)

    def get_config(self):
        return {"features": self.features}

    def forward(self, x):
        return (x - Tensor(self.running_mean)) * self.scale


class Net(nn.Module):
    """A non-Sequential top-level model that builds its own layers from its config."""

    def __init__(self, sizes):
        super().__init__()
        self.sizes = list(sizes)
        self.centre = RunningCentre(sizes[0])
        self.hidden = nn.Linear(sizes[0], sizes[1], rng=0)
        self.out = nn.Linear(sizes[1], sizes[2], rng=1)

    def get_config(self):
        return {"sizes": self.sizes}

    def forward(self, x):
        return self.out(nn.functional.linear(self.centre(x), self.hidden.weight, self.hidden.bias).relu())


def test_users_layers_and_a_non_sequential_model_save_and_load_with_their_buffers(tmp_path):
    model = Net([3, 5, 2])
    model.centre.running_mean = np.array([1.0, 2.0, 3.0], np.float32)
    model.centre.seen = np.array(7)
    model.centre.scale.data[:] = [2.0, 3.0, 4.0]
    gb.save_model(tmp_path / "net.gbx", model)
    file = gb.load_model(tmp_path / "net.gbx")
    assert file.spec == {"type": "tests.nn.test_nn_describe.Net", "sizes": [3, 5, 2]}
    loaded = file.model
    assert type(loaded) is Net and not loaded.training
    np.testing.assert_array_equal(loaded.centre.running_mean, [1.0, 2.0, 3.0])
    assert loaded.centre.seen == 7 and loaded.centre.seen.dtype == np.int64
    assert "centre.scratch" not in gb.load(tmp_path / "net.gbx") and "model.centre.scratch" not in file.arrays
    for (n1, a1), (n2, a2) in zip(model.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert n1 == n2
        np.testing.assert_array_equal(a1, a2)
    x = np.random.default_rng(1).normal(size=(4, 3)).astype(np.float32)
    np.testing.assert_array_equal(loaded(x).data, model(x).data)
    # and inside a Sequential, where it is one entry of the 0.1 list
    gb.save_model(tmp_path / "seq.gbx", nn.Sequential(RunningCentre(2), nn.Linear(2, 1, rng=0)))
    assert gb.load_model(tmp_path / "seq.gbx").spec[0] == {"type": "tests.nn.test_nn_describe.RunningCentre",
                                                           "features": 2}


def test_non_finite_buffers_are_never_written(tmp_path):
    model = nn.Sequential(RunningCentre(2))
    model[0].running_mean = np.array([0.0, np.nan], np.float32)
    with pytest.raises(ValueError, match=r"1 NaN/inf values in parameter '0.running_mean'"):
        gb.save_model(tmp_path / "m.gbx", model)
    assert not os.listdir(tmp_path)


def test_a_file_whose_buffer_has_the_wrong_shape_is_refused(tmp_path):
    model = nn.Sequential(RunningCentre(2))
    table = {"model.0.scale": np.ones(2, np.float32), "model.0.running_mean": np.zeros(3, np.float32),
             "model.0.seen": np.zeros((), np.int64)}
    mapping = {k[len("model."):]: k for k in table}
    path = tmp_path / "bad.gbx"
    path.write_bytes(serialize(table, {}, model={"spec": gio.model_to_spec(model), "parameters": mapping}))
    with pytest.raises(gio.ModelFileError, match=r"'0.running_mean': expected \(2,\) float32, received \(3,\)"):
        gb.load_model(path)


def test_a_file_that_ties_a_buffer_to_a_parameter_is_refused(tmp_path):
    model = nn.Sequential(RunningCentre(2))
    table = {"model.0.scale": np.ones(2, np.float32), "model.0.seen": np.zeros((), np.int64)}
    mapping = {"0.scale": "model.0.scale", "0.running_mean": "model.0.scale", "0.seen": "model.0.seen"}
    path = tmp_path / "tie.gbx"
    path.write_bytes(serialize(table, {}, model={"spec": gio.model_to_spec(model), "parameters": mapping}))
    with pytest.raises(gio.ModelFileError, match="'0.running_mean': shares array 'model.0.scale' with '0.scale'"):
        gb.load_model(path)


# --------------------------------------------------------------------------- any stack of built-in layers
_ACTIVATIONS = [nn.ReLU, nn.Sigmoid, nn.Tanh, lambda: nn.LeakyReLU(0.3), lambda: nn.Dropout(0.4),
                lambda: nn.Softmax(dim=1), nn.Flatten]


@settings(max_examples=40, deadline=None)
@given(widths=st.lists(st.integers(1, 6), min_size=2, max_size=5), acts=st.lists(st.integers(0, 6), max_size=5),
       bias=st.lists(st.booleans(), min_size=4, max_size=4), dtype=st.sampled_from(["float32", "float64"]),
       nest=st.booleans(), seed=st.integers(0, 2 ** 16))
def test_any_stack_of_built_in_layers_round_trips_through_a_file(tmp_path_factory, widths, acts, bias, dtype,
                                                                nest, seed):
    layers = []
    for i, (n_in, n_out) in enumerate(zip(widths, widths[1:])):
        layers.append(nn.Linear(n_in, n_out, bias=bias[i], dtype=dtype, rng=seed + i))
        if i < len(acts):
            layers.append(_ACTIVATIONS[acts[i]]())
    model = nn.Sequential(nn.Sequential(*layers)) if nest else nn.Sequential(*layers)
    path = tmp_path_factory.mktemp("stack") / "m.gbx"
    gb.save_model(path, model)
    file = gb.load_model(path)
    assert file.spec == gio.model_to_spec(model) == gio.model_to_spec(file.model)
    x = np.random.default_rng(seed).normal(size=(3, widths[0])).astype(dtype)
    with gb.no_grad():
        np.testing.assert_array_equal(file.model(x).data, model.eval()(x).data)
