"""Decompression and size bombs, and files that are not regular files (issue 14, items 9 and 11).

Each bomb is a small file declaring far more data than ``GRADBOX_MAX_DATA_BYTES`` allows. The load
runs in a child process whose address space is capped (RLIMIT_AS), so a regression shows up as a
MemoryError in the child, never as a machine out of memory; the child must instead refuse with a
ValueError naming the file and the limit. FIFOs are opened only in a child with a timeout, so a
regression cannot hang the suite.
"""
import gzip
import io
import json
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from gradbox import datasets
from gradbox.datasets import _files, _limits

from .._paths import ROOT as _ROOT

resource = pytest.importorskip("resource")
ROOT = str(_ROOT)
ADDRESS_SPACE = 2 * 1024**3  # the child's cap: far below every bomb, far above what a refusal needs

CHILD = r"""
import json, resource, sys
resource.setrlimit(resource.RLIMIT_AS, ({cap}, {cap}))
from gradbox import datasets
try:
    datasets.load(sys.argv[1], **json.loads(sys.argv[2]))
except ValueError as exc:
    print("REFUSED", exc)
    print("MAXRSS_KB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    sys.exit(0)
except MemoryError:
    print("MEMORYERROR")
    sys.exit(3)
print("LOADED")
sys.exit(4)
"""


def load_in_a_bounded_child(path, limit=None, timeout=120, **options):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), OPENBLAS_NUM_THREADS="1",
               OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env.pop(_limits.ENV_VAR, None)
    if limit is not None:
        env[_limits.ENV_VAR] = str(limit)
    out = subprocess.run([sys.executable, "-c", CHILD.format(cap=ADDRESS_SPACE), str(path), json.dumps(options)],
                         capture_output=True, text=True, timeout=timeout, env=env)
    assert out.returncode == 0, (out.returncode, out.stdout[-2000:], out.stderr[-2000:])
    lines = dict(line.split(" ", 1) for line in out.stdout.splitlines() if " " in line)
    return lines["REFUSED"], int(lines["MAXRSS_KB"])


def assert_names_file_and_limit(message, path, limit):
    assert str(path) in message and "GRADBOX_MAX_DATA_BYTES" in message and str(limit) in message, message


# --------------------------------------------------------------------------- HDF5
def _h5_bomb(path, filters):
    h5py = pytest.importorskip("h5py")
    n = 1398102  # (n, 64, 64, 3) uint8: 16 GiB
    kw = dict(compression="gzip") if filters else {}
    with h5py.File(path, "w") as f:
        f.create_dataset("train_set_x", shape=(n, 64, 64, 3), dtype=np.uint8, chunks=(1, 64, 64, 3), **kw)
        f.create_dataset("train_set_y", shape=(n,), dtype=np.int64, chunks=(4096,), **kw)
    return path


def test_an_h5_declaring_16_gib_is_refused_under_the_default_limit(tmp_path):
    path = _h5_bomb(tmp_path / "train_bomb.h5", filters=True)
    assert os.path.getsize(path) < 300_000
    message, maxrss_kb = load_in_a_bounded_child(path)
    assert "dataset 'train_set_x' of shape (1398102, 64, 64, 3) (uint8) would need 128 GiB" in message
    assert_names_file_and_limit(message, path, _limits.DEFAULT_MAX_DATA_BYTES)
    assert maxrss_kb < 1024**2  # KiB: under 1 GiB peak, nothing near 16 GiB was touched


def test_an_uncompressed_h5_declaring_more_than_the_file_holds_is_refused(tmp_path):
    path = _h5_bomb(tmp_path / "train_raw.h5", filters=False)
    message, _ = load_in_a_bounded_child(path)
    assert f"but the file has {os.path.getsize(path)} bytes (truncated or forged file)" in message


# --------------------------------------------------------------------------- gzip: CSV and IDX
def test_a_csv_gz_that_inflates_past_the_limit_is_refused(tmp_path):
    path = tmp_path / "bomb.csv.gz"
    with gzip.open(path, "wb", compresslevel=9) as f:
        f.write(b"a,b,label\n")
        row = b"0,0,1\n" * 100_000
        for _ in range(40):  # 24 MB of text in a ~70 KB file
            f.write(row)
    assert os.path.getsize(path) < 200_000
    limit = 1024**2
    message, maxrss_kb = load_in_a_bounded_child(path, limit=limit)
    assert_names_file_and_limit(message, path, limit)
    # NOTE: whichever comes first: the inflated text or the parsed values passing the limit
    assert "the CSV text (inflated) would need" in message or "rows x 3 columns would need" in message


def test_a_csv_gz_of_one_endless_line_is_refused(tmp_path):
    path = tmp_path / "line.csv.gz"
    with gzip.open(path, "wb") as f:
        f.write(b"a,b\n")
        for _ in range(20):
            f.write(b"0," * 500_000)
    message, _ = load_in_a_bounded_child(path)
    assert "expected CSV lines of at most" in message and str(path) in message


def test_a_plain_csv_larger_than_the_limit_is_refused_before_reading(tmp_path, monkeypatch):
    path = tmp_path / "big.csv"
    path.write_text("a,t\n" + "1,0\n" * 1000)
    monkeypatch.setenv(_limits.ENV_VAR, "1000")
    with pytest.raises(ValueError, match=r"the CSV file would need .* more than the limit of 1000 bytes"):
        datasets.load(path)


def _idx_bomb(path, shape, data=b"", extra=0):
    head = bytes([0, 0, 0x08, len(shape)]) + np.asarray(shape, dtype=">u4").tobytes()
    with gzip.open(path, "wb", compresslevel=9) as f:
        f.write(head + data)
        chunk = b"\0" * 1024**2
        for _ in range(extra):
            f.write(chunk)
    return path


def test_an_idx_gz_declaring_more_than_the_limit_is_refused_before_inflating(tmp_path):
    images = _idx_bomb(tmp_path / "train-images-idx3-ubyte.gz", (60000, 280, 280), extra=64)  # 4.7 GB declared
    _files.write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(60000, np.uint8))
    message, maxrss_kb = load_in_a_bounded_child(images)
    assert "the IDX header's shape (60000, 280, 280) would need" in message
    assert_names_file_and_limit(message, images, _limits.DEFAULT_MAX_DATA_BYTES)
    assert maxrss_kb < 1024**2


def test_an_idx_gz_that_inflates_past_its_header_is_refused(tmp_path):
    images = _idx_bomb(tmp_path / "train-images-idx3-ubyte.gz", (2, 28, 28), data=b"\1" * 1568, extra=64)
    _files.write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(2, np.uint8))
    message, maxrss_kb = load_in_a_bounded_child(images)
    assert "expected 1568 data bytes for shape (2, 28, 28), received more" in message
    assert maxrss_kb < 1024**2


# --------------------------------------------------------------------------- NPZ / NPY
def _npy_header(shape, dtype="<f8"):
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": dtype, "fortran_order": False, "shape": shape})
    return buf.getvalue()


def test_an_npz_whose_header_declares_4_gib_is_refused(tmp_path):
    path = tmp_path / "bomb.npz"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("X.npy", _npy_header((2**29,)) + b"\0" * 4096)  # 4 GiB declared, 4 KiB held
        z.writestr("y.npy", _npy_header((2,), "<i8") + b"\0" * 16)
    message, maxrss_kb = load_in_a_bounded_child(path)
    assert "array member 'X.npy' declares shape (536870912,) of float64 (4294967296 bytes), but holds 4096 bytes" \
        in message and str(path) in message
    assert maxrss_kb < 1024**2


def test_an_npz_that_really_inflates_past_the_limit_is_refused(tmp_path):
    path = tmp_path / "zeros.npz"
    np.savez_compressed(path, X=np.zeros((4096, 64)), y=np.zeros(4096, np.int64))  # 2 MiB of X, a small file
    assert os.path.getsize(path) < 100_000
    limit = 1024**2
    message, _ = load_in_a_bounded_child(path, limit=limit)
    assert "array member 'X.npy' of shape (4096, 64) (float64) would need 2 MiB" in message
    assert_names_file_and_limit(message, path, limit)


def test_npz_members_count_together(tmp_path, monkeypatch):
    path = tmp_path / "two.npz"
    np.savez(path, X=np.zeros((700, 100)), y=np.zeros(700, np.int64), X_test=np.zeros((700, 100)),
             y_test=np.zeros(700, np.int64))
    monkeypatch.setenv(_limits.ENV_VAR, "1M")
    with pytest.raises(ValueError, match=r"the .npz archive's arrays together would need"):
        datasets.load(path)
    monkeypatch.setenv(_limits.ENV_VAR, "2M")
    assert datasets.load(path).X.shape == (700, 100)


def test_an_npy_disguised_as_npz_declaring_4_gib_is_refused(tmp_path):
    path = tmp_path / "disguised.npz"
    path.write_bytes(_npy_header((2**29,)) + b"\0" * 4096)
    message, _ = load_in_a_bounded_child(path)
    assert "the .npy array declares shape (536870912,) of float64 (4294967296 bytes), but holds 4096 bytes" in message


# --------------------------------------------------------------------------- the limit itself
@pytest.mark.parametrize("value, expected", [("1048576", 1024**2), ("512M", 512 * 1024**2), ("2g", 2 * 1024**3),
                                             ("8GiB", 8 * 1024**3), ("", _limits.DEFAULT_MAX_DATA_BYTES)])
def test_the_limit_is_read_from_the_environment(monkeypatch, value, expected):
    monkeypatch.setenv(_limits.ENV_VAR, value)
    assert _limits.max_data_bytes() == expected


@pytest.mark.parametrize("value", ["-1", "0", "lots", "1.5G"])
def test_a_bad_limit_is_refused_naming_the_variable(tmp_path, monkeypatch, value):
    path = tmp_path / "small.csv"
    path.write_text("a,t\n1,0\n2,1\n")
    monkeypatch.setenv(_limits.ENV_VAR, value)
    with pytest.raises(ValueError, match=rf"GRADBOX_MAX_DATA_BYTES: expected a positive number of bytes .*received "
                                         rf"'{value}'"):
        datasets.load(path)


def test_files_within_the_limit_still_load(tmp_path, monkeypatch, rng):
    monkeypatch.setenv(_limits.ENV_VAR, "64K")
    np.savez_compressed(tmp_path / "ok.npz", X=rng.random((50, 10)), y=np.arange(50) % 2)
    assert datasets.load(tmp_path / "ok.npz").X.shape == (50, 10)
    with gzip.open(tmp_path / "ok.csv.gz", "wt") as f:
        f.write("a,b,t\n" + "".join(f"{i},{i * 2},{i % 2}\n" for i in range(300)))
    assert datasets.load(tmp_path / "ok.csv.gz").X.shape == (300, 2)


# --------------------------------------------------------------------------- FIFOs and devices
needs_fifo = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs os.mkfifo")


def _run_cli(args, timeout=60):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    # NOTE: the timeout turns a regression (a blocking open) into a failure instead of a hung suite
    return subprocess.run([sys.executable, "-m", "gradbox", *args], capture_output=True, text=True, timeout=timeout,
                          env=env)


@needs_fifo
@pytest.mark.parametrize("name", ["data.csv", "data.npz", "train-images-idx3-ubyte", "data.h5"])
def test_train_on_a_fifo_is_refused_at_once(tmp_path, name):
    fifo = tmp_path / name
    os.mkfifo(fifo)
    out = _run_cli(["train", "--dataset", str(fifo), "--out", str(tmp_path / "run")])
    assert out.returncode != 0
    assert out.stderr.strip().splitlines()[-1].endswith(f"expected a regular file, received a FIFO (named pipe) "
                                                        f"{str(fifo)!r}"), out.stderr
    assert "Traceback" not in out.stderr


@needs_fifo
def test_info_on_a_fifo_is_refused_at_once(tmp_path):
    fifo = tmp_path / "model.gbx"
    os.mkfifo(fifo)
    out = _run_cli(["info", str(fifo)])
    assert out.returncode != 0 and "expected a regular file" in out.stderr and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


@needs_fifo
def test_a_fifo_as_the_labels_file_is_refused(tmp_path):
    _files.write_idx(tmp_path / "x-images-idx3-ubyte", np.zeros((2, 4, 4), np.uint8))
    os.mkfifo(tmp_path / "x-labels-idx1-ubyte")
    code = ("from gradbox import datasets; import sys\n"
            f"try: datasets.load({str(tmp_path / 'x-images-idx3-ubyte')!r})\n"
            "except ValueError as e: print(e); sys.exit(0)\n"
            "sys.exit(5)")
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 0 and "expected a regular file, received a FIFO" in out.stdout, out


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero")
def test_a_device_named_like_a_csv_is_refused(tmp_path):
    link = tmp_path / "zero.csv"
    os.symlink("/dev/zero", link)
    message, _ = load_in_a_bounded_child(link, timeout=60)
    assert message == f"name_or_path: expected a regular file, received a character device {str(link)!r}"
