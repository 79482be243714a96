"""Atomic writes for node_exporter's textfile collector.

The text goes to a temporary file in the same directory (so rename(2) stays on one
filesystem and is atomic), named so the collector's *.prom glob never matches it, is
flushed to disk, made readable by node_exporter's user, and renamed over the target:
a scrape sees the old file or the new one, never half of either. No sample timestamps
(the textfile collector refuses them).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from prometheus_client.exposition import generate_latest
from prometheus_client.registry import CollectorRegistry

MODE = 0o644  # node_exporter runs as its own user and must read the file


def write(path: Path, text: str) -> None:
    """Replace `path` with `text`, atomically. Raises OSError."""
    directory = path.parent
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
            os.fchmod(f.fileno(), MODE)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    # Make the rename itself durable; best effort (some filesystems refuse it).
    with contextlib.suppress(OSError):
        dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


def write_registry(path: Path, registry: CollectorRegistry) -> None:
    write(path, generate_latest(registry).decode("utf-8"))
