# SPDX-License-Identifier: GPL-2.0-only
"""Standard streams that may be closed, full or a broken pipe.

A report that did not reach its reader must never look like "every layer agrees", and
a stream failure is the reader's doing, not a bug in xenprobe (exit 4). So:

- At start-up a closed fd 0, 1 or 2 is reserved on /dev/null, so that no file xenprobe
  opens later (the device, a temporary textfile, the scenario memfd) becomes "stdout"
  and receives the report or the error messages. The streams stay marked closed: a
  write to the closed stdout fails with EBADF, a write to the closed stderr is dropped.
- The report is written and flushed through `deliver`, which says whether it arrived.
- stderr failures are swallowed: there is nowhere left to report them, and the exit
  code still says what happened.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sys
from typing import TextIO

_reserved: list[int] = []  # descriptors found closed and held on /dev/null


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def prepare() -> None:
    """At start-up: reserve closed descriptors, and let stdout and stderr take any
    text (a character the locale's encoding lacks is written as an escape, not an
    error that would lose the report)."""
    reserve_closed()
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            with contextlib.suppress(OSError, ValueError):
                reconfigure(errors="backslashreplace")


def reserve_closed() -> None:
    """Hold the closed standard descriptors on /dev/null (see the module docstring)."""
    for fd in (0, 1, 2):
        if _is_open(fd):
            continue
        null = os.open(os.devnull, os.O_RDWR)  # the lowest free descriptor: fd itself
        if null != fd:  # cannot happen: a lower one would be open
            os.dup2(null, fd)
            os.close(null)
        _reserved.append(fd)
    if 1 in _reserved:
        sys.stdout = _Closed("stdout")
    if 2 in _reserved:
        sys.stderr = _Closed("stderr")


def release_reserved() -> None:
    """Close the reserved descriptors again, before exec: the new program must see the
    standard streams as they were given to us."""
    while _reserved:
        os.close(_reserved.pop())


def deliver(text: str, stream: TextIO | None = None) -> str | None:
    """Write and flush `text` to stdout; None if it arrived, else why not."""
    out = sys.stdout if stream is None else stream
    try:
        out.write(text)
        out.flush()
    except (OSError, ValueError) as e:  # ValueError: written after close
        _discard(out)
        return _why(e)
    return None


def _why(e: BaseException) -> str:
    if isinstance(e, BrokenPipeError):
        return "broken pipe (the reader went away)"
    if isinstance(e, OSError) and e.errno == errno.EBADF:
        return "stdout is closed"
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    return str(e)


def _discard(out: TextIO) -> None:
    """Send what is still buffered for `out` to /dev/null, so that the interpreter's
    flush at exit does not fail again (and print "Exception ignored")."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, out.fileno())
        os.close(null)


def say(line: str) -> None:
    """One line to stderr; dropped if stderr cannot take it."""
    try:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()
    except (OSError, ValueError, AttributeError):
        _discard(sys.stderr)


class _Closed:
    """A standard stream that was closed when xenprobe started."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.closed = False

    def write(self, text: str) -> int:
        raise OSError(errno.EBADF, f"{self.name} is closed")

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        raise OSError(errno.EBADF, f"{self.name} is closed")
