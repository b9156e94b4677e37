"""Paired before/after check for the redesign (issue 12, property 11): old and new gradbox in one process.

Three rows, each the median of per-block ratios new/old over alternating blocks (the load of a
shared machine falls on both alike):
- a training step (forward, cross-entropy, backward, SGD-momentum step) of the 784-256-128-10 MLP
  at batch 128 and 512;
- single-sample inference latency (``model(x)`` under ``no_grad``) of the 64-256-128-10 MLP.

    python bench/redesign_pair.py OLD_TREE [blocks]

OLD_TREE holds the old ``gradbox`` package (e.g. a checkout of 0.1); it is imported as ``gradbox_old``.
"""
import importlib
import os
import shutil
import statistics
import sys
import tempfile
import time

import numpy as np


def mlp(gb, sizes):
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers += [gb.nn.Linear(a, b, rng=i), gb.nn.ReLU()]
    return gb.nn.Sequential(*layers[:-1])


def train_setup(gb, batch):
    model = mlp(gb, (784, 256, 128, 10))
    opt = gb.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(batch, 784)).astype(np.float32)
    y = rng.integers(0, 10, size=batch)
    loss_fn = gb.nn.CrossEntropyLoss()

    def step():
        opt.zero_grad()
        loss_fn(model(X), y).backward()
        opt.step()
    return step


def latency_setup(gb):
    model = mlp(gb, (64, 256, 128, 10)).eval()
    x = np.random.default_rng(0).normal(size=(1, 64)).astype(np.float32)

    def step():
        with gb.no_grad():
            model(x)
    return step


def paired(old_step, new_step, blocks, reps):
    def run(f):
        t0 = time.perf_counter()
        for _ in range(reps):
            f()
        return (time.perf_counter() - t0) / reps
    for _ in range(3):
        run(old_step), run(new_step)
    ratios, to, tn = [], [], []
    for b in range(blocks):
        if b % 2:
            n, o = run(new_step), run(old_step)
        else:
            o, n = run(old_step), run(new_step)
        ratios.append(n / o), to.append(o), tn.append(n)
    q = statistics.quantiles(ratios, n=4)
    return statistics.median(to), statistics.median(tn), statistics.median(ratios), q[0], q[2]


def main():
    old_tree = sys.argv[1]
    blocks = int(sys.argv[2]) if len(sys.argv) > 2 else 30
    tmp = tempfile.mkdtemp()
    shutil.copytree(os.path.join(old_tree, "gradbox"), os.path.join(tmp, "gradbox_old"))
    sys.path.insert(0, tmp)
    old = importlib.import_module("gradbox_old")
    import gradbox as new
    try:
        rows = [("train step, batch 128", train_setup(old, 128), train_setup(new, 128), 5),
                ("train step, batch 512", train_setup(old, 512), train_setup(new, 512), 2),
                ("single-sample latency", latency_setup(old), latency_setup(new), 2000)]
        print("| row | old (us) | new (us) | median new/old | quartiles |\n|---|---|---|---|---|")
        for name, so, sn, reps in rows:
            o, n, r, q1, q3 = paired(so, sn, blocks, reps)
            print(f"| {name} | {o * 1e6:.1f} | {n * 1e6:.1f} | {r:.3f} | {q1:.3f}-{q3:.3f} |", flush=True)
    finally:
        shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
