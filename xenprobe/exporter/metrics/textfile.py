# SPDX-License-Identifier: GPL-2.0-only
"""Atomic writes for node_exporter's textfile collector.

The text is written, flushed to disk and made readable by node_exporter's user in a
file that has no name yet (O_TMPFILE), then given a temporary name in the target
directory (linkat) and renamed over the target: a scrape sees the old file or the new
one, never half of either, and a process killed while writing leaves nothing behind.
Only between linkat and rename, a moment with no I/O in it, does the file have its
temporary name; a kill exactly then leaves `.NAME.PID.XXXXXXXX.tmp`, and the next write
to NAME removes the temporaries of processes that no longer exist. Where O_TMPFILE is
not supported the file is written under its temporary name instead (same clean-up).
Temporary names never match the collector's *.prom glob. No sample timestamps (the
textfile collector refuses them).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
from pathlib import Path

from prometheus_client.exposition import generate_latest
from prometheus_client.registry import CollectorRegistry

MODE = 0o644  # node_exporter runs as its own user and must read the file

# O_TMPFILE missing from the kernel (EISDIR: it took the flag for O_DIRECTORY) or the
# filesystem (EOPNOTSUPP); /proc not mounted for the linkat (ENOENT).
_NO_ANONYMOUS = {errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL, errno.ENOENT, errno.EXDEV}


def temporary_name(path: Path, pid: int | None = None) -> Path:
    pid = os.getpid() if pid is None else pid
    return path.with_name(f".{path.name}.{pid}.{os.urandom(4).hex()}.tmp")


def write(path: Path, text: str) -> None:
    """Replace `path` with `text`, atomically. Raises OSError."""
    remove_stale(path)
    data = text.encode("utf-8")
    try:
        fd = os.open(path.parent, os.O_TMPFILE | os.O_WRONLY | os.O_CLOEXEC, 0o600)
    except OSError as e:
        if e.errno not in _NO_ANONYMOUS:
            raise
        _write_named(path, data)
    else:
        try:
            _fill(fd, data)
            tmp = temporary_name(path)
            try:
                _link(fd, tmp)
            except OSError as e:
                if e.errno not in _NO_ANONYMOUS:
                    raise
                _write_named(path, data)
                return
            _rename(tmp, path)
        finally:
            os.close(fd)
    _sync_directory(path.parent)


def _link(fd: int, name: Path) -> None:
    """Give the anonymous file `fd` the name `name`. os.link with a dir fd is
    linkat(AT_SYMLINK_FOLLOW), which follows the /proc magic link to the file itself
    (plain link(2) would try to link the magic link and fail)."""
    dfd = os.open(name.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.link(f"/proc/self/fd/{fd}", name.name, dst_dir_fd=dfd)
    finally:
        os.close(dfd)


def _fill(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
    os.fsync(fd)
    os.fchmod(fd, MODE)


def _write_named(path: Path, data: bytes) -> None:
    tmp = temporary_name(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        try:
            _fill(fd, data)
        finally:
            os.close(fd)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _rename(tmp, path)


def _rename(tmp: Path, path: Path) -> None:
    try:
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _sync_directory(directory: Path) -> None:
    """Make the rename itself durable; best effort (some filesystems refuse it)."""
    with contextlib.suppress(OSError):
        dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


def remove_stale(path: Path) -> list[Path]:
    """Remove the temporaries for `path` left by processes that no longer exist (killed
    between naming and renaming); those of live writers are theirs. Best effort."""
    own = re.compile(rf"\.{re.escape(path.name)}\.(\d+)\.[0-9a-f]{{8}}\.tmp")
    removed: list[Path] = []
    try:
        names = os.listdir(path.parent)
    except OSError:
        return removed
    for name in names:
        m = own.fullmatch(name)
        if m is None or _alive(int(m.group(1))):
            continue
        with contextlib.suppress(OSError):
            os.unlink(path.parent / name)
            removed.append(path.parent / name)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def write_registry(path: Path, registry: CollectorRegistry) -> None:
    write(path, generate_latest(registry).decode("utf-8"))
