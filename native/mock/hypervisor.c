/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The emulated hypervisor: the read-only hypercalls xenprobe and libxc use.
 *
 * Like Xen, each handler copies its argument struct in, works on the copy
 * and copies it (or one field) back, returning a 64-bit long where
 * -4095..-1 means -errno.  Facts are from the Xen sources cited in
 * shared/reference/xen-abi.md and in the comments below.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mock.h"

/* Multicall re-entry is refused per vCPU in Xen; per thread here. */
static __thread int in_multicall;

#define PAGE_SIZE 4096
/* HYPERVISOR_VIRT_START for 64-bit PV (public/arch-x86/xen-x86_64.h). */
#define VIRT_START 0xFFFF800000000000ull
/* XENVER_get_features submap 0 for a PV guest (common/kernel.c@4.17):
 * mmu_pt_update_preserve_ad(5), highmem_assist(6), gnttab_map_avail_bits(7),
 * memory_op_vnode_supported(13), direct_mapped(17), plus dom0(11). */
#define FEATURES_PV ((1u << 5) | (1u << 6) | (1u << 7) | (1u << 13) | (1u << 17))
#define FEATURE_DOM0 (1u << 11)

static uint16_t get16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return v; }
static uint32_t get32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint64_t get64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }
static void put16(uint8_t *p, uint16_t v) { memcpy(p, &v, 2); }
static void put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static void put64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }

static struct mock_domain *domain_by_id(struct scenario *s, uint32_t id)
{
    size_t i = scenario_lower_bound(s, id);
    return i < s->ndomains && s->domains[i].id == id && !faults_domain_gone((uint16_t)id)
           ? &s->domains[i] : NULL;
}

/* Reads tot_pages and lets a ballooning domain move (hv_lock held). */
static uint64_t read_tot_pages(struct mock_domain *d)
{
    uint64_t v = d->tot_pages;

    if (d->balloon_every && ++d->balloon_reads % d->balloon_every == 0) {
        int64_t next = (int64_t)d->tot_pages + d->balloon_step;
        if (d->balloon_step > 0 && next >= (int64_t)d->balloon_max) {
            next = (int64_t)d->balloon_max;
            d->balloon_step = -d->balloon_step;
        } else if (d->balloon_step < 0 && next <= (int64_t)d->balloon_min) {
            next = (int64_t)d->balloon_min;
            d->balloon_step = -d->balloon_step;
        }
        d->tot_pages = (uint64_t)next;
    }
    return v;
}

/* One xen_domctl_getdomaininfo record: the scenario's bytes with the
 * fields that change overwritten (offsets stable 4.10-4.22). */
static void build_record(struct scenario *s, struct mock_domain *d, uint8_t *out)
{
    memcpy(out, d->record, s->getdomaininfo_size);
    put16(out, d->id);
    put64(out + 8, read_tot_pages(d));
    put64(out + 16, d->max_pages);
}

/* ---- memory_op (common/memory.c@4.17:1484-1531) ---- */
static int64_t memory_op(struct scenario *s, struct hv_req *r)
{
    uint64_t cmd = r->args[0];
    unsigned op = cmd & 0x3f;           /* MEMOP_CMD_MASK */
    uint64_t start_extent = cmd >> 6;   /* MEMOP_EXTENT_SHIFT */
    struct mock_domain *d;
    int64_t rc;

    switch (op) {
    case 2:                             /* XENMEM_maximum_ram_page */
        if (start_extent)
            return -EINVAL;
        return (int64_t)s->max_page;
    case 3: case 4: case 14:            /* current/maximum_reservation, maximum_gpfn */
        if (start_extent)
            return -EINVAL;
        if (r->copied)
            return -EFAULT;
        /* DOMID_SELF is the caller; other reserved ids (DOMID_IO, _XEN...)
         * are system domains that never enter the domain hash
         * (common/domain.c@4.17:652-654), so the lookup gives -ESRCH. */
        d = domain_by_id(s, r->in.domid == DOMID_SELF ? s->self_domid : r->in.domid);
        if (!d)
            return -ESRCH;
        /* xsm_memory_stat_reservation(XSM_TARGET): only self or privileged. */
        if (s->role == ROLE_DOMU && d->id != s->self_domid)
            return -EPERM;
        pthread_mutex_lock(&hv_lock);
        rc = op == 3 ? (int64_t)read_tot_pages(d)
           : op == 4 ? (int64_t)d->max_pages : (int64_t)d->max_gpfn;
        pthread_mutex_unlock(&hv_lock);
        return rc;
    default:
        return -ENOSYS;                 /* not emulated: xenprobe is read-only */
    }
}

/* ---- xen_version (common/kernel.c@4.17:474-660) ---- */
static int64_t xen_version(struct scenario *s, int cmd, uint64_t arg)
{
    /* Dummy XSM: subops 0-8 are open to every guest, the rest need privilege. */
    int deny = s->role == ROLE_DOMU && (cmd < 0 || cmd > 8);
    uint8_t buf[1024];
    struct mock_domain *self;

    memset(buf, 0, sizeof(buf));
    switch (cmd) {
    case 0:
        return (int32_t)((s->major << 16) | s->minor);
    case 1:
        memcpy(buf, s->extraversion, 16);
        return uwrite(arg, buf, 16) ? -EFAULT : 0;
    case 2:                             /* compiler[64] by[16] domain[32] date[32] */
        strcpy((char *)buf, "gcc (xenprobe-mock)");
        strcpy((char *)buf + 64, "xenprobe");
        strcpy((char *)buf + 80, "mock.invalid");
        strcpy((char *)buf + 112, "Thu Jan  1 00:00:00 UTC 1970");
        return uwrite(arg, buf, 144) ? -EFAULT : 0;
    case 3:
        memcpy(buf, s->capabilities, 1024);
        return uwrite(arg, buf, 1024) ? -EFAULT : 0;
    case 4:
        strcpy((char *)buf, census_changeset());
        return uwrite(arg, buf, 64) ? -EFAULT : 0;
    case 5:
        put64(buf, VIRT_START);
        return uwrite(arg, buf, 8) ? -EFAULT : 0;
    case 6:
        if (uread(buf, arg, 8))
            return -EFAULT;
        if (get32(buf) != 0)            /* only submap 0 exists */
            return -EINVAL;
        put32(buf + 4, FEATURES_PV | (s->role == ROLE_DOM0 ? FEATURE_DOM0 : 0));
        return uwrite(arg, buf, 8) ? -EFAULT : 0;
    case 7:
        return arg ? -EINVAL : PAGE_SIZE;
    case 8:                             /* the caller's domain handle (UUID) */
        self = domain_by_id(s, s->self_domid);
        if (self && self->record_len >= 92)
            memcpy(buf, self->record + 76, 16);
        return uwrite(arg, buf, 16) ? -EFAULT : 0;
    case 9:
        if (deny)
            return uwrite(arg, "<denied>", 9) ? -EFAULT : 0;
        strcpy((char *)buf, census_commandline());
        return uwrite(arg, buf, 1024) ? -EFAULT : 0;
    default:
        return -ENOSYS;                 /* build_id and later: not emulated */
    }
}

/* ---- sysctl (common/sysctl.c@4.17:32-114) ---- */
static int64_t sysctl(struct scenario *s, struct hv_req *r)
{
    uint8_t *b = r->in.raw;
    int64_t rc = 0;

    if (r->copied)
        return -EFAULT;
    if (r->interface_version != s->sysctl_interface)
        return -EACCES;
    if (s->role == ROLE_DOMU)           /* xsm_sysctl(XSM_PRIV) */
        return -EPERM;

    switch (get32(b)) {
    case 3:                             /* XEN_SYSCTL_physinfo */
        memcpy(b + 8, s->physinfo, s->physinfo_len);
        break;
    case 6: {                           /* XEN_SYSCTL_getdomaininfolist */
        uint16_t first = get16(b + 8);
        uint32_t max = get32(b + 12), n = 0;
        uint64_t buffer = get64(b + 16);
        uint8_t rec[MAX_GDI_SIZE];

        pthread_mutex_lock(&hv_lock);
        for (size_t i = scenario_lower_bound(s, first); i < s->ndomains; i++) {
            struct mock_domain *d = &s->domains[i];
            if (n == max)
                break;
            if (faults_domain_gone(d->id))
                continue;
            build_record(s, d, rec);
            if (uwrite(buffer + (uint64_t)n * s->getdomaininfo_size, rec,
                       s->getdomaininfo_size)) {
                rc = -EFAULT;
                break;
            }
            n++;
        }
        pthread_mutex_unlock(&hv_lock);
        if (rc)
            return rc;
        put32(b + 24, n);
        break;
    }
    case 27:                            /* XEN_SYSCTL_livepatch_op (census.c) */
        rc = census_livepatch_op(s, b + 8);
        /* copyback unless -ENOSYS/-EOPNOTSUPP, the rc kept (sysctl.c@4.17:479-483,494-496) */
        if (rc == -ENOSYS || rc == -EOPNOTSUPP)
            return rc;
        return uwrite(r->args[0], b, SYSCTL_SIZE) ? -EFAULT : rc;
    default:
        return -ENOSYS;
    }
    return uwrite(r->args[0], b, SYSCTL_SIZE) ? -EFAULT : 0;
}

/* ---- domctl (common/domctl.c@4.17:283-320,535-574; @4.18:535-544) ---- */
static int64_t domctl(struct scenario *s, struct hv_req *r)
{
    uint8_t *b = r->in.raw;
    uint16_t dom = get16(b + 8);
    struct mock_domain *d;

    if (r->copied)
        return -EFAULT;
    if (r->interface_version != s->domctl_interface)
        return -EACCES;

    d = domain_by_id(s, dom);           /* rcu_lock_domain_by_id: no SELF */
    if (get32(b) != 5) {                /* not XEN_DOMCTL_getdomaininfo */
        if (!d)
            return -ESRCH;
        return s->role == ROLE_DOMU ? -EPERM : -ENOSYS;
    }

    /* >= 4.18 looks the domain up before the XSM check; <= 4.17 lets
     * getdomaininfo through with d == NULL and searches after it. */
    if (s->getdomaininfo_exact && !d)
        return -ESRCH;
    if (s->role == ROLE_DOMU)           /* xsm_domctl: XSM_XS_PRIV */
        return -EPERM;
    if (!d) {
        if (dom >= DOMID_FIRST_RESERVED)
            return -EINVAL;
        size_t i = scenario_lower_bound(s, dom);
        while (i < s->ndomains && faults_domain_gone(s->domains[i].id))
            i++;
        if (i == s->ndomains)
            return -ESRCH;
        d = &s->domains[i];
    }
    pthread_mutex_lock(&hv_lock);
    build_record(s, d, b + 16);
    pthread_mutex_unlock(&hv_lock);
    put16(b + 8, d->id);                /* op->domain = info.domain */
    return uwrite(r->args[0], b, DOMCTL_SIZE) ? -EFAULT : 0;
}

/* ---- decoding, fault/hang rules, dispatch ---- */

/* Copies in what the handler needs, as Xen does before acting, and fills
 * the fields the log and the fault/hang rules use. */
static void decode(struct hv_req *r)
{
    r->subop = -1;
    switch (r->op) {
    case HC_MEMORY_OP:
        r->has_cmd_raw = 1;
        r->cmd_raw = r->args[0];
        r->subop = (int64_t)(r->args[0] & 0x3f);
        if ((r->subop == 3 || r->subop == 4 || r->subop == 14) && !(r->args[0] >> 6)) {
            r->copied = uread(&r->in.domid, r->args[1], 2);
            if (!r->copied) {
                r->has_domain = 1;
                r->domain = r->in.domid;
            }
        }
        break;
    case HC_XEN_VERSION:
        r->subop = (int)r->args[0];     /* do_xen_version(int cmd, ...) */
        break;
    case 9:                             /* get_debugreg(int reg) */
    case 42:                            /* hypfs_op(unsigned int cmd, ...) */
    case 37:                            /* kexec_op(unsigned long op, ...) */
        r->subop = (int64_t)r->args[0];
        break;
    case 24:                            /* vcpu_op(int cmd, unsigned int vcpuid, ...) */
        r->subop = (int)r->args[0];
        break;
    case HC_PLATFORM_OP:
        /* x86/platform_hypercall.c@4.20:225-229: the struct, then its version. */
        r->copied = uread(r->in.raw, r->args[0], PLATFORM_OP_SIZE);
        if (r->copied)
            break;
        r->subop = get32(r->in.raw);
        r->has_iv = 1;
        r->interface_version = get32(r->in.raw + 4);
        if (r->subop == 61) {
            /* XENPF_resource_op: nr_entries, cpu, then the entries' handle (:795-815). */
            uint32_t nr = get32(r->in.raw + 8);
            if (nr >= 1 && nr <= RESOURCE_MAX_ENTRIES &&
                !uread(r->res, get64(r->in.raw + 16), (size_t)nr * RESOURCE_ENTRY_SIZE))
                r->nres = nr;
        }
        break;
    case HC_SYSCTL:
    case HC_DOMCTL:
        r->copied = uread(r->in.raw, r->args[0],
                          r->op == HC_SYSCTL ? SYSCTL_SIZE : DOMCTL_SIZE);
        if (r->copied)
            break;
        r->subop = get32(r->in.raw);
        r->has_iv = 1;
        r->interface_version = get32(r->in.raw + 4);
        if (r->op == HC_SYSCTL && r->subop == 27) {
            r->has_inner = 1;           /* struct xen_sysctl_livepatch_op's cmd */
            r->inner = get32(r->in.raw + 8);
        }
        if (r->op == HC_DOMCTL) {
            r->has_domain = 1;
            r->domain = get16(r->in.raw + 8);
        }
        break;
    }
}

static int rule_matches(const struct mock_rule *m, const struct hv_req *r)
{
    return m->op == r->op && (m->subop == -1 || m->subop == r->subop);
}

static void hang_forever(struct hv_req *r, uint64_t seq, int via)
{
    struct jbuf j;
    struct timespec ts = { 1, 0 };

    jb_begin(&j, "hang", log_next_seq());
    jb_u64(&j, "parent_seq", seq);
    jb_str(&j, "via", via_name(via));
    jb_req(&j, r, via == VIA_MULTICALL ? 6 : 5);
    jb_finish(&j);
    for (;;)
        nanosleep(&ts, NULL);
}

/* XENPROBE_MOCK_XEN_DEBUG=1: the hypervisor is a debug build (CONFIG_DEBUG=y, so
 * NDEBUG stays undefined: include/xen/config.h@RELEASE-4.17.0:92-93); of what that
 * changes, only the multicall's poisoning of its entries is modelled. */
static int xen_debug(void)
{
    static int debug = -1;
    if (debug < 0) {
        const char *v = getenv("XENPROBE_MOCK_XEN_DEBUG");
        debug = v && !strcmp(v, "1");
    }
    return debug;
}

static int64_t multicall(struct hv_req *r, uint64_t seq)
{
    uint64_t list = r->args[0];
    uint32_t nr = (uint32_t)r->args[1];     /* do_multicall(..., uint32_t nr_calls) */
    int64_t rc = 0;

    /* common/multicall.c@4.17:44-48: nested multicalls are refused. */
    if (in_multicall)
        return -EINVAL;
    in_multicall = 1;
    if (nr && !uaccess_ok(list, (uint64_t)nr * MULTICALL_ENTRY_SIZE))
        rc = -EFAULT;
    for (uint32_t i = 0; !rc && i < nr; i++) {
        uint64_t e[8], addr = list + (uint64_t)i * MULTICALL_ENTRY_SIZE;
        struct hv_req sub;
        struct jbuf j;
        int64_t res;

        if (uread(e, addr, sizeof(e))) {
            rc = -EFAULT;
            break;
        }
        memset(&sub, 0, sizeof(sub));
        sub.op = e[0];
        memcpy(sub.args, e + 2, sizeof(sub.args));
        res = hv_hypercall(&sub, seq, VIA_MULTICALL);

        jb_begin(&j, "multicall_entry", log_next_seq());
        jb_u64(&j, "parent_seq", seq);
        jb_u64(&j, "index", i);
        jb_str(&j, "via", "multicall");
        jb_req(&j, &sub, 6);
        jb_i64(&j, "result", res);
        jb_finish(&j);

        /* A debug Xen (NDEBUG undefined) overwrites the whole entry with 0xAA after
         * the call, then writes the result back: the caller may rely on the result
         * alone (common/multicall.c@RELEASE-4.14.0:76-86,94-96, the same lines at
         * RELEASE-4.17.0 and RELEASE-4.20.0). A release build writes only the result. */
        if (xen_debug()) {
            uint8_t corrupt[MULTICALL_ENTRY_SIZE];
            memset(corrupt, 0xAA, sizeof(corrupt));
            (void)uwrite(addr, corrupt, sizeof(corrupt));
        }
        if (uwrite(addr + 8, &res, 8))
            rc = -EFAULT;
    }
    in_multicall = 0;
    return rc;
}

int64_t hv_hypercall(struct hv_req *r, uint64_t seq, int via)
{
    struct scenario *s = scenario_get();
    const struct mock_rule *fault = NULL;
    int64_t rc;

    decode(r);
    if (!s)
        return -ENOSYS;
    for (size_t i = 0; i < s->nhangs; i++)
        if (rule_matches(&s->hangs[i], r))
            hang_forever(r, seq, via);
    faults_delay(r);

    pthread_mutex_lock(&hv_lock);
    for (size_t i = 0; i < s->nfaults && !fault; i++) {
        struct mock_rule *m = &s->faults[i];
        if (m->count != 0 && rule_matches(m, r)) {
            fault = m;
            if (m->count > 0)
                m->count--;
        }
    }
    pthread_mutex_unlock(&hv_lock);

    if (fault) {
        rc = -fault->err;
    } else if (census_model(s, r, &rc)) {
        /* census.c: get_debugreg, hypfs, sharing counts, build_id and *2 lengths */
    } else {
        switch (r->op) {
        case HC_MEMORY_OP:
            rc = memory_op(s, r);
            /* compat/memory.c@4.17:735-739: a 32-bit guest's memory_op
             * result is clamped to the int range. */
            if (s->compat_clamp)
                rc = rc > INT32_MAX ? INT32_MAX : rc < INT32_MIN ? INT32_MIN : rc;
            break;
        case HC_MULTICALL:
            /* A PVH (HVM) caller before 4.15.1: no multicall in hvm_hypercall_table,
             * so -ENOSYS (x86/hvm/hypercall.c@RELEASE-4.14.6:127-157,220-224,
             * @RELEASE-4.15.0:124-154,217-221; added at RELEASE-4.15.1:127). */
            rc = s->multicall ? multicall(r, seq) : -ENOSYS;
            break;
        case HC_XEN_VERSION: rc = xen_version(s, (int)r->args[0], r->args[1]); break;
        case HC_SYSCTL:      rc = sysctl(s, r); break;
        case HC_DOMCTL:      rc = domctl(s, r); break;
        default:             rc = -ENOSYS; break;   /* includes dm_op (41) */
        }
    }
    rc = faults_mangle(r, rc);
    /* A 32-bit hypervisor's long holds only 32 bits of the result. */
    if (s->hypervisor_bits == 32)
        rc = (int64_t)(int32_t)(uint32_t)(uint64_t)rc;
    return rc;
}
