"""``Trainer``: the training loop, and the owner of everything a checkpoint must capture.

One step is the notes' four steps on a mini-batch, in ``Trainer.train_step``::

    out = model(X_batch)            # 1. forward propagation
    cost = loss(out, y_batch)       # 2. cost
    cost.backward()                 # 3. backward propagation
    optimizer.step()                # 4. update W := W - α·dW

``train_step`` is the one unit of work to override (a custom loss, gradient clipping, a
distributed all-reduce); the epoch loop around it gathers the batches in the order a sampler
gives (``RandomSampler`` by default; a sharded one plugs in the same way).
"""
from __future__ import annotations

import math
import numbers
import time

import numpy as np

from .. import nn, optim
from ..errors import NonFiniteError
from ..tensor import Tensor
from .callbacks import Callback, ProgressBar
from .checkpoint import TrainingDiverged, checkpoint_state, load_checkpoint_file, restore_checkpoint
from .inference import _is_regression, _labels_from_logits, _model_dtype, _resolve_loss, _validate, evaluate
from .history import History
from .sampler import RandomSampler

__all__ = ["Trainer", "TrainingDiverged", "fit"]


def _positive_int_or_none(value, name, what="a positive int or None (full batch)"):
    if value is not None and (not isinstance(value, numbers.Integral) or isinstance(value, bool) or value <= 0):
        raise ValueError(f"{name}: expected {what}, received {value!r}")
    return None if value is None else int(value)


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
        Seeds the default sampler's own generator (``numpy.random.Generator``).
    callbacks : sequence of Callback
    verbose : int
        0 silent, 1 adds a ``ProgressBar`` (unless one is given).
    sampler : sampler, optional
        The order of samples (see ``gradbox.train.sampler``); default ``RandomSampler(seed=seed, shuffle=shuffle)``.
    distributed : bool or None
        Data-parallel training on MPI (``gradbox.distributed``): ``None`` (default) when launched by
        ``mpiexec -n K`` with K > 1, ``True`` requires it, ``False`` never. The batch size is then
        the global batch and the result equals one process's, to float rounding.

    Attributes
    ----------
    epoch : int
        Completed epochs. ``step``: completed steps in the current epoch.
        ``global_step``: optimizer steps since the start of the run.
    n_train : int or None
        Training samples of the last ``fit``.
    history : History
    stop_training, interrupted : bool
    extra_metadata, extra_arrays : dict
        Stored in every checkpoint alongside the trainer's own state.
    """

    def __init__(self, model, loss=None, optimizer=None, *, batch_size=32, shuffle=True, seed=None,
                 callbacks=(), metrics=("accuracy",), verbose=1, eval_batch_size=1024, sampler=None,
                 distributed=None):
        if not isinstance(model, nn.Module):
            raise TypeError(f"model: expected a gradbox.nn.Module, received {type(model).__name__}")
        self.model = model
        self.dtype = _model_dtype(model)
        self.loss_fn = _resolve_loss(loss)
        self.optimizer = optimizer if optimizer is not None else optim.Adam(model.parameters(), lr=1e-3)
        if not isinstance(self.optimizer, optim.Optimizer):
            raise TypeError(f"optimizer: expected a gradbox.optim.Optimizer, received {type(self.optimizer).__name__}")
        self.batch_size = _positive_int_or_none(batch_size, "batch_size")
        self.shuffle = bool(shuffle)
        if seed is not None and (not isinstance(seed, numbers.Integral) or isinstance(seed, bool) or seed < 0):
            raise ValueError(f"seed: expected a non-negative int or None, received {seed!r}")
        self.seed = seed
        self.sampler = RandomSampler(seed=seed, shuffle=self.shuffle) if sampler is None else sampler
        for method in ("set_epoch", "batches", "end_epoch", "state_dict", "load_state_dict"):
            if not callable(getattr(self.sampler, method, None)):
                raise TypeError(f"sampler: expected an object with a {method}() method (see "
                                f"gradbox.train.sampler), received {type(self.sampler).__name__}")
        metrics = tuple(metrics or ())
        for m in metrics:
            if m != "accuracy":
                raise ValueError(f"metrics: expected only 'accuracy', received {m!r}")
        self.metrics = metrics if not _is_regression(self.loss_fn) else ()
        self.callbacks = self._checked_callbacks(callbacks)
        if verbose and not any(isinstance(cb, ProgressBar) for cb in self.callbacks):
            self.callbacks.append(ProgressBar())
        self.eval_batch_size = _positive_int_or_none(eval_batch_size, "eval_batch_size", "a positive int")
        if self.eval_batch_size is None:
            raise ValueError(f"eval_batch_size: expected a positive int, received {eval_batch_size!r}")
        self.history = History()
        self.epoch = self.step = self.global_step = self.epochs = 0
        self.steps_per_epoch = 0
        self.n_train = None
        self.stop_training = False
        self.interrupted = False
        self._stop_pending = False  # a request_stop() that the next or current fit must honour
        self.in_epoch = False       # an epoch has begun and not ended (a checkpoint then holds its order)
        self._partial = {"loss_sum": 0.0, "correct": 0, "seen": 0}
        self._resumed_meta = None
        self._epoch_t0 = None
        self._elapsed_before = 0.0
        self._fit_t0 = None
        self.extra_metadata = {}  # JSON-friendly records stored in every checkpoint
        self.extra_arrays = {}    # arrays stored in every checkpoint (e.g. normalisation)
        if distributed is not None and not isinstance(distributed, bool):
            raise TypeError(f"distributed: expected True, False or None (automatic), received {distributed!r}")
        self.distributed = distributed
        self._dp = None           # the data-parallel set-up (gradbox.distributed) while fit runs under MPI

    @staticmethod
    def _checked_callbacks(callbacks):
        try:
            callbacks = list(callbacks or ())
        except TypeError:
            hint = " (wrap it in a list)" if isinstance(callbacks, Callback) else ""
            raise TypeError(f"callbacks: expected a sequence of Callback, received {type(callbacks).__name__}"
                            f"{hint}") from None
        for i, cb in enumerate(callbacks):
            if not isinstance(cb, Callback):
                raise TypeError(f"callbacks[{i}]: expected a Callback, received {type(cb).__name__}")
        return callbacks

    @property
    def rng(self):
        """The default sampler's shuffle generator."""
        return self.sampler.rng

    @property
    def elapsed(self) -> float:
        """Seconds spent in ``fit``, summed over resumed sessions."""
        now = 0.0 if self._fit_t0 is None else time.perf_counter() - self._fit_t0
        return self._elapsed_before + now

    # --- control ------------------------------------------------------------------
    def request_stop(self, interrupted: bool = False) -> None:
        """Stop after the current step (safe to call from a signal handler)."""
        if interrupted and self._dp is not None:
            # NOTE: under MPI a signal reaches each rank at its own moment: the request travels in the
            # next gradient exchange and every rank stops after that same step (see _run_epoch).
            self._dp.optimizer.request_stop()
            return
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

    # --- the unit of work ---------------------------------------------------------
    def train_step(self, xb, yb) -> dict:
        """One optimizer step on the batch ``(xb, yb)``; returns its logs.

        The logs hold ``loss`` (the batch's mean loss, a float) and ``output`` (the network's
        output array, for the accuracy). Override this to change what one step does; raise
        ``NonFiniteError`` or return a non-finite loss to report divergence.
        """
        self.optimizer.zero_grad()
        dp = self._dp
        if dp is not None and len(xb) == 0:
            # NOTE: an empty shard (a global batch smaller than the world) still joins the exchange
            dp.set_metrics(0.0, 0, 0)
            self.optimizer.step()
            return {"loss": 0.0, "output": None}
        out = self.model(Tensor(xb))                        # 1. forward
        cost = self.loss_fn(out, yb)                        # 2. cost
        value = float(cost.data)
        if not math.isfinite(value):
            return {"loss": value, "output": out.data}
        cost.backward()                                     # 3. backward
        if dp is not None:  # the global batch's loss and accuracy travel with the gradients
            correct = int((_labels_from_logits(out.data) == yb).sum()) if "accuracy" in self.metrics else 0
            dp.set_metrics(value * len(xb), correct, len(xb))
        self.optimizer.step()                               # 4. update
        return {"loss": value, "output": out.data}

    # --- the loop -----------------------------------------------------------------
    def fit(self, X, y, epochs=10, validation_data=None) -> History:
        """Train until ``epochs`` epochs are complete (counting resumed ones).

        ``X`` has shape (N, ...): (N, features) for an MLP, (N, C, H, W) for a CNN.
        """
        if not isinstance(epochs, numbers.Integral) or isinstance(epochs, bool) or epochs < 0:
            raise ValueError(f"epochs: expected a non-negative int, received {epochs!r}")
        X, y = _validate(X, y, self.loss_fn, self.dtype)
        val = self._validation(validation_data, X)
        n = X.shape[0]
        bs = n if self.batch_size is None else min(self.batch_size, n)
        self.epochs, self.n_train = int(epochs), n
        self.steps_per_epoch = -(-n // bs)
        order = self.sampler.state_dict().get("order") if self.in_epoch else None
        if order is not None and len(order) != n:
            raise ValueError(f"resume: the checkpoint was taken on {len(order)} training samples, received {n}")
        if not self._stop_pending:
            # NOTE: clear what an earlier fit left (e.g. EarlyStopping's flag), but keep a stop
            # requested since: a Ctrl-C between installing the handler and this line is not lost.
            self.stop_training = False
            self.interrupted = False
        self._dp = self._data_parallel(X, y)
        for cb in self.callbacks:
            cb.set_trainer(self)
        self._fit_t0 = time.perf_counter()
        self._call("on_train_begin", {})
        try:
            # NOTE: overflow warnings would only precede the divergence error, which says more.
            with np.errstate(over="ignore", invalid="ignore"):
                self._epochs_loop(X, y, val, bs)
        except BaseException:
            for cb in self.callbacks:
                if isinstance(cb, ProgressBar):
                    cb.close()
            raise
        finally:
            self.model.eval()
            self._elapsed_before, self._fit_t0 = self.elapsed, None
            self._stop_pending = False  # this fit has honoured it
            if self._dp is not None:
                self._dp.close()
                self._dp = None
        self._call("on_train_end", {})
        return self.history

    def _data_parallel(self, X, y):
        """Under ``mpiexec -n K`` (K > 1): shard the batches, average the gradients (gradbox.distributed)."""
        if self.distributed is False:
            return None
        from .. import distributed

        if not distributed.wanted(self.distributed):
            return None
        dp = distributed.DataParallel.for_trainer(self, X, y)
        if dp.comm.allreduce(int(self.stop_training)):  # a stop asked before this fit, on any rank
            self.stop_training = self.interrupted = self._stop_pending = True
        return dp

    def _validation(self, validation_data, X):
        if validation_data is None:
            return None
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
            raise ValueError("validation_data: expected a pair (X_val, y_val), "
                             f"received {type(validation_data).__name__}")
        val = _validate(*validation_data, self.loss_fn, self.dtype)
        if val[0].shape[1:] != X.shape[1:]:
            what = "features" if X.ndim == 2 else "samples of shape"
            theirs, mine = (val[0].shape[1], X.shape[1]) if X.ndim == 2 else (val[0].shape[1:], X.shape[1:])
            raise ValueError(f"validation_data: expected X_val with {mine} {what}, received {theirs}")
        return val

    def _epochs_loop(self, X, y, val, bs):
        """Epochs of steps, resumable at any step."""
        while self.epoch < self.epochs and not self.stop_training:
            epoch = self.epoch + 1
            if not self.in_epoch:
                self.sampler.end_epoch()
                self._partial = {"loss_sum": 0.0, "correct": 0, "seen": 0}
                self.in_epoch = True
            self.sampler.set_epoch(epoch)
            if self._epoch_t0 is None:
                self._epoch_t0 = time.perf_counter()
            self._call("on_epoch_begin", epoch, {})
            self.model.train()
            self._run_epoch(epoch, X, y, bs)
            if self.step < self.steps_per_epoch:
                break  # stopped mid-epoch: the checkpoint carries the position
            logs = self._epoch_logs()
            if val is not None:
                res = evaluate(self.model, *val, loss=self.loss_fn, batch_size=self.eval_batch_size,
                               confusion=False, _checked=True)
                logs["val_loss"] = res["loss"]
                if "accuracy" in self.metrics:
                    logs["val_accuracy"] = res["accuracy"]
            logs["time"] = time.perf_counter() - self._epoch_t0
            self.epoch, self.step, self._epoch_t0, self.in_epoch = epoch, 0, None, False
            self.sampler.end_epoch()
            self.history.append(epoch, logs)
            self._call("on_epoch_end", epoch, logs)

    def _epoch_logs(self):
        part = self._partial
        logs = {"loss": part["loss_sum"] / part["seen"]}
        if "accuracy" in self.metrics:
            logs["accuracy"] = part["correct"] / part["seen"]
        return logs

    def _run_epoch(self, epoch, X, y, bs):
        """The steps of one epoch from ``self.step``, until its end or a requested stop."""
        n, part, track_acc = X.shape[0], self._partial, "accuracy" in self.metrics
        # NOTE: one preallocated batch buffer of the samples' own shape, filled by np.take(out=...):
        # no allocation per step. In the plain order with one full batch, the data itself is the batch.
        xbuf = np.empty((bs,) + X.shape[1:], dtype=X.dtype)
        ybuf = np.empty((bs,) + y.shape[1:], dtype=y.dtype)
        whole = type(self.sampler) is RandomSampler and not self.sampler.shuffle
        for idx in self.sampler.batches(n, bs, start=self.step):
            s, k = self.step, idx.shape[0]
            if whole and k == n:
                xb, yb = X, y
            else:
                xb, yb = xbuf[:k], ybuf[:k]
                np.take(X, idx, axis=0, out=xb)
                np.take(y, idx, axis=0, out=yb)
            try:
                logs = self.train_step(xb, yb)
            except NonFiniteError as exc:
                # NOTE: the data were checked finite up front, so this is the network blowing up.
                raise self._diverged(epoch, s, f"{exc}") from None
            value = float(logs["loss"])
            if not math.isfinite(value):
                raise self._diverged(epoch, s, f"the loss is {value}")
            dp = self._dp
            if dp is not None and dp.step_metrics()[2]:
                loss_sum, correct, seen = dp.step_metrics()  # the global batch's, the same on every rank
                part["loss_sum"] += loss_sum
                part["seen"] += seen
                part["correct"] += correct
            else:
                part["loss_sum"] += value * k
                part["seen"] += k
                if track_acc and logs.get("output") is not None:
                    part["correct"] += int((_labels_from_logits(logs["output"]) == yb).sum())
            if dp is not None and dp.optimizer.stop_requested and not self.stop_training:
                self.stop_training = self.interrupted = self._stop_pending = True
            self.step = s + 1
            self.global_step += 1
            self._call("on_batch_end", self.step, self._epoch_logs())
            if self.stop_training and self.step < self.steps_per_epoch:
                break

    # --- checkpoints ----------------------------------------------------------------
    def state(self):
        """(arrays, metadata) of a checkpoint of the current position."""
        return checkpoint_state(self)

    def save_checkpoint(self, path, extra_metadata: dict | None = None) -> None:
        """Write a resumable checkpoint atomically (refuses a non-finite model).

        ``self.extra_metadata`` and ``self.extra_arrays`` (and ``extra_metadata`` here) are stored
        too, without overriding the checkpoint's own keys. Only the main process writes.
        """
        from .. import _world
        from ..io import model_to_spec, save, save_model

        arrays, meta = self.state()
        if not _world.is_main():
            return
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
        return restore_checkpoint(self, arrays, meta)


def fit(model, X, y, loss=None, optimizer=None, epochs=10, batch_size=32, validation_data=None, callbacks=(),
        shuffle=True, seed=None, metrics=("accuracy",), verbose=1, resume_from=None, sampler=None,
        distributed=None) -> History:
    """Train ``model`` on ``(X, y)`` with mini-batch gradient descent; returns the ``History``.

    Parameters
    ----------
    model : Module
    X : array (N, ...) -- (N, features), or (N, C, H, W) for a CNN; y : int labels (N,) (float targets for ``MSELoss``)
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
    sampler : sampler, optional
        The order of samples (default: ``RandomSampler(seed=seed, shuffle=shuffle)``).
    distributed : bool or None
        Data-parallel on MPI: automatic under ``mpiexec -n K`` (K > 1), ``False`` turns it off
        (see ``Trainer`` and ``docs/distributed.md``).

    Raises
    ------
    TrainingDiverged
        When the loss becomes NaN or inf (the message names epoch and step).
    """
    trainer = Trainer(model, loss, optimizer, batch_size=batch_size, shuffle=shuffle, seed=seed,
                      callbacks=callbacks, metrics=metrics, verbose=verbose, sampler=sampler,
                      distributed=distributed)
    if resume_from is not None:
        trainer.load_checkpoint(resume_from)
    return trainer.fit(X, y, epochs=epochs, validation_data=validation_data)
