"""Attacks on a training run and on the commands that read its files (issue 14, items 1-5, 7 and 10).

Each test is bounded in time and memory: tiny data, a few epochs, subprocesses with timeouts.
``GRADBOX_FUZZ_N`` (default small) sets how many random forgeries the fuzz tests try.

Negative controls (gradbox 0.1): a label of 100000 trained to the end, then failed allocating a
74.5 GiB confusion matrix and deleted the run; two runs into one --out both exited 0; a foreign or
forged checkpoint was resumed; SIGTERM killed the run without a checkpoint; a failed curves.png
left model.gbx without config.json; ``predict M --output M`` replaced the model; a model file's
recorded n_samples/source drove evaluate unchecked.
"""
import errno
import json
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np

import pytest

from gradbox.cli import main
from gradbox.io import load_model, load_with_metadata, save, save_model
from gradbox.train import load_checkpoint_file

from tests._helpers import TINY_TRAIN, run_cli
from .. import _paths

FUZZ_N = int(os.environ.get("GRADBOX_FUZZ_N", "6"))
ROOT = str(_paths.ROOT)
TINY = TINY_TRAIN


run = run_cli


def one_line_error(rc, err, code=None, *patterns):
    assert rc != 0 if code is None else rc == code, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gradbox: error: "), err
    assert "Traceback" not in err
    for p in patterns:
        assert p in lines[0], lines[0]
    return lines[0]


def env():
    e = dict(os.environ)
    e["PYTHONPATH"] = ROOT + os.pathsep + e.get("PYTHONPATH", "")
    return e


def sub(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "gradbox", *args], capture_output=True, text=True, env=env(),
                          timeout=timeout, check=False)


def interrupted_run(path, *extra):
    """A run folder with config.json and checkpoint.gbx (stopped after 5 optimizer steps, mid-epoch 1)."""
    from tests._helpers import train_until

    assert train_until(5, [*TINY, "--epochs", "4", "--out", str(path), *extra]) == 130
    assert os.path.isfile(os.path.join(path, "checkpoint.gbx"))
    return str(path)


def label_bomb_csv(tmp_path, n=200, label=100000):
    rng = np.random.default_rng(0)
    rows = ["a,b,label"] + [f"{x:.4f},{y:.4f},{label if i == 5 else i % 2}"
                            for i, (x, y) in enumerate(rng.normal(size=(n, 2)))]
    path = tmp_path / "labels.csv"
    path.write_text("\n".join(rows) + "\n")
    return str(path)


# ------------------------------------------------------------------------------------------------
# item 1: a declared class count is checked before training
# ------------------------------------------------------------------------------------------------
def test_label_bomb_refused_before_training(tmp_path, capsys):
    out = tmp_path / "run"
    rc, _, err = run(["train", "--dataset", label_bomb_csv(tmp_path), "--epochs", "1", "--quiet",
                      "--out", str(out)], capsys)
    line = one_line_error(rc, err, 1, "100,001 classes", "--target")
    assert "label" in line
    assert not out.exists()  # refused before a folder was made: nothing trained, nothing lost


@pytest.mark.parametrize("n,label", [(20000, 10001), (300, 299), (50, 80)])
def test_class_count_limits(tmp_path, capsys, n, label):
    """Beyond MAX_CLASSES, beyond the sample count, or mostly absent labels: all refused up front."""
    from gradbox.train import run as runmod

    rc, _, err = run(["train", "--dataset", label_bomb_csv(tmp_path, n, label), "--epochs", "1", "--quiet",
                      "--out", str(tmp_path / "r")], capsys)
    one_line_error(rc, err, 1, "classes")
    assert runmod.MAX_CLASSES == 10_000


def test_failure_at_the_end_keeps_the_training(tmp_path, capsys, monkeypatch):
    """The test step failing (the 0.1 confusion-matrix MemoryError) keeps a resumable checkpoint."""
    import gradbox.train.inference as inference

    real = inference.evaluate

    def boom(*a, **k):
        raise MemoryError("Unable to allocate 74.5 GiB for an array")

    monkeypatch.setattr(inference, "evaluate", boom)
    out = str(tmp_path / "run")
    rc, _, err = run(["train", *TINY, "--out", out], capsys)
    one_line_error(rc, err, 1, "training finished", f"--resume {out}", "checkpoint.gbx")
    assert sorted(f for f in os.listdir(out) if not f.startswith(".")) == ["checkpoint.gbx", "config.json"]
    monkeypatch.setattr(inference, "evaluate", real)
    rc, _, err = run(["train", "--resume", out, "--quiet"], capsys)
    assert rc == 0, err
    metrics = json.load(open(os.path.join(out, "metrics.json")))
    assert metrics["epochs_trained"] == 3 and metrics["test_accuracy"] is not None


# ------------------------------------------------------------------------------------------------
# item 5: disk full while curves.png is written
# ------------------------------------------------------------------------------------------------
def _enospc(*a, **k):
    raise OSError(errno.ENOSPC, "No space left on device", "curves.png")


def test_disk_full_at_curves_leaves_a_resumable_folder(tmp_path, capsys, monkeypatch):
    import gradbox.plots

    monkeypatch.setattr(gradbox.plots, "plot_history", _enospc)
    out = str(tmp_path / "run")
    rc, _, err = run(["train", *TINY, "--out", out], capsys)
    line = one_line_error(rc, err, 1, "No space left on device", f"gradbox train --resume {out}")
    assert "checkpoint.gbx" in line
    # consistent: resumable, no half of the final files (no model.gbx without metrics.json)
    assert sorted(os.listdir(out)) == ["checkpoint.gbx", "config.json"]
    monkeypatch.undo()
    rc, _, err = run(["train", "--resume", out, "--quiet"], capsys)
    assert rc == 0, err
    assert {"model.gbx", "metrics.json", "history.csv", "curves.png", "config.json"} <= set(os.listdir(out))


def test_disk_full_everywhere_leaves_a_reusable_folder(tmp_path, capsys, monkeypatch):
    """Even the checkpoint cannot be written: the folder is left as a failed fresh run (removed), and the
    message says nothing was kept (not advice that cannot work)."""
    import gradbox.plots
    from gradbox.train import Trainer

    monkeypatch.setattr(gradbox.plots, "plot_history", _enospc)
    monkeypatch.setattr(Trainer, "save_checkpoint", lambda self, path, extra_metadata=None: _enospc())
    out = str(tmp_path / "run")
    rc, _, err = run(["train", *TINY, "--out", out], capsys)
    line = one_line_error(rc, err, 1, "nothing was kept")
    assert "--resume" not in line
    assert not os.path.exists(out)
    monkeypatch.undo()
    rc, _, err = run(["train", *TINY, "--out", out], capsys)  # the same --out works again
    assert rc == 0, err


# ------------------------------------------------------------------------------------------------
# item 2: a run folder is claimed exclusively
# ------------------------------------------------------------------------------------------------
def test_two_runs_into_one_folder(tmp_path):
    out = str(tmp_path / "same")
    args = ["train", "--dataset", "moons", "--n-samples", "400", "--hidden", "16", "--epochs", "15",
            "--batch-size", "8", "--quiet", "--out", out]
    procs = [subprocess.Popen([sys.executable, "-m", "gradbox", *args, "--seed", str(s)], env=env(),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for s in (1, 2)]
    results = []
    for p in procs:
        try:
            _, err = p.communicate(timeout=180)
        except subprocess.TimeoutExpired:
            p.kill()
            raise
        results.append((p.returncode, err))
    codes = sorted(rc for rc, _ in results)
    assert codes[0] == 0 and codes[1] != 0, results
    loser = next(err for rc, err in results if rc != 0)
    one_line_error(1, loser, None)
    assert "in use by another gradbox train" in loser or "already holds a run" in loser
    # one run's files only
    seed = json.load(open(os.path.join(out, "config.json")))["config"]["seed"]
    assert json.load(open(os.path.join(out, "metrics.json")))["seed"] == seed
    assert load_model(os.path.join(out, "model.gbx")).metadata["seed"] == seed
    assert not os.path.exists(os.path.join(out, ".gradbox.lock"))


def test_live_lock_refused_and_stale_lock_taken_over(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (out / ".gradbox.lock").write_text(f"{holder.pid}\n")
        rc, _, err = run(["train", *TINY, "--out", str(out)], capsys)
        one_line_error(rc, err, 1, "in use by another gradbox train", f"pid {holder.pid}")
        assert os.listdir(out) == [".gradbox.lock"]  # the holder's folder untouched
    finally:
        holder.kill()
        holder.wait(timeout=30)
    # the holder is gone: its lock is stale and taken over
    rc, _, err = run(["train", *TINY, "--out", str(out)], capsys)
    assert rc == 0, err
    assert not (out / ".gradbox.lock").exists()


# ------------------------------------------------------------------------------------------------
# item 4: SIGTERM is handled as Ctrl-C
# ------------------------------------------------------------------------------------------------
@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_sigterm_saves_a_checkpoint(tmp_path):
    out = str(tmp_path / "run")
    p = subprocess.Popen([sys.executable, "-m", "gradbox", "train", "--dataset", "moons", "--n-samples", "2000",
                          "--hidden", "32", "--epochs", "2000", "--batch-size", "4", "--quiet", "--out", out],
                         env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        # config.json is written after the handlers are installed
        while not os.path.exists(os.path.join(out, "config.json")) and time.monotonic() < deadline:
            if p.poll() is not None:
                break
            time.sleep(0.05)
        time.sleep(0.3)
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(timeout=30)
    assert p.returncode == 130, err
    line = one_line_error(130, err, 130, "by SIGTERM; checkpoint saved", f"--resume {out}")
    _, meta = load_checkpoint_file(os.path.join(out, "checkpoint.gbx"))
    # the epoch named is the one in progress, as --resume says
    assert f"at epoch {meta['epoch'] + 1}, step {meta['step']}" in line
    r = sub("train", "--resume", out, "--epochs", str(meta["epoch"] + 1), timeout=180)
    assert r.returncode == 0, r.stderr
    assert f"resuming {out} at epoch {meta['epoch'] + 1}, step {meta['step']}" in r.stdout
    assert os.path.isfile(os.path.join(out, "metrics.json"))


# ------------------------------------------------------------------------------------------------
# item 3: a checkpoint is validated field by field against its run's config
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("ckpt")
    a = interrupted_run(base / "a")
    b = interrupted_run(base / "b", "--seed", "7", "--activation", "tanh")
    return a, b


def _copy_run(src, dst):
    import shutil

    shutil.copytree(src, dst)
    return str(dst)


def test_foreign_checkpoint_refused(two_runs, tmp_path, capsys):
    a, b = two_runs
    target = _copy_run(a, tmp_path / "a")
    with open(os.path.join(b, "checkpoint.gbx"), "rb") as f:
        data = f.read()
    with open(os.path.join(target, "checkpoint.gbx"), "wb") as f:
        f.write(data)
    rc, _, err = run(["train", "--resume", target, "--quiet"], capsys)
    line = one_line_error(rc, err, 1, "is not this run's")
    assert "seed" in line or "activation" in line


def test_own_checkpoint_still_resumes(two_runs, tmp_path, capsys):
    target = _copy_run(two_runs[0], tmp_path / "a")
    rc, out, err = run(["train", "--resume", target], capsys)
    assert rc == 0, err
    assert f"resuming {target} at epoch 1, step 5" in out


def _forge(src_run, dst, change):
    """A checkpoint of ``src_run`` changed by ``change(arrays, meta)``, re-saved with valid checksums."""
    target = _copy_run(src_run, dst)
    path = os.path.join(target, "checkpoint.gbx")
    arrays, meta = load_with_metadata(path)
    arrays = dict(arrays)
    change(arrays, meta)
    save(arrays, path, metadata=meta)
    return target


FORGERIES = {
    "negative lr": lambda a, m: m["optimizer"]["hyper"].__setitem__("lr", -0.5),
    "lr nan": lambda a, m: m["optimizer"]["hyper"].__setitem__("lr", float("nan")),
    "other lr": lambda a, m: m["optimizer"]["hyper"].__setitem__("lr", 0.5),
    "weight decay": lambda a, m: m["optimizer"]["hyper"].__setitem__("weight_decay", 3.0),
    "betas": lambda a, m: m["optimizer"]["hyper"].__setitem__("betas", [2.0, 0.999]),
    "zero order": lambda a, m: a.__setitem__("trainer.perm", np.zeros_like(a["trainer.perm"])),
    "short order": lambda a, m: a.__setitem__("trainer.perm", a["trainer.perm"][:-1]),
    "huge steps": lambda a, m: m.update(global_step=10 ** 15),
    "huge epoch": lambda a, m: m.update(epoch=10 ** 12),
    "negative step": lambda a, m: m.update(step=-3),
    "dataset": lambda a, m: m["dataset"].update(name="spirals"),
    "split": lambda a, m: m["dataset"].update(val_split=0.5),
    "hidden": lambda a, m: m["hyperparameters"].update(hidden=[64]),
    "classes": lambda a, m: m.update(classes=[0, 1, 2]),
    "weight shape": lambda a, m: a.__setitem__("model.0.weight", np.zeros((9, 2), dtype=np.float32)),
    "optimizer type": lambda a, m: m["optimizer"].update(type="SGD"),
    "long history": lambda a, m: m.update(history={"epoch": [1, 2, 3], "loss": [1.0, 0.9, 0.8]}),
}


@pytest.mark.parametrize("name", sorted(FORGERIES))
def test_forged_checkpoint_refused(two_runs, tmp_path, capsys, name):
    target = _forge(two_runs[0], tmp_path / "f", FORGERIES[name])
    rc, _, err = run(["train", "--resume", target, "--quiet"], capsys)
    one_line_error(rc, err, 1, f"--resume {target}")
    assert not os.path.exists(os.path.join(target, "model.gbx"))


def test_forged_checkpoint_fuzz(two_runs, tmp_path, capsys):
    """Random combinations of forgeries (GRADBOX_FUZZ_N of them): each refused in one line."""
    rnd = random.Random(int(os.environ.get("GRADBOX_FUZZ_SEED", "0")))
    names = sorted(FORGERIES)
    for i in range(FUZZ_N):
        picked = rnd.sample(names, rnd.randint(1, 3))

        def change(a, m, picked=picked):
            for n in picked:
                FORGERIES[n](a, m)

        target = _forge(two_runs[0], tmp_path / f"f{i}", change)
        rc, _, err = run(["train", "--resume", target, "--quiet"], capsys)
        one_line_error(rc, err, 1)


def test_checkpoint_hyperparameters_checked_in_the_library():
    """Trainer.load_checkpoint (no run folder) refuses out-of-range hyperparameters and orders too."""
    from gradbox.train import Trainer, build_mlp

    X = np.random.default_rng(0).normal(size=(20, 2)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64)

    def trainer():
        return Trainer(build_mlp(2, [4], 2, rng=0), verbose=0, batch_size=8, seed=0)

    t = trainer()
    t.fit(X, y, epochs=1)
    arrays, meta = t.state()
    for key, bad in (("lr", -0.5), ("lr", float("inf")), ("eps", 0.0)):
        m = json.loads(json.dumps(meta))
        m["optimizer"]["hyper"][key] = bad
        with pytest.raises(ValueError, match=key):
            trainer().load_checkpoint((arrays, m))
    a = dict(arrays, **{"trainer.perm": np.zeros(20, dtype=np.int64)})
    m = json.loads(json.dumps(meta))
    m["step"], m["global_step"] = 1, 4
    with pytest.raises(ValueError, match="permutation"):
        trainer().load_checkpoint((a, m))


# ------------------------------------------------------------------------------------------------
# item 7: predict never writes over what it reads
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def model_run(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("model") / "run")
    assert main(["train", *TINY, "--out", out]) == 0
    return out


@pytest.mark.parametrize("how", ["same", "symlink", "hardlink", "folder", "input"])
def test_predict_output_is_not_an_input(model_run, tmp_path, capsys, how):
    import shutil

    model = str(tmp_path / "m.gbx")
    shutil.copy(os.path.join(model_run, "model.gbx"), model)
    inp = tmp_path / "x.csv"
    inp.write_text("0.1,0.2\n0.3,-0.1\n")
    before = open(model, "rb").read()
    output = {"same": model, "folder": model, "input": str(inp)}.get(how)
    if how == "symlink":
        output = str(tmp_path / "link.gbx")
        os.symlink(model, output)
    elif how == "hardlink":
        output = str(tmp_path / "hard.gbx")
        os.link(model, output)
    src = model
    if how == "folder":  # MODEL given as its run folder, --output its model.gbx
        src, output = model_run, os.path.join(model_run, "model.gbx")
        before = open(output, "rb").read()
    rc, _, err = run(["predict", src, "--input", str(inp), "--output", output], capsys)
    one_line_error(rc, err, 2, "--output", "same file")
    assert open(output if how != "input" else model, "rb").read() == before
    if how == "input":
        assert inp.read_text() == "0.1,0.2\n0.3,-0.1\n"


# ------------------------------------------------------------------------------------------------
# item 10: model-file metadata is checked before it drives anything
# ------------------------------------------------------------------------------------------------
def _forged_model(model_run, path, **changes):
    mf = load_model(os.path.join(model_run, "model.gbx"))
    meta = json.loads(json.dumps(mf.metadata))
    for key, value in changes.items():
        if key.startswith("dataset."):
            meta["dataset"][key.split(".", 1)[1]] = value
        else:
            meta[key] = value
    save_model(str(path), mf.model, arrays=mf.arrays, metadata=meta)
    return str(path)


@pytest.mark.parametrize("changes,pattern", [
    ({"dataset.source": "spirals", "dataset.options": {"n_samples": 10 ** 10}}, "n_samples"),
    ({"dataset.options": {"n_samples": 10 ** 10, "noise": 0.1}}, "n_samples"),
    ({"dataset.options": {"centers": 10 ** 9}}, "options"),
    ({"classes": list(range(20000))}, "classes"),
    ({"input_shape": [10 ** 6, 10 ** 6]}, "input_shape"),
    ({"dataset.val_split": 5}, "val_split"),
    ({"dataset.seed": -1}, "seed"),
])
def test_forged_metadata_sizes_refused(model_run, tmp_path, capsys, changes, pattern):
    path = _forged_model(model_run, tmp_path / "forged.gbx", **changes)
    rc, _, err = run(["evaluate", path], capsys)
    one_line_error(rc, err, 1, pattern)


SECRET = "SECRET-TOKEN-4711"


@pytest.mark.parametrize("content", [
    f"a,b,label\n1,2,0\n3,{SECRET},1\n",             # a non-numeric feature cell
    f"a,b,label\n1,2,{SECRET}\n3,4,other\n5,6,0\n",  # labels that are not the model's classes
    f"{SECRET}\n",                                    # not a table at all
    "a,b,label\n" + "1,2,0\n" * 3 + f"1,2,3,{SECRET}\n",
])
def test_metadata_source_content_never_echoed(model_run, tmp_path, capsys, content):
    secret = tmp_path / "secret.csv"
    secret.write_text(content)
    path = _forged_model(model_run, tmp_path / "forged.gbx", **{"dataset.source": str(secret),
                                                                "dataset.target": "label"})
    rc, out, err = run(["evaluate", path], capsys)
    assert rc != 0
    assert SECRET not in err and SECRET not in out
    one_line_error(rc, err, None, str(secret))


def test_metadata_fuzz(model_run, tmp_path, capsys):
    """Random hostile metadata values (GRADBOX_FUZZ_N of them): a result or a one-line error, never a crash."""
    rnd = random.Random(int(os.environ.get("GRADBOX_FUZZ_SEED", "0")))
    hostile = [None, -1, 0, 10 ** 12, 2.5, float("nan"), "x" * 5000, [], {}, [10 ** 9], {"n_samples": -5},
               {"n_samples": True}, "../../../etc/passwd", "/dev/zero", 1e308]
    keys = ["classes", "input_shape", "feature_names", "dataset.source", "dataset.options", "dataset.val_split",
            "dataset.test_split", "dataset.seed", "dataset.target", "hyperparameters", "test_accuracy"]
    for i in range(FUZZ_N):
        changes = {k: rnd.choice(hostile) for k in rnd.sample(keys, rnd.randint(1, 3))}
        try:
            path = _forged_model(model_run, tmp_path / f"fz{i}.gbx", **changes)
        except (ValueError, TypeError):
            continue  # save_model itself refused the metadata (e.g. NaN)
        for cmd in (["evaluate", path], ["info", path]):
            rc, out, err = run(cmd, capsys)
            if rc != 0:
                one_line_error(rc, err, None)
            assert "unexpected" not in err, (changes, err)


# ------------------------------------------------------------------------------------------------
# configuration values from a TOML file or flags: refused in one line, never a crash
# ------------------------------------------------------------------------------------------------
def test_config_fuzz(tmp_path, capsys):
    """Hostile TOML values (GRADBOX_FUZZ_N files): checked before any data, model or folder exists."""
    from gradbox.train import run as runmod

    rnd = random.Random(int(os.environ.get("GRADBOX_FUZZ_SEED", "0")))
    hostile = ['-1', '0', '1e309', '"nan"', '10000000000', '[1, -2]', '[]', '{}', 'true', '"x"', '""', '-0.5',
               '"../../etc/passwd"', '[[1]]', '1.5', '"full"', '"100steps"', '{ a = 1 }', '"none"']
    keys = [k for k in runmod.DEFAULTS if k not in ("dataset", "out")]
    for i in range(max(FUZZ_N, 4) * 3):
        picked = rnd.sample(keys, rnd.randint(1, 3))
        cfg = tmp_path / f"c{i}.toml"
        cfg.write_text('dataset = "moons"\nn_samples = 60\nepochs = 1\nhidden = [4]\n'
                       + "".join(f"{k} = {rnd.choice(hostile)}\n" for k in picked))
        try:
            config = runmod.resolve_config(runmod.read_config(str(cfg)))
        except runmod.RunError as exc:
            assert "\n" not in str(exc) and str(exc).startswith("--"), str(exc)
            continue
        # accepted: then it is a valid configuration within the documented limits
        assert config["n_samples"] is None or config["n_samples"] <= runmod.MAX_SYNTHETIC_SAMPLES
        assert config["lr"] is None or config["lr"] > 0
