"""Safe model files and atomic writes.

One file format, never pickle. A gradbox file is::

    offset  size  what
    0       8     magic  b"GRADBOX\\x00"
    8       4     format version, uint32 little-endian (currently 1)
    12      8     header length H, uint64 little-endian
    20      4     CRC-32 of the header bytes, uint32 little-endian
    24      H     UTF-8 JSON header, padded with spaces so the data starts on a 64-byte boundary
    24+H    ...   raw little-endian array bytes, each array starting on a 64-byte boundary

The header is ``{"format": "gradbox", "arrays": {name: {"dtype": "<f4", "shape": [...],
"offsets": [start, end]}}, "metadata": {...}, "data_crc32": int}`` (offsets are relative to
the start of the data) plus, for model files, ``"model": {"spec": [...], "parameters": {...}}``:
``spec`` is a list of ``{"type": <layer name>, **config}`` (a Sequential, the 0.1 format) or one such
dict (any other model), and ``parameters`` maps every parameter and persistent buffer name to its
array's name (two names share one array when the model shares one parameter).

The loader trusts nothing: every field is checked (magic, sizes, checksums, JSON schema,
dtype whitelist, shapes, offsets) before any array is built, and every problem raises
:class:`ModelFileError`. Nothing in a file is ever executed.

Examples
--------
>>> import numpy as np, gradbox as gb, tempfile, os
>>> path = os.path.join(tempfile.mkdtemp(), "a.gbx")
>>> gb.save({"w": np.arange(3, dtype=np.float32)}, path, metadata={"epoch": 3})
>>> gb.io.load_with_metadata(path)
({'w': array([0., 1., 2.], dtype=float32)}, {'epoch': 3})
"""
from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import stat
import struct
import uuid
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from .tensor import Tensor

__all__ = [
    "ModelFileError", "ModelFile", "save", "load", "load_with_metadata", "save_model", "load_model",
    "model_to_spec", "model_from_spec", "atomic_open", "atomic_write_bytes", "MAGIC", "FORMAT_VERSION",
]

MAGIC = b"GRADBOX\x00"
FORMAT_VERSION = 1
_PREFIX = struct.Struct("<8sIQI")  # magic, version, header length, header crc32
_ALIGN = 64
MAX_HEADER_BYTES = 16 * 1024 * 1024
MAX_ARRAYS = 20_000
# NOTE: parsing many small JSON values is the slow part of reading a header; counting their
# separators first (C speed) keeps a forged header of millions of tiny values from taking seconds.
MAX_JSON_OBJECTS = MAX_ARRAYS + 10_000
MAX_JSON_VALUES = 500_000
_MAX_NDIM = 32
_MAX_NAME_CHARS = 1024

# canonical little-endian dtype string -> dtype
_DTYPES = {
    np.dtype(t).newbyteorder("<").str: np.dtype(t)
    for t in (np.float16, np.float32, np.float64, np.int8, np.int16, np.int32, np.int64,
              np.uint8, np.uint16, np.uint32, np.uint64, np.bool_)
}
_HEADER_KEYS = {"format", "arrays", "metadata", "data_crc32", "model"}
_ARRAY_KEYS = {"dtype", "shape", "offsets"}

# signatures of files that people mistake for model files
_FOREIGN = (
    (b"PK\x03\x04", "a zip archive (an .npz file or a PyTorch checkpoint?)"),
    (b"PK\x05\x06", "an empty zip archive"),
    (b"\x93NUMPY", "a NumPy .npy file"),
    (b"\x89HDF\r\n\x1a\n", "an HDF5 file"),
    (b"\x1f\x8b", "a gzip file"),
)


class ModelFileError(ValueError):
    """A file is not a valid gradbox file: corrupt, truncated, foreign or from a newer version."""


@dataclass
class ModelFile:
    """What :func:`load_model` returns.

    Attributes
    ----------
    model : gradbox.nn.Module
        The rebuilt network (a ``Sequential`` for a list spec) with its weights and buffers
        loaded, in ``eval()`` mode; parameters shared when saved are shared again.
    arrays : dict of str to ndarray
        The extra arrays saved alongside (e.g. normalisation ``mean``/``std``), in saved order.
    metadata : dict
        The user metadata saved alongside.
    spec : list of dict, or dict
        The architecture as :func:`model_to_spec` wrote it.
    """

    model: object
    arrays: dict = field(default_factory=dict)
    metadata: dict = field(default_factory=dict)
    spec: list = field(default_factory=list)

    # NOTE: the model file's own preprocessing (stored mean/scale, input shape, classes) is applied
    # here, so Python users get exactly what `gradbox predict` / `gradbox evaluate` print.
    @property
    def classes(self) -> list:
        """The class labels the model was trained on (``0..C-1`` when the file records none)."""
        from .train.inference import model_classes

        return model_classes(self)

    def preprocess(self, X, where: str = "X"):
        """Raw features -> the model's input: stored standardisation, input shape and dtype applied."""
        from .train.inference import model_inputs

        return model_inputs(self, X, where)

    def predict_proba(self, X):
        """Class probabilities (N, C) of raw samples ``X``."""
        from .train.inference import predict_proba

        return predict_proba(self.model, self.preprocess(X))

    def predict(self, X):
        """Predicted class labels of raw samples ``X`` (the recorded class names, as ``gradbox predict``)."""
        classes = self.classes
        return np.array([classes[i] for i in self.predict_proba(X).argmax(axis=1)])

    def evaluate(self, X, y) -> dict:
        """Loss, accuracy and confusion matrix on raw samples ``X`` with labels ``y`` (class indices)."""
        from .train.inference import evaluate_model_file

        return evaluate_model_file(self, X, y)


# --------------------------------------------------------------------------- atomic writes
def _fsync_dir(directory: str) -> None:
    # NOTE: makes the rename itself durable; not every platform can open a directory (Windows).
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_error(path, exc: OSError) -> OSError:
    reason = "the disk is full" if exc.errno == errno.ENOSPC else (exc.strerror or str(exc))
    # NOTE: OSError(errno, ...) picks the matching subclass (PermissionError, ...).
    return OSError(exc.errno, f"could not write {os.fspath(path)!r}: {reason}; the previous file, if any, "
                   "is unchanged", os.fspath(path))


@contextlib.contextmanager
def atomic_open(path, mode: str = "wb", encoding: str | None = None, newline: str | None = None):
    """Open ``path`` for writing so that readers see the old file or the whole new one, never a part.

    Writes go to a temporary file in the same directory, which is flushed, ``fsync``-ed and
    renamed over ``path`` (``os.replace``) when the block ends; the directory is then fsync-ed.
    If the block raises anything (``KeyboardInterrupt`` included) the temporary file is removed
    and ``path`` is untouched. Write failures (a full disk, no permission) raise ``OSError``
    whose message names ``path``.

    Parameters
    ----------
    path : str or os.PathLike
    mode : {"wb", "w"}
        Binary or text. Text mode defaults to UTF-8.
    encoding, newline : optional
        As for :func:`open` in text mode.

    Examples
    --------
    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "metrics.json")
    >>> with atomic_open(p, "w") as f:
    ...     _ = f.write('{"loss": 0.1}')
    >>> open(p).read()
    '{"loss": 0.1}'
    """
    if mode not in ("wb", "w", "wt"):
        raise ValueError(f"atomic_open(mode): expected 'wb' or 'w', received {mode!r}")
    try:
        path = os.fspath(path)
    except TypeError:
        raise TypeError(f"path: expected a str or os.PathLike, received {type(path).__name__}") from None
    if not isinstance(path, str):
        path = os.fsdecode(path)
    if os.path.isdir(path):
        raise IsADirectoryError(errno.EISDIR, f"path: expected a file path, received the directory {path!r}", path)
    directory = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        # NOTE: os.open with 0o666 honours the umask, unlike mkstemp's 0o600.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    except OSError as exc:
        raise _write_error(path, exc) from exc
    committed = False
    try:
        if os.path.exists(path) and hasattr(os, "fchmod"):
            # NOTE: a replaced file keeps its permission bits.
            with contextlib.suppress(OSError):
                os.fchmod(fd, stat.S_IMODE(os.stat(path).st_mode))
        try:
            if "b" in mode:
                f = os.fdopen(fd, "wb")
            else:
                f = os.fdopen(fd, "w", encoding=encoding or "utf-8", newline=newline)
        except BaseException:
            os.close(fd)
            raise
        with f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        committed = True
    except OSError as exc:
        raise _write_error(path, exc) from exc
    finally:
        if not committed:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
    _fsync_dir(directory)


def atomic_write_bytes(path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_open`).

    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "x.bin")
    >>> atomic_write_bytes(p, b"abc"); open(p, "rb").read()
    b'abc'
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"data: expected bytes, received {type(data).__name__}")
    with atomic_open(path, "wb") as f:
        f.write(data)


# --------------------------------------------------------------------------- writing
def _pad(n: int) -> int:
    return (-n) % _ALIGN


def _as_saveable(name, value) -> np.ndarray:
    if not isinstance(name, str):
        raise TypeError(f"arrays: expected str names, received {type(name).__name__} {name!r}")
    if not name or len(name) > _MAX_NAME_CHARS:
        raise ValueError(f"arrays: expected names of 1 to {_MAX_NAME_CHARS} characters, received {name[:40]!r}")
    if isinstance(value, Tensor):
        value = value.data
    if not isinstance(value, np.ndarray):
        try:
            value = np.asarray(value)
        except (ValueError, TypeError):
            raise ValueError(f"arrays[{name!r}]: expected an array, received a ragged {type(value).__name__}") from None
    key = value.dtype.newbyteorder("<").str
    if value.dtype.kind not in "fiub" or key not in _DTYPES:
        raise TypeError(
            f"arrays[{name!r}]: expected dtype float16/32/64, int8..int64, uint8..uint64 or bool, "
            f"received {value.dtype}"
        )
    # NOTE: always little-endian and C-ordered on disk, whatever the machine.
    # NOTE: not np.ascontiguousarray, which turns 0-d arrays into 1-d ones.
    return value.astype(_DTYPES[key].newbyteorder("<"), order="C", copy=False)


def _to_json(obj, what: str) -> str:
    try:
        # NOTE: allow_nan keeps NaN/inf metadata (e.g. a diverged loss) readable.
        return json.dumps(obj, ensure_ascii=False, allow_nan=True, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{what}: expected JSON-serialisable values (str, number, bool, None, list, dict), "
                        f"received {exc}") from None


def _serialize_parts(arrays, metadata=None, model=None):
    """Return the list of byte chunks of a file (header first)."""
    if not isinstance(arrays, Mapping):
        raise TypeError(f"arrays: expected a mapping of name to array, received {type(arrays).__name__}")
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, Mapping):
        raise TypeError(f"metadata: expected a dict or None, received {type(metadata).__name__}")
    if any(not isinstance(k, str) for k in metadata):
        raise TypeError("metadata: expected str keys, received "
                        f"{[k for k in metadata if not isinstance(k, str)][:3]!r}")
    if len(arrays) > MAX_ARRAYS:
        raise ValueError(f"arrays: expected at most {MAX_ARRAYS} arrays per file, received {len(arrays)}")
    table, blobs, pos, crc = {}, [], 0, 0
    for name, value in arrays.items():
        arr = _as_saveable(name, value)
        start = pos + _pad(pos)
        if start > pos:
            pad = b"\x00" * (start - pos)
            blobs.append(pad)
            crc = zlib.crc32(pad, crc)
        raw = arr.reshape(-1).view(np.uint8)
        blobs.append(raw)
        crc = zlib.crc32(raw, crc)
        pos = start + raw.nbytes
        table[name] = {"dtype": arr.dtype.str, "shape": list(arr.shape), "offsets": [start, pos]}
    header = {"format": "gradbox", "arrays": table, "metadata": dict(metadata), "data_crc32": crc}
    if model is not None:
        header["model"] = model
    text = _to_json(header, "metadata").encode("utf-8")
    text += b" " * _pad(_PREFIX.size + len(text))
    if len(text) > MAX_HEADER_BYTES:
        raise ValueError(f"metadata: expected a header under {MAX_HEADER_BYTES} bytes, received {len(text)} bytes "
                         "(store large data as arrays)")
    problem = _too_complex(text)
    if problem:
        raise ValueError(f"metadata: too many values for the header: {problem} (store large data as arrays)")
    prefix = _PREFIX.pack(MAGIC, FORMAT_VERSION, len(text), zlib.crc32(text))
    return [prefix, text, *blobs]


def _too_complex(raw: bytes) -> str | None:
    """Why a header would be too slow to parse, or None. Counts are upper bounds (strings included)."""
    objects = raw.count(b"{")
    if objects > MAX_JSON_OBJECTS:
        return f"expected at most {MAX_JSON_OBJECTS} JSON objects, received up to {objects}"
    values = objects + raw.count(b"[") + raw.count(b",")
    if values > MAX_JSON_VALUES:
        return f"expected at most {MAX_JSON_VALUES} JSON values, received up to {values}"
    return None


def _write(path, parts) -> None:
    with atomic_open(path, "wb") as f:
        for part in parts:
            f.write(part)


def save(arrays: Mapping, path, metadata: dict | None = None) -> None:
    """Save named arrays (and JSON metadata) to ``path`` atomically, without pickle.

    Parameters
    ----------
    arrays : mapping of str to ndarray
        Names, values, dtypes and order are kept. Dtypes: float16/32/64, int8..int64,
        uint8..uint64, bool.
    path : str or os.PathLike
    metadata : dict, optional
        JSON-serialisable values (NaN and inf allowed).

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "w.gbx")
    >>> save({"w": np.eye(2)}, p); load(p)["w"].shape
    (2, 2)
    """
    if isinstance(arrays, (str, os.PathLike)) and isinstance(path, Mapping):
        raise TypeError(f"arrays: expected a mapping of name to array, received the path {os.fspath(arrays)!r} "
                        "(the order is save(arrays, path))")
    _write(path, _serialize_parts(arrays, metadata))


# --------------------------------------------------------------------------- reading
def _reject_duplicates(pairs):
    out = dict(pairs)
    if len(out) != len(pairs):  # NOTE: the C-speed common case first; find the culprit only on failure
        seen = set()
        for key, _ in pairs:
            if key in seen:
                raise ModelFileError(f"duplicate JSON key {key!r} in the header")
            seen.add(key)
    return out


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _describe_foreign(buf) -> str:
    head = bytes(buf[:16])
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return "a Python pickle (refused: loading a pickle can run arbitrary code)"
    for sig, what in _FOREIGN:
        if head.startswith(sig):
            return what
    if head[:1] in (b"{", b"["):
        return "a JSON/text file"
    return f"an unknown file starting with {head[:8]!r}"


def _check_prefix(buf, n_total: int):
    """Validate the fixed-size prefix; return the header length."""
    n = len(buf)
    if n_total == 0:
        raise ModelFileError("the file is empty; it is not a gradbox model file")
    if n < _PREFIX.size:
        if MAGIC.startswith(bytes(buf[:8])) or bytes(buf[:8]).startswith(MAGIC):
            raise ModelFileError(f"the file is truncated ({n_total} bytes, shorter than the "
                                 f"{_PREFIX.size}-byte prefix)")
        raise ModelFileError(f"not a gradbox model file: it is {_describe_foreign(buf)}")
    magic, version, hlen, hcrc = _PREFIX.unpack_from(buf, 0)
    if magic != MAGIC:
        raise ModelFileError(f"not a gradbox model file: it is {_describe_foreign(buf)}")
    if version != FORMAT_VERSION:
        raise ModelFileError(f"unsupported format version {version} (this gradbox reads version {FORMAT_VERSION})")
    if hlen > MAX_HEADER_BYTES:
        raise ModelFileError(f"header length {hlen} exceeds the {MAX_HEADER_BYTES}-byte limit (corrupt file)")
    if hlen > n_total - _PREFIX.size:
        raise ModelFileError(f"the file is truncated: header length {hlen} but only {n_total - _PREFIX.size} "
                             "bytes follow the prefix")
    return hlen, hcrc


def _parse_header(raw: bytes, hcrc: int) -> dict:
    if zlib.crc32(raw) != hcrc:
        raise ModelFileError("header checksum mismatch: the file is corrupted")
    problem = _too_complex(raw)
    if problem:
        raise ModelFileError(f"header: {problem} (corrupt or hostile file)")
    try:
        text = raw.decode("utf-8")
        header = json.loads(text, object_pairs_hook=_reject_duplicates)
    except ModelFileError:
        raise
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ModelFileError(f"the header is not valid UTF-8 JSON ({type(exc).__name__}: {str(exc)[:200]})") from None
    if not isinstance(header, dict):
        raise ModelFileError(f"header: expected a JSON object, received {type(header).__name__}")
    unknown = set(header) - _HEADER_KEYS
    if unknown:
        raise ModelFileError(f"header: unexpected keys {sorted(unknown)[:5]}")
    if header.get("format") != "gradbox":
        raise ModelFileError(f"header['format']: expected 'gradbox', received {header.get('format')!r}")
    for key, kind in (("arrays", dict), ("metadata", dict)):
        if not isinstance(header.get(key), kind):
            raise ModelFileError(f"header[{key!r}]: expected a JSON object, received {type(header.get(key)).__name__}")
    crc = header.get("data_crc32")
    if not _is_int(crc) or not 0 <= crc < 2 ** 32:
        raise ModelFileError(f"header['data_crc32']: expected a uint32, received {crc!r}")
    return header


def _check_table(table: dict, data_len: int):
    """Validate the array table; return a list of (name, dtype, shape, start, end)."""
    if len(table) > MAX_ARRAYS:
        raise ModelFileError(f"header: expected at most {MAX_ARRAYS} arrays, received {len(table)}")
    entries, prev_end = [], 0
    for name, spec in table.items():
        where = f"arrays[{name[:60]!r}]"
        if not name or len(name) > _MAX_NAME_CHARS:
            raise ModelFileError(f"{where}: expected a name of 1 to {_MAX_NAME_CHARS} characters")
        if not isinstance(spec, dict) or set(spec) != _ARRAY_KEYS:
            got = sorted(spec) if isinstance(spec, dict) else type(spec).__name__
            raise ModelFileError(f"{where}: expected keys {sorted(_ARRAY_KEYS)}, received {got}")
        dtype = _DTYPES.get(spec["dtype"]) if isinstance(spec["dtype"], str) else None
        if dtype is None:
            raise ModelFileError(f"{where}['dtype']: expected one of {sorted(_DTYPES)}, received {spec['dtype']!r}")
        shape = spec["shape"]
        if (type(shape) is not list or len(shape) > _MAX_NDIM
                or not all(type(d) is int and d >= 0 for d in shape)):
            raise ModelFileError(f"{where}['shape']: expected a list of at most {_MAX_NDIM} non-negative ints, "
                                 f"received {str(shape)[:80]}")
        offsets = spec["offsets"]
        if not (type(offsets) is list and len(offsets) == 2 and type(offsets[0]) is int
                and type(offsets[1]) is int):
            raise ModelFileError(f"{where}['offsets']: expected [start, end] ints, received {str(offsets)[:80]}")
        start, end = offsets
        if start < prev_end:
            raise ModelFileError(f"{where}['offsets']: start {start} overlaps the previous array or is out of "
                                 f"order (previous end {prev_end})")
        if end < start or end > data_len:
            raise ModelFileError(f"{where}['offsets']: [{start}, {end}] out of bounds of the {data_len}-byte data "
                                 "section (truncated file?)")
        # NOTE: Python ints, so a forged huge shape cannot overflow the product.
        nbytes = math.prod(shape) * dtype.itemsize
        if nbytes != end - start:
            raise ModelFileError(f"{where}: shape {shape} of {dtype} needs {nbytes} bytes, but offsets span "
                                 f"{end - start}")
        entries.append((name, dtype, tuple(shape), start, end))
        prev_end = end
    if prev_end != data_len:
        raise ModelFileError(f"the data section has {data_len} bytes but the arrays end at {prev_end} "
                             "(truncated or trailing bytes)")
    return entries


def _parse(buf, *, n_total: int | None = None, reader=None):
    """Parse a whole gradbox file from bytes; return ``(arrays, metadata, header)``.

    Raises :class:`ModelFileError` for anything wrong. ``reader`` (internal) lets
    :func:`load` check the prefix before reading the rest of a big file.
    """
    if n_total is None:
        n_total = len(buf)
    hlen, hcrc = _check_prefix(buf, n_total)
    if reader is not None:
        buf = reader()
        if len(buf) != n_total:
            raise ModelFileError("the file changed size while being read")
    mv = memoryview(buf)
    header = _parse_header(bytes(mv[_PREFIX.size:_PREFIX.size + hlen]), hcrc)
    data = mv[_PREFIX.size + hlen:]
    entries = _check_table(header["arrays"], len(data))
    if zlib.crc32(data) != header["data_crc32"]:
        raise ModelFileError("data checksum mismatch: the array bytes are corrupted")
    arrays = {}
    for name, dtype, shape, start, end in entries:
        # NOTE: copy, so every array owns its memory, is writable and is in native byte order.
        flat = np.frombuffer(data[start:end], dtype=dtype.newbyteorder("<")) if end > start else np.empty(0, dtype)
        if dtype.kind == "b" and flat.size and flat.view(np.uint8).max() > 1:
            raise ModelFileError(f"arrays[{name[:60]!r}]: bool array holds bytes other than 0 and 1")
        arrays[name] = flat.reshape(shape).astype(dtype.newbyteorder("="), copy=True)
    return arrays, header["metadata"], header


def _read(path):
    try:
        fspath = os.fspath(path)
    except TypeError:
        raise TypeError(f"path: expected a str or os.PathLike, received {type(path).__name__}") from None
    if not os.path.exists(fspath):
        raise FileNotFoundError(errno.ENOENT, f"no gradbox file at {os.fspath(fspath)!r}", fspath)
    if os.path.isdir(fspath):
        raise IsADirectoryError(errno.EISDIR, f"path: expected a gradbox file, received the directory {fspath!r}",
                                fspath)
    if not stat.S_ISREG(os.stat(fspath).st_mode):  # NOTE: opening a FIFO would wait forever (issue 14 item 11)
        raise ModelFileError(f"{fspath}: expected a regular file, received a FIFO, device or socket")
    with open(fspath, "rb") as f:
        n_total = os.fstat(f.fileno()).st_size
        head = f.read(_PREFIX.size)
        try:
            return _parse(head, n_total=n_total, reader=lambda: head + f.read())
        except ModelFileError as exc:
            raise ModelFileError(f"{os.fspath(fspath)}: {exc}") from None


def load_with_metadata(path):
    """Load ``(arrays, metadata)`` from a file written by :func:`save` or :func:`save_model`.

    Raises
    ------
    FileNotFoundError
        No such file.
    ModelFileError
        Corrupt, truncated or foreign file (pickles and zip/NPZ files are refused unread).
    """
    arrays, metadata, _ = _read(path)
    return arrays, metadata


def load(path) -> dict:
    """Load the arrays saved by :func:`save` (in saved order; writable arrays that own their memory).

    >>> import numpy as np, tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "w.gbx")
    >>> save({"a": np.zeros(2, np.int8), "b": np.ones(1)}, p); list(load(p))
    ['a', 'b']
    """
    return _read(path)[0]


# --------------------------------------------------------------------------- models
# NOTE: no layer type is named here. A spec entry is ``{"type": <registry name>, **get_config()}``
# (gradbox.nn.module.LAYERS); a Sequential model is the list of its layers' entries (the 0.1
# format), any other model one entry. Each layer class validates its own config and declares
# the arrays it holds (``state_specs``), so a file's sizes are checked before anything is built.
def model_to_spec(model):
    """Describe a model as JSON-friendly layer dicts: a list for a ``Sequential``, one dict otherwise.

    Every layer type in the registry (``gradbox.nn.module.LAYERS``) describes itself with
    ``get_config()``; a user's layer whose constructor needs arguments must define it.

    >>> import gradbox as gb
    >>> model_to_spec(gb.nn.Sequential(gb.nn.Linear(2, 3, rng=0), gb.nn.ReLU()))
    [{'type': 'Linear', 'in_features': 2, 'out_features': 3, 'bias': True, 'dtype': 'float32'}, {'type': 'ReLU'}]
    """
    from .nn.layers import Sequential
    from .nn.module import Module, layer_entry

    if not isinstance(model, Module):
        raise TypeError(f"model: expected a gradbox.nn.Module, received {type(model).__name__}")
    if type(model) is not Sequential:
        return layer_entry(model)
    spec = []
    for i, m in enumerate(model):
        try:
            spec.append(layer_entry(m))
        except TypeError as exc:
            raise TypeError(f"model[{i}]: {exc}") from None
    return spec


def _check_spec(spec) -> list:
    """Validate a spec without building it; return the (name, shape, dtype) of every array it holds."""
    from .nn.module import entry_state_specs

    if isinstance(spec, dict):
        specs = entry_state_specs(spec, "spec")
    elif isinstance(spec, list):
        specs = [(f"{i}.{name}", shape, dtype) for i, entry in enumerate(spec)
                 for name, shape, dtype in entry_state_specs(entry, f"spec[{i}]")]
    else:
        raise ValueError(f"spec: expected a list of layer dicts (or one layer dict), received {type(spec).__name__}")
    return [(name, tuple(shape), np.dtype(dtype)) for name, shape, dtype in specs]


def model_from_spec(spec) -> "object":
    """Build an (untrained) model from :func:`model_to_spec`'s output.

    >>> import gradbox as gb
    >>> model_from_spec([{"type": "Linear", "in_features": 2, "out_features": 1}, {"type": "Sigmoid"}])[0].weight.shape
    (1, 2)
    """
    from .nn.layers import Sequential
    from .nn.module import build_entry

    _check_spec(spec)
    if isinstance(spec, dict):
        return build_entry(spec, "spec")
    return Sequential(*(build_entry(entry, f"spec[{i}]") for i, entry in enumerate(spec)))


def _model_table(model):
    """(arrays by file key, {state name: file key}): a shared parameter is stored once, and every
    name it has points at that one array (so the loader can tie them again)."""
    from .nn.module import state_slots

    table, mapping, keys = {}, {}, {}
    for name, _, _, value in state_slots(model):
        key = keys.setdefault(id(value), f"model.{name}")
        if key not in table:
            table[key] = np.array(value.data if isinstance(value, Tensor) else value)
        mapping[name] = key
    return table, mapping


def save_model(path, model, *, arrays: Mapping | None = None, metadata: dict | None = None) -> None:
    """Save a model (architecture, weights, buffers), extra arrays and metadata to ``path`` atomically.

    Parameters
    ----------
    path : str or os.PathLike
    model : gradbox.nn.Module
        A ``Sequential`` or any module whose layers describe themselves (``get_config``); see
        :func:`model_to_spec`. A parameter shared by several layers is stored once.
    arrays : mapping of str to ndarray, optional
        Extra arrays to keep with the model, e.g. ``{"mean": mu, "std": sigma}``.
    metadata : dict, optional
        JSON-serialisable values.

    Raises
    ------
    ValueError
        A weight holds NaN or inf (a diverged model is never written).
    TypeError
        An unsupported layer, array dtype or metadata value.

    Examples
    --------
    >>> import gradbox as gb, tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "m.gbx")
    >>> save_model(p, gb.nn.Sequential(gb.nn.Linear(2, 1, rng=0)), metadata={"acc": 0.9})
    >>> load_model(p).metadata
    {'acc': 0.9}
    """
    spec = model_to_spec(model)
    state, mapping = _model_table(model)
    for key, value in state.items():
        if value.dtype.kind == "f" and not np.isfinite(value).all():
            bad = int(np.size(value) - np.count_nonzero(np.isfinite(value)))
            raise ValueError(f"model: expected finite weights, received {bad} NaN/inf values in parameter "
                             f"{key[len('model.'):]!r} (the model diverged; nothing was written)")
    if arrays is not None and not isinstance(arrays, Mapping):
        raise TypeError(f"arrays: expected a mapping of name to array, received {type(arrays).__name__}")
    extra = dict(arrays or {})
    for key in state:
        if key in extra:
            raise ValueError(f"arrays: expected names other than {key!r} (reserved for the model's weights)")
    _write(path, _serialize_parts({**state, **extra}, metadata, model={"spec": spec, "parameters": mapping}))


def _model_from_header(arrays, header):
    info = header.get("model")
    if not isinstance(info, dict) or set(info) != {"spec", "parameters"}:
        raise ModelFileError("this gradbox file holds arrays but no model (use gradbox.load to read it)")
    spec, mapping = info["spec"], info["parameters"]
    try:
        expected = _check_spec(spec)
    except (TypeError, ValueError, RecursionError) as exc:
        raise ModelFileError(f"invalid model spec: {exc}") from None
    names = [n for n, _, _ in expected]
    if not isinstance(mapping, dict) or sorted(mapping) != sorted(names):
        got = list(mapping) if isinstance(mapping, dict) else type(mapping).__name__
        raise ModelFileError(f"model parameters: expected {names}, received {str(got)[:200]}")
    # NOTE: every declared size is checked against the (already bounded) array table before a layer is built
    for name, shape, dtype in expected:
        key = mapping[name]
        value = arrays.get(key) if isinstance(key, str) else None
        if value is None:
            raise ModelFileError(f"model parameter {name!r}: array {key!r} is missing")
        if value.shape != shape or value.dtype != dtype:
            raise ModelFileError(f"model parameter {name!r}: expected {shape} {dtype}, received "
                                 f"{value.shape} {value.dtype}")
    model = _build_untouched_rng(spec)
    _load_tied(model, mapping, arrays, expected)
    model.eval()
    used = set(mapping.values())
    extras = {k: v for k, v in arrays.items() if k not in used}
    return ModelFile(model=model, arrays=extras, metadata=header["metadata"], spec=spec)


def _build_untouched_rng(spec):
    """``model_from_spec(spec)``; the initial weights it draws do not advance gradbox's global generator."""
    from .random import get_rng_state, set_rng_state

    state = get_rng_state()
    try:
        return model_from_spec(spec)
    except (TypeError, ValueError, RecursionError) as exc:
        raise ModelFileError(f"invalid model spec: {exc}") from None
    finally:
        set_rng_state(state)


def _load_tied(model, mapping, arrays, expected) -> None:
    """Copy the file's arrays into ``model``; names that share one array become one parameter."""
    from .nn.module import state_slots

    slots = {name: (owner, attr) for name, owner, attr, _ in state_slots(model)}
    built = {name: (tuple(live.shape), live.dtype) for name, _, _, live in state_slots(model)}
    declared = {name: (shape, dtype) for name, shape, dtype in expected}
    if built != declared:
        raise ModelFileError(f"invalid model spec: the layers built hold {str(built)[:200]}, but their specs "
                             f"declare {str(declared)[:200]}")
    owner_of_key = {}
    for name, (owner, attr) in slots.items():
        key = mapping[name]
        if key not in owner_of_key:
            owner_of_key[key] = (name, owner, attr)
            continue
        # NOTE: a parameter (or buffer) shared in the saved model is shared again, as one object
        first, src_owner, src_attr = owner_of_key[key]
        if (attr in owner._parameters) != (src_attr in src_owner._parameters):
            raise ModelFileError(f"model parameter {name!r}: shares array {key!r} with {first!r}, which is not "
                                 "the same kind of state (parameter or buffer)")
        state = src_owner._parameters if src_attr in src_owner._parameters else src_owner._buffers
        setattr(owner, attr, state[src_attr])
    for name, (owner, attr) in slots.items():
        live = owner._parameters[attr].data if attr in owner._parameters else owner._buffers[attr]
        np.copyto(live, arrays[mapping[name]])


def load_model(path) -> ModelFile:
    """Load a model saved by :func:`save_model`: a :class:`ModelFile` with ``.model`` (in ``eval()`` mode),
    ``.arrays`` and ``.metadata``.

    Raises
    ------
    FileNotFoundError
        No such file.
    ModelFileError
        Corrupt, truncated or foreign file, or a gradbox file without a model.
    """
    arrays, _, header = _read(path)
    try:
        return _model_from_header(arrays, header)
    except ModelFileError as exc:
        raise ModelFileError(f"{os.fspath(path)}: {exc}") from None
