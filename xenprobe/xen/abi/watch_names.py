# SPDX-License-Identifier: GPL-2.0-only
"""Names of the hypercalls and subops a watched process may issue through privcmd, and
where each call names a domain. Data, read like the headers: xen/include/public/xen.h
(hypercall numbers), memory.h, version.h, sysctl.h, domctl.h (RELEASE-4.17.0; the
numbers below are unchanged 4.13-4.22)."""

from typing import Final

# xen.h __HYPERVISOR_* (x86).
OPS: Final = {
    0: "set_trap_table", 1: "mmu_update", 2: "set_gdt", 3: "stack_switch",
    4: "set_callbacks", 5: "fpu_taskswitch", 6: "sched_op_compat", 7: "platform_op",
    8: "set_debugreg", 9: "get_debugreg", 10: "update_descriptor", 12: "memory_op",
    13: "multicall", 14: "update_va_mapping", 15: "set_timer_op", 16: "event_channel_op_compat",
    17: "xen_version", 18: "console_io", 19: "physdev_op_compat", 20: "grant_table_op",
    21: "vm_assist", 22: "update_va_mapping_otherdomain", 23: "iret", 24: "vcpu_op",
    25: "set_segment_base", 26: "mmuext_op", 27: "xsm_op", 28: "nmi_op", 29: "sched_op",
    30: "callback_op", 31: "xenoprof_op", 32: "event_channel_op", 33: "physdev_op",
    34: "hvm_op", 35: "sysctl", 36: "domctl", 37: "kexec_op", 38: "tmem_op",
    39: "argo_op", 40: "xenpmu_op", 41: "dm_op", 42: "hypfs_op",
}

MEMORY_OP: Final = 12
MEMOP_CMD_MASK: Final = 0x3F  # memory.h: the low 6 bits of cmd are the subop
XEN_VERSION: Final = 17
SYSCTL: Final = 35
DOMCTL: Final = 36
DM_OP: Final = 41
PLATFORM_OP: Final = 7

# Only the subops this project has checked against the headers are named; others are
# shown by number (subop_name null).
MEMORY_SUBOPS: Final = {
    2: "maximum_ram_page", 3: "current_reservation", 4: "maximum_reservation",
    14: "maximum_gpfn", 18: "get_sharing_freed_pages", 19: "get_sharing_shared_pages",
}
# memory.h: these take a domid_t * as their argument.
MEMORY_SUBOPS_WITH_DOMID: Final = frozenset({3, 4, 14})

XEN_VERSION_SUBOPS: Final = {
    0: "version", 1: "extraversion", 2: "compile_info", 3: "capabilities",
    4: "changeset", 5: "platform_parameters", 6: "get_features", 7: "pagesize",
    8: "guest_handle", 9: "commandline", 10: "build_id", 11: "extraversion2",
    12: "capabilities2", 13: "changeset2", 14: "commandline2",
}

# The first member of struct xen_sysctl / xen_domctl / xen_platform_op is its cmd
# (sysctl.h@RELEASE-4.17.0:1088-1106, domctl.h, platform.h).
SYSCTL_SUBOPS: Final = {
    1: "readconsole", 3: "physinfo", 6: "getdomaininfolist", 22: "pcitopoinfo",
    23: "psr_alloc", 25: "get_cpu_levelling_caps", 26: "get_cpu_featureset",
    27: "livepatch_op", 29: "get_cpu_policy",
}
DOMCTL_SUBOPS: Final = {
    1: "createdomain", 2: "destroydomain", 3: "pausedomain", 4: "unpausedomain",
    5: "getdomaininfo",
}
PLATFORM_SUBOPS: Final = {58: "cpu_hotadd", 61: "resource_op", 64: "get_dom0_console"}
# Subops read from the first word of the struct the argument points to.
CMD_IN_STRUCT: Final = {SYSCTL: SYSCTL_SUBOPS, DOMCTL: DOMCTL_SUBOPS,
                        PLATFORM_OP: PLATFORM_SUBOPS}
