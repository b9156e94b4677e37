"""Datasets: two shipped real ones, four synthetic ones, and loaders for common files.

``load(name_or_path, **options) -> Dataset``:

========================  =======================================================================
name / file               what
========================  =======================================================================
``"digits"``              UCI handwritten digits, 1,797 x 64 pixels valued 0..16, labels 0..9 (shipped)
``"breast_cancer"``       Wisconsin diagnostic breast cancer, 569 x 30, 0 = malignant, 1 = benign (shipped)
``"spirals"``             options ``n_samples=300, noise=0.2, n_classes=3, seed=0``
``"moons"``               options ``n_samples=200, noise=0.1, seed=0``
``"xor"``                 options ``n_samples=200, noise=0.1, seed=0``
``"blobs"``               options ``n_samples=300, centers=3`` (or ``n_classes=``), ``noise=1.0``
                          (cluster std), ``n_features=2, seed=0``
``*.csv`` / ``*.csv.gz``  header row; ``target=`` column name (default: the last column),
                          ``delimiter=","``. String labels become 0..k-1 (mapping in ``classes``).
``*.npz``                 arrays ``X`` and ``y`` (optional ``X_test``, ``y_test``, ``feature_names``,
                          ``classes``); read with ``allow_pickle=False``
``*.h5`` / ``*.hdf5``     the course layout ``train_set_x``/``train_set_y`` (+ ``test_set_x``/
                          ``test_set_y``, or the sibling ``test_*.h5``, or ``test_path=``); images
                          flattened to (m, 12288) and divided by 255. Needs ``pip install gradbox[hdf5]``.
IDX (``*.idx3``,          MNIST's format, gzipped or not. Pass the *images* file; the labels file is
``*-ubyte[.gz]``)         ``labels_path=`` or found by MNIST's naming (``train-images-idx3-ubyte`` ->
                          ``train-labels-idx1-ubyte``); the test pair is ``test_path=`` or the
                          ``t10k-`` sibling. 8-bit images are divided by 255 (``scale=False`` keeps 0..255).
========================  =======================================================================

Every loader accepts ``dtype`` (default float32, the dtype of gradbox's layers; use float64 for
gradient checks). Synthetic data is the same for the same ``seed``.

Examples
--------
>>> from gradbox import datasets
>>> ds = datasets.load("digits")
>>> ds.X.shape, ds.y.shape, ds.n_classes
((1797, 64), (1797,), 10)
>>> datasets.load("spirals", n_samples=90, seed=1).X.shape
(90, 2)
"""
from __future__ import annotations

import difflib
import inspect
import os
from dataclasses import dataclass, field
from importlib import resources

import numpy as np

from ..data import check_array
from . import _files, _synthetic

__all__ = ["Dataset", "load", "list_datasets"]

_HERE = "gradbox.datasets"


@dataclass
class Dataset:
    """A classification (or regression) dataset in row layout: one sample per row.

    Attributes
    ----------
    X : ndarray of shape (n_samples, n_features), float
    y : ndarray of shape (n_samples,)
        Integer class labels 0..n_classes-1 (float values for a regression target).
    name : str
    n_classes : int or None
        None for a regression target.
    feature_names : list of str or None
    test : (X_test, y_test) or None
        A predefined test set (the course's HDF5 files, MNIST's t10k files, NPZ ``X_test``).
    source : str
        Where the data came from.
    classes : list or None
        The original label of each class index, e.g. ``["malignant", "benign"]``.
    """

    X: np.ndarray
    y: np.ndarray
    name: str
    n_classes: int | None
    feature_names: list | None = None
    test: tuple | None = None
    source: str = ""
    classes: list | None = None
    options: dict = field(default_factory=dict, repr=False)

    @property
    def n_samples(self) -> int:
        return int(self.X.shape[0])

    @property
    def n_features(self) -> int:
        return int(self.X.shape[1])

    def __repr__(self):
        test = f", test={len(self.test[1])} samples" if self.test is not None else ""
        return (f"Dataset(name={self.name!r}, X={self.X.shape} {self.X.dtype}, n_classes={self.n_classes}"
                f"{test}, source={self.source!r})")


def _shipped(name, dtype):
    with resources.files(_HERE).joinpath(f"{name}.npz").open("rb") as f:
        with np.load(f, allow_pickle=False) as z:
            return {"X": z["X"].astype(dtype), "y": z["y"].astype(np.int64),
                    "feature_names": [str(s) for s in z["feature_names"]], "classes": [str(s) for s in z["classes"]],
                    "source": str(z["source"]) + f" (shipped with gradbox: {name}.npz)"}


def _digits(dtype=np.float32):
    """UCI handwritten digits (8x8 images, pixel values 0..16)."""
    return _shipped("digits", dtype)


def _breast_cancer(dtype=np.float32):
    """Wisconsin diagnostic breast cancer (binary: 0 = malignant, 1 = benign)."""
    return _shipped("breast_cancer", dtype)


def _synthetic_loader(fn, name):
    def loader(dtype=np.float32, **kw):
        X, y = fn(**kw)
        bound = inspect.signature(fn).bind(**kw)
        bound.apply_defaults()
        params = ", ".join(f"{k}={v!r}" for k, v in bound.arguments.items() if v is not None)
        return {"X": X.astype(dtype), "y": y.astype(np.int64), "feature_names": ["x0", "x1"] if X.shape[1] == 2
                else [f"x{i}" for i in range(X.shape[1])], "source": f"synthetic {name}({params})"}

    sig = inspect.signature(fn)
    loader.__signature__ = sig.replace(parameters=[*sig.parameters.values(),
                                                   inspect.Parameter("dtype", inspect.Parameter.KEYWORD_ONLY,
                                                                     default=np.float32)])
    loader.__doc__ = fn.__doc__
    return loader


def _blobs(n_classes=None, **kw):
    if n_classes is not None:
        if "centers" in kw:
            raise ValueError("load('blobs'): expected centers= or n_classes=, received both")
        kw["centers"] = n_classes
    return _synthetic.blobs(**kw)


_blobs.__signature__ = inspect.signature(_synthetic.blobs).replace(
    parameters=[*inspect.signature(_synthetic.blobs).parameters.values(),
                inspect.Parameter("n_classes", inspect.Parameter.KEYWORD_ONLY, default=None)])
_blobs.__doc__ = _synthetic.blobs.__doc__

_REGISTRY = {
    "digits": _digits,
    "breast_cancer": _breast_cancer,
    "spirals": _synthetic_loader(_synthetic.spirals, "spirals"),
    "moons": _synthetic_loader(_synthetic.moons, "moons"),
    "xor": _synthetic_loader(_synthetic.xor, "xor"),
    "blobs": _synthetic_loader(_blobs, "blobs"),
}
_EXTENSIONS = (".csv", ".csv.gz", ".npz", ".h5", ".hdf5", ".idx1", ".idx3", "-ubyte", "-ubyte.gz", ".idx3.gz")


def list_datasets() -> list:
    """The names :func:`load` accepts (files are given by path).

    >>> list_datasets()
    ['digits', 'breast_cancer', 'spirals', 'moons', 'xor', 'blobs']
    """
    return list(_REGISTRY)


def _accepted(fn):
    return [p.name for p in inspect.signature(fn).parameters.values() if p.kind != p.VAR_KEYWORD]


def _call(fn, who, options):
    accepted = _accepted(fn)
    unknown = [k for k in options if k not in accepted]
    if unknown:
        raise TypeError(f"{who}: unexpected option(s) {unknown}; expected some of {accepted}")
    return fn(**options)


def _reader_for(path):
    base = os.path.basename(path).lower()
    if base.endswith((".csv", ".csv.gz")):
        return "csv", _files.read_csv
    if base.endswith(".npz"):
        return "npz", _files.read_npz
    if base.endswith((".h5", ".hdf5")):
        return "hdf5", _files.read_h5
    if _files.is_idx_name(base):
        return "idx", _files.read_idx
    return None, None


def _file_loader(reader):
    def loader(path, dtype=np.float32, **kw):
        return reader(path, **kw)

    sig = inspect.signature(reader)
    loader.__signature__ = sig.replace(parameters=[*sig.parameters.values(),
                                                   inspect.Parameter("dtype", inspect.Parameter.KEYWORD_ONLY,
                                                                     default=np.float32)])
    return loader


def _finish(fields, name, dtype, source):
    """Validate the loader's output and build the Dataset."""
    X = check_array(fields["X"], "X", ndim=None)
    if X.ndim > 2:
        X = X.reshape(len(X), -1)
    if X.ndim != 2:
        raise ValueError(f"X: expected a 2-D array of shape (n_samples, n_features), received shape {X.shape}")
    X = check_array(X, "X", ndim=2, dtype=dtype)
    y = check_array(fields["y"], "y", ndim=(1, 2))
    if y.ndim == 2 and 1 in y.shape:
        y = y.reshape(-1)
    if y.ndim != 1 or len(y) != len(X):
        raise ValueError(f"y: expected {len(X)} labels (one per row of X), received shape {y.shape}")
    n_classes = fields.get("n_classes", "infer")
    if n_classes == "infer":
        if y.dtype.kind in "iub" or np.all(y == np.round(y)):
            if y.min() < 0:
                raise ValueError(f"y: expected non-negative class labels, received {y.min()}")
            y = y.astype(np.int64)
            n_classes = int(y.max()) + 1
            if fields.get("classes") is not None:
                n_classes = max(n_classes, len(fields["classes"]))
        else:
            n_classes = None
    test = fields.get("test")
    if test is not None:
        Xt = check_array(test[0], "X_test", ndim=None)
        Xt = check_array(Xt.reshape(len(Xt), -1) if Xt.ndim > 2 else Xt, "X_test", ndim=2, dtype=dtype)
        yt = check_array(test[1], "y_test", ndim=(1, 2)).reshape(-1)
        if len(yt) != len(Xt):
            raise ValueError(f"y_test: expected {len(Xt)} labels (one per row of X_test), received {len(yt)}")
        if Xt.shape[1] != X.shape[1]:
            raise ValueError(f"X_test: expected {X.shape[1]} features (as X), received shape {Xt.shape}")
        if n_classes is not None:
            yt = yt.astype(np.int64)
        test = (Xt, yt)
    names = fields.get("feature_names")
    if names is not None and len(names) != X.shape[1]:
        names = None
    return Dataset(X=X, y=y, name=name, n_classes=n_classes, feature_names=names, test=test,
                   source=fields.get("source", source), classes=fields.get("classes"))


def load(name_or_path, **options) -> Dataset:
    """Load a dataset by name (see :func:`list_datasets`) or from a file path.

    Parameters
    ----------
    name_or_path : str or os.PathLike
        A name such as ``"digits"`` or ``"spirals"``, or a ``.csv``/``.npz``/``.h5``/IDX path.
    **options
        The loader's options (see the module docstring), e.g. ``n_samples=500, seed=1`` or
        ``target="label"``; ``dtype=`` for every loader. Unknown options raise ``TypeError``.

    Raises
    ------
    ValueError
        Unknown name, bad option value, or bad file content (the message names the column,
        row or array).
    FileNotFoundError
        A path that does not exist.
    TypeError
        An unknown option.
    ImportError
        An HDF5 file without h5py installed.

    Examples
    --------
    >>> ds = load("moons", n_samples=50, noise=0.05, seed=3)
    >>> ds.n_classes, ds.X.dtype
    (2, dtype('float32'))
    """
    if isinstance(name_or_path, os.PathLike):
        name_or_path = os.fspath(name_or_path)
    if not isinstance(name_or_path, str):
        raise TypeError(f"name_or_path: expected a dataset name or a file path, received "
                        f"{type(name_or_path).__name__}")
    dtype = options.get("dtype", np.float32)
    try:
        dtype = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"dtype: expected a float dtype, received {dtype!r}") from None
    if dtype.kind != "f":
        raise TypeError(f"dtype: expected a float dtype (float32 or float64), received {dtype}")
    key = name_or_path.strip().lower().replace("-", "_")
    if key in _REGISTRY:
        fields = _call(_REGISTRY[key], f"load({key!r})", options)
        return _finish(fields, key, dtype, key)
    path = name_or_path
    kind, reader = _reader_for(path)
    if not os.path.exists(path):
        looks_like_name = kind is None and os.sep not in path and "/" not in path and "." not in path
        if looks_like_name:
            close = difflib.get_close_matches(key, list(_REGISTRY), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"name_or_path: expected one of {list(_REGISTRY)} or a path to a .csv, .npz, .h5 or "
                             f"IDX file, received {name_or_path!r}{hint}")
        raise FileNotFoundError(f"name_or_path: no such file {path!r}")
    if os.path.isdir(path):
        raise ValueError(f"name_or_path: expected a file, received the directory {path!r}")
    if kind is None:
        raise ValueError(f"name_or_path: expected a .csv, .csv.gz, .npz, .h5, .hdf5 or IDX (*.idx3, *-ubyte[.gz]) "
                         f"file, received {os.path.basename(path)!r}")
    fields = _call(_file_loader(reader), f"load({os.path.basename(path)!r})", {"path": path, **options})
    name = os.path.basename(path)
    return _finish(fields, name, dtype, path)
