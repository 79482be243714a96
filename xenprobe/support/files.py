# SPDX-License-Identifier: GPL-2.0-only
"""Reading the small input files a person names (config, scenario): never blocks on a
FIFO or a device, never slurps /dev/zero, and fails with an OSError whose strerror is
fit for a one-line message; and noticing, without reading them, that files changed."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

MAX_BYTES = 1 << 20  # our inputs are a few kilobytes


def read_small(path: Path, limit: int = MAX_BYTES) -> bytes:
    """The bytes of `path`, a regular file of at most `limit` bytes. Raises OSError
    (IsADirectoryError, or EINVAL "not a regular file", EFBIG "larger than ...");
    ValueError for a path with a NUL in it."""
    # O_NONBLOCK: opening a FIFO with no writer would otherwise wait for one.
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR))
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        if st.st_size > limit:
            raise OSError(errno.EFBIG, f"larger than {limit} bytes")
        chunks, total = [], 0
        while total <= limit:
            chunk = os.read(fd, limit + 1 - total)
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        if total > limit:  # it grew while we read
            raise OSError(errno.EFBIG, f"larger than {limit} bytes")
        return b"".join(chunks)
    finally:
        os.close(fd)


def signature(paths: tuple[Path, ...]) -> tuple[object, ...]:
    """What changes when one of `paths` is replaced or rewritten (inode, size, mtime),
    None for one that cannot be looked at: compared, it says whether to read again."""
    out: list[object] = []
    for path in paths:
        try:
            st = os.stat(path)
            out.append((st.st_ino, st.st_size, st.st_mtime_ns))
        except OSError:
            out.append(None)
    return tuple(out)
