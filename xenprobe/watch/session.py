# SPDX-License-Identifier: GPL-2.0-only
"""The watch's read loop: trace_pipe lines -> events -> paired calls -> verdicts ->
the sink (terminal view or JSON lines), until told to stop."""

from __future__ import annotations

import errno
import os
import select
import time
from collections.abc import Callable
from typing import Protocol

from xenprobe.watch.arming import Armed
from xenprobe.watch.attribution import Attribution, Process
from xenprobe.watch.pairing import Call, Pairer
from xenprobe.watch.tally import Tally
from xenprobe.watch.trace_line import lost, parse

POLL_S = 0.2        # how late a stop request is noticed at most
STATS_EVERY_S = 1.0  # how often the per-CPU overrun counters are read
READ_SIZE = 1 << 16


class Sink(Protocol):
    def call(self, call: Call, process: Process, tally: Tally) -> None: ...
    def tick(self, tally: Tally) -> None: ...


class Session:
    def __init__(self, armed: Armed, sink: Sink, *, everything: bool,
                 attribution: Attribution | None = None) -> None:
        self.armed = armed
        self.sink = sink
        self.everything = everything
        self.pairer = Pairer()
        self.attribution = attribution or Attribution()
        self.tally = Tally()
        self._partial = b""
        self._lost_lines = 0  # LOST notes in the pipe itself
        self.unparsed = 0
        self.failure: str | None = None  # why reading stopped early, if it did

    def run(self, should_stop: Callable[[], bool], deadline: float | None) -> None:
        next_stats = 0.0
        while not should_stop():
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                break
            if now >= next_stats:
                self._update_lost()
                self.sink.tick(self.tally)
                next_stats = now + STATS_EVERY_S
            wait = POLL_S if deadline is None else max(0.0, min(POLL_S, deadline - now))
            try:
                ready, _, _ = select.select([self.armed.pipe], [], [], wait)
                if ready:
                    self._drain()
            except OSError as e:
                # The instance removed under us (someone's rmdir), or tracefs gone.
                self.failure = f"reading {self.armed.instance.path}/trace_pipe: {e.strerror}"
                break
        if self.failure is None:
            try:
                self._drain()
            except OSError as e:
                self.failure = f"reading {self.armed.instance.path}/trace_pipe: {e.strerror}"
        self._finish_partial()
        self.pairer.finish()
        self._update_lost()

    def _update_lost(self) -> None:
        self.tally.lost = self.armed.instance.lost() + self._lost_lines

    def _drain(self) -> None:
        while True:
            try:
                chunk = os.read(self.armed.pipe, READ_SIZE)
            except OSError as e:
                if e.errno in (errno.EAGAIN, errno.EINTR):
                    return
                raise
            if not chunk:
                return
            data = self._partial + chunk
            *lines, self._partial = data.split(b"\n")
            for raw in lines:
                self._line(raw.decode("utf-8", "replace"))

    def _finish_partial(self) -> None:
        if self._partial:
            self._line(self._partial.decode("utf-8", "replace"))
            self._partial = b""

    def _line(self, text: str) -> None:
        if not text.strip():
            return
        ev = parse(text)
        if ev is None:
            n = lost(text)
            if n:
                self._lost_lines += n
            else:
                self.unparsed += 1
            return
        call = self.pairer.feed(ev)
        if call is None:
            return
        process = self.attribution.of(call.pid)
        self.tally.add(call, process)
        if call.damaged or self.everything:
            self.sink.call(call, process, self.tally)
