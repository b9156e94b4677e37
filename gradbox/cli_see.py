"""The ``gradbox graph`` and ``gradbox explain`` subcommands.

``gradbox.cli`` calls ``register(subparsers)``; each subcommand sets
``func=handler`` where ``handler(args) -> int`` is the exit code. Nothing else
from ``gradbox.cli`` is needed, so this module also runs on its own::

    python -m gradbox.cli_see graph --example purchase --out purchase.svg
    python -m gradbox.cli_see explain --dataset digits --batch 64
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np

__all__ = ["register", "graph_command", "explain_command", "main"]


class CommandError(Exception):
    """A user error: printed as one line on stderr, exit code 1."""


def register(subparsers) -> None:
    """Add ``graph`` and ``explain`` to an ``argparse`` subparsers object."""
    from .viz import EXAMPLES

    p = subparsers.add_parser(
        "graph", help="draw a computational graph (values forward, gradients backward)",
        description="Draw a computational graph as Graphviz DOT/SVG/PNG: a worked example from the notes "
                    "(--example) or the graph of a saved model on a small batch (MODEL).",
    )
    p.add_argument("model", nargs="?", help="a model file saved by gradbox (draws its forward/backward graph)")
    p.add_argument("--example", choices=EXAMPLES, help="purchase, purchase-simple, gates or mlp")
    p.add_argument("--out", help="output file: .svg, .png, .pdf or .dot (default: print DOT on stdout)")
    p.add_argument("--batch", type=int, default=4, help="batch size for a MODEL graph (default 4)")
    _add_debug(p)
    p.set_defaults(func=graph_command)

    p = subparsers.add_parser(
        "explain", help="one forward+backward pass, reported layer by layer in the notes' terms",
        description="Run one forward and backward pass on a batch and print, per layer, the shapes "
                    "(batch-first and the notes' (n[l], m)), gradient norms, update/weight ratios, dead "
                    "ReLUs and saturated units, with warnings for vanishing or exploding gradients.",
    )
    p.add_argument("model", nargs="?", help="a model file saved by gradbox (default: a fresh 64-32-classes MLP)")
    p.add_argument("--dataset", default="digits", help="dataset name for gradbox.datasets.load (default digits)")
    p.add_argument("--batch", type=int, default=64, help="batch size m (default 64)")
    p.add_argument("--lr", type=float, default=0.01, help="learning rate for lr·‖dW‖/‖W‖ (default 0.01)")
    p.add_argument("--seed", type=int, default=0, help="seed of the batch and of a fresh model (default 0)")
    _add_debug(p)
    p.set_defaults(func=explain_command)


def _add_debug(p):
    # NOTE: SUPPRESS keeps a --debug given before the subcommand from being reset to False.
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks on errors")


def _positive(value, name):
    if value is None or value <= 0:
        raise CommandError(f"{name}: expected a positive int, received {value}")
    return value


def _run(handler, args) -> int:
    try:
        return handler(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the CLI shows one line unless --debug
        if getattr(args, "debug", False):
            raise
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        # NOTE: the same one-line form as every other gradbox command.
        print(f"gradbox: error: {args.command_name}: {msg}", file=sys.stderr)
        return 2 if isinstance(exc, (FileNotFoundError, PermissionError)) else 1


# --- graph -------------------------------------------------------------------------
def _load_model(path):
    if not os.path.exists(path):
        raise FileNotFoundError(f"MODEL: no such file: {path}")
    from .io import load_model

    return load_model(path).model


def _model_input_width(model):
    from . import nn

    for m in model.modules():
        if isinstance(m, nn.Linear):
            return m.in_features, m.weight.dtype
    raise CommandError("MODEL: expected a model with a Linear layer")


def _graph(args) -> int:
    from . import viz

    if args.example and args.model:
        raise CommandError("give either MODEL or --example, not both")
    if not args.example and not args.model:
        raise CommandError("expected MODEL or --example purchase|purchase-simple|gates|mlp")
    if args.example:
        graph = viz.example_graph(args.example)
    else:
        from . import Tensor, nn

        _positive(args.batch, "--batch")
        model = _load_model(args.model)
        n_in, dtype = _model_input_width(model)
        rng = np.random.default_rng(0)
        X = Tensor(rng.normal(size=(args.batch, n_in)).astype(dtype), name="X")
        out = model(X)
        if out.ndim == 2 and out.shape[1] > 1:
            y = Tensor(rng.integers(0, out.shape[1], size=args.batch), name="y (random labels)")
            loss = nn.CrossEntropyLoss()(out, y)
        else:
            y = Tensor(rng.integers(0, 2, size=out.shape).astype(dtype), name="y (random labels)")
            loss = nn.BCEWithLogitsLoss()(out, y)
        loss.name = "loss"
        for name, p in model.named_parameters():
            p.name = name
        viz.retain_grads(loss)
        loss.backward()
        graph = viz.draw_graph(loss, title=f"{os.path.basename(args.model)} on a random batch of {args.batch}")
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


def graph_command(args) -> int:
    args.command_name = "graph"
    return _run(_graph, args)


# --- explain -----------------------------------------------------------------------
def _dataset_arrays(ds):
    """(X, y) from whatever ``gradbox.datasets.load`` returns (tuple, mapping or object)."""
    if isinstance(ds, tuple) and len(ds) == 2:
        return ds
    for xk, yk in (("X", "y"), ("X_train", "y_train"), ("data", "target")):
        if isinstance(ds, dict) and xk in ds and yk in ds:
            return ds[xk], ds[yk]
        if hasattr(ds, xk) and hasattr(ds, yk):
            return getattr(ds, xk), getattr(ds, yk)
    raise CommandError(f"--dataset: could not find X and y in the loaded {type(ds).__name__}")


def _load_dataset(name):
    try:
        from .datasets import load as load_dataset
    except ImportError:
        load_dataset = None
    if load_dataset is not None:
        return _dataset_arrays(load_dataset(name))
    # NOTE: without the loader (older installs), read the shipped NPZ directly, never with pickle.
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "datasets", f"{name}.npz")
    if not os.path.exists(path):
        raise CommandError(f"--dataset: expected a shipped dataset name such as 'digits', received {name!r}")
    with np.load(path, allow_pickle=False) as f:
        return f["X"], f["y"]


def _explain(args) -> int:
    from . import nn
    from .report import explain

    _positive(args.batch, "--batch")
    X, y = _load_dataset(args.dataset)
    X, y = np.asarray(X), np.asarray(y)
    if X.ndim != 2 or len(X) != len(y) or len(X) == 0:
        raise CommandError(f"--dataset {args.dataset}: expected X (m, n) and y (m,), received {X.shape} and {y.shape}")
    X = X.astype(np.float32)
    if X.max() > 1.0 or X.min() < -1.0:
        # NOTE: raw pixel counts (digits are 0..16) saturate units; scale to [0, 1] as training does.
        lo, hi = X.min(axis=0), X.max(axis=0)
        X = (X - lo) / np.where(hi > lo, hi - lo, 1)
    rng = np.random.default_rng(args.seed)
    idx = rng.choice(len(X), size=min(args.batch, len(X)), replace=False)
    Xb, yb = X[idx], y[idx]
    if args.model:
        model = _load_model(args.model)
        dtype = _model_input_width(model)[1]
        Xb = Xb.astype(dtype)
        source = args.model
    else:
        n_classes = int(y.max()) + 1 if y.dtype.kind in "iu" else 1
        out = 1 if n_classes <= 2 else n_classes
        model = nn.Sequential(nn.Linear(X.shape[1], 64, rng=args.seed), nn.ReLU(),
                              nn.Linear(64, 32, rng=args.seed + 1), nn.ReLU(), nn.Linear(32, out, rng=args.seed + 2))
        source = f"a fresh MLP {X.shape[1]}-64-32-{out} (He initialisation)"
    if y.dtype.kind in "iu":
        yb = yb.astype(np.int64)
    print(f"model: {source}; dataset: {args.dataset} ({len(X)} examples), batch of {len(Xb)}")
    print(explain(model, Xb, yb, lr=args.lr))
    return 0


def explain_command(args) -> int:
    args.command_name = "explain"
    return _run(_explain, args)


def main(argv=None) -> int:
    """``python -m gradbox.cli_see graph|explain ...`` (the same as ``gradbox graph|explain``)."""
    parser = argparse.ArgumentParser(prog="gradbox")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)
    register(sub)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
