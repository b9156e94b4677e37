"""A whole training run as a library API: config → data → preprocessing → model → fit → run folder.

``gradbox train`` is a thin layer over this module; Python users get the same runs::

    from gradbox.train import run
    r = run.train({"dataset": "digits", "epochs": 5}, out="runs/a")
    r.test["accuracy"], r.out
    r = run.resume("runs/a", epochs=10)       # continues exactly from runs/a/checkpoint.gbx

A run folder holds ``config.json`` (written first), ``checkpoint.gbx`` (while interrupted or with
``checkpoint_every``), then ``model.gbx``, ``history.csv``, ``curves.png``, for a CNN ``filters.png``, and
``metrics.json``
(written last: it marks a finished run). The final files are written all or nothing (into a
staging folder, then renamed into place); if that fails, the trained state is kept as
``checkpoint.gbx`` and the error says how to finish the run. One process at a time owns a run
folder (``RunLock``: ``.gradbox.lock`` holding its pid; a dead process's lock is taken over). A
resumed checkpoint is checked field by field against the folder's ``config.json``
(``check_checkpoint``). Sizes a file declares (the class count) are checked against
``MAX_CLASSES`` before training. The model file carries the standardiser's mean and
scale, the class labels and the input shape, so ``gradbox.load_model(path).predict(X_raw)``
reproduces ``gradbox predict``. Only the main process (:func:`gradbox._world.is_main`) writes.

Errors are ``RunError`` (a ``ValueError``) with ``code`` 1 (bad data or files) or 2 (a bad
configuration, ``ConfigError``); an interrupted run (Ctrl-C, or SIGTERM, handled the same way)
raises ``RunInterrupted`` (code 130) after writing its checkpoint.
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
from .config import (DATASET_OPTIONS, DEFAULTS, MAX_CLASSES, MAX_SYNTHETIC_SAMPLES,  # noqa: F401
                     RESUME_FIXED, ConfigError, RunError, RunInterrupted, _is_int, _is_num, parse_checkpoint_every,
                     read_config, resolve_config)

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
        raise ConfigError(f"--dataset {name}: {_flag_names(exc)}") from None
    except (ValueError, OSError) as exc:
        # NOTE: the loader names its own arguments (name_or_path, target); the user typed flags.
        raise RunError(_flag_names(exc)) from None
    if ds.n_classes is None:
        raise RunError(f"--dataset {name}: expected class labels, received a continuous target "
                       "(gradbox train fits classifiers)")
    if ds.n_classes < min_classes:
        raise RunError(f"--dataset {name}: expected at least {min_classes} classes to train on, "
                       f"received {ds.n_classes}")
    check_class_count(ds, f"--dataset {name}", target)
    return ds


def _flag_names(exc) -> str:
    """A loader's message with its argument names replaced by the flags the user typed."""
    text = f"{exc.strerror}: {exc.filename}" if isinstance(exc, OSError) and exc.strerror and exc.filename \
        else str(exc)
    for internal, flag in (("name_or_path", "--dataset"), ("target", "--target"), ("n_samples", "--n-samples"),
                           ("noise", "--noise")):
        text = re.sub(rf"(^|[\s(]){internal}(?=[:=)])", rf"\g<1>{flag}", text)
    return text


def check_class_count(ds, where, target=None):
    """Refuse a class count beyond ``MAX_CLASSES``, beyond the sample count, or mostly absent from the labels.

    NOTE: integer labels are numbered 0..max, so one stray label (100000 among 0/1) declares a
    huge class count; caught here, before a network or a confusion matrix of that size exists.
    """
    n_classes, y = int(ds.n_classes), np.asarray(ds.y)
    n = len(y) + (0 if ds.test is None else len(ds.test[1]))
    present = int(np.unique(y).size) if y.size else 0
    why = None
    if n_classes > MAX_CLASSES:
        why = f"more than the limit of {MAX_CLASSES:,}"
    elif n_classes > n:
        why = f"more than its {n:,} samples"
    elif n_classes > 10 and present < n_classes / 2:
        why = f"but only {present:,} distinct labels occur"
    if why is None:
        return
    top = f" (labels up to {int(y.max()):,})" if y.size and y.dtype.kind in "iu" else ""
    col = f"--target {target!r}" if target else "the label column"
    raise RunError(f"{where}: {n_classes:,} classes{top}, {why}; is {col} really the class label? "
                   f"(integer labels count 0..max as classes; use --target to choose another column)")


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


LOCK_NAME = ".gradbox.lock"


def _pid_alive(pid) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # NOTE: PermissionError: the process exists but belongs to another user
        return True
    return True


class RunLock:
    """An exclusive claim on a run folder: ``<folder>/.gradbox.lock``, created with O_EXCL, holds the pid.

    A lock left by a process that no longer exists (killed, crashed) is stale and taken over; one
    held by a live process refuses with a one-line ``RunError`` naming its pid.

    NOTE: the pid is checked on this machine only (a folder shared over NFS by two hosts is not
    protected), and a dead run's pid reused by another process makes its lock look live: the
    message then names the file to delete.
    """

    def __init__(self, folder, flag="--out"):
        self.folder, self.flag, self.path, self.held = folder, flag, os.path.join(folder, LOCK_NAME), False

    def _holder(self):
        try:
            with open(self.path, encoding="ascii") as f:
                text = f.read(32).strip()
        except (OSError, UnicodeDecodeError):
            return None
        return int(text) if text.isdigit() else None

    def acquire(self):
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                pid = self._holder()
                if pid is None:
                    # NOTE: created but not yet written by its owner (a moment), or damaged: an old
                    # empty lock is stale, a fresh one is in use.
                    with contextlib.suppress(OSError):
                        if time.time() - os.path.getmtime(self.path) > 10:
                            os.remove(self.path)
                            continue
                    raise RunError(f"{self.flag} {self.folder}: in use by another gradbox train (lock "
                                   f"{self.path}); wait for it to finish or choose another folder") from None
                if pid != os.getpid() and _pid_alive(pid):
                    raise RunError(f"{self.flag} {self.folder}: in use by another gradbox train (pid {pid}); wait "
                                   f"for it to finish or choose another folder (if no such process runs, "
                                   f"delete {self.path})") from None
                with contextlib.suppress(FileNotFoundError):
                    os.remove(self.path)  # stale: its process is gone
                continue
            with os.fdopen(fd, "w", encoding="ascii") as f:
                f.write(f"{os.getpid()}\n")
            self.held = True
            return self
        raise RunError(f"{self.flag} {self.folder}: could not claim the folder (lock {self.path} keeps changing)")

    def release(self):
        if self.held:
            self.held = False
            if self._holder() == os.getpid():
                with contextlib.suppress(OSError):
                    os.remove(self.path)


def _claim_out(out, ds_name):
    """(folder, created, lock) for a fresh run: a new default folder, or ``out`` if it holds no run.

    The folder is claimed (``RunLock``) before it is checked, so two runs started at once into the
    same ``--out`` cannot both pass the check: the second is refused.
    """
    if out is None:
        out, created = new_run_dir(ds_name), True
    else:
        if os.path.exists(out) and not os.path.isdir(out):
            raise RunError(f"--out {out}: expected a folder (new or empty), received a file")
        created = False
        try:
            os.makedirs(out)
            created = True
        except FileExistsError:
            if not os.path.isdir(out):
                raise RunError(f"--out {out}: expected a folder (new or empty), received a file") from None
    lock = RunLock(out, "--out")
    try:
        lock.acquire()
        if os.path.exists(os.path.join(out, "model.gbx")) or os.path.exists(os.path.join(out, "checkpoint.gbx")):
            raise RunError(f"--out {out}: already holds a run; choose another folder or continue it with "
                           f"--resume {out}")
    except BaseException:
        lock.release()
        if created:
            with contextlib.suppress(OSError):
                os.rmdir(out)
        raise
    return out, created, lock


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


class _StopSignals:
    """Ctrl-C (SIGINT) or SIGTERM while training: the first stops after the current step (a checkpoint
    follows); one arriving while the finished run is being written lets the writing complete first.
    A second signal aborts.

    NOTE: SIGTERM is what ``kill``, ``docker stop``, systemd and SLURM send (mpiexec forwards it to every
    rank); it is handled as Ctrl-C so that the work is kept. ``signum`` records the first signal.
    NOTE: a KeyboardInterrupt raised at an arbitrary point of writing the run (inside an import of
    matplotlib, say) could end the process with -SIGINT or even crash the interpreter at exit.
    """

    def __init__(self, trainer, enabled=True):
        self.trainer, self.pressed, self.signum, self._old, self.enabled = trainer, False, None, {}, enabled

    def __enter__(self):
        import signal
        import threading

        if self.enabled and threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handler)
        return self

    def _handler(self, signum, frame):
        if self.pressed:
            raise KeyboardInterrupt
        self.pressed, self.signum = True, signum
        self.trainer.request_stop(interrupted=True)

    @property
    def by(self):
        """`` by SIGTERM`` when that was the signal ('' for Ctrl-C)."""
        import signal

        return " by SIGTERM" if self.signum == signal.SIGTERM else ""

    # NOTE: one exit status for both signals, 130: a stop that saved its checkpoint (the distributed
    # launcher and scripts test for it); the message names SIGTERM.
    code = 130

    def __exit__(self, *exc):
        import signal

        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old = {}
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


def _callbacks(c, out, extra, progress, warn):
    from .callbacks import DivergenceMonitor, EarlyStopping, ModelCheckpoint, ProgressBar, RestoreBestWeights

    cbs = []
    if c["patience"]:
        cbs.append(EarlyStopping("val_loss", patience=c["patience"], restore_best=True))
    if c["restore_best_weights"]:
        cbs.append(RestoreBestWeights("val_loss"))
    if warn is not None:
        cbs.append(DivergenceMonitor(1e3, warn=warn))
    every = parse_checkpoint_every(c["checkpoint_every"])
    if every:
        cbs.append(ModelCheckpoint(out, every=every[0], unit=every[1]))
    cbs.extend(extra)
    if progress:
        cbs.append(ProgressBar())
    return cbs


def stderr_warning(text):
    """The default ``warn`` of a run: one line on stderr, ``gradbox: warning: ...`` (main process only)."""
    import sys

    if _world.is_main():
        print(f"gradbox: warning: {text}", file=sys.stderr, flush=True)


def train(config, out=None, *, callbacks=(), progress=True, log=print, handle_sigint=True,
          warn=stderr_warning, lang="en") -> Run:
    """Train a fresh run of ``config`` (a dict of ``DEFAULTS`` keys) into the folder ``out``.

    ``out`` (or ``config["out"]``; default ``runs/<dataset>-<timestamp>``) must be new or hold no
    run. ``callbacks`` are added to the trainer's; ``progress`` shows a progress bar; ``log``
    receives the one-line summaries (None: silent); ``warn`` the warnings (a training loss 1000 x
    its first epoch's: diverging; None: none). With ``handle_sigint`` a Ctrl-C or SIGTERM stops
    after the current step, writes a checkpoint and raises ``RunInterrupted`` (code 130).
    ``lang`` ("en" or "ko") is the language of the labels of ``curves.png`` and ``filters.png``.
    """
    _check_lang(lang, "train")
    c = resolve_config({**dict(config), **({"out": out} if out is not None else {})})
    return _execute(c, None, callbacks, progress, log, handle_sigint, warn, lang)


def resume(path, epochs=None, *, callbacks=(), progress=True, log=print, handle_sigint=True,
           warn=stderr_warning, lang="en") -> Run:
    """Continue the run in folder ``path`` exactly from its ``checkpoint.gbx`` (optionally to ``epochs``)."""
    _check_lang(lang, "resume")
    saved = read_run_config(path)
    c = resolve_config({**saved, **({"epochs": epochs} if epochs else {})})
    return _execute(c, path, callbacks, progress, log, handle_sigint, warn, lang)


def _check_lang(lang, who):
    from ..page.i18n import check_lang  # NOTE: the labels load with the pictures, not with the run module

    return check_lang(lang, who)


def _execute(c, resume_dir, callbacks, progress, log, handle_sigint, warn=stderr_warning, lang="en") -> Run:
    from .trainer import Trainer

    t_start = time.perf_counter()
    ds, (Xtr, ytr, Xva, yva, Xte, yte), scaler, shape = prepare_data(c)
    model, opt = build(c, ds.n_features, ds.n_classes, shape)
    batch = None if c["batch_size"] == "full" else c["batch_size"]
    lock = None
    if resume_dir:
        out, created = resume_dir, False
        if _world.is_main():
            lock = RunLock(out, "--resume").acquire()
    elif _world.is_main():
        out, created, lock = _claim_out(c["out"], ds.name)
    else:  # NOTE: only the main process creates the run folder (and writes into it)
        out, created = c["out"] or "", False
    cfg_file = os.path.join(out, "config.json")
    ckpt_file = os.path.join(out, "checkpoint.gbx")
    try:
        trainer = Trainer(model, "cross_entropy", opt, batch_size=batch, shuffle=True, seed=c["seed"],
                          callbacks=_callbacks(c, out, list(callbacks), progress, warn), verbose=0)
        # NOTE: a checkpoint is a model file too, so it carries what evaluate/predict need.
        trainer.extra_metadata = model_metadata(c, ds, opt, shape)
        trainer.extra_arrays = {"norm.mean": scaler.mean_, "norm.scale": scaler.scale_}
        # NOTE: the handler goes in before config.json is written, so from then on a Ctrl-C (or SIGTERM)
        # always stops at a step boundary with a checkpoint (a stop requested before fit() starts counts).
        with _StopSignals(trainer, handle_sigint) as stop:
            if resume_dir:
                state = _load_run_checkpoint(ckpt_file, out)
                check_checkpoint(state, c, trainer.extra_metadata, opt, len(Xtr), batch, out)
                try:
                    meta = trainer.load_checkpoint(state)
                except ValueError as exc:
                    raise RunError(f"--resume {out}: checkpoint.gbx does not fit this run: {exc}") from None
                if meta["epoch"] >= c["epochs"]:
                    _say(log, f"{out}: all {meta['epoch']} epochs are trained (optimizer step {meta['global_step']}); "
                              "writing the run's files (--epochs N continues training)")
                else:
                    _say(log, f"resuming {out} at epoch {meta['epoch'] + 1}, step {meta['step']} "
                              f"(optimizer step {meta['global_step']})")
            else:
                write_json(cfg_file, {"config": c, "gradbox_version": _version()})
            n_val = 0 if Xva is None else len(Xva)
            kind = "CNN" if c.get("conv") else "MLP"
            _say(log, f"training {kind} {architecture(model)} ({c['activation']}, {c['optimizer']} lr={opt.lr:g}, "
                      f"batch {c['batch_size']}) on {ds.name}: {len(Xtr)} train / {n_val} val / "
                      f"{0 if Xte is None else len(Xte)} test samples -> {out}")
            with blas_threads(c["threads"]):
                trainer.fit(Xtr, ytr, epochs=c["epochs"], validation_data=(Xva, yva) if Xva is not None else None)
            if trainer.interrupted:
                trainer.save_checkpoint(ckpt_file)
                # NOTE: the epoch named is the one in progress (not yet complete), as --resume says.
                raise RunInterrupted(f"interrupted at epoch {trainer.epoch + 1}, step {trainer.step} "
                                     f"(optimizer step {trainer.global_step}){stop.by}; checkpoint saved, continue "
                                     f"with: gradbox train --resume {out}", code=stop.code)
            _say_stopping(log, c, trainer)
            try:
                run = _finish(c, ds, scaler, shape, trainer, out, (Xte, yte), t_start, log, lang)
            except Exception as exc:  # noqa: BLE001 - any failure of the final step keeps the training
                raise _final_step_failed(trainer, out, ckpt_file, exc) from exc
    except BaseException:
        # NOTE: a failed fresh run leaves no half-made folder behind (nothing but our config was written).
        if not resume_dir and not os.path.exists(ckpt_file) and _world.is_main():
            with contextlib.suppress(OSError):
                os.remove(cfg_file)
            if lock is not None:
                lock.release()
            if created:
                with contextlib.suppress(OSError):
                    os.rmdir(out)
        raise
    finally:
        if lock is not None:
            lock.release()
    if stop.pressed:  # NOTE: only after training ended: the run was written completely first
        raise RunInterrupted(f"interrupted{stop.by} after training; the run in {out} is complete", code=stop.code)
    return run


def _load_run_checkpoint(path, out):
    from .checkpoint import load_checkpoint_file

    try:
        return load_checkpoint_file(path)
    except (ValueError, OSError) as exc:
        raise RunError(f"--resume {out}: checkpoint.gbx is not a readable gradbox checkpoint ({exc})") from None


def _plain(value):
    """JSON-normalised (tuples as lists, numpy scalars as Python numbers) for comparisons."""
    return json.loads(json.dumps(value, default=_json_default))


def check_checkpoint(state, c, expected, optimizer, n_train, batch, out) -> None:
    """Refuse a checkpoint that is not this run's: field by field against the run's configuration.

    ``expected`` is what this configuration records (``model_metadata``); the checkpoint must
    record the same dataset, split, seed, classes, input and hyperparameters, the optimizer's
    hyperparameters must be the configuration's (not merely the checkpoint's), and its counters
    must fit the data: ``global_step == epoch x steps per epoch + step``. The first mismatch is
    named in a one-line ``RunError``.
    """
    arrays, meta = state
    who = f"--resume {out}: checkpoint.gbx"

    def refuse(field_name, theirs, mine):
        raise RunError(f"{who} is not this run's: its {field_name} is {json.dumps(theirs, default=str)[:80]}, "
                       f"config.json says {json.dumps(mine, default=str)[:80]}")

    for key in ("dataset", "classes", "n_features", "input_shape", "seed"):
        mine, theirs = _plain(expected.get(key)), _plain(meta.get(key, "(missing)"))
        if isinstance(mine, dict) and isinstance(theirs, dict):
            for sub in mine:
                if theirs.get(sub, "(missing)") != mine[sub]:
                    refuse(f"{key}.{sub}", theirs.get(sub, "(missing)"), mine[sub])
        elif theirs != mine:
            refuse(key, theirs, mine)
    mine_h, theirs_h = _plain(expected.get("hyperparameters", {})), _plain(meta.get("hyperparameters"))
    if not isinstance(theirs_h, dict):
        refuse("hyperparameters", theirs_h, mine_h)
    for key in mine_h:
        if key != "epochs" and theirs_h.get(key, "(missing)") != mine_h[key]:
            refuse(f"hyperparameter {key}", theirs_h.get(key, "(missing)"), mine_h[key])
    o = meta.get("optimizer")
    sd = optimizer.state_dict()
    if not isinstance(o, dict) or o.get("type") != sd["type"]:
        refuse("optimizer", o.get("type") if isinstance(o, dict) else o, sd["type"])
    # NOTE: Optimizer.load_state_dict takes lr and weight decay from the checkpoint; they must be the
    # configuration's, or metrics.json would record values that were not used.
    mine_o, theirs_o = _plain(sd["hyper"]), _plain(o.get("hyper"))
    if not isinstance(theirs_o, dict):
        refuse("optimizer settings", theirs_o, mine_o)
    for key in mine_o:
        if theirs_o.get(key, "(missing)") != mine_o[key]:
            refuse(f"optimizer {key}", theirs_o.get(key, "(missing)"), mine_o[key])
    want_bs = batch if batch is not None else None
    if meta.get("batch_size") != want_bs:
        refuse("batch size", meta.get("batch_size"), want_bs if want_bs is not None else "full")
    # counters: integers that fit this data and batch size
    bs = n_train if batch is None else min(batch, n_train)
    per_epoch = -(-n_train // bs)
    try:
        epoch, step, global_step = (int(meta[k]) for k in ("epoch", "step", "global_step"))
    except (KeyError, TypeError, ValueError):
        raise RunError(f"{who}: expected integer epoch, step and global_step, received "
                       f"{[meta.get(k) for k in ('epoch', 'step', 'global_step')]}") from None
    if not 0 <= step < per_epoch or epoch < 0 or global_step != epoch * per_epoch + step:
        raise RunError(f"{who}: expected counters that fit {n_train} training samples in batches of {bs} "
                       f"({per_epoch} steps per epoch: optimizer step = epoch x {per_epoch} + step), received "
                       f"epoch {epoch}, step {step}, optimizer step {global_step}")
    if epoch > c["epochs"]:
        raise RunError(f"{who}: holds {epoch} completed epochs; expected --epochs of at least {epoch}, "
                       f"received {c['epochs']}")
    perm = arrays.get("trainer.perm")
    if perm is not None and len(perm) != n_train:
        raise RunError(f"{who}: expected a shuffle order of the {n_train} training samples, received "
                       f"{len(perm)} entries")


def _one_line(exc) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        msg = f"{exc.strerror}" + (f": {exc.filename}" if exc.filename else "")
    else:
        msg = str(exc) or type(exc).__name__
    return " ".join(msg.split())


def _final_step_failed(trainer, out, ckpt_file, exc) -> RunError:
    """The error of a failed final step; the trained state is kept as a checkpoint when possible.

    NOTE: nothing of the final files is in place yet (they are written to a staging folder and
    renamed last), so the folder is either resumable (config.json + checkpoint.gbx) or, when even
    the checkpoint cannot be written, left as a failed fresh run is (empty, reusable).
    """
    why = _one_line(exc)
    if not _world.is_main():
        return RunError(f"training finished but writing the run failed: {why}")
    try:
        trainer.save_checkpoint(ckpt_file)
    except Exception as exc2:  # noqa: BLE001
        kept = ("; the earlier checkpoint.gbx is kept: gradbox train --resume " + out) \
            if os.path.exists(ckpt_file) else "; nothing was kept"
        return RunError(f"training finished (epoch {trainer.epoch}) but writing the run failed: {why}; saving "
                        f"a checkpoint failed too ({_one_line(exc2)}){kept}")
    return RunError(f"training finished (epoch {trainer.epoch}) but writing the run failed: {why}; the trained "
                    f"state is saved in {ckpt_file}: fix the cause (e.g. free disk space), then finish the run "
                    f"with: gradbox train --resume {out}")


def _kept_epoch(trainer):
    """(epoch whose weights the model holds, why) after fit."""
    from .callbacks import EarlyStopping, RestoreBestWeights

    for cb in trainer.callbacks:
        if isinstance(cb, RestoreBestWeights) and cb.restored:
            return cb.best_epoch, f"the best {cb.monitor}"
        if isinstance(cb, EarlyStopping) and cb.stopped_epoch is not None and cb.restore_best \
                and cb.best_epoch is not None:
            return cb.best_epoch, f"the best {cb.monitor}"
    return trainer.epoch, "the last"


def _say_stopping(log, c, trainer):
    """Say why training stopped early, and whose weights the model keeps."""
    from .callbacks import EarlyStopping

    for cb in trainer.callbacks:
        if isinstance(cb, EarlyStopping) and cb.stopped_epoch is not None:
            _say(log, f"early stopping at epoch {cb.stopped_epoch} of {c['epochs']}: {cb.monitor} has not improved "
                      f"for {cb.patience} epochs (--patience {cb.patience}; best {cb.best:.4g} at epoch "
                      f"{cb.best_epoch})")


def _weights_note(trainer, history):
    epoch, why = _kept_epoch(trainer)
    h = history.as_dict()
    vals = h.get("val_loss") or []
    note = f"model weights of epoch {epoch} ({why})"
    if why == "the last" and vals and all(v is not None for v in vals):
        best = int(np.argmin(vals))
        best_epoch = h["epoch"][best] if h.get("epoch") else best + 1
        last = vals[h["epoch"].index(epoch)] if epoch in h.get("epoch", []) else vals[-1]
        # NOTE: only a clear difference is worth a hint (not 0.0246 against 0.0245)
        if best_epoch != epoch and last > 1.05 * vals[best]:
            note += (f"; val_loss was lowest ({vals[best]:.4f}) at epoch {best_epoch}: --restore-best-weights "
                     f"keeps that epoch's")
    return epoch, note


def _finish(c, ds, scaler, shape, trainer, out, test, t_start, log, lang="en") -> Run:
    """Evaluate on the test part and write model.gbx, history.csv, curves.png and metrics.json.

    All or nothing: the files are written into a staging folder inside the run folder, then renamed
    into place, metrics.json (the mark of a finished run) last.
    """
    import shutil

    from ..io import save_model
    from .inference import evaluate

    model, history = trainer.model, trainer.history
    Xte, yte = test
    res = evaluate(model, Xte, yte, n_classes=ds.n_classes) if Xte is not None else None
    stopped = next((cb.stopped_epoch for cb in trainer.callbacks if getattr(cb, "stopped_epoch", None)), None)
    weights_epoch, weights_note = _weights_note(trainer, history)
    meta = model_metadata(c, ds, trainer.optimizer, shape)
    meta.update(epochs_trained=trainer.epoch, weights_epoch=weights_epoch,
                test_accuracy=None if res is None else res["accuracy"])
    h = history.as_dict()
    curves = filters = None
    metrics = {
        "test_accuracy": None if res is None else res["accuracy"],
        "test_loss": None if res is None else res["loss"],
        "n_test": None if res is None else res["n"],
        "confusion_matrix": None if res is None else res["confusion_matrix"].tolist(),
        "final": {k: v[-1] for k, v in h.items() if v and k != "epoch"},
        "history": h,
        "epochs_trained": trainer.epoch, "stopped_early_at": stopped, "weights_epoch": weights_epoch,
        "optimizer_steps": trainer.global_step,
        "hyperparameters": meta["hyperparameters"], "seed": c["seed"], "dataset": meta["dataset"],
        "classes": meta["classes"], "n_train": trainer.n_train,
        "world_size": _world.size(),
        "training_seconds": trainer.elapsed, "elapsed_seconds": None,
        "files": [],
        "gradbox_version": _version(),
    }
    if _world.is_main():
        stage = os.path.join(out, f".writing-{os.getpid()}")
        shutil.rmtree(stage, ignore_errors=True)
        os.mkdir(stage)
        try:
            save_model(os.path.join(stage, "model.gbx"), model,
                       arrays={"norm.mean": scaler.mean_, "norm.scale": scaler.scale_}, metadata=meta)
            history.to_csv(os.path.join(stage, "history.csv"))
            try:
                from ..plots import plot_history

                kind = "CNN" if c.get("conv") else "MLP"
                plot_history(history, os.path.join(stage, "curves.png"),
                             title=f"{ds.name}: {kind} {architecture(model)}, {c['optimizer']}",
                             test_accuracy=None if res is None else res["accuracy"], test_epoch=weights_epoch,
                             lang=lang)
                curves = "curves.png"
            except ImportError:
                curves = None  # matplotlib missing: the numbers are in history.csv
            filters = _plot_filters(c, ds, model, Xte, yte, stage, lang)
            files = [f for f in ("model.gbx", "history.csv", curves, filters) if f]
            metrics["files"] = [*files, "metrics.json"]
            metrics["elapsed_seconds"] = time.perf_counter() - t_start
            write_json(os.path.join(stage, "metrics.json"), metrics)
            for f in [*files, "metrics.json"]:
                os.replace(os.path.join(stage, f), os.path.join(out, f))
        finally:
            shutil.rmtree(stage, ignore_errors=True)
    else:
        metrics["elapsed_seconds"] = time.perf_counter() - t_start
    if res is not None:
        correct = int(round(res["accuracy"] * res["n"]))
        _say(log, f"test accuracy {res['accuracy']:.4f} ({correct}/{res['n']})  test loss {res['loss']:.4f}  "
                  f"[{trainer.elapsed:.1f}s training]")
    _say(log, weights_note)
    _say(log, f"wrote {out}/: model.gbx, metrics.json, history.csv" + "".join(f", {f}" for f in (curves, filters) if f))
    return Run(out=out, config=c, model=model, trainer=trainer, history=history, test=res, metrics=metrics)


def _plot_filters(c, ds, model, Xte, yte, out, lang="en"):
    """Write ``filters.png`` of a CNN run (issue 13): the first layer's filters and the feature maps of
    the first test sample; returns its name, or None (no conv, or matplotlib missing)."""
    if not c.get("conv"):
        return None
    try:
        from ..plots_conv import plot_filters
    except ImportError:
        return None
    from ..page.i18n import t

    sample, about = (None if Xte is None or not len(Xte) else Xte[:1]), ""
    if sample is not None:
        label = ds.classes[int(yte[0])] if ds.classes is not None else int(yte[0])
        about = t(lang, "filters_about", label=label.decode(errors="replace") if isinstance(label, bytes) else label)
    try:
        plot_filters(model, sample, os.path.join(out, "filters.png"), title=f"{ds.name}: {architecture(model)}{about}",
                     lang=lang)
    except ImportError:
        return None
    return "filters.png"
