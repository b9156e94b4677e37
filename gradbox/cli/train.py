"""``gradbox train``: parse the flags, call :mod:`gradbox.train.run`, print."""
from __future__ import annotations


from ..train import run
from .main import add_common, usage_error

__all__ = ["TRAIN_FLAGS", "cmd_train", "register", "train_config"]

TRAIN_FLAGS = {  # dest -> (flags, kwargs)
    "dataset": (["--dataset"], dict(metavar="NAME|PATH", help="digits (default), breast_cancer, spirals, moons, "
                                    "xor, blobs, or a .csv/.npz/.h5/IDX file")),
    "target": (["--target"], dict(metavar="COL", help="label column of a CSV file (default: the last)")),
    "hidden": (["--hidden"], dict(metavar="N,N", help="hidden layer sizes (default 256,128; 'none' for none)")),
    "conv": (["--conv"], dict(metavar="C,C", help="convolutional blocks before the hidden layers, one per "
                              "channel count: 3x3 conv (padding 1), activation, 2x2 max pooling (image data; "
                              "standardised per channel; defaults --epochs 30 --dropout 0.3)")),
    "batch_norm": (["--batch-norm"], dict(action="store_true", default=None,
                                          help="batch normalisation after every convolution and hidden layer")),
    "activation": (["--activation"], dict(help="relu (default), tanh, sigmoid or leaky_relu")),
    "optimizer": (["--optimizer"], dict(help="sgd, momentum, nesterov, rmsprop, adam (default) or adamw")),
    "lr": (["--lr"], dict(type=float, help="learning rate (default: 0.001 for adam/adamw/rmsprop, "
                                              "0.05 for momentum/nesterov, 0.1 for sgd)")),
    "momentum": (["--momentum"], dict(type=float, help="momentum of momentum/nesterov (default 0.9)")),
    "epochs": (["--epochs"], dict(type=int, help="epochs (default 50; 30 with --conv)")),
    "batch_size": (["--batch-size"], dict(metavar="N|full", help="mini-batch size or 'full' (default 32)")),
    "weight_decay": (["--weight-decay"], dict(type=float, help="L2 penalty (default 0; adamw: 0.01)")),
    "dropout": (["--dropout"], dict(type=float, help="dropout after each hidden layer (default 0.4; 0.3 with --conv)")),
    "init": (["--init"], dict(help="he_normal, he_uniform, xavier_normal, xavier_uniform or normal "
                                   "(default: he_normal for relu-like, xavier_normal for tanh/sigmoid)")),
    "seed": (["--seed"], dict(type=int, help="seed of the split, weights, dropout and shuffling (default 0)")),
    "val_split": (["--val-split"], dict(type=float, help="validation fraction (default 0.15)")),
    "test_split": (["--test-split"], dict(type=float, help="test fraction (default 0.15; ignored when the "
                                                               "dataset has its own test set)")),
    "patience": (["--patience"], dict(type=int, help="early stopping after N epochs without a better "
                                                     "validation loss; restores the best weights")),
    "restore_best_weights": (["--restore-best-weights"], dict(
        action="store_true", default=None, help="at the end, keep the weights of the epoch with the lowest "
        "validation loss (Keras's restore_best_weights); the summary names the epoch kept")),
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


def register(sub) -> None:
    p = sub.add_parser("train", help="train a classifier (no arguments: digits, >= 0.97 test accuracy)",
                       description="Train a classifier (an MLP, or a CNN with --conv) and write a run folder with "
                                   "model.gbx, metrics.json, history.csv and curves.png (and filters.png for a CNN). "
                                   "Flags override --config.")
    p.add_argument("--config", metavar="FILE.toml", help="TOML file of the same settings (keys as the flags)")
    for dest, (flags, kw) in TRAIN_FLAGS.items():
        if "action" not in kw:  # NOTE: a switch (store_true) takes no metavar
            kw = {"metavar": {int: "N", float: "X"}.get(kw.get("type"), "NAME"), **kw}
        p.add_argument(*flags, dest=dest, **kw)
    p.add_argument("--resume", metavar="DIR", help="continue the run in DIR exactly from its checkpoint.gbx")
    p.add_argument("--report", action="store_true", help="also write RUN/explain.html: one iteration of the "
                   "trained model, box by box (gradbox explain --html)")
    p.add_argument("--lang", choices=("en", "ko"), default="en", help="language of curves.png, filters.png and "
                   "--report's page (en, ko; Korean labels need a Hangul font such as fonts-noto-cjk)")
    add_common(p)
    p.set_defaults(func=cmd_train, data_parallel=True)  # NOTE: the one command every rank runs (issue 16)


def train_config(args) -> dict:
    """The resolved configuration of ``gradbox train`` arguments: defaults, then --config, then flags."""
    flags = {k: getattr(args, k) for k in TRAIN_FLAGS if getattr(args, k, None) is not None}
    file_cfg = run.read_config(args.config) if args.config else {}
    return run.resolve_config({**file_cfg, **flags})


def _log(args):
    if getattr(args, "quiet", False):
        return None
    return lambda text: print(text, flush=True)


def cmd_train(args) -> int:
    progress = not args.quiet
    if args.resume is None:
        finished = run.train(train_config(args), progress=progress, log=_log(args), lang=args.lang)
        _report(args, finished)
        return 0
    if args.config:
        raise usage_error("--resume: expected no --config (the run folder's config.json is used)")
    fixed = [k for k in run.RESUME_FIXED if getattr(args, k, None) is not None] + (["out"] if args.out else [])
    if fixed:
        raise usage_error(f"--resume uses the run's saved settings; remove --{fixed[0].replace('_', '-')} "
                          "(only --epochs may change)")
    finished = run.resume(args.resume, epochs=args.epochs, progress=progress, log=_log(args), lang=args.lang)
    _report(args, finished)
    return 0


def _report(args, finished):
    if getattr(args, "report", False):
        from .see import report_page

        report_page(finished, lang=args.lang, log=_log(args))
