/*
 * Issues hypercalls through the Linux privcmd device, three ways: the glibc
 * ioctl() a tool normally uses, the raw ioctl system call, and a multicall
 * whose entries carry the hypervisor's own 64-bit results.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "privcmd_abi.h"

#include "transport.h"

int xp_check_sysctl_cmd(uint32_t cmd);
int xp_check_domctl_cmd(uint32_t cmd);
int xp_check_entry(const xp_multicall_entry *e);

#define SYSCTL_SIZE 136 /* struct xen_sysctl, every release */
#define DOMCTL_SIZE 144 /* struct xen_domctl, every release */
#define PAGE 4096u

int xp_open(int *err)
{
    int fd = open("/dev/xen/privcmd", O_RDWR | O_CLOEXEC);
    /* Same fallback as libxencall: older set-ups only have the xenfs node. */
    if (fd < 0 && (errno == ENOENT || errno == ENXIO || errno == ENODEV))
        fd = open("/proc/xen/privcmd", O_RDWR | O_CLOEXEC);
    *err = fd < 0 ? errno : 0;
    return fd;
}

int xp_close(int fd)
{
    return close(fd);
}

/* One freed single-page buffer, kept for the next single-page request. Private copies
 * of sysctl/domctl structs and one-entry multicalls (libxc's memory_op: the guard
 * copies each) fit in a page; a sweep of 10,000 domains makes 20,000 of them through
 * libxc, and mmap+mlock+munmap for each cost more than the hypercall. Taken and given
 * back with an atomic exchange, so each page has one owner at a time. */
static void *spare_page;

/* Hypercall buffers are locked and not inherited by children, as libxencall keeps
 * them: the hypervisor must never find a buffer paged out. */
void *xp_alloc(size_t bytes, int *err)
{
    size_t len = (bytes + PAGE - 1) / PAGE * PAGE;
    void *p;

    if (len <= PAGE && (p = __atomic_exchange_n(&spare_page, NULL, __ATOMIC_ACQUIRE))) {
        *err = 0;
        return p;
    }
    p = mmap(NULL, len ? len : PAGE, PROT_READ | PROT_WRITE,
             MAP_PRIVATE | MAP_ANONYMOUS | MAP_LOCKED, -1, 0);
    if (p == MAP_FAILED) {
        *err = errno;
        return NULL;
    }
    madvise(p, len ? len : PAGE, MADV_DONTFORK);
    *err = 0;
    return p;
}

void xp_free(void *p, size_t bytes)
{
    size_t len = (bytes + PAGE - 1) / PAGE * PAGE;
    if (!p)
        return;
    if (len <= PAGE) {
        /* Zeroed, so a later owner never sees an earlier request's bytes. */
        memset(p, 0, PAGE);
        p = __atomic_exchange_n(&spare_page, p, __ATOMIC_RELEASE);
        if (!p)
            return;
    }
    munmap(p, len ? len : PAGE);
}

/* A private copy of the struct a sysctl/domctl points to: the allow-list checks the
 * copy and the hypervisor reads the copy, so no other thread can change the cmd in
 * between. */
struct bounce {
    void *user;
    void *copy;
    size_t size;
};

static int prepare(uint64_t op, const uint64_t in[5], uint64_t out[5], struct bounce *b,
                   int *err)
{
    int v = xp_check(op, in);
    memcpy(out, in, 5 * sizeof(uint64_t));
    b->user = NULL;
    b->copy = NULL;
    b->size = 0;
    if (v != XP_ALLOWED) {
        *err = v;
        return XP_REFUSED;
    }
    if (op == 13) { /* multicall */
        if (in[1] == 0 || in[1] > XP_MULTICALL_MAX || in[0] == 0) {
            *err = XP_DENY_COUNT;
            return XP_REFUSED;
        }
        b->size = in[1] * sizeof(xp_multicall_entry);
    } else if (op == 35) {
        b->size = SYSCTL_SIZE;
    } else if (op == 36) {
        b->size = DOMCTL_SIZE;
    } else {
        return 0;
    }
    if (in[0] == 0) {
        *err = XP_DENY_ARGS;
        return XP_REFUSED;
    }
    b->user = (void *)(uintptr_t)in[0];
    b->copy = xp_alloc(b->size, err);
    if (!b->copy)
        return -1;
    memcpy(b->copy, b->user, b->size);
    if (op == 13) {
        const xp_multicall_entry *e = b->copy;
        for (uint64_t i = 0; i < in[1]; i++) {
            v = xp_check_entry(&e[i]);
            if (v != XP_ALLOWED)
                break;
        }
    } else {
        uint32_t cmd;
        memcpy(&cmd, b->copy, sizeof(cmd));
        v = op == 35 ? xp_check_sysctl_cmd(cmd) : xp_check_domctl_cmd(cmd);
    }
    if (v != XP_ALLOWED) {
        xp_free(b->copy, b->size);
        b->copy = NULL;
        *err = v;
        return XP_REFUSED;
    }
    out[0] = (uint64_t)(uintptr_t)b->copy;
    return 0;
}

static void finish(struct bounce *b)
{
    if (!b->copy)
        return;
    memcpy(b->user, b->copy, b->size);
    xp_free(b->copy, b->size);
}

static void fill(struct privcmd_hypercall *hc, uint64_t op, const uint64_t args[5])
{
    hc->op = op;
    for (int i = 0; i < 5; i++)
        hc->arg[i] = args[i];
}

int xp_hypercall_ioctl(int fd, uint64_t op, const uint64_t args[5], int *ret, int *err)
{
    uint64_t a[5];
    struct bounce b;
    struct privcmd_hypercall hc;
    int rc = prepare(op, args, a, &b, err);
    if (rc)
        return rc;
    fill(&hc, op, a);
    errno = 0;
    *ret = ioctl(fd, IOCTL_PRIVCMD_HYPERCALL, &hc);
    /* glibc sets errno only when it returns -1; a -1 with errno 0 is a value. */
    *err = *ret == -1 ? errno : 0;
    finish(&b);
    return 0;
}

int xp_hypercall_syscall(int fd, uint64_t op, const uint64_t args[5], long *ret, int *err)
{
    uint64_t a[5];
    struct bounce b;
    struct privcmd_hypercall hc;
    int rc = prepare(op, args, a, &b, err);
    if (rc)
        return rc;
    fill(&hc, op, a);
    errno = 0;
    *ret = syscall(SYS_ioctl, fd, (unsigned long)IOCTL_PRIVCMD_HYPERCALL, &hc);
    *err = *ret == -1 ? errno : 0;
    finish(&b);
    return 0;
}

int xp_multicall(int fd, xp_multicall_entry *entries, unsigned count, int *ret, int *err)
{
    uint64_t args[5] = {(uint64_t)(uintptr_t)entries, count, 0, 0, 0};
    return xp_hypercall_ioctl(fd, 13, args, ret, err);
}

/*
 * Many by-value hypercalls (memory_op queries, xen_version), one ioctl each: the
 * per-domain ioctl and syscall layers of a sweep. Every request is checked before
 * the first one is issued, so a refused batch reaches the device not at all.
 * args holds 5 words per call; rets/errs get one slot per call.
 */
int xp_hypercall_many(int fd, unsigned count, const uint64_t *ops, const uint64_t *args,
                      int use_syscall, int64_t *rets, int *errs, int *err)
{
    struct privcmd_hypercall hc;
    for (unsigned i = 0; i < count; i++) {
        xp_multicall_entry e = {.op = ops[i]};
        memcpy(e.args, &args[5 * i], 5 * sizeof(uint64_t));
        int v = xp_check_entry(&e);
        if (v != XP_ALLOWED) {
            *err = v;
            return XP_REFUSED;
        }
    }
    for (unsigned i = 0; i < count; i++) {
        fill(&hc, ops[i], &args[5 * i]);
        errno = 0;
        if (use_syscall)
            rets[i] = syscall(SYS_ioctl, fd, (unsigned long)IOCTL_PRIVCMD_HYPERCALL, &hc);
        else
            rets[i] = ioctl(fd, IOCTL_PRIVCMD_HYPERCALL, &hc);
        errs[i] = rets[i] == -1 ? errno : 0;
    }
    *err = 0;
    return 0;
}

/*
 * Many by-value hypercalls as multicalls of at most XP_MULTICALL_MAX entries each: the
 * raw layer of a sweep, built here from the same ops/args arrays xp_hypercall_many
 * takes, so no per-entry work is left to Python. Every entry is checked before the
 * first multicall is issued (and each multicall's private copy again, in prepare()), so
 * a refused batch reaches the device not at all. results[i] gets entry i's 64-bit
 * result. A multicall that fails as a whole (*ret != 0) ends the batch: results from it
 * on are left untouched, and *ret and *err say why.
 */
int xp_multicall_many(int fd, unsigned count, const uint64_t *ops, const uint64_t *args,
                      int64_t *results, int *ret, int *err)
{
    unsigned most = count < XP_MULTICALL_MAX ? count : XP_MULTICALL_MAX;
    size_t bytes = (size_t)most * sizeof(xp_multicall_entry);
    xp_multicall_entry *e;
    int rc = 0;

    for (unsigned i = 0; i < count; i++) {
        xp_multicall_entry c = {.op = ops[i]};
        memcpy(c.args, &args[5 * i], 5 * sizeof(uint64_t));
        int v = xp_check_entry(&c);
        if (v != XP_ALLOWED) {
            *err = v;
            return XP_REFUSED;
        }
    }
    *ret = 0;
    *err = 0;
    if (count == 0)
        return 0;
    /* Locked, as libxencall keeps hypercall buffers; one for every chunk. */
    e = xp_alloc(bytes, err);
    if (!e)
        return -1;
    for (unsigned start = 0; start < count; start += most) {
        unsigned n = count - start < most ? count - start : most;
        memset(e, 0, (size_t)n * sizeof(*e));
        for (unsigned i = 0; i < n; i++) {
            e[i].op = ops[start + i];
            memcpy(e[i].args, &args[5 * (size_t)(start + i)], 5 * sizeof(uint64_t));
        }
        rc = xp_multicall(fd, e, n, ret, err);
        if (rc || *ret != 0)
            break;
        for (unsigned i = 0; i < n; i++)
            results[start + i] = (int64_t)e[i].result;
    }
    xp_free(e, bytes);
    return rc;
}
