/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The parts of Xen's platform_op ABI (xen/include/public/platform.h) the transport
 * copies and judges: struct xen_platform_op and XENPF_resource_op's entries. Unchanged
 * RELEASE-4.13.0 .. RELEASE-4.22.0 (platform.h@RELEASE-4.13.0:579-596,620-648,
 * @RELEASE-4.22.0:596-613,670-700).
 */
#ifndef XENPROBE_PLATFORM_ABI_H
#define XENPROBE_PLATFORM_ABI_H

#include <stddef.h>
#include <stdint.h>

#define HYPERVISOR_platform_op 7
#define XENPF_resource_op 61

/* struct xen_platform_op: uint32 cmd, uint32 interface_version, a union of 128 bytes. */
#define XP_PLATFORM_OP_SIZE 136

/* struct xenpf_resource_op, the union's member for XENPF_resource_op. */
typedef struct xp_resource_op {
    uint32_t nr_entries;
    uint32_t cpu;
    uint64_t entries; /* XEN_GUEST_HANDLE(xenpf_resource_entry_t): a pointer on x86-64 */
} xp_resource_op;
#define XP_RESOURCE_OP_AT 8 /* after cmd and interface_version */

/* struct xenpf_resource_entry. */
typedef struct xp_resource_entry {
    uint32_t cmd; /* IN: XEN_RESOURCE_OP_*; OUT: a failed entry's -errno */
    uint32_t rsvd;
    uint64_t idx; /* the MSR */
    uint64_t val;
} xp_resource_entry;

/* RESOURCE_ACCESS_MAX_ENTRIES, x86/platform_hypercall.c@RELEASE-4.13.0:39
 * .. @RELEASE-4.22.0:45: Xen answers -EINVAL for more. */
#define XP_RESOURCE_MAX 3

_Static_assert(sizeof(xp_resource_entry) == 24, "xenpf_resource_entry is 24 bytes");
_Static_assert(sizeof(xp_resource_op) == 16, "xenpf_resource_op is 16 bytes");

/* allowlist.c */
int xp_check_resource_count(uint32_t nr_entries);
int xp_check_resource_entries(const xp_resource_entry *entries, uint32_t n);

#endif
