# SPDX-License-Identifier: GPL-2.0-only
"""Which Xen release the watched host runs, learnt without a hypercall, so that the
watch can judge an errno against what that release's code can return (xen/abi/errnos.py).

The watch issues no hypercall and must not make the kernel issue one for it: reading
/sys/hypervisor/version/{major,minor} would (major_show() and minor_show() call
HYPERVISOR_xen_version(XENVER_version), drivers/xen/sys-hypervisor.c). Two sources
instead, both the hypervisor's own answer to someone else's call:

- the kernel's boot banner, read back from /dev/kmsg: a PV dom0's xen_banner() asks
  XENVER_version once at boot and prints "Xen version: %d.%d%s%s"
  (arch/x86/xen/enlighten_pv.c); a PVH (or HVM) kernel's init_hvm_pv_info() prints
  "Xen version %d.%d." from Xen's CPUID leaf base + 1 (arch/x86/xen/enlighten_hvm.c).
  Only records of the kernel facility count: a write to /dev/kmsg from user space is
  given LOG_USER unless it names another non-zero facility (devkmsg_write(),
  kernel/printk/printk.c), so no process can fake it. The banner is an early record
  and may have been overwritten in a long-running host's ring buffer: then it is not
  known from here;
- a XENVER_version call of a watched program: its raw result is the hypervisor's
  (major << 16) | minor (xen/common/kernel.c@RELEASE-4.17.0:464-465), a constant of
  the running Xen that no guest sets.

Not known: no errno is called forged (out-of-range results still are: that needs no
release). The release is the host's for as long as it runs: Xen does not change its
version without a reboot, which ends the watch too.
"""

from __future__ import annotations

import errno
import os
import re
from dataclasses import dataclass

from xenprobe.xen.abi import errnos
from xenprobe.xen.abi import watch_names as names

Release = tuple[int, int]

MAX_LOG_BYTES = 64 << 20  # a bound on what is read from the kernel log at start

# /dev/kmsg record: "<prefix>,<seq>,<usec>,<flags>[,...];<text>" (info_print_ext_header(),
# kernel/printk/printk.c), prefix = facility << 3 | level; continuation lines of a
# record's dictionary start with a blank.
_RECORD = re.compile(r"^(\d+),\d+,\d+,[^;]*;(.*)$")
_BANNER = re.compile(r"^Xen version:? (\d+)\.(\d+)")  # PV: "Xen version: ", PVH: "Xen version "


def from_kernel_log(text: str) -> Release | None:
    """The release the boot banner in /dev/kmsg records names (the last one), if any."""
    found = None
    for line in text.splitlines():
        m = _RECORD.match(line)
        if m is None or int(m[1]) >> 3 != 0:  # not the kernel's own record
            continue
        b = _BANNER.match(m[2])
        if b is not None:
            found = (int(b[1]), int(b[2]))
    return found


def from_version_call(op: int, subop: int | None, raw: int) -> Release | None:
    """The release a XENVER_version call's raw result states, if it is one."""
    if op != names.XEN_VERSION or subop != 0 or not 0 < raw < 1 << 32:
        return None
    return raw >> 16, raw & 0xFFFF


def read_kernel_log(path: str) -> str:
    """What /dev/kmsg holds now, read without waiting; "" when it cannot be read (not
    root, a sandbox with ProtectKernelLogs=). Each read() gives one record; EPIPE says
    records were overwritten meanwhile, and reading goes on (devkmsg_read())."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return ""
    chunks: list[bytes] = []
    size = 0
    try:
        while size < MAX_LOG_BYTES:
            try:
                chunk = os.read(fd, 1 << 16)
            except OSError as e:
                if e.errno == errno.EPIPE:
                    continue
                break  # EAGAIN: the end for now; anything else: what was read
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks).decode("utf-8", "replace")


@dataclass
class KnownRelease:
    """What the watch knows of the release, and from where ("kernel_log",
    "xen_version_call", or "daemon": serve --watch's own detection, exporter/
    watching.py). State owned by the watch's session."""

    release: Release | None = None
    source: str | None = None

    def learn(self, op: int, subop: int | None, raw: int) -> None:
        if self.release is None:
            found = from_version_call(op, subop, raw)
            if found is not None:
                self.release, self.source = found, "xen_version_call"

    def can_return(self, op: int, subop: int) -> frozenset[int] | None:
        """The errnos (op, subop) can return on this host; None when not known (the
        release, or the pair, is not one xen/abi/errnos.py has read)."""
        if self.release is None:
            return None
        return errnos.can_return(op, subop, self.release)

    def as_json(self) -> dict[str, object] | None:
        if self.release is None:
            return None
        return {"release": f"{self.release[0]}.{self.release[1]}", "from": self.source}


def at_start(kernel_log: str) -> KnownRelease:
    """What the kernel log says when the watch starts (Paths.kernel_log)."""
    found = from_kernel_log(read_kernel_log(kernel_log))
    return KnownRelease(found, "kernel_log" if found else None)
