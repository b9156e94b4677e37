"""Wrong launches: usage: mpiexec -n K python errors.py mismatch|single"""
import sys

import numpy as np

from gradbox import distributed as dist

mode = sys.argv[1]
if mode == "single":
    try:
        dist.wanted(True)
    except RuntimeError as exc:
        print("ERROR:", exc)
        sys.exit(0)
    sys.exit("no error raised")
dist.init()
X = np.arange(20.0).reshape(10, 2)
if dist.rank() == 1:
    X[3, 1] = -1.0
try:
    dist.check_same_data(X, np.zeros(10))
except ValueError as exc:
    print(f"rank {dist.rank()} ERROR:", exc)
    sys.exit(0)
print("no error raised")
