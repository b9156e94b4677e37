"""The course's cat classifier, twice: with ``gradbox.course`` and with the engine.

Trains the 2-layer model (12288, 7, 1) and the L-layer model [12288, 20, 7, 5, 1]
with learning rate 0.0075 for 2,500 iterations of full-batch gradient descent,
once with the notes' column-layout functions (``gradbox.course``) and once with
``nn.Sequential`` + ``BCEWithLogitsLoss`` + ``optim.SGD`` starting from the same
weights, and prints the accuracies beside the published figures.

Run::

    python examples/cat_classifier.py --train ../shared/data/train_catvnoncat.h5 \\
                                      --test ../shared/data/test_catvnoncat.h5

``--iterations 20`` gives a fast run (used by ``tests/test_examples.py``).
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

import gradbox as gb
from gradbox import course

# The course's published results after 2,500 iterations.
PUBLISHED = {"2-layer": {"train": 1.0, "test": 0.72}, "L-layer": {"train": 0.9856, "test": 0.80}}
TWO_LAYER = (12288, 7, 1)
L_LAYER = [12288, 20, 7, 5, 1]

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_DATA = os.path.normpath(os.path.join(HERE, "..", "..", "shared", "data"))


def load_h5(path, split):
    """Images flattened to the notes' (12288, m) columns scaled to [0, 1], labels (1, m)."""
    try:
        import h5py
    except ImportError:
        raise ImportError("reading the cat images needs h5py: pip install h5py (or gradbox[hdf5])") from None

    if not os.path.exists(path):
        raise FileNotFoundError(f"--{split}: expected an HDF5 file, received {path!r} (no such file)")
    with h5py.File(path, "r") as f:
        x = np.asarray(f[f"{split}_set_x"])
        y = np.asarray(f[f"{split}_set_y"])
    X = x.reshape(x.shape[0], -1).T / 255.0
    return X, y.reshape(1, -1).astype(np.float64)


def engine_train(X, Y, parameters, learning_rate, num_iterations):
    """Full-batch SGD with the engine from the course's initial weights.

    NOTE: BCEWithLogitsLoss takes the *logit* Z[L]; its gradient (σ(z) - y)/m is
    exactly the course's dZ[L] = dA[L]·σ'(Z[L]) with the 1/m of dW folded in.
    """
    model = course.to_module(parameters)
    loss_fn = gb.nn.BCEWithLogitsLoss()
    opt = gb.optim.SGD(model.parameters(), lr=learning_rate)
    Xb, yb = gb.Tensor(X.T), Y.T  # batch-first
    costs = []
    for i in range(num_iterations + 1):
        loss = loss_fn(model(Xb), yb)
        if i % 100 == 0 or i == num_iterations:
            costs.append(loss.item())
        if i == num_iterations:
            break
        opt.zero_grad()
        loss.backward()
        opt.step()
    return course.from_module(model), costs


def run(train_path, test_path, iterations=2500, learning_rate=0.0075, verbose=True):
    """Train the four models; return a dict of results (used by the test)."""
    X_train, Y_train = load_h5(train_path, "train")
    X_test, Y_test = load_h5(test_path, "test")
    out = {}
    for name, dims in (("2-layer", TWO_LAYER), ("L-layer", L_LAYER)):
        init = (course.initialize_parameters(*dims) if name == "2-layer" else course.initialize_parameters_deep(dims))
        t0 = time.perf_counter()
        if name == "2-layer":
            p_course, c_course = course.two_layer_model(X_train, Y_train, dims, learning_rate, iterations)
        else:
            p_course, c_course = course.L_layer_model(X_train, Y_train, dims, learning_rate, iterations)
        t1 = time.perf_counter()
        p_engine, c_engine = engine_train(X_train, Y_train, init, learning_rate, iterations)
        t2 = time.perf_counter()
        res = {
            "course": {"train": course.accuracy(X_train, Y_train, p_course),
                       "test": course.accuracy(X_test, Y_test, p_course), "costs": c_course, "seconds": t1 - t0},
            "engine": {"train": course.accuracy(X_train, Y_train, p_engine),
                       "test": course.accuracy(X_test, Y_test, p_engine), "costs": c_engine, "seconds": t2 - t1},
            "max_weight_diff": max(float(np.max(np.abs(p_course[k] - p_engine[k]))) for k in p_course),
        }
        out[name] = res
        if verbose:
            print(f"\n{name} model {list(dims)}, learning rate {learning_rate}, {iterations} iterations")
            print(f"  {'':<10}{'train acc':>10}{'test acc':>10}{'final cost':>12}{'seconds':>9}")
            for who in ("course", "engine"):
                r = res[who]
                print(f"  {who:<10}{r['train']:>10.4f}{r['test']:>10.4f}{r['costs'][-1]:>12.6f}{r['seconds']:>9.1f}")
            pub = PUBLISHED[name]
            note = "" if iterations == 2500 else "  (published after 2500 iterations)"
            print(f"  {'published':<10}{pub['train']:>10.4f}{pub['test']:>10.4f}{note}")
            print(f"  largest |W_course - W_engine| after training: {res['max_weight_diff']:.2e}")
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", default=os.path.join(DEFAULT_DATA, "train_catvnoncat.h5"))
    parser.add_argument("--test", default=os.path.join(DEFAULT_DATA, "test_catvnoncat.h5"))
    parser.add_argument("--iterations", type=int, default=2500)
    parser.add_argument("--learning-rate", type=float, default=0.0075)
    args = parser.parse_args(argv)
    if args.iterations < 0:
        parser.error(f"--iterations: expected a non-negative int, received {args.iterations}")
    try:
        run(args.train, args.test, args.iterations, args.learning_rate)
    except (FileNotFoundError, ValueError, OSError, ImportError, KeyError) as exc:
        print(f"cat_classifier: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
