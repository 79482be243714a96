/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Issues hypercalls through the Linux privcmd device, three ways: the glibc
 * ioctl() a tool normally uses, the raw ioctl system call, and a multicall
 * whose entries carry the hypervisor's own 64-bit results.
 *
 * Every entry point, and the guard on libxenctrl's path (guard.c), goes through
 * xp_issue() (issue.h): the request is copied once out of the caller's memory into
 * memory of this call, the allow-list judges the copy, and the copy is issued. The
 * caller's memory is read with process_vm_readv on our own process, so a bad pointer
 * gives EFAULT, as the kernel would, instead of a SIGSEGV.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include "issue.h"
#include "platform_abi.h"
#include "privcmd_abi.h"
#include "transport.h"

int xp_check_entry(const xp_multicall_entry *e);
int xp_check_cmd(uint64_t op, uint32_t cmd);
int xp_check_nested(uint64_t op, const void *copy, size_t size);
size_t xp_struct_size(uint64_t op);

#define HYPERVISOR_multicall 13
#define PAGE 4096u
#define NO_INDEX UINT64_MAX

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

/* ------------------------------------------------------------------ locked memory */

/* One freed single-page buffer per pool, kept for the next single-page request.
 * Private copies of sysctl/domctl structs and one-entry multicalls (libxc's memory_op:
 * the guard copies each) fit in a page; a sweep of 10,000 domains makes 20,000 of
 * them through libxc, and mmap+mlock+munmap for each cost more than the hypercall.
 * Taken and given back with an atomic exchange, so each page has one owner at a time.
 * The private copies have a pool of their own: a page xp_alloc() handed to a caller
 * (a Python Buffer, whose address the caller keeps) never becomes a private copy. */
static void *spare_page;         /* xp_alloc/xp_free: the caller's buffers */
static void *spare_private_page; /* the private copies xp_issue makes */
static void *spare_pf_page;      /* ... of a multicall's platform_op structs */

/* Our own pid, for process_vm_readv/writev: asked once and again in a forked child,
 * not on every copy (a system call each, and the copies are on every request). */
static pid_t self;

/* In a forked child: its own pid; and the kept pages are MADV_DONTFORK, so the child
 * does not have them and must not hand them out. */
static void in_child(void)
{
    self = getpid();
    spare_page = NULL;
    spare_private_page = NULL;
    spare_pf_page = NULL;
}

__attribute__((constructor)) static void at_load(void)
{
    self = getpid();
    pthread_atfork(NULL, NULL, in_child);
}

/* Hypercall buffers are locked and not inherited by children, as libxencall keeps
 * them: the hypervisor must never find a buffer paged out. */
static void *alloc_from(void **spare, size_t bytes, int *err)
{
    size_t len = (bytes + PAGE - 1) / PAGE * PAGE;
    void *p;

    if (len <= PAGE && (p = __atomic_exchange_n(spare, NULL, __ATOMIC_ACQUIRE))) {
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

static void free_to(void **spare, void *p, size_t bytes)
{
    size_t len = (bytes + PAGE - 1) / PAGE * PAGE;
    if (!p)
        return;
    if (len <= PAGE) {
        /* Zeroed, so a later owner never sees an earlier request's bytes. */
        memset(p, 0, PAGE);
        p = __atomic_exchange_n(spare, p, __ATOMIC_RELEASE);
        if (!p)
            return;
    }
    munmap(p, len ? len : PAGE);
}

void *xp_alloc(size_t bytes, int *err)
{
    return alloc_from(&spare_page, bytes, err);
}

void xp_free(void *p, size_t bytes)
{
    free_to(&spare_page, p, bytes);
}

/* ------------------------------------------------------------------ caller memory */

/* Set once process_vm_readv/writev turn out to be unavailable (a seccomp filter that
 * denies them, a kernel without them): copies are then plain memcpy, still made once,
 * still checked as copied; only a bad pointer is then a SIGSEGV again. The shipped
 * units allow them (@system-service includes @ipc). */
static int no_vm_rw;

static int vm_failed(ssize_t done, size_t n)
{
    if (done >= 0)
        return EFAULT; /* part of the range is not mapped */
    if (errno == ENOSYS || errno == EPERM) {
        __atomic_store_n(&no_vm_rw, 1, __ATOMIC_RELAXED);
        return -1;
    }
    (void)n;
    return errno == EFAULT ? EFAULT : errno;
}

int xp_copy_in(void *dst, uint64_t src, size_t n)
{
    struct iovec local = {dst, n}, remote = {(void *)(uintptr_t)src, n};
    if (n == 0)
        return 0;
    if (!__atomic_load_n(&no_vm_rw, __ATOMIC_RELAXED)) {
        ssize_t done = process_vm_readv(self, &local, 1, &remote, 1, 0);
        if (done == (ssize_t)n)
            return 0;
        int e = vm_failed(done, n);
        if (e >= 0)
            return e;
    }
    if (src < PAGE)
        return EFAULT;
    memcpy(dst, (const void *)(uintptr_t)src, n);
    return 0;
}

int xp_copy_out(uint64_t dst, const void *src, size_t n)
{
    struct iovec local = {(void *)src, n}, remote = {(void *)(uintptr_t)dst, n};
    if (n == 0)
        return 0;
    if (!__atomic_load_n(&no_vm_rw, __ATOMIC_RELAXED)) {
        ssize_t done = process_vm_writev(self, &local, 1, &remote, 1, 0);
        if (done == (ssize_t)n)
            return 0;
        int e = vm_failed(done, n);
        if (e >= 0)
            return e;
    }
    if (dst < PAGE)
        return EFAULT;
    memcpy((void *)(uintptr_t)dst, src, n);
    return 0;
}

static int known_in(void *dst, uint64_t src, size_t n)
{
    if (n && src < PAGE)
        return EFAULT;
    memcpy(dst, (const void *)(uintptr_t)src, n);
    return 0;
}

static int known_out(uint64_t dst, const void *src, size_t n)
{
    if (n && dst < PAGE)
        return EFAULT;
    memcpy((void *)(uintptr_t)dst, src, n);
    return 0;
}

const struct xp_access xp_caller_memory = {xp_copy_in, xp_copy_out};
const struct xp_access xp_known_memory = {known_in, known_out};

/* ------------------------------------------------------------------ refusals */

/* What the last refusal in this thread was about, for its message: the op and subop
 * the allow-list read (a sysctl/domctl's cmd, not the pointer to it), and which entry
 * of a multicall or call of a batch (NO_INDEX: the request itself). */
static __thread uint64_t refusal[3];

static int refuse(int *err, int verdict, uint64_t op, uint64_t subop, uint64_t index)
{
    refusal[0] = op;
    refusal[1] = subop;
    refusal[2] = index;
    *err = verdict;
    return XP_REFUSED;
}

void xp_refusal(uint64_t out[3])
{
    memcpy(out, refusal, sizeof(refusal));
}

/* Every entry of a multicall, as the hypervisor will read them. */
static int check_entries(const xp_multicall_entry *e, uint64_t n, int *err)
{
    for (uint64_t i = 0; i < n; i++) {
        int v = xp_check_entry(&e[i]);
        if (v != XP_ALLOWED)
            return refuse(err, v, e[i].op, e[i].args[0], i);
    }
    return XP_ALLOWED;
}

/* ------------------------------------------------------------------ platform_op */

/*
 * A platform_op's private copy: its struct and, for XENPF_resource_op, the entries its
 * guest handle points to. Xen reads the entries through that handle after reading the
 * struct (x86/platform_hypercall.c@RELEASE-4.20.0:813), so they are copied once and
 * judged too, and the copy's handle is rewritten to the copied entries.
 */
struct pf_copy {
    uint8_t op[XP_PLATFORM_OP_SIZE];
    xp_resource_entry entries[XP_RESOURCE_MAX];
    uint64_t user;         /* the caller's struct */
    uint64_t user_entries; /* the caller's entries array; 0 for any other cmd */
    uint32_t nr;
};

/* Copies the platform_op at `user` into *pc and judges the copy: 0, ready to issue with
 * arg0 = pc->op; EFAULT, a part of it could not be read; or XP_REFUSED. */
static int pf_in(struct pf_copy *pc, uint64_t user, const struct xp_access *mem,
                 uint64_t index, int *err)
{
    xp_resource_op ro;
    uint32_t cmd;
    int v;

    pc->user = user;
    pc->nr = 0;
    pc->user_entries = 0;
    if (user == 0)
        return refuse(err, XP_DENY_ARGS, HYPERVISOR_platform_op, 0, index);
    if (mem->in(pc->op, user, sizeof(pc->op)))
        return EFAULT;
    memcpy(&cmd, pc->op, sizeof(cmd));
    if ((v = xp_check_cmd(HYPERVISOR_platform_op, cmd)) != XP_ALLOWED)
        return refuse(err, v, HYPERVISOR_platform_op, cmd, index);
    if (cmd != XENPF_resource_op)
        return 0;
    memcpy(&ro, pc->op + XP_RESOURCE_OP_AT, sizeof(ro));
    /* The count checked is the count copied and the count Xen is given. */
    if (xp_check_resource_count(ro.nr_entries) != XP_ALLOWED || ro.entries == 0)
        return refuse(err, XP_DENY_ARGS, HYPERVISOR_platform_op, cmd, index);
    /* The entries are read like the struct: on the guard's path they are libxencall's
     * buffers, which process_vm_readv cannot read (/dev/xen/hypercall maps them VM_IO). */
    if (mem->in(pc->entries, ro.entries, ro.nr_entries * sizeof(xp_resource_entry)))
        return EFAULT;
    if ((v = xp_check_resource_entries(pc->entries, ro.nr_entries)) != XP_ALLOWED)
        return refuse(err, v, HYPERVISOR_platform_op, cmd, index);
    pc->nr = ro.nr_entries;
    pc->user_entries = ro.entries;
    ro.entries = (uint64_t)(uintptr_t)pc->entries;
    memcpy(pc->op + XP_RESOURCE_OP_AT, &ro, sizeof(ro));
    return 0;
}

/* Hands back what Xen wrote (the struct: get_dom0_console's info; the entries:
 * resource_op's values and a failed entry's -errno), the struct with the caller's own
 * handle: 0 or EFAULT. */
static int pf_out(const struct pf_copy *pc, uint64_t user, const struct xp_access *mem)
{
    uint8_t op[XP_PLATFORM_OP_SIZE];

    memcpy(op, pc->op, sizeof(op));
    if (pc->nr) {
        xp_resource_op ro;
        memcpy(&ro, op + XP_RESOURCE_OP_AT, sizeof(ro));
        ro.entries = pc->user_entries;
        memcpy(op + XP_RESOURCE_OP_AT, &ro, sizeof(ro));
    }
    if (mem->out(user, op, sizeof(op)))
        return EFAULT;
    if (pc->nr && mem->out(pc->user_entries, pc->entries, pc->nr * sizeof(xp_resource_entry)))
        return EFAULT;
    return 0;
}

static int issue_platform_op(int fd, struct privcmd_hypercall *hc, xp_send_fn send,
                             const struct xp_access *mem, long *ret, int *err)
{
    uint64_t user = hc->arg[0];
    struct pf_copy *pc = alloc_from(&spare_private_page, sizeof(*pc), err);
    int v;

    if (!pc)
        return -1;
    if ((v = pf_in(pc, user, mem, NO_INDEX, err)) != 0) {
        free_to(&spare_private_page, pc, sizeof(*pc));
        if (v != EFAULT)
            return v;
        /* Nothing to check, so nothing issued; the kernel would say the same. */
        *ret = -1;
        *err = EFAULT;
        return 0;
    }
    hc->arg[0] = (uint64_t)(uintptr_t)pc->op;
    errno = 0;
    *ret = send(fd, hc);
    *err = *ret == -1 ? errno : 0;
    if (pf_out(pc, user, mem)) {
        *ret = -1;
        *err = EFAULT;
    }
    hc->arg[0] = user;
    free_to(&spare_private_page, pc, sizeof(*pc));
    return 0;
}

static size_t count_platform_ops(const xp_multicall_entry *e, uint64_t n)
{
    size_t k = 0;
    for (uint64_t i = 0; i < n; i++)
        k += e[i].op == HYPERVISOR_platform_op;
    return k;
}

/* A multicall's platform_op entries: each one's struct copied into pcs[] (locked memory
 * of this call) through `mem`, as the entries were, and judged; the entry's arg0
 * rewritten to its copy. */
static int pf_entries_in(xp_multicall_entry *e, uint64_t n, struct pf_copy *pcs,
                         const struct xp_access *mem, int *err)
{
    size_t k = 0;
    for (uint64_t i = 0; i < n; i++) {
        if (e[i].op != HYPERVISOR_platform_op)
            continue;
        int v = pf_in(&pcs[k], e[i].args[0], mem, i, err);
        if (v == EFAULT) {
            *err = EFAULT;
            return EFAULT;
        }
        if (v)
            return v;
        e[i].args[0] = (uint64_t)(uintptr_t)pcs[k++].op;
    }
    return 0;
}

/* After the multicall: each platform_op entry's arg0 back to the caller's struct, and
 * what Xen wrote handed back. 0 or EFAULT. */
static int pf_entries_out(xp_multicall_entry *e, uint64_t n, const struct pf_copy *pcs,
                          const struct xp_access *mem)
{
    size_t k = 0;
    int rc = 0;
    for (uint64_t i = 0; i < n; i++) {
        if (e[i].op != HYPERVISOR_platform_op)
            continue;
        e[i].args[0] = pcs[k].user;
        if (pf_out(&pcs[k], pcs[k].user, mem))
            rc = EFAULT;
        k++;
    }
    return rc;
}

/* ------------------------------------------------------------------ copy, check, issue */

int xp_issue(int fd, struct privcmd_hypercall *hc, xp_send_fn send,
             const struct xp_access *mem, long *ret, int *err)
{
    uint64_t user = hc->arg[0];
    size_t size, npf = 0;
    struct pf_copy *pcs = NULL;
    void *copy;
    int v = xp_check(hc->op, hc->arg);

    if (v != XP_ALLOWED)
        return refuse(err, v, hc->op, hc->arg[0], NO_INDEX);
    if (hc->op == HYPERVISOR_platform_op)
        return issue_platform_op(fd, hc, send, mem, ret, err);
    if (hc->op == HYPERVISOR_multicall) {
        /* The count checked is the count the copy is sized by and the count issued:
         * all three are this one private word. */
        if (hc->arg[1] == 0 || hc->arg[1] > XP_MULTICALL_MAX)
            return refuse(err, XP_DENY_COUNT, hc->op, hc->arg[1], NO_INDEX);
        size = hc->arg[1] * sizeof(xp_multicall_entry);
    } else if ((size = xp_struct_size(hc->op)) == 0) {
        /* By value (memory_op query, xen_version): xp_check saw all of it. */
        errno = 0;
        *ret = send(fd, hc);
        *err = *ret == -1 ? errno : 0;
        return 0;
    }
    if (user == 0)
        return refuse(err, XP_DENY_ARGS, hc->op, 0, NO_INDEX);
    copy = alloc_from(&spare_private_page, size, err);
    if (!copy)
        return -1;
    if (mem->in(copy, user, size)) {
        /* Nothing to check, so nothing issued; the kernel would say the same. */
        free_to(&spare_private_page, copy, size);
        *ret = -1;
        *err = EFAULT;
        return 0;
    }
    if (hc->op == HYPERVISOR_multicall) {
        v = check_entries(copy, hc->arg[1], err);
        if (v == XP_ALLOWED && (npf = count_platform_ops(copy, hc->arg[1]))) {
            pcs = alloc_from(&spare_pf_page, npf * sizeof(*pcs), err);
            if (!pcs) {
                free_to(&spare_private_page, copy, size);
                return -1;
            }
            v = pf_entries_in(copy, hc->arg[1], pcs, mem, err);
            if (v == EFAULT) {
                /* A struct that cannot be read: nothing issued, as for the entries. */
                free_to(&spare_pf_page, pcs, npf * sizeof(*pcs));
                free_to(&spare_private_page, copy, size);
                *ret = -1;
                *err = EFAULT;
                return 0;
            }
        }
    } else {
        uint32_t cmd;
        memcpy(&cmd, copy, sizeof(cmd));
        v = xp_check_cmd(hc->op, cmd);
        if (v == XP_ALLOWED) /* a command inside the command (sysctl livepatch_op) */
            v = xp_check_nested(hc->op, copy, size);
        if (v != XP_ALLOWED)
            v = refuse(err, v, hc->op, cmd, NO_INDEX);
    }
    if (v != XP_ALLOWED) {
        free_to(&spare_pf_page, pcs, npf * sizeof(*pcs));
        free_to(&spare_private_page, copy, size);
        return v;
    }
    hc->arg[0] = (uint64_t)(uintptr_t)copy;
    errno = 0;
    *ret = send(fd, hc);
    *err = *ret == -1 ? errno : 0;
    if (pcs && pf_entries_out(copy, hc->arg[1], pcs, mem)) {
        *ret = -1;
        *err = EFAULT;
    }
    free_to(&spare_pf_page, pcs, npf * sizeof(*pcs));
    /* Xen writes its answer into the struct (or the entries' results): hand it back. A
     * caller that unmapped its struct meanwhile gets what Xen's copy_to_guest gives. */
    if (mem->out(user, copy, size)) {
        *ret = -1;
        *err = EFAULT;
    }
    hc->arg[0] = user;
    free_to(&spare_private_page, copy, size);
    return 0;
}

/* ------------------------------------------------------------------ entry points */

static long send_ioctl(int fd, struct privcmd_hypercall *hc)
{
    return ioctl(fd, IOCTL_PRIVCMD_HYPERCALL, hc);
}

static long send_syscall(int fd, struct privcmd_hypercall *hc)
{
    return syscall(SYS_ioctl, fd, (unsigned long)IOCTL_PRIVCMD_HYPERCALL, hc);
}

/* op is a value; the 5 arguments are copied out of the caller's memory here, once. */
static int issue_user(int fd, uint64_t op, const uint64_t args[5], xp_send_fn send,
                      long *ret, int *err)
{
    struct privcmd_hypercall hc = {.op = op};
    if (xp_copy_in(hc.arg, (uint64_t)(uintptr_t)args, sizeof(hc.arg))) {
        *ret = -1;
        *err = EFAULT;
        return 0;
    }
    return xp_issue(fd, &hc, send, &xp_caller_memory, ret, err);
}

int xp_hypercall_ioctl(int fd, uint64_t op, const uint64_t args[5], int *ret, int *err)
{
    long r = -1;
    int rc = issue_user(fd, op, args, send_ioctl, &r, err);
    *ret = (int)r; /* glibc's ioctl() returned an int */
    return rc;
}

int xp_hypercall_syscall(int fd, uint64_t op, const uint64_t args[5], long *ret, int *err)
{
    *ret = -1;
    return issue_user(fd, op, args, send_syscall, ret, err);
}

int xp_multicall(int fd, xp_multicall_entry *entries, unsigned count, int *ret, int *err)
{
    struct privcmd_hypercall hc = {.op = HYPERVISOR_multicall,
                                   .arg = {(uint64_t)(uintptr_t)entries, count, 0, 0, 0}};
    long r = -1;
    int rc = xp_issue(fd, &hc, send_ioctl, &xp_caller_memory, &r, err);
    *ret = (int)r;
    return rc;
}

/* A batch's ops and args, copied out of the caller's memory once, and every call
 * checked on the copy before the first is issued: a refused batch reaches the device
 * not at all. 0, XP_REFUSED, or -1 with *err (EFAULT: a bad array; ENOMEM). */
struct batch {
    uint64_t *ops;
    uint64_t *args;
};

static int batch_in(struct batch *b, unsigned count, const uint64_t *ops, const uint64_t *args,
                    int *err)
{
    b->ops = malloc((size_t)count * 6 * sizeof(uint64_t));
    if (!b->ops) {
        *err = ENOMEM;
        return -1;
    }
    b->args = b->ops + count;
    if (xp_copy_in(b->ops, (uint64_t)(uintptr_t)ops, (size_t)count * sizeof(uint64_t)) ||
        xp_copy_in(b->args, (uint64_t)(uintptr_t)args, (size_t)count * 5 * sizeof(uint64_t))) {
        free(b->ops);
        *err = EFAULT;
        return -1;
    }
    for (unsigned i = 0; i < count; i++) {
        xp_multicall_entry e = {.op = b->ops[i]};
        memcpy(e.args, &b->args[5 * (size_t)i], 5 * sizeof(uint64_t));
        int v = xp_check_entry(&e);
        if (v != XP_ALLOWED) {
            free(b->ops);
            return refuse(err, v, e.op, e.args[0], i);
        }
        if (e.op == HYPERVISOR_platform_op) {
            /* Judged here too, so a batch with a refused struct issues none of its
             * calls; each is copied and judged again when it is issued (xp_issue). */
            struct pf_copy pc;
            v = pf_in(&pc, e.args[0], &xp_caller_memory, i, err);
            if (v != 0 && v != EFAULT) {
                free(b->ops);
                return v;
            }
        }
    }
    return 0;
}

/*
 * Many by-value hypercalls (memory_op queries, xen_version), one ioctl each: the
 * per-domain ioctl and syscall layers of a sweep. args holds 5 words per call;
 * rets/errs get one slot per call, written when the batch is done.
 */
int xp_hypercall_many(int fd, unsigned count, const uint64_t *ops, const uint64_t *args,
                      int use_syscall, int64_t *rets, int *errs, int *err)
{
    xp_send_fn send = use_syscall ? send_syscall : send_ioctl;
    struct batch b;
    int64_t *r;
    int *e, rc = 0;

    if (count == 0) {
        *err = 0;
        return 0;
    }
    if ((rc = batch_in(&b, count, ops, args, err)))
        return rc;
    r = malloc((size_t)count * (sizeof(*r) + sizeof(*e)));
    if (!r) {
        free(b.ops);
        *err = ENOMEM;
        return -1;
    }
    e = (int *)(r + count);
    for (unsigned i = 0; i < count; i++) {
        struct privcmd_hypercall hc = {.op = b.ops[i]};
        long v = -1;
        int why;
        memcpy(hc.arg, &b.args[5 * (size_t)i], sizeof(hc.arg));
        /* Checked again in xp_issue, on the same private words: the same verdict. */
        /* A by-value call reads no memory; a platform_op's struct is the caller's. */
        if ((rc = xp_issue(fd, &hc, send, &xp_caller_memory, &v, &why))) {
            *err = why;
            break;
        }
        /* glibc's ioctl() returned an int; the system call a long. */
        r[i] = use_syscall ? v : (int)v;
        e[i] = why;
    }
    if (!rc && (xp_copy_out((uint64_t)(uintptr_t)rets, r, (size_t)count * sizeof(*r)) ||
                xp_copy_out((uint64_t)(uintptr_t)errs, e, (size_t)count * sizeof(*e)))) {
        *err = EFAULT;
        rc = -1;
    }
    if (!rc)
        *err = 0;
    free(r);
    free(b.ops);
    return rc;
}

/*
 * The same calls as multicalls of at most XP_MULTICALL_MAX entries each: the raw layer
 * of a sweep. The entries are built in locked memory from the private copy of the
 * batch, and each multicall goes through xp_issue like any other. results[i] gets entry
 * i's 64-bit result. A multicall that fails as a whole (*ret != 0) ends the batch:
 * results from it on are left untouched, and *ret and *err say why.
 */
int xp_multicall_many(int fd, unsigned count, const uint64_t *ops, const uint64_t *args,
                      int64_t *results, int *ret, int *err)
{
    unsigned most = count < XP_MULTICALL_MAX ? count : XP_MULTICALL_MAX;
    size_t bytes = (size_t)most * sizeof(xp_multicall_entry);
    xp_multicall_entry *e;
    int64_t *out;
    struct batch b;
    int rc;

    *ret = 0;
    *err = 0;
    if (count == 0)
        return 0;
    if ((rc = batch_in(&b, count, ops, args, err)))
        return rc;
    e = alloc_from(&spare_private_page, bytes, err);
    out = malloc((size_t)most * sizeof(*out));
    if (!e || !out) {
        if (!*err)
            *err = ENOMEM;
        free(out);
        free_to(&spare_private_page, e, bytes);
        free(b.ops);
        return -1;
    }
    for (unsigned start = 0; start < count; start += most) {
        unsigned n = count - start < most ? count - start : most;
        long r = -1;
        memset(e, 0, (size_t)n * sizeof(*e));
        for (unsigned i = 0; i < n; i++) {
            e[i].op = b.ops[start + i];
            memcpy(e[i].args, &b.args[5 * (size_t)(start + i)], 5 * sizeof(uint64_t));
        }
        struct privcmd_hypercall hc = {.op = HYPERVISOR_multicall,
                                       .arg = {(uint64_t)(uintptr_t)e, n, 0, 0, 0}};
        /* The entries are our own, but a platform_op entry's struct is the caller's: read
         * through process_vm_readv, a bad pointer there is EFAULT. */
        rc = xp_issue(fd, &hc, send_ioctl, &xp_caller_memory, &r, err);
        *ret = (int)r;
        if (rc || *ret != 0)
            break;
        for (unsigned i = 0; i < n; i++)
            out[i] = (int64_t)e[i].result;
        if (xp_copy_out((uint64_t)(uintptr_t)(results + start), out, (size_t)n * sizeof(*out))) {
            *err = EFAULT;
            rc = -1;
            break;
        }
    }
    free(out);
    free_to(&spare_private_page, e, bytes);
    free(b.ops);
    return rc;
}
