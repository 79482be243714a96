# SPDX-License-Identifier: GPL-2.0-only
"""The census row R7: sysctl XEN_SYSCTL_livepatch_op / XEN_SYSCTL_LIVEPATCH_LIST.

LIST returns in rc how many payload entries it copied into the caller's buffers, and
leaves in the struct's `nr` how many payloads remain after them (common/livepatch.c
@RELEASE-4.13.0:989-1049, @RELEASE-4.17.0:1159-1250, @RELEASE-4.22.0:1288-1392).
xenprobe asks for none (nr = 0), the request libxenctrl's own
xc_livepatch_list_get_sizes makes (tools/libs/ctrl/xc_misc.c@RELEASE-4.17.0:653-679):
Xen then writes no buffer, returns 0 copied, and puts the payload count in `nr`. Asking
for entries would hand Xen buffers it fills with names and metadata of a length only
known after the call, so xenprobe does not. The rc of LIST is at most 1024 (nr > 1024
is -E2BIG, @RELEASE-4.17.0:1166), so no int path can misread it either way.

A sysctl struct cannot go in a multicall (the allow-list refuses struct-carrying ops
there: their cmd lives behind a pointer), so this quantity has no raw reading; its
layers (syscall, ioctl, and libxenctrl's xc_livepatch_list_get_sizes from 4.14) are
judged against the reference alone.
"""

from __future__ import annotations

import struct

from xenprobe.xen.abi import census_ops as co
from xenprobe.xen.abi import hypercalls as hc
from xenprobe.xen.reading import Reading
from xenprobe.xen.transport import Buffer, Privcmd, args5

# struct xen_sysctl_livepatch_op: cmd, pad, then the list: version, idx, nr, pad.
_OP = struct.Struct("<II")
_LIST = struct.Struct("<IIII")
_LIST_AT = hc.SYSCTL_UNION + _OP.size


def list_request(interface: int) -> bytes:
    """The whole struct xen_sysctl of a LIST asking for no entries: idx 0, nr 0, every
    handle NULL (136 bytes, as the allow-list copies it)."""
    head = struct.pack("<II", co.XEN_SYSCTL_livepatch_op, interface)
    body = _OP.pack(co.XEN_SYSCTL_LIVEPATCH_LIST, 0) + _LIST.pack(0, 0, 0, 0)
    return (head + body).ljust(hc.SYSCTL_SIZE, b"\0")


def remaining(answer: bytes) -> tuple[int, int]:
    """(nr, version) Xen wrote back into the struct: the payloads left after the entries
    copied (all of them, for nr = 0) and the list's version stamp."""
    version, _, nr, _ = _LIST.unpack_from(answer, _LIST_AT)
    return nr, version


class LivepatchList:
    """Issues LIST with nr = 0 through one open device, from a buffer of its own."""

    def __init__(self, dev: Privcmd, interface: int) -> None:
        self.dev = dev
        self.request = list_request(interface)
        self.buf = Buffer(hc.SYSCTL_SIZE)

    def close(self) -> None:
        self.buf.close()

    def read(self, *, syscall: bool) -> tuple[Reading, int | None]:
        """The layer's reading of rc, and `nr` as Xen wrote it back (None when the call
        failed: sysctl copies nothing back for -ENOSYS/-EOPNOTSUPP, and the reading says
        why)."""
        if not self.buf.mine():  # a forked child has none of its parent's pages
            self.buf = Buffer(hc.SYSCTL_SIZE)
        self.buf.view[0:hc.SYSCTL_SIZE] = self.request
        call = self.dev.syscall if syscall else self.dev.ioctl
        r = call(hc.SYSCTL, args5(self.buf.address))
        if r.failed:
            return r, None
        return r, remaining(bytes(self.buf.view))[0]
