/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The read-only allow-list: the (hypercall, subop) pairs xenprobe may issue.
 *
 * It lives here, in C, below anything Python or a configuration file can reach.
 * The numbers are Xen's public ABI; every entry only reads hypervisor state. It is
 * only ever applied to a private copy of the request (xp_issue in transport.c), so a
 * row added here is as race-free as the others without further work.
 *
 * To allow another pair: add one row to `allowed`, citing where its number is
 * defined and why it only reads. A new hypercall also needs its row in `carriers`,
 * saying where its subop travels.
 */
#include <string.h>

#include "platform_abi.h"
#include "transport.h"

#define HYPERVISOR_get_debugreg 9 /* public/xen.h@RELEASE-4.17.0:86-110 */
#define HYPERVISOR_memory_op   12
#define HYPERVISOR_multicall   13
#define HYPERVISOR_xen_version 17
#define HYPERVISOR_vcpu_op     24 /* public/xen.h@RELEASE-4.17.0:98 */
#define HYPERVISOR_sysctl      35
#define HYPERVISOR_domctl      36
#define HYPERVISOR_kexec_op    37 /* public/xen.h@RELEASE-4.17.0:111 */
#define HYPERVISOR_hypfs_op    42
#define XEN_SYSCTL_livepatch_op 27

/* Where an op's subop travels. */
enum carrier {
    BY_VALUE, /* in arg0 itself: the check sees all of it */
    IN_STRUCT, /* the uint32 cmd at the start of the struct arg0 points to: checked on a
                * private copy of `size` bytes, which is what the hypervisor is given */
};

static const struct {
    uint64_t op;
    enum carrier carrier;
    size_t size;
} carriers[] = {
    {HYPERVISOR_memory_op, BY_VALUE, 0},
    {HYPERVISOR_xen_version, BY_VALUE, 0},
    {HYPERVISOR_get_debugreg, BY_VALUE, 0},
    {HYPERVISOR_hypfs_op, BY_VALUE, 0},
    {HYPERVISOR_vcpu_op, BY_VALUE, 0},   /* cmd in arg0, vcpuid in arg1 */
    {HYPERVISOR_kexec_op, BY_VALUE, 0},  /* op in arg0 (unsigned long), struct in arg1 */
    {HYPERVISOR_sysctl, IN_STRUCT, 136}, /* struct xen_sysctl, every release */
    {HYPERVISOR_domctl, IN_STRUCT, 144}, /* struct xen_domctl, every release */
    /* struct xen_platform_op: cmd, interface_version, a union padded to 128 bytes,
     * public/platform.h@RELEASE-4.13.0:621-648 .. @RELEASE-4.22.0:670-700 */
    {HYPERVISOR_platform_op, IN_STRUCT, XP_PLATFORM_OP_SIZE},
};

/* One row per allowed pair. A memory_op subop is the whole cmd: continuation bits
 * (cmd >> 6, a start extent) make another request, which is not on the list. */
static const struct {
    uint64_t op;
    uint64_t subop;
} allowed[] = {
    /* op                   subop    name: where defined; why it only reads */
    {HYPERVISOR_memory_op,   2},  /* XENMEM_maximum_ram_page: public/memory.h@RELEASE-4.17.0:127-152; returns max_page */
    {HYPERVISOR_memory_op,   3},  /* XENMEM_current_reservation: same; returns a domain's pages */
    {HYPERVISOR_memory_op,   4},  /* XENMEM_maximum_reservation: same; returns a domain's limit */
    {HYPERVISOR_memory_op,  14},  /* XENMEM_maximum_gpfn: same; returns a domain's top gpfn */
    {HYPERVISOR_memory_op,  18},  /* XENMEM_get_sharing_freed_pages: x86/x86_64/mm.c@RELEASE-4.17.0:1004 (0 without CONFIG_MEM_SHARING: asm/mem_sharing.h@RELEASE-4.17.0:121-129); global count, arg unused */
    {HYPERVISOR_memory_op,  19},  /* XENMEM_get_sharing_shared_pages: x86/x86_64/mm.c@RELEASE-4.17.0:1007; same */
    {HYPERVISOR_get_debugreg, 6}, /* DR6 of the calling vCPU, PV only: x86/pv/misc-hypercalls.c@RELEASE-4.17.0:31-40; only DR6 is probed */
    {HYPERVISOR_vcpu_op,     3},  /* VCPUOP_is_up: public/vcpu.h@RELEASE-4.17.0:57; common/domain.c@RELEASE-4.17.0:1649-1651 returns !(v->pause_flags & VPF_down) for one of the caller's own vCPUs, arg unused */
    {HYPERVISOR_kexec_op,    6},  /* KEXEC_CMD_kexec_status: public/kexec.h@RELEASE-4.17.0:221-224; common/kexec.c@RELEASE-4.17.0:1199-1214 reads the type, returns a flag bit, any type (-EINVAL past 1); the IN_HYPERCALL bit it holds (:1226,1263) only makes a concurrent kexec_op retry */
    {HYPERVISOR_hypfs_op,    0},  /* XEN_HYPFS_OP_get_version: common/hypfs.c@RELEASE-4.17.0:689-696; returns XEN_HYPFS_VERSION, reads nothing else */
    {HYPERVISOR_xen_version, 0},  /* XENVER_version: public/version.h@RELEASE-4.17.0; every XENVER_ subop reports */
    {HYPERVISOR_xen_version, 1},  /* XENVER_extraversion */
    {HYPERVISOR_xen_version, 2},  /* XENVER_compile_info */
    {HYPERVISOR_xen_version, 3},  /* XENVER_capabilities */
    {HYPERVISOR_xen_version, 4},  /* XENVER_changeset */
    {HYPERVISOR_xen_version, 5},  /* XENVER_platform_parameters */
    {HYPERVISOR_xen_version, 6},  /* XENVER_get_features */
    {HYPERVISOR_xen_version, 7},  /* XENVER_pagesize */
    {HYPERVISOR_xen_version, 8},  /* XENVER_guest_handle */
    {HYPERVISOR_xen_version, 9},  /* XENVER_commandline */
    {HYPERVISOR_xen_version, 10}, /* XENVER_build_id */
    {HYPERVISOR_xen_version, 11}, /* XENVER_extraversion2: public/version.h@RELEASE-4.20.0 (commit e3bb1b6525) */
    {HYPERVISOR_xen_version, 12}, /* XENVER_capabilities2: same */
    {HYPERVISOR_xen_version, 13}, /* XENVER_changeset2: same */
    {HYPERVISOR_xen_version, 14}, /* XENVER_commandline2: same */
    {HYPERVISOR_sysctl,      3},  /* XEN_SYSCTL_physinfo: public/sysctl.h@RELEASE-4.17.0; fills in physinfo */
    {HYPERVISOR_sysctl,      6},  /* XEN_SYSCTL_getdomaininfolist: same; fills in domain records */
    {HYPERVISOR_sysctl,     27},  /* XEN_SYSCTL_livepatch_op: public/sysctl.h@RELEASE-4.17.0:1085; LIST only, checked by xp_check_nested */
    {HYPERVISOR_domctl,      5},  /* XEN_DOMCTL_getdomaininfo: public/domctl.h@RELEASE-4.17.0; fills in one record */
    {HYPERVISOR_platform_op, 61}, /* XENPF_resource_op, MSR_READ entries only (xp_check_resource_op):
                                   * x86/platform_hypercall.c@RELEASE-4.20.0:109-153,789-852; returns nr_done */
    {HYPERVISOR_platform_op, 64}, /* XENPF_get_dom0_console (4.18+): x86/platform_hypercall.c@RELEASE-4.20.0:885-896;
                                   * fills in the boot console info, returns its size */
};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/*
 * Where Xen writes, beside where it reads: the argument words and struct handles each
 * allowed pair writes through. The transport lets Xen write only into the caller's
 * hypercall buffers (xp_alloc; on the guard's path, anywhere but the transport's own
 * memory and the issuing thread's stack), so a word named here must point there or be
 * 0. A word not named here is only read (memory_op's domid, kexec_status's struct) or
 * unused, and may point anywhere outside the span. Private copies (a sysctl, domctl
 * or platform_op struct, resource_op's entries, multicall entries) are what Xen writes
 * instead of the caller's, and are handed back by the transport.
 */
#define ARG(k) (1u << (k))
static const struct {
    uint64_t op;
    uint64_t subop;         /* the by-value subop, or the struct's cmd */
    unsigned args;          /* arguments Xen writes through (ARG(k)) */
    uint8_t handles[6];     /* byte offsets of the struct's handles Xen writes through */
} writes[] = {
    /* xen_version writes its answer at arg1 for every subop but XENVER_version (0) and
     * XENVER_pagesize (7), which take no buffer: common/kernel.c@RELEASE-4.17.0:474-660,
     * @RELEASE-4.20.0:577-760 (get_features, build_id and the 4.20 varbufs read the
     * buffer first, then write it; build_id and the varbufs accept a NULL buffer and
     * then only return the size). */
    {HYPERVISOR_xen_version, 1, ARG(1), {0}},
    {HYPERVISOR_xen_version, 2, ARG(1), {0}},
    {HYPERVISOR_xen_version, 3, ARG(1), {0}},
    {HYPERVISOR_xen_version, 4, ARG(1), {0}},
    {HYPERVISOR_xen_version, 5, ARG(1), {0}},
    {HYPERVISOR_xen_version, 6, ARG(1), {0}},
    {HYPERVISOR_xen_version, 8, ARG(1), {0}},
    {HYPERVISOR_xen_version, 9, ARG(1), {0}},
    {HYPERVISOR_xen_version, 10, ARG(1), {0}},
    {HYPERVISOR_xen_version, 11, ARG(1), {0}},
    {HYPERVISOR_xen_version, 12, ARG(1), {0}},
    {HYPERVISOR_xen_version, 13, ARG(1), {0}},
    {HYPERVISOR_xen_version, 14, ARG(1), {0}},
    /* XEN_SYSCTL_getdomaininfolist: the records go to its buffer handle, at offset 8 of
     * the union (struct offset 16): common/sysctl.c@RELEASE-4.17.0:98. */
    {HYPERVISOR_sysctl, 6, 0, {16}},
    /* XEN_SYSCTL_livepatch_op LIST writes through status, name and len, and from
     * sysctl interface 0x15 (4.17) also metadata and metadata_len
     * (common/livepatch.c@RELEASE-4.17.0:1217-1231). In struct xen_sysctl they sit at
     * 32, 40, 48 before 0x15 and, after name_total_size and metadata_total_size, at
     * 40-72 from it (public/sysctl.h, struct xen_sysctl_livepatch_list): every word
     * from 32 to 72 is judged as a handle (the two sizes, which xenprobe sends as 0,
     * share the word at 32). */
    {HYPERVISOR_sysctl, XEN_SYSCTL_livepatch_op, 0, {32, 40, 48, 56, 64, 72}},
};

/* The arguments of a by-value op Xen writes through (ARG(k) bits). */
unsigned xp_written_args(uint64_t op, uint64_t subop)
{
    for (size_t i = 0; i < COUNT(writes); i++)
        if (writes[i].op == op && writes[i].subop == subop)
            return writes[i].args;
    return 0;
}

/* The handles of a struct with this cmd that Xen writes through: their byte offsets in
 * at[] (at most 6), and how many. */
size_t xp_written_handles(uint64_t op, uint32_t cmd, size_t at[6])
{
    size_t n = 0;
    for (size_t i = 0; i < COUNT(writes); i++) {
        if (writes[i].op != op || writes[i].subop != cmd)
            continue;
        for (size_t k = 0; k < 6 && writes[i].handles[k]; k++)
            at[n++] = writes[i].handles[k];
        break;
    }
    return n;
}

static int carrier_of(uint64_t op, enum carrier *c, size_t *size)
{
    for (size_t i = 0; i < COUNT(carriers); i++) {
        if (carriers[i].op == op) {
            *c = carriers[i].carrier;
            *size = carriers[i].size;
            return 1;
        }
    }
    return 0;
}

static int is_allowed(uint64_t op, uint64_t subop)
{
    for (size_t i = 0; i < COUNT(allowed); i++)
        if (allowed[i].op == op && allowed[i].subop == subop)
            return 1;
    return 0;
}

/* The size of the struct an IN_STRUCT op's arg0 points to; 0 for any other op. */
size_t xp_struct_size(uint64_t op)
{
    enum carrier c;
    size_t size;
    return carrier_of(op, &c, &size) && c == IN_STRUCT ? size : 0;
}

/* The cmd found at the start of a private copy of an IN_STRUCT op's struct. */
int xp_check_cmd(uint64_t op, uint32_t cmd)
{
    return is_allowed(op, cmd) ? XP_ALLOWED : XP_DENY_SUBOP;
}

/*
 * A sysctl that carries a command of its own: XEN_SYSCTL_livepatch_op. Its cmd sits at
 * the start of the union (offset 8 of struct xen_sysctl, after cmd and
 * interface_version), in struct xen_sysctl_livepatch_op (public/sysctl.h@RELEASE-4.13.0
 * :936,1063 ... @RELEASE-4.22.0:1105,1256: the same layout in every release). Only LIST
 * (2) is read-only: it copies the payload list out (common/livepatch.c@RELEASE-4.17.0
 * :1159-1250). UPLOAD (0) and ACTION (3) change the hypervisor; GET (1) reads, but
 * returns 0, not a count, so it is not probed and stays refused.
 *
 * LIST only writes into the buffers its handles name (__copy_to_guest_offset) and never
 * reads them, so they need no private copy: the handles themselves are in the copy.
 */
#define XEN_SYSCTL_LIVEPATCH_LIST 2
#define SYSCTL_UNION_OFFSET       8

static int check_livepatch_op(const uint8_t *sysctl, size_t size)
{
    uint32_t cmd;

    if (size < SYSCTL_UNION_OFFSET + sizeof(cmd))
        return XP_DENY_SUBOP;
    memcpy(&cmd, sysctl + SYSCTL_UNION_OFFSET, sizeof(cmd));
    return cmd == XEN_SYSCTL_LIVEPATCH_LIST ? XP_ALLOWED : XP_DENY_SUBOP;
}

/* The check after xp_check_cmd for a struct whose allowed cmd carries a command of its
 * own, on the same private copy of `size` bytes; XP_ALLOWED for every other cmd. */
int xp_check_nested(uint64_t op, const void *copy, size_t size)
{
    uint32_t cmd;

    if (size < sizeof(cmd))
        return XP_DENY_SUBOP;
    memcpy(&cmd, copy, sizeof(cmd));
    if (op == HYPERVISOR_sysctl && cmd == XEN_SYSCTL_livepatch_op)
        return check_livepatch_op(copy, size);
    return XP_ALLOWED;
}

/* A sysctl struct (its first `size` bytes) as xp_issue judges it: the cmd, then the
 * command inside it. For tests and diagnostics. */
int xp_check_sysctl(const void *copy, size_t size)
{
    uint32_t cmd;
    int v;

    if (size < sizeof(cmd))
        return XP_DENY_SUBOP;
    memcpy(&cmd, copy, sizeof(cmd));
    v = xp_check_cmd(HYPERVISOR_sysctl, cmd);
    return v != XP_ALLOWED ? v : xp_check_nested(HYPERVISOR_sysctl, copy, size);
}

int xp_check_sysctl_cmd(uint32_t cmd)
{
    return xp_check_cmd(HYPERVISOR_sysctl, cmd);
}

int xp_check_domctl_cmd(uint32_t cmd)
{
    return xp_check_cmd(HYPERVISOR_domctl, cmd);
}

int xp_check_platform_cmd(uint32_t cmd)
{
    return xp_check_cmd(HYPERVISOR_platform_op, cmd);
}

int xp_check_entry(const xp_multicall_entry *e)
{
    enum carrier c;
    size_t size;

    /* Nested multicalls and struct-carrying ops are refused inside a multicall:
     * their cmd lives behind a pointer the hypervisor would read after our check. */
    if (e->op == HYPERVISOR_multicall)
        return XP_DENY_NESTED;
    if (!carrier_of(e->op, &c, &size))
        return XP_DENY_OP;
    /* A platform_op entry's struct is copied and judged by xp_issue (transport.c). */
    if (e->op == HYPERVISOR_platform_op)
        return XP_ALLOWED;
    if (c != BY_VALUE)
        return XP_DENY_NESTED;
    return is_allowed(e->op, e->args[0]) ? XP_ALLOWED : XP_DENY_SUBOP;
}

/* XENPF_resource_op: how many entries its private copy may hold. Xen refuses more than
 * RESOURCE_ACCESS_MAX_ENTRIES (3) and does nothing for none
 * (x86/platform_hypercall.c@RELEASE-4.13.0:39,759-766 .. @RELEASE-4.22.0:45); xenprobe
 * asks for one or more. */
int xp_check_resource_count(uint32_t nr_entries)
{
    return nr_entries >= 1 && nr_entries <= XP_RESOURCE_MAX ? XP_ALLOWED : XP_DENY_ARGS;
}

/* Every entry of a XENPF_resource_op, as copied: only XEN_RESOURCE_OP_MSR_READ (0) reads;
 * XEN_RESOURCE_OP_MSR_WRITE (1, census S6) writes an MSR, and Xen answers other cmds
 * -EOPNOTSUPP (public/platform.h@RELEASE-4.17.0:557-579). The cmd is the entry's first
 * 32-bit word. Which MSRs may be read is Xen's own whitelist (msr_read_allowed). */
int xp_check_resource_entries(const xp_resource_entry *entries, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++)
        if (entries[i].cmd != 0)
            return XP_DENY_SUBOP;
    return XP_ALLOWED;
}

int xp_check(uint64_t op, const uint64_t args[5])
{
    enum carrier c;
    size_t size;

    /* A multicall's entries are checked on the private copy (xp_issue). */
    if (op == HYPERVISOR_multicall)
        return XP_ALLOWED;
    if (!carrier_of(op, &c, &size))
        return XP_DENY_OP;
    /* A struct's cmd is checked on the private copy (xp_issue). */
    if (c == IN_STRUCT)
        return XP_ALLOWED;
    return is_allowed(op, args[0]) ? XP_ALLOWED : XP_DENY_SUBOP;
}
