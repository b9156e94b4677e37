"""A new user's first hour (issue 14, items 15, 16, 17 and 19): no false alarms, no silent surprises.

Negative controls (gradbox 0.1): gradcheck on the README's trained model printed FAILED from
rounding; the README's spirals command reached 0.50 test accuracy; --patience stopped without a
word; --lr 1e6 trained to a loss of 4e19 without a warning; Ctrl-C said "epoch 44" and --resume
"epoch 43"; the progress bar lost val_acc and the time left at 80 columns; loader errors said
``name_or_path:``/``target:``; an unknown flag pointed to ``gradbox --help``; no example TOML, no
restore-best-weights, no test accuracy in curves.png.
"""
import io
import json
import os
import re
import shlex

import numpy as np

import pytest

from gradbox.cli import main

from tests._helpers import TINY_TRAIN, run_cli
from .. import _paths


ROOT = str(_paths.ROOT)
TINY = TINY_TRAIN


run = run_cli


def readme_command(prefix):
    """The README's command line starting with ``prefix`` (continuation lines joined, comment dropped)."""
    text = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read().replace("\\\n", " ")
    for line in text.splitlines():
        if line.startswith(prefix):
            return shlex.split(line.split("#", 1)[0])[1:]
    raise AssertionError(f"README has no command starting with {prefix!r}")


# ------------------------------------------------------------------------------------------------
# item 16: the README's spirals command shows gradbox at its best
# ------------------------------------------------------------------------------------------------
def test_readme_spirals_command_learns_the_spirals(tmp_path, capsys):
    argv = readme_command("gradbox train --dataset spirals")
    rc, out, err = run([*argv, "--quiet", "--out", str(tmp_path / "sp")], capsys)
    assert rc == 0, err
    metrics = json.load(open(tmp_path / "sp" / "metrics.json"))
    assert metrics["test_accuracy"] >= 0.9, metrics["test_accuracy"]


# ------------------------------------------------------------------------------------------------
# item 15: gradcheck on trained models: no FAILED from rounding, a wrong gradient still fails
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def default_model(tmp_path_factory):
    """The README's `gradbox train` model (digits, default network, 50 epochs: small gradients, where 0.1's
    check said FAILED, 1.04e-07 against 1e-07)."""
    out = str(tmp_path_factory.mktemp("gc") / "digits")
    assert main(["train", "--quiet", "--out", out]) == 0
    return os.path.join(out, "model.gbx")


@pytest.fixture(scope="module")
def short_model(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("gc") / "digits3")
    assert main(["train", "--epochs", "3", "--quiet", "--out", out]) == 0
    return os.path.join(out, "model.gbx")


@pytest.fixture(scope="module")
def spirals_model(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("gc") / "spirals")
    assert main(["train", "--dataset", "spirals", "--n-samples", "600", "--noise", "0.2", "--batch-size", "full",
                 "--hidden", "64,64", "--dropout", "0", "--lr", "0.01", "--epochs", "60", "--quiet",
                 "--out", out]) == 0
    return os.path.join(out, "model.gbx")


@pytest.mark.parametrize("which", ["default_model", "short_model", "spirals_model"])
def test_gradcheck_trained_models_pass(request, capsys, which):
    path = request.getfixturevalue(which)
    rc, out, err = run(["gradcheck", path], capsys)  # the README's command, as a learner types it
    assert rc == 0, out + err
    assert "FAILED" not in out and "FAIL" not in out
    assert out.strip().splitlines()[-1].startswith("PASSED")


def test_gradcheck_planted_wrong_gradient_fails(short_model, capsys, monkeypatch):
    """A wrong backward (ReLU passing 1.01 x the gradient) is still a FAIL and exit 1."""
    from gradbox import ops

    real = ops.ReLU.backward
    monkeypatch.setattr(ops.ReLU, "backward", lambda self, g: real(self, g) * 1.01)
    rc, out, err = run(["gradcheck", short_model, "--max-entries", "20"], capsys)
    assert rc == 1, out + err
    assert "FAILED" in out


# ------------------------------------------------------------------------------------------------
# item 17: say what happened
# ------------------------------------------------------------------------------------------------
def test_patience_says_why_it_stopped(tmp_path, capsys):
    rc, out, err = run(["train", "--dataset", "moons", "--n-samples", "200", "--hidden", "16", "--epochs", "200",
                        "--lr", "0.05", "--batch-size", "full", "--patience", "2", "--out", str(tmp_path / "r")],
                       capsys)
    assert rc == 0, err
    m = re.search(r"early stopping at epoch (\d+) of 200: val_loss has not improved for 2 epochs", out)
    assert m, out
    metrics = json.load(open(tmp_path / "r" / "metrics.json"))
    assert metrics["stopped_early_at"] == int(m.group(1))
    assert f"model weights of epoch {metrics['weights_epoch']} (the best val_loss)" in out


def test_divergence_warns(tmp_path, capsys):
    rc, out, err = run(["train", "--dataset", "moons", "--n-samples", "200", "--hidden", "16", "--epochs", "6",
                        "--optimizer", "sgd", "--lr", "1e3", "--batch-size", "full", "--dropout", "0",
                        "--out", str(tmp_path / "r"), "--quiet"], capsys)
    # either stopped (NaN/inf: a one-line error) or finished with a warning; never silent
    if rc == 0:
        assert "gradbox: warning: training is diverging" in err and "lower the learning rate" in err, err
    else:
        assert "diverged" in err and "lower the learning rate" in err, err


def test_divergence_monitor_warns_once():
    from gradbox.train import DivergenceMonitor, Trainer, build_mlp

    seen = []
    mon = DivergenceMonitor(1e3, warn=seen.append)
    t = Trainer(build_mlp(2, [4], 2, rng=0), verbose=0)
    mon.set_trainer(t)
    for epoch, loss in enumerate([0.7, 5.0, 600.0, 4e19, 5e19], 1):
        mon.on_epoch_end(epoch, {"loss": loss})
    assert len(seen) == 1 and "4e+19" in seen[0] and "epoch 4" in seen[0]


def test_interrupt_and_resume_name_the_same_epoch(tmp_path, capsys):
    from tests._helpers import train_until

    out = str(tmp_path / "r")
    # 120 moons: 84 train samples, 6 steps per epoch; 14 steps stop in epoch 3, step 2
    rc = train_until(14, [*TINY, "--epochs", "5", "--out", out])
    err = capsys.readouterr().err
    assert rc == 130
    m = re.search(r"interrupted at epoch (\d+), step (\d+)", err)
    assert m, err
    rc, text, err = run(["train", "--resume", out], capsys)
    assert rc == 0, err
    assert f"resuming {out} at epoch {m.group(1)}, step {m.group(2)}" in text


def test_progress_bar_fits_80_columns(monkeypatch):
    pytest.importorskip("tqdm")
    from gradbox.train import ProgressBar, Trainer, build_mlp

    monkeypatch.setenv("COLUMNS", "80")
    X = np.random.default_rng(0).normal(size=(60, 2)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64)
    buf = io.StringIO()
    t = Trainer(build_mlp(2, [4], 2, rng=0), verbose=0, batch_size=None, seed=0,
                callbacks=[ProgressBar(file=buf, use_tqdm=True)])
    t.fit(X, y, epochs=120, validation_data=(X[:20], y[:20]))  # three-digit epoch counts: the widest desc
    lines = [re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", c) for c in re.split(r"[\r\n]", buf.getvalue())]
    finals = [c for c in lines if "val_acc" in c]
    assert finals and max(len(c) for c in lines) <= 80, max(lines, key=len)
    assert all(re.search(r"val_acc \d\.\d+ left \d", c) for c in finals), finals[-1]
    assert any(c.startswith("epoch 120/120") for c in finals)


def test_loader_errors_use_flag_names(tmp_path, capsys):
    rc, _, err = run(["train", "--dataset", str(tmp_path / "nosuch.csv")], capsys)
    assert rc != 0 and "--dataset" in err and "name_or_path" not in err, err
    csv = tmp_path / "d.csv"
    csv.write_text("a,b,label\n1,2,0\n3,4,1\n5,6,0\n7,8,1\n")
    rc, _, err = run(["train", "--dataset", str(csv), "--target", "nope"], capsys)
    assert rc != 0 and "--target" in err and "target:" not in err.replace("--target", ""), err


@pytest.mark.parametrize("cmd", ["train", "evaluate", "predict", "gradcheck", "info"])
def test_unknown_flag_points_to_the_subcommand_help(cmd, capsys):
    extra = {"train": [], "evaluate": ["m.gbx"], "predict": ["m.gbx", "--input", "x.csv"], "gradcheck": [],
             "info": ["m.gbx"]}[cmd]
    rc, _, err = run([cmd, *extra, "--nosuch-flag", "1"], capsys)
    assert rc == 2
    assert f"(see gradbox {cmd} --help)" in err and "--nosuch-flag" in err, err


# ------------------------------------------------------------------------------------------------
# item 19: an example config, restore-best-weights, and the pictures
# ------------------------------------------------------------------------------------------------
def test_example_toml_runs_and_documents_every_key(tmp_path, capsys):
    from gradbox.train import run as runmod

    path = os.path.join(ROOT, "examples", "run.toml")
    text = open(path, encoding="utf-8").read()
    for key in runmod.DEFAULTS:
        line = next((ln for ln in text.splitlines() if re.match(rf"#?\s*{key}\s*=", ln)), None)
        assert line is not None and "#" in line.split("=", 1)[1], f"{key} is not shown with a comment"
    rc, out, err = run(["train", "--config", path, "--epochs", "1", "--quiet", "--out", str(tmp_path / "r")], capsys)
    assert rc == 0, err
    assert json.load(open(tmp_path / "r" / "config.json"))["config"]["restore_best_weights"] is True


def test_restore_best_weights_keeps_the_best_epoch(tmp_path, capsys):
    import gradbox as gb

    out = str(tmp_path / "r")
    rc, text, err = run(["train", "--dataset", "moons", "--n-samples", "200", "--hidden", "32", "--epochs", "25",
                         "--lr", "0.05", "--batch-size", "8", "--restore-best-weights", "--out", out], capsys)
    assert rc == 0, err
    metrics = json.load(open(os.path.join(out, "metrics.json")))
    h = metrics["history"]
    best = h["epoch"][int(np.argmin(h["val_loss"]))]
    assert metrics["weights_epoch"] == best
    assert f"model weights of epoch {best} (the best val_loss)" in text
    # the saved model really holds that epoch's weights: its validation loss is the best one
    mf = gb.load_model(os.path.join(out, "model.gbx"))
    assert mf.metadata["weights_epoch"] == best


def test_default_summary_names_the_kept_epoch(tmp_path, capsys):
    rc, text, err = run(["train", *TINY[:-1], "--out", str(tmp_path / "r")], capsys)
    assert rc == 0, err
    assert re.search(r"model weights of epoch 3 \(the last\)", text), text


def test_curves_show_test_accuracy_and_keep_the_legend_off_the_curves(tmp_path):
    pytest.importorskip("matplotlib")
    from gradbox.plots import plot_history

    h = {"epoch": list(range(1, 41)), "loss": list(np.linspace(1, 0.1, 40)), "val_loss": list(np.linspace(1.1, 0.3, 40)),
         "accuracy": list(np.linspace(0.3, 1.0, 40)), "val_accuracy": list(np.linspace(0.3, 0.98, 40))}
    calls = {}
    from matplotlib.axes import Axes

    real_legend = Axes.legend

    def legend(self, *a, **k):
        calls.setdefault("kw", []).append(k)
        return real_legend(self, *a, **k)

    Axes.legend = legend
    try:
        path = plot_history(h, tmp_path / "curves.png", test_accuracy=0.95)
    finally:
        Axes.legend = real_legend
    assert os.path.getsize(path) > 0
    # every legend sits below its panel (bbox under the axes), not over the curves
    assert calls["kw"] and all(k.get("bbox_to_anchor", (0, 1))[1] < 0 for k in calls["kw"])


def test_run_curves_record_the_test_accuracy(tmp_path, capsys, monkeypatch):
    pytest.importorskip("matplotlib")
    import gradbox.plots

    seen = {}
    real = gradbox.plots.plot_history

    def spy(*a, **k):
        seen.update(k)
        return real(*a, **k)

    monkeypatch.setattr(gradbox.plots, "plot_history", spy)
    rc, _, err = run(["train", *TINY, "--out", str(tmp_path / "r")], capsys)
    assert rc == 0, err
    metrics = json.load(open(tmp_path / "r" / "metrics.json"))
    assert seen["test_accuracy"] == metrics["test_accuracy"]
