"""gradbox benchmark suite: one command, every library side by side in one run.

    python bench/run.py                 # full run (about 7 minutes on 2 cores), updates BENCHMARKS.md
    python bench/run.py --quick --no-write --json out.json   # tiny sizes, seconds (smoke test)

Each library runs in its own persistent process (``bench/worker.py --serve``); the
processes take turns slice by slice through each epoch (order rotating), with the
matmul peak measured in the same time slots, so a burst of load on a shared machine
hits all of them alike. Ratios are paired (median over time slots of gradbox's rate
over the peer's); absolute numbers move with the machine's load.
"""
from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
WORKER = os.path.join(HERE, "worker.py")
sys.path.insert(0, HERE)
from worker import issue_flops, step_flops  # noqa: E402

# NOTE: these variables can force a slow generic OpenBLAS kernel; they are removed
# for the benchmark's own child processes only (never for tests or CI).
_OPENBLAS_OVERRIDES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")

LIBS = ("gradbox", "gradbox.fit", "gradbox.fused", "torch", "torch.fused", "sklearn", "numpy")
TARGETS = {
    "torch_b128": 1.3, "torch_b32": 1.2, "sklearn_b128": 3.0, "peak_b128": 0.70,
    "latency_vs_torch": 0.5, "memory_vs_floor": 1.5, "import_s": 0.3,
}


def _child_env():
    env = dict(os.environ)
    removed = [k for k in _OPENBLAS_OVERRIDES if env.pop(k, None) is not None]
    env["PYTHONPATH"] = ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env, removed


def run_tasks(tasks, env):
    proc = subprocess.run(
        [sys.executable, WORKER, json.dumps(tasks)], capture_output=True, text=True, env=env, cwd=ROOT
    )
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark worker failed for {tasks}:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout)


def available(lib):
    name = {"gradbox": "gradbox", "gradbox.fit": "gradbox", "gradbox.fused": "numba", "torch": "torch",
            "torch.fused": "torch", "sklearn": "sklearn"}.get(lib)
    if name is None:
        return True
    if importlib.util.find_spec(name) is None:
        return False
    if lib == "gradbox.fit":
        # NOTE: gradbox.train is a package since the redesign (issue 12), a module before it
        return any(os.path.exists(os.path.join(ROOT, "gradbox", *p)) for p in (["train.py"], ["train", "__init__.py"]))
    return True


def config(quick):
    if quick:
        return dict(n=1024, d=784, batches=[32, 128, 512], runs=1, infer_batch=500, calls=50, reps=2,
                    peak_n=256, min_time=0.005, slices=4)
    return dict(n=60000, d=784, batches=[32, 128, 512], runs=3, infer_batch=10000, calls=2000, reps=10,
                peak_n=2048, min_time=0.1, slices=10)


class Server:
    """A persistent ``worker.py --serve`` process for one library."""

    def __init__(self, lib, env):
        self.lib = lib
        self.proc = subprocess.Popen([sys.executable, WORKER, "--serve"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
        self.hello = self.ask({"lib": lib})

    def ask(self, cmd):
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            err = self.proc.stderr.read()
            raise RuntimeError(f"benchmark worker for {self.lib} failed on {cmd}:\n{err[-3000:]}")
        return json.loads(line)

    def _cpu_ticks(self):
        try:
            with open(f"/proc/{self.proc.pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            return int(fields[11]) + int(fields[12])  # utime + stime, all threads
        except (OSError, IndexError, ValueError):
            return None

    quick = False  # NOTE: quick mode (smoke test) does not wait: its numbers are meaningless anyway

    def settle(self, limit=1.0):
        """Wait until this process's threads stop using CPU (BLAS/OpenMP workers spin after a call).

        NOTE: OpenBLAS threads busy-wait for about 2^28 cycles after each call; a resting
        library must not steal a core from the one being measured.
        """
        if self.quick:
            return
        t_end = time.perf_counter() + limit
        last = self._cpu_ticks()
        while last is not None and time.perf_counter() < t_end:
            time.sleep(0.04)
            now = self._cpu_ticks()
            if now == last:
                return
            last = now

    def close(self):
        try:
            self.ask({"cmd": "quit"}) if self.proc.poll() is None else None
        except (RuntimeError, BrokenPipeError, ValueError):
            pass
        self.proc.wait(timeout=60)


def rotate(seq, k):
    k %= max(len(seq), 1)
    return seq[k:] + seq[:k]


def collect(quick, libs, runs=None, log=print):
    """Run every measurement; libraries take turns slice by slice (see ``Server``)."""
    cfg = config(quick)
    if runs:
        cfg["runs"] = runs
    Server.quick = quick
    env, removed = _child_env()
    libs = [lib for lib in libs if available(lib)]
    raw = {"train": {}, "slices": {}, "gemm": {}, "latency": {}, "throughput": {}, "import": {}, "peak": [], "skipped": {},
           "fused": []}
    t_start = time.time()
    peak_task = {"kind": "peak", "n": cfg["peak_n"], "d": cfg["d"], "batches": cfg["batches"],
                 "min_time": cfg["min_time"]}
    for r in range(cfg["runs"]):
        log(f"round {r + 1}/{cfg['runs']}  ({time.time() - t_start:.0f} s)")
        raw["peak"].append(run_tasks([peak_task], env)[0])
        servers = []
        for lib in libs:
            srv = Server(lib, env)
            srv.settle()
            if not srv.hello.get("ok"):
                raw["skipped"][lib] = srv.hello.get("skipped")
                srv.close()
                continue
            if lib in ("gradbox", "torch"):
                raw["import"].setdefault(lib, []).append(srv.hello["import_s"])
            if lib == "gradbox.fused":
                raw["fused"].append({k: srv.hello[k] for k in ("fused_load_s", "fused_load_rss")})
            servers.append(srv)
        gemm = Server("blas-peak", env)
        gemm.settle()
        try:
            for batch in cfg["batches"]:
                for srv in servers:
                    srv.ask({"cmd": "train", "batch": batch, "n": cfg["n"], "d": cfg["d"], "slices": cfg["slices"]})
                    srv.settle()
                active, i = list(servers), 0
                while active:
                    for srv in rotate(active, i):
                        out = srv.ask({"cmd": "slice"})
                        srv.settle()
                        if out.get("done"):
                            active.remove(srv)
                            continue
                        raw["slices"].setdefault(f"{srv.lib}|{batch}", []).append((r, i, out["samples"] / out["seconds"]))
                    if active:
                        # the matmul peak, measured in the same time slot as the libraries
                        g = gemm.ask({"cmd": "gemm", "n": cfg["peak_n"], "batch": batch, "d": cfg["d"],
                                      "seconds": cfg["min_time"]})
                        gemm.settle()
                        raw["gemm"].setdefault(batch, []).append((r, i, g["square_gflops"], g["workload_gflops"]))
                    i += 1
                for srv in servers:
                    res = srv.ask({"cmd": "finish"})
                    raw["train"].setdefault(f"{srv.lib}|{batch}", []).append(res)
                    log(f"  train {srv.lib:12s} batch {batch:4d}: {res['samples_per_s']:10.0f} samples/s")
            inf = [srv for srv in servers if srv.lib in ("gradbox", "torch", "sklearn", "numpy")]
            for srv in inf:
                srv.ask({"cmd": "infer", "d": cfg["d"], "batch": cfg["infer_batch"]})
                srv.settle()
            blocks = 10
            for blk in range(blocks):
                for srv in rotate(inf, blk):
                    times = srv.ask({"cmd": "latency", "calls": max(1, cfg["calls"] // blocks)})["times"]
                    srv.settle()
                    raw["latency"].setdefault(srv.lib, []).append((r, blk, times))
            for rep in range(cfg["reps"]):
                for srv in rotate(inf, rep):
                    out = srv.ask({"cmd": "throughput", "reps": 1})
                    srv.settle()
                    raw["throughput"].setdefault(srv.lib, []).append((r, rep, out["batch"] / out["times"][0]))
        finally:
            for srv in servers + [gemm]:
                srv.close()
    return summarize(raw, cfg, removed, time.time() - t_start)


def _paired_ratios(raw_slices, a, b):
    """rate(a)/rate(b) in every time slot where both ran, each pair measured back to back."""
    A = {(r, i): v for r, i, v in raw_slices.get(a, [])}
    B = {(r, i): v for r, i, v in raw_slices.get(b, [])}
    return [A[k] / B[k] for k in A if k in B]


def _paired(raw_slices, a, b):
    """Median over time slots of rate(a)/rate(b)."""
    ratios = _paired_ratios(raw_slices, a, b)
    return statistics.median(ratios) if ratios else None


def median_ci(values, level=0.95):
    """Distribution-free confidence interval of the median: a pair of order statistics.

    For n independent values the true median lies below the k-th smallest with probability
    P(Binomial(n, 1/2) >= k); the interval (x_(k), x_(n+1-k)) takes the largest k whose two
    tails together stay within 1 - level. None when n is too small for any such k (n < 6 at 95%).
    NOTE: slots of one run share the machine's load bursts, so they are not fully independent;
    the interval shows the run's own spread, not the spread between runs.
    """
    xs = sorted(values)
    n = len(xs)
    tail, k = 0.0, 0  # tail = P(Binomial(n, 1/2) <= k - 1)
    while True:
        nxt = tail + math.comb(n, k) / 2.0 ** n
        if 2 * nxt > 1 - level:
            break
        tail, k = nxt, k + 1
    if k == 0:
        return None
    return xs[k - 1], xs[n - k]


def _med(rows, key):
    vals = [row[key] for row in rows if row.get("ok", True)]
    return statistics.median(vals) if vals else None


def summarize(raw, cfg, removed, elapsed):
    peak = raw["peak"]
    square = statistics.median(sq for rows in raw["gemm"].values() for _, _, sq, _ in rows)
    res = {
        "config": cfg, "elapsed_s": elapsed, "openblas_env_removed": removed,
        "machine": {
            "cpu_count": peak[0]["cpu_count"], "blas": peak[0]["blas"], "platform": platform.platform(),
            "python": platform.python_version(), "processor": _cpu_name(),
        },
        "versions": _versions(),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "peak": {"square_n": cfg["peak_n"], "square_gflops": square,
                 "workload_gflops": {b: statistics.median(wl for _, _, _, wl in raw["gemm"][b])
                                     for b in cfg["batches"]}},
        "train": {}, "infer": {}, "import": {}, "skipped": dict(raw["skipped"]), "paired": {}, "paired_ci": {},
        "slices": raw["slices"],  # (round, slot, samples/s) per library and batch, for a closer look
    }
    for key, rows in raw["train"].items():
        lib, batch = key.split("|")
        batch = int(batch)
        sps = _med(rows, "samples_per_s")
        flops = step_flops(batch, cfg["d"]) / batch * sps
        peak_rss = statistics.median(row["peak_rss"] - row["rss_after_imports"] for row in rows)
        res["train"].setdefault(lib, {})[batch] = {
            "samples_per_s": sps, "runs": [row["samples_per_s"] for row in rows],
            "best_samples_per_s": max(row["samples_per_s"] for row in rows),
            "wall_samples_per_s": _med(rows, "samples_per_s_wall"),
            "final_loss": _med(rows, "final_loss"), "gflops": flops / 1e9,
            "share_of_square_peak": flops / 1e9 / square,
            "share_of_workload_peak": flops / 1e9 / res["peak"]["workload_gflops"][batch],
            "peak_rss_over_imports": peak_rss, "floor_bytes": rows[0]["floor_bytes"],
            "memory_vs_floor": peak_rss / rows[0]["floor_bytes"],
            "peak_rss_total": statistics.median(row["peak_rss"] for row in rows),
        }
    for batch in cfg["batches"]:
        # share of the matmul peak, paired: gradbox's GFLOP/s over the peak measured in the same slot
        per = step_flops(batch, cfg["d"]) / batch / 1e9
        for lib, suffix in (("gradbox", ""), ("gradbox.fused", "_fused")):
            g = {(r, i): v for r, i, v in raw["slices"].get(f"{lib}|{batch}", [])}
            shares = [(g[(r, i)] * per / sq, g[(r, i)] * per / wl) for r, i, sq, wl in raw["gemm"].get(batch, [])
                      if (r, i) in g]
            if not shares:
                continue
            exact = statistics.median(a for a, _ in shares)
            res["paired"].setdefault("share_of_square_peak" + suffix, {})[batch] = exact
            ci = median_ci([a for a, _ in shares])
            res["paired_ci"].setdefault("share_of_square_peak" + suffix, {})[batch] = ci
            res["paired_ci"].setdefault("share_6pb_of_square_peak" + suffix, {})[batch] = ci and tuple(
                v * issue_flops(batch, cfg["d"]) / step_flops(batch, cfg["d"]) for v in ci)
            res["paired"].setdefault("share_of_workload_peak" + suffix, {})[batch] = statistics.median(
                b for _, b in shares)
            # the issue's 6·P·b count: the same speed, a constant factor more FLOPs per sample
            res["paired"].setdefault("share_6pb_of_square_peak" + suffix, {})[batch] = (
                exact * issue_flops(batch, cfg["d"]) / step_flops(batch, cfg["d"]))
        pairs = {"torch": ("gradbox", "torch"), "sklearn": ("gradbox", "sklearn"), "numpy": ("gradbox", "numpy"),
                 # NOTE: like with like: gradbox's fused update against torch's fused SGD
                 "fused_vs_torch_fused": ("gradbox.fused", "torch.fused"),
                 "fused_gain": ("gradbox.fused", "gradbox"), "torch_fused_gain": ("torch.fused", "torch")}
        for key, (a, b) in pairs.items():
            ratios = _paired_ratios(raw["slices"], f"{a}|{batch}", f"{b}|{batch}")
            if ratios:
                res["paired"].setdefault(key, {})[batch] = statistics.median(ratios)
                res["paired_ci"].setdefault(key, {})[batch] = median_ci(ratios)
    for lib, blocks in raw["latency"].items():
        alltimes = [t for _, _, times in blocks for t in times]
        thr = [v for _, _, v in raw["throughput"].get(lib, [])]
        res["infer"][lib] = {"latency_s": statistics.median(alltimes), "throughput": statistics.median(thr),
                             "batch": cfg["infer_batch"]}
    if "gradbox" in raw["latency"]:
        gbl = {(r, b): statistics.median(t) for r, b, t in raw["latency"]["gradbox"]}
        for peer, blocks in raw["latency"].items():
            ratios = [gbl[(r, b)] / statistics.median(t) for r, b, t in blocks if (r, b) in gbl]
            res["paired"].setdefault("latency", {})[peer] = statistics.median(ratios)
            res["paired_ci"].setdefault("latency", {})[peer] = median_ci(ratios)
    for lib, vals in raw["import"].items():
        res["import"][lib] = {"seconds": statistics.median(vals), "runs": vals}
    if raw["fused"]:
        res["fused"] = {"numba": _versions().get("numba"),
                        "load_s": statistics.median(x["fused_load_s"] for x in raw["fused"]),
                        "load_rss": statistics.median(x["fused_load_rss"] for x in raw["fused"])}
    res["targets"] = check_targets(res)
    return res


def _cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _versions():
    out = {}
    for mod in ("numpy", "torch", "sklearn", "numba", "gradbox"):
        spec = importlib.util.find_spec(mod)
        if spec is None:
            continue
        try:
            from importlib.metadata import version

            out[mod] = version({"sklearn": "scikit-learn"}.get(mod, mod))
        except Exception:  # noqa: BLE001 - version is decoration only
            out[mod] = "?"
    return out


def check_targets(res):
    """Each target: the measured ratio, the target and whether it is met (None: peer missing)."""
    tr, out = res["train"], {}
    gb = tr.get("gradbox", {})

    def ratio(peer, batch):
        return res["paired"].get(peer, {}).get(batch), res.get("paired_ci", {}).get(peer, {}).get(batch)

    def add(name, measured, target, higher=True):
        value, ci = measured if isinstance(measured, tuple) else (measured, None)
        met = None if value is None else (value >= target if higher else value <= target)
        out[name] = {"value": value, "target": target, "met": met, "higher_is_better": higher,
                     "ci": list(ci) if ci else None}

    add("train speed vs torch, batch 128", ratio("torch", 128), TARGETS["torch_b128"])
    add("train speed vs torch, batch 32", ratio("torch", 32), TARGETS["torch_b32"])
    add("the same, both optimizers fused (gradbox fused=True vs torch fused=True; reference)",
        ratio("fused_vs_torch_fused", 128), TARGETS["torch_b128"])
    add("train speed vs sklearn, batch 128", ratio("sklearn", 128), TARGETS["sklearn_b128"])
    # NOTE: the issue counts a step as 6 · parameters · batch FLOPs; the exact GEMM count is lower
    # (the first layer's dX is skipped), so the same speed is a smaller share. Both are reported.
    add("share of sgemm peak, batch 128 (6·params·batch FLOPs, the issue's count)",
        ratio("share_6pb_of_square_peak", 128), TARGETS["peak_b128"])
    add("share of sgemm peak, batch 128 (exact GEMM FLOPs, stricter; reference)",
        ratio("share_of_square_peak", 128), TARGETS["peak_b128"])
    add("share of sgemm peak, batch 128, 6·params·batch, gradbox with fused=True (reference)",
        ratio("share_6pb_of_square_peak_fused", 128), TARGETS["peak_b128"])
    add("single-sample latency vs torch", ratio("latency", "torch"), TARGETS["latency_vs_torch"], higher=False)
    add("peak training memory vs floor, batch 128", gb.get(128, {}).get("memory_vs_floor"),
        TARGETS["memory_vs_floor"], higher=False)
    add("import gradbox (s)", res["import"].get("gradbox", {}).get("seconds"), TARGETS["import_s"], higher=False)
    return out


# --- report -------------------------------------------------------------------------
def _f(v, fmt="{:.2f}"):
    return "n/a" if v is None else fmt.format(v)


def _fused_line(f):
    if not f:
        return ("- Optimizers: the defaults (NumPy for gradbox, torch's unfused loop). The `.fused` rows did not run "
                "(gradbox's needs numba: `pip install \"gradbox[fast]\"`).")
    return ("- Optimizers: `gradbox` and `torch` rows use each library's default SGD (gradbox: NumPy operations; "
            "torch: its unfused CPU loop); the `.fused` rows pass `fused=True` to both (gradbox: one numba pass "
            f"per parameter, bit-identical to its NumPy path; numba {f['numba']}). Loading numba and the cached "
            f"kernels took {f['load_s']:.2f} s and {f['load_rss'] / 2**20:.0f} MB once per process (before the "
            "memory baseline, like torch's libraries at import; not part of `import gradbox`).")


def render(res, command):
    m, cfg = res["machine"], res["config"]
    blas = m["blas"]
    lines = [
        f"- Date: {res['date']}; run took {res['elapsed_s']:.0f} s; {cfg['runs']} rounds. Each library runs in its "
        f"own process; the processes take turns slice by slice ({cfg['slices']} slices per epoch, order rotating), "
        "so every library sees the same machine load. Ratios are paired: the median over time slots of "
        "gradbox's rate over the peer's, measured back to back.",
        f"- Machine: {m['processor']}, {m['cpu_count']} logical cores, {m['platform']}, Python {m['python']}.",
        f"- BLAS (threadpoolctl, NumPy's): {blas.get('internal_api')} {blas.get('version')}, "
        f"kernel `{blas.get('architecture')}`, {blas.get('num_threads')} threads. "
        f"OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE removed for the children: {res['openblas_env_removed'] or 'none were set'}.",
        f"- Versions: {', '.join(f'{k} {v}' for k, v in res['versions'].items())}.",
        f"- Data: synthetic MNIST-shaped, {cfg['n']:,} x {cfg['d']} float32, 10 classes; "
        "MLP 784-256-128-10 ReLU, softmax cross-entropy, SGD lr 0.01 momentum 0.9, one epoch, same initial weights.",
        _fused_line(res.get("fused")),
        "",
        "### Targets",
        "",
        "'measured' is the paired median; '95% interval' is the distribution-free confidence interval of "
        "that median over the run's time slots (order statistics). Where the interval contains the goal, "
        "this run cannot tell met from missed, and the last column says so.",
        "",
        "| target | measured | 95% interval | goal | met |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, t in res["targets"].items():
        sign = ">=" if t["higher_is_better"] else "<="
        met = {True: "yes", False: "**no**", None: "n/a (peer missing)"}[t["met"]]
        ci = t.get("ci")
        if ci and t["met"] is not None and ci[0] <= t["target"] <= ci[1]:
            met += " (within the interval)"
        unit = "" if "(s)" in name else "x"
        interval = f"{ci[0]:.3f}–{ci[1]:.3f}" if ci else "–"
        lines.append(f"| {name} | {_f(t['value'], '{:.3f}')}{unit if t['value'] is not None else ''} "
                     f"| {interval} | {sign} {t['target']}{unit} | {met} |")
    pk = res["peak"]
    lines += [
        "",
        "### Training throughput (one epoch, samples/s, median)",
        "",
        f"float32 matmul peak (NumPy's BLAS, measured in every time slot of the rotation, median): "
        f"{pk['square_gflops']:.0f} GFLOP/s at {pk['square_n']}x{pk['square_n']} sgemm; "
        "at the workload's own GEMM shapes (the 8 GEMMs of one step, back to back, preallocated): "
        + ", ".join(f"batch {b}: {g:.0f} GFLOP/s" for b, g in pk["workload_gflops"].items())
        + ". Two FLOP counts: the issue's estimate 6·P·b per step (P = 235,146 weights and biases), and the "
        "exact GEMM count: forward + dW for 3 layers + dX for layers 2-3 (the first layer's dX is skipped), "
        "i.e. 2·b·(3·Σin·out − 784·256), 0.714 of the estimate. The table's GFLOP/s and shares use the exact count. "
        "gradbox's share of the peak, paired per slot: "
        + ", ".join(f"batch {b}: {100 * res['paired'].get('share_6pb_of_square_peak', {}).get(b, float('nan')):.0f}% "
                    f"of sgemm by 6·P·b, {100 * v:.0f}% of sgemm exact, "
                    f"{100 * res['paired'].get('share_of_workload_peak', {}).get(b, float('nan')):.0f}% of workload-shape exact"
                    for b, v in res["paired"].get("share_of_square_peak", {}).items()) + ".",
        "",
        f"samples/s = 1 / (median seconds per sample over the {cfg['slices']} slices of the epoch), median over rounds; "
        "'wall' = the whole epoch's wall time, median over rounds (bursts of load from other processes "
        "hit it fully).",
        "",
        "| library | batch | samples/s | vs gradbox | best round | wall samples/s | GFLOP/s | % of sgemm peak "
        "| % of workload-shape peak | final loss |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    gb = res["train"].get("gradbox", {})
    for b in cfg["batches"]:
        for lib in LIBS:
            row = res["train"].get(lib, {}).get(b)
            if row is None:
                continue
            rel = row["samples_per_s"] / gb[b]["samples_per_s"] if b in gb else None
            lines.append(
                f"| {lib} | {b} | {row['samples_per_s']:,.0f} | {_f(rel)} | {row['best_samples_per_s']:,.0f} "
                f"| {row['wall_samples_per_s']:,.0f} | {row['gflops']:.0f} "
                f"| {100 * row['share_of_square_peak']:.0f}% | {100 * row['share_of_workload_peak']:.0f}% "
                f"| {row['final_loss']:.3f} |"
            )
    lines += ["", "Final loss: the last batch's loss (sklearn: its running epoch loss; gradbox.fit: the epoch mean). "
              "`gradbox.fit` runs with `metrics=()` and no warm-up; its time includes its input checks. "
              "The `.fused` rows are the same loops with `SGD(..., fused=True)`.",
              "", "Paired ratios gradbox / peer (median over back-to-back time slots; higher is better for gradbox):",
              "",
              "| batch | " + " | ".join(f"vs {p}" for p in ("torch", "sklearn", "numpy floor")) +
              " | gradbox.fused vs torch.fused | gradbox.fused / gradbox | torch.fused / torch |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    for b in cfg["batches"]:
        cells = []
        for p in ("torch", "sklearn", "numpy", "fused_vs_torch_fused", "fused_gain", "torch_fused_gain"):
            cells.append(_f(res["paired"].get(p, {}).get(b)))
        lines.append(f"| {b} | " + " | ".join(cells) + " |")
    lines += ["", "The same ratios as quotients of the per-library medians (the samples/s column above; "
              "these move more with bursts of outside load, which the paired ratios are meant to cancel):", "",
              "| batch | " + " | ".join(f"vs {p}" for p in ("torch", "sklearn", "numpy floor")) + " |",
              "| --- | --- | --- | --- |"]
    for b in cfg["batches"]:
        mine = gb.get(b, {}).get("samples_per_s")
        cells = [_f(mine / res["train"][p][b]["samples_per_s"] if mine and b in res["train"].get(p, {}) else None)
                 for p in ("torch", "sklearn", "numpy")]
        lines.append(f"| {b} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "### Memory while training (peak RSS above the process's RSS after its imports)",
        "",
        "Floor = dataset (X and y) + parameters, gradients and momentum + one batch of input + activations "
        "and their gradients.",
        "",
        "| library | batch | peak RSS over imports (MB) | floor (MB) | ratio | total peak RSS (MB) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for lib in LIBS:
        for b, row in sorted(res["train"].get(lib, {}).items()):
            lines.append(f"| {lib} | {b} | {row['peak_rss_over_imports'] / 2**20:.1f} | {row['floor_bytes'] / 2**20:.1f} "
                         f"| {row['memory_vs_floor']:.2f} | {row['peak_rss_total'] / 2**20:.0f} |")
    lines += [
        "",
        f"### Inference (no graph; single-sample latency = median of {cfg['calls']} calls; "
        f"throughput at batch {cfg['infer_batch']:,})",
        "",
        "| library | latency (µs) | gradbox latency / this (paired) | throughput (samples/s) | throughput vs gradbox |",
        "| --- | --- | --- | --- | --- |",
    ]
    gi = res["infer"].get("gradbox")
    for lib in ("gradbox", "torch", "sklearn", "numpy"):
        row = res["infer"].get(lib)
        if row is None:
            continue
        lines.append(
            f"| {lib} | {row['latency_s'] * 1e6:.1f} | {_f(res['paired'].get('latency', {}).get(lib))} "
            f"| {row['throughput']:,.0f} | {_f(row['throughput'] / gi['throughput'] if gi else None)} |"
        )
    lines += ["", "sklearn's `predict_proba` includes validation and the softmax; the others return logits. "
              "Latency blocks and throughput repetitions alternate between the libraries.", "",
              "### Import time (first statement of a fresh process, interpreter start-up excluded, median over rounds)",
              "",
              "| module | seconds |", "| --- | --- |"]
    for lib, row in res["import"].items():
        lines.append(f"| `import {lib}` | {row['seconds']:.3f} |")
    if res["skipped"]:
        lines += ["", "Skipped: " + "; ".join(f"{k} ({v})" for k, v in res["skipped"].items())]
    return "\n".join(lines) + "\n"


BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"


def write_markdown(path, body, command):
    """Replace the generated block of BENCHMARKS.md, keeping the hand-written notes around it."""
    block = f"{BEGIN}\n<!-- generated by `{command}`; do not edit by hand -->\n\n{body}{END}"
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            text = f.read()
        if BEGIN in text and END in text:
            head, rest = text.split(BEGIN, 1)
            text = head + block + rest.split(END, 1)[1]
        else:
            text = text.rstrip() + "\n\n## Latest results\n\n" + block + "\n"
    else:
        text = f"# Benchmarks\n\nReproduce with:\n\n    {command}\n\n## Latest results\n\n{block}\n"
    tmp = path + ".tmp"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes, one round (smoke test; numbers meaningless)")
    ap.add_argument("--runs", type=int, default=None, help="rounds per measurement (default 3; quick 1)")
    ap.add_argument("--libs", default=",".join(LIBS), help=f"comma-separated subset of {','.join(LIBS)}")
    ap.add_argument("--json", default=None, help="also write all results to this JSON file")
    ap.add_argument("--out", default=os.path.join(ROOT, "BENCHMARKS.md"), help="markdown file to update")
    ap.add_argument("--no-write", action="store_true", help="do not touch the markdown file")
    args = ap.parse_args(argv)
    known = set(LIBS)
    libs = [s.strip() for s in args.libs.split(",") if s.strip()]
    bad = [s for s in libs if s not in known]
    if bad or "gradbox" not in libs:
        ap.error(f"--libs: expected a subset of {sorted(known)} including gradbox, received {args.libs!r}")
    if args.runs is not None and args.runs < 1:
        ap.error(f"--runs: expected a positive int, received {args.runs}")
    res = collect(args.quick, libs, args.runs, log=lambda s: print(s, file=sys.stderr))
    command = "python bench/run.py" + (" --quick" if args.quick else "")
    body = render(res, command)
    print(body)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(res, f, indent=1, default=str)
    if not args.no_write:
        write_markdown(args.out, body, command)
    return 0


if __name__ == "__main__":
    sys.exit(main())
