"""gradbox.io under crashes: kill -9 during save, a full disk, interrupts.

The previous file must always stay loadable, and a failed save must leave no temp file.
"""
import errno
import os
import re
import signal
import time

import numpy as np
import pytest

import gradbox as gb
from gradbox import io as gio

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork and SIGKILL")

TEMP = re.compile(r"^\.model\.gbx\.[0-9a-f]{12}\.tmp$")


def _model(fill: float):
    # ~1.3 M float32 weights (5 MB): big enough that a kill often lands mid-write
    model = gb.nn.Sequential(gb.nn.Linear(640, 640, rng=0), gb.nn.ReLU(), gb.nn.Linear(640, 640, rng=0),
                             gb.nn.Tanh(), gb.nn.Linear(640, 640, rng=0))
    for p in model.parameters():
        p.data[...] = fill
    return model


def _check_consistent(path):
    loaded = gb.load_model(path)
    i = loaded.metadata["i"]
    assert isinstance(i, int)
    for p in loaded.model.parameters():
        assert np.all(p.data == np.float32(i % 1000)), "a file mixes two saves"
    np.testing.assert_array_equal(loaded.arrays["step"], [i])
    return i


def _saver_child(path, seed, slow):
    """Runs in the forked child: save forever, never returns."""
    try:
        rng = np.random.default_rng(seed)
        if slow:
            # NOTE: a sleep hook widens the window between writing and renaming.
            real_fsync = os.fsync

            def sleepy_fsync(fd):
                time.sleep(float(rng.uniform(0, 0.02)))
                real_fsync(fd)

            os.fsync = sleepy_fsync
        i = 1
        while True:
            gb.save_model(path, _model(i % 1000), arrays={"step": np.array([i])}, metadata={"i": i})
            i += 1
    finally:
        os._exit(0)


def test_kill_minus_9_during_save_never_breaks_the_previous_file(tmp_path):
    path = str(tmp_path / "model.gbx")
    start = time.perf_counter()
    gb.save_model(path, _model(0), arrays={"step": np.array([0])}, metadata={"i": 0})
    # NOTE: kill points spread over about three saves, however fast or slow this disk is.
    window = 3 * (time.perf_counter() - start) + 0.02
    rng = np.random.default_rng(0)
    seen = []
    for trial in range(20):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - child
            _saver_child(path, trial, slow=trial % 2 == 1)
        # NOTE: on a loaded machine the child may need longer than `window` to start; wait
        # (bounded) until it has replaced the file once, so the kill lands among its saves.
        before, deadline = os.stat(path).st_mtime_ns, time.monotonic() + 20
        while os.stat(path).st_mtime_ns == before and time.monotonic() < deadline:
            time.sleep(0.001)
        time.sleep(float(rng.uniform(0.0, window)))
        os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
        seen.append(_check_consistent(path))
        leftovers = [f for f in os.listdir(tmp_path) if f != "model.gbx"]
        assert all(TEMP.match(f) for f in leftovers), leftovers
    # the saves went on in between (not only the initial file survived)
    assert max(seen) > 0
    print(f"\nsurviving saves: {seen}; stale temp files: {len([f for f in os.listdir(tmp_path) if TEMP.match(f)])}")
    # a stale temp file from a killed writer does not stop the next save or load
    gb.save_model(path, _model(5), arrays={"step": np.array([5])}, metadata={"i": 5})
    assert _check_consistent(path) == 5


def _old_file(tmp_path):
    path = tmp_path / "model.gbx"
    gb.save_model(path, _model(1), arrays={"step": np.array([1])}, metadata={"i": 1})
    return path


def _assert_clean(tmp_path, path):
    assert _check_consistent(path) == 1
    assert os.listdir(tmp_path) == ["model.gbx"]


def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_full_disk_at_fsync(tmp_path, monkeypatch):
    path = _old_file(tmp_path)
    monkeypatch.setattr(gio.os, "fsync", _enospc)
    with pytest.raises(OSError) as info:
        gb.save_model(path, _model(2), arrays={"step": np.array([2])}, metadata={"i": 2})
    assert info.value.errno == errno.ENOSPC
    assert str(path) in str(info.value) and "disk is full" in str(info.value)
    assert "previous file" in str(info.value)
    monkeypatch.undo()
    _assert_clean(tmp_path, path)


class _FullDiskFile:
    """Wraps a real file; fails like a full disk once ``limit`` bytes were written."""

    def __init__(self, f, limit, exc):
        self.f, self.limit, self.exc, self.written = f, limit, exc, 0

    def write(self, data):
        n = memoryview(data).nbytes
        if self.written + n > self.limit:
            raise self.exc
        self.written += n
        return self.f.write(data)

    def __getattr__(self, name):
        return getattr(self.f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()


@pytest.mark.parametrize("limit", [0, 10, 100, 4096, 3_000_000])
def test_full_disk_during_write(tmp_path, monkeypatch, limit):
    path = _old_file(tmp_path)
    real_fdopen = os.fdopen
    monkeypatch.setattr(gio.os, "fdopen",
                        lambda *a, **k: _FullDiskFile(real_fdopen(*a, **k), limit, OSError(errno.ENOSPC, "No space")))
    with pytest.raises(OSError, match=r"could not write .*model\.gbx.*disk is full") as info:
        gb.save({"x": np.ones(1_000_000)}, path)
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(path)
    monkeypatch.undo()
    _assert_clean(tmp_path, path)


def test_keyboard_interrupt_during_write(tmp_path, monkeypatch):
    path = _old_file(tmp_path)
    real_fdopen = os.fdopen
    monkeypatch.setattr(gio.os, "fdopen", lambda *a, **k: _FullDiskFile(real_fdopen(*a, **k), 5000,
                                                                         KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        gb.save_model(path, _model(2), arrays={"step": np.array([2])}, metadata={"i": 2})
    monkeypatch.undo()
    _assert_clean(tmp_path, path)


@pytest.mark.parametrize("where", ["open", "replace"])
def test_failures_creating_or_renaming(tmp_path, monkeypatch, where):
    path = _old_file(tmp_path)
    monkeypatch.setattr(gio.os, where, _enospc if where == "open" else
                        lambda *a: (_ for _ in ()).throw(OSError(errno.EACCES, "Permission denied")))
    with pytest.raises(OSError, match=r"could not write .*model\.gbx") as info:
        gb.save({"x": np.ones(3)}, path)
    assert info.value.errno == (errno.ENOSPC if where == "open" else errno.EACCES)
    monkeypatch.undo()
    _assert_clean(tmp_path, path)


def test_atomic_open_for_text_files_on_a_full_disk(tmp_path, monkeypatch):
    path = tmp_path / "metrics.json"
    path.write_text('{"old": true}')
    monkeypatch.setattr(gio.os, "fsync", _enospc)
    with pytest.raises(OSError, match="metrics.json.*disk is full"):
        with gio.atomic_open(path, "w") as f:
            f.write('{"new": true}')
    monkeypatch.undo()
    assert path.read_text() == '{"old": true}' and os.listdir(tmp_path) == ["metrics.json"]
