# SPDX-License-Identifier: GPL-2.0-only
"""`xenprobe watch`: arm, read until SIGINT/SIGTERM/--duration, disarm, summarise.
Exit 1 if a damaged call was seen, 0 if none, 3 if it cannot watch (errors.py)."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path
from types import FrameType

from xenprobe.support.errors import ExitCode, UsageError
from xenprobe.watch import arming, probes, report, xen_release
from xenprobe.watch.paths import Paths
from xenprobe.watch.session import Session
from xenprobe.watch.tracefs import Tracefs

MIN_BUFFER_KB, MAX_BUFFER_KB = 64, 1 << 20
SERVICE_BUFFER_KB = 1024


def arm_for_service(config_path: Path | None) -> int:
    """`xenprobe watch --arm-for-service`: the ExecStartPre of xenprobe.service, run
    outside its sandbox. Arms only when the config's `watch` key is true."""
    from xenprobe.exporter import config as cfg  # noqa: PLC0415

    config = cfg.load(config_path or cfg.DEFAULT_PATH, explicit=config_path is not None,
                      overrides={})
    if not config.watch:
        return int(ExitCode.OK)
    paths = Paths.from_environment()
    tracefs = arming.preflight(paths)
    _module, points = arming.locate(paths)
    arming.arm_for_service(paths, tracefs, points, SERVICE_BUFFER_KB)
    print(f"xenprobe: watch probes armed for the service at privcmd_ioctl+"
          f"{points.hypercall:#x}", file=sys.stderr)
    return int(ExitCode.OK)


def disarm_service() -> int:
    """`xenprobe watch --disarm-for-service`: the service's ExecStopPost."""
    paths = Paths.from_environment()
    try:
        tracefs: Tracefs | None = arming.preflight(paths)
    except arming.CannotWatch:
        tracefs = None  # no tracefs (or no kprobes) now: nothing can be armed in it
    arming.disarm_service(paths, tracefs)
    return int(ExitCode.OK)


def run(*, as_json: bool, everything: bool, duration: float | None, buffer_kb: int) -> int:
    if duration is not None and not 0 < duration <= 366 * 86400:
        raise UsageError("--duration must be a positive number of seconds (at most a year)")
    if not MIN_BUFFER_KB <= buffer_kb <= MAX_BUFFER_KB:
        raise UsageError(f"--buffer-kb must be between {MIN_BUFFER_KB} and {MAX_BUFFER_KB}")
    paths = Paths.from_environment()
    tracefs = arming.preflight(paths)
    module, points = arming.locate(paths)
    out = report.Output(sys.stdout)
    sink: report.JsonSink | report.TerminalSink = (
        report.JsonSink(out) if as_json else report.TerminalSink(out))
    stop = {"signal": 0}

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop["signal"] = signum

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    release = xen_release.at_start(str(paths.kernel_log))
    started = time.monotonic()
    try:
        with arming.armed(paths, tracefs, points, buffer_kb) as armed:
            dm_op = None if points.dm_op is None else f"privcmd_ioctl+{points.dm_op:#x}"
            entry = None if probes.carried(points) else "privcmd_ioctl"
            ready = {
                "event": "ready", "tracefs": str(tracefs.root), "group": probes.GROUP,
                "instance": probes.INSTANCE, "module": str(module),
                "build_id": (points.build_id or b"").hex(), "path": points.path,
                "probes": {"hypercall": f"privcmd_ioctl+{points.hypercall:#x}",
                           "dm_op": dm_op,
                           "entry": entry},
                "clock": arming.CLOCK, "buffer_kb": buffer_kb,
                "xen_release": release.as_json()}
            if as_json:
                report.JsonSink(out).emit(ready)
            else:
                dm = f", DM_OP at {dm_op}" if dm_op else ""
                at = f", the entry at {entry}" if entry else ""
                out.line(f"xenprobe watch: armed HYPERCALL at privcmd_ioctl+"
                         f"{points.hypercall:#x}{dm}{at} ({module}); Ctrl-C stops")
                out.line(f"xenprobe watch: {report.release_line(release)}")
            session = Session(armed, sink, everything=everything, release=release)
            deadline = None if duration is None else time.monotonic() + duration
            session.run(lambda: bool(stop["signal"]) or out.broken is not None, deadline)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    tally = session.tally
    code = ExitCode.MISMATCH if tally.damaged_total else ExitCode.OK
    if session.failure is not None:
        print(f"xenprobe: error: the watch stopped early: {session.failure}",
              file=sys.stderr)
        if code == ExitCode.OK:
            code = ExitCode.CANNOT_PROBE
    if out.broken is not None and code == ExitCode.OK:
        code = ExitCode.NOT_DELIVERED
    unpaired = {"no_result": session.pairer.unanswered, "no_entry": session.pairer.orphans,
                "other_kind": session.pairer.mismatched, "unparsed": session.unparsed}
    summary = report.summary_json(tally, unpaired=unpaired, unread=session.unread,
                                  duration=time.monotonic() - started, exit_code=int(code),
                                  release=release)
    if as_json:
        report.JsonSink(out).emit(summary)
    else:
        out.line(report.tally_line(tally) + " (final)")
    if out.broken is not None:
        print(f"xenprobe: error: the watch's output broke: {out.broken}", file=sys.stderr)
    return int(code)
