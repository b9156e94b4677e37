"""The ``gradbox`` command end to end: in-process ``main([...])`` and real subprocesses."""
import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import gradbox as gb
from gradbox.cli import main

from tests._helpers import TINY_TRAIN, run_cli


# NOTE: curves.png needs matplotlib (the cli extra); without it a run writes everything else.
CURVES = ["curves.png"] if importlib.util.find_spec("matplotlib") is not None else []

SMALL = TINY_TRAIN


run = run_cli


def sub(*args, cwd=None):
    # NOTE: `--threads 1` (the default) needs threadpoolctl; where it is not installed (a venv with only
    # NumPy), the environment pins BLAS to one thread instead, as a user would.
    env = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", **os.environ}
    return subprocess.run([sys.executable, "-m", "gradbox", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=120, check=False, env=env)


def assert_one_line_error(rc, err, code, pattern=None):
    assert rc == code, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("gradbox: error: ")
    assert "Traceback" not in err
    if pattern:
        assert pattern in lines[0], lines[0]


def read_json(*parts):
    with open(os.path.join(*map(str, parts))) as f:
        return json.load(f)


def no_temp_files(folder):
    return [f for f in os.listdir(folder) if f.endswith(".tmp")] == []


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A small model trained in-process on moons."""
    out = str(tmp_path_factory.mktemp("runs") / "moons")
    assert main(["train", *SMALL, "--out", out]) == 0
    return out


@pytest.fixture
def csv_data(tmp_path):
    ds = gb.datasets.load("moons", n_samples=40, seed=3)
    path = tmp_path / "moons.csv"
    rows = ["a,b,label"] + [f"{x0},{x1},{'yes' if t else 'no'}" for (x0, x1), t in zip(ds.X, ds.y)]
    path.write_text("\n".join(rows) + "\n")
    return path


# --- gradbox train ------------------------------------------------------------------------
def test_default_train_reaches_97_percent_on_digits(tmp_path):
    """`gradbox train` with no arguments: digits, >= 0.97 test accuracy, a complete run folder."""
    r = sub("train", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stderr.strip() == ""
    runs = os.listdir(tmp_path / "runs")
    assert len(runs) == 1 and runs[0].startswith("digits-")
    folder = tmp_path / "runs" / runs[0]
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["test_accuracy"] >= 0.97
    assert "test accuracy" in r.stdout and "epoch 50/50" in r.stdout and "time left" in r.stdout
    for name in ("model.gbx", "metrics.json", "history.csv", *CURVES, "config.json"):
        assert (folder / name).stat().st_size > 0
    assert no_temp_files(folder)
    h = metrics["history"]
    assert len(h["loss"]) == len(h["val_loss"]) == len(h["accuracy"]) == len(h["val_accuracy"]) == 50
    assert metrics["seed"] == 0 and metrics["hyperparameters"]["hidden"] == [256, 128]
    assert metrics["elapsed_seconds"] > 0 and metrics["n_test"] == 270
    mf = gb.io.load_model(folder / "model.gbx")
    assert mf.arrays["norm.mean"].shape == (64,) and mf.arrays["norm.scale"].shape == (64,)
    assert mf.metadata["dataset"]["name"] == "digits" and len(mf.metadata["classes"]) == 10
    if CURVES:
        assert (folder / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_train_writes_a_complete_run(trained):
    files = set(os.listdir(trained))
    assert {"model.gbx", "metrics.json", "history.csv", *CURVES, "config.json"} <= files
    metrics = read_json(trained, "metrics.json")
    assert 0 <= metrics["test_accuracy"] <= 1 and metrics["epochs_trained"] == 3
    assert metrics["dataset"]["options"] == {"n_samples": 120}
    with open(os.path.join(trained, "history.csv")) as f:
        lines = f.read().splitlines()
    assert lines[0].startswith("epoch,loss,accuracy,val_loss,val_accuracy") and len(lines) == 4


def test_same_seed_same_weights_different_seed_differs(tmp_path):
    def weights(out):
        return gb.io.load_model(os.path.join(out, "model.gbx")).model.state_dict()

    a, b, c = (str(tmp_path / n) for n in "abc")
    flags = [*SMALL, "--dropout", "0.2"]
    assert main(["train", *flags, "--out", a]) == 0
    assert main(["train", *flags, "--out", b]) == 0
    assert main(["train", *flags, "--out", c, "--seed", "1"]) == 0
    wa, wb, wc = weights(a), weights(b), weights(c)
    assert all(np.array_equal(wa[k], wb[k]) for k in wa)
    assert not all(np.array_equal(wa[k], wc[k]) for k in wa)


def test_flags_are_applied(tmp_path, capsys):
    out = str(tmp_path / "r")
    rc, stdout, _ = run(["train", "--dataset", "xor", "--n-samples", "80", "--hidden", "6,5", "--activation", "tanh",
                         "--optimizer", "nesterov", "--lr", "0.02", "--momentum", "0.8", "--epochs", "2",
                         "--batch-size", "full", "--weight-decay", "0.001", "--init", "xavier_uniform", "--seed", "4",
                         "--val-split", "0.25", "--test-split", "0.25", "--dropout", "0", "--out", out], capsys)
    assert rc == 0
    assert "epoch 2/2" in stdout and "test accuracy" in stdout
    hp = read_json(out, "metrics.json")["hyperparameters"]
    assert hp["hidden"] == [6, 5] and hp["optimizer"] == "nesterov" and hp["lr"] == 0.02
    assert hp["batch_size"] == "full" and hp["momentum"] == 0.8 and hp["init"] == "xavier_uniform"
    m = gb.io.load_model(os.path.join(out, "model.gbx")).model
    assert [type(x).__name__ for x in m] == ["Linear", "Tanh", "Linear", "Tanh", "Linear"]
    assert read_json(out, "metrics.json")["optimizer_steps"] == 2  # full batch


@pytest.mark.parametrize("optimizer", ["adam", "momentum"])
def test_fused_training_gives_the_same_weights(tmp_path, optimizer):
    if gb.optim._fused_kernels() is None:
        pytest.skip("--fused needs numba (pip install 'gradbox[fast]')")
    runs = {}
    for name, extra in (("plain", []), ("fused", ["--fused"])):
        out = str(tmp_path / name)
        assert main(["train", *SMALL, "--optimizer", optimizer, "--out", out, *extra]) == 0
        runs[name] = gb.io.load_model(os.path.join(out, "model.gbx")).model.state_dict()
        assert read_json(out, "config.json")["config"]["fused"] is bool(extra)
    for key, value in runs["plain"].items():
        assert np.array_equal(value, runs["fused"][key]), key


def test_fused_without_numba_is_a_one_line_error(tmp_path, capsys, monkeypatch):
    def missing():
        raise ImportError("No module named 'numba'")

    monkeypatch.setattr(gb.optim.optimizer, "_KERNELS", None)
    monkeypatch.setattr(gb.optim.optimizer, "_load_kernels", missing)
    rc, _, err = run(["train", *SMALL, "--fused", "--out", str(tmp_path / "r")], capsys)
    assert_one_line_error(rc, err, 1, "expected a working numba (pip install \"gradbox[fast]\")")
    cfg = tmp_path / "bad.toml"
    cfg.write_text('fused = "yes"\n')
    rc, _, err = run(["train", "--config", str(cfg), "--out", str(tmp_path / "s")], capsys)
    assert_one_line_error(rc, err, 2, "--fused: expected true or false, received 'yes'")


def test_patience_early_stopping(tmp_path):
    out = str(tmp_path / "r")
    assert main(["train", "--dataset", "blobs", "--n-samples", "90", "--hidden", "8", "--epochs", "60",
                 "--lr", "0.05", "--patience", "2", "--quiet", "--out", out]) == 0
    metrics = read_json(out, "metrics.json")
    assert metrics["stopped_early_at"] is not None and metrics["epochs_trained"] < 60


def test_config_file_and_flags_override(tmp_path):
    cfg = tmp_path / "run.toml"
    cfg.write_text('dataset = "moons"\nn-samples = 100\nhidden = [5]\nepochs = 2\nbatch_size = 10\nlr = 0.01\n')
    out = str(tmp_path / "r")
    assert main(["train", "--config", str(cfg), "--epochs", "3", "--quiet", "--out", out]) == 0
    hp = read_json(out, "metrics.json")["hyperparameters"]
    assert hp["hidden"] == [5] and hp["epochs"] == 3 and hp["batch_size"] == 10 and hp["lr"] == 0.01


def test_default_run_folders_are_unique(tmp_path, monkeypatch):
    from gradbox.cli import _new_run_dir

    monkeypatch.chdir(tmp_path)
    a, b = _new_run_dir("moons"), _new_run_dir("moons")
    assert a != b and os.path.isdir(a) and os.path.isdir(b)


def test_refuses_to_overwrite_a_run(trained, capsys):
    rc, _, err = run(["train", *SMALL, "--out", trained], capsys)
    assert_one_line_error(rc, err, 1, "already holds a run")


def test_train_on_a_csv_file_with_string_labels(tmp_path, csv_data):
    out = str(tmp_path / "r")
    assert main(["train", "--dataset", str(csv_data), "--target", "label", "--hidden", "4", "--epochs", "2",
                 "--quiet", "--out", out]) == 0
    mf = gb.io.load_model(os.path.join(out, "model.gbx"))
    assert mf.metadata["classes"] == ["no", "yes"] and mf.metadata["feature_names"] == ["a", "b"]


# --- evaluate, predict, gradcheck, info ----------------------------------------------------
def test_evaluate_uses_the_recorded_test_split(trained, capsys):
    rc, out, err = run(["evaluate", os.path.join(trained, "model.gbx")], capsys)
    assert rc == 0, err
    metrics = read_json(trained, "metrics.json")
    acc_line = next(line for line in out.splitlines() if line.startswith("accuracy"))
    assert f"{metrics['test_accuracy']:.4f}" in acc_line and "confusion matrix" in out
    rc, out, _ = run(["evaluate", trained, "--dataset", "moons", "--n-samples", "50"], capsys)  # a folder works
    assert rc == 0 and "(50 samples)" in out and "/50)" in out


def test_predict_csv_and_npz(trained, tmp_path, capsys):
    model = os.path.join(trained, "model.gbx")
    ds = gb.datasets.load("moons", n_samples=10, seed=5)
    np.savez(tmp_path / "x.npz", X=ds.X)
    rc, out, _ = run(["predict", model, "--input", str(tmp_path / "x.npz")], capsys)
    assert rc == 0
    lines = out.strip().splitlines()
    assert lines[0] == "prediction,p_0,p_1" and len(lines) == 11
    # the same through a CSV with a header, written to a file
    (tmp_path / "x.csv").write_text("x0,x1\n" + "\n".join(f"{a},{b}" for a, b in ds.X) + "\n")
    rc, _, _ = run(["predict", model, "--input", str(tmp_path / "x.csv"), "--output", str(tmp_path / "p.csv")],
                   capsys)
    assert rc == 0 and (tmp_path / "p.csv").read_text().strip().splitlines() == lines
    # predictions agree with the library on normalised inputs
    mf = gb.io.load_model(model)
    Xn = (ds.X - mf.arrays["norm.mean"]) / mf.arrays["norm.scale"]
    expected = gb.train.predict(mf.model, Xn.astype(np.float32))
    assert [int(line.split(",")[0]) for line in lines[1:]] == expected.tolist()


def test_gradcheck_fresh_and_model(trained, capsys):
    rc, out, _ = run(["gradcheck", "--dataset", "moons", "--n-samples", "60"], capsys)
    assert rc == 0 and "PASSED" in out and "0.weight" in out
    rc, out, _ = run(["gradcheck", os.path.join(trained, "model.gbx"), "--batch", "4"], capsys)
    assert rc == 0 and "PASSED" in out


def test_gradcheck_fails_with_exit_1_on_a_wrong_gradient(monkeypatch, capsys):
    from gradbox.nn import functional as F

    real = F.LinearFunction.backward

    def wrong(self, g):
        gx, gw, gb_ = real(self, g)
        return gx, (gw * 1.01 if gw is not None else None), gb_

    monkeypatch.setattr(F.LinearFunction, "backward", wrong)
    rc, out, _ = run(["gradcheck", "--dataset", "moons", "--n-samples", "40"], capsys)
    assert rc == 1 and "FAIL" in out


def test_info(trained, capsys):
    rc, out, _ = run(["info", os.path.join(trained, "model.gbx")], capsys)
    assert rc == 0
    assert "Linear" in out and "in_features=2, out_features=8" in out and "(N, 8)" in out
    assert "total parameters: 42" in out  # 2*8+8 + 8*2+2
    assert "dataset: moons" in out and "classes: 2" in out
    assert "standardise with stored mean/scale of 2 features" in out  # flat data: per feature


def test_subprocess_evaluate_predict_info(trained, tmp_path):
    model = os.path.join(trained, "model.gbx")
    assert sub("evaluate", model).returncode == 0
    assert sub("info", model).returncode == 0
    np.savez(tmp_path / "x.npz", X=np.zeros((3, 2)))
    r = sub("predict", model, "--input", str(tmp_path / "x.npz"))
    assert r.returncode == 0 and len(r.stdout.strip().splitlines()) == 4
    r = sub("gradcheck", "--dataset", "xor", "--n-samples", "40")
    assert r.returncode == 0 and "PASSED" in r.stdout


# --- errors: one line on stderr, the right exit code, no traceback ---------------------------
def _bad_files(tmp_path, trained):
    nan_csv = tmp_path / "nan.csv"
    nan_csv.write_text("a,b,label\n1,2,0\nnan,3,1\n4,5,0\n")
    corrupt = tmp_path / "corrupt.gbx"
    with open(os.path.join(trained, "model.gbx"), "rb") as f:
        corrupt.write_bytes(f.read()[:300])
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, X=np.zeros(3))
    wide = tmp_path / "wide.csv"
    wide.write_text("1,2,3\n4,5,6\n")
    missing_col = tmp_path / "cols.csv"
    missing_col.write_text("x0,zz\n1,2\n")
    nan_in = tmp_path / "nan_in.csv"
    nan_in.write_text("x0,x1\n1,nan\n")
    text_in = tmp_path / "text_in.csv"
    text_in.write_text("x0,x1\n1,abc\n")
    bad_key = tmp_path / "bad.toml"
    bad_key.write_text("epochs = 3\nlearning_rate = 0.1\n")
    bad_toml = tmp_path / "broken.toml"
    bad_toml.write_text("epochs = = 3\n")
    return locals()


BAD = [
    # (argv, exit code, text in the message)
    (["train", "--dataset", "{tmp}/nope.csv"], 1, "no such file"),
    (["train", "--dataset", "foo"], 2, "expected one of"),
    (["train", "--dataset", "{nan_csv}"], 1, "finite"),
    (["train", "--dataset", "{nan_csv}", "--target", "nope"], 1, "nope"),
    (["train", "--dataset", "moons", "--bogus", "1"], 2, "unrecognized arguments"),
    (["train", "--dataset", "moons", "--lr", "-0.1"], 2, "--lr"),
    (["train", "--dataset", "moons", "--lr", "abc"], 2, "--lr"),
    (["train", "--dataset", "moons", "--batch-size", "0"], 2, "--batch-size"),
    (["train", "--dataset", "moons", "--optimizer", "lbfgs"], 2, "--optimizer"),
    (["train", "--dataset", "moons", "--val-split", "0.6", "--test-split", "0.5"], 2, "sum below 1"),
    (["train", "--dataset", "digits", "--noise", "0.1"], 2, "noise"),
    (["train", "--config", "{bad_key}"], 2, "learning_rate"),
    (["train", "--config", "{bad_toml}"], 2, "TOML"),
    (["train", "--config", "{tmp}/none.toml"], 1, "no such file"),
    (["train", "--resume", "{tmp}/nowhere"], 1, "no such run folder"),
    (["evaluate", "{tmp}/missing.gbx"], 1, "no such file"),
    (["evaluate", "{corrupt}"], 1, "corrupt.gbx"),
    (["evaluate", "{foreign}"], 1, "zip"),
    (["info", "{corrupt}"], 1, ""),
    (["predict", "{model}", "--input", "{wide}"], 1, "expected 2 feature columns"),
    (["predict", "{model}", "--input", "{missing_col}"], 1, "missing column"),
    (["predict", "{model}", "--input", "{nan_in}"], 1, "finite"),
    (["predict", "{model}", "--input", "{text_in}"], 1, "abc"),
    (["predict", "{model}", "--input", "{tmp}/none.csv"], 1, "no such file"),
    (["predict", "{model}"], 2, "--input"),
    (["evaluate", "{model}", "--dataset", "digits"], 1, "expected 2 features"),
    (["gradcheck", "--batch", "0"], 2, "--batch"),
    (["frobnicate"], 2, "invalid choice"),
]


def _fill(argv, files, tmp_path, trained):
    names = {k: str(v) for k, v in files.items() if k not in ("tmp_path", "trained")}
    names.update(tmp=str(tmp_path), model=os.path.join(trained, "model.gbx"))
    return [a.format(**names) for a in argv]


@pytest.mark.parametrize("argv, code, text", BAD, ids=[" ".join(a[:2]) + f"-{i}" for i, (a, _, _) in enumerate(BAD)])
def test_bad_input_is_one_line_with_exit_code(tmp_path, trained, capsys, monkeypatch, argv, code, text):
    monkeypatch.chdir(tmp_path)
    files = _bad_files(tmp_path, trained)
    rc, _, err = run(_fill(argv, files, tmp_path, trained), capsys)
    assert_one_line_error(rc, err, code, text)
    assert not os.path.exists(tmp_path / "runs") or os.listdir(tmp_path / "runs") == []  # nothing half-made


def test_errors_in_a_real_subprocess(tmp_path, trained):
    files = _bad_files(tmp_path, trained)
    for argv, code, text in [BAD[1], BAD[2], BAD[5], BAD[16]]:
        r = sub(*_fill(argv, files, tmp_path, trained), cwd=tmp_path)
        assert_one_line_error(r.returncode, r.stderr, code, text)


def test_divergence_leaves_no_model(tmp_path, capsys):
    out = tmp_path / "r"
    rc, _, err = run(["train", "--dataset", "blobs", "--optimizer", "sgd", "--lr", "1e6", "--hidden", "16,16",
                      "--epochs", "5", "--quiet", "--out", str(out)], capsys)
    assert_one_line_error(rc, err, 1, "diverged at epoch")
    assert "lower the learning rate" in err
    assert not out.exists()  # the folder we created is removed again


def test_debug_shows_the_traceback(tmp_path, capsys):
    rc, _, err = run(["train", "--dataset", str(tmp_path / "nope.csv"), "--debug"], capsys)
    assert rc == 1 and "Traceback" in err and err.strip().splitlines()[-1].startswith("gradbox: error:")
    r = sub("evaluate", str(tmp_path / "x.gbx"), "--debug")
    assert r.returncode == 1 and "Traceback" in r.stderr


def test_resume_refuses_other_settings(trained, tmp_path, capsys):
    out = str(tmp_path / "r")
    assert main(["train", *SMALL, "--out", out, "--checkpoint-every", "1"]) == 0
    rc, _, err = run(["train", "--resume", out, "--lr", "0.5"], capsys)
    assert_one_line_error(rc, err, 2, "--lr")
    rc, _, err = run(["train", "--resume", trained], capsys)  # finished run without checkpoints
    assert_one_line_error(rc, err, 1, "checkpoint.gbx")


def test_help_and_version(capsys):
    assert main(["--version"]) == 0
    assert "gradbox" in capsys.readouterr().out
    assert main(["train", "--help"]) == 0
    out = capsys.readouterr().out
    for flag in ("--dataset", "--hidden", "--optimizer", "--checkpoint-every", "--resume", "--config"):
        assert flag in out
    assert main([]) == 2


def test_import_gradbox_stays_light():
    code = ("import sys, gradbox, gradbox.cli, gradbox.train, gradbox.plots; "
            "print(sorted(m for m in ('tqdm', 'matplotlib', 'h5py') if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert r.stdout.strip() == "[]", r.stdout + r.stderr


def test_evaluate_keeps_class_names_aligned(tmp_path, csv_data, capsys):
    """A file holding only some of the classes must not renumber them."""
    out = str(tmp_path / "r")
    assert main(["train", "--dataset", str(csv_data), "--hidden", "4", "--epochs", "2", "--quiet",
                 "--out", out]) == 0
    rows = csv_data.read_text().splitlines()
    only_yes = tmp_path / "yes.csv"
    only_yes.write_text("\n".join([rows[0]] + [r for r in rows[1:] if r.endswith(",yes")]) + "\n")
    rc, stdout, _ = run(["evaluate", out, "--dataset", str(only_yes)], capsys)
    assert rc == 0
    matrix = [t for t in (line.split() for line in stdout.splitlines())
              if len(t) == 3 and t[0] in ("no", "yes") and t[1].isdigit()]
    assert [r[0] for r in matrix] == ["no", "yes"] and sum(map(int, matrix[0][1:])) == 0  # no "no" samples
    other = tmp_path / "other.csv"
    other.write_text("a,b,label\n1,2,maybe\n3,4,yes\n")
    rc, _, err = run(["evaluate", out, "--dataset", str(other)], capsys)
    assert_one_line_error(rc, err, 1, "'maybe'")


def test_a_checkpoint_is_a_usable_model_file(tmp_path, capsys):
    out = str(tmp_path / "r")
    assert main(["train", *SMALL, "--out", out, "--checkpoint-every", "3"]) == 0  # the last epoch
    rc1, from_model, _ = run(["evaluate", os.path.join(out, "model.gbx")], capsys)
    rc2, from_ckpt, _ = run(["evaluate", os.path.join(out, "checkpoint.gbx")], capsys)
    assert rc1 == rc2 == 0
    assert from_model.splitlines()[1:] == from_ckpt.splitlines()[1:]
    rc, info, _ = run(["info", os.path.join(out, "checkpoint.gbx")], capsys)
    assert rc == 0 and "checkpoint: epoch 3, step 0" in info
