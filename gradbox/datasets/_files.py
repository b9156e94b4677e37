"""Readers for dataset files: CSV, NPZ, the course's HDF5 layout and IDX (MNIST).

Each reader returns a dict of Dataset fields; ``gradbox.datasets.load`` validates them.
"""
from __future__ import annotations

import contextlib
import csv
import gzip
import io
import math
import os
import re
import zipfile

import numpy as np


def _open_text(path):
    if _is_gzip(path):
        return gzip.open(path, "rt", encoding="utf-8-sig", newline="")
    return open(path, encoding="utf-8-sig", newline="")


def _is_gzip(path) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == b"\x1f\x8b"


def _label_encode(values, name):
    """Map labels to ints 0..k-1; return (y, classes or None, n_classes or None)."""
    values = list(values)
    try:
        nums = np.array([float(v) for v in values])
    except ValueError:
        nums = None
    if nums is not None and np.all(np.isfinite(nums)) and np.all(nums == np.round(nums)):
        ints = nums.astype(np.int64)
        if ints.size and ints.min() >= 0 and ints.max() < 2 ** 20:
            return ints, None, int(ints.max()) + 1 if ints.size else 0
        classes, y = np.unique(ints, return_inverse=True)
        return y.astype(np.int64), [int(c) for c in classes], len(classes)
    if nums is not None:
        if not np.all(np.isfinite(nums)):
            i = int(np.flatnonzero(~np.isfinite(nums))[0])
            raise ValueError(f"{name}: expected finite target values, received {values[i]!r} in data row {i + 1}")
        return nums, None, None  # a regression target
    if any(v == "" for v in values):
        i = values.index("")
        raise ValueError(f"{name}: expected a label in every row, received an empty cell in data row {i + 1}")
    classes, y = np.unique(np.array(values, dtype=str), return_inverse=True)
    return y.astype(np.int64), [str(c) for c in classes], len(classes)


def read_csv(path, target=None, delimiter=","):
    """A CSV with a header row; the ``target`` column (default: the last) holds the labels."""
    if not isinstance(delimiter, str) or len(delimiter) != 1:
        raise ValueError(f"delimiter: expected a single character, received {delimiter!r}")
    try:
        with _open_text(path) as f:
            rows = list(csv.reader(f, delimiter=delimiter))
    except (UnicodeDecodeError, csv.Error, EOFError, gzip.BadGzipFile, OSError) as exc:
        if isinstance(exc, (FileNotFoundError, PermissionError)):
            raise
        raise ValueError(f"{path}: expected a UTF-8 CSV file, received unreadable data ({exc})") from None
    rows = [r for r in rows if any(cell.strip() for cell in r)]
    if not rows:
        raise ValueError(f"{path}: expected a header row and data rows, received an empty file")
    header = [h.strip() for h in rows[0]]
    data = rows[1:]
    if len(header) < 2:
        raise ValueError(f"{path}: expected at least 2 columns (features and target), received header {header} "
                         f"(wrong delimiter? pass delimiter=';')")
    if len(set(header)) != len(header):
        dup = sorted({h for h in header if header.count(h) > 1})
        raise ValueError(f"{path}: expected unique column names, received duplicates {dup}")
    if not data:
        raise ValueError(f"{path}: expected data rows after the header, received none")
    for i, r in enumerate(data):
        if len(r) != len(header):
            raise ValueError(f"{path}: expected {len(header)} fields in every row, received {len(r)} in data row "
                             f"{i + 1}")
    if target is None:
        t = len(header) - 1
    elif isinstance(target, str):
        if target not in header:
            raise ValueError(f"target: expected one of the columns {header}, received {target!r}")
        t = header.index(target)
    else:
        raise TypeError(f"target: expected a column name (str), received {type(target).__name__}")
    columns = list(zip(*data))
    features, names = [], []
    for j, (col_name, col) in enumerate(zip(header, columns)):
        if j == t:
            continue
        try:
            values = np.array([float(v) if v.strip() else math.nan for v in col], dtype=np.float64)
        except ValueError:
            bad = next(i for i, v in enumerate(col) if not _is_float(v))
            raise ValueError(f"X: expected numeric feature columns, received non-numeric column {col_name!r} "
                             f"({col[bad]!r} in data row {bad + 1}); encode it or drop it") from None
        empty = [i for i, v in enumerate(col) if not v.strip()]
        if empty:
            raise ValueError(f"X: expected a value in every cell, received an empty cell in column {col_name!r}, "
                             f"data row {empty[0] + 1} (missing values are not supported)")
        features.append(values)
        names.append(col_name)
    y, classes, n_classes = _label_encode([v.strip() for v in columns[t]], f"target column {header[t]!r}")
    return {"X": np.column_stack(features), "y": y, "feature_names": names, "classes": classes,
            "n_classes": n_classes}


def _is_float(v) -> bool:
    try:
        float(v)
    except ValueError:
        return False
    return True


@contextlib.contextmanager
def open_npz(path):
    """``np.load(path)`` without pickles, closed afterwards: an NpzFile, or an ndarray for an .npy file.

    NOTE: the file is opened here, not by np.load: np.load leaks its handle when a
    damaged zip makes NpzFile's constructor raise (a ResourceWarning later).
    """
    with open(path, "rb") as fh:
        z = np.load(fh, allow_pickle=False)
        try:
            yield z
        finally:
            if isinstance(z, np.lib.npyio.NpzFile):
                z.close()


def read_npz(path):
    """An ``.npz`` with arrays ``X`` and ``y`` (optionally ``X_test``, ``y_test``, ``feature_names``, ``classes``)."""
    try:
        with open_npz(path) as z:
            if not isinstance(z, np.lib.npyio.NpzFile):
                # NOTE: np.load reads an .npy file (one bare array) whatever its name.
                raise ValueError(f"{path}: expected an .npz archive of arrays X and y, received a single .npy "
                                 f"array of shape {getattr(z, 'shape', ())}")
            files = list(z.files)
            if "X" not in files or "y" not in files:
                raise ValueError(f"{path}: expected arrays named 'X' and 'y', received {files}")
            out = {"X": z["X"], "y": z["y"]}
            if "X_test" in files and "y_test" in files:
                out["test"] = (z["X_test"], z["y_test"])
            for key in ("feature_names", "classes"):
                if key in files:
                    out[key] = [str(v) for v in z[key].reshape(-1)]
    except ValueError as exc:
        if "Object arrays" in str(exc):
            raise ValueError(f"{path}: expected numeric arrays, received object arrays (pickled data is never "
                             "loaded)") from None
        if "pickled data" in str(exc):
            # NOTE: np.load takes any file that is neither a zip nor an .npy for a pickle.
            raise ValueError(f"{path}: expected an .npz archive, received neither a zip file nor an .npy file "
                             "(pickled data is never loaded)") from None
        if str(exc).startswith(str(path)):
            raise
        raise ValueError(f"{path}: expected a valid .npz file, received unreadable data ({exc})") from None
    except (zipfile.BadZipFile, EOFError, OSError) as exc:
        if isinstance(exc, (FileNotFoundError, PermissionError)):
            raise
        raise ValueError(f"{path}: expected a valid .npz file, received a corrupt one ({exc})") from None
    return out


def _course_images(x, key, path):
    x = np.asarray(x)
    if x.ndim < 2:
        raise ValueError(f"{path}: expected {key!r} of shape (m, ...) images, received shape {x.shape}")
    x = x.reshape(x.shape[0], -1)
    # NOTE: the course divides 8-bit pixels by 255 so inputs lie in [0, 1].
    return x.astype(np.float64) / 255.0 if x.dtype == np.uint8 else x.astype(np.float64)


def _course_labels(y, key, path):
    y = np.asarray(y)
    if y.ndim == 2 and 1 in y.shape:
        y = y.reshape(-1)
    if y.ndim != 1:
        raise ValueError(f"{path}: expected {key!r} of shape (m,) or (1, m), received shape {y.shape}")
    return y


def _read_h5_file(path):
    try:
        import h5py
    except ImportError:
        raise ImportError(f"loading {os.path.basename(str(path))} needs h5py: pip install gradbox[hdf5]") from None
    try:
        with h5py.File(path, "r") as f:
            keys = list(f.keys())
            out = {"keys": keys}
            for split in ("train", "test"):
                kx, ky = f"{split}_set_x", f"{split}_set_y"
                if kx in f and ky in f:
                    out[split] = (_course_images(f[kx][()], kx, path), _course_labels(f[ky][()], ky, path))
                    if len(out[split][0]) != len(out[split][1]):
                        raise ValueError(f"{path}: expected as many labels as images in {kx}/{ky}, received "
                                         f"{len(out[split][0])} images and {len(out[split][1])} labels")
            if "list_classes" in f:
                out["classes"] = [c.decode() if isinstance(c, bytes) else str(c)
                                  for c in np.asarray(f["list_classes"][()]).reshape(-1)]
    except OSError as exc:
        if isinstance(exc, (FileNotFoundError, PermissionError)):
            raise
        raise ValueError(f"{path}: expected an HDF5 file, received an unreadable one ({exc})") from None
    return out


def read_h5(path, test_path=None):
    """The course layout: ``train_set_x``/``train_set_y`` and ``test_set_x``/``test_set_y``.

    Images (m, 64, 64, 3) become rows of 12288 features divided by 255. When the file has no
    test set, ``test_path`` or the sibling file named with ``train`` replaced by ``test``
    (``train_catvnoncat.h5`` -> ``test_catvnoncat.h5``) supplies it if present.
    """
    main = _read_h5_file(path)
    if "train" not in main and "test" not in main:
        raise ValueError(f"{path}: expected datasets 'train_set_x' and 'train_set_y' (or 'test_set_x' and "
                         f"'test_set_y'), received {main['keys']}")
    X, y = main["train"] if "train" in main else main["test"]
    test = main.get("test") if "train" in main else None
    source = str(path)
    if test is None and "train" in main:
        if test_path is None:
            base = os.path.basename(str(path))
            if "train" in base:
                candidate = os.path.join(os.path.dirname(str(path)), base.replace("train", "test"))
                if os.path.exists(candidate):
                    test_path = candidate
        elif not os.path.exists(test_path):
            raise FileNotFoundError(f"test_path: expected an existing HDF5 file, received {str(test_path)!r}")
        if test_path is not None:
            other = _read_h5_file(test_path)
            if "test" not in other:
                raise ValueError(f"{test_path}: expected datasets 'test_set_x' and 'test_set_y', received "
                                 f"{other['keys']}")
            test = other["test"]
            source += f" + {test_path}"
    if test is not None and test[0].shape[1] != X.shape[1]:
        raise ValueError(f"test_set_x: expected {X.shape[1]} features (as train_set_x), received {test[0].shape[1]}")
    return {"X": X, "y": y, "test": test, "classes": main.get("classes"), "source": source}


# --------------------------------------------------------------------------- IDX (MNIST)
_IDX_TYPES = {0x08: np.dtype(">u1"), 0x09: np.dtype(">i1"), 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
              0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
_IDX_NAME = re.compile(r"(\.idx\d(\.gz)?$)|(-ubyte(\.gz)?$)|(\.idx\d-ubyte(\.gz)?$)", re.IGNORECASE)


def is_idx_name(path) -> bool:
    return bool(_IDX_NAME.search(os.path.basename(str(path))))


def read_idx_array(path) -> np.ndarray:
    """One IDX file (gzipped or not) as an array in native byte order."""
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, gzip.BadGzipFile) as exc:
            raise ValueError(f"{path}: expected a valid gzip file, received a corrupt one ({exc})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES or raw[3] == 0:
        raise ValueError(f"{path}: expected an IDX file (magic 00 00 <type> <ndim>), received {raw[:4]!r}")
    dtype, ndim = _IDX_TYPES[raw[2]], raw[3]
    if len(raw) < 4 + 4 * ndim:
        raise ValueError(f"{path}: expected {ndim} dimension sizes after the magic, received a truncated file")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    need = math.prod(shape) * dtype.itemsize
    have = len(raw) - 4 - 4 * ndim
    if need != have:
        raise ValueError(f"{path}: expected {need} data bytes for shape {shape}, received {have} "
                         "(truncated or corrupt file)")
    arr = np.frombuffer(raw, dtype=dtype, offset=4 + 4 * ndim).reshape(shape)
    return arr.astype(dtype.newbyteorder("="))


def _labels_sibling(path):
    """MNIST naming: ``train-images-idx3-ubyte[.gz]`` -> ``train-labels-idx1-ubyte[.gz]``,
    ``foo-images.idx3[.gz]`` -> ``foo-labels.idx1[.gz]``."""
    d, base = os.path.split(str(path))
    if "images" not in base:
        return None
    cand = base.replace("images", "labels").replace("idx3", "idx1")
    for name in (cand, cand[:-3] if cand.endswith(".gz") else cand + ".gz"):
        if os.path.exists(os.path.join(d, name)):
            return os.path.join(d, name)
    return None


def _test_sibling(path):
    """``train-images-idx3-ubyte`` -> ``t10k-images-idx3-ubyte`` (MNIST) or ``train`` -> ``test``."""
    d, base = os.path.split(str(path))
    for a, b in (("train-", "t10k-"), ("train", "test")):
        if base.startswith(a) or a in base:
            cand = os.path.join(d, base.replace(a, b, 1))
            if os.path.exists(cand) and _labels_sibling(cand):
                return cand
    return None


def _idx_pair(images_path, labels_path, scale):
    X = read_idx_array(images_path)
    if X.ndim == 1:
        raise ValueError(f"{images_path}: expected an IDX images file (2 or more dimensions), received a 1-D "
                         "labels file; pass the images file and labels_path=")
    y = read_idx_array(labels_path)
    if y.ndim != 1:
        raise ValueError(f"{labels_path}: expected a 1-D IDX labels file, received shape {y.shape}")
    if len(y) != len(X):
        raise ValueError(f"labels_path: expected {len(X)} labels (one per image), received {len(y)}")
    X = X.reshape(len(X), -1)
    X = X.astype(np.float64) / 255.0 if scale and X.dtype == np.uint8 else X.astype(np.float64)
    return X, y


def read_idx(path, labels_path=None, test_path=None, test_labels_path=None, scale=True):
    """IDX images + labels (MNIST's format), gzipped or not.

    The labels file is ``labels_path`` or found by MNIST's naming convention (``images`` ->
    ``labels``, ``idx3`` -> ``idx1``). A test pair is ``test_path`` (+ ``test_labels_path``) or
    the sibling with ``train-`` replaced by ``t10k-`` (or ``train`` by ``test``) when present.
    8-bit images are divided by 255 unless ``scale=False``.
    """
    if labels_path is None:
        labels_path = _labels_sibling(path)
        if labels_path is None:
            raise ValueError(f"labels_path: expected the labels file for {os.path.basename(str(path))}, received "
                             "none (no file found by the naming convention train-images-idx3-ubyte -> "
                             "train-labels-idx1-ubyte); pass labels_path=")
    elif not os.path.exists(labels_path):
        raise FileNotFoundError(f"labels_path: expected an existing IDX labels file, received {str(labels_path)!r}")
    X, y = _idx_pair(path, labels_path, scale)
    source = f"{path} + {labels_path}"
    if test_path is None:
        test_path = _test_sibling(path)
    elif not os.path.exists(test_path):
        raise FileNotFoundError(f"test_path: expected an existing IDX images file, received {str(test_path)!r}")
    test = None
    if test_path is not None:
        if test_labels_path is None:
            test_labels_path = _labels_sibling(test_path)
            if test_labels_path is None:
                raise ValueError(f"test_labels_path: expected the labels file for {test_path}; pass "
                                 "test_labels_path=")
        test = _idx_pair(test_path, test_labels_path, scale)
        if test[0].shape[1] != X.shape[1]:
            raise ValueError(f"test_path: expected images of {X.shape[1]} pixels (as the training images), "
                             f"received {test[0].shape[1]}")
        source += f" ; test {test_path} + {test_labels_path}"
    return {"X": X, "y": y, "test": test, "source": source}


def write_idx(path, arr) -> None:
    """Write an array as IDX (gzipped when ``path`` ends with ``.gz``); used by tests and examples."""
    arr = np.asarray(arr)
    code = {v.newbyteorder("=").str: k for k, v in _IDX_TYPES.items()}.get(arr.dtype.newbyteorder("=").str)
    if code is None:
        raise TypeError(f"arr: expected uint8, int8, int16, int32, float32 or float64, received {arr.dtype}")
    out = io.BytesIO()
    out.write(bytes([0, 0, code, arr.ndim]))
    out.write(np.asarray(arr.shape, dtype=">u4").tobytes())
    out.write(arr.astype(_IDX_TYPES[code]).tobytes())
    data = out.getvalue()
    from ..io import atomic_write_bytes

    atomic_write_bytes(path, gzip.compress(data) if str(path).endswith(".gz") else data)
