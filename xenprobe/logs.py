"""structlog set-up: a console renderer for a person at a terminal, JSON lines otherwise."""

from __future__ import annotations

import logging
import sys
from typing import TextIO

import structlog


def configure(level: str = "warning", stream: TextIO | None = None,
              json: bool | None = None) -> None:
    out = stream or sys.stderr
    as_json = not out.isatty() if json is None else json
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer() if as_json
        else structlog.dev.ConsoleRenderer(colors=out.isatty()))
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


class _Current:
    """sys.stderr as it is when written to."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()
