"""A whole training run as a library API: config → data → preprocessing → model → fit → run folder.

``gradbox train`` is a thin layer over this module; Python users get the same runs::

    from gradbox.train import run
    r = run.train({"dataset": "digits", "epochs": 5}, out="runs/a")
    r.test["accuracy"], r.out
    r = run.resume("runs/a", epochs=10)       # continues exactly from runs/a/checkpoint.gbx

A run folder holds ``config.json`` (written first), ``checkpoint.gbx`` (while interrupted or with
``checkpoint_every``), then ``model.gbx``, ``history.csv``, ``curves.png``, for a CNN ``filters.png``,
and ``metrics.json`` (written last: it marks a finished run). The model file carries the standardiser's mean and
scale, the class labels and the input shape, so ``gradbox.load_model(path).predict(X_raw)``
reproduces ``gradbox predict``. Only the main process (:func:`gradbox._world.is_main`) writes.

Errors are ``RunError`` (a ``ValueError``) with ``code`` 1 (bad data or files) or 2 (a bad
configuration, ``ConfigError``); an interrupted run raises ``RunInterrupted`` (code 130) after
writing its checkpoint.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import time
from dataclasses import dataclass, field

import numpy as np

from .. import _world
# NOTE: the configuration lives in config.py; its names are re-exported here, the run's one entry point.
from .config import (DATASET_OPTIONS, DEFAULTS, RESUME_FIXED, ConfigError, RunError,  # noqa: F401
                     RunInterrupted, _is_num, parse_checkpoint_every, read_config, resolve_config)

__all__ = ["DEFAULTS", "ConfigError", "Run", "RunError", "RunInterrupted", "build", "load_dataset",
           "prepare_data", "read_config", "resolve_config", "resume", "split", "train"]


# --------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------
def load_dataset(name, target=None, options=None, min_classes=2, images=False):
    """A classification ``Dataset`` by name or path, with clear errors.

    With ``images`` image data comes as NCHW images (``flatten=False``: the course's HDF5 files
    store height, width, channels, so their flat rows are not C·H·W rows); a CNN's input.
    """
    from .. import datasets

    options = {k: v for k, v in (options or {}).items() if v is not None}
    if images:
        options["flatten"] = False
    if target is not None:
        options["target"] = target
    looks_like_file = os.sep in name or "/" in name or "." in os.path.basename(name)
    key = name.strip().lower().replace("-", "_")
    if key not in datasets.list_datasets() and not os.path.exists(name) and not looks_like_file:
        raise ConfigError(f"--dataset: expected one of {', '.join(datasets.list_datasets())} or a file path, "
                          f"received {name!r}")
    try:
        ds = datasets.load(name, **options)
    except TypeError as exc:
        # NOTE: datasets.load raises TypeError for an option the loader does not take.
        raise ConfigError(f"--dataset {name}: {exc}") from None
    if ds.n_classes is None:
        raise RunError(f"--dataset {name}: expected class labels, received a continuous target "
                       "(gradbox train fits classifiers)")
    if ds.n_classes < min_classes:
        raise RunError(f"--dataset {name}: expected at least {min_classes} classes to train on, "
                       f"received {ds.n_classes}")
    return ds


def dataset_options(c):
    return {k: c[k] for k in DATASET_OPTIONS if c.get(k) is not None}


def split(ds, val_split, test_split, seed):
    """(X_train, y_train, X_val, y_val, X_test, y_test); a dataset's own test set wins."""
    from ..data import train_val_test_split

    if ds.test is not None:
        s = train_val_test_split(ds.X, ds.y, val_split, 0.0, seed=seed)
        return s.X_train, s.y_train, s.X_val, s.y_val, ds.test[0], ds.test[1]
    s = train_val_test_split(ds.X, ds.y, val_split, test_split, seed=seed)
    return s.X_train, s.y_train, s.X_val, s.y_val, s.X_test, s.y_test


def image_shape(ds):
    """The per-sample image shape (C, H, W) of a dataset, or None for flat data."""
    shape = getattr(ds, "image_shape", None)
    if shape is None and ds.X.ndim > 2:
        shape = ds.X.shape[1:]
    return None if shape is None else tuple(int(v) for v in shape)


def prepare_data(c):
    """(dataset, (X_train, y_train, X_val, y_val, X_test, y_test), scaler, input_shape) of a configuration.

    The features are standardised with the training part's mean and scale: per feature of the
    flattened sample, or with ``conv`` per channel (the same values for every pixel of a channel,
    as image networks do; see :func:`image_standardizer`), and the samples then get their image shape.
    """
    from ..data import Standardizer

    ds = load_dataset(c["dataset"], c["target"], dataset_options(c), images=bool(c.get("conv")))
    shape = None
    if c.get("conv"):
        shape = image_shape(ds)
        if shape is None or len(shape) != 3:
            raise RunError(f"--conv: expected image data of shape (N, C, H, W), received {ds.name} with flat samples "
                           f"of {ds.n_features} features (use --hidden alone for flat data)")
    Xtr, ytr, Xva, yva, Xte, yte = split(ds, c["val_split"], c["test_split"], c["seed"])
    flat = lambda A: A.reshape(len(A), -1)
    scaler = image_standardizer(flat(Xtr), shape) if shape is not None else Standardizer().fit(flat(Xtr))
    f = lambda A: _shaped(scaler.transform(flat(A)).astype(np.float32, copy=False), shape)
    parts = (f(Xtr), ytr, f(Xva) if len(Xva) else None, yva, f(Xte) if len(Xte) else None, yte)
    return ds, parts, scaler, shape


def image_standardizer(X_flat, shape):
    """A ``Standardizer`` of flattened images ``X_flat`` (N, C*H*W) with one mean and scale per channel.

    NOTE: per-pixel standardisation (the MLP's) blows up the rare ink of an almost always blank
    border pixel to tens of standard deviations, and a convolution shares its weights across
    pixels; per channel keeps the picture. On digits with ``--conv 16,32`` (30 epochs, dropout 0.3)
    it raised the mean test accuracy of seeds 0-4 from 0.976 (per pixel) to 0.983 (issue 13). The
    arrays keep the per-feature shape, so model files, ``evaluate`` and ``predict`` are unchanged.
    """
    from ..data import Standardizer

    c = int(shape[0])
    per_channel = np.asarray(X_flat, dtype=np.float64).reshape(len(X_flat), c, -1)
    mean = per_channel.mean(axis=(0, 2))
    scale = per_channel.std(axis=(0, 2))
    scale[~(scale > 1e-12 * np.maximum(1.0, np.abs(mean)))] = 1.0  # NOTE: a blank channel maps to 0, not NaN
    n = per_channel.shape[2]
    return Standardizer.from_params(np.repeat(mean, n), np.repeat(scale, n))


def _shaped(X, shape):
    return X if shape is None else X.reshape((len(X), *shape))


def dataset_record(c, ds):
    name = c["dataset"]
    if os.path.exists(name):
        name = os.path.abspath(name)
    return {"name": ds.name, "source": name, "target": c["target"], "options": dataset_options(c),
            "val_split": c["val_split"], "test_split": c["test_split"], "seed": c["seed"]}


# --------------------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------------------
def build(c, n_features, n_classes, input_shape=None):
    """(model, optimizer) of a configuration, seeded by ``c["seed"]``."""
    from .. import manual_seed
    from .presets import build_mlp, make_optimizer

    manual_seed(c["seed"])
    try:
        model = build_mlp(n_features, c["hidden"], n_classes, activation=c["activation"], dropout=c["dropout"],
                          init=c["init"], conv=c.get("conv") or (), batch_norm=c.get("batch_norm", False),
                          input_shape=input_shape)
    except ValueError as exc:
        raise RunError(str(exc)) from None
    opt = make_optimizer(c["optimizer"], model.parameters(), lr=c["lr"], momentum=c["momentum"],
                         weight_decay=c["weight_decay"], fused=c["fused"])
    return model, opt


def architecture(model) -> str:
    """A short description: ``64-256-128-10`` for an MLP, layer names joined for other networks."""
    from .. import nn

    sizes, others = [], []
    for m in model:
        if isinstance(m, nn.Linear):
            if not sizes:
                sizes.append(m.in_features)
            sizes.append(m.out_features)
        elif not sizes and not isinstance(m, (nn.ReLU, nn.Tanh, nn.Sigmoid, nn.LeakyReLU, nn.Dropout)):
            others.append(type(m).__name__)
    mlp = "-".join(map(str, sizes))
    return " ".join([*others, mlp]) if others else mlp


def _hyperparameters(c, optimizer) -> dict:
    """The configuration's model/optimisation settings, with the values the optimizer really uses."""
    from .presets import optimizer_hyperparameters

    hyper = {k: c[k] for k in ("hidden", "activation", "optimizer", "lr", "momentum", "epochs", "batch_size",
                               "weight_decay", "dropout", "init", "patience", "checkpoint_every")}
    if c.get("conv"):
        hyper.update(conv=list(c["conv"]), batch_norm=c["batch_norm"])
    used = optimizer_hyperparameters(optimizer)
    hyper["lr"], hyper["weight_decay"] = used.get("lr"), used.get("weight_decay")
    hyper["momentum"] = used.get("momentum") if c["optimizer"] in ("momentum", "nesterov") else None
    hyper["optimizer_settings"] = used
    return hyper


def _version():
    from .. import __version__

    return __version__


def model_metadata(c, ds, optimizer, input_shape=None) -> dict:
    """What a model file records: data, classes, preprocessing, input shape and hyperparameters."""
    classes = list(ds.classes) if ds.classes is not None else list(range(ds.n_classes))
    classes = [k if isinstance(k, (str, int)) else str(k) for k in classes]
    return {
        "kind": "gradbox-classifier", "gradbox_version": _version(),
        "dataset": dataset_record(c, ds), "classes": classes, "n_features": ds.n_features,
        "feature_names": list(ds.feature_names) if ds.feature_names is not None else None,
        "normalization": "standardize: (x - norm.mean) / norm.scale",
        "input_shape": None if input_shape is None else list(input_shape),
        "hyperparameters": _hyperparameters(c, optimizer), "seed": c["seed"],
    }


# --------------------------------------------------------------------------------------
# Run folders
# --------------------------------------------------------------------------------------
def _json_default(o):
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, np.generic):
        return o.item()
    raise TypeError(f"not JSON-serialisable: {type(o).__name__}")


def write_json(path, obj):
    """Write ``obj`` as indented JSON atomically (main process only)."""
    from ..io import atomic_open

    if not _world.is_main():
        return
    with atomic_open(path, "w") as f:
        json.dump(obj, f, indent=2, allow_nan=True, default=_json_default)
        f.write("\n")


def new_run_dir(dataset_name, root="runs"):
    """Create and return a fresh ``runs/<dataset>-<timestamp>[-i]`` folder."""
    base = re.sub(r"[^A-Za-z0-9_.-]+", "_", os.path.splitext(os.path.basename(dataset_name))[0]) or "run"
    stamp = time.strftime("%Y%m%d-%H%M%S")
    os.makedirs(root, exist_ok=True)
    for i in range(1, 10000):
        path = os.path.join(root, f"{base}-{stamp}" + (f"-{i}" if i > 1 else ""))
        try:
            os.mkdir(path)  # NOTE: mkdir is atomic, so two runs started in the same second differ
            return path
        except FileExistsError:
            continue
    raise RunError(f"could not create a unique run folder under {root}/")


def _claim_out(out, ds_name):
    """(folder, created) for a fresh run: a new default folder, or ``out`` if it holds no run."""
    if out is None:
        return new_run_dir(ds_name), True
    if os.path.exists(out) and not os.path.isdir(out):
        raise RunError(f"--out {out}: expected a folder (new or empty), received a file")
    if os.path.exists(os.path.join(out, "model.gbx")) or os.path.exists(os.path.join(out, "checkpoint.gbx")):
        raise RunError(f"--out {out}: already holds a run; choose another folder or continue it with "
                       f"--resume {out}")
    created = not os.path.isdir(out)
    os.makedirs(out, exist_ok=True)
    return out, created


def read_run_config(run):
    """The configuration saved in a run folder's ``config.json``, checked."""
    cfg_path = os.path.join(run, "config.json")
    ckpt = os.path.join(run, "checkpoint.gbx")
    if not os.path.isdir(run):
        raise RunError(f"--resume: no such run folder {run!r}")
    if not os.path.isfile(cfg_path) or not os.path.isfile(ckpt):
        missing = "config.json" if not os.path.isfile(cfg_path) else "checkpoint.gbx"
        raise RunError(f"--resume {run}: expected a run folder with config.json and checkpoint.gbx, "
                       f"{missing} is missing (checkpoints come from --checkpoint-every or an interrupted run)")
    try:
        with open(cfg_path, encoding="utf-8") as f:
            saved = json.load(f)
    except ValueError as exc:  # NOTE: JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise RunError(f"--resume {run}: expected config.json to be JSON, received unreadable data ({exc})") from None
    top, saved = saved, saved.get("config") if isinstance(saved, dict) else None
    if not isinstance(saved, dict) or not set(saved) <= set(DEFAULTS):
        got = (f"a JSON {type(top).__name__}" if not isinstance(top, dict) else
               f"'config': {type(saved).__name__}" if not isinstance(saved, dict) else
               f"unknown keys {sorted(set(saved) - set(DEFAULTS))[:5]}")
        raise RunError(f"--resume {run}: expected config.json to hold a gradbox run configuration "
                       f"{{\"config\": {{...}}}}, received {got}")
    return saved


@contextlib.contextmanager
def blas_threads(n):
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


class _CtrlC:
    """Ctrl-C while training: the first stops after the current step (a checkpoint follows); pressed
    while the finished run is being written, the writing completes first. The second aborts.

    NOTE: a KeyboardInterrupt raised at an arbitrary point of writing the run (inside an import of
    matplotlib, say) could end the process with -SIGINT or even crash the interpreter at exit.
    """

    def __init__(self, trainer, enabled=True):
        self.trainer, self.pressed, self._old, self.enabled = trainer, False, None, enabled

    def __enter__(self):
        import signal
        import threading

        if self.enabled and threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGINT, self._handler)
            # NOTE: SIGTERM (a batch system's stop; mpiexec forwards it to every rank) stops the same way
            self._old_term = signal.signal(signal.SIGTERM, self._handler)
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
            signal.signal(signal.SIGTERM, self._old_term)
        return False


# --------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------
@dataclass
class Run:
    """A finished run: where it is and what it gave.

    Attributes
    ----------
    out : str
        The run folder.
    config : dict
        The resolved configuration.
    model, trainer, history
        The trained network, its ``Trainer`` and ``History``.
    test : dict or None
        ``evaluate``'s result on the test part (None without test data).
    metrics : dict
        What ``metrics.json`` holds.
    """

    out: str
    config: dict
    model: object
    trainer: object
    history: object
    test: dict | None = None
    metrics: dict = field(default_factory=dict)


def _say(log, text):
    if log is not None and _world.is_main():
        log(text)


def _callbacks(c, out, extra, progress):
    from .callbacks import EarlyStopping, ModelCheckpoint, ProgressBar

    cbs = []
    if c["patience"]:
        cbs.append(EarlyStopping("val_loss", patience=c["patience"], restore_best=True))
    every = parse_checkpoint_every(c["checkpoint_every"])
    if every:
        cbs.append(ModelCheckpoint(out, every=every[0], unit=every[1]))
    cbs.extend(extra)
    if progress:
        cbs.append(ProgressBar())
    return cbs


def train(config, out=None, *, callbacks=(), progress=True, log=print, handle_sigint=True) -> Run:
    """Train a fresh run of ``config`` (a dict of ``DEFAULTS`` keys) into the folder ``out``.

    ``out`` (or ``config["out"]``; default ``runs/<dataset>-<timestamp>``) must be new or hold no
    run. ``callbacks`` are added to the trainer's; ``progress`` shows a progress bar; ``log``
    receives the one-line summaries (None: silent). With ``handle_sigint`` a Ctrl-C stops after
    the current step, writes a checkpoint and raises ``RunInterrupted``.
    """
    c = resolve_config({**dict(config), **({"out": out} if out is not None else {})})
    return _execute(c, None, callbacks, progress, log, handle_sigint)


def resume(path, epochs=None, *, callbacks=(), progress=True, log=print, handle_sigint=True) -> Run:
    """Continue the run in folder ``path`` exactly from its ``checkpoint.gbx`` (optionally to ``epochs``)."""
    saved = read_run_config(path)
    c = resolve_config({**saved, **({"epochs": epochs} if epochs else {})})
    return _execute(c, path, callbacks, progress, log, handle_sigint)


def _execute(c, resume_dir, callbacks, progress, log, handle_sigint) -> Run:
    from .trainer import Trainer

    t_start = time.perf_counter()
    ds, (Xtr, ytr, Xva, yva, Xte, yte), scaler, shape = prepare_data(c)
    model, opt = build(c, ds.n_features, ds.n_classes, shape)
    batch = None if c["batch_size"] == "full" else c["batch_size"]
    if resume_dir:
        out, created = resume_dir, False
    elif _world.is_main():
        out, created = _claim_out(c["out"], ds.name)
    else:  # NOTE: only the main process creates the run folder (and writes into it)
        out, created = c["out"] or "", False
    trainer = Trainer(model, "cross_entropy", opt, batch_size=batch, shuffle=True, seed=c["seed"],
                      callbacks=_callbacks(c, out, list(callbacks), progress), verbose=0)
    # NOTE: a checkpoint is a model file too, so it carries what evaluate/predict need.
    trainer.extra_metadata = model_metadata(c, ds, opt, shape)
    trainer.extra_arrays = {"norm.mean": scaler.mean_, "norm.scale": scaler.scale_}
    cfg_file = os.path.join(out, "config.json")
    try:
        # NOTE: the handler goes in before config.json is written, so from then on a Ctrl-C always
        # stops at a step boundary with a checkpoint (a stop requested before fit() starts counts).
        with _CtrlC(trainer, handle_sigint) as ctrl_c:
            if resume_dir:
                meta = trainer.load_checkpoint(os.path.join(out, "checkpoint.gbx"))
                _say(log, f"resuming {out} at epoch {meta['epoch']}, step {meta['step']} "
                          f"(optimizer step {meta['global_step']})")
            else:
                write_json(cfg_file, {"config": c, "gradbox_version": _version()})
            n_val = 0 if Xva is None else len(Xva)
            kind = "CNN" if c.get("conv") else "MLP"
            _say(log, f"training {kind} {architecture(model)} ({c['activation']}, {c['optimizer']} lr={opt.lr:g}, "
                      f"batch {c['batch_size']}) on {ds.name}: {len(Xtr)} train / {n_val} val / "
                      f"{0 if Xte is None else len(Xte)} test samples -> {out}")
            with blas_threads(c["threads"]):
                history = trainer.fit(Xtr, ytr, epochs=c["epochs"],
                                      validation_data=(Xva, yva) if Xva is not None else None)
            if trainer.interrupted:
                trainer.save_checkpoint(os.path.join(out, "checkpoint.gbx"))
                raise RunInterrupted(f"interrupted at epoch {trainer.epoch + 1}, step {trainer.step} "
                                     f"(optimizer step {trainer.global_step}); checkpoint saved, continue with: "
                                     f"gradbox train --resume {out}")
            run = _finish(c, ds, scaler, shape, trainer, out, (Xte, yte), t_start, log)
    except BaseException:
        # NOTE: a failed fresh run leaves no half-made folder behind (nothing but our config was written).
        if not resume_dir and not os.path.exists(os.path.join(out, "checkpoint.gbx")) and _world.is_main():
            with contextlib.suppress(OSError):
                os.remove(cfg_file)
            if created:
                with contextlib.suppress(OSError):
                    os.rmdir(out)
        raise
    if ctrl_c.pressed:  # NOTE: only after training ended: the run was written completely first
        raise RunInterrupted(f"interrupted after training; the run in {out} is complete")
    return run


def _finish(c, ds, scaler, shape, trainer, out, test, t_start, log) -> Run:
    """Evaluate on the test part and write model.gbx, history.csv, curves.png and metrics.json."""
    from ..io import save_model
    from .inference import evaluate

    model, history = trainer.model, trainer.history
    Xte, yte = test
    res = evaluate(model, Xte, yte, n_classes=ds.n_classes) if Xte is not None else None
    stopped = next((cb.stopped_epoch for cb in trainer.callbacks if getattr(cb, "stopped_epoch", None)), None)
    meta = model_metadata(c, ds, trainer.optimizer, shape)
    meta.update(epochs_trained=trainer.epoch, test_accuracy=None if res is None else res["accuracy"])
    curves = filters = None
    if _world.is_main():
        # model first: metrics.json, written last, marks a finished run
        save_model(os.path.join(out, "model.gbx"), model,
                   arrays={"norm.mean": scaler.mean_, "norm.scale": scaler.scale_}, metadata=meta)
        history.to_csv(os.path.join(out, "history.csv"))
        try:
            from ..plots import plot_history

            kind = "CNN" if c.get("conv") else "MLP"
            plot_history(history, os.path.join(out, "curves.png"),
                         title=f"{ds.name}: {kind} {architecture(model)}, {c['optimizer']}")
            curves = "curves.png"
        except ImportError:
            curves = None  # matplotlib missing: the numbers are in history.csv
        filters = _plot_filters(c, ds, model, Xte, yte, out)
    h = history.as_dict()
    metrics = {
        "test_accuracy": None if res is None else res["accuracy"],
        "test_loss": None if res is None else res["loss"],
        "n_test": None if res is None else res["n"],
        "confusion_matrix": None if res is None else res["confusion_matrix"].tolist(),
        "final": {k: v[-1] for k, v in h.items() if v and k != "epoch"},
        "history": h,
        "epochs_trained": trainer.epoch, "stopped_early_at": stopped, "optimizer_steps": trainer.global_step,
        "hyperparameters": meta["hyperparameters"], "seed": c["seed"], "dataset": meta["dataset"],
        "classes": meta["classes"], "n_train": trainer.n_train,
        "world_size": _world.size(),
        "training_seconds": trainer.elapsed, "elapsed_seconds": time.perf_counter() - t_start,
        "files": [f for f in ("model.gbx", "history.csv", curves, filters, "metrics.json") if f],
        "gradbox_version": _version(),
    }
    write_json(os.path.join(out, "metrics.json"), metrics)
    if res is not None:
        correct = int(round(res["accuracy"] * res["n"]))
        _say(log, f"test accuracy {res['accuracy']:.4f} ({correct}/{res['n']})  test loss {res['loss']:.4f}  "
                  f"[{trainer.elapsed:.1f}s training]")
    _say(log, f"wrote {out}/: model.gbx, metrics.json, history.csv" + "".join(f", {f}" for f in (curves, filters) if f))
    return Run(out=out, config=c, model=model, trainer=trainer, history=history, test=res, metrics=metrics)


def _plot_filters(c, ds, model, Xte, yte, out):
    """Write ``filters.png`` of a CNN run (issue 13): the first layer's filters and the feature maps of
    the first test sample; returns its name, or None (no conv, or matplotlib missing)."""
    if not c.get("conv"):
        return None
    try:
        from ..plots_conv import plot_filters
    except ImportError:
        return None
    sample, about = (None, "") if Xte is None or not len(Xte) else (Xte[:1], " -- test sample 0")
    if sample is not None:
        label = ds.classes[int(yte[0])] if ds.classes is not None else int(yte[0])
        about += f" (class {label.decode(errors='replace') if isinstance(label, bytes) else label})"
    try:
        plot_filters(model, sample, os.path.join(out, "filters.png"), title=f"{ds.name}: {architecture(model)}{about}")
    except ImportError:
        return None
    return "filters.png"
