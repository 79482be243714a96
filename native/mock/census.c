/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The rc census's other read-only paths (tests/census.py), modelled when the scenario
 * has the directive
 *
 *   census GUEST_TYPE          GUEST_TYPE: pv or pvh, the dom0's own type
 *
 * (from `[hypervisor] census = true`).  Without it these calls get -ENOSYS, as every
 * call the mock does not model: a scenario says what it models.
 *
 * Modelled (x86, default build, cites are file@RELEASE-4.NN.0:line under xen/):
 *   get_debugreg(reg)            arch/x86/pv/misc-hypercalls.c@4.17:31-40
 *   xen_version build_id (10)    common/kernel.c@4.17:622-657, @4.20:507-568
 *   xen_version 11-14 (4.20+)    common/kernel.c@4.20:507-568 (commit e3bb1b6525)
 *   memory_op 18/19              arch/x86/x86_64/mm.c@4.17:1003-1007
 *   hypfs_op get_version (4.14+) common/hypfs.c@4.17:686-696
 *   vcpu_op VCPUOP_is_up         arch/x86/domain.c@4.17:1499-1506 (-ENOENT past the
 *                                caller's vCPUs), common/domain.c@4.17:1649-1651
 *   kexec_op kexec_status (PV)   common/kexec.c@4.17:1199-1214,1216-1265
 *   platform_op resource_op (61), MSR_READ of MSR_IA32_TSC
 *                                arch/x86/platform_hypercall.c@4.20:44,69-93,109-216,789-852
 *   platform_op get_dom0_console (64, 4.18+)
 *                                arch/x86/platform_hypercall.c@4.20:885-896,
 *                                drivers/video/vga.c@4.20:200-204
 *
 * and, for the vCPUs, the dom0 kernel's /sys/devices/system/cpu/{possible,online}.
 *   sysctl livepatch_op LIST     common/livepatch.c@4.13:989-1049 @4.17:1159-1250
 *                                (census_livepatch_op, called from hypervisor.c's sysctl)
 *
 * Like faults.c, the state lives here: scenario.c hands over the directive.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mock.h"

#define HC_GET_DEBUGREG 9
#define HC_VCPU_OP      24
#define HC_KEXEC_OP     37
#define HC_HYPFS_OP     42

#define MAX_VCPUS 4096              /* the mock's bound; Xen's own is far above a dom0's */

enum { OFF, DOM0_PV, DOM0_PVH };
static int model = OFF;
static char changeset[64] = "xenprobe-mock";
static char commandline[1024];
static uint32_t build_id_size = 20;
static uint32_t vcpus = 1;                     /* the dom0's own vCPUs */
static uint8_t vcpu_offline[MAX_VCPUS];        /* offline in the dom0 kernel */
static unsigned long kexec_flags;              /* KEXEC_FLAG_{DEFAULT,CRASH}_POS bits */
/* Payloads loaded; -1: a build without CONFIG_LIVEPATCH (`census_livepatch N|off`). */
static long livepatch_payloads = 0;
/* A vCPU the dom0 kernel takes offline and online again: after every `flap_every`
 * VCPUOP_is_up reads of it, it changes state in Xen and in the kernel's CPU list alike. */
static uint32_t flap_id, flap_every, flap_reads;

const char *census_changeset(void) { return changeset; }
const char *census_commandline(void) { return commandline; }

/* "-" or an even number of hex digits, decoded into dst (NUL-terminated). */
static int unhex(const char *hex, char *dst, size_t cap)
{
    size_t n = strcmp(hex, "-") ? strlen(hex) : 0;

    if (n % 2 || n / 2 >= cap)
        return -1;
    for (size_t i = 0; i < n / 2; i++) {
        unsigned int byte;
        if (sscanf(hex + 2 * i, "%2x", &byte) != 1)
            return -1;
        dst[i] = (char)byte;
    }
    dst[n / 2] = 0;
    return 0;
}

int census_directive(const char *name, char **arg, int narg, char *msg, size_t len)
{
    if (!strcmp(name, "census_text")) {
        int cs = narg == 2 && !strcmp(arg[0], "changeset");
        int cl = narg == 2 && !strcmp(arg[0], "commandline");
        if ((!cs && !cl) || unhex(arg[1], cs ? changeset : commandline,
                                  cs ? sizeof(changeset) : sizeof(commandline))) {
            snprintf(msg, len, "census_text: expected changeset|commandline HEX");
            return -1;
        }
        return 0;
    }
    if (!strcmp(name, "census_build_id_size")) {
        unsigned long v;
        char *end;
        if (narg != 1 || (v = strtoul(arg[0], &end, 10)) == 0 || *end || v > 65536) {
            snprintf(msg, len, "census_build_id_size: expected 1..65536");
            return -1;
        }
        build_id_size = (uint32_t)v;
        return 0;
    }
    if (!strcmp(name, "census_vcpus") || !strcmp(name, "census_vcpu_offline")) {
        int count = !strcmp(name, "census_vcpus");
        unsigned long v;
        char *end;
        if (narg != 1 || (v = strtoul(arg[0], &end, 10), *end) ||
            (count ? v == 0 || v > MAX_VCPUS : v == 0 || v >= vcpus)) {
            /* vCPU 0 cannot be offlined: xen_pv_cpu_disable refuses it (smp_pv.c) */
            snprintf(msg, len, count ? "census_vcpus: expected 1..%d"
                                     : "census_vcpu_offline: expected 1..vcpus-1", MAX_VCPUS);
            return -1;
        }
        if (count)
            vcpus = (uint32_t)v;
        else
            vcpu_offline[v] = 1;
        return 0;
    }
    if (!strcmp(name, "census_vcpu_flap")) {
        unsigned long id, every;
        char *e1, *e2;
        if (narg != 2 || (id = strtoul(arg[0], &e1, 10), *e1) || id == 0 || id >= vcpus ||
            (every = strtoul(arg[1], &e2, 10), *e2) || every == 0 || every > UINT32_MAX) {
            snprintf(msg, len, "census_vcpu_flap: expected ID (1..vcpus-1) EVERY (>= 1)");
            return -1;
        }
        flap_id = (uint32_t)id;
        flap_every = (uint32_t)every;
        return 0;
    }
    if (!strcmp(name, "census_kexec_loaded")) {
        int crash = narg == 1 && !strcmp(arg[0], "crash");
        if (narg != 1 || (!crash && strcmp(arg[0], "default"))) {
            snprintf(msg, len, "census_kexec_loaded: expected default or crash");
            return -1;
        }
        /* One load since boot flips the type's slot bit to 1 (kexec_swap_images). */
        kexec_flags |= 1UL << crash;
        return 0;
    }
    if (!strcmp(name, "census_livepatch")) {
        long v;
        char *end;
        if (narg == 1 && !strcmp(arg[0], "off")) {
            livepatch_payloads = -1;
            return 0;
        }
        if (narg != 1 || (v = strtol(arg[0], &end, 10)) < 0 || *end || !*arg[0] ||
            v > 4096) {
            snprintf(msg, len, "census_livepatch: expected 0..4096 or off");
            return -1;
        }
        livepatch_payloads = v;
        return 0;
    }
    if (strcmp(name, "census"))
        return 1;
    if (narg != 1 || (strcmp(arg[0], "pv") && strcmp(arg[0], "pvh"))) {
        snprintf(msg, len, "census: expected one GUEST_TYPE, pv or pvh");
        return -1;
    }
    model = !strcmp(arg[0], "pv") ? DOM0_PV : DOM0_PVH;
    return 0;
}

static int release_at_least(const struct scenario *s, uint32_t major, uint32_t minor)
{
    return s->major > major || (s->major == major && s->minor >= minor);
}

/* get_debugreg: the calling vCPU's debug registers as Xen sets them up for a new vCPU
 * and keeps them at rest: DR0-3 0, DR6 X86_DR6_DEFAULT, DR7 X86_DR7_DEFAULT
 * (arch/x86/domain.c@4.17:533-534; x86-defns.h@4.17:105,110). x86emul_read_dr
 * (arch/x86/x86_emulate.c@4.17:112-150) gives -ENODEV past DR7; DR4/5 alias DR6/7 only
 * with the guest's CR4.DE clear, which is not modelled (the allow-list admits DR6 only). */
static int64_t get_debugreg(uint64_t reg)
{
    if (model != DOM0_PV)
        return -ENOSYS;             /* not in the HVM table: include/hypercall-defs.c@4.17:234 */
    switch ((unsigned int)(int)reg) {
    case 0: case 1: case 2: case 3:
        return 0;
    case 6:
        return 0xFFFF0FF0;          /* unsigned long: zero-extended, positive */
    case 7:
        return 0x400;
    default:
        return -ENODEV;
    }
}

/* The *2 subops and build_id: the length with a NULL arg, else the bytes copied into a
 * struct xen_varbuf { uint32_t len; char buf[]; } (xen_build_id_t has the same shape). */
static int64_t varbuf(uint64_t arg, const void *str, uint32_t sz)
{
    uint32_t len;

    if (!arg)
        return sz;
    if (uread(&len, arg, 4))
        return -EFAULT;
    if (len == 0)
        return -EINVAL;             /* build_id: kernel.c@4.17:639-640 */
    if (sz > len)
        return -ENOBUFS;
    return uwrite(arg + 4, str, sz) ? -EFAULT : (int64_t)sz;
}

static int64_t xen_version(struct scenario *s, int cmd, uint64_t arg)
{
    /* The build-id note's bytes: deterministic for the mock, of the scenario's size. */
    static uint8_t build_id[65536];
    const char *str = "";

    /* Dummy XSM: build_id and commandline2 need privilege (xsm/dummy.h@4.20:830-842). */
    if (s->role == ROLE_DOMU && (cmd == 10 || cmd == 14))
        return -EPERM;
    if (cmd == 10) {
        for (uint32_t i = 0; i < build_id_size; i++)
            build_id[i] = (uint8_t)(0xA5 ^ i);
        return varbuf(arg, build_id, build_id_size);
    }
    if (!release_at_least(s, 4, 20))
        return -ENOSYS;
    switch (cmd) {
    case 11: str = s->extraversion; break;
    case 12: str = s->capabilities; break;
    case 13: str = changeset; break;        /* what XENVER_changeset gives (hypervisor.c) */
    case 14: str = commandline; break;      /* ... and XENVER_commandline */
    }
    return varbuf(arg, str, (uint32_t)strlen(str));
}

static int64_t hypfs_op(struct scenario *s, const uint64_t *args)
{
    if (!release_at_least(s, 4, 14))
        return -ENOSYS;             /* hypfs_op arrives in 4.14 */
    if (s->role == ROLE_DOMU)
        return -EPERM;              /* xsm_hypfs_op(XSM_PRIV) */
    if (args[0] != 0)
        return -ENOSYS;             /* reading and writing nodes: not modelled */
    if (args[1] || args[2] || args[3] || args[4])
        return -EINVAL;
    return 1;                       /* XEN_HYPFS_VERSION */
}

/* VCPUOP_is_up(vcpuid, NULL) on one of the caller's own vCPUs: do_vcpu_op looks it up
 * with domain_vcpu(current->domain, vcpuid) first, -ENOENT past its vCPUs
 * (arch/x86/domain.c@4.17:1505-1506; common/domain.c@4.13:1415-1416 up to 4.16), then answers
 * !(v->pause_flags & VPF_down) (common/domain.c@4.17:1649-1651). vcpu_op is in the PV
 * and the HVM table alike (include/hypercall-defs.c@4.17:252). A PV kernel takes an
 * offline CPU down with VCPUOP_down (xen_pv_play_dead, arch/x86/xen/smp_pv.c); a PVH
 * one does not (xen_hvm_cpu_die, arch/x86/xen/smp_hvm.c), so its vCPU stays up. */
static int64_t vcpu_is_up(uint64_t vcpuid)
{
    uint32_t id = (uint32_t)vcpuid;     /* unsigned int vcpuid */
    int64_t rc;

    if (id >= vcpus)
        return -ENOENT;
    pthread_mutex_lock(&hv_lock);
    rc = model == DOM0_PV && vcpu_offline[id] ? 0 : 1;
    if (flap_every && id == flap_id && ++flap_reads % flap_every == 0)
        vcpu_offline[id] = !vcpu_offline[id];
    pthread_mutex_unlock(&hv_lock);
    return rc;
}

/* kexec_status: PV only (include/hypercall-defs.c@4.17:274); xsm_kexec(XSM_PRIV)
 * (common/kexec.c@4.17:1222); copies the 1-byte struct xen_kexec_status, -EINVAL for a
 * type other than default (0) and crash (1) (:1205-1211), and answers the type's slot
 * bit, KEXEC_FLAG_*_POS (:1213), which kexec_swap_images flips on each load and
 * unload (:875). */
static int64_t kexec_status(struct scenario *s, uint64_t arg)
{
    uint8_t type;

    if (model != DOM0_PV)
        return -ENOSYS;
    if (s->role == ROLE_DOMU)
        return -EPERM;
    if (uread(&type, arg, 1))
        return -EFAULT;
    if (type > 1)
        return -EINVAL;
    return (kexec_flags >> type) & 1;
}

/* ---- platform_op (x86/platform_hypercall.c@RELEASE-4.20.0 unless said) ---- */

#define XENPF_INTERFACE_VERSION 0x03000001
#define MSR_IA32_TSC 0x10
#define DOM0_CONSOLE_INFO_SIZE 40     /* sizeof(struct dom0_vga_console_info) */

/* check_resource_access (:109-153) and resource_access (:155-216) for the MSRs every
 * host lets a dom0 read: MSR_IA32_TSC alone (msr_read_allowed :78-79; the CMT, TSX,
 * MCU_OPT and PPIN MSRs depend on CPU features the mock does not model, so they get
 * -EPERM here, as on a CPU without them). Writes are allowed only to the CMT MSRs with
 * cpu_has_pqe (:97-107): -EPERM. Returns nr_done; a failed entry gets its -errno in
 * u.ret, and the entries up to it are handed back (:819-848). */
static int64_t resource_op(struct scenario *s, const struct hv_req *r)
{
    uint32_t nr, cpu, done = 0, max_cpu = 0;
    uint64_t handle;
    uint8_t res[sizeof(r->res)];                /* Xen's xmalloc'd copy; r->res is logged */

    memcpy(res, r->res, sizeof(res));

    memcpy(&nr, r->in.raw + 8, 4);
    if (nr == 0)
        return 0;                               /* :796-797 */
    if (nr > RESOURCE_MAX_ENTRIES)
        return -EINVAL;                         /* :798-802 */
    if (r->nres != nr)
        return -EFAULT;                         /* copy_from_guest failed (:813-818) */
    memcpy(&cpu, r->in.raw + 12, 4);
    memcpy(&handle, r->in.raw + 16, 8);
    for (; done < nr; done++) {
        uint8_t *e = res + done * RESOURCE_ENTRY_SIZE;
        uint32_t cmd, rsvd;
        uint64_t idx;
        int32_t err = 0;
        memcpy(&cmd, e, 4);
        memcpy(&rsvd, e + 4, 4);
        memcpy(&idx, e + 8, 8);
        if (rsvd)
            err = -EINVAL;
        else if (cmd > 1)
            err = -EOPNOTSUPP;
        else if (idx >> 32)
            err = -EINVAL;
        else if (cmd == 1 || idx != MSR_IA32_TSC)
            err = -EPERM;
        if (err) {
            memcpy(e, &err, 4);
            break;
        }
    }
    if (done == 0)                              /* :822-829: entry 0's error only */
        return uwrite(handle, res, RESOURCE_ENTRY_SIZE) ? -EFAULT : 0;
    if (s->physinfo_len >= 16)
        memcpy(&max_cpu, s->physinfo + 12, 4);  /* physinfo's max_cpu_id */
    if (cpu > max_cpu)
        return -ENODEV;                         /* :831-836 */
    for (uint32_t i = 0; i < done; i++) {
        /* The scaled system time, not the raw TSC (:169-174): nanoseconds here. */
        struct timespec ts;
        uint64_t ns;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ns = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
        memcpy(res + i * RESOURCE_ENTRY_SIZE + 16, &ns, 8);
    }
    if (uwrite(handle, res, (size_t)(done < nr ? done + 1 : nr) * RESOURCE_ENTRY_SIZE))
        return -EFAULT;
    return done;
}

/* XENPF_get_dom0_console (4.18+; platform.h@4.18:608-615): with CONFIG_VIDEO, part of a
 * default x86 build (drivers/video/Kconfig@4.20: VGA default y selects VIDEO), Xen
 * copies its boot console info, whatever it holds (fill_console_start_info always
 * returns 1: drivers/video/vga.c@4.18:200-204 .. @4.22:199-203), and returns its size.
 * The mock has no boot console: video_type 0, all zero. */
static int64_t dom0_console(struct scenario *s, const struct hv_req *r)
{
    static const uint8_t info[DOM0_CONSOLE_INFO_SIZE];

    if (!release_at_least(s, 4, 18))
        return -ENOSYS;                         /* the switch's default (:899-901) */
    return uwrite(r->args[0] + 8, info, sizeof(info)) ? -EFAULT : DOM0_CONSOLE_INFO_SIZE;
}

static int64_t platform_op(struct scenario *s, const struct hv_req *r)
{
    if (r->copied)
        return -EFAULT;                         /* :225-226 */
    if (r->interface_version != XENPF_INTERFACE_VERSION)
        return -EACCES;                         /* :228-229 */
    if (s->role == ROLE_DOMU)
        return -EPERM;                          /* xsm_platform_op(XSM_PRIV): xsm/dummy.h@4.20:673-677 */
    switch (r->subop) {
    case 61: return resource_op(s, r);
    case 64: return dom0_console(s, r);
    default: return -ENOSYS;                    /* others: not modelled */
    }
}

int census_model(struct scenario *s, const struct hv_req *r, int64_t *rc)
{
    uint64_t sub = r->args[0];

    if (model == OFF)
        return 0;
    switch (r->op) {
    case HC_GET_DEBUGREG:
        *rc = get_debugreg(sub);
        return 1;
    case HC_HYPFS_OP:
        *rc = hypfs_op(s, r->args);
        return 1;
    case HC_VCPU_OP:
        if ((int)sub != 3)
            return 0;                   /* other VCPUOPs: not modelled */
        *rc = vcpu_is_up(r->args[1]);
        return 1;
    case HC_KEXEC_OP:
        if (sub != 6)
            return 0;                   /* other kexec ops: not modelled */
        *rc = kexec_status(s, r->args[1]);
        return 1;
    case HC_PLATFORM_OP:
        *rc = platform_op(s, r);
        return 1;
    case HC_MEMORY_OP:
        if (sub != 18 && sub != 19)
            return 0;
        /* Without CONFIG_MEM_SHARING (a default build) both counts are the stubs' 0
         * (arch/x86/include/asm/mem_sharing.h@4.17:121-129). */
        *rc = 0;
        return 1;
    case HC_XEN_VERSION:
        if (sub < 10 || sub > 14)
            return 0;
        *rc = xen_version(s, (int)sub, r->args[1]);
        return 1;
    default:
        return 0;
    }
}

/* The dom0 kernel's CPU lists as drivers/base/cpu.c prints them ("%*pbl\n"): every
 * vCPU is a possible CPU, the offline ones are left out of `online`. */
static int cpu_list(char *buf, size_t cap, int online)
{
    size_t n = 0;

    pthread_mutex_lock(&hv_lock);       /* a flapping vCPU changes under us */
    for (uint32_t lo = 0; lo < vcpus; lo++) {
        uint32_t hi = lo;
        if (online && vcpu_offline[lo])
            continue;
        while (hi + 1 < vcpus && !(online && vcpu_offline[hi + 1]))
            hi++;
        n += (size_t)snprintf(buf + n, n < cap ? cap - n : 0, n ? ",%u" : "%u", lo);
        if (hi > lo)
            n += (size_t)snprintf(buf + n, n < cap ? cap - n : 0, "-%u", hi);
        lo = hi;
    }
    n += (size_t)snprintf(buf + n, n < cap ? cap - n : 0, "\n");
    pthread_mutex_unlock(&hv_lock);
    return n < cap ? (int)n : -ENOENT;
}

/*
 * XEN_SYSCTL_livepatch_op, given the sysctl union (op->u.livepatch) of the request's
 * copy. CONFIG_LIVEPATCH is `default X86` (common/Kconfig@4.13:350-352 @4.17:362-364
 * @4.22:499-501), and Debian's 4.14, 4.17 and 4.20 hypervisors have it. Without it the
 * stub answers -ENOSYS (include/xen/livepatch.h@4.17:166-169) and nothing is copied
 * back (common/sysctl.c@4.17:479-483,494-496).
 *
 * LIST as livepatch_list (common/livepatch.c@4.17:1159-1250; before 4.14 a fixed
 * XEN_LIVEPATCH_NAME_SIZE stride per name and no metadata, @4.13:989-1049): payload k
 * is "xenprobe-mock-k", CHECKED, rc 0, no metadata. It returns how many entries it
 * copied and leaves in `nr` how many remain after them (all of them for nr == 0).
 * Preemption (hypercall_preempt_check) is not modelled. UPLOAD, GET and ACTION are not
 * modelled either (-ENOSYS): the allow-list never lets them through.
 */
#define LP_NAME_SIZE 128                /* XEN_LIVEPATCH_NAME_SIZE */

static uint32_t get32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint64_t get64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }
static void put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }

static int64_t livepatch_list(struct scenario *s, uint8_t *l)
{
    int modern = release_at_least(s, 4, 14);   /* name_total_size, metadata */
    uint32_t idx_in = get32(l + 4), nr = get32(l + 8), cnt = (uint32_t)livepatch_payloads;
    uint64_t status = get64(l + (modern ? 24 : 16)), name = get64(l + (modern ? 32 : 24));
    uint64_t lens = get64(l + (modern ? 40 : 32)), mlens = modern ? get64(l + 56) : 0;
    uint32_t idx = 0, i = 0, total = 0;
    uint64_t name_offset = 0;
    int64_t rc = 0;

    if (nr > 1024)
        return -E2BIG;
    if (get32(l + 12))
        return -EINVAL;                 /* pad */
    if (nr && (!uaccess_ok(status, (uint64_t)nr * 8) || !uaccess_ok(lens, (uint64_t)nr * 4) ||
               !(modern ? uaccess_ok(mlens, (uint64_t)nr * 4)
                        : uaccess_ok(name, (uint64_t)nr * LP_NAME_SIZE))))
        return -EINVAL;
    if (idx_in >= cnt && cnt)
        return -EINVAL;
    for (uint32_t k = 0; k < cnt; k++) {
        char text[LP_NAME_SIZE];
        uint32_t name_len = (uint32_t)snprintf(text, sizeof(text), "xenprobe-mock-%u", k) + 1;
        uint32_t st[2] = {1, 0}, zero = 0;      /* LIVEPATCH_STATE_CHECKED, rc 0 */

        if (!nr) {
            total += name_len;
            continue;
        }
        if (idx_in > i++)
            continue;
        total += name_len;
        if (modern && !uaccess_ok(name + name_offset, name_len)) {
            rc = -EINVAL;
            break;
        }
        if (uwrite(modern ? name + name_offset : name + (uint64_t)idx * LP_NAME_SIZE,
                   text, name_len) ||
            uwrite(lens + (uint64_t)idx * 4, &name_len, 4) ||
            uwrite(status + (uint64_t)idx * 8, st, 8) ||
            (modern && uwrite(mlens + (uint64_t)idx * 4, &zero, 4))) {
            rc = -EFAULT;
            break;
        }
        idx++;
        name_offset += name_len;
        if (idx >= nr)
            break;
    }
    if (modern) {
        put32(l + 16, total);           /* name_total_size */
        put32(l + 20, 0);               /* metadata_total_size */
    }
    put32(l + 8, cnt - i);              /* nr: remaining */
    put32(l + 0, 1 + cnt);              /* version: 1, + 1 per upload (@4.17:49,1109-1110) */
    return rc ? rc : idx;               /* "rc ? : idx" */
}

int64_t census_livepatch_op(struct scenario *s, uint8_t *op)
{
    if (model == OFF || livepatch_payloads < 0)
        return -ENOSYS;
    if (get32(op + 4))
        return -EINVAL;                 /* livepatch_op: pad (@4.17:2032-2033) */
    switch (get32(op)) {
    case 2:
        return livepatch_list(s, op + 8);
    case 0: case 1: case 3:
        return -ENOSYS;                 /* not modelled */
    default:
        return -EOPNOTSUPP;             /* @4.17:2053-2054 */
    }
}

/* drivers/xen/sys-hypervisor.c: guest_type_show and changeset_show print "%s\n". */
int census_sysfs(const char *path, char *buf, size_t cap)
{
    if (model == OFF)
        return -ENOENT;
    if (!strcmp(path, "/sys/devices/system/cpu/possible"))
        return cpu_list(buf, cap, 0);
    if (!strcmp(path, "/sys/devices/system/cpu/online"))
        return cpu_list(buf, cap, 1);
    if (!strcmp(path, "/sys/hypervisor/guest_type"))
        return snprintf(buf, cap, "%s\n", model == DOM0_PV ? "PV" : "PVH");
    return snprintf(buf, cap, "%s\n", changeset);
}
