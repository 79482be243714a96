# SPDX-License-Identifier: GPL-2.0-only
"""The watch's kprobe events: their definitions (Documentation/trace/kprobetrace.rst,
the `kprobe_events` syntax) and the reading of a `kprobe_events` listing.

Group and instance are the watch's own names; nothing here names another group.
"""

from __future__ import annotations

from dataclasses import dataclass

from xenprobe.watch.probe_point import FUNCTION, ProbePoints

GROUP = "xenprobe_watch"
INSTANCE = "xenprobe_watch"
MODULE = "xen_privcmd"
CALL = "call"            # privcmd_ioctl entry: the request, from the caller's memory
RESULT = "result"        # after the HYPERCALL's hypercall: %rax, Xen's 64-bit result
DM_RESULT = "dm_result"  # after the DM_OP's hypercall (each with its request: carried())

# include/uapi/xen/privcmd.h: _IOC(_IOC_NONE, 'P', 0, sizeof(privcmd_hypercall_t)) and
# _IOC(_IOC_NONE, 'P', 5, sizeof(struct privcmd_dm_op)).
IOCTL_PRIVCMD_HYPERCALL = 0x00305000
IOCTL_PRIVCMD_DM_OP = 0x00105005

# Entry: %si is the ioctl cmd, %dx the user pointer (x86-64 SysV: privcmd_ioctl(file,
# cmd, data)). struct privcmd_hypercall { __u64 op; __u64 arg[5]; }; struct
# privcmd_dm_op { domid_t dom; __u16 num; const privcmd_dm_op_buf_t __user *ubufs; }.
# `sub` is the first u32 of what arg[0] points to (sysctl, domctl and platform_op's
# cmd), `dom` the u16 arg[1] points to (memory_op 3/4/14: a domid_t *), `ddom` the
# u16 at arg[0]+8 (xen_domctl.domain). A fetch that faults is only used where Xen
# reads the same memory (the call then fails with -EFAULT and no domain is shown).
CALL_ARGS = ("cmd=%si:x32 op=+u0(%dx):x64 a0=+u8(%dx):x64 a1=+u16(%dx):x64 "
             "sub=+u0(+u8(%dx)):u32 dom=+u0(+u16(%dx)):u16 ddom=+u8(+u8(%dx)):u16")
# `comm`: the caller's name as the task had it at the call (`$comm`, always a string:
# kernel/trace/trace_probe.c@v5.10 traceprobe_parse_probe_arg_body). The line's own
# comm is looked up when the line is read, from a small table of recent tasks, and is
# "<...>" for one evicted by then (trace.c trace_find_cmdline): a short-lived caller
# read late on a busy host. Last, so that any name it holds ends the line.
RESULT_ARGS = "rax=%ax:x64 comm=$comm"


def request_args(request: int) -> str:
    """CALL_ARGS' fields read at the HYPERCALL's result probe from privcmd's own copy
    of struct privcmd_hypercall at request(%rsp) (probe_point.request_slot()): the
    same names, so a call reads alike whichever probe carried its request. `+OFF(%sp)`
    reads kernel memory (Documentation/trace/kprobetrace.rst, FETCHARGS); at an int3
    probe on x86-64, pt_regs' sp is the probed code's own (the full exception frame)."""
    op, a0, a1 = (f"+{request + 8 * i:#x}(%sp)" for i in range(3))
    return (f"op={op}:x64 a0={a0}:x64 a1={a1}:x64 "
            f"sub=+u0({a0}):u32 dom=+u0({a1}):u16 ddom=+u8({a0}):u16")


def carried(points: ProbePoints) -> bool:
    """Whether each result probe can read its call's request itself, so that no entry
    probe is armed: one probe a call, and none on privcmd_ioctl's first instruction,
    whose arming rewrites a call other CPUs may be running (docs/watch.md, "Known
    limits")."""
    return points.request is not None and (points.dm_op is None
                                           or points.dm_domain is not None)


@dataclass(frozen=True)
class Definition:
    name: str
    text: str   # the line written to kprobe_events

    @property
    def removal(self) -> str:
        return f"-:{GROUP}/{self.name}"


def definitions(points: ProbePoints) -> tuple[Definition, ...]:
    """The result probes; where they cannot carry the request (carried()), the entry
    probe too, and the reader pairs each result with its task's entry."""
    target = f"{MODULE}:{FUNCTION}"
    result = dm_result = RESULT_ARGS
    out = []
    if carried(points) and points.request is not None:
        result = f"rax=%ax:x64 {request_args(points.request)} comm=$comm"
        if points.dm_domain is not None:
            dm_result = f"rax=%ax:x64 dom=+{points.dm_domain:#x}(%sp):u16 comm=$comm"
    else:
        out.append(Definition(CALL, f"p:{GROUP}/{CALL} {target} {CALL_ARGS}"))
    out.append(Definition(RESULT, f"p:{GROUP}/{RESULT} {target}+{points.hypercall:#x} "
                                  f"{result}"))
    if points.dm_op is not None:
        out.append(Definition(DM_RESULT, f"p:{GROUP}/{DM_RESULT} {target}+"
                                         f"{points.dm_op:#x} {dm_result}"))
    return tuple(out)


def listed_events(listing: str, group: str = GROUP) -> list[str]:
    """Names of `group`'s events in a kprobe_events listing. The kernel lists each
    definition as `p:GROUP/EVENT TARGET ARGS` (trace_kprobe.c probes_seq_show);
    `-:GROUP/EVENT` lines, which only a log of writes holds, remove one."""
    names: list[str] = []
    for line in listing.splitlines():
        head = line.split(maxsplit=1)[0] if line.strip() else ""
        kind, _, event = head.partition(":")
        g, _, name = event.partition("/")
        if g != group or not name:
            continue
        if kind == "-":
            if name in names:
                names.remove(name)
        elif kind in ("p", "r") and name not in names:
            names.append(name)
    return names
