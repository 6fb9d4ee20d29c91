"""Reading the user's input files, bounded and checked before anything is loaded.

``infoloss measure`` reads distributions from text (CSV or whitespace-separated) and from NumPy
``.npy`` files. Everything here turns a bad file into a :class:`CLIError` naming the file, and
never reads without bound:

- a text input is at most :data:`MAX_TEXT_BYTES` (16 MiB) and :data:`MAX_ROWS` rows; a regular
  file is refused from its size before it is read, a pipe is read up to one byte past the limit;
- a ``.npy`` input must be a regular file; its header is read with
  :func:`numpy.lib.format.read_magic` / ``read_array_header_*`` and checked (real numbers, no
  pickled objects, at most :data:`MAX_NPY_ENTRIES` entries, the file's size equal to header +
  data) before the data are read;
- devices (``/dev/zero``), sockets and directories are refused without being opened;
- a UTF-8 byte-order mark (as Excel writes at the start of "CSV UTF-8") is skipped.
"""

from __future__ import annotations

import errno
import math
import os
import stat
from typing import BinaryIO

import numpy as np

from ._common import CLIError

__all__ = [
    "MAX_NPY_ENTRIES",
    "MAX_ROWS",
    "MAX_TEXT_BYTES",
    "read_npy",
    "read_text",
    "stat_input",
]

#: The largest text (CSV / whitespace) input, in bytes: 16 MiB.
MAX_TEXT_BYTES = 16 * 2**20
#: The most rows a text input may hold, and the most distributions one run computes.
MAX_ROWS = 1_000_000
#: The most entries a ``.npy`` input may hold: 2**23 = 8,388,608 (64 MiB as float64).
MAX_NPY_ENTRIES = 2**23

#: Errors of ``os.stat`` that mean "this is not the name of a file" (so it may be inline numbers).
_NOT_A_FILE = {errno.ENOENT, errno.ENOTDIR, errno.ENAMETOOLONG}


def _mib(n: int) -> str:
    """A byte count for messages.

    Examples
    --------
    >>> _mib(16 * 2**20), _mib(3 * 2**19), _mib(100)
    ('16 MiB', '1.5 MiB', '100 bytes')
    """
    if n < 2**20:
        return f"{n} bytes"
    return f"{n / 2**20:.3g} MiB"


def stat_input(path: str, option: str) -> os.stat_result | None:
    """``os.stat`` of ``path``, or None when no file has that name (``path`` may be numbers).

    Any other failure (permission denied on a directory on the way, a symlink loop) is a
    :class:`CLIError` naming the file.
    """
    if "\0" in path:
        return None
    try:
        return os.stat(path)
    except OSError as e:
        if e.errno in _NOT_A_FILE:
            return None
        raise CLIError(f"{option} {path}: cannot read ({e.strerror or e})") from None


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a special file"


def _check_kind(path: str, option: str, st: os.stat_result, *, pipes: bool) -> None:
    mode = st.st_mode
    if stat.S_ISREG(mode) or (pipes and stat.S_ISFIFO(mode)):
        return
    kind = "a named pipe" if stat.S_ISFIFO(mode) else _kind(mode)
    raise CLIError(f"{option} {path}: is {kind}, not a regular file")


def _open(path: str, option: str) -> BinaryIO:
    try:
        return open(path, "rb")
    except OSError as e:
        raise CLIError(f"{option} {path}: cannot read ({e.strerror or e})") from None


def _read(fh: BinaryIO, n: int, path: str, option: str) -> bytes:
    try:
        return fh.read(n)
    except OSError as e:
        raise CLIError(f"{option} {path}: cannot read ({e.strerror or e})") from None


def _too_big(path: str, what: str) -> CLIError:
    return CLIError(
        f"{path}: {what}; text inputs are limited to {_mib(MAX_TEXT_BYTES)} "
        f"({MAX_TEXT_BYTES:,} bytes; a .npy file may hold up to {MAX_NPY_ENTRIES:,} numbers)"
    )


def read_text(path: str, option: str, st: os.stat_result) -> str:
    """The text of a CSV / whitespace input, at most :data:`MAX_TEXT_BYTES`, BOM removed."""
    _check_kind(path, option, st, pipes=True)
    if stat.S_ISREG(st.st_mode) and st.st_size > MAX_TEXT_BYTES:
        raise _too_big(path, f"is {st.st_size:,} bytes")
    with _open(path, option) as fh:
        data = _read(fh, MAX_TEXT_BYTES + 1, path, option)
    if len(data) > MAX_TEXT_BYTES:  # a pipe, or a file that grew since it was checked
        raise _too_big(path, f"holds more than {_mib(MAX_TEXT_BYTES)}")
    try:
        return data.decode("utf-8-sig")  # -sig: skip a UTF-8 byte-order mark
    except UnicodeDecodeError:
        raise CLIError(f"{path}: not a UTF-8 text file (use .npy for binary arrays)") from None


def _header(fh: BinaryIO, path: str) -> tuple[tuple[int, ...], bool, np.dtype]:
    """Shape, Fortran order and dtype from a ``.npy`` header (the file left at the data)."""
    fmt = np.lib.format
    try:
        version = fmt.read_magic(fh)
        if version == (1, 0):
            shape, fortran, dtype = fmt.read_array_header_1_0(fh)
        elif version == (2, 0):
            shape, fortran, dtype = fmt.read_array_header_2_0(fh)
        else:
            raise CLIError(
                f"{path}: .npy format version {version[0]}.{version[1]} is not supported "
                "(versions 1.0 and 2.0 are; numpy.save writes them for numeric arrays)"
            )
    except ValueError as e:  # numpy's messages for a bad or incomplete header
        fh.seek(0)
        if fh.read(4) == b"PK\x03\x04":
            raise CLIError(f"{path}: is an .npz archive; save one array with numpy.save") from None
        what = "is truncated" if str(e).startswith("EOF") else "is not a valid .npy file"
        raise CLIError(f"{path}: {what} ({e})") from None
    return tuple(int(n) for n in shape), bool(fortran), np.dtype(dtype)


def read_npy(path: str, option: str, st: os.stat_result) -> np.ndarray:
    """A ``.npy`` file's array as float64, after checking its header against its size."""
    _check_kind(path, option, st, pipes=False)
    with _open(path, option) as fh:
        size = os.fstat(fh.fileno()).st_size
        if size == 0:
            raise CLIError(f"{path}: is empty (0 bytes), not a .npy file")
        shape, fortran, dtype = _header(fh, path)
        if dtype.hasobject:
            raise CLIError(f"{path}: holds Python objects (pickled data), which are not loaded")
        if dtype.names is not None or dtype.kind not in "biuf":
            raise CLIError(f"{path}: holds {dtype} data, not real numbers")
        entries = math.prod(shape)  # Python integers: a header's huge shape cannot overflow
        nbytes = entries * dtype.itemsize
        have = size - fh.tell()
        if have != nbytes:
            problem = "is truncated" if have < nbytes else "has extra bytes after the data"
            raise CLIError(
                f"{path}: {problem}: its header describes a {shape} {dtype} array "
                f"({nbytes:,} bytes of data) but the file holds {have:,}"
            )
        if entries > MAX_NPY_ENTRIES:
            raise CLIError(
                f"{path}: holds {entries:,} numbers (shape {shape}); the limit is "
                f"{MAX_NPY_ENTRIES:,}"
            )
        if len(shape) == 0 or entries == 0:
            raise CLIError(f"{path}: holds no distribution (shape {shape})")
        data = _read(fh, nbytes, path, option)
    if len(data) != nbytes:  # the file shrank since its size was read
        raise CLIError(f"{path}: is truncated ({len(data):,} of {nbytes:,} bytes of data)")
    arr = np.frombuffer(data, dtype=dtype).reshape(shape, order="F" if fortran else "C")
    return arr.astype(np.float64)
