"""Callbacks: hooks that ``Trainer.fit`` calls (Keras's names and order).

``Callback`` is the base; ``EarlyStopping``, ``ModelCheckpoint``, ``CSVLogger`` and ``ProgressBar``
are the ones gradbox ships. Writers (checkpoints, CSV, progress) act only in the main process
(:func:`gradbox._world.is_main`), so a distributed run writes each file once.
"""
from __future__ import annotations

import numbers
import os
import sys
import time

from .. import _world

__all__ = ["CSVLogger", "Callback", "DivergenceMonitor", "EarlyStopping", "ModelCheckpoint", "ProgressBar",
           "RestoreBestWeights"]


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


class RestoreBestWeights(Callback):
    """Keep the weights of the epoch with the best ``monitor`` value (Keras's ``restore_best_weights``).

    At the end of a completed ``fit`` (not an interrupted one), the model gets the weights of
    ``best_epoch`` back; ``restored`` says whether that happened. Without validation data
    ``"val_loss"`` falls back to ``"loss"``.
    """

    def __init__(self, monitor="val_loss", mode="auto"):
        if mode not in ("min", "max", "auto"):
            raise ValueError(f"RestoreBestWeights(mode): expected 'min', 'max' or 'auto', received {mode!r}")
        self.monitor = monitor
        self.mode = ("max" if "acc" in monitor else "min") if mode == "auto" else mode
        self.best, self.best_epoch, self.restored = None, None, False
        self._weights = None

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        key = self.monitor if logs.get(self.monitor) is not None else ("loss" if self.monitor == "val_loss" else None)
        if key is None or logs.get(key) is None:
            raise ValueError(f"RestoreBestWeights(monitor): expected one of {sorted(logs)}, received {self.monitor!r}")
        value = float(logs[key])
        better = self.best is None or (value < self.best if self.mode == "min" else value > self.best)
        if better:
            self.best, self.best_epoch = value, epoch
            self._weights = self.trainer.model.state_dict()

    def on_train_end(self, logs=None):
        # NOTE: an interrupted fit keeps its current weights: the checkpoint must continue from them.
        if self._weights is not None and not self.trainer.interrupted:
            self.trainer.model.load_state_dict(self._weights)
            self.restored = True

    def get_state(self):
        return {"best": self.best, "best_epoch": self.best_epoch}, dict(self._weights or {})

    def set_state(self, meta, arrays):
        self.best, self.best_epoch = meta.get("best"), meta.get("best_epoch")
        self._weights = dict(arrays) if arrays else None


class DivergenceMonitor(Callback):
    """Warn once when the epoch's training loss exceeds ``factor`` x the first epoch's.

    A NaN or infinite loss already stops ``Trainer`` (``TrainingDiverged``, like Keras's
    ``TerminateOnNaN``); this catches a loss that grows without overflowing (``--lr 1e6``).
    ``warn(text)`` receives the message (default: ``warnings.warn``); ``warned`` says whether it came.
    """

    def __init__(self, factor=1e3, warn=None):
        if isinstance(factor, bool) or not isinstance(factor, numbers.Real) or not factor > 1:
            raise ValueError(f"DivergenceMonitor(factor): expected a number > 1, received {factor!r}")
        self.factor, self.warn = float(factor), warn
        self.first, self.warned = None, False

    def on_epoch_end(self, epoch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is None:
            return
        if self.first is None:
            self.first = float(loss)
        elif not self.warned and self.first > 0 and loss > self.factor * self.first:
            self.warned = True
            lr = getattr(self.trainer.optimizer, "lr", None)
            hint = f" (now {lr:g})" if isinstance(lr, float) else ""
            text = (f"training is diverging: the loss rose from {self.first:.4g} at epoch 1 to {loss:.4g} at epoch "
                    f"{epoch}; lower the learning rate{hint}")
            if self.warn is not None:
                self.warn(text)
            else:
                import warnings

                warnings.warn(text, RuntimeWarning, stacklevel=2)

    def get_state(self):
        return {"first": self.first, "warned": self.warned}, {}

    def set_state(self, meta, arrays):
        self.first, self.warned = meta.get("first"), bool(meta.get("warned", False))


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
        if not isinstance(every, numbers.Integral) or isinstance(every, bool) or every <= 0:
            raise ValueError(f"ModelCheckpoint(every): expected a positive int, received {every!r}")
        if unit not in ("epoch", "step"):
            raise ValueError(f"ModelCheckpoint(unit): expected 'epoch' or 'step', received {unit!r}")
        self.directory, self.every, self.unit, self.keep_all = os.fspath(directory), int(every), unit, keep_all
        self.filename = filename
        self.saved = []

    @property
    def path(self):
        return os.path.join(self.directory, self.filename)

    def _save(self):
        if not _world.is_main():
            return
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
        if _world.is_main():
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
        self._silent = False

    def _out(self):
        return self.file if self.file is not None else sys.stdout

    def on_train_begin(self, logs=None):
        # NOTE: only the main process shows progress; the others stay silent.
        self._silent = not _world.is_main()
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
        self._step0 = t.step
        if self._tqdm and not self._silent:
            import shutil

            from tqdm.auto import tqdm

            width = len(str(t.epochs))
            # NOTE: the line must fit 80 columns with every metric and the run's time left: a short bar,
            # no step counts or per-epoch clock (the postfix says what matters). shutil falls back to 80
            # columns where the terminal reports a size of 0 (tqdm would then hide the bar).
            self._bar = tqdm(total=t.steps_per_epoch, initial=t.step, desc=f"epoch {epoch:>{width}}/{t.epochs}",
                             file=self._out(), leave=True, mininterval=0.2, unit="step",
                             ncols=max(60, shutil.get_terminal_size().columns), nrows=max(
                                 10, shutil.get_terminal_size().lines),
                             bar_format="{desc} {bar:6}{postfix}")

    def _time_left(self, epoch, done_steps):
        """Seconds left in the run: the epochs to come at the mean epoch time, plus this epoch's rest."""
        t = self.trainer
        times = self._epoch_times
        if times:
            per_epoch = sum(times) / len(times)
        elif done_steps > 0:
            per_epoch = (time.perf_counter() - self._t0) / done_steps * max(1, t.steps_per_epoch)
        else:
            return None
        rest = 0.0 if done_steps >= t.steps_per_epoch else (1 - done_steps / max(1, t.steps_per_epoch)) * per_epoch
        return (t.epochs - epoch) * per_epoch + rest

    def on_batch_end(self, step, logs=None):
        if self._bar is not None:
            self._bar.update(1)
            if self._bar.n % 10 == 0 or self._bar.n == self._bar.total:
                t = self.trainer
                left = self._time_left(t.epoch + 1, step)
                text = self._postfix(logs) + ("" if left is None else f" left {_fmt_seconds(left)}")
                self._bar.set_postfix_str(text, refresh=False)

    @staticmethod
    def _value(v) -> str:
        return f"{v:.3f}" if abs(v) < 10 else f"{v:.4g}"

    @classmethod
    def _postfix(cls, logs, keys=("loss", "accuracy", "val_loss", "val_accuracy"), sep=" "):
        logs = logs or {}
        short = {"loss": "loss", "accuracy": "acc", "val_loss": "val_loss", "val_accuracy": "val_acc"}
        return sep.join(f"{short[k]} {cls._value(logs[k])}" for k in keys if logs.get(k) is not None)

    def on_epoch_end(self, epoch, logs=None):
        t = self.trainer
        took = time.perf_counter() - self._t0
        self._epoch_times.append(took)
        left = (t.epochs - epoch) * (sum(self._epoch_times) / len(self._epoch_times))
        per = f"{took * 1000:.0f}ms" if took < 1 else f"{took:.1f}s"
        if self._bar is not None:
            self._bar.set_postfix_str(f"{self._postfix(logs)} left {_fmt_seconds(left)}", refresh=True)
            self._bar.close()
            self._bar = None
        elif not self._silent:
            width = len(str(t.epochs))
            text = f"{self._postfix(logs, sep='  ')}  {per}/epoch  time left {_fmt_seconds(left)}"
            print(f"epoch {epoch:>{width}}/{t.epochs}  {text}", file=self._out(), flush=True)

    def on_train_end(self, logs=None):
        self.close()

    def close(self):
        """Close an open bar (also called when training fails)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
