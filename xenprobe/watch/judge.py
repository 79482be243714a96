# SPDX-License-Identifier: GPL-2.0-only
"""One watched call's verdict: the hypervisor's 64-bit result against what the process
received, by the classifier `check` uses (xenprobe/probe/classify.py).

What the process receives is `(long)(int)raw`: the probe sits on the instruction that
narrows %rax to int (probe_point.py proves it is the next one), and from there the
value passes only through ints (`int ret` in privcmd_ioctl(), drivers/xen/privcmd.c@
v6.1:851-854; `int error` in vfs_ioctl() and SYSCALL_DEFINE3(ioctl), fs/ioctl.c@v6.1:
44-51,856-870); glibc then turns -4095..-1 into -1 with errno (sysdeps/unix/sysv/linux/
x86_64/sysdep.h). Pure.
"""

from __future__ import annotations

from xenprobe.probe.classify import Truth, Verdict, classify, sext32
from xenprobe.xen.abi.hypercalls import MAX_ERRNO
from xenprobe.xen.reading import Reading, raw_result

U64 = 1 << 64


def signed64(u: int) -> int:
    u %= U64
    return u - U64 if u >= 1 << 63 else u


def delivered(raw: int) -> int:
    """What the ioctl system call returns for a hypercall result `raw`."""
    return sext32(raw)


def seen_by_process(value: int) -> Reading:
    """The ioctl's return value as glibc hands it to the caller."""
    if -MAX_ERRNO <= value <= -1:
        return Reading(-1, -value, 32)
    return Reading(value, 0, 32)


def judge(raw: int) -> tuple[int, int, Verdict]:
    """(raw as signed 64-bit, delivered, verdict) for a hypercall result."""
    truth = Truth.of(raw_result(raw % U64))
    given = delivered(raw)
    return signed64(raw), given, classify(truth, seen_by_process(given))
