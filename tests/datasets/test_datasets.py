"""gradbox.datasets: shipped, synthetic and file datasets, and every error."""
import builtins
import gzip
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest

import gradbox as gb
from gradbox import datasets
from gradbox.data import NonFiniteError
from gradbox.datasets import Dataset, _files

from .._paths import ROOT as _ROOT

ROOT = str(_ROOT)


# --------------------------------------------------------------------------- shipped
def test_list_datasets():
    assert datasets.list_datasets() == ["digits", "breast_cancer", "spirals", "moons", "xor", "blobs"]


def test_digits_matches_scikit_learn():
    sk = pytest.importorskip("sklearn.datasets")
    ds = datasets.load("digits")
    ref = sk.load_digits()
    assert isinstance(ds, Dataset) and ds.name == "digits"
    assert ds.X.shape == (1797, 64) and ds.X.dtype == np.float32 and ds.y.dtype == np.int64
    assert ds.X.min() == 0 and ds.X.max() == 16 and ds.n_classes == 10
    np.testing.assert_array_equal(ds.X, ref.data)
    np.testing.assert_array_equal(ds.y, ref.target)
    assert ds.feature_names[0] == "pixel_0_0" and len(ds.feature_names) == 64
    assert ds.classes == [str(i) for i in range(10)] and ds.test is None and "digits" in ds.source
    assert ds.n_samples == 1797 and ds.n_features == 64


def test_breast_cancer_matches_scikit_learn():
    sk = pytest.importorskip("sklearn.datasets")
    ds = datasets.load("breast_cancer", dtype=np.float64)
    ref = sk.load_breast_cancer()
    assert ds.X.shape == (569, 30) and ds.X.dtype == np.float64 and ds.n_classes == 2
    np.testing.assert_array_equal(ds.X, ref.data)
    np.testing.assert_array_equal(ds.y, ref.target)
    assert ds.feature_names == list(ref.feature_names) and ds.classes == ["malignant", "benign"]


def test_shipped_files_are_in_the_wheel(tmp_path):
    """The .npz files are package data, so an installed (non-editable) gradbox has them."""
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", ROOT, "--no-deps",
                          "-q", "-w", str(tmp_path)], capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        pytest.skip(f"could not build a wheel here: {out.stderr[-300:]}")
    wheel = next(p for p in os.listdir(tmp_path) if p.endswith(".whl"))
    names = zipfile.ZipFile(tmp_path / wheel).namelist()
    assert "gradbox/datasets/digits.npz" in names and "gradbox/datasets/breast_cancer.npz" in names


# --------------------------------------------------------------------------- synthetic
@pytest.mark.parametrize("name, k", [("spirals", 3), ("moons", 2), ("xor", 2), ("blobs", 3)])
def test_synthetic_defaults_and_determinism(name, k):
    a = datasets.load(name)
    b = datasets.load(name)
    c = datasets.load(name, seed=1)
    np.testing.assert_array_equal(a.X, b.X)
    np.testing.assert_array_equal(a.y, b.y)
    assert not np.array_equal(a.X, c.X)
    assert a.X.ndim == 2 and a.X.shape[1] == 2 and a.X.dtype == np.float32
    assert a.n_classes == k and set(np.unique(a.y)) == set(range(k))
    counts = np.bincount(a.y)
    assert counts.max() - counts.min() <= (a.n_samples // 2 if name == "xor" else 1)
    assert name in a.source and "seed=0" in a.source


def test_synthetic_parameters():
    ds = datasets.load("spirals", n_samples=101, n_classes=5, noise=0.0, seed=3, dtype=np.float64)
    assert ds.X.shape == (101, 2) and ds.n_classes == 5 and ds.X.dtype == np.float64
    assert list(np.bincount(ds.y)) == [21, 20, 20, 20, 20]
    assert np.all(np.hypot(ds.X[:, 0], ds.X[:, 1]) <= 1 + 1e-12)  # noise 0: radius in [0, 1]
    blobs = datasets.load("blobs", n_samples=40, centers=[[0, 0, 0], [100, 100, 100]], noise=0.5)
    assert blobs.X.shape == (40, 3) and blobs.n_classes == 2
    far = blobs.X[blobs.y == 1]
    assert np.all(far > 90)  # each class around its own center
    assert datasets.load("blobs", n_classes=4, n_samples=8).n_classes == 4
    assert datasets.load("blobs", n_features=5).X.shape == (300, 5)
    xor = datasets.load("xor", n_samples=500, noise=0.0)
    np.testing.assert_array_equal(xor.y, (xor.X[:, 0] > 0) ^ (xor.X[:, 1] > 0))
    moons = datasets.load("moons", n_samples=7, noise=0.0)
    assert moons.X.shape == (7, 2) and list(np.bincount(moons.y)) == [4, 3]
    assert datasets.load("MOONS").name == "moons" and datasets.load("breast-cancer").name == "breast_cancer"


@pytest.mark.parametrize("name, options, exc, words", [
    ("spirals", dict(n_samples=2), ValueError, "spirals(n_samples): expected an int >= 3, received 2"),
    ("spirals", dict(n_classes=1), ValueError, "spirals(n_classes): expected an int >= 2, received 1"),
    ("spirals", dict(noise=-0.1), ValueError, "spirals(noise): expected a finite number >= 0, received -0.1"),
    ("moons", dict(noise=float("nan")), ValueError, "moons(noise): expected a finite number >= 0"),
    ("moons", dict(n_samples=10.5), ValueError, "moons(n_samples): expected an int >= 2, received 10.5"),
    ("xor", dict(seed=-3), ValueError, "xor(seed): expected a non-negative int or None, received -3"),
    ("xor", dict(seed="a"), ValueError, "xor(seed)"),
    ("blobs", dict(centers=0), ValueError, "blobs(centers): expected an int >= 1, received 0"),
    ("blobs", dict(centers=[1, 2]), ValueError, "blobs(centers): expected a finite array of shape"),
    ("blobs", dict(centers="many"), ValueError, "blobs(centers)"),
    ("blobs", dict(centers=3, n_classes=3), ValueError, "expected centers= or n_classes=, received both"),
    ("blobs", dict(n_samples=2, centers=3), ValueError, "blobs(n_samples): expected an int >= 3"),
    ("moons", dict(n_classes=3), TypeError, "load('moons'): unexpected option(s) ['n_classes']"),
    ("digits", dict(n_samples=10), TypeError, "load('digits'): unexpected option(s) ['n_samples']"),
    ("digits", dict(dtype=np.int32), TypeError, "dtype: expected a float dtype (float32 or float64), received int32"),
    ("digits", dict(dtype="banana"), TypeError, "dtype: expected a float dtype"),
])
def test_option_errors(name, options, exc, words):
    with pytest.raises(exc) as info:
        datasets.load(name, **options)
    assert words in str(info.value)


def test_unknown_name_and_paths(tmp_path):
    with pytest.raises(ValueError, match=r"name_or_path: expected one of \['digits'.*received 'digitz' "
                                         r"\(did you mean 'digits'\?\)"):
        datasets.load("digitz")
    with pytest.raises(ValueError, match="received 'cifar10'"):
        datasets.load("cifar10")
    with pytest.raises(FileNotFoundError, match="name_or_path: no such file .*missing.csv"):
        datasets.load(str(tmp_path / "missing.csv"))
    with pytest.raises(FileNotFoundError, match="missing.h5"):
        datasets.load(tmp_path / "missing.h5")
    (tmp_path / "data.txt").write_text("1,2\n")
    with pytest.raises(ValueError, match="name_or_path: expected a .csv, .csv.gz, .npz.*received 'data.txt'"):
        datasets.load(tmp_path / "data.txt")
    with pytest.raises(ValueError, match="expected a file, received the directory"):
        datasets.load(str(tmp_path))
    with pytest.raises(TypeError, match="name_or_path: expected a dataset name or a file path, received int"):
        datasets.load(3)


def test_lazy_import():
    assert gb.datasets is datasets and gb.data.check_array is not None


# --------------------------------------------------------------------------- CSV
def _write(path, text):
    path.write_text(text)
    return path


def test_csv_default_target_and_string_labels(tmp_path):
    p = _write(tmp_path / "iris.csv", "sepal length,sepal width,species\n5.1,3.5,setosa\n7.0,3.2,versicolor\n"
                                      "6.3,3.3,virginica\n4.9,3.0,setosa\n")
    ds = datasets.load(p)
    assert ds.X.shape == (4, 2) and ds.X.dtype == np.float32
    assert ds.feature_names == ["sepal length", "sepal width"]
    assert ds.classes == ["setosa", "versicolor", "virginica"] and list(ds.y) == [0, 1, 2, 0]
    assert ds.n_classes == 3 and ds.name == "iris.csv" and str(p) in ds.source


def test_csv_named_target_int_labels_gzip_and_delimiter(tmp_path):
    p = tmp_path / "d.csv.gz"
    with gzip.open(p, "wt") as f:
        f.write("label;a;b\n1;0.5;1e3\n0;-2;3\n3;4;5\n")
    ds = datasets.load(p, target="label", delimiter=";", dtype=np.float64)
    assert ds.feature_names == ["a", "b"] and list(ds.y) == [1, 0, 3] and ds.n_classes == 4
    np.testing.assert_array_equal(ds.X, [[0.5, 1000], [-2, 3], [4, 5]])
    assert ds.classes is None


def test_csv_negative_labels_are_mapped_and_regression_targets_kept(tmp_path):
    ds = datasets.load(_write(tmp_path / "pm.csv", "x,y\n1,-1\n2,1\n3,-1\n"))
    assert list(ds.y) == [0, 1, 0] and ds.classes == [-1, 1] and ds.n_classes == 2
    reg = datasets.load(_write(tmp_path / "reg.csv", "x,price\n1,1.5\n2,2.25\n"))
    assert reg.n_classes is None and reg.y.dtype.kind == "f" and list(reg.y) == [1.5, 2.25]


def test_csv_bom_and_blank_lines(tmp_path):
    p = tmp_path / "bom.csv"
    p.write_bytes("\ufeffa,t\n1,0\n\n2,1\n".encode("utf-8"))
    ds = datasets.load(p)
    assert ds.feature_names == ["a"] and ds.X.shape == (2, 1)


@pytest.mark.parametrize("text, options, exc, words", [
    ("a,color,t\n1,red,0\n2,blue,1\n", {}, ValueError,
     "X: expected numeric feature columns, received non-numeric column 'color' ('red' in data row 1)"),
    ("a,b,t\n1,,0\n2,3,1\n", {}, ValueError, "empty cell in column 'b', data row 1"),
    ("a,b,t\n1,nan,0\n2,3,1\n", {}, NonFiniteError, "X: expected finite values, received nan at index (0, 1)"),
    ("a,b,t\n1,inf,0\n2,3,1\n", {}, NonFiniteError, "inf at index (0, 1)"),
    ("a,b,t\n1,2,0\n", {"target": "label"}, ValueError,
     "target: expected one of the columns ['a', 'b', 't'], received 'label'"),
    ("a,b,t\n1,2,0\n", {"target": 2}, TypeError, "target: expected a column name (str), received int"),
    ("a,b,t\n1,2,0\n3,4\n", {}, ValueError, "expected 3 fields in every row, received 2 in data row 2"),
    ("", {}, ValueError, "expected a header row and data rows, received an empty file"),
    ("a,b,t\n", {}, ValueError, "expected data rows after the header, received none"),
    ("a;b;t\n1;2;0\n", {}, ValueError, "expected at least 2 columns"),
    ("a,a,t\n1,2,0\n", {}, ValueError, "expected unique column names, received duplicates ['a']"),
    ("a,t\n1,0\n2,\n", {}, ValueError, "expected a label in every row, received an empty cell in data row 2"),
    ("a,t\n1,0\n2,nan\n", {}, ValueError, "expected finite target values, received 'nan' in data row 2"),
    ("a,t\n1,0\n", {"delimiter": ";;"}, ValueError, "delimiter: expected a single character, received ';;'"),
    ("a,t\n1,0\n", {"labels_path": "x"}, TypeError, "unexpected option(s) ['labels_path']"),
])
def test_csv_errors(tmp_path, text, options, exc, words):
    p = _write(tmp_path / "bad.csv", text)
    with pytest.raises(exc) as info:
        datasets.load(p, **options)
    assert words in str(info.value)


def test_csv_not_utf8(tmp_path):
    p = tmp_path / "latin.csv"
    p.write_bytes(b"a,t\n\xe9\xff,0\n")
    with pytest.raises(ValueError, match="expected a UTF-8 CSV file"):
        datasets.load(p)


# --------------------------------------------------------------------------- NPZ
def test_npz_with_test_set_and_images(tmp_path, rng):
    p = tmp_path / "d.npz"
    np.savez(p, X=rng.random((10, 4, 4)), y=np.arange(10) % 3, X_test=rng.random((4, 16)), y_test=[0, 1, 2, 0],
             feature_names=np.array([f"p{i}" for i in range(16)]))
    ds = datasets.load(p)
    assert ds.X.shape == (10, 16) and ds.n_classes == 3 and ds.test[0].shape == (4, 16)
    assert ds.test[1].dtype == np.int64 and ds.feature_names[3] == "p3"


@pytest.mark.parametrize("arrays, exc, words", [
    (dict(X=np.ones((3, 2))), ValueError, "expected arrays named 'X' and 'y', received ['X']"),
    (dict(X=np.ones((3, 2)), y=np.array([1, "a", None], dtype=object)), ValueError,
     "expected numeric arrays, received object arrays"),
    (dict(X=np.ones((3, 2)), y=[0, 1]), ValueError, "y: expected 3 labels (one per row of X)"),
    (dict(X=np.array([[np.nan, 1.0]]), y=[0]), NonFiniteError, "X: expected finite values"),
    (dict(X=np.ones((3, 2)), y=[0, -1, 1]), ValueError, "y: expected non-negative class labels"),
    (dict(X=np.ones((2, 2)), y=[0, 1], X_test=np.ones((2, 3)), y_test=[0, 1]), ValueError,
     "X_test: expected 2 features (as X), received shape (2, 3)"),
    (dict(X=np.ones(3), y=[0, 1, 1]), ValueError, "X: expected a 2-D array"),
    (dict(X=np.array(["a", "b"]), y=[0, 1]), TypeError, "X: expected numeric"),
])
def test_npz_errors(tmp_path, arrays, exc, words):
    p = tmp_path / "bad.npz"
    np.savez(p, **arrays)
    with pytest.raises(exc) as info:
        datasets.load(p)
    assert words in str(info.value)


def test_npz_corrupt(tmp_path):
    p = tmp_path / "c.npz"
    p.write_bytes(b"PK\x03\x04 definitely not a zip")
    with pytest.raises(ValueError, match="expected a valid .npz file"):
        datasets.load(p)


# --------------------------------------------------------------------------- HDF5 (course layout)
def _course_h5(path, split_names=("train", "test"), m=(6, 3), y_shape="flat"):
    h5py = pytest.importorskip("h5py")
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        for split, n in zip(split_names, m):
            f[f"{split}_set_x"] = rng.integers(0, 256, size=(n, 4, 4, 3), dtype=np.uint8)
            y = (np.arange(n) % 2).astype(np.int64)
            f[f"{split}_set_y"] = y if y_shape == "flat" else y.reshape(1, -1)
        f["list_classes"] = np.array([b"non-cat", b"cat"])
    return path


def test_h5_course_layout(tmp_path):
    p = _course_h5(tmp_path / "small.h5")
    ds = datasets.load(p, dtype=np.float64)
    assert ds.X.shape == (6, 48) and ds.test[0].shape == (3, 48) and ds.X.dtype == np.float64
    assert 0 <= ds.X.min() and ds.X.max() <= 1 and ds.classes == ["non-cat", "cat"] and ds.n_classes == 2
    import h5py
    with h5py.File(p) as f:
        np.testing.assert_allclose(ds.X[2], f["train_set_x"][2].reshape(-1) / 255)


def test_h5_sibling_test_file_and_row_labels(tmp_path):
    _course_h5(tmp_path / "train_pets.h5", split_names=("train",), m=(5,), y_shape="row")
    _course_h5(tmp_path / "test_pets.h5", split_names=("test",), m=(2,))
    ds = datasets.load(tmp_path / "train_pets.h5")
    assert ds.y.shape == (5,) and ds.test[0].shape == (2, 48) and "test_pets.h5" in ds.source
    only_test = datasets.load(tmp_path / "test_pets.h5")
    assert only_test.X.shape == (2, 48) and only_test.test is None
    alone = _course_h5(tmp_path / "alone.hdf5", split_names=("train",), m=(4,))
    assert datasets.load(alone).test is None
    explicit = datasets.load(alone, test_path=str(tmp_path / "test_pets.h5"))
    assert explicit.test[0].shape == (2, 48)


def test_h5_errors(tmp_path, monkeypatch):
    h5py = pytest.importorskip("h5py")
    p = tmp_path / "wrong.h5"
    with h5py.File(p, "w") as f:
        f["images"] = np.zeros((2, 3))
    with pytest.raises(ValueError, match=r"expected datasets 'train_set_x' and 'train_set_y'.*received \['images'\]"):
        datasets.load(p)
    mism = tmp_path / "mism.h5"
    with h5py.File(mism, "w") as f:
        f["train_set_x"] = np.zeros((3, 2, 2, 3), np.uint8)
        f["train_set_y"] = np.zeros(2, np.int64)
    with pytest.raises(ValueError, match="expected as many labels as images in train_set_x/train_set_y, received 3 "
                                         "images and 2 labels"):
        datasets.load(mism)
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"not hdf5 at all")
    with pytest.raises(ValueError, match="expected an HDF5 file"):
        datasets.load(junk)
    good = _course_h5(tmp_path / "g.h5", split_names=("train",), m=(2,))
    with pytest.raises(FileNotFoundError, match="test_path: expected an existing HDF5 file"):
        datasets.load(good, test_path=str(tmp_path / "nope.h5"))
    with pytest.raises(ValueError, match="expected datasets 'test_set_x' and 'test_set_y'"):
        datasets.load(good, test_path=str(p))


def test_h5_without_h5py_says_how_to_install(tmp_path, monkeypatch):
    p = tmp_path / "x.h5"
    p.write_bytes(b"\x89HDF\r\n\x1a\n")
    real_import = builtins.__import__

    def no_h5py(name, *args, **kwargs):
        if name == "h5py":
            raise ImportError("No module named 'h5py'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_h5py)
    with pytest.raises(ImportError, match=r"needs h5py: pip install gradbox\[hdf5\]"):
        datasets.load(p)


def test_shared_catvnoncat(shared_data):
    pytest.importorskip("h5py")  # NOTE: the hdf5 extra
    ds = datasets.load(os.path.join(shared_data, "train_catvnoncat.h5"))
    assert ds.X.shape == (209, 12288) and ds.y.shape == (209,)
    assert ds.test[0].shape == (50, 12288) and ds.test[1].shape == (50,)
    assert ds.n_classes == 2 and ds.classes == ["non-cat", "cat"]
    assert 0 <= ds.X.min() and ds.X.max() <= 1
    assert int(ds.y.sum()) == 72 and int(ds.test[1].sum()) == 33


# --------------------------------------------------------------------------- IDX (MNIST)
def _mnist(tmp_path, gz, n=(12, 5)):
    rng = np.random.default_rng(1)
    suffix = ".gz" if gz else ""
    for prefix, m in zip(("train", "t10k"), n):
        _files.write_idx(tmp_path / f"{prefix}-images-idx3-ubyte{suffix}",
                         rng.integers(0, 256, size=(m, 28, 28), dtype=np.uint8))
        _files.write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte{suffix}", (np.arange(m) % 10).astype(np.uint8))
    return tmp_path / f"train-images-idx3-ubyte{suffix}"


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gzip"])
def test_idx_mnist_naming_convention(tmp_path, gz):
    path = _mnist(tmp_path, gz)
    ds = datasets.load(path)
    assert ds.X.shape == (12, 784) and ds.n_classes == 10 and list(ds.y[:3]) == [0, 1, 2]
    assert ds.test[0].shape == (5, 784) and 0 <= ds.X.min() and ds.X.max() <= 1
    raw = _files.read_idx_array(path)
    np.testing.assert_allclose(ds.X[3], raw[3].reshape(-1) / 255, rtol=1e-6)
    unscaled = datasets.load(path, scale=False)
    assert unscaled.X.max() > 1


def test_idx_explicit_labels_and_dtypes(tmp_path):
    imgs = tmp_path / "faces.idx3"
    _files.write_idx(imgs, np.arange(24, dtype=np.float32).reshape(3, 2, 4))
    labels = tmp_path / "whatever.idx1"
    _files.write_idx(labels, np.array([2, 0, 1], np.int32))
    ds = datasets.load(imgs, labels_path=str(labels), dtype=np.float64)
    assert ds.X.shape == (3, 8) and ds.X[2, 7] == 23 and list(ds.y) == [2, 0, 1] and ds.test is None
    for dtype in (np.int8, np.int16, np.int32, np.float64, np.uint8):
        _files.write_idx(tmp_path / "a.idx3", np.ones((2, 3), dtype))
        back = _files.read_idx_array(tmp_path / "a.idx3")
        assert back.dtype == np.dtype(dtype) and back.shape == (2, 3)


def test_idx_errors(tmp_path):
    path = _mnist(tmp_path, gz=False, n=(4, 2))
    with pytest.raises(ValueError, match=r"labels_path: expected the labels file for lonely-images-idx3-ubyte"):
        _files.write_idx(tmp_path / "lonely-images-idx3-ubyte", np.zeros((2, 2, 2), np.uint8))
        datasets.load(tmp_path / "lonely-images-idx3-ubyte")
    with pytest.raises(FileNotFoundError, match="labels_path: expected an existing IDX labels file"):
        datasets.load(path, labels_path=str(tmp_path / "nope"))
    with pytest.raises(ValueError, match="expected an IDX images file .* received a 1-D labels file"):
        datasets.load(tmp_path / "train-labels-idx1-ubyte", labels_path=str(tmp_path / "train-labels-idx1-ubyte"))
    short = tmp_path / "short-labels.idx1"
    _files.write_idx(short, np.zeros(3, np.uint8))
    with pytest.raises(ValueError, match="labels_path: expected 4 labels .one per image., received 3"):
        datasets.load(path, labels_path=str(short))
    trunc = tmp_path / "trunc-images-idx3-ubyte"
    trunc.write_bytes((tmp_path / "train-images-idx3-ubyte").read_bytes()[:-5])
    with pytest.raises(ValueError, match=r"expected 3136 data bytes for shape \(4, 28, 28\), received 3131"):
        datasets.load(trunc, labels_path=str(tmp_path / "train-labels-idx1-ubyte"))
    bad = tmp_path / "bad-images-idx3-ubyte"
    bad.write_bytes(b"\x00\x00\x07\x03" + b"\x00" * 20)
    with pytest.raises(ValueError, match="expected an IDX file .magic 00 00 <type> <ndim>."):
        datasets.load(bad, labels_path=str(tmp_path / "train-labels-idx1-ubyte"))
    huge = tmp_path / "huge-images-idx3-ubyte"
    huge.write_bytes(b"\x00\x00\x08\x03" + b"\xff\xff\xff\xff" * 3 + b"\x00" * 10)
    with pytest.raises(ValueError, match="truncated or corrupt"):
        datasets.load(huge, labels_path=str(tmp_path / "train-labels-idx1-ubyte"))
    badgz = tmp_path / "z-images-idx3-ubyte.gz"
    badgz.write_bytes(b"\x1f\x8b\x08\x00garbage")
    with pytest.raises(ValueError, match="expected a valid gzip file"):
        datasets.load(badgz, labels_path=str(tmp_path / "train-labels-idx1-ubyte"))
    with pytest.raises(TypeError, match=r"unexpected option\(s\) \['target'\]"):
        datasets.load(path, target="y")
    with pytest.raises(TypeError, match="arr: expected uint8"):
        _files.write_idx(tmp_path / "c.idx1", np.zeros(2, np.complex64))


@pytest.mark.parametrize("body", [b"PK\x03\x04" + b"\x00" * 40, b"PK\x05\x06" + b"\x00" * 18 + b"junk", b"PK"])
def test_damaged_npz_is_refused_without_leaking_the_file_handle(tmp_path, body):
    import gc
    import warnings

    path = tmp_path / "bad.npz"
    path.write_bytes(body)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResourceWarning)
        with pytest.raises(ValueError, match="bad.npz"):
            _files.read_npz(str(path))
        gc.collect()  # NOTE: an unclosed handle would warn here, at collection
