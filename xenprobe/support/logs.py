# SPDX-License-Identifier: GPL-2.0-only
"""structlog set-up: a console renderer for a person at a terminal, JSON lines otherwise.

When stderr is the journal (systemd says so in ``JOURNAL_STREAM``), each line starts with
the sd-daemon priority prefix ``<N>``, which journald strips and stores as the entry's
PRIORITY, so ``journalctl -p warning`` finds the warnings and errors.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any, TextIO

import structlog

# syslog(3) priorities, as sd-daemon(3) prefixes them.
PRIORITY: Mapping[str, int] = {
    "critical": 2,
    "error": 3,
    "warning": 4,
    "info": 6,
    "debug": 7,
}


def configure(level: str = "warning", stream: TextIO | None = None,
              json: bool | None = None) -> None:
    out = stream or sys.stderr
    as_json = not out.isatty() if json is None else json
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer() if as_json
        else structlog.dev.ConsoleRenderer(colors=out.isatty()))
    if is_journal(out):
        renderer = with_priority(renderer)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]),
        # Look the stream up at every write: sys.stderr may be replaced after set-up
        # (pytest's capture, a daemon's redirection), and a kept reference goes stale.
        logger_factory=structlog.PrintLoggerFactory(
            _Current() if stream is None else stream),  # type: ignore[arg-type]
        cache_logger_on_first_use=False,
    )


def is_journal(stream: TextIO, environ: Mapping[str, str] = os.environ) -> bool:
    """True if ``stream`` is the journal stream systemd connected (systemd.exec(5):
    JOURNAL_STREAM is the stream's "device:inode"; a redirected stderr does not match)."""
    want = environ.get("JOURNAL_STREAM", "")
    try:
        st = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):  # closed, or no descriptor (StringIO)
        return False
    return want == f"{st.st_dev}:{st.st_ino}"


def with_priority(render: structlog.types.Processor) -> structlog.types.Processor:
    """``render`` (a renderer: it returns the line), the line prefixed with the level's
    syslog priority."""

    def prefixed(logger: Any, method: str, event: MutableMapping[str, Any]) -> str:
        priority = PRIORITY.get(str(event.get("level", "")), PRIORITY["info"])
        line = render(logger, method, event)
        text = line.decode() if isinstance(line, bytes | bytearray) else str(line)
        return f"<{priority}>{text}"

    return prefixed


class _Current:
    """sys.stderr as it is when written to."""

    # A log line that cannot be written (stderr closed, full, a broken pipe) is dropped:
    # logging must never be what ends the program.
    def write(self, text: str) -> int:
        try:
            return sys.stderr.write(text)
        except (OSError, ValueError, AttributeError):
            return 0

    def flush(self) -> None:
        with contextlib.suppress(OSError, ValueError, AttributeError):
            sys.stderr.flush()
