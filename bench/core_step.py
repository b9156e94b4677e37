"""Paired micro-benchmark of one training step's forward + backward (issue 14: the version counter's cost).

Runs a 784-256-128-10 ReLU MLP at batch 128 (float32, cross-entropy) in a child process per
tree, alternating the trees, and prints the per-round ratio of median step times.

    python bench/core_step.py OLD_TREE NEW_TREE [rounds]

Each tree is a directory holding a ``gradbox`` package. The machine may be shared: read the
median of the paired ratios, not one number.
"""
import os
import statistics
import subprocess
import sys

CHILD = r"""
import time, numpy as np, gradbox as gb
from gradbox import nn
rng = np.random.default_rng(0)
model = nn.Sequential(nn.Linear(784, 256, rng=0), nn.ReLU(), nn.Linear(256, 128, rng=1), nn.ReLU(),
                      nn.Linear(128, 10, rng=2))
loss_fn = nn.CrossEntropyLoss()
X = rng.normal(size=(128, 784)).astype(np.float32)
y = rng.integers(0, 10, size=128)
params = list(model.parameters())
times = []
for i in range(%d):
    t0 = time.perf_counter()
    for p in params:
        p.grad = None
    loss_fn(model(X), y).backward()
    times.append(time.perf_counter() - t0)
print(sorted(times)[len(times) // 2])
"""


def run(tree, steps):
    env = dict(os.environ, PYTHONPATH=os.path.abspath(tree), OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", CHILD % steps], env=env, capture_output=True, text=True, check=True)
    return float(out.stdout.strip())


def main():
    old, new = sys.argv[1], sys.argv[2]
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 10
    ratios = []
    for r in range(rounds):
        if r % 2:
            n, o = run(new, 400), run(old, 400)
        else:
            o, n = run(old, 400), run(new, 400)
        ratios.append(n / o)
        print(f"round {r}: old {o * 1e6:8.1f} us  new {n * 1e6:8.1f} us  new/old {n / o:.4f}", flush=True)
    print(f"median ratio new/old over {rounds} rounds: {statistics.median(ratios):.4f} "
          f"(min {min(ratios):.4f}, max {max(ratios):.4f})")


if __name__ == "__main__":
    main()
