"""Data-parallel scaling on MPI: measured on this machine, then modelled past it.

    python bench/mpi_scaling.py                  # about 25 s on an idle 2-core machine; prints a report
    python bench/mpi_scaling.py --rounds 2 --samples 8192 --json out.json   # quicker
    python bench/mpi_scaling.py --compare-allreduce   # also mpiexec -n 2 with Allreduce forced
    python bench/mpi_scaling.py --compare-unsharded   # also mpiexec -n 2 with every rank updating everything
    python bench/mpi_scaling.py --phases --rounds 3   # where a step at global batch 256 goes, and the bound

1. Throughput of the 784-256-128-10 MLP (float32, SGD with momentum, global batch 1024 and 256):
   one process with one BLAS thread, one process with two, and ``mpiexec -n 2`` with one BLAS
   thread per process (threadpoolctl). The configurations take turns, round after round (order
   rotating), and the ratios are paired per round, so a burst of load on a shared machine hits
   all of them alike; the report gives the median ratio and the range over rounds. The two
   processes run the real ``ShardedSampler`` + ``DistributedOptimizer`` path with its defaults
   (on one machine: the gradients summed through an MPI shared-memory window);
   ``--compare-allreduce`` adds a configuration with ``shared_memory=False``, ``--compare-unsharded``
   one with ``shard_update=False`` (shared memory, but every rank sums and updates all parameters).
2. ``Allreduce`` (upper-case, in place, float32) between 2 local processes at 1e3 ... 1e7 floats,
   and a least-squares fit ``t = alpha + beta * bytes``; then ``DistributedOptimizer.synchronize``
   of the MLP's gradients, through shared memory and through ``Allreduce``.
3. The scaling model: one step on K nodes costs ``c * b / K`` (compute, ``c`` seconds per sample
   from the one-process, one-thread measurement at batch 1024) plus a ring allreduce,
   ``2 (K-1)/K * bytes / bandwidth + 2 (K-1) * alpha``. Efficiency = (one-node time / K) / step time.

Requires ``pip install "gradbox[mpi]" threadpoolctl``.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
LAYERS = (784, 256, 128, 10)
N_SAMPLES = 8192


def n_params(layers=LAYERS):
    return sum(a * b + b for a, b in zip(layers[:-1], layers[1:]))


LENET_PARAMS = (6 * 25 + 6) + (16 * 6 * 25 + 16) + (400 * 120 + 120) + (120 * 84 + 84) + (84 * 10 + 10)


def build(net):
    """(model, X, y): the 784-256-128-10 MLP on (N, 784), or LeNet-5 on (N, 1, 28, 28); float32."""
    import gradbox as gb

    rng = np.random.default_rng(0)
    gb.manual_seed(0)
    nn = gb.nn
    if net == "mlp":
        mods = []
        for a, b in zip(LAYERS[:-1], LAYERS[1:]):
            mods += [nn.Linear(a, b), nn.ReLU()]
        X = rng.normal(size=(N_SAMPLES, LAYERS[0])).astype(np.float32)
        return nn.Sequential(*mods[:-1]), X, rng.integers(0, LAYERS[-1], N_SAMPLES)
    model = nn.Sequential(nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 16, 5),
                          nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(400, 120), nn.ReLU(),
                          nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10))
    X = rng.normal(size=(N_SAMPLES, 1, 28, 28)).astype(np.float32)
    return model, X, rng.integers(0, 10, N_SAMPLES)


# --------------------------------------------------------------------------------------------
# workers (run as child processes, alone or under mpiexec)
# --------------------------------------------------------------------------------------------
def worker_train(batch, steps, threads, net="mlp", how="auto"):
    from threadpoolctl import threadpool_limits

    import gradbox as gb
    from gradbox import distributed as dist

    threadpool_limits(threads)
    k = dist.size()
    model, X, y = build(net)
    opt = gb.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    sampler = dist.ShardedSampler(N_SAMPLES, batch, seed=1, rank=dist.rank(), size=k)
    if k > 1:
        dist.broadcast_parameters(model)
        opt = dist.DistributedOptimizer(opt, sampler=sampler, shared_memory=False if how == "allreduce" else None,
                                        shard_update=False if how == "unsharded" else None)
    loss_fn = gb.nn.CrossEntropyLoss()
    # NOTE: one preallocated shard buffer filled by np.take(out=...), as the Trainer does
    local = -(-min(batch, N_SAMPLES) // k)
    xbuf = np.empty((local,) + X.shape[1:], np.float32)
    ybuf = np.empty(local, y.dtype)

    def run(n_steps):
        done = 0
        while done < n_steps:
            for idx in sampler:
                m = len(idx)
                xb, yb = xbuf[:m], ybuf[:m]
                np.take(X, idx, axis=0, out=xb)
                np.take(y, idx, axis=0, out=yb)
                opt.zero_grad()
                loss_fn(model(gb.Tensor(xb)), yb).backward()
                opt.step()
                done += 1
                if done == n_steps:
                    return

    run(3)  # warm-up
    if k > 1:
        dist.comm().Barrier()
    t0 = time.perf_counter()
    run(steps)
    elapsed = time.perf_counter() - t0
    if k > 1:
        elapsed = dist.comm().allreduce(elapsed, op=dist._mpi().MAX)
    if dist.is_main():
        print(json.dumps({"k": k, "threads": threads, "batch": batch, "steps": steps, "seconds": elapsed,
                          "samples_per_s": steps * batch / elapsed, "step_s": elapsed / steps}))


def worker_phases(batch, steps, threads, exchange="real"):
    """Per-phase times of the training loop (ms per step, mean over the ranks).

    ``exchange="barrier"`` replaces the gradient exchange by one barrier per step: the ranks still
    step together, but nothing is summed (the updates differ, so this is a bound, not training):
    what two processes would reach with an exchange that costs nothing.
    """
    from threadpoolctl import threadpool_limits

    import gradbox as gb
    from gradbox import distributed as dist

    threadpool_limits(threads)
    k = dist.size()
    model, X, y = build("mlp")
    opt = gb.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    sampler = dist.ShardedSampler(N_SAMPLES, batch, seed=1, rank=dist.rank(), size=k)
    clock = time.perf_counter
    stamp = [0.0]
    if k > 1:
        dist.broadcast_parameters(model)
        if exchange in ("real", "unsharded"):
            opt = dist.DistributedOptimizer(opt, sampler=sampler, shard_update=False if exchange == "unsharded" else None)
        else:
            comm = dist.comm()
            opt.register_step_pre_hook(lambda o, a, kw: comm.Barrier())

    def exchanged(o, a, kw):  # NOTE: registered last, so it runs after the exchange's own pre-step hook
        stamp[0] = clock()

    opt.register_step_pre_hook(exchanged)
    loss_fn = gb.nn.CrossEntropyLoss()
    local = -(-min(batch, N_SAMPLES) // k)
    xbuf = np.empty((local,) + X.shape[1:], np.float32)
    ybuf = np.empty(local, y.dtype)
    names = ("sampler+gather", "forward", "backward", "exchange", "update")
    totals = np.zeros(len(names))

    def run(n_steps):
        done = 0
        while True:
            t0 = clock()
            for idx in sampler:
                m = len(idx)
                xb, yb = xbuf[:m], ybuf[:m]
                np.take(X, idx, axis=0, out=xb)
                np.take(y, idx, axis=0, out=yb)
                t1 = clock()
                opt.zero_grad()
                loss = loss_fn(model(gb.Tensor(xb)), yb)
                t2 = clock()
                loss.backward()
                t3 = clock()
                opt.step()
                t5 = clock()
                totals[:] += (t1 - t0, t2 - t1, t3 - t2, stamp[0] - t3, t5 - stamp[0])
                done += 1
                if done == n_steps:
                    return
                t0 = clock()

    run(20)
    totals[:] = 0
    if k > 1:
        dist.comm().Barrier()
    t0 = clock()
    run(steps)
    elapsed = clock() - t0
    if k > 1:
        MPI = dist._mpi()
        elapsed = dist.comm().allreduce(elapsed, op=MPI.MAX)
        totals = dist.comm().allreduce(totals, op=MPI.SUM) / k
    if dist.is_main():
        print(json.dumps({"step_ms": 1e3 * elapsed / steps,
                          "phases_ms": {n: 1e3 * v / steps for n, v in zip(names, totals)}}))


def phases_report(args):
    """The step at global batch 256, phase by phase: 1 process (1 and 2 threads) against 2 processes,
    and 2 processes with an exchange that costs nothing (the bound)."""
    configs = (("1p1t@128", 1, 1, 128, "real"), ("1p2t@256", 1, 2, 256, "real"), ("2p1t@256", 2, 1, 256, "real"),
               ("2p1t@256 unsharded", 2, 1, 256, "unsharded"), ("2p1t@256 no-sum bound", 2, 1, 256, "barrier"))
    res = {c[0]: [] for c in configs}
    print(f"load average before {os.getloadavg()[0]:.1f}", flush=True)
    for r in range(args.rounds):
        for name, k, threads, batch, how in configs[r % len(configs):] + configs[:r % len(configs)]:
            res[name].append(_child(["--worker", "phases", "--batch", str(batch), "--steps", str(args.steps),
                                     "--threads", str(threads), "--exchange", how], k, threads))
    print(f"load average after {os.getloadavg()[0]:.1f}")
    names = list(res["1p1t@128"][0]["phases_ms"])
    print(f"\n## per-step phases, ms (median over {args.rounds} rounds of {args.steps} steps; 2 processes: mean over ranks)")
    print(f"  {'':24s} {'step':>7s} " + " ".join(f"{n:>15s}" for n in names))
    for name, runs in res.items():
        print(f"  {name:24s} {statistics.median(x['step_ms'] for x in runs):7.3f} " + " ".join(
            f"{statistics.median(x['phases_ms'][n] for x in runs):15.3f}" for n in names))
    for name in ("2p1t@256", "2p1t@256 unsharded", "2p1t@256 no-sum bound"):
        rs = [a["step_ms"] / b["step_ms"] for a, b in zip(res["1p2t@256"], res[name])]
        print(f"  throughput {name} / 1p2t@256 = {statistics.median(rs):.2f}x  [{min(rs):.2f}, {max(rs):.2f}]")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)


def worker_allreduce(sizes, reps):
    from gradbox import distributed as dist

    MPI = dist._mpi()
    comm = dist.init()
    out, med = {}, {}
    for n in sizes:
        buf = np.ones(int(n), np.float32)
        for _ in range(3):
            comm.Allreduce(MPI.IN_PLACE, buf)
        times = []
        r = max(3, int(reps * min(1.0, 1e5 / n)))
        for _ in range(r):
            comm.Barrier()
            t0 = time.perf_counter()
            comm.Allreduce(MPI.IN_PLACE, buf)
            times.append(time.perf_counter() - t0)
        # NOTE: the minimum is the uncontended cost (what the model needs); the median shows the load
        out[int(n)] = comm.allreduce(min(times), op=MPI.MAX)
        med[int(n)] = comm.allreduce(statistics.median(times), op=MPI.MAX)
    sync = {}
    import gradbox as gb

    for how, shared, sharded in (("sharded", None, None), ("shared_memory", None, False), ("allreduce", False, None)):
        # DistributedOptimizer.synchronize on the MLP's gradients (0.94 MB): copy in, sum, views out
        # (sharded: each rank sums its half, and a barrier; the update, not timed here, is halved too)
        ps = [gb.nn.Parameter(np.zeros(s, np.float32)) for s in (200704, 256, 32768, 128, 1280, 10)]
        opt = dist.DistributedOptimizer(gb.optim.SGD(ps, lr=0.0), shared_memory=shared, shard_update=sharded)
        grads = [np.ones(s, np.float32) for s in (200704, 256, 32768, 128, 1280, 10)]
        times = []
        for i in range(reps + 5):
            for q, g in zip(ps, grads):
                q.grad = g
            comm.Barrier()
            t0 = time.perf_counter()
            opt.synchronize()
            times.append(time.perf_counter() - t0)
        sync[how] = comm.allreduce(statistics.median(times[5:]), op=MPI.MAX)
        opt.remove()
    if dist.is_main():
        print(json.dumps({"allreduce_s": out, "allreduce_median_s": med, "synchronize_median_s": sync}))


# --------------------------------------------------------------------------------------------
# orchestration
# --------------------------------------------------------------------------------------------
def _env(threads):
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(threads)
    return env


def _mpiexec():
    exe = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    return exe if os.path.exists(exe) else "mpiexec"


def _child(args, k, threads, timeout=600):
    cmd = [sys.executable, os.path.abspath(__file__), *args]
    if k > 1:
        cmd = [_mpiexec(), "-n", str(k), *cmd]
    r = subprocess.run(cmd, capture_output=True, text=True, env=_env(threads), cwd=ROOT, timeout=timeout)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{r.stderr[-2000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


CONFIGS = (("1p1t", 1, 1), ("1p2t", 1, 2), ("2p1t", 2, 1))
# NOTE: DistributedOptimizer's default on one machine sums through shared memory; this one forces Allreduce
ALLREDUCE_CONFIG = ("2p1t-allreduce", 2, 1)
# NOTE: and on one machine each rank updates its slice of the parameters; this one has every rank update all
UNSHARDED_CONFIG = ("2p1t-unsharded", 2, 1)


def measure_throughput(batches, rounds, samples, net="mlp", configs=CONFIGS):
    results = {b: {name: [] for name, _, _ in configs} for b in batches}
    for r in range(rounds):
        for b in batches:
            order = configs[r % len(configs):] + configs[:r % len(configs)]
            for name, k, threads in order:
                steps = max(4, samples // b)
                how = name.split("-")[1] if "-" in name else "auto"
                res = _child(["--worker", "train", "--batch", str(b), "--steps", str(steps),
                              "--threads", str(threads), "--net", net, "--sum", how], k, threads)
                results[b][name].append(res["samples_per_s"])
                print(f"  round {r + 1} batch {b} {name}: {res['samples_per_s']:8.0f} samples/s", flush=True)
    return results


def fit_alpha_beta(times):
    n = np.array(sorted(times), dtype=float)
    t = np.array([times[k] for k in sorted(times)])
    bytes_ = 4 * n
    # NOTE: weighted by 1/t, so the small sizes (which decide alpha) count as much as the large
    A = np.stack([np.ones_like(bytes_), bytes_], axis=1) / t[:, None]
    (alpha, beta), *_ = np.linalg.lstsq(A, t / t, rcond=None)
    return float(alpha), float(beta)


def ring_allreduce_s(k, nbytes, gbit_s, alpha):
    return 2 * (k - 1) / k * nbytes / (gbit_s * 1e9 / 8) + 2 * (k - 1) * alpha


def scaling_table(c_per_sample, overhead_s, nbytes, global_batch, alphas, ks=(2, 4, 8, 16, 32, 64),
                  gbits=(10, 100)):
    """Efficiency (one-node time / K) / K-node time, per K and network.

    One step on K nodes: ``o + c * b / K + allreduce(K)``; ``o`` is the per-step cost that does not
    shrink with K (Python, the optimizer's update of every parameter on every rank).
    """
    rows = []
    for k in ks:
        row = {"K": k}
        one = overhead_s + c_per_sample * global_batch
        for g in gbits:
            step = overhead_s + c_per_sample * global_batch / k + ring_allreduce_s(k, nbytes, g, alphas[g])
            row[f"eff_{g}"] = one / (k * step)
        rows.append(row)
    return rows


def crossover_batch(c_per_sample, nbytes, k, gbit_s, alpha):
    """Batch per rank below which the allreduce takes longer than the compute."""
    return ring_allreduce_s(k, nbytes, gbit_s, alpha) / c_per_sample


def model_report(c, o, report):
    nbytes = 4 * n_params()
    alphas = {10: 25e-6, 100: 5e-6}  # NOTE: assumed network latencies per message (TCP 10 GbE, RDMA 100 Gb)
    report.update(c_per_sample_s=c, overhead_per_step_s=o)
    print(f"\n## scaling model: c = {c * 1e6:.1f} us/sample (1 process, 1 thread, batch 1024), o = {o * 1e3:.2f} ms "
          f"per step (batch 1, minus c), {nbytes / 1e6:.2f} MB of float32 gradients, "
          f"alpha 25 us @ 10 Gbit/s, 5 us @ 100 Gbit/s")
    for gb_ in (1024, 256):
        rows = scaling_table(c, o, nbytes, gb_, alphas)
        report[f"model_{gb_}"] = rows
        print(f"  global batch {gb_}:  " + "  ".join(
            f"K={r['K']}: {100 * r['eff_10']:.0f}%/{100 * r['eff_100']:.0f}%" for r in rows))
    cross = {k: {g: crossover_batch(c, nbytes, k, g, alphas[g]) for g in (10, 100)} for k in (2, 8, 64)}
    report["crossover_batch_per_rank"] = cross
    for k, v in cross.items():
        print(f"  K={k}: the allreduce outlasts the compute below a batch per rank of {v[10]:.0f} at 10 Gbit/s, "
              f"{v[100]:.0f} at 100 Gbit/s")


def lenet_report(args):
    """LeNet-5 (61,706 parameters): 1 vs 2 processes, and its scaling model."""
    print(f"LeNet-5: {LENET_PARAMS:,} float32 parameters; load average before {os.getloadavg()[0]:.1f}", flush=True)
    # NOTE: without the one-process two-thread configuration: on this machine it runs 5-10x slower
    thr = measure_throughput((256, 64), args.rounds, args.samples, net="lenet", configs=(CONFIGS[0], CONFIGS[2]))
    for b, res in thr.items():
        rs = [x / y for x, y in zip(res["2p1t"], res["1p1t"])]
        print(f"  batch {b:5d}: 2p1t / 1p1t = {statistics.median(rs):.2f}x  [{min(rs):.2f}, {max(rs):.2f}]"
              f"   ({statistics.median(res['2p1t']):.0f} vs {statistics.median(res['1p1t']):.0f} samples/s)")
    c = 1.0 / max(thr[256]["1p1t"])
    o = max(0.0, min(_child(["--worker", "train", "--batch", "1", "--steps", "200", "--threads", "1", "--net",
                             "lenet"], 1, 1)["step_s"] for _ in range(3)) - c)
    nbytes = 4 * LENET_PARAMS
    alphas = {10: 25e-6, 100: 5e-6}
    print(f"  model: c = {c * 1e6:.0f} us/sample (batch 256), o = {o * 1e3:.2f} ms/step, {nbytes / 1e6:.2f} MB")
    for gb_ in (256, 64):
        rows = scaling_table(c, o, nbytes, gb_, alphas)
        print(f"  global batch {gb_}:  " + "  ".join(
            f"K={r['K']}: {100 * r['eff_10']:.0f}%/{100 * r['eff_100']:.0f}%" for r in rows))
    for k in (2, 8, 64):
        print(f"  K={k}: the allreduce outlasts the compute below a batch per rank of "
              f"{crossover_batch(c, nbytes, k, 10, alphas[10]):.1f} at 10 Gbit/s, "
              f"{crossover_batch(c, nbytes, k, 100, alphas[100]):.2f} at 100 Gbit/s")
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"throughput": thr, "c_per_sample_s": c, "overhead_per_step_s": o}, f, indent=1)


def measure_overhead(c, tries=3):
    """Per-step time that does not scale with the batch: one process, one thread, batch 1, minus c."""
    best = min(_child(["--worker", "train", "--batch", "1", "--steps", "400", "--threads", "1"], 1, 1)["step_s"]
               for _ in range(tries))
    return max(0.0, best - c)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worker", choices=("train", "allreduce", "phases"))
    ap.add_argument("--phases", action="store_true",
                    help="only the per-phase profile at global batch 256 (1p1t@128, 1p2t, 2p1t, and 2p1t with "
                         "a barrier instead of the sum: the bound of a free exchange)")
    ap.add_argument("--exchange", choices=("real", "unsharded", "barrier"), default="real", help="(phases worker)")
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=16, help="(worker) steps to time")
    ap.add_argument("--samples", type=int, default=32768, help="samples per timed run (steps = samples / batch)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--json")
    ap.add_argument("--sum", choices=("auto", "allreduce", "unsharded"), default="auto",
                    help="(worker) DistributedOptimizer's sum: its default, always Allreduce, or shard_update=False")
    ap.add_argument("--batches", default="1024,256", help="global batches of the throughput rounds")
    ap.add_argument("--compare-allreduce", action="store_true",
                    help="also run mpiexec -n 2 with DistributedOptimizer(shared_memory=False) in the rounds")
    ap.add_argument("--compare-unsharded", action="store_true",
                    help="also run mpiexec -n 2 with DistributedOptimizer(shard_update=False) in the rounds")
    ap.add_argument("--net", choices=("mlp", "lenet"), default="mlp",
                    help="with --lenet-only or --worker: the network")
    ap.add_argument("--lenet-only", action="store_true",
                    help="only the LeNet-5 throughput (batch 256 and 64) and its model")
    ap.add_argument("--model-from", metavar="JSON", help="only the model, from a saved --json run")
    ap.add_argument("--c", type=float, help="with --model-from: seconds per sample to use instead")
    args = ap.parse_args(argv)
    if args.worker == "train":
        return worker_train(args.batch, args.steps, args.threads, args.net, args.sum)
    if args.worker == "phases":
        return worker_phases(args.batch, args.steps, args.threads, args.exchange)
    if args.worker == "allreduce":
        return worker_allreduce([1e3, 1e4, 1e5, 3e5, 1e6, 3e6, 1e7], reps=50)
    if args.model_from:  # the model again, from a saved run's measurements and a fresh overhead measurement
        with open(args.model_from) as f:
            saved = json.load(f)
        c = saved["c_per_sample_s"] if args.c is None else args.c
        return model_report(c, measure_overhead(c), {})

    if args.lenet_only:
        return lenet_report(args)
    if args.phases:
        if args.steps == 16:
            args.steps = 300
        return phases_report(args)
    print(f"MLP {'-'.join(map(str, LAYERS))}: {n_params():,} float32 parameters; {os.cpu_count()} cores, "
          f"load average before {os.getloadavg()[0]:.1f}", flush=True)
    print("allreduce between 2 local processes ...", flush=True)
    ar = _child(["--worker", "allreduce"], 2, 1)
    times = {int(k): v for k, v in ar["allreduce_s"].items()}
    medians = {int(k): v for k, v in ar["allreduce_median_s"].items()}
    alpha, beta = fit_alpha_beta(times)
    print("throughput, interleaved rounds ...", flush=True)
    configs = (CONFIGS + ((ALLREDUCE_CONFIG,) if args.compare_allreduce else ())
               + ((UNSHARDED_CONFIG,) if args.compare_unsharded else ()))
    batches = tuple(int(b) for b in args.batches.split(","))
    thr = measure_throughput(batches, args.rounds, args.samples, configs=configs)
    report = {"allreduce_s": times, "allreduce_median_s": medians, "alpha_s": alpha, "beta_s_per_byte": beta, "throughput": thr,
              "n_params": n_params(), "synchronize_median_s": ar["synchronize_median_s"]}
    print("\n## allreduce (float32, 2 local processes; minimum and median over repetitions)")
    for n, t in sorted(times.items()):
        print(f"  {n:>10,d} floats {4 * n / 1e6:8.3f} MB  min {t * 1e3:8.3f} ms  median {medians[n] * 1e3:8.3f} ms"
              f"   fit {1e3 * (alpha + beta * 4 * n):8.3f} ms")
    print(f"  fit: alpha = {alpha * 1e6:.1f} us, beta = {beta * 1e9:.3f} ns/byte "
          f"({1 / beta / 1e9:.2f} GB/s effective)")
    sync = ar["synchronize_median_s"]
    print(f"  DistributedOptimizer.synchronize of the MLP's 0.94 MB (median): shared memory, sharded "
          f"{sync['sharded'] * 1e3:.3f} ms, unsharded {sync['shared_memory'] * 1e3:.3f} ms, "
          f"Allreduce {sync['allreduce'] * 1e3:.3f} ms")
    print("\n## throughput ratios (median over rounds [min, max])")
    ratios = {}
    for b, res in thr.items():
        pairs = (("2p1t", "1p1t"), ("2p1t", "1p2t"), ("1p2t", "1p1t"))
        if args.compare_allreduce:
            pairs += (("2p1t-allreduce", "1p1t"), ("2p1t", "2p1t-allreduce"))
        if args.compare_unsharded:
            pairs += (("2p1t-unsharded", "1p2t"), ("2p1t", "2p1t-unsharded"))
        for num, den in pairs:
            rs = [x / y for x, y in zip(res[num], res[den])]
            ratios[f"{num}/{den}@{b}"] = rs
            print(f"  batch {b:5d}: {num:>14} / {den:<14} = {statistics.median(rs):.2f}x  [{min(rs):.2f}, {max(rs):.2f}]"
                  f"   ({statistics.median(res[num]):.0f} vs {statistics.median(res[den]):.0f} samples/s)")
    report["ratios"] = ratios
    # compute per sample: one process, one thread, batch 1024 (the best rate over rounds: least disturbed)
    if 1024 not in thr:
        return
    c = 1.0 / max(thr[1024]["1p1t"])
    model_report(c, measure_overhead(c), report)
    print(f"load average after: {os.getloadavg()[0]:.1f} (1 min), {os.getloadavg()[1]:.1f} (5 min)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1, default=str)


if __name__ == "__main__":
    main()
