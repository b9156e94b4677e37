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
the start of the data) plus, for model files, ``"model": {"spec": [...], "parameters": {...}}``.

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
import numbers
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
    model : gradbox.nn.Sequential
        The rebuilt network with its weights loaded, in ``eval()`` mode.
    arrays : dict of str to ndarray
        The extra arrays saved alongside (e.g. normalisation ``mean``/``std``), in saved order.
    metadata : dict
        The user metadata saved alongside.
    spec : list of dict
        The architecture as :func:`model_to_spec` wrote it.
    """

    model: object
    arrays: dict = field(default_factory=dict)
    metadata: dict = field(default_factory=dict)
    spec: list = field(default_factory=list)


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


def _serialize(arrays, metadata=None, model=None) -> bytes:
    """The whole file as bytes (used by tests and small files)."""
    return b"".join(bytes(p) for p in _serialize_parts(arrays, metadata, model))


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
_LAYER_KEYS = {
    "Linear": {"in_features", "out_features", "bias", "dtype"},
    "ReLU": set(), "Sigmoid": set(), "Tanh": set(),
    "LeakyReLU": {"negative_slope"}, "Softmax": {"dim"}, "Dropout": {"p"}, "Flatten": set(),
}
_SPEC_DTYPES = ("float16", "float32", "float64")


def model_to_spec(model) -> list:
    """Describe a ``Sequential`` as a JSON-friendly list of layer dicts.

    Supports ``Linear``, ``ReLU``, ``Sigmoid``, ``Tanh``, ``LeakyReLU``, ``Softmax``,
    ``Dropout`` and ``Flatten``; anything else raises ``TypeError``.

    >>> import gradbox as gb
    >>> model_to_spec(gb.nn.Sequential(gb.nn.Linear(2, 3, rng=0), gb.nn.ReLU()))
    [{'type': 'Linear', 'in_features': 2, 'out_features': 3, 'bias': True, 'dtype': 'float32'}, {'type': 'ReLU'}]
    """
    from . import nn

    if type(model) is not nn.Sequential:
        raise TypeError(f"model: expected a gradbox.nn.Sequential, received {type(model).__name__} "
                        "(wrap a single layer as Sequential(layer))")
    spec = []
    for i, m in enumerate(model):
        kind = type(m).__name__
        if kind not in _LAYER_KEYS or type(m) is not getattr(nn, kind):
            raise TypeError(f"model[{i}]: expected one of {sorted(_LAYER_KEYS)} (subclasses and custom modules "
                            f"cannot be saved), received {type(m).__module__}.{type(m).__qualname__}")
        entry = {"type": kind}
        if kind == "Linear":
            entry.update(in_features=m.in_features, out_features=m.out_features, bias=m.bias is not None,
                         dtype=str(m.weight.dtype))
        elif kind == "LeakyReLU":
            entry["negative_slope"] = m.negative_slope
        elif kind == "Softmax":
            entry["dim"] = m.dim
        elif kind == "Dropout":
            entry["p"] = m.p
        spec.append(entry)
    return spec


def _check_spec(spec) -> list:
    """Validate a spec; return the expected (parameter name, shape, dtype) list."""
    if not isinstance(spec, list):
        raise ValueError(f"spec: expected a list of layer dicts, received {type(spec).__name__}")
    params = []
    for i, entry in enumerate(spec):
        where = f"spec[{i}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("type"), str):
            raise ValueError(f"{where}: expected a dict with a 'type' string, received {str(entry)[:80]}")
        kind = entry["type"]
        if kind not in _LAYER_KEYS:
            raise TypeError(f"{where}['type']: expected one of {sorted(_LAYER_KEYS)}, received {kind!r}")
        extra = set(entry) - {"type"} - _LAYER_KEYS[kind]
        missing = {"in_features", "out_features"} - set(entry) if kind == "Linear" else set()
        if extra or missing:
            raise ValueError(f"{where} ({kind}): unexpected keys {sorted(extra)}, missing keys {sorted(missing)}")
        if kind == "Linear":
            n_in, n_out = entry["in_features"], entry["out_features"]
            if not (_is_int(n_in) and _is_int(n_out) and n_in > 0 and n_out > 0):
                raise ValueError(f"{where} (Linear): expected positive int in_features/out_features, "
                                 f"received {n_in!r}, {n_out!r}")
            if not isinstance(entry.get("bias", True), bool):
                raise ValueError(f"{where} (Linear): expected bias true/false, received {entry['bias']!r}")
            if entry.get("dtype", "float32") not in _SPEC_DTYPES:
                raise ValueError(f"{where} (Linear): expected dtype in {_SPEC_DTYPES}, received {entry['dtype']!r}")
            dtype = np.dtype(entry.get("dtype", "float32"))
            params.append((f"{i}.weight", (n_out, n_in), dtype))
            if entry.get("bias", True):
                params.append((f"{i}.bias", (n_out,), dtype))
        else:
            for key in _LAYER_KEYS[kind]:
                if key in entry and (not isinstance(entry[key], numbers.Real) or isinstance(entry[key], bool)):
                    raise ValueError(f"{where} ({kind}): expected a number for {key!r}, received {entry[key]!r}")
            if kind == "Softmax" and "dim" in entry and not _is_int(entry["dim"]):
                raise ValueError(f"{where} (Softmax): expected an int dim, received {entry['dim']!r}")
    return params


def model_from_spec(spec) -> "object":
    """Build an (untrained) ``Sequential`` from :func:`model_to_spec`'s output.

    >>> import gradbox as gb
    >>> model_from_spec([{"type": "Linear", "in_features": 2, "out_features": 1}, {"type": "Sigmoid"}])[0].weight.shape
    (1, 2)
    """
    from . import nn

    _check_spec(spec)
    layers = []
    for entry in spec:
        kind, kw = entry["type"], {k: v for k, v in entry.items() if k != "type"}
        if kind == "Linear":
            dtype = np.dtype(kw.pop("dtype", "float32"))
            # NOTE: a fixed seed, so rebuilding a model does not consume the global generator.
            layer = nn.Linear(kw["in_features"], kw["out_features"], bias=kw.get("bias", True),
                              dtype=np.float32 if dtype == np.float16 else dtype, rng=0)
            if dtype == np.float16:
                layer.astype(np.float16)
        else:
            layer = getattr(nn, kind)(**kw)
        layers.append(layer)
    return nn.Sequential(*layers)


def save_model(path, model, *, arrays: Mapping | None = None, metadata: dict | None = None) -> None:
    """Save a ``Sequential`` (architecture + weights), extra arrays and metadata to ``path`` atomically.

    Parameters
    ----------
    path : str or os.PathLike
    model : gradbox.nn.Sequential
        Of the layers :func:`model_to_spec` supports.
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
    state = model.state_dict()
    for name, value in state.items():
        if not np.isfinite(value).all():
            bad = int(np.size(value) - np.count_nonzero(np.isfinite(value)))
            raise ValueError(f"model: expected finite weights, received {bad} NaN/inf values in parameter "
                             f"{name!r} (the model diverged; nothing was written)")
    if arrays is not None and not isinstance(arrays, Mapping):
        raise TypeError(f"arrays: expected a mapping of name to array, received {type(arrays).__name__}")
    extra = dict(arrays or {})
    table, mapping = {}, {}
    for name, value in state.items():
        key = f"model.{name}"
        if key in extra:
            raise ValueError(f"arrays: expected names other than {key!r} (reserved for the model's weights)")
        table[key] = value
        mapping[name] = key
    table.update(extra)
    _write(path, _serialize_parts(table, metadata, model={"spec": spec, "parameters": mapping}))


def _model_from_header(arrays, header):
    info = header.get("model")
    if not isinstance(info, dict) or set(info) != {"spec", "parameters"}:
        raise ModelFileError("this gradbox file holds arrays but no model (use gradbox.load to read it)")
    spec, mapping = info["spec"], info["parameters"]
    try:
        expected = _check_spec(spec)
    except (TypeError, ValueError) as exc:
        raise ModelFileError(f"invalid model spec: {exc}") from None
    if not isinstance(mapping, dict) or list(mapping) != [n for n, _, _ in expected]:
        got = list(mapping) if isinstance(mapping, dict) else type(mapping).__name__
        raise ModelFileError(f"model parameters: expected {[n for n, _, _ in expected]}, received {str(got)[:200]}")
    state = {}
    for name, shape, dtype in expected:
        key = mapping[name]
        value = arrays.get(key) if isinstance(key, str) else None
        if value is None:
            raise ModelFileError(f"model parameter {name!r}: array {key!r} is missing")
        if value.shape != shape or value.dtype != dtype:
            raise ModelFileError(f"model parameter {name!r}: expected {shape} {dtype}, received "
                                 f"{value.shape} {value.dtype}")
        state[name] = value
    used = set(mapping.values())
    if len(used) != len(mapping):
        raise ModelFileError("model parameters: two parameters point at the same array")
    try:
        model = model_from_spec(spec)
        model.load_state_dict(state)
    except (TypeError, ValueError) as exc:
        raise ModelFileError(f"invalid model spec: {exc}") from None
    model.eval()
    extras = {k: v for k, v in arrays.items() if k not in used}
    return ModelFile(model=model, arrays=extras, metadata=header["metadata"], spec=spec)


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


def _load_model_bytes(buf) -> ModelFile:
    """Parse a model file from bytes (used by the fuzz tests)."""
    arrays, _, header = _parse(buf)
    return _model_from_header(arrays, header)
