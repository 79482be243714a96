# SPDX-License-Identifier: GPL-2.0-only
"""Numbers of the census's read-only paths xenprobe probes beyond the memory queries
(xen/include/public/{xen,version,memory,hypfs}.h, RELEASE-4.17.0; unchanged 4.13-4.22)."""

from typing import Final

# xen.h: hypercall numbers.
GET_DEBUGREG: Final = 9
HYPFS_OP: Final = 42

# version.h: subops whose success rc is a number or a length.
XENVER_pagesize: Final = 7
XENVER_build_id: Final = 10
XENVER_extraversion2: Final = 11  # 11-14 from Xen 4.20 (commit e3bb1b6525)
XENVER_capabilities2: Final = 12
XENVER_changeset2: Final = 13
XENVER_commandline2: Final = 14

# memory.h: global sharing counts (0 without CONFIG_MEM_SHARING).
XENMEM_get_sharing_freed_pages: Final = 18
XENMEM_get_sharing_shared_pages: Final = 19

# hypfs.h
XEN_HYPFS_OP_get_version: Final = 0
XEN_HYPFS_VERSION: Final = 1

# The one debug register probed: DR6, whose architectural reset value Xen gives every
# vCPU (X86_DR6_DEFAULT, arch/x86/include/asm/x86-defns.h@4.17:105).
DR6: Final = 6
X86_DR6_DEFAULT: Final = 0xFFFF0FF0

# version.h: xen_extraversion_t is char[16].
XENVER_EXTRAVERSION_BUF: Final = 16

# sysctl.h: XEN_SYSCTL_livepatch_op and its own cmd, inside the sysctl union
# (@RELEASE-4.13.0:936,1063 ... @RELEASE-4.22.0:1105,1256; same numbers and layout).
XEN_SYSCTL_livepatch_op: Final = 27
XEN_SYSCTL_LIVEPATCH_LIST: Final = 2
