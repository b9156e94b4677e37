"""The run as a library API (gradbox.train.run), model files that carry their preprocessing, and the
seams: the writer predicate, the sampler, train_step."""
import json
import os
import re

import numpy as np
import pytest

import gradbox as gb
from gradbox import _world
from gradbox.cli import main
from gradbox.train import run

SMALL = {"dataset": "moons", "n_samples": 120, "hidden": [8], "epochs": 3, "batch_size": 16}


def _read(path):
    with open(path) as f:
        return json.load(f)


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("run") / "moons")
    return run.train(SMALL, out=out, progress=False, log=None)


def test_train_returns_the_run_and_writes_the_folder(small_run):
    r = small_run
    assert {"config.json", "history.csv", "metrics.json", "model.gbx"} <= set(os.listdir(r.out))
    metrics = _read(os.path.join(r.out, "metrics.json"))
    assert metrics["test_accuracy"] == r.test["accuracy"] and len(r.history) == 3
    # n_train used to be always null
    assert metrics["n_train"] == r.trainer.n_train == 120 - 18 - 18
    assert metrics["world_size"] == 1


def test_load_model_applies_the_files_preprocessing_like_the_cli(small_run, tmp_path, capsys):
    """ModelFile.predict/predict_proba/evaluate on raw data give exactly what the commands print."""
    mf = gb.load_model(os.path.join(small_run.out, "model.gbx"))
    ds = gb.datasets.load("moons", n_samples=40, seed=3)
    X = ds.X * 1.0  # raw, unscaled features
    np.savez(tmp_path / "x.npz", X=X)
    assert main(["predict", small_run.out, "--input", str(tmp_path / "x.npz")]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    printed = np.array([[float(v) for v in line.split(",")[1:]] for line in lines[1:]])
    labels = [line.split(",")[0] for line in lines[1:]]
    proba = mf.predict_proba(X)
    assert np.array_equal(np.char.mod("%.6g", proba).astype(float), printed)
    assert [str(v) for v in mf.predict(X)] == labels
    # the raw model on raw data is not the same thing: the scaling matters
    assert not np.allclose(gb.train.predict_proba(mf.model, X.astype(np.float32)), proba)

    assert main(["evaluate", small_run.out]) == 0
    text = capsys.readouterr().out
    X_test, y_test = run.split(run.load_dataset("moons", options={"n_samples": 120}), 0.15, 0.15, 0)[4:]
    res = mf.evaluate(X_test, y_test)
    assert f"loss      {res['loss']:.4f}" in text
    assert f"accuracy  {res['accuracy']:.4f}" in text
    assert res["loss"] == pytest.approx(small_run.test["loss"], rel=1e-12)


def test_resume_continues_a_checkpointed_run(tmp_path):
    a = run.train({**SMALL, "epochs": 4}, out=str(tmp_path / "a"), progress=False, log=None)
    b_dir = str(tmp_path / "b")
    run.train({**SMALL, "checkpoint_every": 1}, out=b_dir, progress=False, log=None)
    b = run.resume(b_dir, epochs=4, progress=False, log=None)
    wa, wb = a.model.state_dict(), b.model.state_dict()
    assert all(np.array_equal(wa[k], wb[k]) for k in wa)


def test_config_errors_carry_the_cli_exit_code():
    with pytest.raises(run.ConfigError, match="--epochs") as info:
        run.train({**SMALL, "epochs": 0}, log=None)
    assert info.value.code == 2 and isinstance(info.value, ValueError)
    with pytest.raises(run.RunError, match="--resume"):
        run.resume("/nonexistent/run", log=None)


def test_adamw_weight_decay_zero_is_honoured_and_recorded(tmp_path):
    """make_optimizer used to turn AdamW weight_decay=0 into 0.01 while the run recorded 0."""
    from gradbox.train import make_optimizer

    params = gb.nn.Linear(2, 2, rng=0).parameters()
    assert make_optimizer("adamw", params, weight_decay=0.0).weight_decay == 0.0
    assert make_optimizer("adamw", gb.nn.Linear(2, 2, rng=0).parameters()).weight_decay == 0.01
    assert make_optimizer("adam", gb.nn.Linear(2, 2, rng=0).parameters()).weight_decay == 0.0
    for wd, expected in ((0.0, 0.0), (None, 0.01), (0.05, 0.05)):
        out = str(tmp_path / f"wd{wd}")
        r = run.train({**SMALL, "epochs": 1, "optimizer": "adamw", "weight_decay": wd}, out=out, progress=False,
                      log=None)
        assert r.trainer.optimizer.weight_decay == expected
        hp = _read(os.path.join(out, "metrics.json"))["hyperparameters"]
        assert hp["weight_decay"] == expected and hp["optimizer_settings"]["weight_decay"] == expected
        assert hp["lr"] == r.trainer.optimizer.lr


def test_conv_config_errors_are_clear():
    c = run.resolve_config({"conv": "16,32", "batch_norm": True})
    assert c["conv"] == [16, 32] and c["batch_norm"] is True
    with pytest.raises(run.ConfigError, match="--conv"):
        run.resolve_config({"conv": "16,x"})
    # flat data (a CSV, the moons) with --conv: a clear error, not a shape mismatch deep in a layer
    with pytest.raises(run.RunError, match="--conv: expected image data"):
        run.train({**SMALL, "conv": [4]}, log=None)
    with pytest.raises(ValueError, match="--conv"):
        gb.train.build_mlp(64, [8], 10, conv=[4], input_shape=None)
    if getattr(gb.nn, "Conv2d", None) is None:
        with pytest.raises(ValueError, match="Conv2d"):
            gb.train.build_mlp(64, [8], 10, conv=[4], input_shape=(1, 8, 8))


def test_cli_conv_flags_parse(tmp_path, capsys):
    assert main(["train", "--dataset", "moons", "--conv", "4", "--quiet", "--out", str(tmp_path / "r")]) == 1
    err = capsys.readouterr().err
    assert "--conv: expected image data" in err and err.count("\n") == 1
    assert not os.path.exists(tmp_path / "r" / "config.json")


# --- one writer ------------------------------------------------------------------------------
class _Rank1:
    def rank(self):
        return 1

    def size(self):
        return 2


@pytest.fixture
def not_main():
    _world.set_world(_Rank1())
    try:
        yield
    finally:
        _world.set_world(None)


def test_only_the_main_process_writes(tmp_path, not_main, capsys):
    assert not _world.is_main() and _world.size() == 2
    out = tmp_path / "r"
    r = run.train({**SMALL, "checkpoint_every": 1}, out=str(out), log=print)
    assert r.test is not None
    assert not out.exists()
    assert capsys.readouterr().out == ""  # no progress, no summary


def test_set_world_checks_its_argument():
    with pytest.raises(TypeError, match="rank"):
        _world.set_world(object())
    assert _world.is_main()


# --- model files with an image input shape -----------------------------------------------------
def test_model_file_with_an_input_shape_reshapes_and_standardises(tmp_path):
    model = gb.nn.Sequential(gb.nn.Flatten(), gb.nn.Linear(16, 3, rng=0))
    rng = np.random.default_rng(0)
    mean, scale = rng.normal(size=16), rng.uniform(1, 2, size=16)
    path = tmp_path / "m.gbx"
    gb.save_model(path, model, arrays={"norm.mean": mean, "norm.scale": scale},
                  metadata={"input_shape": [1, 4, 4], "classes": ["a", "b", "c"]})
    mf = gb.load_model(path)
    X = rng.normal(size=(5, 16)) * 3
    expected = gb.train.predict_proba(model, ((X - mean) / scale).reshape(5, 1, 4, 4).astype(np.float32))
    assert np.allclose(mf.predict_proba(X), expected)
    assert np.allclose(mf.predict_proba(X.reshape(5, 1, 4, 4)), expected)  # shaped input too
    assert set(mf.predict(X)) <= {"a", "b", "c"}
    with pytest.raises(ValueError, match="expected 16 features"):
        mf.predict_proba(np.ones((2, 15)))


def test_cli_info_shows_each_layers_output_shape(tmp_path, capsys):
    model = gb.nn.Sequential(gb.nn.Flatten(), gb.nn.Linear(16, 3, rng=0))
    path = tmp_path / "m.gbx"
    gb.save_model(path, model, metadata={"input_shape": [1, 4, 4]})
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "input (N, 1, 4, 4)" in out
    assert re.search(r"Flatten\s.*\(N, 16\)", out) and re.search(r"Linear\s.*\(N, 3\)", out)
