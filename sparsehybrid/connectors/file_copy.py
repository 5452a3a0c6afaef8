"""Copy a directory of engine files as they are allocated on disk: holes stay holes.

The embedded store's files are mostly sparse (write-ahead logs and memory-mapped segment files
are created at their full size and filled as points arrive), so a plain copy would write
gigabytes of zeros. Only the data extents are copied (``SEEK_DATA``/``SEEK_HOLE``), in the kernel
(``copy_file_range``) where it can, and every file is synced before the copy is called done.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path

#: Bytes copied between two progress calls (and per ``copy_file_range`` call).
PIECE = 64 * 2**20


def allocated_bytes(path: Path) -> int:
    """Bytes the files under ``path`` occupy on disk (sparse files count only their data)."""
    return sum(f.stat().st_blocks * 512 for f in path.rglob("*") if f.is_file())


def copy_tree(source: Path, target: Path, on_bytes: Callable[[int], None] | None = None) -> None:
    """Copy the directory ``source`` to ``target`` (which must not exist), file by file, keeping
    holes; ``on_bytes(n)`` after each piece. Every file and directory is fsynced."""
    target.mkdir(parents=True)
    for folder, dirs, files in os.walk(source):
        here = target / Path(folder).relative_to(source)
        for name in dirs:
            (here / name).mkdir()
        for name in files:
            copy_file(Path(folder) / name, here / name, on_bytes)
        fsync_dir(here)


def copy_file(source: Path, target: Path, on_bytes: Callable[[int], None] | None = None) -> None:
    """Copy one regular file, data extents only, then fsync it."""
    with source.open("rb") as src, target.open("wb") as dst:
        size = os.fstat(src.fileno()).st_size
        dst.truncate(size)  # the holes: a file of the full length that holds no blocks yet
        for start, end in _data_extents(src.fileno(), size):
            _copy_range(src.fileno(), dst.fileno(), start, end, on_bytes)
        os.fsync(dst.fileno())


def _data_extents(fd: int, size: int) -> list[tuple[int, int]]:
    """The ``[start, end)`` byte ranges of ``fd`` that hold data (the whole file where the file
    system cannot say)."""
    extents, position = [], 0
    try:
        while position < size:
            try:
                start = os.lseek(fd, position, os.SEEK_DATA)
            except OSError as exc:
                if exc.errno == errno.ENXIO:  # only a hole is left
                    break
                raise
            end = os.lseek(fd, start, os.SEEK_HOLE)
            extents.append((start, min(end, size)))
            position = end
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP):
            raise
        return [(0, size)] if size else []
    return extents


def _copy_range(src: int, dst: int, start: int, end: int, on_bytes: Callable[[int], None] | None) -> None:
    position = start
    while position < end:
        count = min(PIECE, end - position)
        try:
            copied = os.copy_file_range(src, dst, count, position, position)
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL):
                raise
            copied = os.pwrite(dst, os.pread(src, count, position), position)
        if copied == 0:  # the file shrank under us: the source is not quiet
            raise OSError(errno.EIO, f"the source file ended early at byte {position}")
        position += copied
        if on_bytes is not None:
            on_bytes(copied)


def fsync_dir(path: Path) -> None:
    """Make a folder's entries (a rename into it, a new file) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
