/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The floor for xenprobe's benchmark: the hypercalls of one xenprobe sweep attempt,
 * issued from C with nothing else, batched the same way, against the same (mock) host.
 *
 * Per sweep, in xenprobe's order (xenprobe/probe/sweep.py):
 *   getdomaininfolist in chunks of 1024 (the plan: which domains exist)
 *   references: getdomaininfolist chunks, sysctl physinfo, /sys/hypervisor version
 *   raw: every probe as one multicall entry, in multicalls of at most 4096 entries
 *   syscall layer: one ioctl system call per probe (syscall(SYS_ioctl, ...))
 *   ioctl layer: one glibc ioctl() per probe
 *   libxc layer (optional): one libxenctrl call per probe, the function xenprobe calls
 *   livepatch LIST (nr 0, a sysctl: no multicall) through syscall, ioctl and
 *     xc_livepatch_list_get_sizes (with libxc), as xenprobe's UNBATCHED probe
 *   raw again, references again
 * and a trivial comparison (raw read twice alike, each layer equal to raw), so nothing
 * is optimised away. No allow-list, no classification: that is xenprobe's own cost.
 *
 * Probes (xenprobe/xen/quantities.py plan()): xen_version, maximum_ram_page, the census
 * quantities the host answers (VCPUOP_is_up once per vCPU of dom0, the caller),
 * current/maximum_reservation of DOMID_SELF, current/maximum_reservation and
 * maximum_gpfn of each domain, current_reservation of one missing domain id.
 *
 * Usage: floor SYSCTL_INTERFACE RECORD_SIZE [LIBXENCTRL]
 * Then, per line on stdin: "k" sweeps with the kernel layers, "l" with libxc as well,
 * "q" quits. Each sweep prints "SECONDS AGREEING_PROBES".
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define IOCTL_PRIVCMD_HYPERCALL 0x00305000u
#define MEMORY_OP 12
#define MULTICALL 13
#define XEN_VERSION 17
#define SYSCTL 35
#define SYSCTL_PHYSINFO 3
#define SYSCTL_GETDOMAININFOLIST 6
#define DOMID_FIRST_RESERVED 0x7FF0
#define DOMID_SELF 0x7FF0
#define LIST_CHUNK 1024
#define MULTICALL_MAX 4096
#define SYSCTL_SIZE 136
#define VCPU_OP 24
#define VCPUOP_IS_UP 3
#define MAX_VCPUS 4096                /* the mock's bound on dom0's vCPUs (census.c) */

struct privcmd_hypercall { uint64_t op, arg[5]; };
struct entry { uint64_t op, result, args[6]; };

enum { Q_VERSION, Q_RAM, Q_CUR, Q_MAX, Q_GPFN, Q_CENSUS, Q_VCPU };
struct probe { int q; uint16_t domid; int self; };

/* The host-wide census quantities the benchmark host (a PV dom0 on Xen 4.17 with the
 * census modelled, tests/bench/scenario.py) answers, in xenprobe's order
 * (quantities.CENSUS): page size, build-id size, DR6, the two sharing counts, hypfs'
 * version, then (after VCPUOP_is_up per vCPU, Q_VCPU) kexec_status of the default and
 * the crash image, whose arg1 points to a one-byte struct xen_kexec_status, and
 * platform_op's resource_op (get_dom0_console is 4.18+), whose arg0 is pf_buf. */
#define PLATFORM_OP 7
#define XENPF_RESOURCE_OP 61
static const struct { uint64_t op, cmd; int kexec_type; } census[] = {
    {17, 7, -1}, {17, 10, -1}, {9, 6, -1}, {12, 18, -1}, {12, 19, -1}, {42, 0, -1},
    {37, 6, 0}, {37, 6, 1}, {PLATFORM_OP, XENPF_RESOURCE_OP, -1},
};
#define NCENSUS (sizeof(census) / sizeof(census[0]))
#define NBEFORE_VCPUS 6               /* census[] entries before vcpu_is_up */
static uint8_t *kexec_types;          /* {0, 1}: struct xen_kexec_status per type */
static size_t nvcpus = 1;             /* dom0's: its record's max_vcpu_id + 1 */

/* libxenctrl, as xenprobe declares it for 4.17 (xenprobe/xen/abi/libxc.py). */
typedef struct xc_interface_core xc_interface;
static struct {
    xc_interface *xch;
    int (*version)(xc_interface *, int, void *);
    int (*kexec_status)(xc_interface *, int);
    int (*maximum_ram_page)(xc_interface *, unsigned long *);
    int (*maximum_gpfn)(xc_interface *, uint32_t, unsigned long *);
    long (*get_tot_pages)(xc_interface *, uint32_t);
    long (*memory_op)(xc_interface *, unsigned int, void *, size_t);
    int (*resource_op)(xc_interface *, uint32_t, void *);
    int (*livepatch_sizes)(xc_interface *, unsigned int *, uint32_t *, uint32_t *);
} xc;

/* struct xc_resource_op (xenctrl.h), as xenprobe's libxc layer fills it. */
struct xc_resource_op { uint64_t result; uint32_t cpu, nr_entries; void *entries; };

static int fd;
static uint32_t sysctl_if;
static size_t record_size;
static uint8_t *sysctl_buf, *records, *livepatch_buf;
static uint16_t *domid_slots;         /* one domid_t per domain, pointed to by memory_op */
static uint8_t *pf_buf;               /* struct xen_platform_op at 0, its entry at 256 */
static struct entry *entries;
static uint16_t *domids;
static size_t ndomids;
static struct probe *probes;
static struct privcmd_hypercall *calls;
static int64_t *raw_before, *raw_after, *via_syscall, *via_ioctl, *via_libxc;
static size_t nprobes;

static void *locked(size_t bytes)
{
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_LOCKED, -1, 0);
    if (p == MAP_FAILED) {
        perror("floor: mmap");
        exit(1);
    }
    return p;
}

static long hypercall(uint64_t op, uint64_t a0, uint64_t a1)
{
    struct privcmd_hypercall hc = {op, {a0, a1, 0, 0, 0}};
    return ioctl(fd, IOCTL_PRIVCMD_HYPERCALL, &hc);
}

static void sysctl(uint32_t cmd)
{
    memset(sysctl_buf, 0, SYSCTL_SIZE);
    memcpy(sysctl_buf, &cmd, 4);
    memcpy(sysctl_buf + 4, &sysctl_if, 4);
}

/* Every domain's id (and a checksum of the records, as a reference read). */
static uint64_t list_domains(void)
{
    uint64_t sum = 0;
    uint16_t first = 0;
    ndomids = 0;
    for (;;) {
        uint32_t max = LIST_CHUNK, count;
        uint64_t buffer = (uint64_t)(uintptr_t)records;
        sysctl(SYSCTL_GETDOMAININFOLIST);
        memcpy(sysctl_buf + 8, &first, 2);
        memcpy(sysctl_buf + 12, &max, 4);
        memcpy(sysctl_buf + 16, &buffer, 8);
        if (hypercall(SYSCTL, (uint64_t)(uintptr_t)sysctl_buf, 0)) {
            perror("floor: getdomaininfolist");
            exit(1);
        }
        memcpy(&count, sysctl_buf + 24, 4);
        for (uint32_t i = 0; i < count; i++) {
            const uint8_t *r = records + i * record_size;
            uint64_t tot, most;
            memcpy(&domids[ndomids++], r, 2);
            if (domids[ndomids - 1] == 0) {
                uint32_t max_vcpu_id;
                memcpy(&max_vcpu_id, r + 68, 4);
                nvcpus = max_vcpu_id < MAX_VCPUS ? (size_t)max_vcpu_id + 1 : 1;
            }
            memcpy(&tot, r + 8, 8);
            memcpy(&most, r + 16, 8);
            sum += tot + most;
        }
        if (count < LIST_CHUNK)
            break;
        first = domids[ndomids - 1] + 1;
    }
    return sum;
}

static int read_number(const char *path)
{
    char buf[32] = {0};
    int f = open(path, O_RDONLY | O_CLOEXEC), n = 0;
    if (f >= 0) {
        if (read(f, buf, sizeof(buf) - 1) > 0)
            n = atoi(buf);
        close(f);
    }
    return n;
}

static uint64_t references(void)
{
    uint64_t sum = list_domains();
    sysctl(SYSCTL_PHYSINFO);
    if (hypercall(SYSCTL, (uint64_t)(uintptr_t)sysctl_buf, 0)) {
        perror("floor: physinfo");
        exit(1);
    }
    sum += sysctl_buf[8 + 40];  /* total_pages, 4.17 layout */
    sum += (uint64_t)read_number("/sys/hypervisor/type");
    sum += (uint64_t)read_number("/sys/hypervisor/version/major");
    sum += (uint64_t)read_number("/sys/hypervisor/version/minor");
    return sum;
}

static void plan(void)
{
    static const int cmd[] = {[Q_RAM] = 2, [Q_CUR] = 3, [Q_MAX] = 4, [Q_GPFN] = 14};
    uint16_t missing = 0;
    size_t n = 0;

    for (size_t i = 0; i < ndomids; i++)
        domid_slots[i] = domids[i];
    domid_slots[ndomids] = DOMID_SELF;
    /* The lowest free id below the reserved range, as quantities.missing_domid. */
    for (uint16_t d = DOMID_FIRST_RESERVED - 1, i = (uint16_t)ndomids; d > 0; d--) {
        while (i > 0 && domids[i - 1] > d)
            i--;
        if (i == 0 || domids[i - 1] != d) {
            missing = d;
            break;
        }
    }
    domid_slots[ndomids + 1] = missing;
    probes[n++] = (struct probe){Q_VERSION, 0, 0};
    probes[n++] = (struct probe){Q_RAM, 0, 0};
    for (size_t c = 0; c < NCENSUS; c++) {
        if (c == NBEFORE_VCPUS)
            for (size_t v = 0; v < nvcpus; v++)
                probes[n++] = (struct probe){Q_VCPU, (uint16_t)v, 0};
        probes[n++] = (struct probe){Q_CENSUS, (uint16_t)c, 0};
    }
    probes[n++] = (struct probe){Q_CUR, DOMID_SELF, 1};
    probes[n++] = (struct probe){Q_MAX, DOMID_SELF, 1};
    for (size_t i = 0; i < ndomids; i++)
        for (int q = Q_CUR; q <= Q_GPFN; q++)
            probes[n++] = (struct probe){q, domids[i], 0};
    probes[n++] = (struct probe){Q_CUR, missing, 0};
    nprobes = n;
    for (size_t i = 0; i < n; i++) {
        struct probe *p = &probes[i];
        if (p->q == Q_VERSION) {
            calls[i] = (struct privcmd_hypercall){XEN_VERSION, {0}};
            continue;
        }
        if (p->q == Q_CENSUS) {
            int t = census[p->domid].kexec_type;
            calls[i] = (struct privcmd_hypercall){census[p->domid].op,
                {census[p->domid].cmd, t < 0 ? 0 : (uint64_t)(uintptr_t)&kexec_types[t]}};
            if (census[p->domid].op == PLATFORM_OP)
                calls[i].arg[0] = (uint64_t)(uintptr_t)pf_buf;
            continue;
        }
        if (p->q == Q_VCPU) {  /* vcpu_op(VCPUOP_is_up, vcpuid, NULL) */
            calls[i] = (struct privcmd_hypercall){VCPU_OP, {VCPUOP_IS_UP, p->domid}};
            continue;
        }
        uint16_t *slot = p->q == Q_RAM ? NULL
                       : p->self ? &domid_slots[ndomids]
                       : i == n - 1 ? &domid_slots[ndomids + 1]
                       : &domid_slots[(i - 4 - NCENSUS - nvcpus) / 3];
        calls[i] = (struct privcmd_hypercall){MEMORY_OP,
                                              {(uint64_t)cmd[p->q], (uint64_t)(uintptr_t)slot}};
    }
}

static void multicall(int64_t *out)
{
    for (size_t start = 0; start < nprobes; start += MULTICALL_MAX) {
        size_t n = nprobes - start < MULTICALL_MAX ? nprobes - start : MULTICALL_MAX;
        memset(entries, 0, n * sizeof(*entries));
        for (size_t i = 0; i < n; i++) {
            entries[i].op = calls[start + i].op;
            memcpy(entries[i].args, calls[start + i].arg, 5 * sizeof(uint64_t));
        }
        if (hypercall(MULTICALL, (uint64_t)(uintptr_t)entries, n)) {
            perror("floor: multicall");
            exit(1);
        }
        for (size_t i = 0; i < n; i++)
            out[start + i] = (int64_t)entries[i].result;
    }
}

static void layer_syscall(void)
{
    for (size_t i = 0; i < nprobes; i++)
        via_syscall[i] = syscall(SYS_ioctl, fd, (unsigned long)IOCTL_PRIVCMD_HYPERCALL,
                                 &calls[i]);
}

static void layer_ioctl(void)
{
    for (size_t i = 0; i < nprobes; i++)
        via_ioctl[i] = ioctl(fd, IOCTL_PRIVCMD_HYPERCALL, &calls[i]);
}

/* The libxenctrl function xenprobe's libxc layer calls for each probe (libxc.py). */
static void layer_libxc(void)
{
    unsigned long out;
    uint16_t domid;
    for (size_t i = 0; i < nprobes; i++) {
        struct probe *p = &probes[i];
        errno = 0;
        switch (p->q) {
        case Q_VERSION:
            via_libxc[i] = xc.version(xc.xch, 0, NULL);
            break;
        case Q_RAM:
            via_libxc[i] = xc.maximum_ram_page(xc.xch, &out) ? -1 : (int64_t)out;
            break;
        case Q_GPFN:
            via_libxc[i] = xc.maximum_gpfn(xc.xch, p->domid, &out) ? -1 : (int64_t)out;
            break;
        case Q_CENSUS:
            /* xc_version for the page size, xc_memory_op for the sharing counts,
             * xc_kexec_status for kexec; the others have no libxenctrl call
             * (xenprobe's libxc column is absent). */
            if (census[p->domid].op == 17 && census[p->domid].cmd == 7)
                via_libxc[i] = xc.version(xc.xch, 7, NULL);
            else if (census[p->domid].op == PLATFORM_OP) {
                struct xc_resource_op op = {0, 0, 1, pf_buf + 256};
                via_libxc[i] = xc.resource_op(xc.xch, 1, &op);
            }
            else if (census[p->domid].op == 12)
                via_libxc[i] = xc.memory_op(xc.xch, (unsigned)census[p->domid].cmd, NULL, 0);
            else if (census[p->domid].kexec_type >= 0)
                via_libxc[i] = xc.kexec_status(xc.xch, census[p->domid].kexec_type);
            else
                via_libxc[i] = raw_before[i];
            break;
        case Q_VCPU:
            via_libxc[i] = raw_before[i];  /* no libxenctrl call for VCPUOP_is_up */
            break;
        case Q_CUR:
            if (!p->self) {
                via_libxc[i] = xc.get_tot_pages(xc.xch, p->domid);
                break;
            }
            /* DOMID_SELF: through xc_memory_op, as below */
            __attribute__((fallthrough));
        default:
            domid = p->domid;
            via_libxc[i] = xc.memory_op(xc.xch, p->q == Q_CUR ? 3 : 4, &domid, 2);
            break;
        }
        via_libxc[i] ^= errno;
    }
}

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* sysctl livepatch_op LIST asking for no entries (xenprobe/xen/livepatch.py), through every
 * layer xenprobe reads it with; 0 when every reading is rc 0. */
static int livepatch(int with_libxc)
{
    uint32_t head[4] = {27, sysctl_if, 2, 0}, totals[2];
    unsigned int nr;
    long r[3] = {0, 0, 0};

    memset(livepatch_buf, 0, SYSCTL_SIZE);
    memcpy(livepatch_buf, head, sizeof(head));
    struct privcmd_hypercall hc = {SYSCTL, {(uint64_t)(uintptr_t)livepatch_buf}};
    r[0] = syscall(SYS_ioctl, fd, (unsigned long)IOCTL_PRIVCMD_HYPERCALL, &hc);
    memcpy(livepatch_buf, head, sizeof(head));
    r[1] = ioctl(fd, IOCTL_PRIVCMD_HYPERCALL, &hc);
    if (with_libxc)
        r[2] = xc.livepatch_sizes(xc.xch, &nr, &totals[0], &totals[1]);
    return r[0] || r[1] || r[2];
}

static void sweep(int with_libxc)
{
    double t0 = now();
    size_t agree = 0;
    int agree_livepatch;
    uint64_t before, after;

    list_domains();
    plan();
    before = references();
    multicall(raw_before);
    layer_syscall();
    layer_ioctl();
    if (with_libxc)
        layer_libxc();
    agree_livepatch = !livepatch(with_libxc);
    multicall(raw_after);
    after = references();
    for (size_t i = 0; i < nprobes; i++)
        agree += raw_before[i] == raw_after[i] && via_syscall[i] == raw_before[i]
                 && via_ioctl[i] == raw_before[i]
                 && (!with_libxc || via_libxc[i] == raw_before[i]);
    agree += (size_t)agree_livepatch;
    printf("%.9f %zu\n", now() - t0, before == after ? agree : 0);
    fflush(stdout);
}

static void *symbol(void *lib, const char *name)
{
    void *p = dlsym(lib, name);
    if (!p) {
        fprintf(stderr, "floor: %s: %s\n", name, dlerror());
        exit(1);
    }
    return p;
}

int main(int argc, char **argv)
{
    char line[16];
    size_t most = DOMID_FIRST_RESERVED + 2,
           probes_most = 3 * most + 8 + NCENSUS + MAX_VCPUS;

    if (argc < 3) {
        fprintf(stderr, "usage: floor SYSCTL_INTERFACE RECORD_SIZE [LIBXENCTRL]\n");
        return 2;
    }
    sysctl_if = (uint32_t)strtoul(argv[1], NULL, 0);
    record_size = strtoul(argv[2], NULL, 0);
    fd = open("/dev/xen/privcmd", O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        perror("floor: /dev/xen/privcmd");
        return 1;
    }
    if (argc > 3) {
        void *lib = dlopen(argv[3], RTLD_NOW);
        xc_interface *(*open_xc)(void *, void *, unsigned);
        if (!lib) {
            fprintf(stderr, "floor: %s\n", dlerror());
            return 1;
        }
        *(void **)&open_xc = symbol(lib, "xc_interface_open");
        *(void **)&xc.version = symbol(lib, "xc_version");
        *(void **)&xc.maximum_ram_page = symbol(lib, "xc_maximum_ram_page");
        *(void **)&xc.maximum_gpfn = symbol(lib, "xc_domain_maximum_gpfn");
        *(void **)&xc.get_tot_pages = symbol(lib, "xc_get_tot_pages");
        *(void **)&xc.memory_op = symbol(lib, "xc_memory_op");
        *(void **)&xc.kexec_status = symbol(lib, "xc_kexec_status");
        *(void **)&xc.resource_op = symbol(lib, "xc_resource_op");
        *(void **)&xc.livepatch_sizes = symbol(lib, "xc_livepatch_list_get_sizes");
        xc.xch = open_xc(NULL, NULL, 0);
        if (!xc.xch) {
            perror("floor: xc_interface_open");
            return 1;
        }
    }
    /* Hypercall buffers locked, as xenprobe's and libxencall's are. */
    sysctl_buf = locked(4096);
    /* platform_op resource_op: cmd 61, XENPF_INTERFACE_VERSION, one entry on CPU 0, the
     * entry an MSR_READ (0) of MSR_IA32_TSC (0x10) (xenprobe/xen/platform_requests.py). */
    pf_buf = locked(4096);
    {
        uint32_t head[4] = {XENPF_RESOURCE_OP, 0x03000001, 1, 0};
        uint64_t handle = (uint64_t)(uintptr_t)(pf_buf + 256), idx = 0x10;
        memcpy(pf_buf, head, sizeof(head));
        memcpy(pf_buf + 16, &handle, 8);
        memcpy(pf_buf + 256 + 8, &idx, 8);
    }
    livepatch_buf = locked(4096);
    records = locked(LIST_CHUNK * record_size);
    domid_slots = locked(most * sizeof(*domid_slots));
    entries = locked(MULTICALL_MAX * sizeof(*entries));
    kexec_types = locked(2);
    kexec_types[0] = 0;
    kexec_types[1] = 1;
    domids = calloc(most, sizeof(*domids));
    probes = calloc(probes_most, sizeof(*probes));
    calls = calloc(probes_most, sizeof(*calls));
    raw_before = calloc(probes_most, sizeof(int64_t));
    raw_after = calloc(probes_most, sizeof(int64_t));
    via_syscall = calloc(probes_most, sizeof(int64_t));
    via_ioctl = calloc(probes_most, sizeof(int64_t));
    via_libxc = calloc(probes_most, sizeof(int64_t));
    while (fgets(line, sizeof(line), stdin)) {
        if (line[0] == 'q')
            break;
        if (line[0] == 'l' && !xc.xch) {
            fprintf(stderr, "floor: no libxenctrl given\n");
            return 2;
        }
        sweep(line[0] == 'l');
    }
    return 0;
}
