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
import zlib

import numpy as np

from ._limits import check_declared, check_regular_file, max_data_bytes, open_regular, values_bytes


def _starts_gzip(f) -> bool:
    """Whether the open binary file ``f`` starts with the gzip magic; it is left at its start."""
    gz = f.read(2) == b"\x1f\x8b"
    f.seek(0)
    return gz


@contextlib.contextmanager
def _open_text(path):
    """A UTF-8 text stream of ``path`` (gunzipped when it starts with the gzip magic); regular files only."""
    with open_regular(path) as raw:
        gz = _starts_gzip(raw)
        with contextlib.ExitStack() as stack:
            binary = stack.enter_context(gzip.GzipFile(fileobj=raw, mode="rb")) if gz else raw
            text = io.TextIOWrapper(binary, encoding="utf-8-sig", newline="")
            try:
                yield text
            finally:
                text.detach()


# NOTE: a longer line is refused: csv would hold all of its cells as Python strings (about 50 bytes
# each, so a 4 MiB line of "0," costs about 100 MB), before any limit on the values could apply.
MAX_CSV_LINE = 4 * 1024**2
_CSV_CHUNK_CELLS = 2**19  # cells parsed as strings (~50 bytes each) before they become float64 columns


def _bounded_lines(f, path, limit):
    """The lines of ``f``, refusing a line longer than MAX_CSV_LINE or more than ``limit`` characters in all."""
    total = 0
    while True:
        line = f.readline(MAX_CSV_LINE + 1)
        if not line:
            return
        if len(line) > MAX_CSV_LINE:
            raise ValueError(f"{path}: expected CSV lines of at most {MAX_CSV_LINE} characters, received a longer "
                             "one (corrupt or not a CSV file?)")
        total += len(line)
        if total > limit:
            check_declared(path, "the CSV text (inflated)", total, limit)
        yield line


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
    """A CSV with a header row; the ``target`` column (default: the last) holds the labels.

    Rows are parsed in chunks and turned into float64 columns at once, so memory stays near the
    values' 8 bytes each; the text (inflated, for ``.csv.gz``) and the values are checked against
    ``GRADBOX_MAX_DATA_BYTES`` as they are read.
    """
    if not isinstance(delimiter, str) or len(delimiter) != 1:
        raise ValueError(f"delimiter: expected a single character, received {delimiter!r}")
    limit = max_data_bytes()
    if not _is_gzip_file(path):
        check_declared(path, "the CSV file", os.stat(path).st_size, limit)
    blocks, labels, n_rows = [], [], 0
    try:
        with _open_text(path) as f:
            reader = csv.reader(_bounded_lines(f, path, limit), delimiter=delimiter)
            header = next((r for r in reader if any(cell.strip() for cell in r)), None)
            if header is None:
                raise ValueError(f"{path}: expected a header row and data rows, received an empty file")
            header = [h.strip() for h in header]
            if len(header) < 2:
                raise ValueError(f"{path}: expected at least 2 columns (features and target), received header "
                                 f"{header} (wrong delimiter? pass delimiter=';')")
            if len(set(header)) != len(header):
                dup = sorted({h for h in header if header.count(h) > 1})
                raise ValueError(f"{path}: expected unique column names, received duplicates {dup}")
            t = _target_index(header, target)
            chunk, chunk_rows = [], max(1, _CSV_CHUNK_CELLS // len(header))
            for r in reader:
                if not any(cell.strip() for cell in r):
                    continue
                if len(r) != len(header):
                    raise ValueError(f"{path}: expected {len(header)} fields in every row, received {len(r)} in "
                                     f"data row {n_rows + len(chunk) + 1}")
                chunk.append(r)
                if len(chunk) == chunk_rows:
                    n_rows = _csv_block(chunk, header, t, n_rows, blocks, labels, path, limit)
                    chunk = []
            if chunk:
                n_rows = _csv_block(chunk, header, t, n_rows, blocks, labels, path, limit)
    except (UnicodeDecodeError, csv.Error, EOFError, gzip.BadGzipFile, OSError) as exc:
        if isinstance(exc, (FileNotFoundError, PermissionError)):
            raise
        raise ValueError(f"{path}: expected a UTF-8 CSV file, received unreadable data ({exc})") from None
    if not n_rows:
        raise ValueError(f"{path}: expected data rows after the header, received none")
    X = blocks[0] if len(blocks) == 1 else np.concatenate(blocks)
    del blocks
    y, classes, n_classes = _label_encode(labels, f"target column {header[t]!r}")
    return {"X": X, "y": y, "feature_names": [h for j, h in enumerate(header) if j != t], "classes": classes,
            "n_classes": n_classes}


def _is_gzip_file(path) -> bool:
    with open_regular(path) as f:
        return _starts_gzip(f)


def _target_index(header, target):
    if target is None:
        return len(header) - 1
    if isinstance(target, str):
        if target not in header:
            raise ValueError(f"target: expected one of the columns {header}, received {target!r}")
        return header.index(target)
    raise TypeError(f"target: expected a column name (str), received {type(target).__name__}")


def _csv_block(chunk, header, t, offset, blocks, labels, path, limit):
    """Convert ``chunk`` (rows of strings, data rows offset+1...) into a float64 block; return the row count."""
    check_declared(path, f"the CSV's {offset + len(chunk)} rows x {len(header)} columns",
                   (offset + len(chunk)) * len(header) * 8, limit)
    columns = list(zip(*chunk))
    features = []
    for j, (col_name, col) in enumerate(zip(header, columns)):
        if j == t:
            continue
        try:
            values = np.array([float(v) if v.strip() else math.nan for v in col], dtype=np.float64)
        except ValueError:
            bad = next(i for i, v in enumerate(col) if not _is_float(v))
            raise ValueError(f"X: expected numeric feature columns, received non-numeric column {col_name!r} "
                             f"({col[bad]!r} in data row {offset + bad + 1}); encode it or drop it") from None
        empty = [i for i, v in enumerate(col) if not v.strip()]
        if empty:
            raise ValueError(f"X: expected a value in every cell, received an empty cell in column {col_name!r}, "
                             f"data row {offset + empty[0] + 1} (missing values are not supported)")
        features.append(values)
    blocks.append(np.column_stack(features))
    labels.extend(v.strip() for v in columns[t])
    return offset + len(chunk)


def _is_float(v) -> bool:
    try:
        float(v)
    except ValueError:
        return False
    return True


@contextlib.contextmanager
def open_npz(path):
    """``np.load(path)`` without pickles, closed afterwards: an NpzFile, or an ndarray for an .npy file.

    Before anything is read, every member's declared shape (its .npy header) is checked against the
    bytes the member holds and against ``GRADBOX_MAX_DATA_BYTES``; a FIFO or device is refused.

    NOTE: the file is opened here, not by np.load: np.load leaks its handle when a
    damaged zip makes NpzFile's constructor raise (a ResourceWarning later).
    """
    limit = max_data_bytes()
    with open_regular(path) as fh:
        if fh.read(6) == b"\x93NUMPY":
            fh.seek(0)
            _check_npy_header(fh, path, "the .npy array", os.fstat(fh.fileno()).st_size, limit)
        fh.seek(0)
        z = np.load(fh, allow_pickle=False)
        try:
            if isinstance(z, np.lib.npyio.NpzFile):
                _check_npz_members(z, path, limit)
            yield z
        finally:
            if isinstance(z, np.lib.npyio.NpzFile):
                z.close()


def _check_npy_header(stream, path, what, size, limit) -> int:
    """Read an .npy header from ``stream`` (``size`` bytes in all); refuse a shape the bytes or the limit
    cannot hold. Returns the declared bytes (0 for object arrays, which np.load refuses anyway)."""
    fmt = np.lib.format
    version = fmt.read_magic(stream)
    if version == (1, 0):
        shape, _, dtype = fmt.read_array_header_1_0(stream)
    elif version == (2, 0):
        shape, _, dtype = fmt.read_array_header_2_0(stream)
    else:
        raise ValueError(f"{path}: expected .npy format version 1.0 or 2.0 in {what}, received {version}")
    if dtype.hasobject:
        return 0
    nbytes = math.prod(shape) * dtype.itemsize
    available = size - stream.tell()
    if nbytes > available:
        raise ValueError(f"{path}: {what} declares shape {tuple(shape)} of {dtype} ({nbytes} bytes), but holds "
                         f"{available} bytes (truncated or forged file)")
    declared = max(nbytes, values_bytes(shape))
    check_declared(path, f"{what} of shape {tuple(shape)} ({dtype})", declared, limit)
    return declared


def _check_npz_members(z, path, limit) -> None:
    total = 0
    for info in z.zip.infolist():
        what = f"member {info.filename!r}"
        try:
            with z.zip.open(info) as m:
                if m.read(6) == b"\x93NUMPY":
                    # NOTE: a fresh stream: ZipExtFile reads at most info.file_size bytes, so that is
                    # the most the member can hold whatever its header says
                    with z.zip.open(info) as m2:
                        total += _check_npy_header(m2, path, f"array {what}", info.file_size, limit)
                else:
                    total += info.file_size
        except (RuntimeError, NotImplementedError) as exc:  # encrypted, unknown compression
            raise ValueError(f"{path}: expected a valid .npz file, received an unreadable {what} ({exc})") from None
        check_declared(path, "the .npz archive's arrays together", total, limit)


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
            out["layout"] = "NHW" if out["X"].ndim == 3 else None  # (n, H, W): one channel
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
    # NOTE: the images stay (m, H, W, C) here; datasets.load flattens them in this (H, W, C) order,
    # as the course does, or moves the channels first (flatten=False). The course divides 8-bit pixels by 255 so inputs lie in [0, 1].
    return x.astype(np.float64) / 255.0 if x.dtype == np.uint8 else x.astype(np.float64)


def _course_labels(y, key, path):
    y = np.asarray(y)
    if y.ndim == 2 and 1 in y.shape:
        y = y.reshape(-1)
    if y.ndim != 1:
        raise ValueError(f"{path}: expected {key!r} of shape (m,) or (1, m), received shape {y.shape}")
    return y


def _h5_array(f, key, path, seen):
    """``f[key][()]`` once its declared shape passed the file-size and limit checks.

    ``seen``: {"file_size": ..., "limit": ..., "declared": bytes declared by the datasets read before}."""
    import h5py

    d = f[key]
    if not isinstance(d, h5py.Dataset) or d.shape is None:
        raise ValueError(f"{path}: expected {key!r} to be an array dataset, received {type(d).__name__}")
    raw = math.prod(d.shape) * d.dtype.itemsize
    if d.id.get_create_plist().get_nfilters() == 0 and d.external is None and raw > seen["file_size"]:
        # NOTE: without compression filters the data must be stored in the file itself
        raise ValueError(f"{path}: dataset {key!r} declares shape {d.shape} of {d.dtype} ({raw} bytes), but the "
                         f"file has {seen['file_size']} bytes (truncated or forged file)")
    seen["declared"] += max(raw, values_bytes(d.shape))
    check_declared(path, f"dataset {key!r} of shape {d.shape} ({d.dtype})"
                   + (" with the datasets read before it" if seen["declared"] > max(raw, values_bytes(d.shape))
                      else ""), seen["declared"], seen["limit"])
    return d[()]


def _read_h5_file(path):
    try:
        import h5py
    except ImportError:
        raise ImportError(f"loading {os.path.basename(str(path))} needs h5py: pip install gradbox[hdf5]") from None
    check_regular_file(path)
    seen = {"file_size": os.stat(path).st_size, "limit": max_data_bytes(), "declared": 0}
    try:
        with h5py.File(path, "r") as f:
            keys = list(f.keys())
            out = {"keys": keys}
            for split in ("train", "test"):
                kx, ky = f"{split}_set_x", f"{split}_set_y"
                if kx in f and ky in f:
                    out[split] = (_course_images(_h5_array(f, kx, path, seen), kx, path),
                                  _course_labels(_h5_array(f, ky, path, seen), ky, path))
                    if len(out[split][0]) != len(out[split][1]):
                        raise ValueError(f"{path}: expected as many labels as images in {kx}/{ky}, received "
                                         f"{len(out[split][0])} images and {len(out[split][1])} labels")
            if "list_classes" in f:
                out["classes"] = [c.decode() if isinstance(c, bytes) else str(c)
                                  for c in np.asarray(_h5_array(f, "list_classes", path, seen)).reshape(-1)]
    except OSError as exc:
        if isinstance(exc, (FileNotFoundError, PermissionError)):
            raise
        raise ValueError(f"{path}: expected an HDF5 file, received an unreadable one ({exc})") from None
    return out


def read_h5(path, test_path=None):
    """The course layout: ``train_set_x``/``train_set_y`` and ``test_set_x``/``test_set_y``.

    Images (m, 64, 64, 3) divided by 255 (rows of 12288 features by default, or (m, 3, 64, 64) with
    ``load(..., flatten=False)``). When the file has no
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
    if test is not None and test[0].shape[1:] != X.shape[1:]:
        raise ValueError(f"test_set_x: expected images of shape {X.shape[1:]} (as train_set_x), received "
                         f"{test[0].shape[1:]}")
    return {"X": X, "y": y, "test": test, "classes": main.get("classes"), "source": source,
            "layout": "NHWC" if X.ndim == 4 else ("NHW" if X.ndim == 3 else None)}


# --------------------------------------------------------------------------- IDX (MNIST)
_IDX_TYPES = {0x08: np.dtype(">u1"), 0x09: np.dtype(">i1"), 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
              0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
_IDX_NAME = re.compile(r"(\.idx\d(\.gz)?$)|(-ubyte(\.gz)?$)|(\.idx\d-ubyte(\.gz)?$)", re.IGNORECASE)


def is_idx_name(path) -> bool:
    return bool(_IDX_NAME.search(os.path.basename(str(path))))


def read_idx_array(path) -> np.ndarray:
    """One IDX file (gzipped or not) as an array in native byte order.

    The header's dimensions are checked against the file's size (uncompressed) and against
    ``GRADBOX_MAX_DATA_BYTES`` before the data is read; a gzipped file is inflated only up to the
    bytes its header declares.
    """
    limit = max_data_bytes()
    with open_regular(path) as f:
        size = os.fstat(f.fileno()).st_size
        gz = _starts_gzip(f)
        try:
            with (gzip.GzipFile(fileobj=f, mode="rb") if gz else contextlib.nullcontext(f)) as src:
                return _read_idx_stream(src, path, None if gz else size, limit)
        except (OSError, EOFError, gzip.BadGzipFile, zlib.error) as exc:
            if not gz or isinstance(exc, (FileNotFoundError, PermissionError)):
                raise
            raise ValueError(f"{path}: expected a valid gzip file, received a corrupt one ({exc})") from None


def _read_idx_stream(src, path, size, limit):
    """``size``: the file's bytes when ``src`` is the file itself, None for an inflating stream."""
    magic = src.read(4)
    if len(magic) < 4 or magic[0] != 0 or magic[1] != 0 or magic[2] not in _IDX_TYPES or magic[3] == 0:
        raise ValueError(f"{path}: expected an IDX file (magic 00 00 <type> <ndim>), received {magic!r}")
    dtype, ndim = _IDX_TYPES[magic[2]], magic[3]
    dims = src.read(4 * ndim)
    if len(dims) < 4 * ndim:
        raise ValueError(f"{path}: expected {ndim} dimension sizes after the magic, received a truncated file")
    shape = tuple(int(d) for d in np.frombuffer(dims, dtype=">u4"))
    need = math.prod(shape) * dtype.itemsize
    if size is not None and need != size - 4 - 4 * ndim:
        raise ValueError(f"{path}: expected {need} data bytes for shape {shape}, received {size - 4 - 4 * ndim} "
                         "(truncated or corrupt file)")
    check_declared(path, f"the IDX header's shape {shape}", max(need, values_bytes(shape)), limit)
    raw = src.read(need)
    if len(raw) != need or (size is None and src.read(1)):
        have = f"{len(raw)}" if len(raw) != need else "more"
        raise ValueError(f"{path}: expected {need} data bytes for shape {shape}, received {have} "
                         "(truncated or corrupt file)")
    return np.frombuffer(raw, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))


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
        if test[0].shape[1:] != X.shape[1:]:
            raise ValueError(f"test_path: expected images of shape {X.shape[1:]} (as the training images), "
                             f"received {test[0].shape[1:]}")
        source += f" ; test {test_path} + {test_labels_path}"
    return {"X": X, "y": y, "test": test, "source": source, "layout": "NHW" if X.ndim == 3 else None}


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
