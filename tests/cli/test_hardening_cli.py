"""Hundreds of malformed inputs into the ``gradbox`` command and the data-entry API (hypothesis).

CLI: every malformed file, flag, config or model file must end in a non-zero exit code and exactly
one line on stderr starting with ``gradbox: error:`` -- no traceback, no raw NumPy/Python message,
and no model file (nor anything else) left in the ``--out`` folder.

API (``fit``, ``predict``, ``evaluate``, ``check_X_y``, ``datasets.load``): every malformed input
raises ValueError/TypeError whose message says what was expected and what was received, without
returning anything silently or producing NaN.

The counts of inputs tried are checked (>= 500 in all) by the last test of the file.
"""
import gzip
import io
import itertools
import json
import math
import os
import re
import string
import warnings

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gradbox as gb
from gradbox import nn
from gradbox.cli import DEFAULTS, main
from gradbox.datasets import list_datasets
from gradbox.nn.init import INITIALIZERS
from gradbox.train import ACTIVATIONS, OPTIMIZERS

# NOTE: capsys is function-scoped but is emptied by every readouterr(), so one fixture serves all examples.
CLI = dict(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
RAW = re.compile(r"Traceback|could not convert string|operands could not be broadcast|index -?\d+ is out of bounds|"
                 r"setting an array element with a sequence|cannot reshape array|unhashable type|ufunc|"
                 r"object has no attribute|object is not subscriptable|does not support the context manager|"
                 r"invalid literal for int|unsupported operand|^gradbox: error: unexpected ", re.MULTILINE)
TRIED = {"cli": 0, "api": 0}


# --------------------------------------------------------------------------------------
# Fixtures: a scratch folder as the working directory, a small trained model, valid inputs
# --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """The working directory of every CLI call (a stray runs/ folder would land here)."""
    path = tmp_path_factory.mktemp("hardening_cli")
    old = os.getcwd()
    os.chdir(path)
    try:
        yield path
    finally:
        os.chdir(old)


@pytest.fixture(scope="module")
def model_path(work):
    out = work / "trained"
    assert main(["train", "--dataset", "moons", "--n-samples", "60", "--hidden", "4", "--epochs", "1",
                 "--quiet", "--out", str(out)]) == 0
    return str(out / "model.gbx")


@pytest.fixture(scope="module")
def good_input(work):
    path = work / "good_input.csv"
    path.write_text("x0,x1\n0.5,-0.25\n1,2\n")
    return str(path)


_NAMES = itertools.count()
_PRECREATED = set()  # --out folders that existed before the command (the others must not exist after it)


def _new_path(work, suffix):
    return str(work / f"case{next(_NAMES)}{suffix}")


def _out_dir(work, precreate):
    path = work / f"out{next(_NAMES)}"
    if precreate:
        path.mkdir()
        _PRECREATED.add(str(path))
    return str(path)


def cli_fails(capsys, argv, out=None):
    """Run ``gradbox argv`` in-process; it must fail with one clean line and leave nothing in ``out``."""
    TRIED["cli"] += 1
    argv = [str(a) for a in argv]
    rc = main(argv)
    stdout, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert rc != 0, f"{argv}: exit code 0 for a malformed input; stdout {stdout[:300]!r}"
    assert len(lines) == 1 and lines[0].startswith("gradbox: error: "), f"{argv}: stderr {err!r}"
    assert not RAW.search(err), f"{argv}: raw message {err!r}"
    assert "nan" not in stdout.lower().split(), f"{argv}: NaN on stdout {stdout!r}"
    if out is not None:
        assert os.path.exists(out) == (out in _PRECREATED), f"{argv}: created --out {out} and left it"
        assert out not in _PRECREATED or os.listdir(out) == [], f"{argv}: left {os.listdir(out)} in --out"
    return lines[0]


def expect_clear_error(call):
    """``call()`` must raise ValueError/TypeError (or a subclass) saying what was expected and received."""
    TRIED["api"] += 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a RuntimeWarning counts as silent garbage
        with pytest.raises((ValueError, TypeError)) as info:
            out = call()
            if isinstance(out, np.ndarray) and out.dtype.kind == "f":
                assert np.isfinite(out).all(), "returned NaN silently"
            raise AssertionError(f"no error for a malformed input; returned {out!r:.120}")
    msg = str(info.value)
    assert "expected" in msg and "received" in msg, msg
    assert not RAW.search(msg), msg
    return msg


# --------------------------------------------------------------------------------------
# Malformed CSV files
# --------------------------------------------------------------------------------------
def _is_float(v):
    try:
        float(v)
    except ValueError:
        return False
    return True


def _base_rows(n=12):
    rows = [["a", "b", "label"]]
    for i in range(n):
        rows.append([f"{0.5 * i:.2f}", f"{(i % 3) - 1:.1f}", str(i % 2)])
    return rows


def _csv_bytes(rows, delimiter=","):
    return ("\n".join(delimiter.join(r) for r in rows) + "\n").encode()


cell_text = st.text(st.characters(blacklist_characters=',"\r\n', blacklist_categories=("Cs",)), max_size=8)
NONFINITE_CELLS = ["nan", "NaN", "inf", "-inf", "Infinity", "1e999", "-1e400"]
CSV_KINDS = ["empty", "header_only", "one_column", "non_numeric", "nonfinite", "empty_cell", "ragged",
             "duplicate_header", "bad_target", "one_class", "float_labels", "nonfinite_label", "empty_label",
             "unicode_garbage", "binary", "gzip_garbage", "truncated_gzip", "semicolon", "overflow"]


@st.composite
def malformed_csv(draw):
    """(kind, file bytes, target or None, whether datasets.load itself must refuse it)."""
    kind = draw(st.sampled_from(CSV_KINDS))
    rows = _base_rows(draw(st.integers(4, 12)))
    n = len(rows) - 1
    r, c = draw(st.integers(1, n)), draw(st.integers(0, 1))  # a data row and a feature column
    target, api_fails = None, True
    if kind == "empty":
        return kind, draw(st.sampled_from([b"", b"\n\n", b"  \n", b",,\n,,\n", b"\xef\xbb\xbf"])), None, True
    if kind == "header_only":
        rows = rows[:1]
    elif kind == "one_column":
        rows = [[row[0]] for row in rows]
    elif kind == "non_numeric":
        rows[r][c] = draw(cell_text.filter(lambda s: not _is_float(s)))
    elif kind == "nonfinite":
        rows[r][c] = draw(st.sampled_from(NONFINITE_CELLS))
    elif kind == "empty_cell":
        rows[r][c] = draw(st.sampled_from(["", " ", "  "]))
    elif kind == "overflow":  # finite in the file, beyond float32 (the dtype datasets load as)
        rows[r][c] = repr(draw(st.sampled_from([1.0, -1.0])) * draw(st.floats(3.5e38, 1e300)))
    elif kind == "ragged":
        k = draw(st.integers(1, 2))  # NOTE: never all 3 cells: a blank line is skipped, not ragged
        rows[r] = rows[r][:-k] if draw(st.booleans()) else rows[r] + ["1"] * k
    elif kind == "duplicate_header":
        rows[0] = draw(st.sampled_from([["a", "a", "label"], ["a", "b", "a"], ["x", "x", "x"]]))
    elif kind == "bad_target":
        target = draw(st.text(min_size=1, max_size=8).filter(lambda t: t.strip() not in ("a", "b", "label")))
    elif kind == "one_class":
        label = draw(st.one_of(st.just("0"), st.text(string.ascii_letters, min_size=1, max_size=6)))
        for row in rows[1:]:
            row[2] = label
        api_fails = False  # a valid file with one class: only training refuses it
    elif kind == "float_labels":
        for i, row in enumerate(rows[1:]):
            row[2] = f"{i + 0.5}"
        api_fails = False  # a regression target: only `gradbox train` (classifiers) refuses it
    elif kind == "nonfinite_label":
        rows[r][2] = draw(st.sampled_from(["nan", "inf", "-inf"]))
    elif kind == "empty_label":
        rows[r][2] = ""
    elif kind == "unicode_garbage":
        # NOTE: no delimiter, so at most one column: never a valid dataset.
        text = draw(st.text(st.characters(blacklist_characters=",", blacklist_categories=("Cs",)), max_size=200))
        return kind, text.encode("utf-8"), None, True
    elif kind == "binary":
        raw = bytearray(draw(st.binary(max_size=200)))
        raw.insert(draw(st.integers(0, len(raw))), 0xFF)  # never valid UTF-8
        if raw[:2] == b"\x1f\x8b":
            raw[0] = 0
        return kind, bytes(raw), None, True
    elif kind == "gzip_garbage":
        return kind, b"\x1f\x8b" + draw(st.binary(max_size=200)), None, True
    elif kind == "truncated_gzip":
        whole = gzip.compress(_csv_bytes(rows))
        return kind, whole[:draw(st.integers(0, len(whole) - 9))], None, True
    elif kind == "semicolon":
        return kind, _csv_bytes(rows, ";"), None, True
    return kind, _csv_bytes(rows), target, api_fails


TRAIN_TINY = ["--epochs", "1", "--hidden", "4", "--batch-size", "8", "--quiet"]


def test_a_valid_tiny_csv_trains(work, capsys):
    """The corruptions below are what make the files fail: the base file trains."""
    path = work / "base.csv"
    path.write_bytes(_csv_bytes(_base_rows()))
    out = str(work / "base_out")
    assert main(["train", "--dataset", str(path), *TRAIN_TINY, "--out", out]) == 0, capsys.readouterr().err
    assert os.path.isfile(os.path.join(out, "model.gbx"))


@settings(max_examples=90, **CLI)
@given(malformed_csv(), st.booleans())
def test_train_refuses_malformed_csv(work, capsys, case, precreate):
    _, raw, target, _ = case
    path = _new_path(work, ".csv")
    with open(path, "wb") as f:
        f.write(raw)
    out = _out_dir(work, precreate)
    cli_fails(capsys, ["train", "--dataset", path, *(["--target", target] if target else []), *TRAIN_TINY,
                       "--out", out], out)


# --------------------------------------------------------------------------------------
# Malformed NPZ files
# --------------------------------------------------------------------------------------
NPZ_KINDS = ["missing_X", "missing_y", "X_ndim", "y_ndim", "object", "length", "nonfinite_X", "nonfinite_y",
             "complex", "empty", "zero_features", "string_y", "negative_y", "float_y", "one_class", "truncated",
             "not_zip", "npy", "test_features", "test_length", "empty_file"]


def _npz_bytes(**arrays):
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


@st.composite
def malformed_npz(draw):
    """(kind, file bytes, whether datasets.load itself must refuse it)."""
    kind = draw(st.sampled_from(NPZ_KINDS))
    n = draw(st.integers(4, 10))
    X = draw(hnp.arrays(np.float64, (n, 2), elements=st.floats(-5, 5)))
    y = np.arange(n) % 2
    i = draw(st.integers(0, n - 1))
    api_fails = True
    arrays = {"X": X, "y": y}
    if kind == "missing_X":
        arrays = {draw(st.sampled_from(["x", "data", "features", "X_train"])): X, "y": y}
    elif kind == "missing_y":
        arrays = {"X": X, draw(st.sampled_from(["Y", "labels", "target", "y_train"])): y}
    elif kind == "X_ndim":
        arrays["X"] = draw(st.sampled_from([X[:, 0], np.float64(1.0)]))
    elif kind == "y_ndim":
        arrays["y"] = draw(st.sampled_from([np.stack([y, y], 1), np.zeros((n, 2, 2), dtype=np.int64)]))
    elif kind == "object":
        which = draw(st.sampled_from(["X", "y"]))
        obj = np.empty(n, dtype=object)
        obj[:] = [[1.0, "a"]] * n
        arrays[which] = obj
    elif kind == "length":
        arrays["y"] = np.resize(y, n + draw(st.sampled_from([-3, -1, 1, 5])))
    elif kind == "nonfinite_X":
        X[i, draw(st.integers(0, 1))] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    elif kind == "nonfinite_y":
        arrays["y"] = y.astype(np.float64)
        arrays["y"][i] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    elif kind == "complex":
        which = draw(st.sampled_from(["X", "y"]))
        arrays[which] = arrays[which] + 1j
    elif kind == "empty":
        arrays = {"X": np.zeros((0, 2)), "y": np.zeros(0, dtype=np.int64)}
    elif kind == "zero_features":
        arrays["X"] = np.zeros((n, 0))
    elif kind == "string_y":
        arrays["y"] = np.array(["cat", "dog"] * n)[:n]
    elif kind == "negative_y":
        arrays["y"] = y - draw(st.integers(1, 5))
    elif kind == "float_y":
        arrays["y"] = y + 0.5
        api_fails = False  # a regression target
    elif kind == "one_class":
        arrays["y"] = np.zeros(n, dtype=np.int64)
        api_fails = False  # valid data with one class: only training refuses it
    elif kind == "truncated":
        whole = _npz_bytes(**arrays)
        return kind, whole[:draw(st.integers(0, len(whole) - 1))], True
    elif kind == "not_zip":
        return kind, draw(st.binary(min_size=1, max_size=100).filter(lambda b: not b.startswith((b"PK", b"\x93")))), \
            True
    elif kind == "npy":
        buf = io.BytesIO()
        np.save(buf, X)
        return kind, buf.getvalue(), True  # an .npy file named .npz
    elif kind == "test_features":
        arrays.update(X_test=np.zeros((3, draw(st.sampled_from([1, 3, 5])))), y_test=np.zeros(3, dtype=np.int64))
    elif kind == "test_length":
        arrays.update(X_test=np.zeros((3, 2)), y_test=np.zeros(draw(st.sampled_from([1, 2, 4])), dtype=np.int64))
    elif kind == "empty_file":
        return kind, b"", True
    return kind, _npz_bytes(**arrays), api_fails


@settings(max_examples=80, **CLI)
@given(malformed_npz(), st.booleans())
def test_train_refuses_malformed_npz(work, capsys, case, precreate):
    _, raw, _ = case
    path = _new_path(work, ".npz")
    with open(path, "wb") as f:
        f.write(raw)
    out = _out_dir(work, precreate)
    cli_fails(capsys, ["train", "--dataset", path, *TRAIN_TINY, "--out", out], out)


# --------------------------------------------------------------------------------------
# Malformed IDX (MNIST) and HDF5 (the course's layout) files
# --------------------------------------------------------------------------------------
def _idx(arr):
    from gradbox.datasets._files import _IDX_TYPES

    arr = np.asarray(arr)
    code = {v.newbyteorder("=").str: k for k, v in _IDX_TYPES.items()}[arr.dtype.newbyteorder("=").str]
    return bytes([0, 0, code, arr.ndim]) + np.asarray(arr.shape, dtype=">u4").tobytes() + \
        arr.astype(_IDX_TYPES[code]).tobytes()


def _h5(**datasets):
    h5py = pytest.importorskip("h5py")  # NOTE: the hdf5 extra; without it these cases skip

    buf = io.BytesIO()
    with h5py.File(buf, "w") as f:
        for k, v in datasets.items():
            f[k] = v
    return buf.getvalue()


IDX_KINDS = ["garbage", "truncated", "no_labels", "label_count", "labels_2d", "images_1d", "bad_type", "gzip",
             "zero_ndim", "short_header", "nan_images", "negative_labels", "float_labels"]
H5_KINDS = ["garbage", "empty", "keys", "length", "x_1d", "y_2d", "nan", "string_y", "truncated"]


@st.composite
def malformed_idx_or_h5(draw):
    """(files {name: bytes}, the file to load, whether datasets.load itself must refuse it)."""
    n = draw(st.integers(2, 8))
    images = (np.arange(n * 9).reshape(n, 3, 3) % 256).astype(np.uint8)
    labels = (np.arange(n) % 2).astype(np.uint8)
    if draw(st.booleans()):
        kind = draw(st.sampled_from(IDX_KINDS))
        files = {"train-images-idx3-ubyte": _idx(images), "train-labels-idx1-ubyte": _idx(labels)}
        main_file, which = "train-images-idx3-ubyte", draw(st.sampled_from(["train-images-idx3-ubyte",
                                                                           "train-labels-idx1-ubyte"]))
        if kind == "garbage":
            files[which] = draw(st.binary(max_size=60).filter(lambda b: b[:2] != b"\x00\x00"))
        elif kind == "truncated":
            files[which] = files[which][:draw(st.integers(0, len(files[which]) - 1))]
        elif kind == "no_labels":
            del files["train-labels-idx1-ubyte"]
        elif kind == "label_count":
            files["train-labels-idx1-ubyte"] = _idx(np.resize(labels, n + draw(st.sampled_from([-1, 1, 5]))))
        elif kind == "labels_2d":
            files["train-labels-idx1-ubyte"] = _idx(labels.reshape(n, 1).repeat(2, 1))
        elif kind == "images_1d":
            files["train-images-idx3-ubyte"] = _idx(labels)
        elif kind == "bad_type":
            raw = bytearray(files[which])
            raw[2] = draw(st.sampled_from([0x00, 0x07, 0x0A, 0x0F, 0xFF]))
            files[which] = bytes(raw)
        elif kind == "gzip":
            files = {k + ".gz": gzip.compress(v) for k, v in files.items()}
            main_file, which = main_file + ".gz", which + ".gz"
            files[which] = files[which][:draw(st.integers(2, len(files[which]) - 1))]
        elif kind == "zero_ndim":
            files[which] = files[which][:3] + b"\x00" + files[which][4:]
        elif kind == "short_header":
            files[which] = files[which][:4 + draw(st.integers(0, 3))]
        elif kind == "nan_images":
            files["train-images-idx3-ubyte"] = _idx(np.where(images == images.flat[draw(st.integers(0, images.size
                                                    - 1))], np.nan, images.astype(np.float32)).astype(np.float32))
        elif kind == "negative_labels":
            files["train-labels-idx1-ubyte"] = _idx(labels.astype(np.int8) - draw(st.integers(1, 100)))
        else:  # float_labels: a regression target, which only `gradbox train` refuses
            files["train-labels-idx1-ubyte"] = _idx(labels.astype(np.float32) + 0.5)
            return files, main_file, False
        return files, main_file, True
    kind = draw(st.sampled_from(H5_KINDS))
    x, y = images.reshape(n, 3, 3, 1), labels.reshape(1, n)
    if kind == "garbage":
        return {"data.h5": draw(st.binary(max_size=80))}, "data.h5", True
    if kind == "empty":
        return {"data.h5": b""}, "data.h5", True
    if kind == "truncated":
        whole = _h5(train_set_x=x, train_set_y=y)
        return {"data.h5": whole[:draw(st.integers(0, len(whole) - 1))]}, "data.h5", True
    sets = {"train_set_x": x, "train_set_y": y}
    if kind == "keys":
        sets = {draw(st.sampled_from(["x", "train_x", "images"])): x, "train_set_y": y}
    elif kind == "length":
        sets["train_set_y"] = np.resize(labels, n + draw(st.sampled_from([-1, 2])))
    elif kind == "x_1d":
        sets["train_set_x"] = labels
    elif kind == "y_2d":
        sets["train_set_y"] = np.stack([labels, labels], 1)
    elif kind == "nan":
        sets["train_set_x"] = np.full((n, 2), np.nan)
    elif kind == "string_y":
        sets["train_set_y"] = np.array([b"cat", b"dog"] * n)[:n]
    return {"data.h5": _h5(**sets)}, "data.h5", True


def _write_files(folder, files):
    os.makedirs(folder)
    for name, raw in files.items():
        with open(os.path.join(folder, name), "wb") as f:
            f.write(raw)


@settings(max_examples=50, **CLI)
@given(malformed_idx_or_h5())
def test_train_refuses_malformed_idx_and_hdf5(work, capsys, case):
    files, main_file, _ = case
    folder = _new_path(work, "_files")
    _write_files(folder, files)
    out = _out_dir(work, False)
    cli_fails(capsys, ["train", "--dataset", os.path.join(folder, main_file), *TRAIN_TINY, "--out", out], out)


# --------------------------------------------------------------------------------------
# Bad flag values
# --------------------------------------------------------------------------------------
def _num(s):
    return s.map(repr)


neg = st.floats(max_value=-1e-9, allow_infinity=True)
nonfinite_text = st.sampled_from(["nan", "inf", "-inf", "NaN"])
junk = st.sampled_from(["", "x", "1.5.2", "1e-3x", "one", "--", "0x10"])
unknown_name = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
BAD_FLAGS = {
    "--lr": st.one_of(_num(st.floats(max_value=0.0)), nonfinite_text, junk),
    "--epochs": st.one_of(st.integers(max_value=0).map(str), st.sampled_from(["1.5", "1e3"]), junk),
    "--hidden": st.one_of(
        st.sampled_from(["64,,x", "3,", ",", "-1", "4,-2", "1.5", "x", "4;4", "0,3", "8,0", "1e2"]),
        st.lists(st.integers(max_value=0), min_size=1, max_size=3).map(lambda v: ",".join(map(str, v)))
        .filter(lambda s: s != "0")),
    "--batch-size": st.one_of(st.integers(max_value=0).map(str), st.sampled_from(["1.5", "fulll", " ", "-3"]), junk),
    "--dropout": st.one_of(_num(st.floats(min_value=1.0)), _num(neg), nonfinite_text, junk),
    "--val-split": st.one_of(_num(st.floats(min_value=1.0)), _num(neg), nonfinite_text, junk),
    "--test-split": st.one_of(_num(st.floats(min_value=1.0)), _num(neg), nonfinite_text, junk),
    "--momentum": st.one_of(_num(st.floats(min_value=1.0)), _num(neg), nonfinite_text),
    "--weight-decay": st.one_of(_num(neg), nonfinite_text, junk),
    "--seed": st.one_of(st.integers(max_value=-1).map(str), junk),
    "--patience": st.one_of(st.integers(max_value=0).map(str), junk),
    "--checkpoint-every": st.sampled_from(["0", "x", "5min", "-1", "1.5", "steps", "0steps", "e5", "5 5"]),
    "--n-samples": st.one_of(st.integers(max_value=0).map(str), junk),
    "--noise": st.one_of(_num(neg), nonfinite_text, junk),
    "--threads": st.one_of(st.integers(max_value=-1).map(str), junk),
    "--activation": unknown_name.filter(lambda s: s not in ACTIVATIONS),
    "--optimizer": unknown_name.filter(lambda s: s not in OPTIMIZERS),
    "--init": unknown_name.filter(lambda s: s not in INITIALIZERS),
    "--dataset": st.text(string.ascii_letters + string.digits + "_-", max_size=12)
    .filter(lambda s: s.strip().lower().replace("-", "_") not in list_datasets()),
    "--target": st.text(string.ascii_letters, min_size=1, max_size=6),  # moons is no CSV: no columns
}
MOONS = ["--dataset", "moons", "--n-samples", "40"]


@settings(max_examples=150, **CLI)
@given(st.sampled_from(sorted(BAD_FLAGS)).flatmap(lambda f: st.tuples(st.just(f), BAD_FLAGS[f])))
def test_train_refuses_bad_flag_values(work, capsys, flag_value):
    flag, value = flag_value
    out = _out_dir(work, False)
    # NOTE: --flag=value, so that values such as -1 or -- are not taken for flags; the last value wins.
    cli_fails(capsys, ["train", *MOONS, *TRAIN_TINY, "--out", out, f"{flag}={value}"], out)


@settings(max_examples=10, **CLI)
@given(st.binary(max_size=20), st.booleans())
def test_train_refuses_an_out_that_is_a_file_or_holds_a_run(work, capsys, content, is_file):
    out = _out_dir(work, not is_file)
    target = out if is_file else os.path.join(out, "model.gbx")
    with open(target, "wb") as f:
        f.write(content)
    cli_fails(capsys, ["train", *MOONS, *TRAIN_TINY, "--out", out])
    with open(target, "rb") as f:
        assert f.read() == content  # left as it was
    assert is_file or os.listdir(out) == ["model.gbx"]


@settings(max_examples=30, **CLI)
@given(st.floats(0.0, 0.99), st.floats(0.0, 0.99), st.sampled_from([[], ["--noise", "0.1"], ["--bogus", "1"]]))
def test_train_refuses_split_sums_and_unknown_flags(work, capsys, val, test, extra):
    if val + test < 1 and not extra:
        val, test = 0.5 + val / 2, 0.5 + test / 2  # push the sum to 1 or more
    dataset = ["--dataset", "digits"] if extra == ["--noise", "0.1"] else MOONS
    out = _out_dir(work, False)
    cli_fails(capsys, ["train", *dataset, *TRAIN_TINY, "--out", out, f"--val-split={val!r}",
                       f"--test-split={test!r}", *extra], out)


# --------------------------------------------------------------------------------------
# Bad TOML configs
# --------------------------------------------------------------------------------------
def toml_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return "{ " + ", ".join(f"{k} = {toml_value(x)}" for k, x in v.items()) + " }"


NAN, INF = float("nan"), float("inf")
BAD_CONFIG_VALUES = {
    "dataset": [5, True, ["moons"], {"a": 1}, ""],
    "target": [3, True, [1], "label"],
    "hidden": [3.5, "x", [1, "a"], [0], [-1], True, {"a": 1}, [1.5], [True], 0, "4,,4"],
    "activation": [1, [], {"a": 1}, "ReLU", "", True, ["relu"]],
    "optimizer": [2, [], {"a": 1}, "Adam", "", False, ["adam"]],
    "init": [1, "x", [], {"a": 1}, ["he_normal"]],
    "lr": ["0.1", -1, 0, True, [0.1], NAN, INF, -INF, {"a": 1}],
    "momentum": [1, 1.5, -0.1, "x", NAN, True],
    "epochs": [0, -1, 1.5, "1", True, [1]],
    "batch_size": [0, -1, 1.5, "x", True, [1], {"a": 1}],
    "weight_decay": [-1, "x", NAN, INF, True],
    "dropout": [1, 1.5, -0.1, "x", True, NAN],
    "seed": [-1, 1.5, "0", True, [0]],
    "val_split": [1, 1.5, -0.1, "x", NAN, True],
    "test_split": [1, 1.5, -0.1, "x", NAN, INF],
    "patience": [0, -1, 1.5, "x", True],
    "checkpoint_every": [0, "x", 1.5, -1, True, [1], "5min"],
    "n_samples": [0, -1, 1.5, "x", True],
    "noise": [-1, "x", NAN, INF, True],
    "threads": [-1, 1.5, "x", True],
    "out": [1, True, [1], {"a": 1}],
}


@st.composite
def bad_config(draw, out):
    """(file bytes, description) of a config whose every other setting is valid and tiny."""
    base = {"dataset": "moons", "n_samples": 40, "epochs": 1, "hidden": [4], "batch_size": 8, "out": out}
    kind = draw(st.sampled_from(["unknown_key", "wrong_value", "wrong_value", "invalid_toml", "binary",
                                 "unknown_table"]))
    if kind == "unknown_key":
        key = draw(st.from_regex(r"[a-z][a-z0-9_-]{0,14}", fullmatch=True)
                   .filter(lambda k: k.replace("-", "_") not in DEFAULTS))
        base[key] = draw(st.sampled_from([1, "x", 0.5, True]))
    elif kind == "wrong_value":
        key = draw(st.sampled_from(sorted(BAD_CONFIG_VALUES)))
        base[draw(st.sampled_from([key, key.replace("_", "-")]))] = draw(st.sampled_from(BAD_CONFIG_VALUES[key]))
        if key.replace("_", "-") != key and key.replace("_", "-") in base and key in base:
            del base[key]  # the key spelled with a dash replaces the default's
    elif kind == "invalid_toml":
        # NOTE: a line '= = =' at the end is never valid TOML, whatever comes before it.
        text = draw(st.text(st.characters(blacklist_categories=("Cs",)), max_size=80))
        return (text + "\n= = =\n").encode("utf-8"), kind
    elif kind == "binary":
        raw = bytearray(draw(st.binary(max_size=80)))
        raw.insert(draw(st.integers(0, len(raw))), 0xFF)
        return bytes(raw), kind
    lines = [f"{k} = {toml_value(v)}" for k, v in base.items()]
    if kind == "unknown_table" or draw(st.booleans()):
        lines.insert(0, "[train]" if kind != "unknown_table" else f"[{draw(st.sampled_from(['model', 'run', 'x']))}]")
    return "\n".join(lines).encode("utf-8") + b"\n", kind


def test_a_valid_tiny_config_trains(work, capsys):
    out = str(work / "config_ok_out")
    path = work / "ok.toml"
    path.write_text(f'dataset = "moons"\nn-samples = 40\nepochs = 1\nhidden = [4]\nout = {json.dumps(out)}\n')
    assert main(["train", "--config", str(path), "--quiet"]) == 0, capsys.readouterr().err
    assert os.path.isfile(os.path.join(out, "model.gbx"))


@settings(max_examples=90, **CLI)
@given(st.data())
def test_train_refuses_bad_configs(work, capsys, data):
    out = _out_dir(work, data.draw(st.booleans()))
    raw, _ = data.draw(bad_config(out))
    path = _new_path(work, ".toml")
    with open(path, "wb") as f:
        f.write(raw)
    cli_fails(capsys, ["train", "--config", path, "--quiet"], out)


def test_missing_or_folder_config_is_refused(work, capsys):
    cli_fails(capsys, ["train", "--config", work / "missing.toml", "--quiet"])
    cli_fails(capsys, ["train", "--config", work, "--quiet"])


# --------------------------------------------------------------------------------------
# train --resume with damaged run folders
# --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def checkpointed_run(work):
    out = work / "ckrun"
    assert main(["train", *MOONS, *TRAIN_TINY, "--checkpoint-every", "1", "--out", str(out)]) == 0
    with open(out / "config.json", "rb") as f, open(out / "checkpoint.gbx", "rb") as g:
        return f.read(), g.read()


@st.composite
def damaged_run(draw, config: bytes, checkpoint: bytes):
    """{file name: bytes or None (absent)} of a run folder that cannot be resumed."""
    saved = json.loads(config)
    kind = draw(st.sampled_from(["config_bytes", "config_json", "config_key", "config_value", "checkpoint",
                                 "no_checkpoint", "no_config"]))
    files = {"config.json": config, "checkpoint.gbx": checkpoint}
    if kind == "config_bytes":
        raw = bytearray(draw(st.binary(max_size=60)))
        raw.insert(draw(st.integers(0, len(raw))), 0xFF)
        files["config.json"] = draw(st.sampled_from([bytes(raw), b"", config[:len(config) // 2]]))
    elif kind == "config_json":
        files["config.json"] = json.dumps(draw(st.sampled_from(
            [[1, 2], None, 3, "config", {}, {"config": None}, {"config": [1]}, {"config": "x"}]))).encode()
    elif kind == "config_key":
        key = draw(st.text(string.ascii_lowercase + "_", min_size=1, max_size=10).filter(lambda k: k not in DEFAULTS))
        files["config.json"] = json.dumps({**saved, "config": {**saved["config"], key: 1}}).encode()
    elif kind == "config_value":
        key = draw(st.sampled_from(sorted(set(BAD_CONFIG_VALUES) - {"epochs"})))  # --epochs 2 replaces epochs
        value = draw(st.sampled_from([v for v in BAD_CONFIG_VALUES[key] if not (isinstance(v, float) and
                                                                                  not math.isfinite(v))]))
        files["config.json"] = json.dumps({**saved, "config": {**saved["config"], key: value}}).encode()
    elif kind == "checkpoint":
        raw = bytearray(checkpoint)
        if draw(st.booleans()):
            raw = raw[:draw(st.integers(0, len(raw) - 1))]
        else:
            raw[draw(st.integers(0, len(raw) - 1))] ^= draw(st.integers(1, 255))
        files["checkpoint.gbx"] = bytes(raw)
    else:
        files["checkpoint.gbx" if kind == "no_checkpoint" else "config.json"] = None
    return kind, files


@settings(max_examples=40, **CLI)
@given(st.data())
def test_resume_refuses_damaged_run_folders(work, checkpointed_run, capsys, data):
    _, files = data.draw(damaged_run(*checkpointed_run))
    run = _out_dir(work, True)
    for name, raw in files.items():
        if raw is not None:
            with open(os.path.join(run, name), "wb") as f:
                f.write(raw)
    before = sorted(os.listdir(run))
    cli_fails(capsys, ["train", "--resume", run, "--epochs", "2", "--quiet"])
    assert sorted(os.listdir(run)) == before  # nothing written, nothing removed
    if files["checkpoint.gbx"] is not None:
        with open(os.path.join(run, "checkpoint.gbx"), "rb") as f:
            assert f.read() == files["checkpoint.gbx"]


def test_the_checkpointed_run_resumes(work, checkpointed_run, capsys):
    run = work / "resume_ok"
    run.mkdir()
    (run / "config.json").write_bytes(checkpointed_run[0])
    (run / "checkpoint.gbx").write_bytes(checkpointed_run[1])
    assert main(["train", "--resume", str(run), "--epochs", "2", "--quiet"]) == 0, capsys.readouterr().err
    assert (run / "model.gbx").is_file()


# --------------------------------------------------------------------------------------
# Bad model files for evaluate / predict / info / gradcheck / graph / explain
# --------------------------------------------------------------------------------------
MODEL_KINDS = ["truncated", "flipped", "appended", "empty", "foreign_npz", "foreign_text", "foreign_json", "npy",
               "png", "directory", "missing", "random"]


@st.composite
def bad_model_file(draw, valid: bytes):
    kind = draw(st.sampled_from(MODEL_KINDS))
    if kind == "truncated":
        return kind, valid[:draw(st.integers(0, len(valid) - 1))]
    if kind == "flipped":
        raw = bytearray(valid)
        i = draw(st.integers(0, len(raw) - 1))
        raw[i] ^= draw(st.integers(1, 255))
        return kind, bytes(raw)
    if kind == "appended":
        return kind, valid + draw(st.binary(min_size=1, max_size=50))
    if kind == "empty":
        return kind, b""
    if kind == "foreign_npz":
        return kind, _npz_bytes(W=np.zeros((2, 4)), b=np.zeros(4))
    if kind == "foreign_text":
        return kind, draw(st.text(max_size=100)).encode("utf-8")
    if kind == "foreign_json":
        return kind, json.dumps({"format": "gradbox", "arrays": {}, "layers": [1, 2]}).encode()
    if kind == "npy":
        buf = io.BytesIO()
        np.save(buf, np.zeros((2, 2)))
        return kind, buf.getvalue()
    if kind == "png":
        return kind, b"\x89PNG\r\n\x1a\n" + draw(st.binary(max_size=40))
    if kind == "random":
        return kind, draw(st.binary(min_size=1, max_size=200))
    return kind, None  # directory / missing


MODEL_COMMANDS = [["evaluate"], ["info"], ["gradcheck"], ["graph"], ["explain", "--batch", "4", "--dataset", "moons"],
                  ["predict"]]


@settings(max_examples=90, **CLI)
@given(st.data(), st.sampled_from(range(len(MODEL_COMMANDS))), st.booleans())
def test_model_commands_refuse_bad_model_files(work, model_path, good_input, capsys, data, which, ext):
    with open(model_path, "rb") as f:
        valid = f.read()
    kind, raw = data.draw(bad_model_file(valid))
    path = _new_path(work, ".gbx" if ext else ".npz")
    if kind == "directory":
        os.mkdir(path)
    elif kind != "missing":
        with open(path, "wb") as f:
            f.write(raw)
    cmd = MODEL_COMMANDS[which]
    extra = ["--input", good_input] if cmd == ["predict"] else []
    cli_fails(capsys, [cmd[0], path, *cmd[1:], *extra])


def test_commands_accept_the_valid_model(model_path, good_input, capsys):
    """The base of the corruptions above is a valid model for every command."""
    for cmd in MODEL_COMMANDS:
        extra = ["--input", good_input] if cmd == ["predict"] else []
        assert main([cmd[0], model_path, *cmd[1:], *extra]) == 0, (cmd, capsys.readouterr().err)
    capsys.readouterr()


@st.composite
def odd_model_file(draw):
    """(metadata, arrays, whether every command must refuse it) of a valid gradbox model file whose
    metadata or normalisation is malformed."""
    meta = {"dataset": {"source": "moons", "options": {"n_samples": 40}}, "classes": [0, 1, 2],
            "feature_names": ["x0", "x1"]}
    arrays = {"norm.mean": np.zeros(2), "norm.scale": np.ones(2)}
    junk_value = st.sampled_from([5, 1.5, True, "x", [1], [[1], {"a": 1}], {"a": 1}, [None]])
    kind = draw(st.sampled_from(["meta", "dataset", "norm"]))
    if kind == "meta":
        key = draw(st.sampled_from(["classes", "feature_names", "hyperparameters", "test_accuracy", "dataset"]))
        ok = {"classes": lambda v: isinstance(v, list) and all(isinstance(c, (str, int, float)) for c in v),
              "feature_names": lambda v: isinstance(v, list) and all(isinstance(c, str) for c in v),
              "hyperparameters": lambda v: isinstance(v, dict),
              "test_accuracy": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
              "dataset": lambda v: isinstance(v, dict)}[key]
        meta[key] = draw(junk_value.filter(lambda v: not ok(v)))
    elif kind == "dataset":
        key = draw(st.sampled_from(["source", "target", "options", "val_split", "test_split", "seed"]))
        bad = {"source": [5, "", [1], True, "no_such.csv", "nope"], "target": [5, [1], "nope"],
               "options": [3, [1], "x", {"bogus": 1}, {"n_samples": 0}],
               "val_split": [-0.1, 1, "x", [0.1]], "test_split": [1.5, "x", True], "seed": [-1, "x", 1.5]}[key]
        meta["dataset"][key] = value = draw(st.sampled_from(bad))
        # NOTE: a well-typed but unusable record (a missing file, a bad split) only matters to the
        # commands that reload the data; predict does not.
        typed = {"source": lambda v: isinstance(v, str) and v, "target": lambda v: isinstance(v, str),
                 "options": lambda v: isinstance(v, dict)}.get(key, lambda v: True)
        return meta, arrays, not typed(value)
    else:
        which = draw(st.sampled_from(["norm.mean", "norm.scale"]))
        arrays[which] = draw(st.sampled_from([np.zeros(3), np.zeros((2, 1)), np.array([np.nan, 0.0]),
                                              np.array([np.inf, 1.0]), np.zeros(0), np.ones(1)]))
        if which == "norm.scale" and draw(st.booleans()):
            arrays[which] = draw(st.sampled_from([np.zeros(2), -np.ones(2)]))
    return meta, arrays, True


@settings(max_examples=50, **CLI)
@given(odd_model_file(), st.sampled_from(["evaluate", "predict", "gradcheck"]))
def test_model_commands_refuse_odd_metadata_and_normalisation(work, good_input, capsys, case, command):
    meta, arrays, every_command = case
    if command == "predict" and not every_command:
        command = "evaluate"
    path = _new_path(work, ".gbx")
    gb.io.save_model(path, nn.Sequential(nn.Linear(2, 3, rng=0)), arrays=arrays, metadata=meta)
    cli_fails(capsys, [command, path, *(["--input", good_input] if command == "predict" else [])])


# --------------------------------------------------------------------------------------
# predict --input with malformed features
# --------------------------------------------------------------------------------------
INPUT_KINDS = ["width", "header_names", "nonfinite", "text_cell", "empty", "header_only", "ragged", "npz_width",
               "npz_ndim", "npz_empty", "npz_object", "npz_complex", "npz_keys", "npz_string", "npz_nan",
               "binary", "extension", "npz_corrupt", "npy", "overflow"]


@st.composite
def bad_input(draw):
    """(suffix, bytes) of a --input file for a model of 2 features x0, x1."""
    kind = draw(st.sampled_from(INPUT_KINDS))
    n = draw(st.integers(1, 5))
    cells = [[f"{0.1 * (i + j):.2f}" for j in range(2)] for i in range(n)]
    header = draw(st.booleans())

    def csv_of(rows, head=("x0", "x1")):
        return ("\n".join([",".join(head)] * header + [",".join(r) for r in rows]) + "\n").encode()

    if kind == "width":
        k = draw(st.sampled_from([1, 3, 4, 10]))
        return ".csv", ("\n".join(",".join(["1.5"] * k) for _ in range(n)) + "\n").encode()
    if kind == "header_names":
        names = draw(st.lists(st.text(string.ascii_letters, min_size=1, max_size=4), min_size=2, max_size=2,
                              unique=True).filter(lambda v: not {"x0", "x1"} <= set(v)))
        return ".csv", ("\n".join([",".join(names)] + [",".join(r) for r in cells]) + "\n").encode()
    i, j = draw(st.integers(0, n - 1)), draw(st.integers(0, 1))
    if kind == "nonfinite":
        cells[i][j] = draw(st.sampled_from(NONFINITE_CELLS))
        return ".csv", csv_of(cells)
    if kind == "overflow":  # finite, but beyond float32 (the model's dtype) once standardised
        cells[i][j] = repr(draw(st.sampled_from([1.0, -1.0])) * draw(st.floats(1e39, 1e300)))
        return ".csv", csv_of(cells)
    if kind == "text_cell":
        cells[i][j] = draw(cell_text.filter(lambda s: not _is_float(s)))
        return ".csv", csv_of(cells)
    if kind == "empty":
        return ".csv", draw(st.sampled_from([b"", b"\n", b" ,\n"]))
    if kind == "header_only":
        return ".csv", b"x0,x1\n"
    if kind == "ragged":
        cells[i] = cells[i][:1] if draw(st.booleans()) else cells[i] + ["1"]
        return ".csv", csv_of(cells)
    if kind == "binary":
        raw = bytearray(draw(st.binary(max_size=100)))
        raw.insert(draw(st.integers(0, len(raw))), 0xFF)
        return ".csv", bytes(raw)
    if kind == "extension":
        return draw(st.sampled_from([".json", ".txt.gz", ".npy", ""])), csv_of(cells)
    if kind == "npy":
        buf = io.BytesIO()
        np.save(buf, np.ones((n, 2)))
        return ".npz", buf.getvalue()  # an .npy file named .npz
    if kind == "npz_corrupt":
        whole = _npz_bytes(X=np.zeros((n, 2)))
        return ".npz", whole[:draw(st.integers(0, len(whole) - 1))]
    X = np.ones((n, 2))
    arrays = {
        "npz_width": lambda: {"X": np.ones((n, draw(st.sampled_from([0, 1, 3, 7]))))},
        "npz_ndim": lambda: {"X": draw(st.sampled_from([np.ones(2), np.ones((n, 2, 1)), np.float64(1)]))},
        "npz_empty": lambda: {"X": np.ones((0, 2))},
        "npz_object": lambda: {"X": np.array([[1.0, None]] * n, dtype=object)},
        "npz_complex": lambda: {"X": X + 1j},
        "npz_keys": lambda: {"a": X, "b": X},
        "npz_string": lambda: {"X": np.array([["1", "2"]] * n)},
        "npz_nan": lambda: {"X": np.where(np.arange(2) == j, np.nan, X)},
    }[kind]()
    return ".npz", _npz_bytes(**arrays)


@settings(max_examples=80, **CLI)
@given(bad_input(), st.booleans())
def test_predict_refuses_malformed_inputs(work, model_path, capsys, case, to_file):
    suffix, raw = case
    path = _new_path(work, suffix)
    with open(path, "wb") as f:
        f.write(raw)
    output = _new_path(work, "_pred.csv")
    cli_fails(capsys, ["predict", model_path, "--input", path, *(["--output", output] if to_file else [])])
    assert not os.path.exists(output)


# --------------------------------------------------------------------------------------
# Other commands' bad flags, and evaluate/gradcheck on malformed datasets
# --------------------------------------------------------------------------------------
@st.composite
def other_bad_command(draw, model):
    kind = draw(st.sampled_from(["gradcheck_flag", "explain_flag", "graph_flag", "eval_dataset", "unknown"]))
    if kind == "gradcheck_flag":
        flag, value = draw(st.sampled_from([
            ("--batch", st.integers(max_value=0).map(str)), ("--max-entries", st.integers(max_value=0).map(str)),
            ("--hidden", st.sampled_from(["4,,x", "-2", "a"])), ("--seed", st.sampled_from(["-1", "x"])),
            ("--activation", unknown_name.filter(lambda s: s not in ACTIVATIONS)),
            ("--dataset", st.sampled_from(["nope", "", "no_such.csv"])), ("--n-samples", st.sampled_from(["0", "-4"])),
        ]).flatmap(lambda fv: st.tuples(st.just(fv[0]), fv[1])))
        return ["gradcheck", f"{flag}={value}"]
    if kind == "explain_flag":
        flag, value = draw(st.sampled_from([
            ("--batch", st.integers(max_value=0).map(str)), ("--lr", st.sampled_from(["nan", "-1", "0", "inf", "x"])),
            ("--seed", st.sampled_from(["-1", "x"])), ("--dataset", st.sampled_from(["nope", "", "no_such.npz"])),
        ]).flatmap(lambda fv: st.tuples(st.just(fv[0]), fv[1])))
        return ["explain", "--batch=4", f"{flag}={value}"]
    if kind == "graph_flag":
        return draw(st.sampled_from([["graph"], ["graph", model, "--batch=0"], ["graph", model, "--batch=-2"],
                                     ["graph", "--example", "nope"], ["graph", model, "--example", "gates"]]))
    if kind == "eval_dataset":
        return ["evaluate", model, *draw(st.sampled_from([
            ["--dataset", "digits"], ["--dataset", "nope"], ["--dataset", "moons", "--n-samples", "0"],
            ["--dataset", "moons", "--noise", "nan"], ["--dataset", "moons", "--target", "y"],
            ["--dataset", "no_such.csv"], ["--n-samples", "-3"]]))]
    return draw(st.sampled_from([["frobnicate"], ["train", "--bogus"], ["evaluate"], ["info"], ["predict", model],
                                 ["info", model, "extra"], ["--debugg"]]))


@settings(max_examples=60, **CLI)
@given(st.data())
def test_other_commands_refuse_bad_flags(model_path, capsys, data):
    cli_fails(capsys, data.draw(other_bad_command(model_path)))


@settings(max_examples=50, **CLI)
@given(malformed_csv(), st.sampled_from(["evaluate", "gradcheck"]))
def test_evaluate_and_gradcheck_refuse_malformed_datasets(work, model_path, capsys, case, command):
    _, raw, target, api_fails = case
    if not api_fails and command == "evaluate":
        return  # one class or a float target is a valid file; evaluate's refusals are tested above
    path = _new_path(work, ".csv")
    with open(path, "wb") as f:
        f.write(raw)
    argv = [command, *([model_path] if command == "evaluate" else []), "--dataset", path,
            *(["--target", target] if target else [])]
    cli_fails(capsys, argv)


# --------------------------------------------------------------------------------------
# The data-entry API
# --------------------------------------------------------------------------------------
def _model():
    gb.manual_seed(0)
    return nn.Sequential(nn.Linear(2, 4, rng=0), nn.ReLU(), nn.Linear(4, 3, rng=1))


finite = st.floats(-5, 5, width=32)


@st.composite
def malformed_X(draw):
    """Anything that is not a finite (N >= 1, 2) numeric batch."""
    kind = draw(st.sampled_from(["ndim", "features", "empty", "zero_features", "nonfinite", "object", "string",
                                 "complex", "ragged", "scalar_text", "overflow"]))
    n = draw(st.integers(1, 6))
    if kind == "overflow":  # float64 beyond float32, the model's dtype
        x = np.ones((n, 2))
        x[draw(st.integers(0, n - 1)), draw(st.integers(0, 1))] = draw(st.sampled_from([1, -1])) * draw(
            st.floats(1e39, 1e300))
        return kind, x
    if kind == "ndim":
        ndim = draw(st.sampled_from([0, 1, 3]))
        shape = {0: (), 1: (n,), 3: (n, 2, draw(st.integers(1, 3)))}[ndim]
        return kind, draw(hnp.arrays(np.float32, shape, elements=finite))
    if kind == "features":
        return kind, np.ones((n, draw(st.sampled_from([1, 3, 5, 64]))), dtype=np.float32)
    if kind == "empty":
        return kind, np.ones((0, 2), dtype=np.float32)
    if kind == "zero_features":
        return kind, np.ones((n, 0), dtype=np.float32)
    if kind == "nonfinite":
        x = draw(hnp.arrays(draw(st.sampled_from([np.float32, np.float64])), (n, 2), elements=finite))
        x[draw(st.integers(0, n - 1)), draw(st.integers(0, 1))] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
        return kind, x if draw(st.booleans()) else x.tolist()
    if kind == "object":
        return kind, np.array([[object(), 1.0]] * n, dtype=object)
    if kind == "string":
        return kind, [[draw(st.text(max_size=3)), "1"]] * n
    if kind == "complex":
        return kind, np.ones((n, 2), dtype=draw(st.sampled_from([np.complex64, np.complex128])))
    if kind == "scalar_text":
        return kind, draw(st.text(max_size=5))
    return kind, [[1.0, 2.0]] * n + [[1.0] * draw(st.sampled_from([0, 1, 3]))]  # ragged


@st.composite
def malformed_y(draw, n_classes=3):
    """(kind, X, y) with a valid X of 2 features and malformed labels for a model of 3 outputs."""
    n = draw(st.integers(2, 6))
    X = draw(hnp.arrays(np.float32, (n, 2), elements=finite))
    y = np.arange(n) % n_classes
    i = draw(st.integers(0, n - 1))
    kind = draw(st.sampled_from(["range", "negative", "fraction", "length", "nonfinite", "ndim", "object",
                                 "string", "complex", "ragged", "empty"]))
    if kind == "range":
        y[i] = draw(st.integers(n_classes, 1000))
    elif kind == "negative":
        y[i] = draw(st.integers(-1000, -1))
    elif kind == "fraction":
        y = y.astype(np.float64)
        y[i] += draw(st.floats(0.01, 0.99))
    elif kind == "length":
        y = np.resize(y, n + draw(st.sampled_from([-1, 1, 3])))
    elif kind == "nonfinite":
        y = y.astype(np.float64)
        y[i] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    elif kind == "ndim":
        y = draw(st.sampled_from([np.stack([y, y], 1), y.reshape(n, 1, 1), np.int64(1)]))
    elif kind == "object":
        y = np.array([None] * n, dtype=object)
    elif kind == "string":
        y = np.array(["a", "b", "c"] * n)[:n]
    elif kind == "complex":
        y = y + 1j
    elif kind == "ragged":
        y = [[0], [1, 2]] + [[0]] * (n - 2)
    else:
        X, y = X[:0], y[:0]
    return kind, X, y


@settings(max_examples=70)
@given(malformed_X(), st.sampled_from(["fit", "predict", "evaluate", "check_X_y"]))
def test_api_refuses_malformed_X(case, func):
    kind, X = case
    n = len(X) if isinstance(X, list) or (isinstance(X, np.ndarray) and X.ndim) else 2
    y = np.zeros(n, dtype=np.int64)
    if kind in ("features", "overflow") and func == "check_X_y":
        return  # valid data as such; only a model (its size, its dtype) makes them malformed
    call = {
        "fit": lambda: gb.fit(_model(), X, y, epochs=1, batch_size=4, verbose=0),
        "predict": lambda: gb.train.predict(_model(), X),
        "evaluate": lambda: gb.train.evaluate(_model(), X, y),
        "check_X_y": lambda: gb.data.check_X_y(X, y),
    }[func]
    expect_clear_error(call)


@settings(max_examples=20)
@given(st.floats(float(np.float32(2e38)), float(np.finfo(np.float32).max), width=32), st.sampled_from(["predict", "predict_proba", "evaluate"]))
def test_predictions_refuse_overflowing_outputs(value, func):
    """Finite float32 inputs whose logits overflow: an error, never inf/NaN probabilities or labels."""
    model = _model()
    for p in model.parameters():
        p.data[...] = 2.0
    X = np.full((3, 2), value, dtype=np.float32)
    call = {"predict": lambda: gb.train.predict(model, X), "predict_proba": lambda: gb.train.predict_proba(model, X),
            "evaluate": lambda: gb.train.evaluate(model, X, np.zeros(3, dtype=np.int64))}[func]
    assert "model output" in expect_clear_error(call)


@settings(max_examples=100)
@given(malformed_y(), st.sampled_from(["fit", "evaluate", "check_X_y"]))
def test_api_refuses_malformed_labels(case, func):
    kind, X, y = case
    if kind == "range" and func == "check_X_y":
        return  # check_X_y does not know the number of classes; fit and evaluate do
    call = {
        "fit": lambda: gb.fit(_model(), X, y, epochs=1, batch_size=4, verbose=0),
        "evaluate": lambda: gb.train.evaluate(_model(), X, y),
        "check_X_y": lambda: gb.data.check_X_y(X, y),
    }[func]
    expect_clear_error(call)


bad_count = st.one_of(st.integers(max_value=0), st.floats(0.5, 9.5).filter(lambda v: v != int(v)),
                     st.sampled_from(["x", "8", True, None, [8]]))


@st.composite
def malformed_arguments(draw):
    """A call of fit/predict/evaluate with valid data but one malformed argument."""
    X = np.arange(20, dtype=np.float32).reshape(10, 2) / 10
    y = np.arange(10) % 3
    which = draw(st.sampled_from(["fit.batch_size", "fit.epochs", "fit.validation_data", "fit.callbacks",
                                  "fit.seed", "fit.loss", "fit.metrics", "predict.batch_size",
                                  "evaluate.batch_size", "evaluate.n_classes"]))
    if which == "fit.validation_data":
        value = draw(st.sampled_from([3, "x", (X,), (X, y, y), (np.ones((3, 4)), [0, 1, 2]),
                                      (np.ones((3, 2)), [0, 1, 7]), (np.full((3, 2), np.nan), [0, 1, 2]),
                                      (np.ones((3, 2)), [0, 1]), (np.ones((3, 2)), ["a", "b", "c"])]))
    elif which == "fit.callbacks":
        value = draw(st.sampled_from([5, gb.train.EarlyStopping(), ["x"], [None], "abc"]))
    elif which == "fit.epochs":
        value = draw(st.one_of(st.integers(max_value=-1), st.sampled_from([1.5, "3", True, None, [1]])))
    elif which == "fit.seed":
        value = draw(st.one_of(st.integers(max_value=-1), st.sampled_from([1.5, "0", [0]])))
    elif which == "fit.loss":
        value = draw(st.sampled_from(["x", "CrossEntropy", 5, [None]]))
    elif which == "fit.metrics":
        value = draw(st.sampled_from([("f1",), ["acc"], ("accuracy", "loss")]))
    elif which == "evaluate.n_classes":
        value = draw(st.one_of(st.integers(max_value=0).filter(lambda v: v != 0), st.sampled_from([1.5, "3", [3]])))
    else:
        value = draw(bad_count.filter(lambda v: v is not None or which != "fit.batch_size"))
    func, arg = which.split(".")
    return func, arg, value, X, y


@settings(max_examples=60)
@given(malformed_arguments())
def test_api_refuses_malformed_arguments(case):
    func, arg, value, X, y = case
    call = {"fit": lambda: gb.fit(_model(), X, y, **{"epochs": 1, "verbose": 0, arg: value}),
            "predict": lambda: gb.train.predict(_model(), X, **{arg: value}),
            "evaluate": lambda: gb.train.evaluate(_model(), X, y, **{arg: value})}[func]
    expect_clear_error(call)


@settings(max_examples=40)
@given(malformed_idx_or_h5())
def test_datasets_load_refuses_malformed_idx_and_hdf5(tmp_path_factory, case):
    files, main_file, api_fails = case
    if not api_fails:
        return  # a float target is a valid (regression) file
    folder = str(tmp_path_factory.getbasetemp() / f"load_files{next(_NAMES)}")
    _write_files(folder, files)
    expect_clear_error(lambda: gb.datasets.load(os.path.join(folder, main_file)))


@settings(max_examples=100)
@given(st.one_of(malformed_csv().map(lambda c: (".csv", c[1], c[2], c[3])),
                 malformed_npz().map(lambda c: (".npz", c[1], None, c[2]))))
def test_datasets_load_refuses_malformed_files(tmp_path_factory, case):
    suffix, raw, target, api_fails = case
    if not api_fails:
        return  # one class or a float target: valid files (the CLI's refusals are tested above)
    folder = tmp_path_factory.getbasetemp() / "load_cases"
    folder.mkdir(exist_ok=True)
    path = folder / f"case{next(_NAMES)}{suffix}"
    path.write_bytes(raw)
    expect_clear_error(lambda: gb.datasets.load(str(path), **({"target": target} if target else {})))


def test_count_is_at_least_500(work):
    """Runs last in this file: the hypothesis tests above tried at least 500 malformed inputs."""
    print(f"\nmalformed inputs tried: CLI {TRIED['cli']}, API {TRIED['api']}")
    assert TRIED["cli"] + TRIED["api"] >= 500, TRIED
    assert TRIED["cli"] >= 300 and TRIED["api"] >= 200, TRIED
    assert not os.path.exists(work / "runs")  # every train had --out: no stray run folders
