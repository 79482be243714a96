# SPDX-License-Identifier: GPL-2.0-only
"""`serve --watch`: the watch (xenprobe/watch) in a thread of the daemon, its findings
kept as counters for /metrics. It issues no hypercall, arms its probes when the thread
starts and removes them when the daemon stops (xenprobe/watch/arming.py).

Label sets are bounded like the domain series: at most `max_series` distinct
(op, subop, verdict, process) series; calls past the cap are counted under
subop="_other", process="_other" (and xenprobe_watch_series_dropped says how many).
The daemon's own calls (its sweeps) are not counted: its findings are in the sweep
metrics already.
"""

from __future__ import annotations

import os
import threading
from collections import Counter
from dataclasses import dataclass, field

import structlog

from xenprobe.support.errors import XenprobeError
from xenprobe.watch import arming, xen_release
from xenprobe.watch.attribution import Process
from xenprobe.watch.pairing import Call
from xenprobe.watch.paths import Paths
from xenprobe.watch.session import Session
from xenprobe.watch.tally import Tally
from xenprobe.xen.abi import watch_names

log = structlog.get_logger("xenprobe.exporter")

OTHER = "_other"
BUFFER_KB = 1024


@dataclass
class WatchCounts:
    """What the watch thread publishes; read by scrapes under the lock."""

    armed: bool = False
    error: str = ""
    calls: Counter[str] = field(default_factory=Counter)
    damaged: Counter[tuple[str, str, str, str]] = field(default_factory=Counter)
    dropped: int = 0
    lost: int = 0


class WatchLoop:
    def __init__(self, max_series: int) -> None:
        self.max_series = max_series
        self._lock = threading.Lock()
        self._counts = WatchCounts()
        self._stop = threading.Event()
        self._release: xen_release.Release | None = None
        self._thread = threading.Thread(target=self._run, name="xenprobe-watch",
                                        daemon=True)

    def start(self, release: xen_release.Release | None = None) -> None:
        """`release`: what the daemon's own detection found (host.Identity)."""
        self._release = release
        self._thread.start()

    def stop(self, timeout: float) -> bool:
        self._stop.set()
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def snapshot(self) -> WatchCounts:
        with self._lock:
            c = self._counts
            return WatchCounts(c.armed, c.error, Counter(c.calls), Counter(c.damaged),
                               c.dropped, c.lost)

    # -- the watch thread ------------------------------------------------------------

    def _run(self) -> None:
        paths = Paths.from_environment()
        try:
            tracefs = arming.preflight(paths)
            if arming.service_armed(paths):
                # Armed by the unit's ExecStartPre (outside the sandbox): only read.
                with arming.attached(paths, tracefs) as armed:
                    log.info("watch_attached", instance=str(armed.instance.path))
                    self._read(armed)
            else:
                _module, points = arming.locate(paths)
                with arming.armed(paths, tracefs, points, BUFFER_KB) as armed:
                    log.info("watch_armed",
                             hypercall=f"privcmd_ioctl+{points.hypercall:#x}")
                    self._read(armed)
        except XenprobeError as e:
            log.error("watch_failed", error=e.message)
            with self._lock:
                self._counts.error = e.message
        except Exception as e:  # never take the daemon down with it
            log.exception("watch_failed")
            with self._lock:
                self._counts.error = f"{type(e).__name__}: {e}"
        finally:
            with self._lock:
                self._counts.armed = False

    def _read(self, armed: arming.Armed) -> None:
        with self._lock:
            self._counts.armed = True
        # The daemon's own detection (its XENVER_version, issued by the daemon, not by
        # the watch); else the kernel log, out of reach inside xenprobe.service
        # (ProtectKernelLogs=); else a watched xen_version call (watch/xen_release.py).
        release = (xen_release.KnownRelease(self._release, "daemon")
                   if self._release is not None
                   else xen_release.at_start(str(Paths.from_environment().kernel_log)))
        session = Session(armed, self, everything=True, release=release)
        session.run(self._stop.is_set, None)
        self.tick(session.tally)
        if session.failure is not None:
            raise arming.CannotWatch(f"the watch stopped: {session.failure}")

    def call(self, call: Call, process: Process, tally: Tally) -> None:
        if (process.tgid or call.pid) == os.getpid():
            return
        op = call.op_name or OTHER
        with self._lock:
            c = self._counts
            c.calls[op] += 1
            # Each finding of a call (pairing.Call.findings: forged_errno or
            # out_of_range at the source, a mismatch on the way) under its verdict.
            sub = call.subop_name or ("" if call.subop is None else str(call.subop))
            for verdict in call.findings:
                key = (op, sub, verdict.value, call.comm)
                if key not in c.damaged and len(c.damaged) >= self.max_series:
                    c.dropped += 1
                    key = (op, OTHER, verdict.value, OTHER)
                c.damaged[key] += 1

    def tick(self, tally: Tally) -> None:
        with self._lock:
            self._counts.lost = tally.lost


def known_ops() -> list[str]:
    """Every op label the calls counter can take (exported at 0 from the start)."""
    return [*sorted(set(watch_names.OPS.values())), OTHER]
