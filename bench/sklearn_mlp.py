"""gradbox.sklearn.MLPClassifier vs scikit-learn's own MLPClassifier on the digits: accuracy and fit time.

    python bench/sklearn_mlp.py [--repeats 5] [--threads 1]

Same data (sklearn.datasets.load_digits, standardised, 75/25 stratified split), the same
parameters (scikit-learn's defaults: hidden_layer_sizes=(100,), adam, lr 1e-3, batch 200,
max_iter=200, tol 1e-4), seeds 0..repeats-1; the two libraries alternate run by run, so a shared
machine's noise falls on both. BLAS runs on ``--threads`` threads (threadpoolctl; default 1:
on a busy machine OpenBLAS's waiting threads slow small matrix products of both libraries up to
tenfold). Prints the median accuracy and fit time of each and the paired
ratio of fit times.
"""
import argparse
import platform
import statistics
import time
import warnings

from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier as SkMLP
from sklearn.preprocessing import StandardScaler

from gradbox.sklearn import MLPClassifier as GbMLP


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1, help="BLAS threads (0: leave as is)")
    args = ap.parse_args()
    if args.threads:
        from threadpoolctl import threadpool_limits

        threadpool_limits(args.threads)
    X, y = load_digits(return_X_y=True)
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)
    scaler = StandardScaler().fit(Xtr)
    Xtr, Xte = scaler.transform(Xtr), scaler.transform(Xte)
    runs = {"gradbox float64": [], "gradbox float32": [], "sklearn": []}
    makers = {"gradbox float64": lambda s: GbMLP(random_state=s), "gradbox float32": lambda s: GbMLP(random_state=s,
              dtype="float32"), "sklearn": lambda s: SkMLP(random_state=s)}
    warnings.simplefilter("ignore", ConvergenceWarning)
    for seed in range(args.repeats):
        order = list(runs) if seed % 2 == 0 else list(reversed(runs))
        for name in order:
            est = makers[name](seed)
            t0 = time.perf_counter()
            est.fit(Xtr, ytr)
            runs[name].append((est.score(Xte, yte), time.perf_counter() - t0, est.n_iter_))
    print(f"digits: {len(Xtr)} train / {len(Xte)} test, MLP (100,), adam, max_iter 200; "
          f"{args.repeats} seeds; BLAS threads {args.threads or 'default'}; {platform.machine()}")
    for name, rs in runs.items():
        acc = statistics.median(r[0] for r in rs)
        sec = statistics.median(r[1] for r in rs)
        it = statistics.median(r[2] for r in rs)
        print(f"  {name:16s} accuracy {acc:.4f} (min {min(r[0] for r in rs):.4f}), fit {sec:.2f} s, {it:.0f} epochs")
    for name in ("gradbox float64", "gradbox float32"):
        ratios = [g[1] / s[1] for g, s in zip(runs[name], runs["sklearn"])]
        print(f"  fit time {name} / sklearn: median {statistics.median(ratios):.2f} "
              f"(per seed {', '.join(f'{r:.2f}' for r in ratios)})")


if __name__ == "__main__":
    main()
