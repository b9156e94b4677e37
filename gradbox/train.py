"""Training: ``fit``, ``History``, callbacks, exact checkpoints, ``evaluate`` and ``predict``.

One iteration is the notes' four steps on a mini-batch::

    out = model(X_batch)            # 1. forward propagation
    cost = loss(out, y_batch)       # 2. cost
    cost.backward()                 # 3. backward propagation
    optimizer.step()                # 4. update W := W - α·dW

A checkpoint holds everything the next step depends on -- weights, the
optimizer's buffers and step count, the shuffle generator, gradbox's default
generator (dropout), the current epoch's permutation and position, the history
and the callbacks' state -- so an interrupted run resumed from it ends with
bit-identical weights to a run that was never interrupted.

>>> import numpy as np, gradbox as gb
>>> from gradbox.train import fit, build_mlp
>>> rng = np.random.default_rng(0)
>>> X = rng.normal(size=(64, 2)); y = (X[:, 0] * X[:, 1] > 0).astype(int)
>>> _ = gb.manual_seed(0)
>>> model = build_mlp(2, [16], 2)
>>> history = fit(model, X, y, epochs=2, batch_size=16, seed=0, verbose=0)
>>> history.epoch
[1, 2]
"""
from __future__ import annotations

import json
import math
import numbers
import sys
import time
from collections.abc import Mapping

import numpy as np

from . import nn, optim
from .errors import NonFiniteError, all_finite, first_nonfinite
from .function import no_grad
from .random import get_rng_state, set_rng_state
from .tensor import Tensor

CHECKPOINT_FORMAT = "gradbox-checkpoint"
CHECKPOINT_VERSION = 1

__all__ = [
    "ACTIVATIONS",
    "OPTIMIZERS",
    "CSVLogger",
    "Callback",
    "EarlyStopping",
    "History",
    "ModelCheckpoint",
    "ProgressBar",
    "Trainer",
    "TrainingDiverged",
    "build_mlp",
    "evaluate",
    "fit",
    "load_checkpoint_file",
    "make_optimizer",
    "predict",
    "predict_logits",
    "predict_proba",
]


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the message names the epoch and step."""


# --------------------------------------------------------------------------------------
# History
# --------------------------------------------------------------------------------------
class History:
    """Per-epoch metrics of a training run.

    Attributes
    ----------
    history : dict of str -> list
        ``loss``, ``accuracy``, ``val_loss``, ``val_accuracy`` (when validation
        data is given) and ``time`` (seconds per epoch), one entry per epoch.
    epoch : list of int
        1-based epoch numbers.

    >>> h = History(); h.append(1, {"loss": 0.5, "accuracy": 0.75})
    >>> h.history["loss"], h.epoch
    ([0.5], [1])
    """

    def __init__(self, history: Mapping | None = None, epoch=None):
        self.history = {k: list(v) for k, v in (history or {}).items()}
        self.epoch = list(epoch or [])

    def append(self, epoch: int, logs: Mapping) -> None:
        n = len(self.epoch)
        for key, value in logs.items():
            # NOTE: a metric that appears late is padded so every column has one entry per epoch.
            column = self.history.setdefault(key, [None] * n)
            column.append(None if value is None else float(value))
        for key, column in self.history.items():
            if len(column) < n + 1:
                column.append(None)
        self.epoch.append(int(epoch))

    def as_dict(self) -> dict:
        """JSON-friendly copy: ``{"epoch": [...], "loss": [...], ...}``."""
        return {"epoch": list(self.epoch), **{k: list(v) for k, v in self.history.items()}}

    @classmethod
    def from_dict(cls, d: Mapping) -> History:
        d = dict(d)
        epoch = d.pop("epoch", [])
        return cls(d, epoch)

    def best(self, monitor: str = "val_loss", mode: str = "min"):
        """(epoch, value) of the best entry of ``monitor``."""
        values = [(v, e) for v, e in zip(self.history.get(monitor, []), self.epoch) if v is not None]
        if not values:
            raise ValueError(f"History.best(monitor): expected one of {sorted(self.history)}, received {monitor!r}")
        v, e = (min if mode == "min" else max)(values)
        return e, v

    def to_csv(self, path) -> None:
        """Write ``epoch,<metrics...>`` atomically."""
        from .io import atomic_write_bytes

        keys = list(self.history)
        lines = [",".join(["epoch", *keys])]
        for i, e in enumerate(self.epoch):
            cells = [str(e)]
            for k in keys:
                v = self.history[k][i]
                cells.append("" if v is None else repr(float(v)))
            lines.append(",".join(cells))
        atomic_write_bytes(path, ("\n".join(lines) + "\n").encode())

    def __len__(self):
        return len(self.epoch)

    def __repr__(self):
        return f"History(epochs={len(self.epoch)}, keys={list(self.history)})"


# --------------------------------------------------------------------------------------
# Callbacks
# --------------------------------------------------------------------------------------
class Callback:
    """Hooks called by ``Trainer.fit``; ``self.trainer`` is set before ``on_train_begin``.

    Epochs are 1-based in ``on_epoch_*``; ``step`` in ``on_batch_end`` is the
    1-based step within the epoch. ``logs`` holds the metrics so far.
    A callback that keeps state across epochs overrides ``get_state``/``set_state``
    so that a checkpoint resumes it too.
    """

    trainer = None

    def set_trainer(self, trainer) -> None:
        self.trainer = trainer

    def on_train_begin(self, logs=None): ...

    def on_epoch_begin(self, epoch, logs=None): ...

    def on_batch_end(self, step, logs=None): ...

    def on_epoch_end(self, epoch, logs=None): ...

    def on_train_end(self, logs=None): ...

    def get_state(self):
        """(JSON-friendly dict, dict of arrays) to store in a checkpoint."""
        return {}, {}

    def set_state(self, meta: dict, arrays: dict) -> None:
        pass


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved for ``patience`` epochs.

    Parameters
    ----------
    monitor : str
        A history key, ``"val_loss"`` by default (falls back to ``"loss"`` without validation data).
    patience : int
        Epochs without improvement before stopping.
    min_delta : float
        Smallest change that counts as an improvement.
    mode : "min", "max" or "auto"
        "auto" maximises keys containing "acc" and minimises the rest.
    restore_best : bool
        At the end, put back the weights of the best epoch.
    """

    def __init__(self, monitor="val_loss", patience=5, min_delta=0.0, mode="auto", restore_best=True):
        if not isinstance(patience, numbers.Integral) or isinstance(patience, bool) or patience < 0:
            raise ValueError(f"EarlyStopping(patience): expected a non-negative int, received {patience!r}")
        if mode not in ("min", "max", "auto"):
            raise ValueError(f"EarlyStopping(mode): expected 'min', 'max' or 'auto', received {mode!r}")
        self.monitor, self.patience, self.min_delta = monitor, int(patience), float(min_delta)
        self.mode = ("max" if "acc" in monitor else "min") if mode == "auto" else mode
        self.restore_best = bool(restore_best)
        self.best = None
        self.best_epoch = None
        self.wait = 0
        self.stopped_epoch = None
        self._best_weights = None

    def _improved(self, value):
        if self.best is None:
            return True
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        key = self.monitor if self.monitor in logs else ("loss" if self.monitor == "val_loss" else None)
        if key is None or logs.get(key) is None:
            raise ValueError(f"EarlyStopping(monitor): expected one of {sorted(logs)}, received {self.monitor!r}")
        value = float(logs[key])
        if self._improved(value):
            self.best, self.best_epoch, self.wait = value, epoch, 0
            if self.restore_best:
                self._best_weights = self.trainer.model.state_dict()
        else:
            self.wait += 1
            if self.wait >= self.patience:
                self.stopped_epoch = epoch
                self.trainer.stop_training = True

    def on_train_end(self, logs=None):
        if self.restore_best and self._best_weights is not None and self.stopped_epoch is not None:
            self.trainer.model.load_state_dict(self._best_weights)

    def get_state(self):
        meta = {"best": self.best, "best_epoch": self.best_epoch, "wait": self.wait, "stopped_epoch": self.stopped_epoch}
        return meta, dict(self._best_weights or {})

    def set_state(self, meta, arrays):
        self.best, self.best_epoch = meta.get("best"), meta.get("best_epoch")
        self.wait, self.stopped_epoch = int(meta.get("wait", 0)), meta.get("stopped_epoch")
        self._best_weights = dict(arrays) if arrays else None


class ModelCheckpoint(Callback):
    """Write a resumable checkpoint every ``every`` epochs (or steps).

    Parameters
    ----------
    directory : path
        Folder of the checkpoint; the file is ``<directory>/checkpoint.gbx``,
        replaced atomically each time (so a crash leaves the previous one whole).
    every : int
        Interval, counted in ``unit``.
    unit : "epoch" or "step"
        ``"step"`` counts optimizer steps since the start of the run, so checkpoints
        can fall in the middle of an epoch.
    keep_all : bool
        Also keep ``checkpoint-step<optimizer step>.gbx`` files (``checkpoint-step0000015.gbx``).
    """

    def __init__(self, directory, every=1, unit="epoch", keep_all=False, filename="checkpoint.gbx"):
        import os

        if not isinstance(every, numbers.Integral) or isinstance(every, bool) or every <= 0:
            raise ValueError(f"ModelCheckpoint(every): expected a positive int, received {every!r}")
        if unit not in ("epoch", "step"):
            raise ValueError(f"ModelCheckpoint(unit): expected 'epoch' or 'step', received {unit!r}")
        self.directory, self.every, self.unit, self.keep_all = os.fspath(directory), int(every), unit, keep_all
        self.filename = filename
        self.saved = []

    @property
    def path(self):
        import os

        return os.path.join(self.directory, self.filename)

    def _save(self):
        import os

        os.makedirs(self.directory, exist_ok=True)
        self.trainer.save_checkpoint(self.path)
        if self.keep_all:
            t = self.trainer
            extra = os.path.join(self.directory, f"checkpoint-step{t.global_step:07d}.gbx")
            t.save_checkpoint(extra)
            self.saved.append(extra)
        else:
            self.saved.append(self.path)

    def on_batch_end(self, step, logs=None):
        t = self.trainer
        # NOTE: the last step of an epoch is saved by on_epoch_end, once the history has the epoch.
        if self.unit == "step" and t.global_step % self.every == 0 and t.step < t.steps_per_epoch:
            self._save()

    def on_epoch_end(self, epoch, logs=None):
        count = epoch if self.unit == "epoch" else self.trainer.global_step
        if count % self.every == 0:
            self._save()


class CSVLogger(Callback):
    """Rewrite ``path`` (atomically) with the history after every epoch."""

    def __init__(self, path):
        self.path = path

    def on_epoch_end(self, epoch, logs=None):
        self.trainer.history.to_csv(self.path)


def _fmt_seconds(s: float) -> str:
    s = max(0, int(round(s)))
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"


class ProgressBar(Callback):
    """One bar per epoch with loss, accuracy and the time left.

    Uses tqdm when it is installed and ``file`` is a terminal; otherwise prints
    one plain line per epoch (logs and pipes stay readable).
    """

    def __init__(self, file=None, use_tqdm=None):
        self.file = file
        self.use_tqdm = use_tqdm
        self._bar = None
        self._t0 = None
        self._epoch_times = []

    def _out(self):
        return self.file if self.file is not None else sys.stdout

    def on_train_begin(self, logs=None):
        use = self.use_tqdm
        if use is None:
            isatty = getattr(self._out(), "isatty", lambda: False)
            use = bool(isatty())
        if use:
            try:
                import tqdm  # noqa: F401
            except ImportError:
                use = False
        self._tqdm = use
        self._epoch_times = []

    def on_epoch_begin(self, epoch, logs=None):
        t = self.trainer
        self._t0 = time.perf_counter()
        if self._tqdm:
            import shutil

            from tqdm.auto import tqdm

            width = len(str(t.epochs))
            # NOTE: a fixed narrow bar leaves room for the metrics; shutil falls back to 80 columns
            # where the terminal reports a size of 0 (tqdm would then hide the bar).
            self._bar = tqdm(total=t.steps_per_epoch, initial=t.step, desc=f"epoch {epoch:>{width}}/{t.epochs}",
                             file=self._out(), leave=True, mininterval=0.2, unit="step",
                             ncols=max(60, shutil.get_terminal_size().columns), nrows=max(
                                 10, shutil.get_terminal_size().lines),
                             bar_format="{desc} {bar:12} {n_fmt}/{total_fmt} [{elapsed}<{remaining}{postfix}]")

    def on_batch_end(self, step, logs=None):
        if self._bar is not None:
            self._bar.update(1)
            if self._bar.n % 10 == 0 or self._bar.n == self._bar.total:
                self._bar.set_postfix_str(self._postfix(logs), refresh=False)

    @staticmethod
    def _postfix(logs, keys=("loss", "accuracy", "val_loss", "val_accuracy")):
        logs = logs or {}
        short = {"loss": "loss", "accuracy": "acc", "val_loss": "val_loss", "val_accuracy": "val_acc"}
        return "  ".join(f"{short[k]} {logs[k]:.4f}" for k in keys if logs.get(k) is not None)

    def on_epoch_end(self, epoch, logs=None):
        t = self.trainer
        took = time.perf_counter() - self._t0
        self._epoch_times.append(took)
        left = (t.epochs - epoch) * (sum(self._epoch_times) / len(self._epoch_times))
        per = f"{took * 1000:.0f}ms" if took < 1 else f"{took:.1f}s"
        text = f"{self._postfix(logs)}  {per}/epoch  time left {_fmt_seconds(left)}"
        if self._bar is not None:
            self._bar.set_postfix_str(f"{self._postfix(logs)}  time left {_fmt_seconds(left)}", refresh=True)
            self._bar.close()
            self._bar = None
        else:
            width = len(str(t.epochs))
            print(f"epoch {epoch:>{width}}/{t.epochs}  {text}", file=self._out(), flush=True)

    def on_train_end(self, logs=None):
        self.close()

    def close(self):
        """Close an open bar (also called when training fails)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None


class _StopAfterSteps(Callback):
    """Request a stop after ``n`` optimizer steps in this session (simulates Ctrl-C in tests)."""

    def __init__(self, n):
        self.n = int(n)
        self._start = None

    def on_train_begin(self, logs=None):
        self._start = self.trainer.global_step

    def on_batch_end(self, step, logs=None):
        if self.trainer.global_step - self._start >= self.n:
            self.trainer.request_stop(interrupted=True)


# --------------------------------------------------------------------------------------
# Building blocks the CLI and tests share
# --------------------------------------------------------------------------------------
ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "leaky_relu": nn.LeakyReLU}
DEFAULT_INIT = {"relu": "he_normal", "leaky_relu": "he_normal", "tanh": "xavier_normal", "sigmoid": "xavier_normal"}
OPTIMIZERS = ("sgd", "momentum", "nesterov", "rmsprop", "adam", "adamw")
DEFAULT_LR = {"sgd": 0.1, "momentum": 0.05, "nesterov": 0.05, "rmsprop": 0.001, "adam": 0.001, "adamw": 0.001}


def build_mlp(n_inputs, hidden, n_outputs, activation="relu", dropout=0.0, init=None, dtype=np.float32, rng=None):
    """A multilayer perceptron ``Linear → activation [→ Dropout]`` per hidden layer, then ``Linear``.

    ``init`` defaults to He for ReLU-like activations and Xavier for tanh/sigmoid.
    ``rng`` (None: gradbox's default generator) draws every layer's weights in order.

    >>> build_mlp(4, [8], 3)
    Sequential(
      (0): Linear(in_features=4, out_features=8, bias=True)
      (1): ReLU()
      (2): Linear(in_features=8, out_features=3, bias=True)
    )
    """
    from .random import resolve_rng

    if activation not in ACTIVATIONS:
        raise ValueError(f"build_mlp(activation): expected one of {sorted(ACTIVATIONS)}, received {activation!r}")
    if not isinstance(dropout, numbers.Real) or not 0 <= dropout < 1:
        raise ValueError(f"build_mlp(dropout): expected a probability in [0, 1), received {dropout!r}")
    init = init or DEFAULT_INIT[activation]
    rng = resolve_rng(rng)
    sizes = [int(n_inputs), *[int(h) for h in hidden], int(n_outputs)]
    layers = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1], dtype=dtype, init=init, rng=rng))
        if i < len(sizes) - 2:
            layers.append(ACTIVATIONS[activation]())
            if dropout:
                layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


def make_optimizer(name, params, lr=None, momentum=0.9, weight_decay=0.0, fused=None):
    """An optimizer by name: sgd, momentum, nesterov, rmsprop, adam or adamw (lr defaults per name).

    ``fused`` is passed on (see ``gradbox.optim.Optimizer``)."""
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer: expected one of {', '.join(OPTIMIZERS)}, received {name!r}")
    lr = DEFAULT_LR[name] if lr is None else lr
    if isinstance(lr, numbers.Real) and not isinstance(lr, bool) and not lr > 0:
        raise ValueError(f"lr: expected a positive learning rate, received {lr!r}")
    params = list(params)
    if name == "sgd":
        return optim.SGD(params, lr=lr, weight_decay=weight_decay, fused=fused)
    if name in ("momentum", "nesterov"):
        return optim.SGD(params, lr=lr, momentum=momentum, nesterov=name == "nesterov", weight_decay=weight_decay,
                         fused=fused)
    if name == "rmsprop":
        return optim.RMSprop(params, lr=lr, weight_decay=weight_decay, fused=fused)
    if name == "adam":
        return optim.Adam(params, lr=lr, weight_decay=weight_decay, fused=fused)
    return optim.AdamW(params, lr=lr, weight_decay=weight_decay or 0.01, fused=fused)


# --------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------
def _model_dtype(model):
    for p in model.parameters():
        return p.dtype
    raise ValueError("model: expected a model with parameters, received one with none")


def _is_regression(loss_fn) -> bool:
    return isinstance(loss_fn, nn.MSELoss)


def _validate(X, y, loss_fn, dtype, name="X"):
    """Checked, contiguous X in the model's dtype and y (int labels or float targets)."""
    from .data import check_X_y

    # NOTE: converting in check_X_y refuses values beyond the model dtype's range (1e39 -> float32 inf).
    X, y = check_X_y(X, y, classification=not _is_regression(loss_fn), dtype=dtype)
    X = np.ascontiguousarray(X)
    y = np.ascontiguousarray(y, dtype=dtype if _is_regression(loss_fn) else np.int64)
    return X, y


def _labels_from_logits(out: np.ndarray) -> np.ndarray:
    if out.ndim == 1 or out.shape[1] == 1:
        return (out.reshape(-1) > 0).astype(np.int64)
    return out.argmax(axis=1)


def _resolve_loss(loss):
    if loss is None or loss == "cross_entropy":
        return nn.CrossEntropyLoss()
    if isinstance(loss, str):
        table = {"bce": nn.BCEWithLogitsLoss, "bce_with_logits": nn.BCEWithLogitsLoss, "mse": nn.MSELoss}
        if loss not in table:
            raise ValueError(f"loss: expected 'cross_entropy', 'bce' or 'mse' or a callable, received {loss!r}")
        return table[loss]()
    if not callable(loss):
        raise TypeError(f"loss: expected a callable loss(output, target), received {type(loss).__name__}")
    return loss


def _encode_rng(state: dict) -> str:
    # NOTE: PCG64 states are 128-bit ints; a JSON string keeps them exact in any reader.
    return json.dumps(state)


def _decode_rng(text: str) -> dict:
    return json.loads(text)


def load_checkpoint_file(path):
    """(arrays, metadata) of a checkpoint, checking that it is one."""
    from .io import load_with_metadata

    arrays, meta = load_with_metadata(path)
    if not isinstance(meta, dict) or meta.get("format") != CHECKPOINT_FORMAT:
        got = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise ValueError(f"checkpoint {path}: expected a {CHECKPOINT_FORMAT!r} file, received format {got!r}")
    if meta.get("version") != CHECKPOINT_VERSION:
        raise ValueError(f"checkpoint {path}: expected version {CHECKPOINT_VERSION}, received {meta.get('version')!r}")
    return arrays, meta


# --------------------------------------------------------------------------------------
# Trainer
# --------------------------------------------------------------------------------------
class Trainer:
    """Runs the training loop and owns everything a checkpoint must capture.

    Parameters
    ----------
    model : Module
    loss : callable, str or None
        ``loss(output, target) -> scalar Tensor``; default ``CrossEntropyLoss``.
    optimizer : Optimizer or None
        Default ``Adam(model.parameters(), lr=1e-3)``.
    batch_size : int or None
        ``None`` trains on the full batch.
    shuffle : bool
    seed : int or None
        Seeds the trainer's own shuffle generator (``numpy.random.Generator``).
    callbacks : sequence of Callback
    verbose : int
        0 silent, 1 adds a ``ProgressBar`` (unless one is given).

    Attributes
    ----------
    epoch : int
        Completed epochs. ``step``: completed steps in the current epoch.
        ``global_step``: optimizer steps since the start of the run.
    history : History
    stop_training, interrupted : bool
    extra_metadata, extra_arrays : dict
        Stored in every checkpoint alongside the trainer's own state.
    """

    def __init__(self, model, loss=None, optimizer=None, *, batch_size=32, shuffle=True, seed=None,
                 callbacks=(), metrics=("accuracy",), verbose=1, eval_batch_size=1024):
        if not isinstance(model, nn.Module):
            raise TypeError(f"model: expected a gradbox.nn.Module, received {type(model).__name__}")
        self.model = model
        self.dtype = _model_dtype(model)
        self.loss_fn = _resolve_loss(loss)
        self.optimizer = optimizer if optimizer is not None else optim.Adam(model.parameters(), lr=1e-3)
        if not isinstance(self.optimizer, optim.Optimizer):
            raise TypeError(f"optimizer: expected a gradbox.optim.Optimizer, received {type(self.optimizer).__name__}")
        if batch_size is not None and (not isinstance(batch_size, numbers.Integral) or isinstance(batch_size, bool)
                                       or batch_size <= 0):
            raise ValueError(f"batch_size: expected a positive int or None (full batch), received {batch_size!r}")
        self.batch_size = None if batch_size is None else int(batch_size)
        self.shuffle = bool(shuffle)
        if seed is not None and (not isinstance(seed, numbers.Integral) or isinstance(seed, bool) or seed < 0):
            raise ValueError(f"seed: expected a non-negative int or None, received {seed!r}")
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        metrics = tuple(metrics or ())
        for m in metrics:
            if m != "accuracy":
                raise ValueError(f"metrics: expected only 'accuracy', received {m!r}")
        self.metrics = metrics if not _is_regression(self.loss_fn) else ()
        try:
            self.callbacks = list(callbacks or ())
        except TypeError:
            hint = " (wrap it in a list)" if isinstance(callbacks, Callback) else ""
            raise TypeError(f"callbacks: expected a sequence of Callback, received {type(callbacks).__name__}"
                            f"{hint}") from None
        for i, cb in enumerate(self.callbacks):
            if not isinstance(cb, Callback):
                raise TypeError(f"callbacks[{i}]: expected a Callback, received {type(cb).__name__}")
        if verbose and not any(isinstance(cb, ProgressBar) for cb in self.callbacks):
            self.callbacks.append(ProgressBar())
        if (not isinstance(eval_batch_size, numbers.Integral) or isinstance(eval_batch_size, bool)
                or eval_batch_size <= 0):
            raise ValueError(f"eval_batch_size: expected a positive int, received {eval_batch_size!r}")
        self.eval_batch_size = int(eval_batch_size)
        self.history = History()
        self.epoch = 0
        self.step = 0
        self.global_step = 0
        self.epochs = 0
        self.stop_training = False
        self.interrupted = False
        self._stop_pending = False  # a request_stop() that the next or current fit must honour
        self._perm = None
        self._partial = {"loss_sum": 0.0, "correct": 0, "seen": 0}
        self._resumed_meta = None
        self._epoch_t0 = None
        self._elapsed_before = 0.0
        self._fit_t0 = None
        self.extra_metadata = {}  # JSON-friendly records stored in every checkpoint
        self.extra_arrays = {}    # arrays stored in every checkpoint (e.g. normalisation)

    @property
    def elapsed(self) -> float:
        """Seconds spent in ``fit``, summed over resumed sessions."""
        now = 0.0 if self._fit_t0 is None else time.perf_counter() - self._fit_t0
        return self._elapsed_before + now

    # --- control ------------------------------------------------------------------
    def request_stop(self, interrupted: bool = False) -> None:
        """Stop after the current step (safe to call from a signal handler)."""
        self.stop_training = True
        self.interrupted = self.interrupted or interrupted
        self._stop_pending = True

    def _diverged(self, epoch, s, why) -> TrainingDiverged:
        lr = getattr(self.optimizer, "lr", None)
        hint = f" (now {lr:g}; try {lr / 10:g})" if isinstance(lr, float) else ""
        return TrainingDiverged(f"training diverged at epoch {epoch}, step {s + 1}: {why}; "
                                f"lower the learning rate{hint}")

    def _call(self, hook, *args):
        for cb in self.callbacks:
            getattr(cb, hook)(*args)

    # --- the loop -----------------------------------------------------------------
    def fit(self, X, y, epochs=10, validation_data=None) -> History:
        """Train until ``epochs`` epochs are complete (counting resumed ones)."""
        if not isinstance(epochs, numbers.Integral) or isinstance(epochs, bool) or epochs < 0:
            raise ValueError(f"epochs: expected a non-negative int, received {epochs!r}")
        X, y = _validate(X, y, self.loss_fn, self.dtype)
        val = None
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
                raise ValueError("validation_data: expected a pair (X_val, y_val), "
                                 f"received {type(validation_data).__name__}")
            val = _validate(*validation_data, self.loss_fn, self.dtype)
            if val[0].shape[1] != X.shape[1]:
                raise ValueError(f"validation_data: expected X_val with {X.shape[1]} features, "
                                 f"received {val[0].shape[1]}")
        n = X.shape[0]
        bs = n if self.batch_size is None else min(self.batch_size, n)
        self.epochs = int(epochs)
        self.steps_per_epoch = -(-n // bs)
        if self._perm is not None and len(self._perm) != n:
            raise ValueError(f"resume: the checkpoint was taken on {len(self._perm)} training samples, received {n}")
        if not self._stop_pending:
            # NOTE: clear what an earlier fit left (e.g. EarlyStopping's flag), but keep a stop
            # requested since: a Ctrl-C between installing the handler and this line is not lost.
            self.stop_training = False
            self.interrupted = False
        # NOTE: one preallocated batch buffer, filled by np.take(out=...): no allocation per step.
        xbuf = np.empty((bs, X.shape[1]), dtype=X.dtype)
        ybuf = np.empty((bs,) + y.shape[1:], dtype=y.dtype)
        full_ordered = bs == n and not self.shuffle
        for cb in self.callbacks:
            cb.set_trainer(self)
        self._fit_t0 = time.perf_counter()
        self._call("on_train_begin", {})
        try:
            # NOTE: overflow warnings would only precede the divergence error, which says more.
            with np.errstate(over="ignore", invalid="ignore"):
                self._epochs_loop(X, y, val, bs, xbuf, ybuf, full_ordered)
        except BaseException:
            for cb in self.callbacks:
                if isinstance(cb, ProgressBar):
                    cb.close()
            raise
        finally:
            self.model.eval()
            self._elapsed_before, self._fit_t0 = self.elapsed, None
            self._stop_pending = False  # this fit has honoured it
        self._call("on_train_end", {})
        return self.history

    def _epochs_loop(self, X, y, val, bs, xbuf, ybuf, full_ordered):
        """The loop proper: epochs of mini-batch steps, resumable at any step."""
        n = X.shape[0]
        loss_fn, model, opt = self.loss_fn, self.model, self.optimizer
        track_acc = "accuracy" in self.metrics
        while self.epoch < self.epochs and not self.stop_training:
            epoch = self.epoch + 1
            if self._perm is None:
                self._perm = self.rng.permutation(n) if self.shuffle else np.arange(n)
                self._partial = {"loss_sum": 0.0, "correct": 0, "seen": 0}
            if self._epoch_t0 is None:
                self._epoch_t0 = time.perf_counter()
            self._call("on_epoch_begin", epoch, {})
            model.train()
            perm, part = self._perm, self._partial
            while self.step < self.steps_per_epoch:
                s = self.step
                idx = perm[s * bs:(s + 1) * bs]
                k = idx.shape[0]
                if full_ordered:
                    xb, yb = X, y
                else:
                    xb, yb = xbuf[:k], ybuf[:k]
                    np.take(X, idx, axis=0, out=xb)
                    np.take(y, idx, axis=0, out=yb)
                opt.zero_grad()
                try:
                    out = model(Tensor(xb))                     # 1. forward
                    cost = loss_fn(out, yb)                     # 2. cost
                    value = float(cost.data)
                except NonFiniteError as exc:
                    # NOTE: the data were checked finite up front, so this is the network blowing up.
                    raise self._diverged(epoch, s, f"{exc}") from None
                if not math.isfinite(value):
                    raise self._diverged(epoch, s, f"the loss is {value}")
                cost.backward()                                 # 3. backward
                opt.step()                                      # 4. update
                part["loss_sum"] += value * k
                part["seen"] += k
                if track_acc:
                    part["correct"] += int((_labels_from_logits(out.data) == yb).sum())
                self.step = s + 1
                self.global_step += 1
                logs = {"loss": part["loss_sum"] / part["seen"]}
                if track_acc:
                    logs["accuracy"] = part["correct"] / part["seen"]
                self._call("on_batch_end", self.step, logs)
                if self.stop_training and self.step < self.steps_per_epoch:
                    break
            if self.step < self.steps_per_epoch:
                break  # stopped mid-epoch: the checkpoint carries the position
            logs = {"loss": part["loss_sum"] / part["seen"]}
            if track_acc:
                logs["accuracy"] = part["correct"] / part["seen"]
            if val is not None:
                res = evaluate(model, *val, loss=loss_fn, batch_size=self.eval_batch_size,
                               confusion=False, _checked=True)
                logs["val_loss"] = res["loss"]
                if track_acc:
                    logs["val_accuracy"] = res["accuracy"]
            logs["time"] = time.perf_counter() - self._epoch_t0
            self.epoch, self.step, self._perm, self._epoch_t0 = epoch, 0, None, None
            self.history.append(epoch, logs)
            self._call("on_epoch_end", epoch, logs)

    # --- checkpoints ----------------------------------------------------------------
    def state(self):
        """(arrays, metadata) of a checkpoint of the current position."""
        arrays, cb_meta = {}, []
        for name, p in self.model.named_parameters():
            if not np.all(np.isfinite(p.data)):
                raise TrainingDiverged(f"checkpoint: parameter {name!r} holds NaN or inf; not writing it")
            arrays[f"model.{name}"] = p.data.copy()
        sd = self.optimizer.state_dict()
        for key, value in sd["state"].items():
            arrays[f"optim.{key}"] = value
        if self._perm is not None:
            arrays["trainer.perm"] = np.asarray(self._perm, dtype=np.int64)
        for i, cb in enumerate(self.callbacks):
            meta, cb_arrays = cb.get_state()
            cb_meta.append({"class": type(cb).__name__, "index": i, "state": meta})
            for k, v in cb_arrays.items():
                arrays[f"callback.{i}.{k}"] = np.asarray(v)
        meta = {
            "format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION,
            "epoch": self.epoch, "step": self.step, "global_step": self.global_step,
            "epochs": self.epochs, "elapsed": self.elapsed,
            "batch_size": self.batch_size, "shuffle": self.shuffle, "seed": self.seed,
            "optimizer": {"type": sd["type"], "hyper": sd["hyper"], "step_count": sd["step_count"]},
            "rng": {"shuffle": _encode_rng(self.rng.bit_generator.state), "gradbox": _encode_rng(get_rng_state())},
            "partial": dict(self._partial) if self._perm is not None else None,
            "history": self.history.as_dict(),
            "callbacks": cb_meta,
            "parameters": [name for name, _ in self.model.named_parameters()],
        }
        # the caller's own records (e.g. the CLI's dataset and normalisation), under names of their own
        for key, value in self.extra_metadata.items():
            meta.setdefault(key, value)
        for key, value in self.extra_arrays.items():
            arrays.setdefault(key, value)
        return arrays, meta

    def save_checkpoint(self, path, extra_metadata: dict | None = None) -> None:
        """Write a resumable checkpoint atomically (refuses a non-finite model).

        ``self.extra_metadata`` and ``self.extra_arrays`` (and ``extra_metadata`` here) are stored
        too, without overriding the checkpoint's own keys.
        """
        from .io import model_to_spec, save, save_model

        arrays, meta = self.state()
        for key, value in (extra_metadata or {}).items():
            meta.setdefault(key, value)
        try:
            model_to_spec(self.model)
        except TypeError:
            save(arrays, path, metadata=meta)
            return
        # NOTE: a Sequential checkpoint is also a model file (gradbox info/evaluate can read it);
        # save_model stores the weights under the same "model.<name>" keys.
        extra = {k: v for k, v in arrays.items() if not k.startswith("model.")}
        save_model(path, self.model, arrays=extra, metadata=meta)

    def load_checkpoint(self, path_or_state) -> dict:
        """Restore everything ``save_checkpoint`` wrote; returns the metadata.

        ``path_or_state`` is a path or the ``(arrays, metadata)`` pair of ``load_checkpoint_file``.
        Everything is checked before anything changes: a checkpoint of another model, optimizer
        or batch size raises ``ValueError`` and leaves the trainer as it was.
        """
        arrays, meta = (load_checkpoint_file(path_or_state) if not isinstance(path_or_state, tuple)
                        else path_or_state)
        who = "resume"
        try:
            o = meta["optimizer"]
            rng_shuffle, rng_global = _decode_rng(meta["rng"]["shuffle"]), _decode_rng(meta["rng"]["gradbox"])
            epoch, step, global_step = int(meta["epoch"]), int(meta["step"]), int(meta["global_step"])
            history = History.from_dict(meta["history"])
            partial = dict(meta["partial"]) if meta.get("partial") is not None else None
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{who}: expected a complete gradbox checkpoint, received one without {exc}") from None
        if o["type"] != type(self.optimizer).__name__:
            raise ValueError(f"{who}: expected a checkpoint of a {type(self.optimizer).__name__} optimizer, "
                             f"received {o['type']}")
        if meta.get("batch_size") != self.batch_size or meta.get("shuffle") != self.shuffle:
            raise ValueError(f"{who}: expected batch_size={meta.get('batch_size')} and shuffle={meta.get('shuffle')} "
                             f"as in the checkpoint, received batch_size={self.batch_size}, shuffle={self.shuffle}")
        weights = {k[len("model."):]: v for k, v in arrays.items() if k.startswith("model.")}
        opt_state = {k[len("optim."):]: v for k, v in arrays.items() if k.startswith("optim.")}
        backup_w, backup_o = self.model.state_dict(), self.optimizer.state_dict()
        try:
            self.model.load_state_dict(weights)
            self.optimizer.load_state_dict({"type": o["type"], "hyper": o["hyper"], "step_count": o["step_count"],
                                            "state": opt_state})
            self.rng.bit_generator.state = rng_shuffle
            set_rng_state(rng_global)
        except (ValueError, TypeError, KeyError):
            self.model.load_state_dict(backup_w)
            self.optimizer.load_state_dict(backup_o)
            raise
        self.epoch, self.step, self.global_step = epoch, step, global_step
        perm = arrays.get("trainer.perm")
        self._perm = None if perm is None else np.asarray(perm, dtype=np.int64)
        if partial is not None:
            self._partial = partial
        self.history = history
        self._elapsed_before = float(meta.get("elapsed", 0.0))
        self._epoch_t0 = None
        # callbacks: the k-th callback of a class takes the state of the k-th saved one of that class
        saved = {}
        for entry in meta.get("callbacks", []):
            saved.setdefault(entry["class"], []).append(entry)
        for cb in self.callbacks:
            queue = saved.get(type(cb).__name__)
            if queue:
                entry = queue.pop(0)
                prefix = f"callback.{entry['index']}."
                cb.set_state(entry["state"], {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)})
        self._resumed_meta = meta
        return meta


# --------------------------------------------------------------------------------------
# Functional API
# --------------------------------------------------------------------------------------
def fit(model, X, y, loss=None, optimizer=None, epochs=10, batch_size=32, validation_data=None, callbacks=(),
        shuffle=True, seed=None, metrics=("accuracy",), verbose=1, resume_from=None) -> History:
    """Train ``model`` on ``(X, y)`` with mini-batch gradient descent; returns the ``History``.

    Parameters
    ----------
    model : Module
    X : array (n, d); y : int labels (n,) (float targets for ``MSELoss``)
    loss : callable, "cross_entropy", "bce", "mse" or None (cross-entropy)
    optimizer : Optimizer or None (``Adam``, lr 1e-3)
    epochs : int
        Total epochs; a resumed run continues up to this number.
    batch_size : int or None (full batch)
    validation_data : (X_val, y_val), optional
    callbacks : sequence of Callback (``EarlyStopping``, ``ModelCheckpoint``, ``CSVLogger``, ...)
    shuffle : bool; seed : int or None (the shuffle generator)
    verbose : 0 or 1 (progress bar)
    resume_from : path, optional
        A checkpoint written by ``ModelCheckpoint``/``Trainer.save_checkpoint``.

    Raises
    ------
    TrainingDiverged
        When the loss becomes NaN or inf (the message names epoch and step).
    """
    trainer = Trainer(model, loss, optimizer, batch_size=batch_size, shuffle=shuffle, seed=seed,
                      callbacks=callbacks, metrics=metrics, verbose=verbose)
    if resume_from is not None:
        trainer.load_checkpoint(resume_from)
    return trainer.fit(X, y, epochs=epochs, validation_data=validation_data)


def _as_input(model, X, name="X"):
    from .data import check_array

    X = check_array(X, name=name, ndim=2, dtype=_model_dtype(model))
    return np.ascontiguousarray(X)


def _check_batch_size(batch_size):
    if not isinstance(batch_size, numbers.Integral) or isinstance(batch_size, bool) or batch_size <= 0:
        raise ValueError(f"batch_size: expected a positive int, received {batch_size!r}")


def predict_logits(model, X, batch_size=1024, _checked=False) -> np.ndarray:
    """Raw outputs of ``model`` in eval mode, without recording a graph.

    Raises ``NonFiniteError`` (a ValueError) when an output is NaN or inf, e.g. for inputs so large
    that the logits overflow.
    """
    if not _checked:
        X = _as_input(model, X)
        _check_batch_size(batch_size)
    was = [(m, m.training) for m in model.modules()]
    model.eval()
    outs = []
    try:
        # NOTE: an overflow shows up as a non-finite output, refused below with a clear message.
        with no_grad(), np.errstate(over="ignore", invalid="ignore"):
            for i in range(0, X.shape[0], batch_size):
                outs.append(model(Tensor(X[i:i + batch_size])).data)
    finally:
        for m, mode in was:
            object.__setattr__(m, "training", mode)
    if not outs:
        raise ValueError("X: expected at least one sample, received 0")
    out = np.concatenate(outs, axis=0)
    if out.dtype.kind == "f" and not all_finite(out):
        raise NonFiniteError(f"model output: expected finite values, received {first_nonfinite(out)} "
                             "(inputs far larger than the training data, or diverged weights?)")
    return out


def predict_proba(model, X, batch_size=1024) -> np.ndarray:
    """Class probabilities (softmax of the logits; sigmoid for one output)."""
    z = predict_logits(model, X, batch_size).astype(np.float64)
    if z.ndim == 1 or z.shape[1] == 1:
        with np.errstate(over="ignore"):  # NOTE: exp(-z) overflows to inf for z << 0, giving p = 0 exactly
            p = 1.0 / (1.0 + np.exp(-z.reshape(-1)))
        return np.stack([1 - p, p], axis=1)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def predict(model, X, batch_size=1024) -> np.ndarray:
    """Predicted class labels (int64), in eval mode."""
    return _labels_from_logits(predict_logits(model, X, batch_size))


def evaluate(model, X, y, loss=None, batch_size=1024, confusion=True, n_classes=None, _checked=False) -> dict:
    """Loss, accuracy and confusion matrix (rows: true class, columns: predicted).

    Returns ``dict(loss=float, accuracy=float, confusion_matrix=ndarray (C, C), n=int)``.
    """
    loss_fn = _resolve_loss(loss)
    if not _checked:
        _check_batch_size(batch_size)
        if n_classes is not None and (not isinstance(n_classes, numbers.Integral) or isinstance(n_classes, bool)
                                      or n_classes < 1):
            raise ValueError(f"n_classes: expected a positive int or None, received {n_classes!r}")
        X, y = _validate(X, y, loss_fn, _model_dtype(model), name="X")
    out = predict_logits(model, X, batch_size, _checked=True)
    total = 0.0
    with no_grad():
        for i in range(0, X.shape[0], batch_size):
            part = out[i:i + batch_size]
            total += float(loss_fn(Tensor(part), y[i:i + batch_size]).data) * part.shape[0]
    result = {"loss": total / X.shape[0], "n": int(X.shape[0])}
    if not _is_regression(loss_fn):
        pred = _labels_from_logits(out)
        result["accuracy"] = float((pred == y).mean())
        if confusion:
            c = n_classes or (2 if out.ndim == 1 or out.shape[1] == 1 else out.shape[1])
            c = max(c, int(y.max()) + 1, int(pred.max()) + 1)
            cm = np.zeros((c, c), dtype=np.int64)
            np.add.at(cm, (y, pred), 1)
            result["confusion_matrix"] = cm
    return result
