"""gradbox.io: round trips, model files, refusals and atomic writes."""
import errno
import os
import pickle
import stat
import zipfile

import numpy as np
import pytest

import gradbox as gb
from gradbox import io as gio
from gradbox.io import ModelFileError

DTYPES = [np.float16, np.float32, np.float64, np.int8, np.int16, np.int32, np.int64,
          np.uint8, np.uint16, np.uint32, np.uint64, np.bool_]


def _sample(dtype, shape, rng):
    dtype = np.dtype(dtype)
    if dtype.kind == "b":
        return rng.random(shape) < 0.5
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max, size=shape, dtype=dtype, endpoint=True)
    return rng.standard_normal(shape).astype(dtype)


# --------------------------------------------------------------------------- arrays
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("shape", [(), (0,), (3, 0, 2), (7,), (4, 5), (2, 3, 4)], ids=str)
def test_round_trip_every_dtype_and_shape(tmp_path, rng, dtype, shape):
    arr = _sample(dtype, shape, rng)
    path = tmp_path / "a.gbx"
    gb.save({"x": arr}, path)
    out = gb.load(path)
    assert list(out) == ["x"]
    assert out["x"].dtype == np.dtype(dtype) and out["x"].shape == shape
    np.testing.assert_array_equal(out["x"], arr)
    assert out["x"].flags.writeable and out["x"].flags.owndata


def test_extreme_values_survive_bit_exactly(tmp_path):
    arr = np.array([np.nan, np.inf, -np.inf, -0.0, np.finfo(np.float64).tiny, 5e-324], np.float64)
    gb.save({"v": arr}, tmp_path / "v.gbx")
    out = gb.load(tmp_path / "v.gbx")["v"]
    assert out.tobytes() == arr.tobytes()


def test_names_order_unicode_and_metadata(tmp_path):
    arrays = {"z.last": np.ones(2), "layer.0.weight": np.zeros((2, 2), np.float32), "βeta ü/🙂": np.arange(3),
              "a": np.array(1, np.int8)}
    meta = {"epoch": 3, "loss": float("nan"), "best": float("inf"), "nested": {"lr": [0.1, 0.01]}, "name": "ünï"}
    path = tmp_path / "n.gbx"
    gb.save(arrays, path, metadata=meta)
    out, got = gio.load_with_metadata(path)
    assert list(out) == list(arrays)
    for k in arrays:
        np.testing.assert_array_equal(out[k], arrays[k])
        assert out[k].dtype == np.asarray(arrays[k]).dtype
    assert np.isnan(got.pop("loss")) and got == {k: v for k, v in meta.items() if k != "loss"}


def test_large_array_round_trip(tmp_path):
    arr = np.arange(3_000_000, dtype=np.float32).reshape(1000, 3000)
    gb.save({"big": arr, "small": np.ones(3)}, str(tmp_path / "big.gbx"))
    out = gb.load(str(tmp_path / "big.gbx"))
    np.testing.assert_array_equal(out["big"], arr)


def test_non_native_and_strided_inputs_are_normalised(tmp_path):
    big_endian = np.arange(6, dtype=">i4").reshape(2, 3)
    strided = np.asfortranarray(np.arange(12.0).reshape(3, 4))[:, ::-2]
    readonly = np.arange(4.0)
    readonly.flags.writeable = False
    gb.save({"be": big_endian, "st": strided, "ro": readonly, "list": [1.5, 2.5], "t": gb.Tensor([1.0])},
            tmp_path / "s.gbx")
    out = gb.load(tmp_path / "s.gbx")
    assert out["be"].dtype == np.int32 and out["be"].dtype.isnative
    np.testing.assert_array_equal(out["be"], big_endian)
    np.testing.assert_array_equal(out["st"], strided)
    np.testing.assert_array_equal(out["ro"], readonly)
    np.testing.assert_array_equal(out["list"], [1.5, 2.5])
    assert out["t"].dtype == np.float32


def test_data_is_aligned_on_disk(tmp_path):
    path = tmp_path / "al.gbx"
    gb.save({"a": np.ones(3, np.int8), "b": np.ones(5)}, path)
    buf = path.read_bytes()
    hlen = int.from_bytes(buf[12:20], "little")
    assert (24 + hlen) % 64 == 0
    _, _, header = gio._parse(buf)
    assert all(e["offsets"][0] % 64 == 0 for e in header["arrays"].values())


@pytest.mark.parametrize("bad, exc, words", [
    ({"x": np.array([1 + 2j])}, TypeError, ["arrays['x']", "complex128"]),
    ({"x": np.array(["a"])}, TypeError, ["arrays['x']", "<U1"]),
    ({"x": np.array([None])}, TypeError, ["arrays['x']", "object"]),
    ({"x": [[1, 2], [3]]}, ValueError, ["arrays['x']", "ragged"]),
    ({3: np.ones(1)}, TypeError, ["str names", "int"]),
    ({"": np.ones(1)}, ValueError, ["names of 1"]),
    ([np.ones(1)], TypeError, ["arrays: expected a mapping", "list"]),
])
def test_save_rejects_bad_arrays(tmp_path, bad, exc, words):
    with pytest.raises(exc) as info:
        gb.save(bad, tmp_path / "x.gbx")
    for w in words:
        assert w in str(info.value)
    assert not os.listdir(tmp_path)


@pytest.mark.skipif(np.dtype(np.longdouble).itemsize == 8, reason="longdouble is float64 here")
def test_save_rejects_longdouble(tmp_path):
    with pytest.raises(TypeError, match="arrays\\['x'\\]: expected dtype float16/32/64"):
        gb.save({"x": np.zeros(2, np.longdouble)}, tmp_path / "x.gbx")


def test_save_rejects_bad_metadata(tmp_path):
    with pytest.raises(TypeError, match="metadata: expected JSON-serialisable"):
        gb.save({"a": np.ones(1)}, tmp_path / "m.gbx", metadata={"x": object()})
    with pytest.raises(TypeError, match="metadata: expected a dict"):
        gb.save({"a": np.ones(1)}, tmp_path / "m.gbx", metadata=[1, 2])
    with pytest.raises(TypeError, match="metadata: expected str keys"):
        gb.save({"a": np.ones(1)}, tmp_path / "m.gbx", metadata={1: 2})
    assert not os.listdir(tmp_path)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="no gradbox file at .*nope.gbx"):
        gb.load(tmp_path / "nope.gbx")
    with pytest.raises(FileNotFoundError, match="nope.gbx"):
        gb.load_model(tmp_path / "nope.gbx")
    with pytest.raises(IsADirectoryError, match="directory"):
        gb.load(tmp_path)
    with pytest.raises(TypeError, match="path: expected a str"):
        gb.load(12.5)


# --------------------------------------------------------------------------- foreign files
class _Evil:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (open, (self.target, "w"))


def test_pickle_is_refused_without_running_it(tmp_path):
    sentinel = tmp_path / "pwned"
    for protocol in (2, 3, 4, 5):
        path = tmp_path / f"evil{protocol}.pkl"
        path.write_bytes(pickle.dumps({"w": _Evil(str(sentinel))}, protocol=protocol))
        for loader in (gb.load, gb.load_model):
            with pytest.raises(ModelFileError, match="not a gradbox model file.*pickle") as info:
                loader(path)
            assert str(path) in str(info.value)
    assert not sentinel.exists()


def test_npz_and_other_formats_are_refused(tmp_path):
    npz = tmp_path / "w.npz"
    np.savez(npz, w=np.ones(3))
    with pytest.raises(ModelFileError, match="not a gradbox model file.*zip"):
        gb.load(npz)
    npy = tmp_path / "w.npy"
    np.save(npy, np.ones(3))
    with pytest.raises(ModelFileError, match="not a gradbox model file.*NumPy"):
        gb.load(npy)
    empty = tmp_path / "empty.gbx"
    empty.write_bytes(b"")
    with pytest.raises(ModelFileError, match="empty"):
        gb.load(empty)
    text = tmp_path / "t.json"
    text.write_text('{"arrays": {}}')
    with pytest.raises(ModelFileError, match="not a gradbox model file"):
        gb.load_model(text)
    z = tmp_path / "z.gbx"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("data.pkl", pickle.dumps(1))
    with pytest.raises(ModelFileError, match="zip"):
        gb.load_model(z)


def test_model_file_error_is_a_value_error():
    assert issubclass(ModelFileError, ValueError)


# --------------------------------------------------------------------------- models
def _model(dtype=np.float32):
    return gb.nn.Sequential(
        gb.nn.Flatten(), gb.nn.Linear(12, 16, dtype=dtype, rng=1), gb.nn.ReLU(), gb.nn.Dropout(0.25),
        gb.nn.Linear(16, 8, bias=False, dtype=dtype, rng=2), gb.nn.Tanh(), gb.nn.LeakyReLU(0.2),
        gb.nn.Linear(8, 8, dtype=dtype, rng=3), gb.nn.Sigmoid(), gb.nn.Linear(8, 3, dtype=dtype, rng=4),
        gb.nn.Softmax(dim=1),
    )


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_model_round_trip_gives_identical_outputs(tmp_path, rng, dtype):
    model = _model(dtype)
    for p in model.parameters():  # non-zero biases, so they are really checked
        p.data[...] = rng.standard_normal(p.shape).astype(dtype)
    model.eval()
    mean, std = rng.standard_normal(12), rng.random(12) + 0.5
    path = tmp_path / "model.gbx"
    gb.save_model(path, model, arrays={"mean": mean, "std": std}, metadata={"classes": ["a", "b", "c"]})
    loaded = gb.load_model(path)
    assert isinstance(loaded, gio.ModelFile)
    assert isinstance(loaded.model, gb.nn.Sequential) and not loaded.model.training
    assert [type(m) for m in loaded.model] == [type(m) for m in model]
    assert list(loaded.arrays) == ["mean", "std"]
    np.testing.assert_array_equal(loaded.arrays["std"], std)
    assert loaded.metadata == {"classes": ["a", "b", "c"]}
    assert loaded.spec == gio.model_to_spec(model)
    x = rng.standard_normal((5, 3, 4)).astype(dtype)
    np.testing.assert_array_equal(loaded.model(x).data, model(x).data)
    for (n1, p1), (n2, p2) in zip(model.named_parameters(), loaded.model.named_parameters(), strict=True):
        assert n1 == n2 and p1.dtype == p2.dtype
        np.testing.assert_array_equal(p1.data, p2.data)
    assert loaded.model[3].p == 0.25 and loaded.model[6].negative_slope == 0.2 and loaded.model[10].dim == 1


def test_float16_model_round_trip(tmp_path):
    model = gb.nn.Sequential(gb.nn.Linear(3, 2, rng=0)).astype(np.float16)
    gb.save_model(tmp_path / "h.gbx", model)
    loaded = gb.load_model(tmp_path / "h.gbx").model
    assert loaded[0].weight.dtype == np.float16
    np.testing.assert_array_equal(loaded[0].weight.data, model[0].weight.data)


def test_loading_a_model_does_not_touch_the_global_generator(tmp_path):
    gb.save_model(tmp_path / "m.gbx", gb.nn.Sequential(gb.nn.Linear(3, 2, rng=0)))
    gb.manual_seed(5)
    state = gb.get_rng_state()
    gb.load_model(tmp_path / "m.gbx")
    assert gb.get_rng_state() == state


def test_spec_round_trip():
    model = _model()
    spec = gio.model_to_spec(model)
    assert spec[1] == {"type": "Linear", "in_features": 12, "out_features": 16, "bias": True, "dtype": "float32"}
    assert spec[4]["bias"] is False
    rebuilt = gio.model_from_spec(spec)
    assert gio.model_to_spec(rebuilt) == spec


class _Custom(gb.nn.Module):
    def forward(self, x):
        return x


class _MyLinear(gb.nn.Linear):
    pass


class _NeedsArgs(gb.nn.Module):
    def __init__(self, width):
        super().__init__()
        self.width = width

    def forward(self, x):
        return x


def test_layers_that_cannot_describe_themselves_raise_type_error(tmp_path):
    with pytest.raises(TypeError, match=r"model\[1\]: .*_NeedsArgs.*takes \['width'\].*get_config"):
        gb.save_model(tmp_path / "c.gbx", gb.nn.Sequential(gb.nn.ReLU(), _NeedsArgs(3)))
    class DefaultsOnly(gb.nn.Module):  # would silently come back with its defaults
        def __init__(self, alpha=0.1):
            super().__init__()
            self.alpha = alpha

    with pytest.raises(TypeError, match=r"DefaultsOnly: .*takes \['alpha'\]"):
        gb.save_model(tmp_path / "c.gbx", gb.nn.Sequential(DefaultsOnly(alpha=0.3)))
    with pytest.raises(TypeError, match="model: expected a gradbox.nn.Module, received list"):
        gb.save_model(tmp_path / "c.gbx", [gb.nn.ReLU()])
    assert not os.listdir(tmp_path)


def test_subclasses_nested_sequentials_and_bare_layers_round_trip(tmp_path):
    model = gb.nn.Sequential(_MyLinear(2, 3, rng=0), gb.nn.Sequential(gb.nn.ReLU(), gb.nn.Linear(3, 2, rng=1)),
                             _Custom())
    gb.save_model(tmp_path / "m.gbx", model)
    loaded = gb.load_model(tmp_path / "m.gbx").model
    assert [type(m) for m in loaded] == [_MyLinear, gb.nn.Sequential, _Custom]
    x = np.arange(4, dtype=np.float32).reshape(2, 2)
    np.testing.assert_array_equal(loaded(x).data, model(x).data)
    gb.save_model(tmp_path / "l.gbx", gb.nn.Linear(2, 2, rng=0))  # a top-level layer: a one-dict spec
    file = gb.load_model(tmp_path / "l.gbx")
    assert type(file.model) is gb.nn.Linear and file.spec["type"] == "Linear"


@pytest.mark.parametrize("spec, exc, words", [
    ("Linear", ValueError, "spec: expected a list"),
    ([{"type": "NoSuchLayer"}], TypeError, "spec[0]['type']: expected one of"),
    ([{"in_features": 2}], ValueError, "'type' string"),
    ([{"type": "Linear", "in_features": 2}], ValueError, "missing keys ['out_features']"),
    ([{"type": "Linear", "in_features": 0, "out_features": 2}], ValueError,
     "Linear(in_features): expected a positive int, received 0"),
    ([{"type": "Linear", "in_features": 2, "out_features": 2, "dtype": "int8"}], ValueError,
     "Linear(dtype): expected one of ['float16', 'float32', 'float64'], received 'int8'"),
    ([{"type": "ReLU", "inplace": True}], ValueError, "unexpected keys ['inplace']"),
    ([{"type": "Dropout", "p": "high"}], ValueError, "Dropout(p): expected a probability in [0, 1), received 'high'"),
    ([{"type": "Softmax", "dim": 1.5}], ValueError, "Softmax(dim): expected an int, received 1.5"),
    ([{"type": "Linear", "in_features": 2, "out_features": 2, "bias": "yes"}], ValueError,
     "Linear(bias): expected True or False"),
    ([{"type": "Sequential", "layers": [{"type": "ReLU", "x": 1}]}], ValueError,
     "spec[0] (Sequential): layers[0] (ReLU): ReLU: unexpected keys ['x']"),
    ({"type": "Linear"}, ValueError, "spec (Linear): Linear: unexpected keys [], missing keys"),
])
def test_model_from_spec_rejects_bad_specs(spec, exc, words):
    with pytest.raises(exc) as info:
        gio.model_from_spec(spec)
    assert words in str(info.value)


def test_non_finite_weights_are_never_written(tmp_path):
    path = tmp_path / "m.gbx"
    model = gb.nn.Sequential(gb.nn.Linear(3, 4, rng=0), gb.nn.ReLU(), gb.nn.Linear(4, 1, rng=0))
    gb.save_model(path, model, metadata={"version": 1})
    model[2].bias.data[0] = np.nan
    with pytest.raises(ValueError, match=r"finite weights.*1 NaN/inf values in parameter '2.bias'"):
        gb.save_model(path, model, metadata={"version": 2})
    model[2].bias.data[0] = 0
    model[0].weight.data[1, 1] = -np.inf
    with pytest.raises(ValueError, match="'0.weight'"):
        gb.save_model(path, model)
    assert gb.load_model(path).metadata == {"version": 1}
    assert os.listdir(tmp_path) == ["m.gbx"]


def test_model_extra_array_names(tmp_path):
    model = gb.nn.Sequential(gb.nn.Linear(2, 2, rng=0))
    with pytest.raises(ValueError, match="reserved for the model's weights"):
        gb.save_model(tmp_path / "m.gbx", model, arrays={"model.0.weight": np.ones(1)})
    with pytest.raises(TypeError, match="arrays: expected a mapping"):
        gb.save_model(tmp_path / "m.gbx", model, arrays=[np.ones(1)])


def test_load_model_on_plain_arrays_and_load_on_model_file(tmp_path):
    gb.save({"a": np.ones(2)}, tmp_path / "a.gbx")
    with pytest.raises(ModelFileError, match="holds arrays but no model"):
        gb.load_model(tmp_path / "a.gbx")
    gb.save_model(tmp_path / "m.gbx", gb.nn.Sequential(gb.nn.Linear(2, 1, rng=0)), arrays={"mu": np.zeros(2)})
    assert list(gb.load(tmp_path / "m.gbx")) == ["model.0.weight", "model.0.bias", "mu"]


# --------------------------------------------------------------------------- atomic writes
def test_atomic_open_text_and_binary(tmp_path):
    p = tmp_path / "history.csv"
    with gio.atomic_open(p, "w") as f:
        f.write("epoch,loss\n1,0.5\n")
    assert p.read_text() == "epoch,loss\n1,0.5\n"
    gio.atomic_write_bytes(str(p), b"\x89PNG")
    assert p.read_bytes() == b"\x89PNG"
    assert os.listdir(tmp_path) == ["history.csv"]


def test_atomic_open_respects_umask(tmp_path):
    old = os.umask(0o022)
    try:
        gio.atomic_write_bytes(tmp_path / "f", b"x")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "f").st_mode) == 0o644


@pytest.mark.parametrize("exc", [RuntimeError("boom"), KeyboardInterrupt()])
def test_atomic_open_failure_keeps_old_file_and_removes_temp(tmp_path, exc):
    p = tmp_path / "metrics.json"
    p.write_text("old")
    with pytest.raises(type(exc)):
        with gio.atomic_open(p, "w") as f:
            f.write("new, half written")
            raise exc
    assert p.read_text() == "old"
    assert os.listdir(tmp_path) == ["metrics.json"]


def test_atomic_open_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="atomic_open\\(mode\\): expected 'wb' or 'w', received 'a'"):
        with gio.atomic_open(tmp_path / "x", "a"):
            pass
    with pytest.raises(IsADirectoryError, match="directory"):
        gio.atomic_write_bytes(tmp_path, b"x")
    with pytest.raises(TypeError, match="data: expected bytes, received str"):
        gio.atomic_write_bytes(tmp_path / "x", "text")
    with pytest.raises(FileNotFoundError, match="could not write .*missing"):
        gio.atomic_write_bytes(tmp_path / "missing" / "x", b"x")
    assert not os.path.exists(tmp_path / "x")


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root ignores permissions")
def test_atomic_open_permission_error_names_path(tmp_path):
    d = tmp_path / "ro"
    d.mkdir()
    d.chmod(0o500)
    try:
        with pytest.raises(PermissionError, match="could not write .*ro.*previous file"):
            gio.atomic_write_bytes(d / "f", b"x")
    finally:
        d.chmod(0o700)


def test_lazy_exports():
    assert gb.save is gio.save and gb.load is gio.load
    assert gb.save_model is gio.save_model and gb.load_model is gio.load_model
    assert gb.io.ModelFileError is ModelFileError
    assert errno.ENOSPC  # used by test_io_crash


def test_save_argument_order_hint(tmp_path):
    with pytest.raises(TypeError, match=r"received the path .*the order is save\(arrays, path\)"):
        gb.save(tmp_path / "x.gbx", {"a": np.ones(1)})


def test_atomic_replace_keeps_permission_bits(tmp_path):
    p = tmp_path / "run.sh"
    p.write_text("old")
    p.chmod(0o750)
    gio.atomic_write_bytes(p, b"new")
    assert p.read_bytes() == b"new" and stat.S_IMODE(os.stat(p).st_mode) == 0o750
