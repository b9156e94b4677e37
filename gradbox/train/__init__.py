"""Training: ``fit``, ``Trainer``, ``History``, callbacks, exact checkpoints, ``evaluate`` and ``predict``.

One file per job:

- ``trainer.py``: ``Trainer`` (the loop; ``train_step`` is the unit of work) and ``fit``
- ``sampler.py``: ``RandomSampler``, the order of samples (a sharded one plugs in)
- ``callbacks.py``: ``Callback``, ``EarlyStopping``, ``ModelCheckpoint``, ``CSVLogger``, ``ProgressBar``
- ``history.py``: ``History``
- ``checkpoint.py``: the checkpoint format (save, validate, restore)
- ``inference.py``: ``predict``, ``predict_proba``, ``evaluate``, ``eval_mode``
- ``presets.py``: ``build_mlp``, ``make_optimizer`` and the CLI's name tables
- ``config.py``: a run's configuration (``DEFAULTS``, ``resolve_config``, TOML) and its errors
- ``run.py``: a whole run as a library API (config → data → model → fit → run folder, and resume)

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
from .callbacks import (CSVLogger, Callback, DivergenceMonitor, EarlyStopping, ModelCheckpoint, ProgressBar,
                        RestoreBestWeights)
from .checkpoint import CHECKPOINT_FORMAT, CHECKPOINT_VERSION, TrainingDiverged, load_checkpoint_file
from .history import History
from .inference import eval_mode, evaluate, predict, predict_logits, predict_proba
from .presets import (ACTIVATIONS, DEFAULT_INIT, DEFAULT_LR, OPTIMIZERS, build_mlp, make_optimizer,
                      optimizer_hyperparameters)
from .sampler import RandomSampler
from .trainer import Trainer, fit
from . import run  # noqa: E402 - the run API: gradbox.train.run.train(config), .resume(path)

__all__ = [
    "ACTIVATIONS",
    "OPTIMIZERS",
    "CSVLogger",
    "Callback",
    "DivergenceMonitor",
    "EarlyStopping",
    "History",
    "ModelCheckpoint",
    "ProgressBar",
    "RandomSampler",
    "RestoreBestWeights",
    "Trainer",
    "TrainingDiverged",
    "build_mlp",
    "eval_mode",
    "evaluate",
    "fit",
    "load_checkpoint_file",
    "make_optimizer",
    "predict",
    "predict_logits",
    "predict_proba",
]
