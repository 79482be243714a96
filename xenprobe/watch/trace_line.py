# SPDX-License-Identifier: GPL-2.0-only
"""One line of an instance's trace_pipe, as the kernel prints a kprobe event.

The context comes from trace_print_context() (kernel/trace/trace_output.c@v5.10:
`"%16s-%-7d "` comm and pid, `"(%7d) "` tgid when record-tgid is set, `"[%03d] "` cpu,
trace_print_lat_fmt()'s flags when irq-info is set, `" %5lu.%06lu: "` the time; the
same fields at v6.1 and v6.12 through trace_print_time()). The event part comes from
print_kprobe_event() (kernel/trace/trace_kprobe.c): `"%s: ("` the event name, the
probed address as `%pS` (`privcmd_ioctl+0x24e/0xbe0 [xen_privcmd]`), `")"`, then each
argument as `" %s="` and its type's format (trace_probe.c DEFINE_BASIC_PRINT_TYPE_FUNC:
x32 `0x%x`, x64 `0x%Lx`, u16/u32 `%u`, u64 `%Lu`, s64 `%Ld`; a string, such as
`$comm`, `"%s"` as it is, quotes and blanks included).

Pure. The comm is right-aligned in 16 columns and may hold blanks and dashes: the pid
is the last `-DIGITS` before the cpu field. A `comm="..."` argument, the last one the
watch defines, is the task's name at the call and wins over the context's, which the
kernel looks up only when the line is read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_LINE = re.compile(
    r"^\s*(?P<comm>.*)-(?P<pid>\d+)\s+(?:\((?:\s*\d+|-+)\)\s+)?\[(?P<cpu>\d+)\]\s+"
    r"(?:(?P<flags>\S{4,6})\s+)?(?P<time>\d+(?:\.\d+)?):\s+(?P<event>\w+):\s+"
    r"\((?P<where>[^)]*)\)(?P<args>.*)$")
_ARG = re.compile(r"\s+(\w+)=(\S+)")
_COMM_ARG = ' comm="'


@dataclass(frozen=True)
class TraceEvent:
    comm: str
    pid: int      # the task (thread) id
    cpu: int
    time: float   # seconds on the instance's trace clock
    event: str
    where: str    # the probed address as %pS prints it
    fields: dict[str, int]


def parse(line: str) -> TraceEvent | None:
    """The event on one trace_pipe line; None for what is not a kprobe event line
    (the kernel's `CPU:N [LOST M EVENTS]` notes are counted by the caller)."""
    m = _LINE.match(line.rstrip("\n"))
    if m is None:
        return None
    fields: dict[str, int] = {}
    args = m["args"]
    comm = m["comm"].strip()
    at = args.find(_COMM_ARG)  # the first: the name itself may hold the same text
    if at >= 0 and args.endswith('"'):
        args, comm = args[:at], args[at + len(_COMM_ARG):-1]
    end = 0
    for a in _ARG.finditer(args):
        if a.start() != end:
            return None
        end = a.end()
        try:
            fields[a[1]] = int(a[2], 0)
        except ValueError:
            return None  # (fault) or a string: not one of ours
    if args[end:].strip():
        return None
    return TraceEvent(comm, int(m["pid"]), int(m["cpu"]), float(m["time"]),
                      m["event"], m["where"], fields)


_LOST = re.compile(r"^CPU:(\d+) \[LOST (\d+) EVENTS\]$")


def lost(line: str) -> int:
    """Events the kernel reports lost on a trace_pipe line (`CPU:%d [LOST %lu EVENTS]`,
    print_trace_line() in kernel/trace/trace.c when the reader fell behind), else 0."""
    m = _LOST.match(line.strip())
    return int(m[2]) if m else 0
