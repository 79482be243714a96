# SPDX-License-Identifier: GPL-2.0-only
"""The requests the platform_op quantities point to: a struct xen_platform_op each, and
XENPF_resource_op's one entry, in locked memory the calls of a sweep share.

get_dom0_console writes the console info into its struct's union, and resource_op
writes the value read (or a failed entry's -errno) into its entry: `reset` writes the
requests afresh, before every read, so each read asks the same thing."""

from __future__ import annotations

from xenprobe.xen.abi import census_ops as co
from xenprobe.xen.abi.platform import PLATFORM_OP, RESOURCE_ENTRY
from xenprobe.xen.quantities import Quantity
from xenprobe.xen.transport import Buffer

# How many entries the resource_op probe asks for: its nr_done's reference.
RESOURCE_ENTRIES = 1
# The CPU whose MSR is read: CPU 0 is always online (Xen answers -ENODEV for an offline
# one, x86/platform_hypercall.c@RELEASE-4.20.0:831-836).
RESOURCE_CPU = 0

_CONSOLE_AT, _RESOURCE_AT, _ENTRIES_AT, _SIZE = 0, 256, 512, 1024


def console_request() -> bytes:
    return PLATFORM_OP.encode({"cmd": co.XENPF_get_dom0_console,
                               "interface_version": co.XENPF_INTERFACE_VERSION})


def resource_request(entries: int) -> bytes:
    return PLATFORM_OP.encode({"cmd": co.XENPF_resource_op,
                               "interface_version": co.XENPF_INTERFACE_VERSION,
                               "nr_entries": RESOURCE_ENTRIES, "cpu": RESOURCE_CPU,
                               "entries": entries})


def resource_entries() -> bytes:
    """MSR_READ of MSR_IA32_TSC, RESOURCE_ENTRIES times: Xen lets every dom0 read it."""
    one = RESOURCE_ENTRY.encode({"cmd": co.XEN_RESOURCE_OP_MSR_READ, "idx": co.MSR_IA32_TSC})
    return one * RESOURCE_ENTRIES


class PlatformRequests:
    """One locked buffer holding both requests, made afresh in a forked child (which has
    none of its parent's hypercall pages)."""

    def __init__(self) -> None:
        self.buffer = Buffer(_SIZE)
        self.reset()

    def _own(self) -> Buffer:
        if not self.buffer.mine():
            self.buffer = Buffer(_SIZE)
            self.reset()
        return self.buffer

    def reset(self) -> None:
        b = self._own()
        base = b.address
        b.view[_CONSOLE_AT:_CONSOLE_AT + PLATFORM_OP.size] = console_request()
        b.view[_RESOURCE_AT:_RESOURCE_AT + PLATFORM_OP.size] = \
            resource_request(base + _ENTRIES_AT)
        entries = resource_entries()
        b.view[_ENTRIES_AT:_ENTRIES_AT + len(entries)] = entries

    def address(self, q: Quantity) -> int:
        at = {Quantity.DOM0_CONSOLE_SIZE: _CONSOLE_AT,
              Quantity.RESOURCE_OP_DONE: _RESOURCE_AT}[q]
        return self._own().address + at

    def close(self) -> None:
        self.buffer.close()
