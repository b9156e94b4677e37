"""The CNN user-facing parts (issue 13): `gradbox train --conv` on the embedded digits, its defaults and
data handling, filters.png, and explain / info / evaluate / predict / gradcheck / graph on a CNN model
file with BatchNorm."""
import json
import os
import subprocess
import sys

import numpy as np

import pytest

import gradbox as gb
from gradbox import nn
from gradbox.train import run

from .. import _paths

ROOT = str(_paths.ROOT)


def _gradbox(*args, cwd, timeout=900):
    return subprocess.run([sys.executable, "-m", "gradbox", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=dict(os.environ, PYTHONPATH=ROOT), timeout=timeout)


@pytest.mark.parametrize("extra", [[], ["--batch-norm"]], ids=["plain", "batch-norm"])
def test_train_conv_on_digits(tmp_path, extra):
    out = tmp_path / "run"
    proc = _gradbox("train", "--conv", "16,32", *extra, "--out", out, "--quiet", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test_accuracy"] >= 0.98, metrics["test_accuracy"]
    # the conv-aware defaults were used (the flag alone; see presets.CONV_DEFAULTS)
    assert metrics["epochs_trained"] == 30 and metrics["hyperparameters"]["dropout"] == 0.3
    model = gb.io.load_model(out / "model.gbx").model
    kinds = [type(m).__name__ for m in model.modules()]
    assert kinds.count("Conv2d") == 2 and kinds.count("MaxPool2d") == 2
    if extra:
        assert kinds.count("BatchNorm2d") == 2
        bn = next(m for m in model.modules() if type(m).__name__ == "BatchNorm2d")
        assert int(bn.num_batches_tracked) > 0 and not np.allclose(bn.running_var, 1.0)  # trained buffers saved
    pytest.importorskip("matplotlib")
    assert "filters.png" in metrics["files"]
    assert (out / "filters.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_conv_defaults_apply_only_to_unset_keys():
    c = run.resolve_config({"conv": "16,32"})
    assert c["conv"] == [16, 32] and c["epochs"] == 30 and c["dropout"] == 0.3
    c = run.resolve_config({"conv": [8], "epochs": 3, "dropout": 0.0})
    assert c["epochs"] == 3 and c["dropout"] == 0.0
    mlp = run.resolve_config({})
    assert mlp["epochs"] == run.DEFAULTS["epochs"] and mlp["dropout"] == run.DEFAULTS["dropout"]
    # a resolved configuration (config.json of a run) resolves to itself
    assert run.resolve_config(c) == c


def test_image_standardizer_is_per_channel():
    rng = np.random.default_rng(0)
    X = rng.normal(loc=[[[[1.0]], [[-3.0]], [[10.0]]]], scale=[[[[2.0]], [[0.5]], [[4.0]]]], size=(40, 3, 5, 6))
    X[:, 1] = 7.0  # a constant channel maps to 0, not NaN
    s = run.image_standardizer(X.reshape(40, -1), (3, 5, 6))
    assert s.mean_.shape == (90,) and s.scale_.shape == (90,)
    for ch in range(3):
        assert np.ptp(s.mean_[ch * 30:(ch + 1) * 30]) == 0 and np.ptp(s.scale_[ch * 30:(ch + 1) * 30]) == 0
    Z = s.transform(X.reshape(40, -1)).reshape(X.shape)
    np.testing.assert_allclose(Z[:, [0, 2]].mean(axis=(0, 2, 3)), 0, atol=1e-12)
    np.testing.assert_allclose(Z[:, [0, 2]].std(axis=(0, 2, 3)), 1, atol=1e-12)
    assert np.all(Z[:, 1] == 0)


def test_course_hdf5_images_reach_the_cnn_as_nchw(tmp_path):
    """The course's HDF5 stores (m, n_H, n_W, n_C); its flat rows are not C·H·W rows."""
    h5py = pytest.importorskip("h5py")
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, size=(20, 6, 5, 3), dtype=np.uint8)
    xt = rng.integers(0, 256, size=(6, 6, 5, 3), dtype=np.uint8)
    path = tmp_path / "train_tiny.h5"
    with h5py.File(path, "w") as f:
        f["train_set_x"], f["train_set_y"] = x, np.arange(20) % 2
        f["test_set_x"], f["test_set_y"] = xt, np.arange(6) % 2
    c = run.resolve_config({"dataset": str(path), "conv": [4], "val_split": 0.0})
    ds, (Xtr, ytr, Xva, yva, Xte, yte), scaler, shape = run.prepare_data(c)
    assert shape == (3, 6, 5) and Xte.shape == (6, 3, 6, 5)
    expected = (xt.transpose(0, 3, 1, 2) / 255.0).reshape(6, -1)
    np.testing.assert_allclose(Xte.reshape(6, -1), scaler.transform(expected), rtol=1e-5, atol=1e-5)


def test_conv_on_flat_csv_is_a_clear_error(tmp_path):
    csv = tmp_path / "flat.csv"
    csv.write_text("a,b,c,label\n" + "".join(f"{i},{i + 1},{i % 3},{i % 2}\n" for i in range(20)))
    proc = _gradbox("train", "--conv", "8", "--dataset", csv, "--out", tmp_path / "r", "--quiet", cwd=tmp_path)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "--conv: expected image data of shape (N, C, H, W)" in lines[0], proc.stderr
    assert not (tmp_path / "r").exists()


# --- a tiny CNN with BatchNorm, trained once, through every model command --------------------------
@pytest.fixture(scope="module")
def cnn_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cnn")
    out = tmp / "run"
    proc = _gradbox("train", "--conv", "4,8", "--hidden", "16", "--batch-norm", "--epochs", "2", "--out", out,
                    "--quiet", cwd=tmp)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out


def test_info_lists_every_layer_with_its_output_shape(cnn_run, tmp_path):
    proc = _gradbox("info", cnn_run / "model.gbx", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    assert "input (N, 1, 8, 8)" in text
    for layer, shape in [("Conv2d", "(N, 4, 8, 8)"), ("BatchNorm2d", "(N, 4, 8, 8)"), ("MaxPool2d", "(N, 4, 4, 4)"),
                         ("Conv2d", "(N, 8, 4, 4)"), ("MaxPool2d", "(N, 8, 2, 2)"), ("Flatten", "(N, 32)"),
                         ("BatchNorm1d", "(N, 16)")]:
        assert any(layer in line and shape in line for line in text.splitlines()), (layer, shape, text)
    # the images are standardised per channel (the stored mean and scale are kept per pixel)
    assert "standardise per channel: a stored mean/scale for each of 1 channel (64 features)" in text


def test_evaluate_reproduces_the_run(cnn_run, tmp_path):
    metrics = json.loads((cnn_run / "metrics.json").read_text())
    proc = _gradbox("evaluate", cnn_run / "model.gbx", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    acc = float(next(line for line in proc.stdout.splitlines() if line.startswith("accuracy")).split()[1])
    assert acc == pytest.approx(metrics["test_accuracy"], abs=1e-4)


def test_predict_takes_flat_rows_or_nchw_images(cnn_run, tmp_path):
    X = gb.datasets.load("digits").X[:7]
    np.savetxt(tmp_path / "x.csv", X, delimiter=",")
    np.savez(tmp_path / "x.npz", X=X.reshape(7, 1, 8, 8))
    outs = []
    for name in ("x.csv", "x.npz"):
        proc = _gradbox("predict", cnn_run / "model.gbx", "--input", tmp_path / name, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        outs.append([line.split(",")[0] for line in proc.stdout.strip().splitlines()[1:]])
    expected = [str(v) for v in gb.io.load_model(cnn_run / "model.gbx").predict(X)]
    assert outs[0] == outs[1] == expected


def test_gradcheck_passes(cnn_run, tmp_path):
    proc = _gradbox("gradcheck", cnn_run / "model.gbx", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "PASSED" in proc.stdout
    for name in ("0.weight", "1.weight", "4.weight", "5.bias"):  # both convs, both BatchNorm2d
        assert any(line.startswith(name) and line.rstrip().endswith("ok") for line in proc.stdout.splitlines())


def test_graph_shows_the_conv_boxes(cnn_run, tmp_path):
    proc = _gradbox("graph", cnn_run / "model.gbx", "--out", tmp_path / "g.dot", "--quiet", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    dot = (tmp_path / "g.dot").read_text()
    for box in ("Conv2dFunction", "BatchNormFunction", "MaxPool2dFunction", "(4, 1, 8, 8)"):
        assert box in dot
    # drawn in the order the layers are written: the ReLU feeds the pooling (Sequential runs it after)
    labels = {line.split()[0]: line.split("<b>")[1].split("</b>")[0] for line in dot.splitlines() if "<b>" in line}
    edges = [line.strip().rstrip(";").split(" -> ") for line in dot.splitlines() if " -> " in line]
    assert ["ReLU", "MaxPool2dFunction"] in [[labels.get(a), labels.get(b)] for a, b in edges]
    assert ["MaxPool2dFunction", "ReLU"] not in [[labels.get(a), labels.get(b)] for a, b in edges]


def test_explain_cli_shows_both_layouts(cnn_run, tmp_path):
    proc = _gradbox("explain", cnn_run / "model.gbx", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    assert "course (m, n_H, n_W, n_C)" in text and "all hold" in text
    m = int(text.split("batch of m = ")[1].split(",")[0])
    rows = {line.split()[0]: line for line in text.splitlines() if line[:2].strip().isdigit()}
    assert f"({m}, 4, 8, 8)" in rows["0"] and f"({m}, 8, 8, 4)" in rows["0"] and "(3, 3, 1, 4)" in rows["0"]
    assert f"({m}, 8, 2, 2)" in rows["7"] and f"({m}, 2, 2, 8)" in rows["7"] and "MaxPool2d f=2 stride=2" in rows["7"]


def test_explain_report_of_a_cnn():
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, rng=0), nn.BatchNorm2d(4), nn.ReLU(), nn.AvgPool2d(2),
                          nn.Conv2d(4, 6, 2, stride=2, rng=1), nn.ReLU(), nn.Flatten(), nn.Linear(6 * 2 * 3, 5, rng=2),
                          nn.BatchNorm1d(5), nn.Tanh(), nn.Linear(5, 3, rng=3))
    X = np.random.default_rng(0).normal(size=(7, 3, 8, 12)).astype(np.float32)
    report = gb.explain(model, X, np.arange(7) % 3)
    assert [r["kind"] for r in report.rows] == ["conv", "conv", "dense", "dense"]
    r1, r2, r3 = report.rows[:3]
    assert r1["W_shape"] == (4, 3, 3, 3) and r1["W_notes"] == (3, 3, 3, 4) and r1["b_notes"] == (1, 1, 1, 4)
    assert r1["Z_shape"] == (7, 4, 8, 12) and r1["Z_notes"] == (7, 8, 12, 4)
    assert r1["normalization"] == "BatchNorm2d" and r1["activation"] == "ReLU"
    assert r2["Z_shape"] == (7, 6, 2, 3) and r2["A_notes"] == (7, 2, 3, 6)
    assert r3["normalization"] == "BatchNorm1d" and r3["activation"] == "Tanh" and r3["Z_notes"] == (5, 7)
    assert report.checks_passed
    pool = next(r for r in report.layers if r["name"].startswith("AvgPool2d"))
    assert pool["shape"] == (7, 4, 4, 6) and pool["notes"] == (7, 4, 6, 4) and "f=2 stride=2 pad=0" in pool["name"]
    assert "course (m, n_H, n_W, n_C)" in str(report)


def test_plot_filters_rgb_gray_and_errors(tmp_path):
    pytest.importorskip("matplotlib")
    from gradbox.plots_conv import feature_maps, plot_filters

    rgb = nn.Sequential(nn.Conv2d(3, 5, 3, rng=0), nn.BatchNorm2d(5), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Conv2d(5, 2, 2, rng=1), nn.Flatten(), nn.Linear(2 * 3 * 3, 2, rng=2))
    x = np.random.default_rng(0).normal(size=(3, 10, 10)).astype(np.float32)
    maps = feature_maps(rgb, x)
    assert [label for label, _ in maps] == ["Conv2d 1 (3→5, 3×3) + BatchNorm2d + ReLU", "Conv2d 2 (5→2, 2×2)"]
    assert [a.shape for _, a in maps] == [(5, 8, 8), (2, 3, 3)]
    assert np.all(maps[0][1] >= 0)  # after the ReLU
    for model, sample, name in [(rgb, x, "rgb.png"), (rgb, None, "filters-only.png"),
                                (nn.Sequential(nn.Conv2d(2, 3, 3, rng=0)), x[:2], "two-channels.png")]:
        path = plot_filters(model, sample, tmp_path / name, title=name)
        assert open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match=r"x_sample\): expected one image of shape \(3, H, W\)"):
        plot_filters(rgb, x[:1], tmp_path / "bad.png")
    with pytest.raises(ValueError, match="expected a network with a Conv2d"):
        plot_filters(nn.Sequential(nn.Linear(2, 2)), None, tmp_path / "bad.png")
    assert not (tmp_path / "bad.png").exists()


def _write_idx(path, array):
    codes = {np.dtype(np.uint8): 0x08}
    header = bytes([0, 0, codes[array.dtype], array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    path.write_bytes(header + array.tobytes())


@pytest.mark.parametrize("kind", ["idx", "npz"])
def test_idx_and_npz_images_reach_the_cnn_as_nchw(tmp_path, kind):
    rng = np.random.default_rng(2)
    if kind == "idx":
        images = rng.integers(0, 256, size=(30, 7, 9), dtype=np.uint8)
        _write_idx(tmp_path / "train-images-idx3-ubyte", images)
        _write_idx(tmp_path / "train-labels-idx1-ubyte", (np.arange(30) % 3).astype(np.uint8))
        path, expected = tmp_path / "train-images-idx3-ubyte", images[:, None] / 255.0
    else:
        expected = rng.normal(size=(30, 2, 5, 6))
        np.savez(tmp_path / "img.npz", X=expected, y=np.arange(30) % 3)
        path = tmp_path / "img.npz"
    c = run.resolve_config({"dataset": str(path), "conv": [4], "val_split": 0.0, "test_split": 0.2})
    ds, (Xtr, ytr, Xva, yva, Xte, yte), scaler, shape = run.prepare_data(c)
    assert shape == expected.shape[1:] and Xtr.shape[1:] == shape and Xte.shape[1:] == shape
    # every training image is one of the file's images, standardised per channel
    raw = scaler.transform(expected.reshape(len(expected), -1)).reshape(expected.shape)
    found = [int(np.argmin(np.abs(raw - x).reshape(len(raw), -1).max(axis=1))) for x in Xtr]
    assert all(np.allclose(raw[i], x, atol=1e-5) for i, x in zip(found, Xtr)) and len(set(found)) == len(Xtr)
