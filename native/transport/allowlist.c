/*
 * The read-only allow-list: the (hypercall, subop) pairs xenprobe may issue.
 *
 * It lives here, in C, below anything Python or a configuration file can reach.
 * The numbers are Xen's public ABI (xen.h, memory.h, version.h, sysctl.h,
 * domctl.h); every entry only reads hypervisor state.
 */
#include <string.h>

#include "transport.h"

#define HYPERVISOR_get_debugreg 9
#define HYPERVISOR_memory_op   12
#define HYPERVISOR_multicall   13
#define HYPERVISOR_xen_version 17
#define HYPERVISOR_sysctl      35
#define HYPERVISOR_domctl      36
#define HYPERVISOR_hypfs_op    42

#define XEN_SYSCTL_physinfo           3
#define XEN_SYSCTL_getdomaininfolist  6
#define XEN_DOMCTL_getdomaininfo      5

/* memory_op queries; a cmd with continuation bits (cmd >> 6) is another request. */
static const uint64_t memory_ops[] = {
    2,  /* XENMEM_maximum_ram_page */
    3,  /* XENMEM_current_reservation */
    4,  /* XENMEM_maximum_reservation */
    14, /* XENMEM_maximum_gpfn */
    /* Global sharing counts; arg unused. x86/x86_64/mm.c@4.13:989,992 @4.17:1004,1007
     * @4.22:1021,1024 (0 without CONFIG_MEM_SHARING: asm/mem_sharing.h@4.17:121-129). */
    18, /* XENMEM_get_sharing_freed_pages */
    19, /* XENMEM_get_sharing_shared_pages */
};

/* get_debugreg(reg): reads the calling vCPU's debug register, PV only.
 * x86/pv/misc-hypercalls.c@4.13:31-36 @4.17:31-40 @4.22:21-30. Only DR6 is probed. */
static const uint64_t get_debugreg_reg = 6;

/* hypfs_op(cmd, ...): XEN_HYPFS_OP_get_version (0) returns XEN_HYPFS_VERSION and reads
 * nothing else; every other cmd reads or writes hypfs nodes.
 * common/hypfs.c@4.14:414 @4.17:689-696 @4.22:696. */
static const uint64_t hypfs_get_version = 0;

/* xen_version: every subop only reports. 0-10 everywhere, 11-14 from Xen 4.20. */
static const uint64_t xen_version_max_subop = 14;

static int in_list(uint64_t v, const uint64_t *list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (list[i] == v)
            return 1;
    return 0;
}

/* Ops whose subop travels by value in arg0, so a check cannot be raced. */
static int check_by_value(uint64_t op, const uint64_t *args)
{
    switch (op) {
    case HYPERVISOR_memory_op:
        return in_list(args[0], memory_ops, sizeof(memory_ops) / sizeof(memory_ops[0]))
                   ? XP_ALLOWED : XP_DENY_SUBOP;
    case HYPERVISOR_xen_version:
        return args[0] <= xen_version_max_subop ? XP_ALLOWED : XP_DENY_SUBOP;
    case HYPERVISOR_get_debugreg:
        return args[0] == get_debugreg_reg ? XP_ALLOWED : XP_DENY_SUBOP;
    case HYPERVISOR_hypfs_op:
        return args[0] == hypfs_get_version ? XP_ALLOWED : XP_DENY_SUBOP;
    default:
        return -1;
    }
}

/* sysctl and domctl carry their cmd inside a struct; the caller checks a private copy. */
int xp_check_sysctl_cmd(uint32_t cmd)
{
    return (cmd == XEN_SYSCTL_physinfo || cmd == XEN_SYSCTL_getdomaininfolist)
               ? XP_ALLOWED : XP_DENY_SUBOP;
}

int xp_check_domctl_cmd(uint32_t cmd)
{
    return cmd == XEN_DOMCTL_getdomaininfo ? XP_ALLOWED : XP_DENY_SUBOP;
}

int xp_check_entry(const xp_multicall_entry *e)
{
    int v = check_by_value(e->op, e->args);
    if (v >= 0)
        return v;
    /* Nested multicalls and struct-carrying ops are refused inside a multicall:
     * their cmd lives behind a pointer the hypervisor would read after our check. */
    if (e->op == HYPERVISOR_multicall || e->op == HYPERVISOR_sysctl ||
        e->op == HYPERVISOR_domctl)
        return XP_DENY_NESTED;
    return XP_DENY_OP;
}

int xp_check(uint64_t op, const uint64_t args[5])
{
    int v = check_by_value(op, args);
    if (v >= 0)
        return v;
    switch (op) {
    case HYPERVISOR_multicall:
    case HYPERVISOR_sysctl:
    case HYPERVISOR_domctl:
        /* Allowed in principle; the contents are checked on the private copy. */
        return XP_ALLOWED;
    default:
        return XP_DENY_OP;
    }
}
