"""Paired micro-benchmark of one training step's forward + backward (issue 14: the version counter's cost).

A 784-256-128-10 ReLU MLP at batch 128 (float32, cross-entropy): forward, loss, backward.
The old tree's package is imported in the same process as ``gradbox_old`` (a temporary copy),
and the two versions run alternately in short blocks, so that the load of a shared machine
falls on both alike. Prints the median of the per-block ratios new/old.

    python bench/core_step.py OLD_TREE [blocks] [--tiny]

``--tiny`` runs a 4-8-3 MLP on one sample instead: the per-op overhead (Python, not
arithmetic) dominates there, so it shows the bookkeeping's cost magnified.

OLD_TREE is a directory holding a ``gradbox`` package (e.g. ``git archive <commit> gradbox``).
"""
import importlib
import os
import shutil
import statistics
import sys
import tempfile
import time

import numpy as np


def build(gb, sizes):
    nn = gb.nn
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers += [nn.Linear(a, b, rng=i), nn.ReLU()]
    model = nn.Sequential(*layers[:-1])
    return model, nn.CrossEntropyLoss(), list(model.parameters())


def block(setup, X, y, steps):
    model, loss_fn, params = setup
    t0 = time.perf_counter()
    for _ in range(steps):
        for p in params:
            p.grad = None
        loss_fn(model(X), y).backward()
    return (time.perf_counter() - t0) / steps


def main():
    args = [a for a in sys.argv[1:] if a != "--tiny"]
    tiny = "--tiny" in sys.argv
    old_tree = args[0]
    blocks = int(args[1]) if len(args) > 1 else 40
    sizes, batch = ((4, 8, 3), 1) if tiny else ((784, 256, 128, 10), 128)
    tmp = tempfile.mkdtemp()
    shutil.copytree(os.path.join(old_tree, "gradbox"), os.path.join(tmp, "gradbox_old"))
    sys.path.insert(0, tmp)
    old = importlib.import_module("gradbox_old")
    import gradbox as new

    rng = np.random.default_rng(0)
    X = rng.normal(size=(batch, sizes[0])).astype(np.float32)
    y = rng.integers(0, sizes[-1], size=batch)
    so, sn = build(old, sizes), build(new, sizes)
    for _ in range(3):  # warm up both
        block(so, X, y, 10), block(sn, X, y, 10)
    ratios, to, tn = [], [], []
    for b in range(blocks):
        if b % 2:
            n, o = block(sn, X, y, 10), block(so, X, y, 10)
        else:
            o, n = block(so, X, y, 10), block(sn, X, y, 10)
        ratios.append(n / o)
        to.append(o)
        tn.append(n)
    shutil.rmtree(tmp)
    print(f"MLP {'-'.join(map(str, sizes))}, batch {batch}")
    print(f"old median {statistics.median(to) * 1e6:.1f} us/step, new median {statistics.median(tn) * 1e6:.1f} us/step")
    q = statistics.quantiles(ratios, n=4)
    print(f"median ratio new/old over {blocks} paired blocks of 10 steps: {statistics.median(ratios):.4f} "
          f"(quartiles {q[0]:.4f}, {q[2]:.4f})")


if __name__ == "__main__":
    main()
