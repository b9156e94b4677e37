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
gradient checks) and ``flatten`` (default True: flat rows; False keeps image data as NCHW images;
``Dataset.image_shape`` says the image shape either way). Synthetic data is the same for the same
``seed``.

Files are read defensively: every size a file declares (an HDF5 shape, an IDX header, an .npy
header inside an .npz, the inflated length of a .gz, a CSV's rows) is checked against the file's
real size and against ``GRADBOX_MAX_DATA_BYTES`` (environment variable, default 2 GiB, e.g. ``8G``)
before memory is allocated; a FIFO, device or socket is refused before it is opened.

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
from . import _files, _limits, _synthetic

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
    image_shape : tuple or None
        ``(channels, height, width)`` of one sample for image data (digits, the course's HDF5
        files, IDX/MNIST, an NPZ with a 3-D or 4-D ``X``), None for tabular data. ``X`` is
        (n_samples, *image_shape) when loaded with ``flatten=False``, else flat rows; the flat
        rows keep the file's own pixel order (the course's HDF5 images flatten as height, width,
        channels, as in the course, so ``flatten=False`` is the way to NCHW images).
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
    image_shape: tuple | None = None

    @property
    def n_samples(self) -> int:
        return int(self.X.shape[0])

    @property
    def n_features(self) -> int:
        """Values per sample (the width of the flat rows; C·H·W for images)."""
        return int(np.prod(self.X.shape[1:]))

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
    return {**_shipped("digits", dtype), "layout": "flat", "image_shape": (1, 8, 8)}


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


def _images(X, fields, name):
    """X as (n, C, H, W) images, or None for tabular data; ``fields["layout"]`` says how the reader left it."""
    layout = fields.get("layout")
    if layout == "flat":
        shape = tuple(fields["image_shape"])
        if X.ndim != 2 or X.shape[1] != int(np.prod(shape)):
            raise ValueError(f"{name}: expected rows of {int(np.prod(shape))} pixels, received shape {X.shape}")
        return X.reshape(len(X), *shape)
    if layout == "NHWC" and X.ndim == 4:
        return X.transpose(0, 3, 1, 2)
    if layout == "NHW" and X.ndim == 3:
        return X[:, None]
    return X if X.ndim >= 3 else None


def _shaped(X, fields, name, flatten, dtype):
    """(X as requested, image_shape or None): flat rows, or images (n, C, H, W) when ``flatten`` is False."""
    if X.ndim < 2:
        raise ValueError(f"{name}: expected a 2-D array of shape (n_samples, n_features), received shape {X.shape}")
    images = _images(X, fields, name)
    image_shape = None if images is None else tuple(int(d) for d in images.shape[1:])
    if flatten or images is None:
        X = X.reshape(len(X), -1) if X.ndim > 2 else X
        return check_array(X, name, ndim=2, dtype=dtype), image_shape
    return np.ascontiguousarray(check_array(images, name, ndim=None, dtype=dtype)), image_shape


def _finish(fields, name, dtype, source, flatten=True):
    """Validate the loader's output and build the Dataset."""
    X = check_array(fields["X"], "X", ndim=None)
    X, image_shape = _shaped(X, fields, "X", flatten, dtype)
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
        Xt, _ = _shaped(Xt, fields, "X_test", flatten, dtype)
        yt = check_array(test[1], "y_test", ndim=(1, 2)).reshape(-1)
        if len(yt) != len(Xt):
            raise ValueError(f"y_test: expected {len(Xt)} labels (one per row of X_test), received {len(yt)}")
        if Xt.shape[1:] != X.shape[1:]:
            what = f"{X.shape[1]} features" if X.ndim == 2 else f"samples of shape {X.shape[1:]}"
            raise ValueError(f"X_test: expected {what} (as X), received shape {Xt.shape}")
        if n_classes is not None:
            yt = yt.astype(np.int64)
        test = (Xt, yt)
    names = fields.get("feature_names")
    if names is not None and len(names) != int(np.prod(X.shape[1:])):
        names = None
    return Dataset(X=X, y=y, name=name, n_classes=n_classes, feature_names=names, test=test,
                   source=fields.get("source", source), classes=fields.get("classes"), image_shape=image_shape)


def load(name_or_path, flatten=True, **options) -> Dataset:
    """Load a dataset by name (see :func:`list_datasets`) or from a file path.

    Parameters
    ----------
    name_or_path : str or os.PathLike
        A name such as ``"digits"`` or ``"spirals"``, or a ``.csv``/``.npz``/``.h5``/IDX path.
    flatten : bool, default True
        For image data: True gives flat rows (n_samples, n_features), as gradbox 0.1 did; False
        keeps each sample's image shape, batch-first and channels first (NCHW): the digits as
        (1797, 1, 8, 8), the course's HDF5 cats as (m, 3, 64, 64), IDX/MNIST as (n, 1, 28, 28),
        an NPZ's 3-D or 4-D ``X`` as stored. Either way ``Dataset.image_shape`` gives the image
        shape (None for tabular data, which ``flatten`` leaves as it is).
    **options
        The loader's options (see the module docstring), e.g. ``n_samples=500, seed=1`` or
        ``target="label"``; ``dtype=`` for every loader. Unknown options raise ``TypeError``.

    Raises
    ------
    ValueError
        Unknown name, bad option value, bad file content (the message names the column, row or
        array), a file that declares more data than ``GRADBOX_MAX_DATA_BYTES`` (default 2 GiB; see
        ``gradbox.datasets._limits``), or a path that is not a regular file (a FIFO, a device).
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
    >>> images = load("digits", flatten=False)
    >>> images.X.shape, images.image_shape
    ((1797, 1, 8, 8), (1, 8, 8))
    """
    if isinstance(name_or_path, os.PathLike):
        name_or_path = os.fspath(name_or_path)
    if not isinstance(name_or_path, str):
        raise TypeError(f"name_or_path: expected a dataset name or a file path, received "
                        f"{type(name_or_path).__name__}")
    if not isinstance(flatten, (bool, np.bool_)):
        raise TypeError(f"flatten: expected True or False, received {flatten!r}")
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
        return _finish(fields, key, dtype, key, flatten)
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
    _limits.check_regular_file(path, "name_or_path")  # NOTE: before anything opens it: a FIFO would block
    if kind is None:
        raise ValueError(f"name_or_path: expected a .csv, .csv.gz, .npz, .h5, .hdf5 or IDX (*.idx3, *-ubyte[.gz]) "
                         f"file, received {os.path.basename(path)!r}")
    fields = _call(_file_loader(reader), f"load({os.path.basename(path)!r})", {"path": path, **options})
    name = os.path.basename(path)
    return _finish(fields, name, dtype, path, flatten)
