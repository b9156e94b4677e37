"""One benchmark process: runs the tasks given as JSON on argv[1], prints JSON results.

Every library runs in its own fresh process (``bench/run.py`` starts one per task
and alternates the libraries), so one library's allocator, thread pool or import
never changes another's numbers.

Tasks (``{"kind": ..., ...}``):

- ``import``: seconds to ``import <lib>`` (interpreter start-up not counted).
- ``train``: one epoch of the MLP 784-256-128-10 (ReLU, softmax cross-entropy,
  SGD momentum 0.9) at a batch size; samples/s, final loss, RSS.
- ``infer``: single-sample latency (median of many calls) and throughput at a
  large batch.
- ``peak``: float32 matmul GFLOP/s at n x n and at the GEMM shapes of one
  training step, plus the BLAS that NumPy uses (threadpoolctl).
"""
from __future__ import annotations

import gc
import json
import os
import sys
import time

H1, H2, C = 256, 128, 10
LR = 0.01


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _peak_rss_bytes() -> int:
    # NOTE: VmHWM is the process's peak resident set; ru_maxrss is the same number in KiB.
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False where not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def make_data(n, d, seed=0):
    """Synthetic MNIST-shaped data: pixels in [0, 1), labels from a random linear teacher."""
    import numpy as np

    rng = np.random.default_rng(seed)
    x = rng.random((n, d), dtype=np.float32)
    teacher = rng.standard_normal((d, C), dtype=np.float32)
    # NOTE: (x - 0.5) @ t written as x @ t - 0.5·Σt (no dataset-sized temporary), in
    # chunks: one 60000-row product makes OpenBLAS fault in ~60 MB of work buffers that
    # training itself never touches, which would be charged to every library's memory.
    shift = 0.5 * teacher.sum(axis=0)
    y = np.empty(n, np.int64)
    for s in range(0, n, 1024):
        y[s : s + 1024] = np.argmax(x[s : s + 1024] @ teacher - shift, axis=1)
    return x, y


def _init_weights(d, seed=1):
    """The same He-uniform start for every library (float32)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    out = []
    for fan_in, fan_out in ((d, H1), (H1, H2), (H2, C)):
        bound = np.sqrt(6.0 / fan_in)
        out.append((rng.uniform(-bound, bound, (fan_out, fan_in)).astype(np.float32), np.zeros(fan_out, np.float32)))
    return out


# --- training loops -------------------------------------------------------------
WARMUP = 10  # steps run before the clock starts (thread pools, lazy kernels); same for every library


SEGMENTS = 20  # the epoch is timed in this many slices; see _rate()


def _epoch(step, x, y, batch, order, xb, slices=None):
    """Warm up, then run one epoch of ``step(idx)`` slice by slice (a generator).

    Batches are gathered into the reused buffer ``xb``. The generator first yields
    ``None`` once the warm-up is done, then ``(seconds, samples)`` after each of the
    epoch's ``slices`` consecutive slices, and finally ``{"last": result of the last step}``.
    The caller decides when each slice runs, so several libraries can take turns.
    """
    import numpy as np

    for s in range(0, min(WARMUP, len(x) // batch) * batch, batch):
        idx = order[s : s + batch]
        np.take(x, idx, axis=0, out=xb)
        step(idx)
    yield None
    starts = list(range(0, len(x) - batch + 1, batch))
    k = min(slices or SEGMENTS, len(starts))
    last = None
    for part in np.array_split(np.asarray(starts), k):
        t0 = time.perf_counter()
        for s in part:
            idx = order[s : s + batch]
            np.take(x, idx, axis=0, out=xb)
            last = step(idx)
        yield time.perf_counter() - t0, len(part) * batch
    yield {"last": last}


def _rate(segs):
    """Samples/s from the median slice: robust to a burst of load from other processes.

    NOTE: on a shared 2-core machine another process waking up can slow a
    2-thread OpenBLAS call tenfold for a second; the median slice ignores such
    bursts, while the wall time of the whole epoch is kept as well.
    """
    import statistics

    return 1.0 / statistics.median(sec / n for sec, n in segs)


def _train_gradbox(x, y, batch, order, slices=None, use_fit=False, fused=None):
    import numpy as np

    import gradbox as gb

    d = x.shape[1]
    model = gb.nn.Sequential(gb.nn.Linear(d, H1), gb.nn.ReLU(), gb.nn.Linear(H1, H2), gb.nn.ReLU(), gb.nn.Linear(H2, C))
    for layer, (w, b) in zip([model[0], model[2], model[4]], _init_weights(d)):
        layer.weight.data[...] = w
        layer.bias.data[...] = b
    # NOTE: the default is the NumPy update; "gradbox.fused" runs fused=True (numba, gradbox[fast])
    opt = gb.optim.SGD(model.parameters(), lr=LR, momentum=0.9, fused=fused)
    loss_fn = gb.nn.CrossEntropyLoss()
    if use_fit:
        # NOTE: fit() runs whole epochs; to take turns with the others, each slice is one
        # fit(epochs=1) call on that slice of the data (its input checks run per call).
        def fit_slices():
            starts = list(range(0, len(x) - batch + 1, batch))
            parts = np.array_split(np.asarray(starts), min(slices or SEGMENTS, len(starts)))
            warm = order[: WARMUP * batch]
            gb.fit(model, x[warm], y[warm], loss=loss_fn, optimizer=opt, epochs=1, batch_size=batch,
                   verbose=0, metrics=(), seed=2)
            yield None
            hist = None
            for part in parts:
                lo, hi = int(part[0]), int(part[-1]) + batch
                t0 = time.perf_counter()
                hist = gb.fit(model, x[lo:hi], y[lo:hi], loss=loss_fn, optimizer=opt, epochs=1, batch_size=batch,
                              shuffle=True, verbose=0, metrics=(), seed=2)
                yield time.perf_counter() - t0, hi - lo
            yield {"last": hist.history["loss"][-1]}

        return fit_slices()
    xb = np.empty((batch, d), np.float32)
    xt = gb.Tensor(xb)  # NOTE: the buffer is reused; the Tensor shares it

    def step(idx):
        out = model(xt)
        loss = loss_fn(out, y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss

    return _epoch(step, x, y, batch, order, xb, slices)


def _train_torch(x, y, batch, order, slices=None, fused=None):
    import numpy as np
    import torch

    d = x.shape[1]
    model = torch.nn.Sequential(
        torch.nn.Linear(d, H1), torch.nn.ReLU(), torch.nn.Linear(H1, H2), torch.nn.ReLU(), torch.nn.Linear(H2, C)
    )
    with torch.no_grad():
        for layer, (w, b) in zip([model[0], model[2], model[4]], _init_weights(d)):
            layer.weight.copy_(torch.from_numpy(w))
            layer.bias.copy_(torch.from_numpy(b))
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=0.9, fused=fused)  # None: torch's CPU default
    loss_fn = torch.nn.CrossEntropyLoss()
    xb = np.empty((batch, d), np.float32)
    yb = np.empty(batch, np.int64)
    xt, yt = torch.from_numpy(xb), torch.from_numpy(yb)  # share the reused buffers

    def step(idx):
        np.take(y, idx, out=yb)
        out = model(xt)
        loss = loss_fn(out, yt)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss

    return _epoch(step, x, y, batch, order, xb, slices)


def _sk_model(batch, max_iter=1):
    from sklearn.neural_network import MLPClassifier

    return MLPClassifier(
        hidden_layer_sizes=(H1, H2), activation="relu", solver="sgd", momentum=0.9, nesterovs_momentum=False,
        batch_size=batch, learning_rate_init=LR, learning_rate="constant", alpha=0.0, max_iter=max_iter,
        shuffle=True, random_state=0, tol=0.0, n_iter_no_change=10**9,
    )


def _train_sklearn(x, y, batch, order, slices=None):
    import warnings

    import numpy as np
    from sklearn.exceptions import ConvergenceWarning

    clf = _sk_model(batch)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        # NOTE: warm-up: partial_fit on WARMUP batches; then one epoch = one partial_fit per
        # slice of the data (sklearn shuffles within each slice), the slices of the other libraries.
        warm = order[: WARMUP * batch]
        clf.partial_fit(x[warm], y[warm], classes=list(range(C)))
    assert clf.coefs_[0].dtype == x.dtype, "sklearn did not keep float32"
    yield None
    starts = list(range(0, len(x) - batch + 1, batch))
    k = min(slices or SEGMENTS, len(starts))
    for part in np.array_split(np.asarray(starts), k):
        lo, hi = int(part[0]), int(part[-1]) + batch
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            t0 = time.perf_counter()
            clf.partial_fit(x[lo:hi], y[lo:hi])
            dt = time.perf_counter() - t0
        yield dt, hi - lo
    yield {"last": clf.loss_}


class NumpyMLP:
    """The overhead floor: the same network hand-fused in NumPy, every buffer preallocated."""

    def __init__(self, d, batch):
        import numpy as np

        (self.w1, self.b1), (self.w2, self.b2), (self.w3, self.b3) = _init_weights(d)
        self.params = [self.w1, self.b1, self.w2, self.b2, self.w3, self.b3]
        self.grads = [np.empty_like(p) for p in self.params]
        self.moms = [np.zeros_like(p) for p in self.params]
        self.batch = batch
        f = np.float32
        self.z1, self.z2, self.z3 = (np.empty((batch, h), f) for h in (H1, H2, C))
        self.g2, self.g1 = np.empty((batch, H2), f), np.empty((batch, H1), f)
        self.rows = np.arange(batch)
        self.first = True

    def forward(self, xb):
        import numpy as np

        z1 = self.z1[: len(xb)]
        np.matmul(xb, self.w1.T, out=z1)
        z1 += self.b1
        np.maximum(z1, 0, out=z1)
        z2 = self.z2[: len(xb)]
        np.matmul(z1, self.w2.T, out=z2)
        z2 += self.b2
        np.maximum(z2, 0, out=z2)
        z3 = self.z3[: len(xb)]
        np.matmul(z2, self.w3.T, out=z3)
        z3 += self.b3
        return z3

    def step(self, xb, yb):
        import numpy as np

        z3 = self.forward(xb)
        n = len(xb)
        z3 -= z3.max(axis=1, keepdims=True)
        np.exp(z3, out=z3)
        z3 /= z3.sum(axis=1, keepdims=True)
        loss = -np.log(z3[self.rows, yb]).mean()
        z3[self.rows, yb] -= 1
        z3 *= np.float32(1.0 / n)
        gw1, gb1, gw2, gb2, gw3, gb3 = self.grads
        np.matmul(z3.T, self.z2, out=gw3)
        np.sum(z3, axis=0, out=gb3)
        np.matmul(z3, self.w3, out=self.g2)
        self.g2 *= self.z2 > 0
        np.matmul(self.g2.T, self.z1, out=gw2)
        np.sum(self.g2, axis=0, out=gb2)
        np.matmul(self.g2, self.w2, out=self.g1)
        self.g1 *= self.z1 > 0
        np.matmul(self.g1.T, xb, out=gw1)
        np.sum(self.g1, axis=0, out=gb1)
        lr = np.float32(LR)
        for p, g, m in zip(self.params, self.grads, self.moms):
            if self.first:
                m[...] = g
            else:
                m *= np.float32(0.9)
                m += g
            p -= lr * m
        self.first = False
        return loss


def _train_numpy(x, y, batch, order, slices=None):
    import numpy as np

    d = x.shape[1]
    net = NumpyMLP(d, batch)
    xb = np.empty((batch, d), np.float32)
    return _epoch(lambda idx: net.step(xb, y[idx]), x, y, batch, order, xb, slices)


TRAIN = {"gradbox": _train_gradbox, "torch": _train_torch, "sklearn": _train_sklearn, "numpy": _train_numpy}


def _import_lib(lib):
    if lib in ("gradbox", "gradbox.fit", "gradbox.fused"):
        import gradbox  # noqa: F401
        import numpy  # noqa: F401
    elif lib in ("torch", "torch.fused"):
        import numpy  # noqa: F401
        import torch  # noqa: F401
    elif lib == "sklearn":
        import numpy  # noqa: F401
        import sklearn.neural_network  # noqa: F401
    else:
        import numpy  # noqa: F401


_DATA = {}


def _data(n, d):
    if (n, d) not in _DATA:
        _DATA.clear()
        gc.collect()
        _DATA[(n, d)] = make_data(n, d)
    return _DATA[(n, d)]


def floor_bytes(n, d, batch):
    """Dataset (X float32, y int64) + params, grads and momentum + one input batch + activations and their grads."""
    n_w = d * H1 + H1 * H2 + H2 * C
    n_b = H1 + H2 + C
    act = batch * (H1 + H2 + C) * 4 * 2
    return n * d * 4 + n * 8 + (n_w + n_b) * 4 * 3 + batch * d * 4 + act


class TrainSession:
    """One library's epoch at one batch size, run slice by slice on request."""

    def __init__(self, t, rss_imports):
        import numpy as np

        self.lib, self.batch, self.n, self.d = t["lib"], t["batch"], t["n"], t["d"]
        x, y = _data(self.n, self.d)
        order = np.random.default_rng(2).permutation(len(x))
        gc.collect()
        self.rss_imports = rss_imports
        self.reset = _reset_peak_rss()
        if self.lib == "gradbox.fit":
            self.gen = _train_gradbox(x, y, self.batch, order, use_fit=True)
        elif self.lib == "gradbox.fused":
            self.gen = _train_gradbox(x, y, self.batch, order, t.get("slices"), fused=True)
        elif self.lib == "torch.fused":
            self.gen = _train_torch(x, y, self.batch, order, t.get("slices"), fused=True)
        else:
            self.gen = TRAIN[self.lib](x, y, self.batch, order, t.get("slices"))
        assert next(self.gen) is None  # warm-up done
        self.segs, self.wall = [], 0.0

    def slice(self):
        item = next(self.gen)
        if isinstance(item, dict):
            self.final = item
            return None
        self.segs.append(item)
        return {"seconds": item[0], "samples": item[1]}

    def finish(self):
        while not hasattr(self, "final"):
            self.slice()
        last = self.final["last"]
        loss = float(last.item() if hasattr(last, "item") else last)
        samples = sum(n for _, n in self.segs)
        wall = sum(sec for sec, _ in self.segs)
        return {
            "seconds": wall, "samples": samples, "samples_per_s": _rate(self.segs),
            "samples_per_s_wall": samples / wall, "final_loss": loss, "segments": self.segs,
            "rss_after_imports": self.rss_imports, "peak_rss": _peak_rss_bytes(), "peak_rss_reset": self.reset,
            "floor_bytes": floor_bytes(self.n, self.d, self.batch),
        }


def task_train(t):
    """One-shot: a whole epoch in this process."""
    _import_lib(t["lib"])
    gc.collect()
    session = TrainSession(t, _rss_bytes())
    return session.finish()


def _predictor(lib, d):
    import numpy as np

    weights = _init_weights(d)
    if lib == "gradbox":
        import gradbox as gb

        model = gb.nn.Sequential(
            gb.nn.Linear(d, H1), gb.nn.ReLU(), gb.nn.Linear(H1, H2), gb.nn.ReLU(), gb.nn.Linear(H2, C)
        )
        for layer, (w, b) in zip([model[0], model[2], model[4]], weights):
            layer.weight.data[...] = w
            layer.bias.data[...] = b
        model.eval()

        def predict(xq):
            with gb.no_grad():
                return model(xq).data

        return predict
    if lib == "torch":
        import torch

        model = torch.nn.Sequential(
            torch.nn.Linear(d, H1), torch.nn.ReLU(), torch.nn.Linear(H1, H2), torch.nn.ReLU(), torch.nn.Linear(H2, C)
        )
        with torch.no_grad():
            for layer, (w, b) in zip([model[0], model[2], model[4]], weights):
                layer.weight.copy_(torch.from_numpy(w))
                layer.bias.copy_(torch.from_numpy(b))
        model.eval()

        def predict(xq):
            with torch.inference_mode():
                return model(torch.from_numpy(xq)).numpy()

        return predict
    if lib == "sklearn":
        import warnings

        from sklearn.exceptions import ConvergenceWarning

        clf = _sk_model(32, max_iter=1)
        xs, ys = make_data(64, d)
        ys[:C] = np.arange(C)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            clf.fit(xs, ys)
        for i, (w, b) in enumerate(weights):
            clf.coefs_[i][...] = w.T
            clf.intercepts_[i][...] = b
        return clf.predict_proba  # NOTE: includes the softmax; the others return logits
    net = NumpyMLP(d, 1)
    return lambda xq: np.maximum(np.maximum(xq @ net.w1.T + net.b1, 0) @ net.w2.T + net.b2, 0) @ net.w3.T + net.b3


def task_infer(t):
    import numpy as np

    lib, d = t["lib"], t["d"]
    _import_lib(lib)
    predict = _predictor(lib, d)
    x, _ = make_data(t["batch"], d)
    one = np.ascontiguousarray(x[:1])
    for _ in range(50):
        predict(one)
    times = []
    for _ in range(t["calls"]):
        t0 = time.perf_counter()
        predict(one)
        times.append(time.perf_counter() - t0)
    lat = float(np.median(times))
    predict(x)
    big = []
    for _ in range(t["reps"]):
        t0 = time.perf_counter()
        out = predict(x)
        big.append(time.perf_counter() - t0)
    assert out.shape == (len(x), C)
    return {"latency_s": lat, "latency_p90_s": float(np.percentile(times, 90)),
            "throughput": len(x) / float(np.median(big)), "batch": len(x)}


class InferSession:
    """One library's predictor; latency and throughput measured in blocks on request."""

    def __init__(self, t):
        import numpy as np

        self.predict = _predictor(t["lib"], t["d"])
        self.x, _ = make_data(t["batch"], t["d"])
        self.one = np.ascontiguousarray(self.x[:1])
        for _ in range(50):
            self.predict(self.one)
        self.predict(self.x)

    def latency(self, calls):
        times = []
        for _ in range(calls):
            t0 = time.perf_counter()
            self.predict(self.one)
            times.append(time.perf_counter() - t0)
        return {"times": times}

    def throughput(self, reps):
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            out = self.predict(self.x)
            times.append(time.perf_counter() - t0)
        assert out.shape == (len(self.x), C)
        return {"times": times, "batch": len(self.x)}


def serve():
    """Answer JSON commands, one per line on stdin, with one JSON line each on stdout.

    The coordinator keeps one such process per library alive and makes them take
    turns slice by slice, so that every library sees the same machine load.
    """
    lib = json.loads(sys.stdin.readline())["lib"]
    try:
        t0 = time.perf_counter()
        _import_lib(lib)
        reply = {"ok": True, "import_s": time.perf_counter() - t0}
    except ImportError as exc:
        reply = {"ok": False, "skipped": f"{type(exc).__name__}: {exc}"}
    if reply["ok"] and lib == "gradbox.fused":
        # NOTE: numba and the kernels load on the first fused optimizer and its first update (LLVM's
        # JIT starts then); like torch's libraries at import, that happens before the memory baseline,
        # and its time and memory are reported on their own, not as part of `import gradbox`.
        import numpy as np

        import gradbox as gb

        rss0, t0 = _rss_bytes(), time.perf_counter()
        try:
            p = gb.nn.Parameter(np.zeros(4, np.float32))
            opt = gb.optim.SGD([p], lr=LR, momentum=0.9, fused=True)
            for _ in range(2):  # the second step is the first through the kernel
                p.grad = np.ones(4, np.float32)
                opt.step()
            reply["fused_load_s"], reply["fused_load_rss"] = time.perf_counter() - t0, _rss_bytes() - rss0
        except ImportError as exc:
            reply = {"ok": False, "skipped": f"{type(exc).__name__}: {exc}"}
    if reply["ok"] and lib == "torch.fused":
        import torch

        try:  # NOTE: older torch releases have no fused SGD on the CPU: skip the row, not the run
            torch.optim.SGD([torch.zeros(4, requires_grad=True)], lr=LR, momentum=0.9, fused=True)
        except (RuntimeError, TypeError, ValueError) as exc:
            reply = {"ok": False, "skipped": f"{type(exc).__name__}: {exc}"}
    # NOTE: one small float32 matmul first, so that OpenBLAS's per-thread work buffers
    # (tens of MB, allocated on the first call) count as library overhead, not training memory.
    import numpy as np

    np.ones((64, 64), np.float32) @ np.ones((64, 64), np.float32)
    gc.collect()
    rss_imports = _rss_bytes()
    print(json.dumps(reply), flush=True)
    train = infer = None
    for line in sys.stdin:
        cmd = json.loads(line)
        c = cmd["cmd"]
        if c == "train":
            train = None
            train = TrainSession({**cmd, "lib": lib}, rss_imports)
            out = {"ok": True}
        elif c == "slice":
            out = train.slice() or {"done": True}
        elif c == "finish":
            out = train.finish()
            train = None
        elif c == "infer":
            infer = InferSession({**cmd, "lib": lib})
            out = {"ok": True}
        elif c == "latency":
            out = infer.latency(cmd["calls"])
        elif c == "throughput":
            out = infer.throughput(cmd["reps"])
        elif c == "gemm":
            out = gemm_rates(cmd["n"], cmd["batch"], cmd["d"], cmd["seconds"])
        elif c == "quit":
            break
        else:
            raise ValueError(f"unknown command {c!r}")
        print(json.dumps(out), flush=True)


def task_import(t):
    t0 = time.perf_counter()
    _import_lib(t["lib"])
    return {"seconds": time.perf_counter() - t0}


def _gflops(fn, flops, min_time):
    fn()
    best, total, reps = [], 0.0, 0
    while total < min_time or reps < 3:
        t0 = time.perf_counter()
        fn()
        dt = time.perf_counter() - t0
        best.append(dt)
        total += dt
        reps += 1
    import statistics

    return flops / statistics.median(best) / 1e9


_GEMM = {}


def gemm_rates(n, batch, d, seconds):
    """GFLOP/s of an n x n sgemm and of one step's 8 GEMMs at ``batch``, each for about ``seconds``."""
    import numpy as np

    if ("sq", n) not in _GEMM:
        rng = np.random.default_rng(0)
        a, b = rng.random((n, n), dtype=np.float32), rng.random((n, n), dtype=np.float32)
        _GEMM[("sq", n)] = lambda c=np.empty((n, n), np.float32): np.matmul(a, b, out=c)
    if ("wl", batch) not in _GEMM:
        _GEMM[("wl", batch)] = _workload_gemms(batch, d)
    return {"square_gflops": _gflops(_GEMM[("sq", n)], 2 * n**3, seconds),
            "workload_gflops": _gflops(_GEMM[("wl", batch)], step_flops(batch, d), seconds)}


def _workload_gemms(batch, d):
    import numpy as np

    rng = np.random.default_rng(0)
    (w1, _), (w2, _), (w3, _) = _init_weights(d)
    xb = rng.random((batch, d), dtype=np.float32)
    z1, z2, z3 = (np.empty((batch, h), np.float32) for h in (H1, H2, C))
    g1, g2 = np.empty((batch, H1), np.float32), np.empty((batch, H2), np.float32)
    gw1, gw2, gw3 = np.empty_like(w1), np.empty_like(w2), np.empty_like(w3)

    def gemms():
        np.matmul(xb, w1.T, out=z1)
        np.matmul(z1, w2.T, out=z2)
        np.matmul(z2, w3.T, out=z3)
        np.matmul(z3.T, z2, out=gw3)
        np.matmul(z3, w3, out=g2)
        np.matmul(g2.T, z1, out=gw2)
        np.matmul(g2, w2, out=g1)
        np.matmul(g1.T, xb, out=gw1)

    return gemms


def task_peak(t):
    import numpy as np

    info = {}
    try:
        from threadpoolctl import threadpool_info

        blas = [i for i in threadpool_info() if i.get("user_api") == "blas"]
        info = {k: blas[0].get(k) for k in ("internal_api", "version", "architecture", "num_threads")} if blas else {}
    except ImportError:
        info = {"internal_api": "unknown (threadpoolctl not installed)"}
    n = t["n"]
    rng = np.random.default_rng(0)
    a = rng.random((n, n), dtype=np.float32)
    b = rng.random((n, n), dtype=np.float32)
    c = np.empty((n, n), np.float32)
    square = _gflops(lambda: np.matmul(a, b, out=c), 2 * n**3, t["min_time"])
    d = t["d"]
    shapes = {}
    for batch in t["batches"]:
        gemms = _workload_gemms(batch, d)
        shapes[str(batch)] = _gflops(gemms, step_flops(batch, d), t["min_time"])
    return {"square_n": n, "square_gflops": square, "workload_gflops": shapes, "blas": info,
            "cpu_count": os.cpu_count()}


def step_flops(batch, d):
    """Exact GEMM FLOPs of one training step (bias, ReLU, softmax and the update not counted).

    Forward 2·b·Σ(in·out); backward dW 2·b·Σ(in·out); dX for layers 2 and 3 only,
    because the first layer's input is data (no gradient wanted).
    """
    w = d * H1 + H1 * H2 + H2 * C
    return 2 * batch * (3 * w - d * H1)


def issue_flops(batch, d):
    """The issue's cost model of one training step: 6 · parameters · batch (weights and biases)."""
    params = d * H1 + H1 + H1 * H2 + H2 + H2 * C + C
    return 6 * params * batch


TASKS = {"train": task_train, "infer": task_infer, "import": task_import, "peak": task_peak}


def main():
    if sys.argv[1] == "--serve":
        serve()
        return
    tasks = json.loads(sys.argv[1])
    results = []
    for t in tasks:
        try:
            results.append({"ok": True, **TASKS[t["kind"]](t)})
        except ImportError as exc:
            results.append({"ok": False, "skipped": f"{type(exc).__name__}: {exc}"})
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()
