# SPDX-License-Identifier: GPL-2.0-only
"""One watched call's verdict: the hypervisor's 64-bit result against what the process
received, by the classifier `check` uses (xenprobe/probe/classify.py).

What the process receives is `(long)(int)raw`: the probe sits on the instruction that
narrows %rax to int (probe_point.py proves it is the next one), and from there the
value passes only through ints (`int ret` in privcmd_ioctl(), drivers/xen/privcmd.c@
v6.1:851-854; `int error` in vfs_ioctl() and SYSCALL_DEFINE3(ioctl), fs/ioctl.c@v6.1:
44-51,856-870); glibc then turns -4095..-1 into -1 with errno (sysdeps/unix/sysv/linux/
x86_64/sysdep.h). Pure.

The result is also judged by itself, as `check` judges its own raw result
(classify.at_source): an errno the call cannot return is forged_errno, and the
process that received it got passed_forged (a forged error handed on as the
hypervisor's); a value negative as a long that is no errno is out_of_range, whatever
the int made of it.
"""

from __future__ import annotations

from xenprobe.probe.classify import Truth, Verdict, at_source, classify, sext32
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


def judge(raw: int, *, convention: bool = False,
          can_return: frozenset[int] | None = None
          ) -> tuple[int, int, Verdict, Verdict | None]:
    """(raw as signed 64-bit, delivered, verdict, raw verdict) for a hypercall result.
    `convention`: the call is one whose answer is -errno or a value in 0..LONG_MAX
    (xen/abi/errnos.py's pairs; get_debugreg of DR0-3 may be a kernel address, for one, so
    an unknown call's result is never called out of range); `can_return`: the errnos
    it can return on this host (None: not known, no errno is called forged). The raw
    verdict is None, forged_errno or out_of_range."""
    reading = raw_result(raw % U64)
    given = delivered(raw)
    verdict = classify(Truth.of(reading), seen_by_process(given))
    found = at_source(reading, can_return) if convention else None
    if found is Verdict.FORGED_ERRNO and verdict is Verdict.MATCH:
        verdict = Verdict.PASSED_FORGED
    return signed64(raw), given, verdict, found
