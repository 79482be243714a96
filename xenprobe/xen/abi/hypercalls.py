# SPDX-License-Identifier: GPL-2.0-only
"""Hypercall numbers, subops and reserved domain ids (xen/include/public/*.h)."""

from typing import Final

# xen.h: hypercall numbers.
MEMORY_OP: Final = 12
MULTICALL: Final = 13
XEN_VERSION: Final = 17
SYSCTL: Final = 35
DOMCTL: Final = 36

# memory.h: the query subops of memory_op. The low 6 bits of cmd are the subop.
XENMEM_maximum_ram_page: Final = 2
XENMEM_current_reservation: Final = 3
XENMEM_maximum_reservation: Final = 4
XENMEM_maximum_gpfn: Final = 14

# version.h
XENVER_version: Final = 0
XENVER_extraversion: Final = 1
XENVER_capabilities: Final = 3
XENVER_guest_handle: Final = 8  # the caller's own domain handle (UUID), 16 bytes
XENVER_extraversion_len: Final = 16
XENVER_capabilities_len: Final = 1024

# sysctl.h / domctl.h commands.
XEN_SYSCTL_physinfo: Final = 3
XEN_SYSCTL_getdomaininfolist: Final = 6
XEN_DOMCTL_getdomaininfo: Final = 5

# xen.h: domid_t is 16 bits; ids from 0x7FF0 up are reserved names.
DOMID_FIRST_RESERVED: Final = 0x7FF0
DOMID_SELF: Final = 0x7FF0
DOMID_INVALID: Final = 0x7FF4

# Struct sizes that never changed (4.10-4.22).
SYSCTL_SIZE: Final = 136  # struct xen_sysctl: cmd, interface_version, 128-byte union
SYSCTL_UNION: Final = 8
DOMCTL_SIZE: Final = 144  # struct xen_domctl: cmd, interface_version, domain, pad, union
DOMCTL_UNION: Final = 16
MULTICALL_ENTRY_SIZE: Final = 64  # op, result, args[6]

# Hypercalls return -errno in [-4095, -1] (the Linux convention Xen shares).
MAX_ERRNO: Final = 4095

NAMES: Final = {
    MEMORY_OP: "memory_op",
    MULTICALL: "multicall",
    XEN_VERSION: "xen_version",
    SYSCTL: "sysctl",
    DOMCTL: "domctl",
}
