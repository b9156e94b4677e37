"""gradbox._blas.dot: small products on one BLAS thread, NumPy's values to rounding, the user's limit kept."""
import os

import numpy as np
import pytest

from gradbox import _blas
from gradbox.nn import functional as F

threadpoolctl = pytest.importorskip("threadpoolctl")


@pytest.fixture
def blas():
    ctl = _blas._numpy_blas()
    if not ctl:
        pytest.skip("NumPy's BLAS is not one OpenBLAS that threadpoolctl can control")
    previous = F.use_fast_kernels(True)
    _blas._STATE["serial_left"] = 0  # NOTE: no hold left over from a chunked convolution in an earlier test
    with threadpoolctl.threadpool_limits(2, user_api="blas"):
        yield ctl
    F.use_fast_kernels(previous)


class Probe(np.ndarray):
    """An array whose .dot records NumPy's BLAS thread count at the moment of the product."""

    seen: list = []

    def dot(self, b, out=None):
        Probe.seen.append(_blas._controller().get_num_threads() if _blas._controller() else None)
        return np.asarray(self).dot(b)


# (m, k, n): the bench networks' conv and linear products, a single sample, and two above the limit
SHAPES = [(6, 25, 25088), (16, 150, 3200), (150, 16, 3200), (25, 25088, 6), (32, 400, 120), (128, 400, 120),
          (1, 784, 256), (8, 8, 8), (300, 300, 300), (400, 400, 400)]


def assert_same_product(got, want, a, b):
    """Equal within the standard error bound of a k-term dot product: |Δ| <= k·eps·(|a||b|), elementwise.
    NOTE: not bit for bit: OpenBLAS blocks a product differently on one thread and on two (measured:
    float64 results differ in the last 1-2 bits), as any NumPy result does between thread counts."""
    k = a.shape[-1]
    bound = k * np.finfo(got.dtype).eps * np.dot(np.abs(a).astype(np.float64), np.abs(b).astype(np.float64))
    assert got.shape == want.shape and got.dtype == want.dtype
    assert np.all(np.abs(got.astype(np.float64) - want) <= bound)


@pytest.mark.parametrize("m,k,n", SHAPES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dot_gives_numpys_values_to_rounding(blas, m, k, n, dtype):
    rng = np.random.default_rng(m * k + n)
    a, b = rng.standard_normal((m, k)).astype(dtype), rng.standard_normal((k, n)).astype(dtype)
    want = np.dot(a, b)  # on two threads where OpenBLAS splits it
    assert_same_product(_blas.dot(a, b), want, a, b)
    out = np.empty((m, n), dtype)
    assert _blas.dot(a, b, out=out) is out
    assert_same_product(out, want, a, b)
    assert_same_product(_blas.dot(a[0], b), np.dot(a[0], b), a[0], b)  # a vector (the bias sums)


@pytest.mark.parametrize("m,k,n,threads", [
    (32, 400, 120, 1),      # 3 MFLOP: one thread
    (150, 16, 3200, 1),     # 15 MFLOP, LeNet's dcols
    (128, 400, 120, 2),     # 12 MFLOP but no side under 33: square enough for both
    (128, 256, 128, 2),     # the MLP's middle layer at batch 128
    (32, 256, 128, 1),      # ... at batch 32
    (1, 784, 256, 2),       # below OpenBLAS's own threshold: left alone (no calls on the latency path)
    (16, 150, 12800, 2),    # 61 MFLOP, LeNet b128 conv 2: worth both threads
    (400, 400, 400, 2),     # 128 MFLOP
])
def test_dot_runs_small_products_on_one_thread(blas, m, k, n, threads):
    a = np.zeros((m, k), np.float32).view(Probe)
    Probe.seen = []
    _blas.dot(a, np.zeros((k, n), np.float32))
    assert Probe.seen == [threads]
    assert blas.get_num_threads() == 2  # put back


def test_dot_puts_the_limit_back_when_the_product_fails(blas):
    with pytest.raises(ValueError):
        _blas.dot(np.zeros((64, 400), np.float32), np.zeros((300, 120), np.float32))
    assert blas.get_num_threads() == 2


def test_dot_keeps_a_users_one_thread_limit(blas):
    with threadpoolctl.threadpool_limits(1, user_api="blas"):
        a = np.zeros((32, 400), np.float32).view(Probe)
        Probe.seen = []
        _blas.dot(a, np.zeros((400, 120), np.float32))
        assert Probe.seen == [1] and blas.get_num_threads() == 1
    assert blas.get_num_threads() == 2


def test_the_thread_choice_does_not_follow_the_fast_switch(blas):
    """The switch is the compiled kernels'; the NumPy path's products are chosen the same way."""
    previous = F.use_fast_kernels(False)
    try:
        assert _blas._controller() is not None
        a = np.zeros((32, 400), np.float32).view(Probe)
        Probe.seen = []
        _blas.dot(a, np.zeros((400, 120), np.float32))
        assert Probe.seen == [1]
    finally:
        F.use_fast_kernels(previous)


def test_the_own_controller_agrees_with_threadpoolctl(blas):
    """On Linux gradbox drives NumPy's OpenBLAS itself (``_OpenBLAS``): the library threadpoolctl finds
    for NumPy, and the same setting both ways (a limit set by either is read by the other)."""
    if not isinstance(blas, _blas._OpenBLAS):
        pytest.skip("not driven through its C functions here (not Linux, or not NumPy's own OpenBLAS)")
    info = [c for c in threadpoolctl.ThreadpoolController().lib_controllers
            if os.path.realpath(c.filepath) == os.path.realpath(blas.filepath)]
    assert len(info) == 1 and info[0].internal_api == "openblas"
    assert blas.get_num_threads() == info[0].get_num_threads() == 2  # the fixture's limit, set by threadpoolctl
    with threadpoolctl.threadpool_limits(1, user_api="blas"):
        assert blas.get_num_threads() == 1
    blas.set_num_threads(1)
    try:
        assert info[0].get_num_threads() == 1
    finally:
        blas.set_num_threads(2)
    assert info[0].get_num_threads() == 2


def test_the_controlled_library_is_numpys(blas):
    numpy_dir = os.path.dirname(os.path.abspath(np.__file__))
    openblas = [i["filepath"] for i in threadpoolctl.threadpool_info() if i["internal_api"] == "openblas"]
    if not any(os.path.dirname(p) in (numpy_dir, numpy_dir + ".libs") for p in openblas):
        pytest.skip("NumPy here is linked to a system BLAS")
    assert os.path.dirname(os.path.abspath(blas.filepath)) in (numpy_dir, numpy_dir + ".libs")



def test_the_thread_choice_needs_numpy_only():
    """With threadpoolctl unimportable, a small skinny product still runs on one of NumPy's two BLAS
    threads (Linux: gradbox calls NumPy's OpenBLAS itself), and ``import gradbox`` loads no ctypes handle."""
    import subprocess
    import sys

    if not sys.platform.startswith("linux") or not isinstance(_blas._controller(), _blas._OpenBLAS):
        pytest.skip("NumPy's OpenBLAS is driven through threadpoolctl here")
    code = "\n".join([
        "import sys; sys.modules['threadpoolctl'] = None",  # NOTE: any import of it now raises
        "import numpy as np, gradbox as gb",
        "from gradbox import _blas",
        "assert _blas._STATE['controller'] is None",
        "ctl = _blas._controller(); ctl.set_num_threads(2); seen = []",
        "class Probe(np.ndarray):",
        "    def dot(self, b, out=None):",
        "        seen.append(ctl.get_num_threads()); return np.asarray(self).dot(b)",
        "_blas.dot(np.zeros((32, 400), np.float32).view(Probe), np.zeros((400, 120), np.float32))",
        "print(type(ctl).__name__, seen, ctl.get_num_threads())",
    ])
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["_OpenBLAS", "[1]", "2"]


def test_a_chunked_convolution_holds_the_next_products_on_one_thread(blas, monkeypatch):
    """After a convolution ran in chunks on two threads, gradbox's next SERIAL_AFTER_CHUNKS products stay on
    one BLAS thread whatever their size (OpenBLAS's worker must not spin beside the chunks), the largest
    cut into one product per thread on gradbox's threads; then the usual rule again (either path)."""
    from gradbox import Tensor

    _blas._STATE["serial_left"] = 0
    x, w = np.zeros((64, 3, 32, 32), np.float32), np.zeros((8, 3, 3, 3), np.float32)  # 6 MB of columns
    F.conv2d(Tensor(x), Tensor(w))
    assert _blas._STATE["serial_left"] == _blas.SERIAL_AFTER_CHUNKS
    mid = np.zeros((128, 128), np.float32)  # 4 MFLOP with a 100-wide b: square enough for 2 threads, unheld
    Probe.seen = []
    _blas.dot(mid.view(Probe), mid[:, :100])
    assert Probe.seen == [1] and blas.get_num_threads() == 2
    calls = []
    run_parts = _blas.run_parts
    monkeypatch.setattr(_blas, "run_parts", lambda fn, parts, **k: (
        calls.append((parts, blas.get_num_threads())), run_parts(fn, parts, **k))[1])
    rng = np.random.default_rng(0)
    # the CIFAR-shaped net's dense products (67 MFLOP): cut along the larger operand
    for (m, k, n), cut in [((64, 4096, 128), [(0, 64), (64, 128)]), ((300, 4096, 30), [(0, 150), (150, 300)])]:
        a, b = rng.standard_normal((m, k)), rng.standard_normal((k, n))
        calls.clear()
        assert_same_product(_blas.dot(a, b), np.dot(a, b), a, b)
        out = np.empty((m, n))
        assert _blas.dot(a, b, out=out) is out
        assert_same_product(out, np.dot(a, b), a, b)
        assert calls == [(cut, 1)] * 2  # two blocks (columns of b, or rows of a), each on one BLAS thread
    for _ in range(_blas.SERIAL_AFTER_CHUNKS - 5):  # the five products above count
        _blas.dot(np.zeros((2, 2)), np.zeros((2, 2)))
    Probe.seen = []
    _blas.dot(mid.view(Probe), mid[:, :100])
    assert Probe.seen == [2]


def test_no_hold_without_threads_to_share(blas):
    """Under the user's one-thread limit the chunks run on one thread, and nothing is held."""
    from gradbox import Tensor

    _blas._STATE["serial_left"] = 0
    with threadpoolctl.threadpool_limits(1, user_api="blas"):
        F.conv2d(Tensor(np.zeros((64, 3, 32, 32), np.float32)), Tensor(np.zeros((8, 3, 3, 3), np.float32)))
    assert _blas._STATE["serial_left"] == 0


@pytest.mark.parametrize("spinning", [False, True])
def test_large_passes_are_shared_only_while_held(blas, spinning, monkeypatch):
    """From PASS_BYTES up, or PASS_BYTES_SPINNING where the hand-offs spin (the compiled kernels loaded)."""
    from gradbox._fast import FAST

    monkeypatch.setitem(FAST, "wanted", spinning)
    if spinning:
        monkeypatch.setitem(FAST, "mod", FAST["mod"] or object())  # NOTE: pass_threads only asks whether one is
    floor = _blas.PASS_BYTES_SPINNING if spinning else _blas.PASS_BYTES
    _blas._STATE["serial_left"] = 0
    assert _blas.pass_threads(1 << 30) == 1  # an MLP's step: OpenBLAS splits its products itself
    _blas.hold_serial()
    assert _blas.pass_threads(floor) == 2 and _blas.pass_threads(floor - 1) == 1
    _blas._STATE["serial_left"] = 0


@pytest.mark.parametrize("parts", [2, 3])
@pytest.mark.parametrize("path", ["fast", "numpy"])
def test_shared_passes_equal_the_single_pass(parts, path, monkeypatch):
    """ReLU and max pooling (compiled kernels or NumPy) shared among threads by rows / planes: the same bits."""
    if path == "fast":
        pytest.importorskip("numba")
    import gradbox as gb

    rng = np.random.default_rng(parts)
    x = rng.normal(size=(5, 3, 9, 8))
    x[0, 0, 0, :3] = [0.0, np.nan, -0.0]
    g_relu, results = rng.normal(size=x.shape), []
    previous = F.use_fast_kernels(path == "fast")
    try:
        for k in (1, parts):
            monkeypatch.setattr(_blas, "pass_threads", lambda nbytes, k=k: k)
            X = gb.Tensor(x, requires_grad=True)
            r = X.relu()
            pools = [F.max_pool2d(r, 2), F.max_pool2d(r, 3, stride=2, padding=1)]
            loss = (r * gb.Tensor(g_relu)).sum() + sum((p * p).sum() for p in pools)
            loss.backward()
            results.append([r.data, X.grad] + [p.data for p in pools])
    finally:
        F.use_fast_kernels(previous)
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


@pytest.fixture(params=["spin", "sleep"])
def hand_off(request):
    """The hand-off to gradbox's workers with the compiled spinning waits (the compiled kernels loaded and
    on: ``_blas._waiter``) and with the locks alone (switched off)."""
    from gradbox.nn import _conv_functional as CF

    if request.param == "spin":
        pytest.importorskip("numba")
    previous = F.use_fast_kernels(request.param == "spin")
    CF._kernels(np.dtype(np.float32))  # NOTE: loads the compiled module when on
    assert (_blas._waiter() is not None) == (request.param == "spin")
    yield request.param
    F.use_fast_kernels(previous)


def test_run_parts_keeps_its_hand_offs_in_step_when_the_waits_switch(hand_off):
    """Spinning and sleeping hand-offs mixed call by call (the switch flipped between calls, parts shorter
    and longer than a spin) still pair every part with its caller: the counts on both sides stay in step."""
    import time

    pytest.importorskip("numba")
    for i in range(300):
        F.use_fast_kernels(i % 3 != 0)
        pause = 0.002 if i % 50 == 0 else 0.0
        assert _blas.run_parts(lambda p: (time.sleep(pause), p * i)[1], [1, 2, 3][:2 + i % 2]) == \
            [p * i for p in [1, 2, 3][:2 + i % 2]]


def test_run_parts_results_errors_and_concurrent_callers(hand_off):
    """Parts run on the caller's thread and gradbox's workers; a part's error reaches the caller after every
    part has finished; callers on several threads at once each get their own results."""
    import threading
    import time

    assert _blas.run_parts(lambda p: p * p, [1, 2, 3]) == [1, 4, 9]
    finished = []

    def slow_then_fail(p):
        if p == 0:
            raise ValueError("part 0")
        time.sleep(0.05)
        finished.append(p)
        return p

    with pytest.raises(ValueError, match="part 0"):
        _blas.run_parts(slow_then_fail, [0, 1])
    assert finished == [1]  # the worker's part had finished before the error came back
    with pytest.raises(KeyError):
        _blas.run_parts(lambda p: {}[p], [None, "worker"])
    assert _blas.run_parts(lambda p: -p, [5, 6]) == [-5, -6]  # the workers still serve

    out = {}

    def caller(k):
        out[k] = [_blas.run_parts(lambda p: (k, p, threading.current_thread().name), [0, 1]) for _ in range(200)]

    threads = [threading.Thread(target=caller, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for k in range(3):
        assert all([r[0][:2], r[1][:2]] == [(k, 0), (k, 1)] for r in out[k])


@pytest.mark.parametrize("parts", [1, 2, 3])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_backward_kernel_gives_the_numpy_paths_bits(parts, dtype, monkeypatch):
    """Once the compiled kernels are loaded, ReLU's backward is one fused pass (on 1-3 threads): the same
    bits as NumPy's mask-cast-multiply, NaN, infinities and signed zeros included."""
    pytest.importorskip("numba")
    import gradbox as gb
    from gradbox.nn import _conv_functional as CF

    rng = np.random.default_rng(parts)
    x = rng.normal(size=(4, 3, 5, 7)).astype(dtype)
    g = rng.normal(size=x.shape).astype(dtype)
    x.reshape(-1)[:6] = [np.nan, 0.0, -0.0, 1.0, -1.0, 2.0]
    g.reshape(-1)[:6] = [1.0, np.inf, -np.inf, np.nan, np.inf, -0.0]
    grads = []
    for fast, k in ((True, parts), (False, parts), (False, 1)):  # NOTE: the NumPy path's pass shares too
        monkeypatch.setattr(_blas, "pass_threads", lambda nbytes, k=k: k)
        previous = F.use_fast_kernels(fast)
        try:
            assert (CF._kernels(x.dtype) is not None) == fast  # loaded: the fused pass is taken
            X = gb.Tensor(x, requires_grad=True)
            with np.errstate(invalid="ignore"):  # NOTE: 0·inf on the NumPy path
                X.relu().backward(g)
            grads.append(X.grad)
        finally:
            F.use_fast_kernels(previous)
    for other in grads[1:]:
        np.testing.assert_array_equal(grads[0], other)
        assert other.dtype == dtype and np.array_equal(np.signbit(grads[0]), np.signbit(other))


def test_spinning_wait_sees_its_counter_and_gives_up_in_time(monkeypatch):
    """The compiled look (``_conv_kernels._spin_until``): True as soon as the counter holds the value, False
    after its budget; with x86's cycle counter and, as elsewhere, counting its looks (cycles / 1024, each
    with a ``sched_yield``): compiled here with the flag flipped, as on a machine that is not x86."""
    import time

    numba = pytest.importorskip("numba")
    from gradbox import _conv_kernels as K

    flags = np.zeros(16, dtype=np.int64)
    address = _blas._sched_yield()
    if os.name == "posix":
        assert address != 0
    for x86 in (K._X86, False):
        monkeypatch.setattr(K, "_X86", x86)

        @numba.njit(nogil=True)
        def look(f, i, value, cycles, y):
            return K._spin_until(f, i, value, cycles, y)

        flags[:] = 0
        start = time.perf_counter()
        assert not look(flags, 8, 1, 1 << 20, address)
        assert time.perf_counter() - start < 2.0  # gave up (1M ticks, or 1,024 looks)
        flags[8] = 1
        assert look(flags, 8, 1, 1 << 40, address)  # seen at once, whatever the budget
    assert K._post_and_wait(flags, 0, 7, 0, 7, 10, address) and flags[0] == 7  # posts, then sees its own
