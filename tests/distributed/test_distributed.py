"""gradbox.distributed: sharding, gradient averaging, faults (mpiexec subprocesses, bounded by timeouts).

The MPI tests skip cleanly where mpi4py or mpiexec cannot load (``pip install "gradbox[mpi]"``).
"""
import contextlib
import doctest
import functools
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import gradbox as gb
from gradbox import distributed as dist

from .._paths import ROOT as _ROOT

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = str(_ROOT)
SCRIPTS = os.path.join(HERE, "mpi_scripts")
sys.path.insert(0, SCRIPTS)
import common  # noqa: E402

TIMEOUT = 180  # seconds for one mpiexec job; a hang fails the test instead of the suite


SHM = "/dev/shm"


def _mapped_files():
    """Paths of files some process still maps (read from /proc/*/maps)."""
    paths = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/maps") as f:
                paths.update(line.split(None, 5)[-1].strip() for line in f if SHM in line)
        except OSError:
            continue
    return paths


@pytest.fixture(autouse=True)
def _no_leftover_mpich_segments():
    """Remove the shared-memory segments that MPICH leaves in /dev/shm when a job ends by MPI_Abort or
    a killed rank (the fault tests do both on purpose): only new ones that no process maps any more."""
    if not os.path.isdir(SHM):
        yield
        return
    before = set(os.listdir(SHM))
    yield
    new = {f for f in set(os.listdir(SHM)) - before if f.startswith("mpich_shm_")}
    for _ in range(20):  # NOTE: an aborted job's ranks may take a moment to be gone
        mapped = _mapped_files()
        for name in list(new):
            path = os.path.join(SHM, name)
            if path not in mapped and path + " (deleted)" not in mapped:
                with contextlib.suppress(OSError):
                    os.remove(path)
                new.discard(name)
        if not new:
            break
        time.sleep(0.1)


def _mpiexec():
    exe = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    return exe if os.path.exists(exe) else shutil.which("mpiexec")


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = "1"  # NOTE: K processes on few cores: one BLAS thread each
    return env


@functools.lru_cache(maxsize=None)
def _mpi_problem():
    """None when `mpiexec -n 2 python` with mpi4py works here, else why not."""
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return "mpi4py is not installed (pip install 'gradbox[mpi]')"
    exe = _mpiexec()
    if exe is None:
        return "mpiexec not found"
    try:
        r = subprocess.run([exe, "-n", "2", sys.executable, "-c",
                            "from mpi4py import MPI; assert MPI.COMM_WORLD.Get_size() == 2"],
                           capture_output=True, text=True, timeout=60, env=_env())
    except subprocess.TimeoutExpired:
        return "mpiexec -n 2 did not finish in 60 s"
    return None if r.returncode == 0 else f"mpiexec -n 2 fails here: {r.stderr.strip()[-300:]}"


def mpirun(k, script, *args, timeout=TIMEOUT, cwd=None):
    problem = _mpi_problem()
    if problem:
        pytest.skip(problem)
    cmd = [_mpiexec(), "-n", str(k), sys.executable, os.path.join(SCRIPTS, script), *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=_env(), cwd=cwd)


# --- the sampler (no MPI needed) -------------------------------------------------------------
@given(n=st.integers(1, 60), batch=st.integers(1, 25), k=st.integers(1, 7), seed=st.integers(0, 2**31))
def test_shards_partition_each_global_batch_in_order(n, batch, k, seed):
    samplers = [dist.ShardedSampler(n, batch, seed=seed, rank=r, size=k) for r in range(k)]
    epochs = [list(s) for s in samplers]
    perm = np.random.default_rng(seed).permutation(n)  # the single-process Trainer's order
    bs = min(batch, n)
    assert all(len(e) == len(samplers[0]) == -(-n // bs) for e in epochs)
    for step in range(len(epochs[0])):
        parts = [e[step] for e in epochs]
        np.testing.assert_array_equal(np.concatenate(parts), perm[step * bs:(step + 1) * bs])
        sizes = [len(p) for p in parts]
        assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)


def test_sampler_records_shard_and_batch_sizes():
    s = dist.ShardedSampler(103, 10, shuffle=False, rank=1, size=3)
    sizes = [(len(idx), s.shard_size, s.batch_len) for idx in s]
    assert sizes[0] == (3, 3, 10) and sizes[-1] == (1, 1, 3)
    assert all(a == b for a, b, _ in sizes)


def test_sampler_protocol_state_is_independent_of_k():
    """A state taken mid-epoch under K=3 continues the same global order under K=2."""
    a = dist.ShardedSampler(seed=4, rank=0, size=3)
    a.set_epoch(1)
    first = list(a.batches(23, 5))
    state = a.state_dict()
    parts = []
    for r in range(2):
        b = dist.ShardedSampler(seed=999, rank=r, size=2)
        b.load_state_dict(state)
        parts.append(list(b.batches(23, 5, start=2)))
    order = np.random.default_rng(4).permutation(23)
    for step in range(2, 5):
        np.testing.assert_array_equal(np.concatenate([p[step - 2] for p in parts]), order[step * 5:(step + 1) * 5])
    np.testing.assert_array_equal(first[0], order[:2])
    a.end_epoch()
    assert a.state_dict()["order"] is None


@pytest.mark.parametrize("kwargs, match", [
    ({"n": 0, "batch_size": 3}, "ShardedSampler\\(n\\): expected a positive int, received 0"),
    ({"n": 5, "batch_size": 2.5}, "ShardedSampler\\(batch_size\\)"),
    ({"n": 5, "batch_size": 2, "rank": 2, "size": 2}, "expected 0 <= rank < size, received rank=2, size=2"),
])
def test_sampler_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        dist.ShardedSampler(**kwargs)


def test_docstring_examples():
    result = doctest.testmod(dist, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0 and result.attempted > 0


def test_single_process_without_a_launcher(monkeypatch):
    for var in dist._SIZE_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(dist, "_comm", None)
    assert (dist.launched_size(), dist.rank(), dist.size(), dist.is_main()) == (1, 0, 1, True)
    monkeypatch.setenv("PMI_SIZE", "4")
    assert dist.launched_size() == 4


def test_wanted(monkeypatch):
    for var in dist._SIZE_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(dist, "_comm", None)
    assert dist.wanted(None) is False and dist.wanted(False) is False
    with pytest.raises(TypeError, match="distributed: expected True, False or None"):
        dist.wanted("yes")
    monkeypatch.setenv("PMI_SIZE", "2")
    monkeypatch.setitem(sys.modules, "mpi4py", None)
    with pytest.raises(ImportError, match=r"pip install 'gradbox\[mpi\]'"):
        dist.wanted(None)  # launched as 2 processes without mpi4py: not silently 2 lone runs


def test_missing_mpi4py_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "mpi4py", None)  # NOTE: makes `from mpi4py import MPI` raise ImportError
    monkeypatch.setattr(dist, "_comm", None)
    with pytest.raises(ImportError, match=r"expected mpi4py \(pip install 'gradbox\[mpi\]'\)"):
        dist.init()
    assert dist.available() is False


# --- averaging in one process (a world of one: COMM_SELF) ------------------------------------
def test_world_of_one_is_a_plain_step():
    MPI = pytest.importorskip("mpi4py.MPI")
    X, y = common.dataset()
    results = []
    for wrap in (False, True):
        model = common.model()
        opt = common.optimizer("adam", model.parameters())
        sampler = dist.ShardedSampler(len(X), 10, seed=3, rank=0, size=1)
        if wrap:
            opt = dist.DistributedOptimizer(opt, sampler=sampler, comm=MPI.COMM_SELF)
        for idx in sampler:
            opt.zero_grad()
            gb.nn.CrossEntropyLoss()(model(gb.Tensor(X[idx])), y[idx]).backward()
            opt.step()
        results.append([p.data.copy() for p in model.parameters()])
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-13)
    assert opt.lr == 0.01  # the wrapped optimizer's attributes


def test_parameter_without_gradient_stays_without():
    MPI = pytest.importorskip("mpi4py.MPI")
    a, b = gb.nn.Parameter(np.ones(3)), gb.nn.Parameter(np.ones(2))
    opt = dist.DistributedOptimizer(gb.optim.SGD([a, b], lr=1.0), comm=MPI.COMM_SELF)
    (a * a).sum().backward()
    opt.step()
    assert b.grad is None and np.all(b.data == 1.0)
    np.testing.assert_array_equal(a.data, -np.ones(3))


def test_closure_is_refused():
    MPI = pytest.importorskip("mpi4py.MPI")
    w = gb.nn.Parameter(np.ones(2))
    opt = dist.DistributedOptimizer(gb.optim.SGD([w], lr=1.0), comm=MPI.COMM_SELF)
    with pytest.raises(ValueError, match=r"SGD.step\(closure\): expected no closure under DistributedOptimizer"):
        opt.step(lambda: None)


def test_distributed_optimizer_rejects_non_optimizer():
    pytest.importorskip("mpi4py.MPI")
    with pytest.raises(TypeError, match="expected a gradbox.optim.Optimizer, received list"):
        dist.DistributedOptimizer([1, 2])


# --- under mpiexec -----------------------------------------------------------------------------
def _single_process_reference(name, batch, epochs):
    """The same run in one process through gradbox's own Trainer."""
    from gradbox.train import Trainer

    X, y = common.dataset()
    model = common.model()
    Trainer(model, None, common.optimizer(name, model.parameters()), batch_size=batch, seed=7,
            verbose=0).fit(X, y, epochs=epochs)
    return [p.data for p in model.parameters()]


@pytest.mark.parametrize("how", ["sharded", "shared_memory", "allreduce"])
@pytest.mark.parametrize("k", [2, 3])
@pytest.mark.parametrize("name, batch", [("sgd", 10), ("adam", 10), ("sgd", 2)])
def test_equal_to_one_process_float64(tmp_path, name, batch, k, how):
    out = tmp_path / "params.npz"
    epochs = 3
    r = mpirun(k, "train_equal.py", name, batch, epochs, out, how)
    assert r.returncode == 0, r.stderr[-2000:]
    got = np.load(out)
    # NOTE: every rank of these jobs runs on this machine: the default sums through shared memory
    if common.shared_memory_expected():  # NOTE: with little room in /dev/shm the default falls back to Allreduce
        assert bool(got["shared_memory"]) is (how != "allreduce")
        assert bool(got["shard_update"]) is (how == "sharded")
    ref = _single_process_reference(name, batch, epochs)
    err = max(float(np.abs(got[f"arr_{i}"] - w).max()) for i, w in enumerate(ref))
    print(f"{name} batch {batch} K={k} {how}: max |difference| {err:.2e}")
    assert err < 1e-10
    sizes = got["shard_sizes"].tolist()
    # 103 samples: the global batches give uneven shards (and, at batch 2, empty ones)
    assert len(set(sizes)) > 1
    if batch == 2:
        assert 0 in sizes


@pytest.mark.parametrize("k", [2, 3])
def test_rank_that_raises_ends_the_job_naming_it(k):
    r = mpirun(k, "fault.py", "raise", timeout=60)
    assert r.returncode != 0
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("gradbox: rank")]
    assert lines == ["gradbox: rank 1 failed: ValueError: a deliberate failure"]
    assert "unreachable" not in r.stdout


def test_rank_killed_with_sigkill_ends_the_job():
    r = mpirun(3, "fault.py", "kill", timeout=60)
    assert r.returncode != 0
    assert "unreachable" not in r.stdout


def test_abort_exits_with_its_code():
    r = mpirun(2, "fault.py", "exit", timeout=60)
    assert r.returncode == 3
    assert "gradbox: rank 1 failed: exit requested" in r.stderr


def test_mismatched_data_is_an_error_on_every_rank():
    r = mpirun(2, "errors.py", "mismatch", timeout=60)
    assert r.returncode == 0, r.stderr[-2000:]
    # NOTE: mpiexec forwards both ranks' output through one pipe, where their lines can
    # interleave mid-line on a loaded machine: count the messages, not the lines.
    out = r.stdout
    assert out.count("ERROR:") == 2 and "rank 0 ERROR:" in out and "rank 1 ERROR:" in out, out
    assert out.count("expected the same training data (X, y) on every rank") == 2, out
    assert out.count("rank(s) [1]") == 2, out


def test_world_of_one_when_parallel_was_required():
    r = mpirun(1, "errors.py", "single", timeout=60)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "expected an MPI world of more than one process" in r.stdout
    assert "received a world of size 1" in r.stdout


@pytest.mark.parametrize("k", [2, 3])
def test_broadcast_flags_weights_streams_under_mpiexec(k):
    r = mpirun(k, "units.py", timeout=60)
    assert r.returncode == 0, r.stderr[-2000:]
    names = [ln.split()[1] for ln in r.stdout.splitlines() if ln.startswith("OK ")]
    # NOTE: the window (to reuse, or for the sharded update) needs room in /dev/shm
    shm = common.shared_memory_expected()
    reuse = ["reuse", "prefault"] if shm else []
    sharded = ["sharded", "shard_update_errors"] if shm else []
    assert names == ["broadcast", "sum_shared_memory", "sum_allreduce", "flags", "hook", "weights", "stop", "bits",
                     *reuse, "bad_shared_memory", "allreduce", "streams", "structure", *sharded]


@pytest.mark.parametrize("name", ["sgd", "adam"])
def test_checkpoint_under_three_resume_under_two_equals_one_process(tmp_path, name):
    import json

    from gradbox.train import Trainer

    first, final = tmp_path / "ck", tmp_path / "final"
    r = mpirun(3, "fit_like.py", name, 3, 17, "-", first)
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads(str(np.load(f"{first}.npz")["meta"]))["world_size"] == 3
    r = mpirun(2, "fit_like.py", name, 3, 0, first, final)
    assert r.returncode == 0, r.stderr[-2000:]
    got = np.load(f"{final}.npz")
    meta = json.loads(str(got["meta"]))
    X, y = common.dataset()
    model = common.model()
    history = Trainer(model, None, common.optimizer(name, model.parameters()), batch_size=10, seed=7,
                      verbose=0, metrics=()).fit(X, y, epochs=3)
    err = max(float(np.abs(got[f"model.{k}"] - v).max()) for k, v in model.state_dict().items())
    print(f"{name}: K=3 to step 17, resumed under K=2: max |difference| {err:.2e}")
    assert err < 1e-10 and meta["world_size"] == 2
    np.testing.assert_allclose(meta["history"], history.as_dict()["loss"], rtol=1e-12)


@pytest.mark.parametrize("k, n", [(2, 11), (3, 11), (3, 2)])
def test_batch_stats_sync_equals_the_global_batch(k, n):
    """Mean, variance and the input gradient of batch norm over shards (one empty at n=2, K=3)."""
    r = mpirun(k, "bn_sync.py", n, timeout=60)
    assert r.returncode == 0, r.stderr[-2000:]
    err = float(r.stdout.split("max error")[1])
    print(f"batch-norm sync K={k} N={n}: {err:.1e}")
    assert err < 1e-12


# --- fit() and the command line under mpiexec (need the train package with its sampler seam) -----
def _needs_train_package():
    pytest.importorskip("gradbox.train.run", reason="needs gradbox.train as a package (issue 12)")


@pytest.mark.parametrize("name", ["sgd", "adam"])
def test_fit_shards_by_itself_stop_under_three_resume_under_two(tmp_path, name):
    _needs_train_package()
    from gradbox.train import Trainer

    ck, fin = tmp_path / "ck", tmp_path / "fin"
    r = mpirun(3, "fit_trainer.py", name, 3, 17, "-", ck)
    assert r.returncode == 0, r.stderr[-2000:]
    assert os.path.exists(f"{ck}.gbx") and not os.path.exists(f"{fin}.npz")
    r = mpirun(2, "fit_trainer.py", name, 3, 0, ck, fin)
    assert r.returncode == 0, r.stderr[-2000:]
    got = np.load(f"{fin}.npz")
    X, y = common.dataset()
    model = common.model()
    history = Trainer(model, None, common.optimizer(name, model.parameters()), batch_size=10, seed=7,
                      verbose=0).fit(X, y, epochs=3)
    err = max(float(np.abs(got[f"arr_{i}"] - p.data).max()) for i, p in enumerate(model.parameters()))
    print(f"fit(), {name}: stopped at step 17 under K=3, resumed under K=2: max |difference| {err:.2e}")
    assert err < 1e-10 and int(got["world"]) == 2
    np.testing.assert_allclose(got["loss"], history.as_dict()["loss"], rtol=1e-12)


def _cli(k, args, cwd, timeout=TIMEOUT, module="gradbox"):
    problem = _mpi_problem()
    if problem:
        pytest.skip(problem)
    cmd = [sys.executable, "-m", module, *args]
    if k:
        cmd = [_mpiexec(), "-n", str(k), *cmd]
    env = _env()
    env["PYTHONPATH"] = ROOT  # NOTE: `-m tests._helpers` from the repository root
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd)


TRAIN = ["--epochs", "3", "--dropout", "0", "--batch-size", "64", "--quiet"]


def _weights(path):
    return [p.data for p in gb.load_model(path).model.parameters()]


def test_cli_train_under_mpiexec_writes_one_run_equal_to_one_process(tmp_path):
    _needs_train_package()
    import json

    (tmp_path / "two").mkdir()
    (tmp_path / "one").mkdir()
    r = _cli(2, ["train", *TRAIN, "--out", "run"], tmp_path / "two")
    assert r.returncode == 0, r.stderr[-2000:]
    r1 = _cli(0, ["train", *TRAIN, "--out", "run"], tmp_path / "one")
    assert r1.returncode == 0, r1.stderr[-2000:]
    assert os.listdir(tmp_path / "two") == ["run"]  # one run folder, written by rank 0 only
    two = json.loads((tmp_path / "two" / "run" / "metrics.json").read_text())
    one = json.loads((tmp_path / "one" / "run" / "metrics.json").read_text())
    assert (two["world_size"], one["world_size"]) == (2, 1)
    assert two["test_accuracy"] == one["test_accuracy"] > 0.9
    err = max(float(np.abs(a - b).max()) for a, b in zip(_weights(tmp_path / "two" / "run" / "model.gbx"),
                                                         _weights(tmp_path / "one" / "run" / "model.gbx")))
    print(f"gradbox train, float32, K=2 vs 1: max |weight difference| {err:.1e}, test accuracy "
          f"{two['test_accuracy']:.4f} both")
    assert err < 1e-5  # float32: only the order of the gradient sums differs
    np.testing.assert_allclose(two["history"]["loss"], one["history"]["loss"], rtol=1e-5)


def test_cli_interrupted_under_three_resumes_under_two(tmp_path):
    _needs_train_package()
    import json

    r = _cli(3, ["7", *TRAIN, "--out", str(tmp_path / "run")], ROOT, module="tests._helpers")
    assert r.returncode == 130, r.stderr[-2000:]
    assert os.path.exists(tmp_path / "run" / "checkpoint.gbx")
    assert r.stderr.count("interrupted at") == 1  # rank 0 says it, once
    r = _cli(2, ["train", "--resume", str(tmp_path / "run"), "--quiet"], tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    r1 = _cli(0, ["train", *TRAIN, "--out", str(tmp_path / "one")], tmp_path)
    assert r1.returncode == 0, r1.stderr[-2000:]
    two = json.loads((tmp_path / "run" / "metrics.json").read_text())
    one = json.loads((tmp_path / "one" / "metrics.json").read_text())
    assert two["world_size"] == 2 and two["test_accuracy"] == one["test_accuracy"]
    err = max(float(np.abs(a - b).max()) for a, b in zip(_weights(tmp_path / "run" / "model.gbx"),
                                                         _weights(tmp_path / "one" / "model.gbx")))
    assert err < 1e-5


@pytest.mark.parametrize("signame", ["SIGTERM", "SIGINT"])
def test_a_stop_signal_stops_every_rank_at_one_step_with_a_checkpoint(tmp_path, signame):
    """SIGTERM (kill, SLURM) and SIGINT (Ctrl-C) sent to mpiexec, which forwards them to every rank."""
    _needs_train_package()
    import signal
    import time

    problem = _mpi_problem()
    if problem:
        pytest.skip(problem)
    out = tmp_path / "run"
    cmd = [_mpiexec(), "-n", "2", sys.executable, "-m", "gradbox", "train", "--epochs", "100000", "--quiet",
           "--checkpoint-every", "5steps", "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(), cwd=tmp_path)
    try:
        # NOTE: waits until every rank trains (and so has its signal handler): the first periodic
        # checkpoint needs 5 steps, each of which needs both ranks in the gradient exchange
        for _ in range(1200):
            if (out / "checkpoint.gbx").exists() or proc.poll() is not None:
                break
            time.sleep(0.1)
        proc.send_signal(getattr(signal, signame))
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err[-2000:]
    assert (out / "checkpoint.gbx").exists() and not (out / "metrics.json").exists()
    assert err.count("interrupted at") == 1
    from gradbox.train import load_checkpoint_file

    meta = load_checkpoint_file(str(out / "checkpoint.gbx"))[1]
    assert f"optimizer step {meta['global_step']})" in err  # the stop's own checkpoint, one step for all


@pytest.mark.parametrize("kind", ["bn1d", "bn2d"])
@pytest.mark.parametrize("name, k", [("sgd", 2), ("adam", 3)])
def test_batch_norm_synchronised_equals_one_process(tmp_path, kind, name, k):
    """BatchNorm1d (MLP) and BatchNorm2d (CNN) normalise over the global batch: parameters and
    running statistics equal one process's (103 samples, batch 10: shards of 3 and 4, last batch 3)."""
    _needs_train_package()
    from gradbox.train import Trainer

    out = tmp_path / "bn"
    r = mpirun(k, "fit_trainer.py", name, 3, 0, "-", out, kind)
    assert r.returncode == 0, r.stderr[-2000:]
    got = np.load(f"{out}.npz")
    X, y, model = common.setup(kind)
    Trainer(model, None, common.optimizer(name, model.parameters()), batch_size=10, seed=7,
            verbose=0).fit(X, y, epochs=3)
    sd = model.state_dict()
    assert any("running_var" in key for key in sd)
    err = max(float(np.abs(got[f"sd.{key}"] - v).max()) for key, v in sd.items())
    print(f"{kind}, {name}, K={k}: parameters and running statistics, max |difference| {err:.1e}")
    assert err < 1e-10


def test_batch_norm_refuses_empty_shards(tmp_path):
    _needs_train_package()
    r = mpirun(3, "fit_trainer.py", "sgd", 1, 0, "-", tmp_path / "x", "bn1d_batch2")
    assert r.returncode != 0
    assert "expected every global batch to hold at least 3 samples (one per rank) with BatchNorm" in r.stderr
