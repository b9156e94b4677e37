"""The ``gradbox`` command: a thin layer over :mod:`gradbox.train`.

Subcommands::

    gradbox train [--dataset digits] [--hidden 256,128] [--epochs 50] ... [--config run.toml]
    gradbox train --resume RUN_DIR [--epochs N]
    gradbox evaluate MODEL [--dataset NAME|PATH]
    gradbox predict MODEL --input FILE.csv|FILE.npz [--output OUT.csv]
    gradbox gradcheck [MODEL] [--dataset NAME|PATH]
    gradbox info MODEL
    gradbox graph ... / gradbox explain ...        (from gradbox.cli_see)

Every error is one line on stderr (``gradbox: error: ...``) and a non-zero exit
code (2 for usage errors); ``--debug`` also prints the traceback.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import numbers
import os
import re
import sys
import time

import numpy as np

__all__ = ["DEFAULTS", "CLIError", "main", "resolve_config"]

USAGE_EXIT = 2


class CLIError(Exception):
    """A user error with its exit code (2: bad command line or config, 1: bad data or file)."""

    def __init__(self, message, code=1):
        super().__init__(message)
        self.code = code


class _Parser(argparse.ArgumentParser):
    """argparse, but errors become one-line ``CLIError``s (exit 2) instead of usage dumps."""

    def error(self, message):
        raise CLIError(f"{message} (see {self.prog} --help)", USAGE_EXIT)


# --------------------------------------------------------------------------------------
# Configuration of `gradbox train`
# --------------------------------------------------------------------------------------
# NOTE: tuned on digits (70/15/15 stratified split): 0.989 test accuracy with seed 0; over seeds
# 0-9 mean 0.978 (min 0.967, the hardest split); about 2.5 s of training on 2 cores.
DEFAULTS = {
    "dataset": "digits", "target": None, "hidden": [256, 128], "activation": "relu", "optimizer": "adam",
    "lr": None, "momentum": 0.9, "epochs": 50, "batch_size": 32, "weight_decay": 0.0, "dropout": 0.4,
    "init": None, "seed": 0, "val_split": 0.15, "test_split": 0.15, "patience": None,
    "checkpoint_every": None, "n_samples": None, "noise": None, "threads": 1, "fused": False, "out": None,
}
# keys that describe the model/data/optimisation (fixed for a resumed run)
_RESUME_FIXED = [k for k in DEFAULTS if k not in ("epochs", "out")]
_DATASET_OPTIONS = ("n_samples", "noise")


def _is_int(v):
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_num(v):
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def _usage(msg):
    return CLIError(msg, USAGE_EXIT)


def _parse_hidden(value):
    if isinstance(value, str):
        text = value.replace(" ", "")
        if text.lower() in ("", "none", "0"):
            return []
        parts = text.split(",")
        try:
            value = [int(p) for p in parts]
        except ValueError:
            raise _usage(f"--hidden: expected comma-separated layer sizes such as 64,32, received {text!r}") from None
    if not isinstance(value, (list, tuple)) or not all(_is_int(h) and h > 0 for h in value):
        raise _usage(f"--hidden: expected positive layer sizes such as 64,32, received {value!r}")
    return [int(h) for h in value]


def _parse_checkpoint_every(value):
    """'5' or '5epochs' -> (5, 'epoch'); '100steps' -> (100, 'step')."""
    if value is None:
        return None
    if _is_int(value):
        value = str(value)
    m = re.fullmatch(r"\s*(\d+)\s*(epochs?|steps?|e|s)?\s*", str(value))
    if not m or int(m.group(1)) <= 0:
        raise _usage(f"--checkpoint-every: expected a positive count of epochs (5) or steps (100steps), "
                     f"received {value!r}")
    unit = "step" if (m.group(2) or "e").startswith("s") else "epoch"
    return int(m.group(1)), unit


def resolve_config(values: dict) -> dict:
    """Check and normalise a training configuration (defaults, a TOML file and flags merged)."""
    from .nn.init import INITIALIZERS
    from .train import ACTIVATIONS, OPTIMIZERS

    c = dict(DEFAULTS)
    c.update({k: v for k, v in values.items() if v is not None})
    if not isinstance(c["dataset"], str) or not c["dataset"]:
        raise _usage(f"--dataset: expected a dataset name or a file path, received {c['dataset']!r}")
    if c["target"] is not None and not isinstance(c["target"], str):
        raise _usage(f"--target: expected a column name, received {c['target']!r}")
    c["hidden"] = _parse_hidden(c["hidden"])
    # NOTE: isinstance first: a TOML list or table is unhashable, so `in` a dict would raise TypeError.
    for key, choices in (("activation", ACTIVATIONS), ("optimizer", OPTIMIZERS)):
        if not isinstance(c[key], str) or c[key] not in choices:
            raise _usage(f"--{key}: expected one of {', '.join(choices)}, received {c[key]!r}")
    if c["init"] is not None and (not isinstance(c["init"], str) or c["init"] not in INITIALIZERS):
        raise _usage(f"--init: expected one of {', '.join(INITIALIZERS)}, received {c['init']!r}")
    if c["lr"] is not None and not (_is_num(c["lr"]) and c["lr"] > 0):
        raise _usage(f"--lr: expected a positive learning rate, received {c['lr']!r}")
    if not (_is_num(c["momentum"]) and 0 <= c["momentum"] < 1):
        raise _usage(f"--momentum: expected a value in [0, 1), received {c['momentum']!r}")
    if not (_is_int(c["epochs"]) and c["epochs"] > 0):
        raise _usage(f"--epochs: expected a positive int, received {c['epochs']!r}")
    bs = c["batch_size"]
    if isinstance(bs, str):
        if bs.strip().lower() == "full":
            bs = "full"
        elif bs.strip().isdigit():
            bs = int(bs)
    if bs != "full" and not (_is_int(bs) and bs > 0):
        raise _usage(f"--batch-size: expected a positive int or 'full', received {c['batch_size']!r}")
    c["batch_size"] = bs
    if not isinstance(c["fused"], bool):
        raise _usage(f"--fused: expected true or false, received {c['fused']!r}")
    if not (_is_num(c["weight_decay"]) and c["weight_decay"] >= 0):
        raise _usage(f"--weight-decay: expected a non-negative number, received {c['weight_decay']!r}")
    if not (_is_num(c["dropout"]) and 0 <= c["dropout"] < 1):
        raise _usage(f"--dropout: expected a probability in [0, 1), received {c['dropout']!r}")
    if not (_is_int(c["seed"]) and c["seed"] >= 0):
        raise _usage(f"--seed: expected a non-negative int, received {c['seed']!r}")
    for key in ("val_split", "test_split"):
        if not (_is_num(c[key]) and 0 <= c[key] < 1):
            raise _usage(f"--{key.replace('_', '-')}: expected a fraction in [0, 1), received {c[key]!r}")
    if c["val_split"] + c["test_split"] >= 1:
        raise _usage(f"--val-split + --test-split: expected a sum below 1, received "
                     f"{c['val_split']} + {c['test_split']}")
    if c["patience"] is not None and not (_is_int(c["patience"]) and c["patience"] > 0):
        raise _usage(f"--patience: expected a positive int, received {c['patience']!r}")
    every = _parse_checkpoint_every(c["checkpoint_every"])
    c["checkpoint_every"] = None if every is None else f"{every[0]}{every[1]}s"
    if c["n_samples"] is not None and not (_is_int(c["n_samples"]) and c["n_samples"] > 0):
        raise _usage(f"--n-samples: expected a positive int, received {c['n_samples']!r}")
    if c["noise"] is not None and not (_is_num(c["noise"]) and c["noise"] >= 0):
        raise _usage(f"--noise: expected a non-negative number, received {c['noise']!r}")
    if not (_is_int(c["threads"]) and c["threads"] >= 0):
        raise _usage(f"--threads: expected a non-negative int (0: the BLAS default), received {c['threads']!r}")
    if c["out"] is not None and not isinstance(c["out"], str):
        raise _usage(f"--out: expected a folder path, received {c['out']!r}")
    return c


def _read_toml(path) -> dict:
    try:
        import tomllib
    except ImportError:  # Python < 3.11
        try:
            import tomli as tomllib
        except ImportError:
            raise CLIError("--config: reading TOML needs Python 3.11 or `pip install tomli`") from None
    if not os.path.isfile(path):
        raise CLIError(f"--config: no such file {path!r}")
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise _usage(f"--config {path}: expected a valid TOML file, received a parse error: {exc}") from None
    if isinstance(data.get("train"), dict) and len(data) == 1:
        data = data["train"]  # a [train] table is accepted too
    config = {}
    for key, value in data.items():
        k = key.replace("-", "_")
        if k not in DEFAULTS:
            raise _usage(f"--config {path}: unknown key {key!r}; expected some of "
                         f"{', '.join(k.replace('_', '-') for k in DEFAULTS)}")
        config[k] = value
    return config


# --------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------
def _load_dataset(name, target=None, options=None, min_classes=2):
    from . import datasets

    options = {k: v for k, v in (options or {}).items() if v is not None}
    if target is not None:
        options["target"] = target
    looks_like_file = os.sep in name or "/" in name or "." in os.path.basename(name)
    key = name.strip().lower().replace("-", "_")
    if key not in datasets.list_datasets() and not os.path.exists(name) and not looks_like_file:
        raise _usage(f"--dataset: expected one of {', '.join(datasets.list_datasets())} or a file path, "
                     f"received {name!r}")
    try:
        ds = datasets.load(name, **options)
    except TypeError as exc:
        # NOTE: datasets.load raises TypeError for an option the loader does not take.
        raise _usage(f"--dataset {name}: {exc}") from None
    if ds.n_classes is None:
        raise CLIError(f"--dataset {name}: expected class labels, received a continuous target "
                       "(gradbox train fits classifiers)")
    if ds.n_classes < min_classes:
        raise CLIError(f"--dataset {name}: expected at least {min_classes} classes to train on, "
                       f"received {ds.n_classes}")
    return ds


def _dataset_options(c):
    return {k: c[k] for k in _DATASET_OPTIONS if c.get(k) is not None}


def _split(ds, val_split, test_split, seed):
    """(X_train, y_train, X_val, y_val, X_test, y_test); a dataset's own test set wins."""
    from .data import train_val_test_split

    if ds.test is not None:
        s = train_val_test_split(ds.X, ds.y, val_split, 0.0, seed=seed)
        return s.X_train, s.y_train, s.X_val, s.y_val, ds.test[0], ds.test[1]
    s = train_val_test_split(ds.X, ds.y, val_split, test_split, seed=seed)
    return s.X_train, s.y_train, s.X_val, s.y_val, s.X_test, s.y_test


def _prepare(c):
    """Load, split and standardise the data of a configuration."""
    from .data import Standardizer

    ds = _load_dataset(c["dataset"], c["target"], _dataset_options(c))
    Xtr, ytr, Xva, yva, Xte, yte = _split(ds, c["val_split"], c["test_split"], c["seed"])
    scaler = Standardizer().fit(Xtr)
    f = lambda A: scaler.transform(A).astype(np.float32, copy=False)
    parts = (f(Xtr), ytr, f(Xva) if len(Xva) else None, yva, f(Xte) if len(Xte) else None, yte)
    return ds, parts, scaler


def _dataset_record(c, ds):
    name = c["dataset"]
    if os.path.exists(name):
        name = os.path.abspath(name)
    return {"name": ds.name, "source": name, "target": c["target"], "options": _dataset_options(c),
            "val_split": c["val_split"], "test_split": c["test_split"], "seed": c["seed"]}


# --------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------
def _write_json(path, obj):
    from .io import atomic_open

    with atomic_open(path, "w") as f:
        json.dump(obj, f, indent=2, allow_nan=True, default=_json_default)
        f.write("\n")


def _json_default(o):
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, np.generic):
        return o.item()
    raise TypeError(f"not JSON-serialisable: {type(o).__name__}")


def _new_run_dir(dataset_name):
    base = re.sub(r"[^A-Za-z0-9_.-]+", "_", os.path.splitext(os.path.basename(dataset_name))[0]) or "run"
    stamp = time.strftime("%Y%m%d-%H%M%S")
    os.makedirs("runs", exist_ok=True)
    for i in range(1, 10000):
        path = os.path.join("runs", f"{base}-{stamp}" + (f"-{i}" if i > 1 else ""))
        try:
            os.mkdir(path)  # NOTE: mkdir is atomic, so two runs started in the same second differ
            return path
        except FileExistsError:
            continue
    raise CLIError("could not create a unique run folder under runs/")


def _arch(model):
    from . import nn

    sizes = []
    for m in model:
        if isinstance(m, nn.Linear):
            if not sizes:
                sizes.append(m.in_features)
            sizes.append(m.out_features)
    return "-".join(map(str, sizes))


def _say(args, *parts, **kw):
    if not getattr(args, "quiet", False):
        print(*parts, **kw, flush=True)


# --------------------------------------------------------------------------------------
# gradbox train
# --------------------------------------------------------------------------------------
_TRAIN_FLAGS = {  # dest -> (flags, kwargs)
    "dataset": (["--dataset"], dict(metavar="NAME|PATH", help="digits (default), breast_cancer, spirals, moons, "
                                    "xor, blobs, or a .csv/.npz/.h5/IDX file")),
    "target": (["--target"], dict(metavar="COL", help="label column of a CSV file (default: the last)")),
    "hidden": (["--hidden"], dict(metavar="N,N", help="hidden layer sizes (default 256,128; 'none' for none)")),
    "activation": (["--activation"], dict(help="relu (default), tanh, sigmoid or leaky_relu")),
    "optimizer": (["--optimizer"], dict(help="sgd, momentum, nesterov, rmsprop, adam (default) or adamw")),
    "lr": (["--lr"], dict(type=float, help="learning rate (default: 0.001 for adam/adamw/rmsprop, "
                                              "0.05 for momentum/nesterov, 0.1 for sgd)")),
    "momentum": (["--momentum"], dict(type=float, help="momentum of momentum/nesterov (default 0.9)")),
    "epochs": (["--epochs"], dict(type=int, help="epochs (default 50)")),
    "batch_size": (["--batch-size"], dict(metavar="N|full", help="mini-batch size or 'full' (default 32)")),
    "weight_decay": (["--weight-decay"], dict(type=float, help="L2 penalty (default 0; adamw: 0.01)")),
    "dropout": (["--dropout"], dict(type=float, help="dropout after each hidden layer (default 0.4)")),
    "init": (["--init"], dict(help="he_normal, he_uniform, xavier_normal, xavier_uniform or normal "
                                   "(default: he_normal for relu-like, xavier_normal for tanh/sigmoid)")),
    "seed": (["--seed"], dict(type=int, help="seed of the split, weights, dropout and shuffling (default 0)")),
    "val_split": (["--val-split"], dict(type=float, help="validation fraction (default 0.15)")),
    "test_split": (["--test-split"], dict(type=float, help="test fraction (default 0.15; ignored when the "
                                                               "dataset has its own test set)")),
    "patience": (["--patience"], dict(type=int, help="early stopping after N epochs without a better "
                                                     "validation loss; restores the best weights")),
    "checkpoint_every": (["--checkpoint-every"], dict(metavar="N|Nsteps", help="write RUN/checkpoint.gbx every N "
                                                      "epochs, or every N optimizer steps with 'Nsteps'")),
    "n_samples": (["--n-samples"], dict(type=int, help="samples of a synthetic dataset")),
    "noise": (["--noise"], dict(type=float, help="noise of a synthetic dataset")),
    "threads": (["--threads"], dict(type=int, help="BLAS threads while training (default 1: fastest for small "
                                                   "layers, and the same summation order everywhere; 0: BLAS default)")),
    "fused": (["--fused"], dict(action="store_true", default=None,
                                help="one compiled pass per optimizer update (needs numba: pip install "
                                     "'gradbox[fast]'); the same results, faster for large layers")),
    "out": (["--out"], dict(metavar="DIR", help="run folder (default runs/<dataset>-<timestamp>)")),
}


@contextlib.contextmanager
def _blas_threads(n):
    """Limit BLAS threads (threadpoolctl, when installed) for the block; 0 leaves them alone.

    NOTE: for matrices as small as these layers, OpenBLAS's threads cost more than they
    save, badly so on a busy machine (measured 2.5 s vs 18 s for the default digits run).
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        threadpool_limits = None
    if not n or threadpool_limits is None:
        yield
        return
    with threadpool_limits(limits=n, user_api="blas"):
        yield


def _add_common(p):
    p.add_argument("--quiet", action="store_true", help="print nothing but errors")
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks on errors")


def _add_dataset_flags(p, dataset_help):
    p.add_argument("--dataset", metavar="NAME|PATH", help=dataset_help)
    p.add_argument("--target", metavar="COL", help="label column of a CSV file")
    p.add_argument("--n-samples", type=int, help="samples of a synthetic dataset")
    p.add_argument("--noise", type=float, help="noise of a synthetic dataset")


def _train_config(args):
    """(config, explicit flag values) from defaults, --config and flags."""
    flags = {k: getattr(args, k) for k in _TRAIN_FLAGS if getattr(args, k, None) is not None}
    file_cfg = _read_toml(args.config) if args.config else {}
    return resolve_config({**file_cfg, **flags}), flags


def _build(c, n_features, n_classes):
    from . import manual_seed
    from .train import build_mlp, make_optimizer

    manual_seed(c["seed"])
    model = build_mlp(n_features, c["hidden"], n_classes, activation=c["activation"], dropout=c["dropout"],
                      init=c["init"])
    opt = make_optimizer(c["optimizer"], model.parameters(), lr=c["lr"], momentum=c["momentum"],
                         weight_decay=c["weight_decay"], fused=c["fused"])
    return model, opt


def _callbacks(c, out, args):
    from .train import EarlyStopping, ModelCheckpoint, ProgressBar, _StopAfterSteps

    cbs = []
    if c["patience"]:
        cbs.append(EarlyStopping("val_loss", patience=c["patience"], restore_best=True))
    every = _parse_checkpoint_every(c["checkpoint_every"])
    if every:
        cbs.append(ModelCheckpoint(out, every=every[0], unit=every[1]))
    if getattr(args, "stop_after_steps", None):
        cbs.append(_StopAfterSteps(args.stop_after_steps))
    if not args.quiet:
        cbs.append(ProgressBar())
    return cbs


class _CtrlC:
    """Ctrl-C while training: the first stops after the current step (a checkpoint follows); pressed
    while the finished run is being written, the writing completes first. The second aborts.

    NOTE: a KeyboardInterrupt raised at an arbitrary point of writing the run (inside an import of
    matplotlib, say) could end the process with -SIGINT or even crash the interpreter at exit.
    """

    def __init__(self, trainer):
        self.trainer, self.pressed, self._old = trainer, False, None

    def __enter__(self):
        import signal
        import threading

        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGINT, self._handler)
        return self

    def _handler(self, signum, frame):
        if self.pressed:
            raise KeyboardInterrupt
        self.pressed = True
        self.trainer.request_stop(interrupted=True)

    def __exit__(self, *exc):
        if self._old is not None:
            import signal

            signal.signal(signal.SIGINT, self._old)
        return False


def cmd_train(args) -> int:
    from .train import Trainer

    t_start = time.perf_counter()
    resuming = args.resume is not None
    if resuming:
        run = args.resume
        cfg_path = os.path.join(run, "config.json")
        ckpt = os.path.join(run, "checkpoint.gbx")
        if not os.path.isdir(run):
            raise CLIError(f"--resume: no such run folder {run!r}")
        if not os.path.isfile(cfg_path) or not os.path.isfile(ckpt):
            missing = "config.json" if not os.path.isfile(cfg_path) else "checkpoint.gbx"
            raise CLIError(f"--resume {run}: expected a run folder with config.json and checkpoint.gbx, "
                           f"{missing} is missing (checkpoints come from --checkpoint-every or an interrupted run)")
        if args.config:
            raise _usage("--resume: expected no --config (the run folder's config.json is used)")
        fixed = [k for k in _RESUME_FIXED if getattr(args, k, None) is not None] + (["out"] if args.out else [])
        if fixed:
            raise _usage(f"--resume uses the run's saved settings; remove --{fixed[0].replace('_', '-')} "
                         "(only --epochs may change)")
        try:
            with open(cfg_path, encoding="utf-8") as f:
                saved = json.load(f)
        except ValueError as exc:  # NOTE: JSONDecodeError and UnicodeDecodeError are ValueErrors
            raise CLIError(f"--resume {run}: expected config.json to be JSON, received unreadable data "
                           f"({exc})") from None
        top, saved = saved, saved.get("config") if isinstance(saved, dict) else None
        if not isinstance(saved, dict) or not set(saved) <= set(DEFAULTS):
            got = (f"a JSON {type(top).__name__}" if not isinstance(top, dict) else
                   f"'config': {type(saved).__name__}" if not isinstance(saved, dict) else
                   f"unknown keys {sorted(set(saved) - set(DEFAULTS))[:5]}")
            raise CLIError(f"--resume {run}: expected config.json to hold a gradbox run configuration "
                           f"{{\"config\": {{...}}}}, received {got}")
        c = resolve_config({**saved, **({"epochs": args.epochs} if args.epochs else {})})
        out = run
    else:
        c, _ = _train_config(args)
        out = None
    ds, (Xtr, ytr, Xva, yva, Xte, yte), scaler = _prepare(c)
    model, opt = _build(c, ds.n_features, ds.n_classes)
    batch = None if c["batch_size"] == "full" else c["batch_size"]
    created = False
    if not resuming:
        out = c["out"]
        if out is None:
            out = _new_run_dir(ds.name)
            created = True
        else:
            if os.path.exists(out) and not os.path.isdir(out):
                raise CLIError(f"--out {out}: expected a folder (new or empty), received a file")
            if os.path.exists(os.path.join(out, "model.gbx")) or os.path.exists(os.path.join(out, "checkpoint.gbx")):
                raise CLIError(f"--out {out}: already holds a run; choose another folder or continue it with "
                               f"--resume {out}")
            created = not os.path.isdir(out)
            os.makedirs(out, exist_ok=True)
    trainer = Trainer(model, "cross_entropy", opt, batch_size=batch, shuffle=True, seed=c["seed"],
                      callbacks=_callbacks(c, out, args), verbose=0)
    # NOTE: a checkpoint is a model file too, so it carries what evaluate/predict need.
    trainer.extra_metadata = _model_metadata(c, ds, trainer)
    trainer.extra_arrays = {"norm.mean": scaler.mean_, "norm.scale": scaler.scale_}
    cfg_file = os.path.join(out, "config.json")
    try:
        # NOTE: the handler goes in before config.json is written, so from then on a Ctrl-C always
        # stops at a step boundary with a checkpoint (a stop requested before fit() starts counts).
        with _CtrlC(trainer) as ctrl_c:
            if resuming:
                meta = trainer.load_checkpoint(os.path.join(out, "checkpoint.gbx"))
                _say(args, f"resuming {out} at epoch {meta['epoch']}, step {meta['step']} "
                           f"(optimizer step {meta['global_step']})")
            else:
                _write_json(cfg_file, {"config": c, "gradbox_version": _version()})
            n_val = 0 if Xva is None else len(Xva)
            _say(args, f"training MLP {_arch(model)} ({c['activation']}, {c['optimizer']} lr={opt.lr:g}, "
                       f"batch {c['batch_size']}) on {ds.name}: {len(Xtr)} train / {n_val} val / "
                       f"{0 if Xte is None else len(Xte)} test samples -> {out}")
            with _blas_threads(c["threads"]):
                history = trainer.fit(Xtr, ytr, epochs=c["epochs"],
                                      validation_data=(Xva, yva) if Xva is not None else None)
            if trainer.interrupted:
                trainer.save_checkpoint(os.path.join(out, "checkpoint.gbx"))
                raise CLIError(f"interrupted at epoch {trainer.epoch + 1}, step {trainer.step} "
                               f"(optimizer step {trainer.global_step}); checkpoint saved, continue with: "
                               f"gradbox train --resume {out}", 130)
            code = _finish_run(args, c, ds, scaler, model, trainer, history, out, (Xte, yte), t_start)
    except BaseException:
        # NOTE: a failed fresh run leaves no half-made folder behind (nothing but our config was written).
        if not resuming and not os.path.exists(os.path.join(out, "checkpoint.gbx")):
            try:
                os.remove(cfg_file)
            except OSError:
                pass
            if created:
                try:
                    os.rmdir(out)
                except OSError:
                    pass
        raise
    if ctrl_c.pressed:  # NOTE: only after training ended: the run was written completely first
        raise CLIError(f"interrupted after training; the run in {out} is complete", 130)
    return code


def _version():
    from . import __version__

    return __version__


def _model_metadata(c, ds, trainer) -> dict:
    """What a model file records: data, classes, normalisation and hyperparameters."""
    classes = list(ds.classes) if ds.classes is not None else list(range(ds.n_classes))
    classes = [k if isinstance(k, (str, int)) else str(k) for k in classes]
    hyper = {k: c[k] for k in ("hidden", "activation", "optimizer", "lr", "momentum", "epochs", "batch_size",
                               "weight_decay", "dropout", "init", "patience", "checkpoint_every")}
    hyper["lr"] = trainer.optimizer.lr
    return {
        "kind": "gradbox-classifier", "gradbox_version": _version(),
        "dataset": _dataset_record(c, ds), "classes": classes, "n_features": ds.n_features,
        "feature_names": list(ds.feature_names) if ds.feature_names is not None else None,
        "normalization": "standardize: (x - norm.mean) / norm.scale",
        "hyperparameters": hyper, "seed": c["seed"],
    }


def _finish_run(args, c, ds, scaler, model, trainer, history, out, test, t_start) -> int:
    from .io import save_model
    from .train import evaluate

    Xte, yte = test
    res = evaluate(model, Xte, yte, n_classes=ds.n_classes) if Xte is not None else None
    stopped = next((cb.stopped_epoch for cb in trainer.callbacks if getattr(cb, "stopped_epoch", None)), None)
    meta = _model_metadata(c, ds, trainer)
    meta.update(epochs_trained=trainer.epoch, test_accuracy=None if res is None else res["accuracy"])
    classes, hyper = meta["classes"], meta["hyperparameters"]
    # model first: metrics.json, written last, marks a finished run
    save_model(os.path.join(out, "model.gbx"), model,
               arrays={"norm.mean": scaler.mean_, "norm.scale": scaler.scale_}, metadata=meta)
    history.to_csv(os.path.join(out, "history.csv"))
    try:
        from .plots import plot_history

        plot_history(history, os.path.join(out, "curves.png"),
                     title=f"{ds.name}: MLP {_arch(model)}, {c['optimizer']}")
        curves = "curves.png"
    except ImportError:
        curves = None  # matplotlib missing: the numbers are in history.csv
    h = history.as_dict()
    metrics = {
        "test_accuracy": None if res is None else res["accuracy"],
        "test_loss": None if res is None else res["loss"],
        "n_test": None if res is None else res["n"],
        "confusion_matrix": None if res is None else res["confusion_matrix"].tolist(),
        "final": {k: v[-1] for k, v in h.items() if v and k != "epoch"},
        "history": h,
        "epochs_trained": trainer.epoch, "stopped_early_at": stopped, "optimizer_steps": trainer.global_step,
        "hyperparameters": hyper, "seed": c["seed"], "dataset": _dataset_record(c, ds), "classes": classes,
        "n_train": int(trainer._n_train) if hasattr(trainer, "_n_train") else None,
        "training_seconds": trainer.elapsed, "elapsed_seconds": time.perf_counter() - t_start,
        "files": [f for f in ("model.gbx", "history.csv", curves, "metrics.json") if f],
        "gradbox_version": _version(),
    }
    _write_json(os.path.join(out, "metrics.json"), metrics)
    if res is not None:
        correct = int(round(res["accuracy"] * res["n"]))
        _say(args, f"test accuracy {res['accuracy']:.4f} ({correct}/{res['n']})  test loss {res['loss']:.4f}  "
                   f"[{trainer.elapsed:.1f}s training]")
    _say(args, f"wrote {out}/: model.gbx, metrics.json, history.csv" + (f", {curves}" if curves else ""))
    return 0


# --------------------------------------------------------------------------------------
# Model files: evaluate, predict, gradcheck, info
# --------------------------------------------------------------------------------------
def _load_model_file(path):
    from .io import load_model

    if not os.path.exists(path):
        raise CLIError(f"MODEL: no such file {path!r}")
    if os.path.isdir(path):
        candidate = os.path.join(path, "model.gbx")
        if os.path.isfile(candidate):
            path = candidate
        else:
            raise CLIError(f"MODEL: expected a model file, received the folder {path!r} (no model.gbx in it)")
    mf = load_model(path)
    _check_metadata(mf.metadata, path)
    return mf


def _check_metadata(meta, path):
    """Type-check the metadata fields the commands read.

    NOTE: save_model takes any JSON metadata, so a hand-made model file may hold e.g. ``classes: 5``;
    without this check the commands failed with raw Python messages ("object of type 'int' has no len()").
    """
    if not isinstance(meta, dict):
        return

    def check(key, value, ok, expected):
        if value is not None and not ok(value):
            raise CLIError(f"MODEL {path}: expected metadata {key!r} to be {expected}, received "
                           f"{type(value).__name__} {json.dumps(value, default=str)[:60]}")

    scalar = (str, int, float)
    check("classes", meta.get("classes"), lambda v: isinstance(v, list) and all(isinstance(c, scalar) for c in v),
          "a list of class names")
    check("feature_names", meta.get("feature_names"),
          lambda v: isinstance(v, list) and all(isinstance(c, str) for c in v), "a list of column names")
    check("hyperparameters", meta.get("hyperparameters"), lambda v: isinstance(v, dict), "a table")
    check("test_accuracy", meta.get("test_accuracy"), _is_num, "a number")
    ds = meta.get("dataset")
    check("dataset", ds, lambda v: isinstance(v, dict), "a table")
    if isinstance(ds, dict):
        check("dataset.source", ds.get("source"), lambda v: isinstance(v, str) and v != "", "a dataset name or path")
        check("dataset.target", ds.get("target"), lambda v: isinstance(v, str), "a column name")
        check("dataset.options", ds.get("options"), lambda v: isinstance(v, dict), "a table of loader options")


def _input_width(model):
    from . import nn

    for m in model.modules():
        if isinstance(m, nn.Linear):
            return m.in_features
    raise CLIError("MODEL: expected a model with a Linear layer")


def _normalizer(mf):
    from .data import Standardizer

    mean, scale = mf.arrays.get("norm.mean"), mf.arrays.get("norm.scale")
    if mean is None or scale is None:
        return None
    try:
        norm = Standardizer.from_params(mean, scale)
    except (ValueError, TypeError) as exc:  # "mean: expected finite values, ..." -> "MODEL: norm.mean: ..."
        raise CLIError(f"MODEL: norm.{exc}") from None
    n_in = _input_width(mf.model)
    if norm.n_features_ != n_in:
        # NOTE: otherwise reported as the data's fault ("X: expected 3 features (as in fit)").
        raise CLIError(f"MODEL: expected norm.mean and norm.scale of {n_in} features (the model's input), "
                       f"received {norm.n_features_}")
    return norm


def _model_inputs(mf, X, where):
    """Apply the stored normalisation and cast to the model's dtype, checking the feature count."""
    from .data import check_array

    n_in = _input_width(mf.model)
    X = check_array(X, "X", ndim=2)
    if X.shape[1] != n_in:
        raise CLIError(f"{where}: expected {n_in} features (as the model was trained on), received {X.shape[1]}")
    norm = _normalizer(mf)
    if norm is not None:
        X = norm.transform(X.astype(np.float64))
    dtype = next(mf.model.parameters()).dtype
    # NOTE: check_array's conversion refuses values beyond the model dtype's range instead of making inf.
    return np.ascontiguousarray(check_array(X, where, ndim=2, dtype=dtype))


def _eval_data(args, mf):
    """(X, y, description) for evaluate/gradcheck: the recorded test part, or a whole given dataset."""
    rec = mf.metadata.get("dataset") if isinstance(mf.metadata, dict) else None
    options = {k: getattr(args, k, None) for k in _DATASET_OPTIONS}
    if args.dataset is None:
        if not isinstance(rec, dict) or "source" not in rec:
            raise _usage("--dataset: the model file records no dataset; pass --dataset NAME|PATH")
        opts = {**rec.get("options", {}), **{k: v for k, v in options.items() if v is not None}}
        ds = _load_dataset(rec["source"], rec.get("target"), opts)
        parts = _split(ds, rec.get("val_split", 0.15), rec.get("test_split", 0.15), rec.get("seed", 0))
        X, y = parts[4], parts[5]
        if X is None or len(X) == 0:
            X, y, what = parts[2], parts[3], "validation part"
            if X is None or len(X) == 0:
                raise _usage("--dataset: the model was trained without test or validation data "
                             "(--test-split 0 --val-split 0); pass --dataset NAME|PATH to evaluate on")
        else:
            what = "test set" if ds.test is not None else "test part"
        return X, y, f"the {what} of {ds.name} ({len(y)} samples, seed {rec.get('seed', 0)})", ds
    ds = _load_dataset(args.dataset, args.target, options, min_classes=1)
    if ds.test is not None:
        return ds.test[0], ds.test[1], f"the test set of {ds.name} ({len(ds.test[1])} samples)", ds
    return ds.X, ds.y, f"all of {ds.name} ({len(ds.y)} samples)", ds


def _align_labels(ds, model_classes, y, where="--dataset"):
    """Re-encode ``y`` so that class names mean what they meant in training.

    NOTE: a CSV's string labels are numbered in sorted order of the labels *present*, so a file
    holding only some classes would otherwise shift them.
    """
    if ds.classes is None or not model_classes:
        return y
    mine, theirs = [str(c) for c in ds.classes], [str(c) for c in model_classes]
    if mine == theirs:
        return y
    unknown = [c for c in mine if c not in theirs]
    if unknown:
        raise CLIError(f"{where}: class {unknown[0]!r} is not one of the model's classes {theirs[:10]}")
    table = np.array([theirs.index(c) for c in mine], dtype=np.int64)
    return table[np.asarray(y, dtype=np.int64)]


def _format_confusion(cm, classes):
    names = [str(c) for c in classes] if classes and len(classes) == len(cm) else [str(i) for i in range(len(cm))]
    w = max(4, max(len(n) for n in names), len(str(int(cm.max()))) + 1)
    lines = ["confusion matrix (rows: true, columns: predicted)",
             " " * (w + 2) + "".join(f"{n:>{w + 1}}" for n in names)]
    for n, row in zip(names, cm):
        lines.append(f"{n:>{w}}  " + "".join(f"{int(v):>{w + 1}}" for v in row))
    return "\n".join(lines)


def cmd_evaluate(args) -> int:
    from .train import evaluate

    mf = _load_model_file(args.model)
    X, y, what, ds = _eval_data(args, mf)
    X = _model_inputs(mf, X, "--dataset")
    classes = mf.metadata.get("classes") if isinstance(mf.metadata, dict) else None
    y = _align_labels(ds, classes, y)
    n_out = mf.model[-1].out_features if hasattr(mf.model[-1], "out_features") else None
    if n_out and len(y) and int(np.max(y)) >= n_out:
        raise CLIError(f"--dataset: expected labels below {n_out} (the model's classes), received {int(np.max(y))}")
    res = evaluate(mf.model, X, y, n_classes=n_out)
    correct = int(round(res["accuracy"] * res["n"]))
    print(f"evaluated {args.model} on {what}")
    print(f"loss      {res['loss']:.4f}")
    print(f"accuracy  {res['accuracy']:.4f} ({correct}/{res['n']})")
    print(_format_confusion(res["confusion_matrix"], classes))
    return 0


def _read_input(path, feature_names, n_features):
    """Features from a .csv (header optional) or .npz (array X) file, as float64."""
    if not os.path.exists(path):
        raise CLIError(f"--input: no such file {path!r}")
    low = path.lower()
    if low.endswith(".npz"):
        import zipfile

        try:
            from .datasets._files import open_npz

            with open_npz(path) as z:
                if not isinstance(z, np.lib.npyio.NpzFile):  # NOTE: an .npy file, whatever its name
                    raise CLIError(f"--input {path}: expected an .npz file with an array X, received a single .npy "
                                   "array")
                keys = list(z.keys())
                key = "X" if "X" in keys else (keys[0] if len(keys) == 1 else None)
                if key is None:
                    raise CLIError(f"--input {path}: expected an array named 'X', received arrays {keys}")
                X = z[key]
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
            # NOTE: an empty file raises EOFError, a damaged zip BadZipFile (neither is a ValueError/OSError).
            first = (str(exc) or type(exc).__name__).splitlines()[0]
            raise CLIError(f"--input {path}: expected an .npz file with an array X, received unreadable data "
                           f"({first})") from None
        if X.dtype.kind not in "fiub":
            raise CLIError(f"--input {path}: expected numeric features, received dtype {X.dtype}")
        return X.astype(np.float64)
    if not low.endswith((".csv", ".txt")):
        raise CLIError(f"--input: expected a .csv or .npz file, received {os.path.basename(path)!r}")
    import csv

    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = [r for r in csv.reader(f) if any(cell.strip() for cell in r)]
    except (UnicodeDecodeError, csv.Error) as exc:
        raise CLIError(f"--input {path}: expected a UTF-8 CSV file ({exc})") from None
    if not rows:
        raise CLIError(f"--input {path}: expected rows of features, received an empty file")

    def numeric(cell):
        try:
            float(cell)
            return True
        except ValueError:
            return False

    header = None if all(numeric(c) for c in rows[0]) else [c.strip() for c in rows[0]]
    data = rows[1:] if header else rows
    if not data:
        raise CLIError(f"--input {path}: expected data rows after the header, received none")
    columns = None
    if header is not None and feature_names:
        missing = [n for n in feature_names if n not in header]
        if missing:
            raise CLIError(f"--input {path}: missing column(s) {missing[:5]}"
                           f"{' ...' if len(missing) > 5 else ''}; expected the model's {n_features} features")
        columns = [header.index(n) for n in feature_names]
    width = len(header) if header else len(data[0])
    if columns is None and width != n_features:
        raise CLIError(f"--input {path}: expected {n_features} feature columns, received {width}")
    X = np.empty((len(data), n_features))
    for i, r in enumerate(data):
        if len(r) != width:
            raise CLIError(f"--input {path}: expected {width} fields in every row, received {len(r)} in row "
                           f"{i + 1 + bool(header)}")
        cells = [r[j] for j in columns] if columns is not None else r
        for j, cell in enumerate(cells):
            try:
                X[i, j] = float(cell)
            except ValueError:
                col = feature_names[j] if columns is not None else f"column {j + 1}"
                raise CLIError(f"--input {path}: expected a number in {col}, row {i + 1 + bool(header)}, "
                               f"received {cell.strip()!r}") from None
    return X


def cmd_predict(args) -> int:
    from .train import predict_proba

    mf = _load_model_file(args.model)
    meta = mf.metadata if isinstance(mf.metadata, dict) else {}
    n_in = _input_width(mf.model)
    X = _read_input(args.input, meta.get("feature_names"), n_in)
    X = _model_inputs(mf, X, f"--input {args.input}")
    proba = predict_proba(mf.model, X)
    classes = meta.get("classes")
    if not classes or len(classes) != proba.shape[1]:
        classes = list(range(proba.shape[1]))
    labels = proba.argmax(axis=1)
    lines = [",".join(["prediction", *[f"p_{_csv_cell(c)}" for c in classes]])]
    for lab, p in zip(labels, proba):
        lines.append(",".join([_csv_cell(classes[lab]), *[f"{v:.6g}" for v in p]]))
    text = "\n".join(lines) + "\n"
    if args.output:
        from .io import atomic_write_bytes

        atomic_write_bytes(args.output, text.encode())
        print(f"wrote {len(labels)} predictions to {args.output}", file=sys.stdout)
    else:
        sys.stdout.write(text)
    return 0


def _csv_cell(v):
    s = str(v)
    return f'"{s}"' if any(ch in s for ch in ',"\n') else s


def cmd_gradcheck(args) -> int:
    from . import check_gradients, nn

    if args.batch <= 0:
        raise _usage(f"--batch: expected a positive int, received {args.batch}")
    if args.max_entries is not None and args.max_entries <= 0:
        raise _usage(f"--max-entries: expected a positive int, received {args.max_entries}")
    if args.model:
        mf = _load_model_file(args.model)
        X, y, what, _ = _eval_data(args, mf)
        X = _model_inputs(mf, X, "--dataset").astype(np.float64)
        model = mf.model
        label = args.model
    else:
        # NOTE: `is None`, not `or`: an empty --dataset= is an error, not a request for the default.
        c = resolve_config({"dataset": "digits" if args.dataset is None else args.dataset, "target": args.target, "hidden": args.hidden,
                            "activation": args.activation, "seed": args.seed, "n_samples": args.n_samples,
                            "noise": args.noise, "dropout": 0.0})
        ds, (Xtr, ytr, *_), _ = _prepare(c)
        X, y, what = Xtr, ytr, f"the training part of {ds.name}"
        model, _ = _build(c, ds.n_features, ds.n_classes)
        label = f"a fresh MLP {_arch(model)} ({c['activation']})"
    n = min(args.batch, len(y))
    X, y = np.asarray(X[:n], dtype=np.float64), np.asarray(y[:n])
    print(f"gradient check of {label} on {n} samples of {what} (float64, central differences"
          + (f", at most {args.max_entries} entries per parameter)" if args.max_entries else ")"))
    report = check_gradients(model, nn.CrossEntropyLoss(), X, y, max_entries=args.max_entries, seed=args.seed or 0)
    print(report.table())
    return 0 if report.passed else 1


def cmd_info(args) -> int:
    from . import nn

    mf = _load_model_file(args.model)
    model = mf.model
    rows, width, total = [], None, 0
    for i, m in enumerate(model):
        kind = type(m).__name__
        n = sum(p.size for p in m.parameters())
        total += n
        if isinstance(m, nn.Linear):
            width = m.out_features
            shapes = f"W {m.weight.shape}" + (f", b {m.bias.shape}" if m.bias is not None else "")
            detail = f"{m.in_features} -> {m.out_features}"
        else:
            shapes, detail = "", m.extra_repr()
        out = f"(N, {width})" if width is not None else "(N, ...)"
        rows.append((str(i), kind, detail, out, shapes, f"{n:,}"))
    head = ("#", "layer", "", "output", "parameters", "count")
    widths = [max(len(r[j]) for r in [head, *rows]) for j in range(len(head))]
    fmt = lambda r: "  ".join(c.ljust(w) if j < 5 else c.rjust(w) for j, (c, w) in enumerate(zip(r, widths)))
    print(f"{args.model}: Sequential of {len(model)} layers, input (N, {_input_width(model)}), "
          f"{next(model.parameters()).dtype}")
    print(fmt(head))
    print("-" * len(fmt(head)))
    for r in rows:
        print(fmt(r))
    print(f"total parameters: {total:,}")
    meta = mf.metadata if isinstance(mf.metadata, dict) else {}
    ds = meta.get("dataset")
    if isinstance(ds, dict):
        print(f"dataset: {ds.get('name')} (source {ds.get('source')}, split val {ds.get('val_split')} / "
              f"test {ds.get('test_split')}, seed {ds.get('seed')})")
    if meta.get("classes") is not None:
        cls = meta["classes"]
        print(f"classes: {len(cls)} ({', '.join(map(str, cls[:12]))}{', ...' if len(cls) > 12 else ''})")
    if "norm.mean" in mf.arrays:
        print(f"normalisation: standardise with stored mean/scale of {mf.arrays['norm.mean'].shape[0]} features")
    if meta.get("hyperparameters"):
        hp = meta["hyperparameters"]
        print("hyperparameters: " + ", ".join(f"{k}={v}" for k, v in hp.items() if v is not None))
    if meta.get("test_accuracy") is not None:
        print(f"test accuracy: {meta['test_accuracy']:.4f}")
    if meta.get("format") == "gradbox-checkpoint":
        print(f"checkpoint: epoch {meta.get('epoch')}, step {meta.get('step')}, optimizer step "
              f"{meta.get('global_step')}")
    return 0


# --------------------------------------------------------------------------------------
# Parser and main
# --------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="gradbox", description="Train, check and use small neural networks (NumPy only).")
    parser.add_argument("--version", action="version", version=f"gradbox {_version()}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("train", help="train an MLP classifier (no arguments: digits, >= 0.97 test accuracy)",
                       description="Train an MLP classifier and write a run folder with model.gbx, metrics.json, "
                                   "history.csv and curves.png. Flags override --config.")
    p.add_argument("--config", metavar="FILE.toml", help="TOML file of the same settings (keys as the flags)")
    for dest, (flags, kw) in _TRAIN_FLAGS.items():
        if "action" not in kw:  # NOTE: a switch (store_true) takes no metavar
            kw = {"metavar": {int: "N", float: "X"}.get(kw.get("type"), "NAME"), **kw}
        p.add_argument(*flags, dest=dest, **kw)
    p.add_argument("--resume", metavar="DIR", help="continue the run in DIR exactly from its checkpoint.gbx")
    p.add_argument("--stop-after-steps", type=int, help=argparse.SUPPRESS)  # simulates Ctrl-C (tests)
    _add_common(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="loss, accuracy and confusion matrix of a model",
                       description="Evaluate MODEL on the test part of the dataset it was trained on (same split "
                                   "and seed), or on all of --dataset.")
    p.add_argument("model", metavar="MODEL")
    _add_dataset_flags(p, "evaluate on all of this dataset instead (its own test set if it has one)")
    _add_common(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("predict", help="predict classes of new samples",
                       description="Write one row per sample: the predicted class and each class's probability. "
                                   "The stored normalisation is applied.")
    p.add_argument("model", metavar="MODEL")
    p.add_argument("--input", required=True, metavar="FILE", help=".csv (header optional) or .npz (array X)")
    p.add_argument("--output", metavar="FILE.csv", help="write here (atomically) instead of stdout")
    _add_common(p)
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("gradcheck", help="compare backprop gradients with numerical ones",
                       description="Run gradbox.check_gradients (float64 central differences) on a small batch; "
                                   "exit 1 if any parameter's relative error is 1e-7 or more.")
    p.add_argument("model", metavar="MODEL", nargs="?", help="a model file (default: a fresh MLP)")
    _add_dataset_flags(p, "data for the batch (default: the model's dataset, or digits)")
    p.add_argument("--hidden", default="32,16", metavar="N,N", help="hidden sizes of a fresh MLP (default 32,16)")
    p.add_argument("--activation", default="tanh", help="activation of a fresh MLP (default tanh: no kinks)")
    p.add_argument("--batch", type=int, default=8, help="samples in the batch (default 8)")
    p.add_argument("--max-entries", type=int, default=200, help="check at most N entries per parameter "
                                                               "(default 200)")
    p.add_argument("--seed", type=int, default=0, help="seed of the fresh model and of the sampled entries")
    _add_common(p)
    p.set_defaults(func=cmd_gradcheck)

    p = sub.add_parser("info", help="layers, shapes and parameter counts of a model file")
    p.add_argument("model", metavar="MODEL")
    _add_common(p)
    p.set_defaults(func=cmd_info)

    try:
        from . import cli_see
    except ImportError:
        cli_see = None
    if cli_see is not None:
        cli_see.register(sub)
    return parser


def _one_line(exc) -> str:
    if isinstance(exc, OSError) and exc.filename and exc.strerror and not str(exc).startswith(("could", "name")):
        msg = f"{exc.strerror}: {exc.filename}"
    else:
        msg = str(exc) or type(exc).__name__
    return " ".join(msg.split())


def main(argv=None) -> int:
    """Run the command line; returns the exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = "--debug" in argv
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        debug = debug or getattr(args, "debug", False)
        if not getattr(args, "func", None):
            parser.print_help()
            return USAGE_EXIT
        return int(args.func(args) or 0)
    except CLIError as exc:
        if debug and exc.code != 130:
            import traceback

            traceback.print_exc()
        print(f"gradbox: error: {_one_line(exc)}", file=sys.stderr)
        return exc.code
    except BrokenPipeError:
        # NOTE: `gradbox predict ... | head` closed the pipe: stop quietly, as Unix tools do.
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return 141
    except KeyboardInterrupt:
        if debug:
            import traceback

            traceback.print_exc()
        print("gradbox: error: interrupted", file=sys.stderr)
        return 130
    except SystemExit as exc:  # --help / --version
        return exc.code if isinstance(exc.code, int) else 0
    except Exception as exc:  # noqa: BLE001 - the CLI shows one line unless --debug
        if debug:
            import traceback

            traceback.print_exc()
        from .train import TrainingDiverged

        prefix = "" if isinstance(exc, (ValueError, TypeError, OSError, ImportError, TrainingDiverged)) else \
            f"unexpected {type(exc).__name__}: "
        hint = "" if debug or not prefix else " (run with --debug for the traceback)"
        print(f"gradbox: error: {prefix}{_one_line(exc)}{hint}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
