"""Paired micro-benchmark of ``opt.step()`` on a 784-256-128-10 MLP's parameters: an old optimizer
module (a copy of a past ``gradbox/optim.py``) against the current ``gradbox.optim``.

    git show 32ad159:gradbox/optim.py > /tmp/optim_old.py
    python bench/optim_step.py /tmp/optim_old.py [--tiny]

Both optimizers update the same arrays (so alignment and cache placement are equal), in 61
interleaved rounds of 20 steps, alternating which goes first. Printed: the median per-step times, the
median of the paired ratios new/old with its interquartile range, and the ratio of the best times.
``--tiny`` uses six 1-element parameters, which measures the fixed Python cost per step.
"""
import importlib.util
import sys
import time

import numpy as np

import gradbox as gb


def main(old_path, tiny=False):
    spec = importlib.util.spec_from_file_location("gradbox.optim_old", old_path)
    old = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = old
    spec.loader.exec_module(old)
    shapes = [(1,)] * 6 if tiny else [(256, 784), (256,), (128, 256), (128,), (10, 128), (10,)]
    rng = np.random.default_rng(0)
    params = [gb.nn.Parameter(rng.standard_normal(s).astype(np.float32) * 0.01) for s in shapes]
    for p in params:
        p.grad = rng.standard_normal(p.shape).astype(np.float32) * 1e-3

    def timed(opt, n=20):
        t = time.perf_counter()
        for _ in range(n):
            opt.step()
        return (time.perf_counter() - t) / n

    for name, kw in [("SGD", dict(lr=0.01)), ("SGD", dict(lr=0.01, momentum=0.9)), ("Adam", dict(lr=1e-3))]:
        for fused in (False, True):
            if fused and gb.optim._fused_kernels() is None:
                continue
            a, b = getattr(old, name)(params, fused=fused, **kw), getattr(gb.optim, name)(params, fused=fused, **kw)
            for opt in (a, b):
                timed(opt, 3)
            t_old, t_new = [], []
            for r in range(61):
                pair = (timed(a), timed(b)) if r % 2 else tuple(reversed((timed(b), timed(a))))
                t_old.append(pair[0])
                t_new.append(pair[1])
            ratios = np.array(t_new) / np.array(t_old)
            print(f"{name:4s} {str(kw):32s} fused={fused!s:5s}  old {np.median(t_old) * 1e6:7.1f} us  "
                  f"new {np.median(t_new) * 1e6:7.1f} us  paired ratio {np.median(ratios):.3f} "
                  f"(IQR {np.percentile(ratios, 25):.3f}-{np.percentile(ratios, 75):.3f})  "
                  f"best-time ratio {min(t_new) / min(t_old):.3f}")


if __name__ == "__main__":
    main(sys.argv[1], tiny="--tiny" in sys.argv)
