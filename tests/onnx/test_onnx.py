"""gradbox.onnx: every layer type exported and run by onnxruntime (or onnx's reference evaluator)
gives gradbox's outputs to 1e-5 in float32."""
import doctest
import sys

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")

import gradbox as gb  # noqa: E402
import gradbox.onnx as gonnx  # noqa: E402
from gradbox import nn  # noqa: E402
from gradbox.train import predict_logits, predict_proba  # noqa: E402

from .._paths import README  # noqa: E402

BATCHES = (1, 7, 1000)
TOL = 1e-5


def _ort_or_reference():
    try:
        import onnxruntime  # noqa: F401
        return "onnxruntime"
    except ImportError:
        return "reference"


def _gradbox(model, X):
    """gradbox's logits (eval mode, no graph) for input of any rank, and its probabilities as
    ``gradbox.train.predict_proba`` computes them (softmax, or sigmoid of a single logit)."""
    with nn.eval_mode(model), gb.no_grad():
        z = model(gb.Tensor(X)).data
    z64 = z.astype(np.float64)
    if z.shape[1] == 1:
        p = 1 / (1 + np.exp(-z64))
    else:
        e = np.exp(z64 - z64.max(axis=1, keepdims=True))
        p = e / e.sum(axis=1, keepdims=True)
    return z, p


def _has(*names):
    return all(getattr(nn, n, None) is not None for n in names)


def _randomize_batch_norm(model, rng):
    """Non-trivial running statistics and affine parameters, so the export of each is exercised."""
    for m in model.modules():
        if type(m).__name__.startswith("BatchNorm"):
            c = m.num_features
            m.running_mean = rng.normal(size=c).astype(m.weight.dtype)
            m.running_var = rng.uniform(0.5, 2.0, size=c).astype(m.weight.dtype)
            m.weight.data[...] = rng.uniform(0.5, 1.5, size=c)
            m.bias.data[...] = rng.normal(size=c)


def _cases():
    """(layer type, model builder, input shape without the batch): one model per layer type."""
    L = lambda i, o, s: nn.Linear(i, o, rng=s)  # noqa: E731
    cases = [
        ("Linear", lambda: nn.Sequential(L(6, 4, 0)), (6,)),
        ("Linear (no bias)", lambda: nn.Sequential(nn.Linear(6, 4, bias=False, rng=0)), (6,)),
        ("ReLU", lambda: nn.Sequential(L(6, 8, 0), nn.ReLU(), L(8, 3, 1)), (6,)),
        ("LeakyReLU", lambda: nn.Sequential(L(6, 8, 0), nn.LeakyReLU(0.2), L(8, 3, 1)), (6,)),
        ("Sigmoid", lambda: nn.Sequential(L(6, 8, 0), nn.Sigmoid(), L(8, 1, 1)), (6,)),
        ("Tanh", lambda: nn.Sequential(L(6, 8, 0), nn.Tanh(), L(8, 3, 1)), (6,)),
        ("Softmax", lambda: nn.Sequential(L(6, 4, 0), nn.Softmax(dim=1)), (6,)),
        ("Flatten", lambda: nn.Sequential(nn.Flatten(), L(12, 3, 0)), (3, 4)),
        ("Dropout", lambda: nn.Sequential(L(6, 8, 0), nn.Dropout(0.5), L(8, 3, 1)), (6,)),
    ]
    if _has("Conv2d"):
        cases += [
            ("Conv2d", lambda: nn.Sequential(nn.Conv2d(2, 3, 3, rng=0), nn.Flatten()), (2, 6, 7)),
            ("Conv2d (stride 2, padding 1, 5x3)",
             lambda: nn.Sequential(nn.Conv2d(2, 4, (5, 3), stride=2, padding=1, rng=0), nn.Flatten()), (2, 9, 8)),
        ]
    if _has("MaxPool2d", "AvgPool2d"):
        cases += [
            ("MaxPool2d", lambda: nn.Sequential(nn.MaxPool2d(2), nn.Flatten()), (3, 6, 7)),
            ("MaxPool2d (3, stride 2, padding 1)", lambda: nn.Sequential(nn.MaxPool2d(3, stride=2, padding=1),
                                                                          nn.Flatten()), (2, 7, 7)),
            ("AvgPool2d", lambda: nn.Sequential(nn.AvgPool2d(2), nn.Flatten()), (3, 6, 7)),
            ("AvgPool2d (3, stride 2, padding 1)", lambda: nn.Sequential(nn.AvgPool2d(3, stride=2, padding=1),
                                                                          nn.Flatten()), (2, 7, 7)),
        ]
    if _has("BatchNorm1d", "BatchNorm2d"):
        cases += [
            ("BatchNorm1d", lambda: nn.Sequential(L(6, 5, 0), nn.BatchNorm1d(5), nn.ReLU(), L(5, 3, 1)), (6,)),
            ("BatchNorm2d", lambda: nn.Sequential(nn.BatchNorm2d(3), nn.Flatten()), (3, 4, 5)),
        ]
    return cases


CASES = _cases()
WORST = {}  # layer type -> worst |onnx - gradbox| over batches and opsets, printed at the end


@pytest.fixture(scope="module", autouse=True)
def _report_worst(request):
    yield
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if WORST and capture is not None:
        lines = [f"  {name:40s} {diff:.3g}" for name, diff in WORST.items()]
        with capture.global_and_fixture_disabled():
            print("\nworst |ONNX - gradbox| per layer type (float32, batches 1/7/1000, opsets 13/17/21):")
            print("\n".join(lines))


@pytest.mark.parametrize("opset", [13, 17, 21])
@pytest.mark.parametrize("name, build, shape", CASES, ids=[c[0] for c in CASES])
def test_every_layer_type_matches_gradbox(tmp_path, name, build, shape, opset):
    rng = np.random.default_rng(0)
    model = build()
    _randomize_batch_norm(model, rng)
    model.train()  # NOTE: export is in inference mode whatever the model's mode (Dropout is the identity)
    path = tmp_path / "m.onnx"
    gonnx.export(model, path, input_shape=(None, *shape), opset=opset)
    proto = onnx.load(path)
    onnx.checker.check_model(proto, full_check=True)
    assert proto.opset_import[0].version == opset
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert [o.name for o in proto.graph.output] == ["logits", "probabilities"]
    ops = {node.op_type for node in proto.graph.node}
    if name.startswith("BatchNorm"):  # Mul + Add at opset 13 (see gradbox/onnx.py's _batch_norm)
        assert ("BatchNormalization" in ops) == (opset >= 14)
    worst = 0.0
    for n in BATCHES:
        X = rng.normal(size=(n, *shape)).astype(np.float32)
        got = gonnx.run(path, X, backend=_ort_or_reference())
        want, proba = _gradbox(model, X)
        assert got["logits"].shape == want.shape and got["logits"].dtype == np.float32
        np.testing.assert_allclose(got["logits"], want, rtol=TOL, atol=TOL)
        np.testing.assert_allclose(got["probabilities"], proba, rtol=TOL, atol=TOL)
        if want.ndim == 2 and want.shape[1] > 1:  # the library's own predict_proba, where it applies
            np.testing.assert_allclose(got["probabilities"], predict_proba(model, X.reshape(n, -1)) if X.ndim == 2
                                       else proba, rtol=TOL, atol=TOL)
        worst = max(worst, float(np.abs(got["logits"] - want).max()))
        if n == 7:  # the fallback evaluator gives the same, layer by layer
            np.testing.assert_allclose(gonnx.run(path, X, backend="reference")["logits"], want, rtol=TOL, atol=TOL)
    WORST[name] = max(WORST.get(name, 0.0), worst)


def test_the_models_training_mode_is_left_as_it_was(tmp_path):
    model = nn.Sequential(nn.Linear(4, 3, rng=0), nn.Dropout(0.5))
    model.train()
    gonnx.export(model, tmp_path / "m.onnx")
    assert all(m.training for m in model.modules())
    model.eval()
    gonnx.export(model, tmp_path / "m.onnx")
    assert not any(m.training for m in model.modules())


def test_reference_evaluator_is_the_fallback(tmp_path, monkeypatch):
    model = nn.Sequential(nn.Linear(5, 8, rng=0), nn.Tanh(), nn.Linear(8, 3, rng=1))
    path = tmp_path / "m.onnx"
    gonnx.export(model, path)
    X = np.random.default_rng(1).normal(size=(7, 5)).astype(np.float32)
    ref = gonnx.run(path, X, backend="reference")
    np.testing.assert_allclose(ref["logits"], predict_logits(model, X), rtol=TOL, atol=TOL)
    # without onnxruntime, "auto" uses the reference evaluator, and "onnxruntime" says what is missing
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    auto = gonnx.run(path, X)
    np.testing.assert_array_equal(auto["logits"], ref["logits"])
    with pytest.raises(ImportError, match="onnxruntime"):
        gonnx.run(path, X, backend="onnxruntime")
    with pytest.raises(ValueError, match="backend"):
        gonnx.run(path, X, backend="tvm")


def test_float64_models_export_as_double(tmp_path):
    model = nn.Sequential(nn.Linear(5, 8, dtype=np.float64, rng=0), nn.ReLU(), nn.Linear(8, 3, dtype=np.float64, rng=1))
    path = tmp_path / "m.onnx"
    proto = gonnx.export(model, path)
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.DOUBLE
    X = np.random.default_rng(0).normal(size=(7, 5))
    np.testing.assert_allclose(gonnx.run(path, X)["logits"], predict_logits(model, X), rtol=1e-12, atol=1e-12)


@pytest.fixture(scope="module")
def digits_model_file(tmp_path_factory):
    """A small MLP trained on the digits by gradbox, saved with its standardisation (as `gradbox train`)."""
    from gradbox.data import Standardizer

    ds = gb.datasets.load("digits")
    X, y = np.asarray(ds.X, dtype=np.float64).reshape(len(ds.X), -1), ds.y
    scaler = Standardizer().fit(X[:1200])
    model = gb.train.build_mlp(X.shape[1], [32], 10, rng=0)
    gb.train.fit(model, scaler.transform(X[:1200]).astype(np.float32), y[:1200], epochs=20, batch_size=64, seed=0,
                 optimizer=gb.optim.Adam(model.parameters(), lr=0.01), verbose=0)
    path = tmp_path_factory.mktemp("digits") / "digits.gbx"
    gb.io.save_model(path, model, arrays={"norm.mean": scaler.mean_, "norm.scale": scaler.scale_},
                     metadata={"classes": list(range(10))})
    return path, X, y, scaler


@pytest.mark.parametrize("opset", [13, 17, 21])
def test_trained_digits_mlp_with_its_standardisation(tmp_path, digits_model_file, opset):
    path, X, y, scaler = digits_model_file
    out = tmp_path / "digits.onnx"
    summary = gonnx.export_model_file(path, out, opset=opset)
    assert str(out) in summary and f"opset {opset}" in summary
    proto = onnx.load(out)
    onnx.checker.check_model(proto, full_check=True)
    props = {p.key: p.value for p in proto.metadata_props}
    assert props["classes"] == "[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]" and "preprocessing" in props
    mf = gb.io.load_model(path)
    rng = np.random.default_rng(0)
    worst = 0.0
    for n in BATCHES:
        idx = rng.choice(len(X), size=n, replace=False)
        raw = X[idx].astype(np.float32)  # the raw pixels, as `gradbox predict` takes them
        got = gonnx.run(out, raw, backend=_ort_or_reference())
        want = predict_logits(mf.model, scaler.transform(X[idx]).astype(np.float32))
        np.testing.assert_allclose(got["logits"], want, rtol=TOL, atol=TOL)
        np.testing.assert_allclose(got["probabilities"], predict_proba(mf.model, scaler.transform(X[idx])
                                                                       .astype(np.float32)), rtol=TOL, atol=TOL)
        assert (got["logits"].argmax(1) == want.argmax(1)).mean() > 0.999
        worst = max(worst, float(np.abs(got["logits"] - want).max()))
    WORST["trained digits MLP (with standardisation)"] = max(WORST.get("trained digits MLP (with standardisation)",
                                                                       0.0), worst)
    acc = (gonnx.run(out, X[1200:].astype(np.float32))["probabilities"].argmax(1) == y[1200:]).mean()
    assert acc > 0.9


@pytest.mark.skipif(not _has("Conv2d", "MaxPool2d", "BatchNorm2d"), reason="gradbox without nn.Conv2d")
def test_trained_digits_cnn(tmp_path):
    ds = gb.datasets.load("digits")
    X, y = np.asarray(ds.X, dtype=np.float32).reshape(-1, 1, 8, 8) / 16.0, ds.y
    model = nn.Sequential(nn.Conv2d(1, 6, 3, padding=1, rng=0), nn.BatchNorm2d(6), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Conv2d(6, 8, 3, padding=1, rng=1), nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(),
                          nn.Linear(32, 10, rng=2))
    # NOTE: a plain loop of the public pieces (not Trainer), so 4-D batches work whatever Trainer accepts
    opt, loss_fn, order = gb.optim.Adam(model.parameters(), lr=0.01), nn.CrossEntropyLoss(), np.arange(1200)
    model.train()
    for step in range(60):
        idx = order[(step * 64) % 1152:(step * 64) % 1152 + 64]
        opt.zero_grad()
        loss_fn(model(gb.Tensor(X[idx])), y[idx]).backward()
        opt.step()
    model.eval()
    assert (_gradbox(model, X[1200:])[0].argmax(1) == y[1200:]).mean() > 0.6  # it learned something
    path = tmp_path / "cnn.onnx"
    gonnx.export(model, path, input_shape=(None, 1, 8, 8))
    onnx.checker.check_model(onnx.load(path), full_check=True)
    rng = np.random.default_rng(0)
    worst = 0.0
    for n in BATCHES:
        xb = X[rng.choice(len(X), size=n, replace=False)]
        got = gonnx.run(path, xb, backend=_ort_or_reference())["logits"]
        want = _gradbox(model, xb)[0]
        np.testing.assert_allclose(got, want, rtol=TOL, atol=TOL)
        worst = max(worst, float(np.abs(got - want).max()))
    WORST["trained digits CNN"] = worst


class MyLayer(nn.Module):
    def forward(self, x):
        return x * 2


def test_a_layer_without_exporter_is_named(tmp_path):
    model = nn.Sequential(nn.Linear(4, 4, rng=0), MyLayer())
    with pytest.raises(TypeError, match=r"model\[1\] \(MyLayer\): cannot be exported to ONNX"):
        gonnx.export(model, tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


@pytest.mark.parametrize("kwargs, match", [
    ({"opset": 12}, "opset: expected an int from 13"),
    ({"opset": 99}, "opset: expected an int from 13"),
    ({"opset": "17"}, "opset"),
    ({"input_shape": (4,)}, "input_shape: expected"),
    ({"input_shape": (2, 4)}, "input_shape: expected"),
    ({"input_shape": (None, 5)}, "input_shape"),
    ({"preprocessing": (np.zeros(3), np.ones(3))}, "preprocessing: expected mean and scale of 4"),
    ({"preprocessing": (np.zeros(4), np.zeros(4))}, "positive"),
])
def test_bad_arguments_are_named(tmp_path, kwargs, match):
    model = nn.Sequential(nn.Linear(4, 2, rng=0))
    with pytest.raises(ValueError, match=match):
        gonnx.export(model, tmp_path / "m.onnx", **kwargs)


def test_a_first_layer_without_an_input_width_needs_input_shape(tmp_path):
    with pytest.raises(ValueError, match=r"input_shape: expected \(None, \.\.\.\)"):
        gonnx.export(nn.Sequential(nn.Flatten(), nn.Linear(4, 2, rng=0)), tmp_path / "m.onnx")
    with pytest.raises(TypeError, match="model: expected"):
        gonnx.export("not a model", tmp_path / "m.onnx")


def test_preprocessing_from_a_standardizer_or_a_pair(tmp_path):
    from gradbox.data import Standardizer

    rng = np.random.default_rng(0)
    raw = rng.normal(3.0, 2.0, size=(50, 4))
    scaler = Standardizer().fit(raw)
    model = nn.Sequential(nn.Linear(4, 3, rng=0))
    want = predict_logits(model, scaler.transform(raw).astype(np.float32))
    for pre in (scaler, (scaler.mean_, scaler.scale_)):
        gonnx.export(model, tmp_path / "m.onnx", preprocessing=pre)
        got = gonnx.run(tmp_path / "m.onnx", raw.astype(np.float32))["logits"]
        np.testing.assert_allclose(got, want, rtol=TOL, atol=TOL)


def test_docstring_examples():
    result = doctest.testmod(gonnx, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0 and result.attempted > 0


def test_readme_onnx_example_runs(tmp_path, digits_model_file, monkeypatch, capsys):
    """The README's export-then-onnxruntime lines: the export through export_model_file (what
    `gradbox export MODEL --format onnx --out FILE` runs), then the Python lines as written."""
    import os
    import re

    pytest.importorskip("onnxruntime")
    readme = open(README, encoding="utf-8").read()
    section = readme[readme.index("## scikit-learn and ONNX"):]
    block = re.search(r"```bash\n(.*?)```", section, flags=re.S).group(1)
    assert "gradbox export runs/a/model.gbx --format onnx --out digits.onnx" in block
    code = re.search(r'python -c "\n(.*?)"\n', block, flags=re.S).group(1)
    monkeypatch.chdir(tmp_path)
    gonnx.export_model_file(digits_model_file[0], "digits.onnx")
    exec(compile(code, "README.md[onnx example]", "exec"), {"__name__": "__readme__"})
    out = capsys.readouterr().out.strip()
    assert out.startswith("[") and len(out.strip("[]").split()) == 5


def test_preprocessing_of_shaped_inputs_is_per_flat_feature(tmp_path):
    """As `gradbox predict` does for image models: standardise the flat features, then shape them."""
    rng = np.random.default_rng(0)
    raw = rng.normal(2.0, 3.0, size=(20, 3, 4))
    mean, scale = raw.reshape(20, -1).mean(0), raw.reshape(20, -1).std(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 3, rng=0))
    gonnx.export(model, tmp_path / "m.onnx", input_shape=(None, 3, 4), preprocessing=(mean, scale))
    got = gonnx.run(tmp_path / "m.onnx", raw.astype(np.float32))["logits"]
    want = _gradbox(model, ((raw.reshape(20, -1) - mean) / scale).reshape(20, 3, 4).astype(np.float32))[0]
    np.testing.assert_allclose(got, want, rtol=TOL, atol=TOL)
    with pytest.raises(ValueError, match="of 12 features"):
        gonnx.export(model, tmp_path / "m.onnx", input_shape=(None, 3, 4), preprocessing=(mean[:4], scale[:4]))


def _gradbox_cli(*args, cwd=None):
    import subprocess

    return subprocess.run([sys.executable, "-m", "gradbox", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


def test_cli_export_then_onnxruntime_equals_the_model_files_predictions(tmp_path, digits_model_file):
    path, X, _, _ = digits_model_file
    out = tmp_path / "digits.onnx"
    res = _gradbox_cli("export", path, "--format", "onnx", "--out", out, "--opset", 21)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith(f"wrote {out}: ONNX opset 21") and "standardisation" in res.stdout
    raw = X[:300].astype(np.float32)
    got = gonnx.run(out, raw)["probabilities"]
    # what `gradbox predict` prints: the model file's own preprocessing applied
    np.testing.assert_allclose(got, gb.io.load_model(path).predict_proba(raw), rtol=TOL, atol=TOL)
    assert _gradbox_cli("export", path, "--out", tmp_path / "q.onnx", "--quiet").stdout == ""


@pytest.mark.parametrize("args, code, message", [
    (["export", "missing.gbx", "--out", "m.onnx"], 1, "gradbox: error: "),
    (["export", "MODEL", "--out", "m.onnx", "--opset", "5"], 1, "gradbox: error: opset: expected an int from 13"),
    (["export", "MODEL", "--format", "tflite", "--out", "m.onnx"], 2, "invalid choice: 'tflite'"),
    (["export", "MODEL"], 2, "--out"),
])
def test_cli_export_errors_are_one_line(tmp_path, digits_model_file, args, code, message):
    args = [str(digits_model_file[0]) if a == "MODEL" else a for a in args]
    res = _gradbox_cli(*args, cwd=tmp_path)
    assert res.returncode == code and message in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr
    assert not (tmp_path / "m.onnx").exists()


def test_nested_sequentials_are_unrolled_and_named(tmp_path):
    inner = nn.Sequential(nn.Linear(8, 8, rng=1), nn.Tanh())
    model = nn.Sequential(nn.Linear(4, 8, rng=0), nn.ReLU(), inner, nn.Linear(8, 2, rng=2))
    gonnx.export(model, tmp_path / "m.onnx")
    X = np.random.default_rng(0).normal(size=(7, 4)).astype(np.float32)
    np.testing.assert_allclose(gonnx.run(tmp_path / "m.onnx", X)["logits"], _gradbox(model, X)[0], rtol=TOL, atol=TOL)
    inner.append(MyLayer())
    with pytest.raises(TypeError, match=r"model\[2\]\[2\] \(MyLayer\): cannot be exported to ONNX"):
        gonnx.export(model, tmp_path / "m2.onnx")
