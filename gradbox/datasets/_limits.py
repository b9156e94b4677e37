"""Limits on what a data file may make gradbox allocate, and the regular-file check.

A data file declares sizes: an HDF5 dataset's shape, an IDX header's dimensions, an ``.npy`` header's
shape inside an ``.npz``, the length a ``.gz`` stream inflates to, the rows of a CSV. A small file can
declare an enormous size (a 264 KB ``.h5`` declaring 16 GiB, a 2 MB ``.csv.gz`` inflating to 3 GB).
Every reader checks each declared size against the file's real size where the format fixes the
relation (uncompressed data must be in the file) and against one limit, **before** allocating:

``GRADBOX_MAX_DATA_BYTES`` (environment variable; default 2 GiB)
    The most memory one data file may declare, counted as its values stored as float64 (8 bytes each,
    what the readers convert to) and, for compressed streams, as inflated bytes. An integer number of
    bytes, optionally with a binary suffix: ``512M``, ``8G``. Raise it for a trusted large file.

Files that are not regular files (a FIFO, a device, a socket) are refused before they are opened:
reading a FIFO would wait forever for a writer, and ``/dev/zero`` never ends.
"""
from __future__ import annotations

import math
import os
import re
import stat

ENV_VAR = "GRADBOX_MAX_DATA_BYTES"
DEFAULT_MAX_DATA_BYTES = 2 * 1024**3
_SUFFIX = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


def max_data_bytes() -> int:
    """The limit in bytes: ``GRADBOX_MAX_DATA_BYTES`` if set, else 2 GiB.

    >>> max_data_bytes() >= 1
    True
    """
    raw = os.environ.get(ENV_VAR)
    if raw is None or not raw.strip():
        return DEFAULT_MAX_DATA_BYTES
    m = re.fullmatch(r"\s*(\d+)\s*([KMGT]?)(?:i?B)?\s*", raw, re.IGNORECASE)
    if m is None or int(m.group(1)) == 0:
        raise ValueError(f"{ENV_VAR}: expected a positive number of bytes such as 2147483648 or 2G, received {raw!r}")
    return int(m.group(1)) * _SUFFIX[m.group(2).upper()]


def _human(n: int) -> str:
    for unit, size in (("TiB", 1024**4), ("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{n} bytes"


class DataTooLarge(ValueError):
    """A data file declares more than ``GRADBOX_MAX_DATA_BYTES`` (a ValueError)."""


def check_declared(path, what: str, nbytes: int, limit: int | None = None) -> None:
    """Refuse ``nbytes`` (what the file declares for ``what``) above the limit, naming file and limit."""
    limit = max_data_bytes() if limit is None else limit
    if nbytes > limit:
        raise DataTooLarge(f"{path}: {what} would need {_human(nbytes)} ({nbytes} bytes) in memory, more than "
                           f"the limit of {_human(limit)} ({ENV_VAR}={limit}); refusing to load it (raise "
                           f"{ENV_VAR} for a trusted file)")


def values_bytes(shape) -> int:
    """The memory ``shape``'s values take as float64 (the readers' working dtype)."""
    return math.prod(int(d) for d in shape) * 8


_KINDS = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a directory"))


def _kind(mode) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def check_regular_file(path, name: str = "path") -> None:
    """Refuse a FIFO, device, socket or directory without opening it (FileNotFoundError if absent)."""
    st = os.stat(path)
    if not stat.S_ISREG(st.st_mode):
        raise ValueError(f"{name}: expected a regular file, received {_kind(st.st_mode)} {os.fspath(path)!r}")


def open_regular(path, name: str = "path"):
    """Open a regular file for binary reading; refuse anything else without blocking.

    NOTE: checked twice: by ``os.stat`` before opening, and by ``fstat`` on the opened descriptor
    (opened with O_NONBLOCK, so a FIFO swapped in between cannot block the open).
    """
    check_regular_file(path, name)
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise ValueError(f"{name}: expected a regular file, received {_kind(mode)} {os.fspath(path)!r}")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
