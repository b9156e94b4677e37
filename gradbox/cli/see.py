"""``gradbox graph`` and ``gradbox explain``: look inside a network.

Given a model file, both run on the model's own data (the recorded dataset's test part, as
``gradbox evaluate``), with its stored preprocessing and its own learning rate, so what they show is
what the trained model does. ``--dataset`` picks other data; a model file that records no dataset
is explained on the digits (standardised as ``gradbox train`` does).
"""
from __future__ import annotations

import os
import sys

import numpy as np

from .main import add_common, usage_error
from .model import _add_dataset_flags, _eval_data, load_model_file

__all__ = ["cmd_explain", "cmd_exercise", "cmd_graph", "register", "report_page", "write_page"]


def register(sub) -> None:
    from ..viz import EXAMPLES

    p = sub.add_parser(
        "graph", help="draw a computational graph (values forward, gradients backward)",
        description="Draw a computational graph as Graphviz DOT/SVG/PNG: a worked example from the notes "
                    "(--example) or the graph of a saved model on a small batch of its own data (MODEL).",
    )
    p.add_argument("model", nargs="?", help="a model file saved by gradbox (draws its forward/backward graph)")
    p.add_argument("--example", choices=EXAMPLES, help="purchase, purchase-simple, gates or mlp")
    p.add_argument("--out", help="output file: .svg, .png, .pdf or .dot (default: print DOT on stdout)")
    p.add_argument("--batch", type=int, default=4, help="batch size for a MODEL graph (default 4)")
    _add_page_flags(p, "with --example: write the graph as a page that backpropagates one gate at a time")
    _add_dataset_flags(p, "data for a MODEL graph (default: the model's own test data)")
    add_common(p)
    p.set_defaults(func=cmd_graph)

    p = sub.add_parser(
        "explain", help="one forward+backward pass, reported layer by layer in the notes' terms",
        description="Run one forward and backward pass on a batch and print, per layer, the shapes "
                    "(batch-first and the notes' (n[l], m)), gradient norms, update/weight ratios, dead "
                    "ReLUs and saturated units, with warnings for vanishing or exploding gradients.",
    )
    p.add_argument("model", nargs="?", help="a model file saved by gradbox (default: a fresh 64-32-classes MLP)")
    _add_dataset_flags(p, "data (default: the model's own test data, or digits)")
    p.add_argument("--batch", type=int, default=64, help="batch size m (default 64)")
    p.add_argument("--lr", type=float,
                   help="learning rate for lr·‖dW‖/‖W‖ (default: the model's own, else 0.001)")
    p.add_argument("--seed", type=int, default=0, help="seed of the batch and of a fresh model (default 0)")
    _add_page_flags(p, "write one iteration, box by box, as a self-contained HTML page instead of the table")
    add_common(p)
    p.set_defaults(func=cmd_explain)

    # gradbox exercise: see gradbox/exercise.py
    from ..exercise import add_arguments

    p = sub.add_parser("exercise", help="check a learner's course functions against gradbox.course",
                       description="Run each function of FILE.py that carries a course name (linear_forward, "
                                   "linear_backward, relu_backward, L_model_backward, update_parameters, "
                                   "conv_forward, pool_backward, ...) against gradbox.course and report every "
                                   "output; exit 1 if any is wrong.")
    add_arguments(p)
    add_common(p)
    p.set_defaults(func=cmd_exercise)


def _add_page_flags(p, html_help):
    p.add_argument("--html", metavar="PAGE", help=html_help)
    p.add_argument("--lang", choices=("en", "ko"), default="en", help="language of the page or of the text report (en, ko)")


def cmd_exercise(args) -> int:
    from ..exercise import run

    return run(args)


def _positive(value, name):
    if value is None or value <= 0:
        raise usage_error(f"{name}: expected a positive int, received {value}")
    return value


def _records_data(mf) -> bool:
    rec = mf.metadata.get("dataset") if isinstance(mf.metadata, dict) else None
    return isinstance(rec, dict) and "source" in rec


def _standardised(X):
    """Flat features standardised with their own statistics (what ``gradbox train`` does)."""
    from ..data import Standardizer

    flat = X.reshape(len(X), -1).astype(np.float64)
    return Standardizer().fit(flat).transform(flat).reshape(X.shape)


def _model_batch(args, mf, size, default_dataset):
    """(X, y, description) of a batch of the model's data, preprocessed as the model expects."""
    if args.dataset is None and not _records_data(mf):
        if default_dataset is None:
            return None
        args.dataset = default_dataset
    X, y, what, _ = _eval_data(args, mf)
    if not _records_data(mf) and "norm.mean" not in mf.arrays:
        X = _standardised(np.asarray(X))  # NOTE: a bare model file: standardise as training does
    X = mf.preprocess(X, "--dataset")
    rng = np.random.default_rng(getattr(args, "seed", 0) or 0)
    idx = np.sort(rng.choice(len(X), size=min(size, len(X)), replace=False))
    return X[idx], np.asarray(y)[idx].astype(np.int64), what


def _model_lr(mf):
    hp = mf.metadata.get("hyperparameters") if isinstance(mf.metadata, dict) else None
    lr = hp.get("lr") if isinstance(hp, dict) else None
    return lr if isinstance(lr, (int, float)) and not isinstance(lr, bool) and lr > 0 else None


# --- graph -------------------------------------------------------------------------
def cmd_graph(args) -> int:
    from .. import viz

    if args.example and args.model:
        raise usage_error("give either MODEL or --example, not both")
    if not args.example and not args.model:
        raise usage_error("expected MODEL or --example purchase|purchase-simple|gates|mlp")
    if args.html:
        from ..page import write_graph_page

        if not args.example:
            raise usage_error("--html: expected --example purchase|purchase-simple|gates|mlp (a MODEL's page is "
                              "gradbox explain MODEL --html PAGE)")
        write_graph_page(args.html, args.example, args.lang)
        if not args.quiet:
            print(f"wrote {args.html}")
        return 0
    graph = viz.example_graph(args.example) if args.example else _model_graph(args)
    if args.out:
        import warnings

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            written = graph.save(args.out)
        for w in caught:
            print(str(w.message), file=sys.stderr)
        print(f"wrote {written}")
    else:
        sys.stdout.write(graph.source)
    return 0


def _model_graph(args):
    from .. import Tensor, nn, viz
    from ..train.inference import _model_dtype, model_input_shape

    _positive(args.batch, "--batch")
    mf = load_model_file(args.model)
    model = mf.model
    batch = _model_batch(args, mf, args.batch, None)
    if batch is not None:
        Xb, yb, what = batch
        label = f"{len(Xb)} samples of {what.split(' (')[0]}"
    else:
        shape = model_input_shape(mf)
        if shape is None:
            raise usage_error("--dataset: the model file records neither a dataset nor an input shape; "
                              "pass --dataset NAME|PATH")
        # NOTE: no data recorded: standard normal inputs, as standardised data would be, and said so.
        rng = np.random.default_rng(0)
        Xb = rng.normal(size=(args.batch, *shape)).astype(_model_dtype(model))
        yb, label = None, f"a random batch of {args.batch} (the model file records no dataset)"
    X = Tensor(Xb, name="X")
    if isinstance(model, nn.Sequential):
        model.fuse_layers = False  # NOTE: the boxes of the layers as written (Sequential's Notes)
    out = model(X)
    if out.ndim == 2 and out.shape[1] > 1:
        rand = yb is None
        y = np.random.default_rng(0).integers(0, out.shape[1], size=len(Xb)) if rand else yb
        loss = nn.CrossEntropyLoss()(out, Tensor(y, name="y (random labels)" if rand else "y"))
    else:
        y = np.random.default_rng(0).integers(0, 2, size=out.shape) if yb is None else yb.reshape(out.shape)
        loss = nn.BCEWithLogitsLoss()(out, Tensor(y.astype(out.dtype), name="y"))
    loss.name = "loss"
    for name, p in model.named_parameters():
        p.name = name
    viz.retain_grads(loss)
    loss.backward()
    return viz.draw_graph(loss, title=f"{os.path.basename(args.model)} on {label}")


# --- explain -----------------------------------------------------------------------
def cmd_explain(args) -> int:
    from ..report import explain

    _positive(args.batch, "--batch")
    if args.lr is not None and not args.lr > 0:
        raise usage_error(f"--lr: expected a positive learning rate, received {args.lr}")
    if args.model:
        mf = load_model_file(args.model)
        Xb, yb, what = _model_batch(args, mf, args.batch, "digits")
        model, source = mf.model, args.model
        lr = args.lr or _model_lr(mf) or _default_lr()
    else:
        model, Xb, yb, what, source = _fresh(args)
        lr = args.lr or _default_lr()
    if args.html:
        history = _run_history(args.model) if args.model else None
        write_page(args.html, model, Xb, yb, lr, args.lang, history, None if args.quiet else print)
        return 0
    from ..page.i18n import t

    print(t(args.lang, "report_source", source=source, what=what, m=len(Xb)))
    print(explain(model, Xb, yb, lr=lr, lang=args.lang))
    return 0


def write_page(path, model, Xb, yb, lr, lang, history, log=print):
    """The explain page of one batch (``gradbox explain --html``, ``gradbox train --report``)."""
    from ..page import write_explain_page

    page = write_explain_page(path, model, Xb, yb, lr=lr, lang=lang, history=history)
    if log is not None:
        log(f"wrote {path} ({page.size_bytes / 1e6:.1f} MB): one iteration on a batch of {len(Xb)}, box by box")


def _run_history(model_path):
    """The per-epoch history of the run folder holding ``model_path`` (metrics.json), if any."""
    import json

    folder = model_path if os.path.isdir(model_path) else os.path.dirname(os.path.abspath(model_path))
    try:
        with open(os.path.join(folder, "metrics.json"), encoding="utf-8") as f:
            history = json.load(f).get("history")
    except (OSError, ValueError, AttributeError):
        return None
    return history if isinstance(history, dict) else None


def report_page(run, lang="en", log=print, batch=64):
    """``gradbox train --report``: RUN/explain.html for a finished run, on a batch of its own test data."""
    import argparse

    mf = load_model_file(os.path.join(run.out, "model.gbx"))
    args = argparse.Namespace(dataset=None, target=None, n_samples=None, noise=None, seed=0)
    Xb, yb, _ = _model_batch(args, mf, batch, "digits")
    lr = _model_lr(mf) or _default_lr()
    write_page(os.path.join(run.out, "explain.html"), mf.model, Xb, yb, lr, lang, run.history, log)


def _default_lr():
    from ..train.presets import DEFAULT_LR

    return DEFAULT_LR["adam"]


def _fresh(args):
    """A fresh 64-32 MLP (He initialisation) and a standardised batch of ``--dataset`` (digits)."""
    from ..train import run

    # NOTE: `is None`, not `or`: an empty --dataset= is an error, not a request for the default.
    dataset = "digits" if args.dataset is None else args.dataset
    c = run.resolve_config({"dataset": dataset, "target": args.target, "seed": args.seed,
                            "n_samples": args.n_samples, "noise": args.noise, "hidden": [64, 32], "dropout": 0.0,
                            "val_split": 0.0, "test_split": 0.0, "activation": "relu", "init": "he_normal"})
    ds, (X, y, *_), _, shape = run.prepare_data(c)
    model, _ = run.build(c, ds.n_features, ds.n_classes, shape)
    rng = np.random.default_rng(args.seed)
    idx = np.sort(rng.choice(len(X), size=min(args.batch, len(X)), replace=False))
    source = f"a fresh MLP {run.architecture(model)} (He initialisation)"
    return model, X[idx], np.asarray(y)[idx].astype(np.int64), f"{ds.name} ({len(X)} examples, standardised)", source
