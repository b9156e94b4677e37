"""An MLP on the UCI digits (8x8 images, 10 classes), with curves and an explain report.

1. ``gradbox.explain`` on the untrained network: shapes in both notations, gradient norms.
2. Training with ``gradbox.fit`` (Adam, mini-batches of 32) and a validation split.
3. The learning curves (``--curves digits_curves.png``) and the test accuracy.
4. ``gradbox.explain`` again after training.

Run::

    python examples/digits_mlp.py [--epochs 30] [--curves digits_curves.png]

``--epochs 2`` gives a fast run (used by ``tests/test_examples.py``).
"""
from __future__ import annotations

import argparse
import sys

import numpy as np

import gradbox as gb
from gradbox import nn


def load_digits():
    """(X, y): 1,797 x 64 pixel counts in 0..16 and labels 0..9, shipped inside gradbox."""
    ds = gb.datasets.load("digits")
    return ds.X, ds.y


def run(epochs=30, curves=None, seed=0, verbose=True):
    from gradbox.data import Standardizer, train_val_test_split

    X, y = load_digits()
    split = train_val_test_split(X.astype(np.float32), y.astype(np.int64), 0.15, 0.15, seed=seed)
    scaler = Standardizer().fit(split.X_train)
    Xtr, Xva, Xte = (scaler.transform(a).astype(np.float32) for a in (split.X_train, split.X_val, split.X_test))
    model = nn.Sequential(nn.Linear(64, 64, rng=seed), nn.ReLU(), nn.Linear(64, 32, rng=seed + 1), nn.ReLU(),
                          nn.Linear(32, 10, rng=seed + 2))
    lr = 1e-3
    before = gb.explain(model, Xtr[:64], split.y_train[:64], lr=lr)
    if verbose:
        print(f"train {len(Xtr)}, validation {len(Xva)}, test {len(Xte)} examples; 64 features, 10 classes\n")
        print("before training:")
        print(before, "\n")
    history = gb.fit(model, Xtr, split.y_train, loss="cross_entropy", optimizer=gb.optim.Adam(model.parameters(), lr=lr),
                     epochs=epochs, batch_size=32, validation_data=(Xva, split.y_val), seed=seed,
                     verbose=1 if verbose else 0)
    model.eval()
    with gb.no_grad():
        test_acc = float(np.mean(model(Xte).data.argmax(axis=1) == split.y_test))
    after = gb.explain(model, Xtr[:64], split.y_train[:64], lr=lr)
    if verbose:
        print("\nafter training:")
        print(after)
        h = history.history
        print(f"\nfinal train loss {h['loss'][-1]:.4f}, validation accuracy {h['val_accuracy'][-1]:.4f}, "
              f"test accuracy {test_acc:.4f}")
    if curves:
        from gradbox.plots import plot_history

        plot_history(history, curves, title="digits MLP 64-64-32-10 (Adam, lr 1e-3, batch 32)")
        if verbose:
            print(f"curves written to {curves}")
    return {"history": history, "test_accuracy": test_acc, "before": before, "after": after}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--curves", default=None, help="write the learning curves to this PNG")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.epochs <= 0:
        parser.error(f"--epochs: expected a positive int, received {args.epochs}")
    run(args.epochs, args.curves, args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
