# SPDX-License-Identifier: GPL-2.0-only
"""The watch's read loop: trace_pipe lines -> events -> paired calls -> verdicts ->
the sink (terminal view or JSON lines), until told to stop."""

from __future__ import annotations

import contextlib
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
from xenprobe.watch.tracefs import TracefsError
from xenprobe.watch.xen_release import KnownRelease

PROBE_COMM = "xenprobe"  # the comm of /usr/bin/xenprobe, the console script

# The reader never depends on poll(): an empty buffer gives EAGAIN at once, and the
# loop then waits in select() for at most IDLE_S before it reads again, so a stop
# request is noticed within IDLE_S whether or not the kernel's poll wakeup comes
# (ring_buffer_poll_wait differs across 5.10, 6.1 and 6.12). The wakeup, when it
# comes, only makes the read sooner (a short-lived caller is still there to name).
IDLE_S = 0.2
STATS_EVERY_S = 1.0  # how often the per-CPU overrun counters are read
# After a stop: how long what is left in the buffer is counted (read, not judged),
# so that a backlog of any size delays the exit by at most this.
COUNT_FOR_S = 1.0
READ_SIZE = 1 << 16


class Sink(Protocol):
    def call(self, call: Call, process: Process, tally: Tally) -> None: ...
    def tick(self, tally: Tally) -> None: ...


class Session:
    def __init__(self, armed: Armed, sink: Sink, *, everything: bool,
                 attribution: Attribution | None = None,
                 release: KnownRelease | None = None) -> None:
        self.armed = armed
        self.sink = sink
        self.everything = everything
        self.release = release or KnownRelease()
        self.pairer = Pairer(self.release.can_return)
        self.attribution = attribution or Attribution()
        self.tally = Tally()
        self._partial = b""
        self._lost_lines = 0  # LOST notes in the pipe itself
        self.unparsed = 0
        self.unread = 0  # events recorded but not judged: queued when told to stop
        self.failure: str | None = None  # why reading stopped early, if it did

    def run(self, should_stop: Callable[[], bool], deadline: float | None) -> None:
        def stopping() -> bool:
            return should_stop() or (deadline is not None and time.monotonic() >= deadline)

        next_stats = 0.0
        while not stopping():
            now = time.monotonic()
            if now >= next_stats:
                self._update_lost()
                self.sink.tick(self.tally)
                next_stats = now + STATS_EVERY_S
            try:
                more = self._read_some(stopping)
            except OSError as e:
                # The instance removed under us (someone's rmdir), or tracefs gone.
                self.failure = f"reading {self.armed.instance.path}/trace_pipe: {e.strerror}"
                break
            if not more:
                wait = IDLE_S if deadline is None else min(IDLE_S, deadline - now)
                with contextlib.suppress(OSError):
                    select.select([self.armed.pipe], [], [], max(0.0, wait))
        if self.failure is None:
            self._count_rest()
        self.pairer.finish()
        self._update_lost()

    def _update_lost(self) -> None:
        # The same overwritten events twice, not two kinds: trace_pipe's "[LOST N
        # EVENTS]" note is the per-CPU overrun counter's growth since the reader's last
        # page (kernel/trace/ring_buffer.c rb_get_reader_page: lost_events = overrun -
        # last_overrun). The counters cover every event; the notes, only those the
        # reader has reached, so they count only when the counters can't be read. The
        # counters only grow while the instance lives; a read that finds less (a CPU's
        # file unreadable for a moment) is not a fall of the exported counter.
        self.tally.lost = max(self.tally.lost, self.armed.instance.lost(), self._lost_lines)

    def _read(self) -> bytes | None:
        """One read of trace_pipe: None when it is empty now."""
        try:
            chunk = os.read(self.armed.pipe, READ_SIZE)
        except OSError as e:
            if e.errno in (errno.EAGAIN, errno.EINTR):
                return None
            raise
        return chunk or None

    def _read_some(self, stopping: Callable[[], bool]) -> bool:
        """Judge one read's worth of lines; a stop request between two lines leaves
        the rest of them unread (counted). False when the buffer was empty."""
        chunk = self._read()
        if chunk is None:
            return False
        *lines, self._partial = (self._partial + chunk).split(b"\n")
        for n, raw in enumerate(lines):
            if stopping():
                self.unread += sum(1 for x in lines[n:] if x.strip())
                return True
            self._line(raw.decode("utf-8", "replace"))
        return True

    def _count_rest(self) -> None:
        """Told to stop: the instance records nothing more, and what it still holds is
        counted, not judged, for at most COUNT_FOR_S; what is left after that is
        counted from the kernel's own per-CPU `entries`."""
        with contextlib.suppress(TracefsError):
            self.armed.instance.stop_recording()
        until = time.monotonic() + COUNT_FOR_S
        try:
            while time.monotonic() < until:
                chunk = self._read()
                if chunk is None:
                    break
                *lines, self._partial = (self._partial + chunk).split(b"\n")
                self.unread += sum(1 for x in lines if x.strip())
        except OSError:
            pass
        if self._partial.strip():
            self.unread += 1
        self._partial = b""
        self.unread += self.armed.instance.queued()

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
        self.release.learn(call.op, call.subop, call.raw)
        if not (call.damaged or self.everything):
            # Only counted: no process needed, and reading /proc/PID/stat for every
            # call was most of the reader's work (tests/test_watch_events.py).
            self.tally.add(call, None)
            return
        process = self.attribution.of(call.pid, call.comm)
        if call.comm == PROBE_COMM:
            # xenprobe's own probes (check, the timer's check, serve's sweeps) read
            # damaged values on purpose and report them themselves: counted as calls,
            # never as another program's damage.
            self.tally.add(call, None)
            return
        self.tally.add(call, process)
        self.sink.call(call, process, self.tally)
