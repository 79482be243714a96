# SPDX-License-Identifier: GPL-2.0-only
"""Which path a libxenctrl file takes for memory ops: the int ioctl, or a multicall.

Up to 4.15.0, libxenctrl's do_memory_op issues XENMEM_* through xencall2(), whose int
return is the privcmd ioctl's (tools/libxc/xc_private.c@RELEASE-4.14.6:331-348; the same
at RELEASE-4.15.0 in tools/libs/ctrl). From 4.15.1 (commit abfbb29830, the backport of
6f02d1ea4a from 4.16.0) it wraps them in a one-entry multicall on Linux and Solaris when
long is wider than int, and reads the entry's 64-bit result
(tools/libs/ctrl/xc_private.c@RELEASE-4.15.1:340-380; unchanged up to RELEASE-4.22.0).

The SONAME names only the minor release (libxenctrl.so.4.15 is 4.15.0 or 4.15.x) and
xc_version reports the hypervisor's release, not the library's, so the loaded file
itself is read. The multicall branch brings an error message found nowhere else in Xen's
tree, "Could not bounce buffer for memory_op hypercall" (its PERROR at
xc_private.c@RELEASE-4.15.1:359): a 64-bit libxenctrl with that string takes the
multicall path, one without it the int path. (It cannot be told from the imports: the
new xencall2L() fallback is dead code where long is 64 bits, and the compiler drops it.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from xenprobe.xen.elf import MAX_SIZE

MemoryOpPath = Literal["multicall", "ioctl"]
MULTICALL_MARK = b"Could not bounce buffer for memory_op hypercall"


def by_release(release: tuple[int, int]) -> MemoryOpPath | None:
    """What the minor release alone says: None for 4.15 (4.15.0: ioctl, 4.15.1 and
    later: multicall)."""
    if release <= (4, 14):
        return "ioctl"
    if release >= (4, 16):
        return "multicall"
    return None


def of_file(path: Path, release: tuple[int, int]) -> MemoryOpPath | None:
    """The memory-op path of a (64-bit) libxenctrl file, from its contents; from its
    release where the file cannot be read and the release alone decides it."""
    try:
        if path.stat().st_size > MAX_SIZE:
            return by_release(release)
        data = path.read_bytes()
    except OSError:
        return by_release(release)
    return "multicall" if MULTICALL_MARK in data else "ioctl"
