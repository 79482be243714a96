# SPDX-License-Identifier: GPL-2.0-only
"""What the watch prints: JSON lines (ready, call, summary; error when it cannot watch)
or a live terminal view (a line per reported call, a running tally). The JSON keys
are xenprobe/cli/schema/watch.schema.json's."""

from __future__ import annotations

import json
import time
from typing import IO

from xenprobe.watch.attribution import Process
from xenprobe.watch.pairing import Call
from xenprobe.watch.tally import Tally
from xenprobe.watch.xen_release import KnownRelease


def call_json(call: Call, process: Process) -> dict[str, object]:
    lib = process.libxenctrl
    return {
        "event": "call", "time": call.time, "pid": process.tgid,
        "tid": call.pid, "cpu": call.cpu, "comm": call.comm, "exe": process.exe,
        "libxenctrl": None if lib is None else {"path": lib.path, "release": lib.release},
        "memop_path": process.memop_path, "ioctl": call.ioctl,
        "op": call.op, "op_name": call.op_name, "subop": call.subop,
        "subop_name": call.subop_name, "domid": call.domid, "raw": call.raw,
        "delivered": call.delivered, "verdict": call.verdict.value,
        "raw_verdict": None if call.raw_verdict is None else call.raw_verdict.value,
    }


def summary_json(tally: Tally, *, unpaired: dict[str, int], unread: int, duration: float,
                 exit_code: int, release: KnownRelease) -> dict[str, object]:
    return {
        "event": "summary", "calls": tally.calls, "calls_by_op": dict(sorted(tally.by_op.items())),
        "multicalls": tally.by_op.get("multicall", 0),
        "damaged": tally.damaged_total,
        "damaged_by_verdict": dict(sorted(tally.damaged.items())),
        "damaged_by_process": tally.processes_json(),
        "damaged_other_processes": sum(tally.other_processes.values()),
        "lost": tally.lost, "unread": unread, "unpaired": unpaired,
        "duration_s": round(duration, 3),
        "xen_release": release.as_json(),
        "exit_code": exit_code,
    }


def release_line(release: KnownRelease) -> str:
    """Whose errno sets judge the calls (docs/watch.md: the release without a hypercall)."""
    if release.release is None:
        return ("Xen release not known yet (no boot banner in the kernel log): no errno is "
                "called forged until a program's xen_version call tells it")
    how = "the kernel log" if release.source == "kernel_log" else "a xen_version call"
    return f"errnos judged against Xen {release.release[0]}.{release.release[1]} ({how})"


class Output:
    """One stream, written a line at a time and flushed, so a reader sees each event
    as it happens. A stream that breaks (a closed pipe) stops the watch."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.broken: str | None = None

    def line(self, text: str) -> None:
        if self.broken is not None:
            return
        try:
            self.stream.write(text + "\n")
            self.stream.flush()
        except (BrokenPipeError, OSError, ValueError) as e:
            self.broken = getattr(e, "strerror", None) or type(e).__name__


class JsonSink:
    def __init__(self, out: Output) -> None:
        self.out = out

    def emit(self, obj: dict[str, object]) -> None:
        self.out.line(json.dumps(obj, separators=(",", ":")))

    def call(self, call: Call, process: Process, tally: Tally) -> None:
        self.emit(call_json(call, process))

    def tick(self, tally: Tally) -> None:
        pass


class TerminalSink:
    """Like perf trace: one line per call; like xentop: the tally, reprinted when it
    changes (at most once a second)."""

    def __init__(self, out: Output) -> None:
        self.out = out
        self._shown: tuple[int, int, int] | None = None

    def call(self, call: Call, process: Process, tally: Tally) -> None:
        sub = "" if call.subop is None else f"/{call.subop_name or call.subop}"
        dom = "" if call.domid is None else f" dom {call.domid}"
        mark = " ".join(v.value.upper() for v in call.findings) or call.verdict.value
        if call.raw_verdict is not None:
            mark += f" (process: {call.verdict.value})"
        # A caller that exited before the watch looked has no thread group id left to
        # read: its task id, which the trace line gives, is the pid of a one-thread program.
        pid = call.pid if process.tgid is None else process.tgid
        self.out.line(f"{call.time:14.6f} {call.comm:>16} {pid!s:>7} "
                      f"{call.op_name or call.op}{sub}{dom}: raw {call.raw:#x} "
                      f"({call.raw}) -> {call.delivered}  {mark}")

    def tick(self, tally: Tally) -> None:
        key = (tally.calls, tally.damaged_total, tally.lost)
        if key == self._shown:
            return
        self._shown = key
        self.out.line(tally_line(tally))


def tally_line(tally: Tally) -> str:
    verdicts = " ".join(f"{v}={n}" for v, n in sorted(tally.damaged.items())) or "none"
    procs = ", ".join(f"{r['comm']}[{'exited' if r['pid'] is None else r['pid']}] "
                      f"{r['damaged']}"
                      for r in tally.processes_json()[:5])
    return (f"-- {time.strftime('%H:%M:%S')} calls {tally.calls}, damaged "
            f"{tally.damaged_total} ({verdicts}), lost {tally.lost}"
            + (f"; by process: {procs}" if procs else ""))
