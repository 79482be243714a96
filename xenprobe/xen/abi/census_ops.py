# SPDX-License-Identifier: GPL-2.0-only
"""Numbers of the census's read-only paths xenprobe probes beyond the memory queries
(xen/include/public/{xen,version,memory,hypfs,vcpu,kexec}.h, RELEASE-4.17.0; unchanged
4.13-4.22)."""

from typing import Final

# xen.h: hypercall numbers.
GET_DEBUGREG: Final = 9
VCPU_OP: Final = 24
KEXEC_OP: Final = 37
HYPFS_OP: Final = 42

# vcpu.h: VCPUOP_is_up(vcpuid, NULL) answers 0 or 1 for one of the caller's own vCPUs.
VCPUOP_is_up: Final = 3

# kexec.h: KEXEC_CMD_kexec_status takes a struct xen_kexec_status { uint8_t type; }.
KEXEC_CMD_kexec_status: Final = 6
KEXEC_TYPE_DEFAULT: Final = 0
KEXEC_TYPE_CRASH: Final = 1

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

# platform.h: platform_op (hypercall 7) and the two read-only commands probed.
# struct xen_platform_op is cmd, interface_version and a 128-byte union, every release
# (platform.h@RELEASE-4.13.0:620-648 .. @RELEASE-4.22.0:670-700).
PLATFORM_OP: Final = 7
XENPF_INTERFACE_VERSION: Final = 0x03000001
XENPF_PLATFORM_OP_SIZE: Final = 136
XENPF_resource_op: Final = 61
XENPF_get_dom0_console: Final = 64  # 4.18+
XENPF_cpu_hotadd: Final = 58        # census S5, refused
XEN_RESOURCE_OP_MSR_READ: Final = 0
XEN_RESOURCE_OP_MSR_WRITE: Final = 1  # census S6, refused
XENPF_RESOURCE_ENTRY_SIZE: Final = 24  # u.cmd/u.ret, rsvd, idx, val
RESOURCE_ACCESS_MAX_ENTRIES: Final = 3
# The MSR the resource_op probe reads: Xen allows reading it on every host
# (msr_read_allowed, x86/platform_hypercall.c@RELEASE-4.20.0:78-79) and answers the
# scaled system time instead of the raw TSC (:169-173).
MSR_IA32_TSC: Final = 0x10

# sysctl.h: XEN_SYSCTL_livepatch_op and its own cmd, inside the sysctl union
# (@RELEASE-4.13.0:936,1063 ... @RELEASE-4.22.0:1105,1256; same numbers and layout).
XEN_SYSCTL_livepatch_op: Final = 27
XEN_SYSCTL_LIVEPATCH_LIST: Final = 2
