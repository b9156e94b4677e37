"""The checkpoint format: everything the next training step depends on, in one gradbox file.

A checkpoint holds the weights (and buffers), the optimizer's buffers and step count, the
sampler's generator and the current epoch's order and position, gradbox's default generator
(dropout), the history and the callbacks' state, so an interrupted run resumed from it ends
bit-identical to one that never stopped. A ``Sequential``'s checkpoint is also a model file.

Layout (metadata ``format: "gradbox-checkpoint"``, ``version: 1``): arrays ``model.<name>``,
``optim.<i>.<buffer>``, ``trainer.perm`` (the epoch's order, while an epoch is in progress) and
``callback.<i>.<name>``; metadata ``epoch``, ``step``, ``global_step``, ``optimizer``, ``rng``,
``partial``, ``history``, ``callbacks``, ``parameters`` and the caller's own records.
"""
from __future__ import annotations

import json

import numpy as np

from ..random import get_rng_state, set_rng_state
from .history import History

__all__ = ["CHECKPOINT_FORMAT", "CHECKPOINT_VERSION", "checkpoint_state", "load_checkpoint_file",
           "restore_checkpoint"]

CHECKPOINT_FORMAT = "gradbox-checkpoint"
CHECKPOINT_VERSION = 1


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the message names the epoch and step."""


def _encode_rng(state: dict) -> str:
    # NOTE: PCG64 states are 128-bit ints; a JSON string keeps them exact in any reader.
    return json.dumps(state)


def _decode_rng(text: str) -> dict:
    return json.loads(text)


def load_checkpoint_file(path):
    """(arrays, metadata) of a checkpoint, checking that it is one."""
    from ..io import load_with_metadata

    arrays, meta = load_with_metadata(path)
    if not isinstance(meta, dict) or meta.get("format") != CHECKPOINT_FORMAT:
        got = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise ValueError(f"checkpoint {path}: expected a {CHECKPOINT_FORMAT!r} file, received format {got!r}")
    if meta.get("version") != CHECKPOINT_VERSION:
        raise ValueError(f"checkpoint {path}: expected version {CHECKPOINT_VERSION}, received {meta.get('version')!r}")
    return arrays, meta


def checkpoint_state(trainer):
    """(arrays, metadata) of a checkpoint of ``trainer``'s current position."""
    arrays, cb_meta = {}, []
    for name, value in trainer.model.state_dict().items():
        if value.dtype.kind == "f" and not np.all(np.isfinite(value)):
            raise TrainingDiverged(f"checkpoint: parameter {name!r} holds NaN or inf; not writing it")
        arrays[f"model.{name}"] = np.array(value, copy=True)
    sd = trainer.optimizer.state_dict()
    for key, value in sd["state"].items():
        arrays[f"optim.{key}"] = value
    sampler = trainer.sampler.state_dict()
    in_epoch = trainer.in_epoch
    if in_epoch and sampler.get("order") is not None:
        arrays["trainer.perm"] = np.asarray(sampler["order"], dtype=np.int64)
    for i, cb in enumerate(trainer.callbacks):
        meta, cb_arrays = cb.get_state()
        cb_meta.append({"class": type(cb).__name__, "index": i, "state": meta})
        for k, v in cb_arrays.items():
            arrays[f"callback.{i}.{k}"] = np.asarray(v)
    meta = {
        "format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION,
        "epoch": trainer.epoch, "step": trainer.step, "global_step": trainer.global_step,
        "epochs": trainer.epochs, "elapsed": trainer.elapsed,
        "batch_size": trainer.batch_size, "shuffle": trainer.shuffle, "seed": trainer.seed,
        "optimizer": {"type": sd["type"], "hyper": sd["hyper"], "step_count": sd["step_count"]},
        "rng": {"shuffle": _encode_rng(sampler["rng"]), "gradbox": _encode_rng(get_rng_state())},
        "partial": dict(trainer._partial) if in_epoch else None,
        "history": trainer.history.as_dict(),
        "callbacks": cb_meta,
        "parameters": [name for name, _ in trainer.model.named_parameters()],
    }
    # the caller's own records (e.g. the run's dataset and normalisation), under names of their own
    for key, value in trainer.extra_metadata.items():
        meta.setdefault(key, value)
    for key, value in trainer.extra_arrays.items():
        arrays.setdefault(key, value)
    return arrays, meta


# NOTE: ranges of the optimizer hyperparameters a checkpoint may carry (PyTorch's own checks);
# a forged checkpoint with valid checksums could otherwise set lr = -0.5.
_HYPER_RANGES = {
    "lr": (lambda v: v > 0, "a positive number"),
    "weight_decay": (lambda v: v >= 0, "a number >= 0"),
    "momentum": (lambda v: 0 <= v < 1, "a number in [0, 1)"),
    "dampening": (lambda v: 0 <= v <= 1, "a number in [0, 1]"),
    "alpha": (lambda v: 0 <= v < 1, "a number in [0, 1)"),
    "eps": (lambda v: v > 0, "a positive number"),
    "betas": (lambda v: 0 <= v < 1, "two numbers in [0, 1)"),
}


def _check_int(who, name, value, low=0):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{who}: expected {name} to be an integer >= {low}, received {value!r:.60}")
    return int(value)


def check_hyperparameters(hyper, who="resume") -> None:
    """Refuse non-finite or out-of-range optimizer hyperparameters (a forged or damaged checkpoint)."""
    import math
    import numbers

    if not isinstance(hyper, dict):
        raise ValueError(f"{who}: expected the optimizer's hyperparameters as a table, received "
                         f"{type(hyper).__name__}")
    for key, value in hyper.items():
        values = value if isinstance(value, (list, tuple)) else [value]
        for v in values:
            if isinstance(v, bool) or v is None or isinstance(v, str):
                continue
            if not isinstance(v, numbers.Real) or not math.isfinite(v):
                raise ValueError(f"{who}: expected the optimizer's {key} to be a finite number, received {v!r:.60}")
            ok, what = _HYPER_RANGES.get(key, (None, None))
            if ok is not None and not ok(v):
                raise ValueError(f"{who}: expected the optimizer's {key} to be {what}, received {value!r:.60}")


def restore_checkpoint(trainer, arrays, meta) -> dict:
    """Put ``trainer`` where the checkpoint ``(arrays, meta)`` was taken; returns ``meta``.

    Everything is checked before anything changes: a checkpoint of another model, optimizer or
    batch size raises ``ValueError`` and leaves the trainer as it was.
    """
    who = "resume"
    try:
        o = meta["optimizer"]
        rng_shuffle, rng_global = _decode_rng(meta["rng"]["shuffle"]), _decode_rng(meta["rng"]["gradbox"])
        epoch, step, global_step = int(meta["epoch"]), int(meta["step"]), int(meta["global_step"])
        history = History.from_dict(meta["history"])
        partial = dict(meta["partial"]) if meta.get("partial") is not None else None
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{who}: expected a complete gradbox checkpoint, received one without {exc}") from None
    epoch = _check_int(who, "the epoch", meta["epoch"])
    step = _check_int(who, "the step", meta["step"])
    global_step = _check_int(who, "the optimizer step", meta["global_step"])
    if global_step < step:
        raise ValueError(f"{who}: expected the optimizer step ({global_step}) to count at least the epoch's "
                         f"steps ({step})")
    if len(history) != epoch:
        raise ValueError(f"{who}: expected a history of {epoch} epochs (the checkpoint's epoch), "
                         f"received {len(history)}")
    check_hyperparameters(o.get("hyper") if isinstance(o, dict) else None, who)
    perm = arrays.get("trainer.perm")
    if perm is not None:
        perm = np.asarray(perm)
        # NOTE: the epoch's order must visit every sample once (an all-zero order trains on sample 0 only).
        if perm.ndim != 1 or perm.dtype.kind not in "iu" or not np.array_equal(np.sort(perm), np.arange(perm.size)):
            raise ValueError(f"{who}: expected the epoch's shuffle order (trainer.perm) to be a permutation of "
                             f"range({perm.size}), received one that is not")
    elif step > 0:
        raise ValueError(f"{who}: expected the epoch's shuffle order (trainer.perm) with step {step} of an epoch "
                         f"in progress, received none")
    if o["type"] != type(trainer.optimizer).__name__:
        raise ValueError(f"{who}: expected a checkpoint of a {type(trainer.optimizer).__name__} optimizer, "
                         f"received {o['type']}")
    if meta.get("batch_size") != trainer.batch_size or meta.get("shuffle") != trainer.shuffle:
        raise ValueError(f"{who}: expected batch_size={meta.get('batch_size')} and shuffle={meta.get('shuffle')} "
                         f"as in the checkpoint, received batch_size={trainer.batch_size}, shuffle={trainer.shuffle}")
    weights = {k[len("model."):]: v for k, v in arrays.items() if k.startswith("model.")}
    opt_state = {k[len("optim."):]: v for k, v in arrays.items() if k.startswith("optim.")}
    backup_w, backup_o = trainer.model.state_dict(), trainer.optimizer.state_dict()
    backup_s = trainer.sampler.state_dict()
    try:
        trainer.model.load_state_dict(weights)
        trainer.optimizer.load_state_dict({"type": o["type"], "hyper": o["hyper"], "step_count": o["step_count"],
                                           "state": opt_state})
        trainer.sampler.load_state_dict({"rng": rng_shuffle, "order": perm})
        set_rng_state(rng_global)
    except (ValueError, TypeError, KeyError):
        trainer.model.load_state_dict(backup_w)
        trainer.optimizer.load_state_dict(backup_o)
        trainer.sampler.load_state_dict(backup_s)
        raise
    trainer.epoch, trainer.step, trainer.global_step = epoch, step, global_step
    trainer.in_epoch = perm is not None
    if partial is not None:
        trainer._partial = partial
    trainer.history = history
    trainer._elapsed_before = float(meta.get("elapsed", 0.0))
    trainer._epoch_t0 = None
    # callbacks: the k-th callback of a class takes the state of the k-th saved one of that class
    saved = {}
    for entry in meta.get("callbacks", []):
        saved.setdefault(entry["class"], []).append(entry)
    for cb in trainer.callbacks:
        queue = saved.get(type(cb).__name__)
        if queue:
            entry = queue.pop(0)
            prefix = f"callback.{entry['index']}."
            cb.set_state(entry["state"], {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)})
    trainer._resumed_meta = meta
    return meta
