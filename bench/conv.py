"""Convolutional networks: gradbox (NumPy), gradbox + numba kernels, PyTorch CPU and a DLfS-style reference.

    python bench/conv.py                      # 5 rounds, prints the table (markdown)
    python bench/conv.py --rounds 3 --slot 1 --json out.json
  python bench/conv.py --threads 1          # one BLAS/torch thread each (less hurt by outside load)
  python bench/conv.py --contenders gradbox+fast,torch,gemms,gemms+chunks   # with the bounds: gradbox's GEMMs alone

Workloads (float32, synthetic data, SGD lr 0.01, one training step = forward, loss, backward, update):
  lenet32 / lenet128: LeNet-5 (Conv 1->6 5x5 pad 2, ReLU, max pool 2, Conv 6->16 5x5, ReLU, pool, 400-120-84-10)
                      on MNIST-shaped (1, 28, 28) inputs at batch 32 and 128;
  cifar64: Conv 3->32 3x3 pad 1, ReLU, pool, Conv 32->64 3x3 pad 1, ReLU, pool, 4096-128-10 on (3, 32, 32), batch 64.

Every contender runs in its own persistent process; they take turns slot by slot (the order rotates
every round), so load on a shared machine hits all alike; the reported ratio to torch is the median
over rounds of the paired ratio. Before timing, each contender does one float64 step on the same
weights and batch and its loss and gradients are compared with PyTorch's (must agree to 1e-9).
The share of the sgemm peak is the step's GEMM FLOPs (forward, dW and dX of every conv and linear
layer; no dX for the first) per second over a 1024^3 float32 matmul's rate, measured in the same slots.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
CONTENDERS = ("gradbox", "gradbox+fast", "torch", "dlfs")
#: contenders that are not a training step (no float64 check): "gemms" runs only the BLAS products of
#: gradbox's step with whole-batch columns (the NumPy path's), "gemms+chunks" those of the chunked step (the
#: fast path's): upper bounds on gradbox's speed (``--contenders gradbox+fast,torch,gemms,gemms+chunks``)
BOUNDS = ("gemms", "gemms+chunks")
WORKLOADS = {"lenet32": ("lenet", 32), "lenet128": ("lenet", 128), "cifar64": ("cifar", 64)}

# (kind, args): conv (in, out, k, pad) | pool (k) | relu | flatten | linear (in, out)
NETS = {
    "lenet": ((1, 28, 28), [("conv", 1, 6, 5, 2), ("relu",), ("pool", 2), ("conv", 6, 16, 5, 0), ("relu",), ("pool", 2),
                            ("flatten",), ("linear", 400, 120), ("relu",), ("linear", 120, 84), ("relu",),
                            ("linear", 84, 10)]),
    "cifar": ((3, 32, 32), [("conv", 3, 32, 3, 1), ("relu",), ("pool", 2), ("conv", 32, 64, 3, 1), ("relu",), ("pool", 2),
                            ("flatten",), ("linear", 4096, 128), ("relu",), ("linear", 128, 10)]),
}


def weights(net: str, dtype) -> list:
    """Initial parameters in PyTorch's order and layout, the same for every contender."""
    rng = np.random.default_rng(0)
    out = []
    for spec in NETS[net][1]:
        if spec[0] == "conv":
            _, i, o, k, _ = spec
            out += [rng.normal(0, np.sqrt(2 / (i * k * k)), (o, i, k, k)), rng.normal(0, 0.01, o)]
        elif spec[0] == "linear":
            _, i, o = spec
            out += [rng.normal(0, np.sqrt(2 / i), (o, i)), rng.normal(0, 0.01, o)]
    return [w.astype(dtype) for w in out]


def step_flops(net: str, batch: int) -> float:
    """GEMM FLOPs of one training step: forward, dW and dX (not for the first layer) of each conv/linear."""
    shape, layers = NETS[net]
    _, h, w = shape
    total, first = 0.0, True
    for spec in layers:
        if spec[0] == "conv":
            _, i, o, k, p = spec
            h, w = h + 2 * p - k + 1, w + 2 * p - k + 1
            f = 2.0 * o * i * k * k * batch * h * w
            total += f * (2 if first else 3)
            first = False
        elif spec[0] == "pool":
            h, w = h // spec[1], w // spec[1]
        elif spec[0] == "linear":
            total += 2.0 * batch * spec[1] * spec[2] * 3
    return total


def data(net: str, batch: int, dtype, n_batches: int = 4):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(n_batches, batch) + NETS[net][0]).astype(dtype)
    y = rng.integers(0, 10, size=(n_batches, batch))
    return X, y


# --- the contenders (each in its own process) -----------------------------------------------------
class GradboxRunner:
    def __init__(self, net, dtype):
        import gradbox as gb
        from gradbox import nn

        layers, params = [], iter(weights(net, dtype))
        for spec in NETS[net][1]:
            if spec[0] == "conv":
                m = nn.Conv2d(spec[1], spec[2], spec[3], padding=spec[4], dtype=dtype, rng=0)
                m.weight.data[...], m.bias.data[...] = next(params), next(params)
            elif spec[0] == "linear":
                m = nn.Linear(spec[1], spec[2], dtype=dtype, rng=0)
                m.weight.data[...], m.bias.data[...] = next(params), next(params)
            else:
                m = {"relu": nn.ReLU, "flatten": nn.Flatten}.get(spec[0], lambda: nn.MaxPool2d(2))()
            layers.append(m)
        self.model = nn.Sequential(*layers)
        self.loss = nn.CrossEntropyLoss()
        self.opt = gb.optim.SGD(self.model.parameters(), lr=0.01)

    def step(self, X, y):
        self.opt.zero_grad()
        loss = self.loss(self.model(X), y)
        loss.backward()
        self.opt.step()
        return float(loss.data)

    def grads(self, X, y):
        loss = self.loss(self.model(X), y)
        loss.backward()
        return float(loss.data), [p.grad for p in self.model.parameters()]


class TorchRunner:
    def __init__(self, net, dtype):
        import torch

        torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
        self.torch = torch
        layers, params = [], iter(weights(net, dtype))
        for spec in NETS[net][1]:
            if spec[0] == "conv":
                m = torch.nn.Conv2d(spec[1], spec[2], spec[3], padding=spec[4])
            elif spec[0] == "linear":
                m = torch.nn.Linear(spec[1], spec[2])
            else:
                m = {"relu": torch.nn.ReLU, "flatten": torch.nn.Flatten}.get(spec[0], lambda: torch.nn.MaxPool2d(2))()
            layers.append(m)
        self.model = torch.nn.Sequential(*layers).to(torch.float64 if dtype == np.float64 else torch.float32)
        with torch.no_grad():
            for p in self.model.parameters():
                p.copy_(torch.from_numpy(next(params)))
        self.opt = torch.optim.SGD(self.model.parameters(), lr=0.01)

    def step(self, X, y):
        self.opt.zero_grad()
        loss = self.torch.nn.functional.cross_entropy(self.model(self.torch.from_numpy(X)), self.torch.from_numpy(y))
        loss.backward()
        self.opt.step()
        return loss.item()

    def grads(self, X, y):
        loss = self.torch.nn.functional.cross_entropy(self.model(self.torch.from_numpy(X)), self.torch.from_numpy(y))
        loss.backward()
        return loss.item(), [p.grad.detach().numpy() for p in self.model.parameters()]


class DlfsRunner:
    def __init__(self, net, dtype):
        sys.path.insert(0, HERE)
        import dlfs_conv as D

        layers, params = [], iter(weights(net, dtype))
        for spec in NETS[net][1]:
            if spec[0] == "conv":
                layers.append(D.Convolution(next(params), next(params), stride=1, pad=spec[4]))
            elif spec[0] == "linear":
                layers.append(D.Affine(next(params), next(params)))
            elif spec[0] == "relu":
                layers.append(D.Relu())
            elif spec[0] == "pool":
                layers.append(D.Pooling(2, 2, stride=2))
        self.net = D.Net(layers)

    def step(self, X, y):
        loss = self.net.gradient(X, y)
        self.net.sgd(0.01)
        return float(loss)

    def grads(self, X, y):
        # NOTE: the book's loss adds 1e-7 inside the log; the gradient is (softmax - one-hot)/N exactly
        loss = self.net.gradient(X, y)
        return float(loss), self.net.grads_torch_layout()


class GemmRunner:
    """Only the matrix products of gradbox's training step, on preallocated arrays: what the step would cost
    if im2col, col2im, pooling, ReLU, the loss, the update and Python were free. For each conv
    ``Z = W·cols`` (out × C·k·k by C·k·k × N·OH·OW), ``dW`` in the orientation gradbox picks and, except for
    the first layer, ``dcols = Wᵀ·dZ``; for each linear ``X·Wᵀ``, ``dZᵀ·X`` and ``dZ·W`` (the first
    linear's dX included: it feeds the flatten). Whole-batch columns of the standard unfolding: the NumPy
    path's products (and the fast path's until the chunked convolution; ``ChunkedGemmRunner`` has those)."""

    def __init__(self, net, dtype, batch=None):
        rng = np.random.default_rng(0)
        shape, layers = NETS[net]
        c, h, w = shape
        self.products, first = [], True

        def product(a_shape, b_shape, transpose_b=False):
            a = rng.random(a_shape, dtype=np.float32)
            b = rng.random(b_shape, dtype=np.float32)
            b = b.T if transpose_b else b
            self.products.append((a, b, np.empty((a.shape[0], b.shape[1]), np.float32)))

        n = batch
        for spec in layers:
            if spec[0] == "conv":
                _, i, o, k, p = spec
                h, w = h + 2 * p - k + 1, w + 2 * p - k + 1
                rows, cols = i * k * k, n * h * w
                product((o, rows), (rows, cols))                                   # Z = W·cols
                if rows >= o:                                                      # dW, as gradbox orients it
                    product((rows, cols), (o, cols), transpose_b=True)
                else:
                    product((o, cols), (rows, cols), transpose_b=True)
                if not first:
                    product((rows, o), (o, cols))                                  # dcols = Wᵀ·dZ
                first = False
            elif spec[0] == "pool":
                h, w = h // spec[1], w // spec[1]
            elif spec[0] == "linear":
                _, i, o = spec
                product((n, i), (o, i), transpose_b=True)                          # X·Wᵀ
                product((o, n), (n, i))                                            # dW = dZᵀ·X
                product((n, o), (o, i))                                            # dX = dZ·W

    def step(self, X, y):
        for a, b, out in self.products:
            np.dot(a, b, out=out)
        return 0.0


class ChunkedGemmRunner:
    """Only the matrix products of gradbox's chunked training step (the ``fast`` path's at these batches, see
    ``gradbox.nn._conv_functional``): per conv, the chunks of images shared among gradbox's threads as the
    library cuts them, each chunk's ``Z`` and ``dcols`` one product per image and ``dW`` per image (columns of
    at most 64 rows) or over the chunk, every product on one BLAS thread; the linear layers' products on one
    BLAS thread (held after the chunks, as in the step). What that step would cost if the unfolding, folding,
    pooling, ReLU, the loss, the update and Python were free."""

    def __init__(self, net, dtype, batch=None):
        from gradbox import _blas
        from gradbox.nn import _conv_functional as cf

        self.blas, rng, n = _blas, np.random.default_rng(0), batch
        shape, layers = NETS[net]
        c, h, w = shape
        self.convs, self.linears, first = [], [], True
        r32 = lambda *s: rng.random(s, dtype=np.float32)  # noqa: E731
        for spec in layers:
            if spec[0] == "conv":
                _, i, o, k, p = spec
                h, w = h + 2 * p - k + 1, w + 2 * p - k + 1
                rows, L = i * k * k, h * w
                groups = cf._chunk_groups(n, rows * L * 4) or [[(0, n)]]
                parts = []
                for chunks in groups:
                    nb = max(e - a for a, e in chunks)
                    parts.append((chunks, r32(rows, nb * L), r32(nb, o, L), r32(o, nb * L)))
                self.convs.append((r32(o, rows), parts, first, rows <= cf._BATCHED_DW_ROWS))
                first = False
            elif spec[0] == "pool":
                h, w = h // spec[1], w // spec[1]
            elif spec[0] == "linear":
                _, i, o = spec
                x, wt, dz = r32(n, i), r32(o, i), r32(n, o)
                self.linears.append([(x, wt.T, r32(n, o)), (dz.T.copy(), x, r32(o, i)), (dz, wt, r32(n, i))])

    @staticmethod
    def _forward(w2, part):
        chunks, cols, out, _ = part
        for a, e in chunks:
            nb = e - a
            rows, L = w2.shape[1], out.shape[2]
            np.matmul(w2, cols[:, :nb * L].reshape(rows, nb, L).transpose(1, 0, 2), out=out[:nb])

    @staticmethod
    def _backward(w2, part, first, batched):
        chunks, cols, g, dz = part
        for a, e in chunks:
            nb = e - a
            rows, L = w2.shape[1], g.shape[2]
            c3 = cols[:, :nb * L].reshape(rows, nb, L)
            if batched:
                np.matmul(g[:nb], c3.transpose(1, 2, 0)).sum(axis=0)
            else:
                cols[:, :nb * L].dot(dz[:, :nb * L].T) if rows >= w2.shape[0] else dz[:, :nb * L].dot(cols[:, :nb * L].T)
            if not first:
                np.matmul(w2.T, g[:nb], out=c3.transpose(1, 0, 2))

    def step(self, X, y):
        run = self.blas.run_parts
        for w2, parts, first, batched in self.convs:
            run(lambda part: self._forward(w2, part), parts)
        self.blas.hold_serial()
        for products in self.linears:
            for a, b, out in products:
                self.blas.dot(a, b, out=out)
        for w2, parts, first, batched in reversed(self.convs):
            run(lambda part: self._backward(w2, part, first, batched), parts)
        return 0.0


def serve(contender: str):
    """Answer one JSON command per stdin line: check, run, peak."""
    runner_cls = {"gradbox": GradboxRunner, "gradbox+fast": GradboxRunner, "torch": TorchRunner, "dlfs": DlfsRunner,
                  "gemms": GemmRunner, "gemms+chunks": ChunkedGemmRunner}
    runners = {}
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd["cmd"] == "check":
            net = WORKLOADS[cmd["workload"]][0]
            X, y = data(net, 8, np.float64, 1)
            loss, grads = runner_cls[contender](net, np.float64).grads(X[0], y[0])
            np.savez(cmd["path"], *grads)
            reply = {"loss": loss}
        elif cmd["cmd"] == "run":
            w = cmd["workload"]
            if w not in runners:
                net, batch = WORKLOADS[w]
                runner = (runner_cls[contender](net, np.float32, batch) if contender in BOUNDS
                          else runner_cls[contender](net, np.float32))
                runners[w] = (runner, data(net, batch, np.float32))
                r, (X, y) = runners[w]
                for i in range(2):  # warm-up: compilation, allocator, caches
                    r.step(X[i], y[i])
            r, (X, y) = runners[w]
            n, t0 = 0, time.perf_counter()
            while True:
                r.step(X[n % len(X)], y[n % len(y)])
                n += 1
                dt = time.perf_counter() - t0
                if dt >= cmd["seconds"] and n >= 2:
                    break
            reply = {"steps": n, "seconds": dt}
        else:
            reply = {"error": f"unknown command {cmd}"}
        print(json.dumps(reply), flush=True)


def sgemm_rate(seconds=0.3, threads=2) -> float:
    """float32 1024^3 matmul FLOP/s on ``threads`` BLAS threads (threadpoolctl when installed)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # NOTE: then NumPy's default thread count
        return _sgemm_rate(seconds)
    with threadpool_limits(threads, user_api="blas"):
        return _sgemm_rate(seconds)


def _sgemm_rate(seconds):
    a = np.random.default_rng(0).random((1024, 1024), dtype=np.float32)
    a.dot(a)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds or n < 2:
        a.dot(a)
        n += 1
    return 2 * 1024 ** 3 * n / (time.perf_counter() - t0)


class Worker:
    def __init__(self, contender, threads=2):
        env = dict(os.environ, PYTHONPATH=ROOT, GRADBOX_FAST="1" if contender in ("gradbox+fast", "gemms+chunks") else "0",
                   BENCH_THREADS=str(threads))
        if threads != 2:
            env["OPENBLAS_NUM_THREADS"] = str(threads)  # NumPy's BLAS, for gradbox and the DLfS reference
        self.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--serve", contender], env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT)

    def ask(self, **cmd):
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"worker died on {cmd}")
        return json.loads(line)

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


def rel(a, b):
    d = np.linalg.norm(a) + np.linalg.norm(b)
    return 0.0 if d == 0 else float(np.linalg.norm(a - b) / d)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--slot", type=float, default=1.0, help="seconds per contender per workload per round")
    ap.add_argument("--settle", type=float, default=0.3, help="seconds of idle before each slot")
    ap.add_argument("--workloads", default=",".join(WORKLOADS))
    ap.add_argument("--contenders", default=",".join(CONTENDERS))
    ap.add_argument("--threads", type=int, default=2,
                    help="BLAS/torch threads per contender (1 suffers less on an oversubscribed machine)")
    ap.add_argument("--json")
    ap.add_argument("--serve", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.serve:
        return serve(args.serve)
    workloads, contenders = args.workloads.split(","), args.contenders.split(",")
    workers = {c: Worker(c, args.threads) for c in contenders}
    try:
        # 1. equality in float64 with PyTorch
        checks = {}
        with tempfile.TemporaryDirectory() as tmp:
            for w in workloads:
                ref = None
                got = {}
                for c in contenders:
                    if c in BOUNDS:
                        continue
                    path = os.path.join(tmp, f"{w}-{c}.npz")
                    loss = workers[c].ask(cmd="check", workload=w, path=path)["loss"]
                    with np.load(path) as f:
                        got[c] = (loss, [f[k] for k in f.files])
                ref = got.get("torch")
                for c in contenders:
                    if ref is None or c == "torch" or c in BOUNDS:
                        continue
                    loss, grads = got[c]
                    # NOTE: the DLfS loss adds 1e-7 inside the log; compare its gradients only
                    err = max([rel(a, b) for a, b in zip(grads, ref[1])] +
                              ([] if c == "dlfs" else [abs(loss - ref[0]) / abs(ref[0])]))
                    checks[f"{w}/{c}"] = err
                    if not err < 1e-9:
                        raise SystemExit(f"{c} on {w}: differs from torch in float64 (relative error {err:.2e})")
        print("float64 check against torch: worst relative error "
              f"{max(checks.values()) if checks else float('nan'):.2e}", file=sys.stderr)
        # 2. paired rotating rounds
        rates = {(w, c): [] for w in workloads for c in contenders}
        peaks = []
        for r in range(args.rounds):
            order = contenders[r % len(contenders):] + contenders[:r % len(contenders)]
            peaks.append(sgemm_rate(threads=args.threads))
            for w in workloads:
                batch = WORKLOADS[w][1]
                for c in order:
                    # NOTE: let the previous contender's idle BLAS/OpenMP threads stop spinning first:
                    # OpenBLAS's workers busy-wait about 0.1 s after each call, and on 2 cores they
                    # otherwise take the next contender's first tenth of a second
                    time.sleep(args.settle)
                    rep = workers[c].ask(cmd="run", workload=w, seconds=args.slot)
                    rates[(w, c)].append(batch * rep["steps"] / rep["seconds"])
            peaks.append(sgemm_rate(threads=args.threads))
            print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
    finally:
        for wk in workers.values():
            wk.close()
    peak = statistics.median(peaks)
    rows = []
    for w in workloads:
        net, batch = WORKLOADS[w]
        flops = step_flops(net, batch)
        for c in contenders:
            rs = rates[(w, c)]
            ratio = statistics.median([a / b for a, b in zip(rs, rates[(w, "torch")])]) if "torch" in contenders else None
            vs_dlfs = statistics.median([a / b for a, b in zip(rs, rates[(w, "dlfs")])]) if "dlfs" in contenders else None
            rows.append(dict(workload=w, contender=c, samples_per_s=statistics.median(rs), ratio_to_torch=ratio,
                             ratio_to_dlfs=vs_dlfs, peak_share=statistics.median(rs) / batch * flops / peak,
                             rates=rs))
    print("| workload | contender | samples/s (median) | × torch (paired median) | × DLfS-style | share of sgemm peak |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        fmt = lambda v: "–" if v is None else f"{v:.2f}×"  # noqa: E731
        print(f"| {row['workload']} | {row['contender']} | {row['samples_per_s']:.0f} | {fmt(row['ratio_to_torch'])} "
              f"| {fmt(row['ratio_to_dlfs'])} | {100 * row['peak_share']:.0f}% |")
    print(f"\nsgemm peak (1024^3 float32, median of {len(peaks)}): {peak / 1e9:.1f} GFLOP/s; rounds: {args.rounds}, "
          f"slot {args.slot} s; {args.threads} thread(s) each; float64 check vs torch: worst {max(checks.values(), default=float('nan')):.1e}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows, "peak_flops": peak, "checks": checks, "rounds": args.rounds}, f, indent=1)


if __name__ == "__main__":
    main()
