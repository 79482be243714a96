/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Issues hypercalls through the Linux privcmd device, three ways: the glibc
 * ioctl() a tool normally uses, the raw ioctl system call, and a multicall
 * whose entries carry the hypervisor's own 64-bit results.
 *
 * Every entry point, and the guard on libxenctrl's path (guard.c), goes through
 * xp_issue() (issue.h): the request is copied once out of the caller's memory into
 * the private span (below: out of reach of every write an allowed call makes), the
 * allow-list judges the copy, and the copy is issued. The
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

/* ------------------------------------------------------------------ the private span */

/*
 * Every private copy (a request's struct or multicall entries, a platform_op struct
 * and its resource entries, a batch's ops and args) lives in one span of address space
 * reserved once for the process: SPAN_PAGES pages, PROT_NONE until a copy needs them,
 * between two PROT_NONE guards of GUARD_PAGES pages that are never made accessible.
 *
 * The rule that keeps Xen's own writes off the judged copies (docs/readonly.md): no
 * word of a request as judged (an argument, a multicall entry's argument, an aligned
 * word of a copied struct, where every guest handle of these ABIs sits) may point into
 * the span or its guards, and nor may the caller's result arrays. An allowed call
 * writes only at addresses derived from such a word, ascending from at most a few bytes
 * past it, in steps far below a guard; so a write that starts below the span reaches
 * the lower guard first, where copy_to_guest fails (the page is not present) and the
 * call stops; one that starts above never comes down. The span's bounds never move
 * while the process lives, so the check cannot race another thread's allocation.
 *
 * Pages are handed out under a lock from a bitmap; a freed range is unlocked, dropped
 * (MADV_DONTNEED: the next owner reads zeros) and made PROT_NONE again.
 */
#define GUARD_PAGES 16u          /* 64 KiB: far beyond any offset or step of a write */
/* 16 MiB of address space, memory only when used: a 4096-entry multicall's copy is
 * 256 KiB and a sweep's batch 48 bytes a call (a 10,000-domain sweep's about 2 MiB).
 * Address space, not memory, but it counts against RLIMIT_AS, which some units set. */
#define SPAN_PAGES  (1u << 12)
#define SPAN_BYTES  ((size_t)SPAN_PAGES * PAGE)
#define GUARD_BYTES ((size_t)GUARD_PAGES * PAGE)

static uint8_t *span;            /* the first usable page; NULL: none could be reserved */
static uint64_t span_used[SPAN_PAGES / 64];
static pthread_mutex_t span_lock = PTHREAD_MUTEX_INITIALIZER;

/* The span's pages are MADV_DONTFORK like every hypercall buffer (a copy-on-write fork
 * must not move a page Xen is reading), so a child has none of them: it reserves the
 * same addresses afresh (reserve(span - GUARD_BYTES)), keeping the rule's bounds. */
static uint8_t *reserve(void *at)
{
    size_t len = SPAN_BYTES + 2 * GUARD_BYTES;
    void *p = mmap(at, len, PROT_NONE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | (at ? MAP_FIXED : 0), -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    madvise(p, len, MADV_DONTFORK);
    return (uint8_t *)p + GUARD_BYTES;
}

/* Whether an address is in the span or its guards. */
static int in_span(uint64_t a)
{
    uint64_t lo = (uint64_t)(uintptr_t)span - GUARD_BYTES;
    return span && a - lo < SPAN_BYTES + 2 * GUARD_BYTES;
}

/* Whether any of n words points into the span or its guards. */
static int any_in_span(const uint64_t *w, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (in_span(w[i]))
            return 1;
    return 0;
}

/* The same for a copied struct of `size` bytes: every aligned 64-bit word, which is
 * where every XEN_GUEST_HANDLE_64 of sysctl, domctl and platform_op sits
 * (public/xen.h@RELEASE-4.17.0: __attribute__((aligned(8))) on x86-64 handles). */
static int struct_in_span(const void *copy, size_t size)
{
    uint64_t w;
    for (size_t at = 0; at + sizeof(w) <= size; at += sizeof(w)) {
        memcpy(&w, (const uint8_t *)copy + at, sizeof(w));
        if (in_span(w))
            return 1;
    }
    return 0;
}

void xp_private_span(uint64_t out[2])
{
    out[0] = span ? (uint64_t)(uintptr_t)span - GUARD_BYTES : 0;
    out[1] = span ? (uint64_t)(uintptr_t)span + SPAN_BYTES + GUARD_BYTES : 0;
}

static size_t span_pages(size_t bytes)
{
    return bytes ? (bytes - 1) / PAGE + 1 : 1;
}

static int page_used(size_t i)
{
    return (span_used[i / 64] >> (i % 64)) & 1;
}

static void mark(size_t at, size_t n, int used)
{
    for (size_t i = at; i < at + n; i++) {
        uint64_t bit = (uint64_t)1 << (i % 64);
        span_used[i / 64] = used ? span_used[i / 64] | bit : span_used[i / 64] & ~bit;
    }
}

/* First fit of n free pages; SIZE_MAX when there is no room. Under span_lock. */
static size_t find_free(size_t n)
{
    size_t run = 0;
    for (size_t i = 0; i < SPAN_PAGES; i++) {
        if (span_used[i / 64] == UINT64_MAX && i % 64 == 0) {
            run = 0;
            i += 63;
            continue;
        }
        run = page_used(i) ? 0 : run + 1;
        if (run == n)
            return i + 1 - n;
    }
    return SIZE_MAX;
}

/* Pages of the span for a private copy: locked when Xen reads them. */
static void *span_alloc(size_t bytes, int lock, int *err)
{
    size_t n, at;
    uint8_t *p;

    if (!span || bytes > SPAN_BYTES) {
        *err = ENOMEM;
        return NULL;
    }
    n = span_pages(bytes);
    pthread_mutex_lock(&span_lock);
    if ((at = find_free(n)) != SIZE_MAX)
        mark(at, n, 1);
    pthread_mutex_unlock(&span_lock);
    if (at == SIZE_MAX) {
        *err = ENOMEM;
        return NULL;
    }
    p = span + at * PAGE;
    if (mprotect(p, n * PAGE, PROT_READ | PROT_WRITE) || (lock && mlock(p, n * PAGE))) {
        *err = errno;
        mprotect(p, n * PAGE, PROT_NONE);
        pthread_mutex_lock(&span_lock);
        mark(at, n, 0);
        pthread_mutex_unlock(&span_lock);
        return NULL;
    }
    *err = 0;
    return p;
}

static void span_free(void *p, size_t bytes)
{
    size_t n = span_pages(bytes), at;

    if (!p)
        return;
    at = (size_t)((uint8_t *)p - span) / PAGE;
    munlock(p, n * PAGE); /* harmless on pages that were never locked */
    madvise(p, n * PAGE, MADV_DONTNEED);
    mprotect(p, n * PAGE, PROT_NONE);
    pthread_mutex_lock(&span_lock);
    mark(at, n, 0);
    pthread_mutex_unlock(&span_lock);
}

/* One freed single-page copy kept for the next single-page request: private copies of
 * sysctl/domctl structs and one-entry multicalls (libxc's memory_op: the guard copies
 * each) fit in a page; a sweep of 10,000 domains makes 20,000 of them through libxc.
 * Taken and given back with an atomic exchange, so each page has one owner at a time.
 * It is a page of the span, like every private copy. */
static void *spare_private_page;

static void *private_alloc(size_t bytes, int *err)
{
    void *p;
    if (bytes <= PAGE && (p = __atomic_exchange_n(&spare_private_page, NULL, __ATOMIC_ACQUIRE))) {
        *err = 0;
        return p;
    }
    return span_alloc(bytes, 1, err);
}

static void private_free(void *p, size_t bytes)
{
    if (!p)
        return;
    if (bytes <= PAGE) {
        /* Zeroed, so a later owner never sees an earlier request's bytes. */
        memset(p, 0, PAGE);
        p = __atomic_exchange_n(&spare_private_page, p, __ATOMIC_RELEASE);
        if (!p)
            return;
    }
    span_free(p, bytes <= PAGE ? PAGE : bytes);
}

/* ------------------------------------------------------------------ the caller's buffers */

/* One freed single-page buffer kept for the next xp_alloc of at most a page. Never a
 * page of the span: a page handed to a caller (a Python Buffer, whose address the
 * caller keeps) never becomes a private copy. */
static void *spare_page;

/* Our own pid, for process_vm_readv/writev: asked once and again in a forked child,
 * not on every copy (a system call each, and the copies are on every request). */
static pid_t self;

static void before_fork(void)
{
    pthread_mutex_lock(&span_lock);
}

static void in_parent(void)
{
    pthread_mutex_unlock(&span_lock);
}

/* In a forked child: its own pid; the kept pages and the span are MADV_DONTFORK, so the
 * child has none of them: it must not hand them out or free them, and it reserves the
 * span afresh at the same addresses (nothing else can have been mapped there yet: the
 * child runs nothing before this handler). Only the forking thread lives on in the
 * child, so no copy of the parent's is in use here. */
static void in_child(void)
{
    self = getpid();
    spare_page = NULL;
    spare_private_page = NULL;
    memset(span_used, 0, sizeof(span_used));
    pthread_mutex_init(&span_lock, NULL);
    if (span)
        span = reserve(span - GUARD_BYTES);
}

__attribute__((constructor)) static void at_load(void)
{
    self = getpid();
    span = reserve(NULL);
    pthread_atfork(before_fork, in_parent, in_child);
}

/* Hypercall buffers are locked and not inherited by children, as libxencall keeps
 * them: the hypervisor must never find a buffer paged out. */
void *xp_alloc(size_t bytes, int *err)
{
    size_t len;
    void *p;

    /* Rounded up to whole pages: a size that cannot be is no size to map. */
    if (bytes > SIZE_MAX - (PAGE - 1)) {
        *err = ENOMEM;
        return NULL;
    }
    len = bytes ? (bytes + PAGE - 1) / PAGE * PAGE : PAGE;
    if (len == PAGE && (p = __atomic_exchange_n(&spare_page, NULL, __ATOMIC_ACQUIRE))) {
        *err = 0;
        return p;
    }
    p = mmap(NULL, len, PROT_READ | PROT_WRITE,
             MAP_PRIVATE | MAP_ANONYMOUS | MAP_LOCKED, -1, 0);
    if (p == MAP_FAILED) {
        *err = errno;
        return NULL;
    }
    madvise(p, len, MADV_DONTFORK);
    *err = 0;
    return p;
}

void xp_free(void *p, size_t bytes)
{
    size_t len = bytes ? (bytes + PAGE - 1) / PAGE * PAGE : PAGE;
    if (!p)
        return;
    if (len == PAGE) {
        memset(p, 0, PAGE);
        p = __atomic_exchange_n(&spare_page, p, __ATOMIC_RELEASE);
        if (!p)
            return;
    }
    munmap(p, len);
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
    uint64_t at;           /* which multicall entry or batch call (NO_INDEX: alone) */
    uint32_t nr;
    int unreadable;        /* a part could not be read: answered -1/EFAULT, not issued */
};

/* Copies the platform_op at `user` into *pc and judges the copy: 0, ready to issue with
 * arg0 = pc->op (or pc->unreadable: a part of it could not be read); or XP_REFUSED. */
static int pf_in(struct pf_copy *pc, uint64_t user, const struct xp_access *mem,
                 uint64_t index, int *err)
{
    xp_resource_op ro;
    uint32_t cmd;
    int v;

    pc->user = user;
    pc->at = index;
    pc->nr = 0;
    pc->user_entries = 0;
    pc->unreadable = 0;
    if (user == 0)
        return refuse(err, XP_DENY_ARGS, HYPERVISOR_platform_op, 0, index);
    if (mem->in(pc->op, user, sizeof(pc->op))) {
        pc->unreadable = 1;
        return 0;
    }
    memcpy(&cmd, pc->op, sizeof(cmd));
    if ((v = xp_check_cmd(HYPERVISOR_platform_op, cmd)) != XP_ALLOWED)
        return refuse(err, v, HYPERVISOR_platform_op, cmd, index);
    /* The struct's handles (resource_op's entries) are where Xen writes. */
    if (struct_in_span(pc->op, sizeof(pc->op)))
        return refuse(err, XP_DENY_PRIVATE, HYPERVISOR_platform_op, cmd, index);
    if (cmd != XENPF_resource_op)
        return 0;
    memcpy(&ro, pc->op + XP_RESOURCE_OP_AT, sizeof(ro));
    /* The count checked is the count copied and the count Xen is given. */
    if (xp_check_resource_count(ro.nr_entries) != XP_ALLOWED || ro.entries == 0)
        return refuse(err, XP_DENY_ARGS, HYPERVISOR_platform_op, cmd, index);
    /* The entries are read like the struct: on the guard's path they are libxencall's
     * buffers, which process_vm_readv cannot read (/dev/xen/hypercall maps them VM_IO). */
    if (mem->in(pc->entries, ro.entries, ro.nr_entries * sizeof(xp_resource_entry))) {
        pc->unreadable = 1;
        return 0;
    }
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
static int pf_out(const struct pf_copy *pc, const struct xp_access *mem)
{
    uint8_t op[XP_PLATFORM_OP_SIZE];

    memcpy(op, pc->op, sizeof(op));
    if (pc->nr) {
        xp_resource_op ro;
        memcpy(&ro, op + XP_RESOURCE_OP_AT, sizeof(ro));
        ro.entries = pc->user_entries;
        memcpy(op + XP_RESOURCE_OP_AT, &ro, sizeof(ro));
    }
    if (mem->out(pc->user, op, sizeof(op)))
        return EFAULT;
    if (pc->nr && mem->out(pc->user_entries, pc->entries, pc->nr * sizeof(xp_resource_entry)))
        return EFAULT;
    return 0;
}

/* A multicall's platform_op entries: each one's struct copied into pcs[] (locked memory
 * of this call) through `mem`, as the entries were, and judged; the entry's arg0
 * rewritten to its copy. 0 (*unreadable set when a part could not be read) or
 * XP_REFUSED. */
static int pf_entries_in(xp_multicall_entry *e, uint64_t n, struct pf_copy *pcs,
                         const struct xp_access *mem, int *unreadable, int *err)
{
    size_t k = 0;
    for (uint64_t i = 0; i < n; i++) {
        if (e[i].op != HYPERVISOR_platform_op)
            continue;
        int v = pf_in(&pcs[k], e[i].args[0], mem, i, err);
        if (v)
            return v;
        *unreadable |= pcs[k].unreadable;
        e[i].args[0] = (uint64_t)(uintptr_t)pcs[k++].op;
    }
    return 0;
}

/* After a multicall: what Xen wrote into each platform_op copy handed back, and each
 * such entry's arg0 back to the caller's struct. The copies say which entries they
 * were: a debug Xen overwrites every entry but its result with 0xAA after the call
 * (common/multicall.c@RELEASE-4.17.0:76-86), so the entries' ops cannot tell; an entry
 * Xen overwrote is handed back as Xen left it. 0 or EFAULT. */
static int pf_entries_out(xp_multicall_entry *e, const struct pf_copy *pcs, size_t npf,
                          const struct xp_access *mem)
{
    int rc = 0;
    for (size_t k = 0; k < npf; k++) {
        xp_multicall_entry *x = &e[pcs[k].at];
        if (x->args[0] == (uint64_t)(uintptr_t)pcs[k].op)
            x->args[0] = pcs[k].user;
        if (pf_out(&pcs[k], mem))
            rc = EFAULT;
    }
    return rc;
}

static size_t count_platform_ops(const xp_multicall_entry *e, uint64_t n)
{
    size_t k = 0;
    for (uint64_t i = 0; i < n; i++)
        k += e[i].op == HYPERVISOR_platform_op;
    return k;
}

/* ------------------------------------------------------------------ copy, check, issue */

/* Every entry of a multicall, as the hypervisor will read them: its op and subop, and
 * none of its words pointing into the span (where Xen would write). */
static int check_entries(const xp_multicall_entry *e, uint64_t n, int *err)
{
    for (uint64_t i = 0; i < n; i++) {
        int v = xp_check_entry(&e[i]);
        if (v != XP_ALLOWED)
            return refuse(err, v, e[i].op, e[i].args[0], i);
        if (any_in_span(e[i].args, 6))
            return refuse(err, XP_DENY_PRIVATE, e[i].op, e[i].args[0], i);
    }
    return XP_ALLOWED;
}

/* A request as judged: what is issued, and the private copies it points to. */
struct judged {
    struct privcmd_hypercall hc; /* arg0 at the private copy once judged */
    uint64_t user;               /* the caller's struct or entries */
    void *copy;                  /* the struct or entries, `size` bytes; NULL: by value */
    size_t size;
    struct pf_copy *pcs;         /* platform_op structs: `npf` of them */
    size_t npf;
    int unreadable;              /* a part could not be read: -1/EFAULT, nothing issued */
};

static void release(struct judged *j)
{
    private_free(j->pcs, j->npf * sizeof(*j->pcs));
    private_free(j->copy, j->size);
    j->pcs = NULL;
    j->copy = NULL;
}

/* Copies the request once and judges the copy: 0 (ready for issue_judged), XP_REFUSED,
 * or -1 (no locked memory; *err). Nothing read after this decides anything. */
static int judge(struct judged *j, const struct xp_access *mem, int *err)
{
    struct privcmd_hypercall *hc = &j->hc;
    int v = xp_check(hc->op, hc->arg);

    j->user = hc->arg[0];
    j->copy = NULL;
    j->size = 0;
    j->pcs = NULL;
    j->npf = 0;
    j->unreadable = 0;
    if (v != XP_ALLOWED)
        return refuse(err, v, hc->op, hc->arg[0], NO_INDEX);
    /* No argument may point where the private copies are: an allowed call writes where
     * its arguments point. */
    if (any_in_span(hc->arg, 5))
        return refuse(err, XP_DENY_PRIVATE, hc->op, hc->arg[0], NO_INDEX);
    if (hc->op == HYPERVISOR_platform_op) {
        if (!(j->pcs = private_alloc(sizeof(*j->pcs), err)))
            return -1;
        j->npf = 1;
        if ((v = pf_in(j->pcs, j->user, mem, NO_INDEX, err))) {
            release(j);
            return v;
        }
        j->unreadable = j->pcs->unreadable;
        hc->arg[0] = (uint64_t)(uintptr_t)j->pcs->op;
        return 0;
    }
    if (hc->op == HYPERVISOR_multicall) {
        /* The count checked is the count the copy is sized by and the count issued:
         * all three are this one private word. */
        if (hc->arg[1] == 0 || hc->arg[1] > XP_MULTICALL_MAX)
            return refuse(err, XP_DENY_COUNT, hc->op, hc->arg[1], NO_INDEX);
        j->size = hc->arg[1] * sizeof(xp_multicall_entry);
    } else if ((j->size = xp_struct_size(hc->op)) == 0) {
        return 0; /* by value (memory_op query, xen_version): xp_check saw all of it */
    }
    if (j->user == 0)
        return refuse(err, XP_DENY_ARGS, hc->op, 0, NO_INDEX);
    if (!(j->copy = private_alloc(j->size, err)))
        return -1;
    if (mem->in(j->copy, j->user, j->size)) {
        /* Nothing to check, so nothing to issue; the kernel would say the same. */
        j->unreadable = 1;
        return 0;
    }
    if (hc->op == HYPERVISOR_multicall) {
        v = check_entries(j->copy, hc->arg[1], err);
        if (v == XP_ALLOWED && (j->npf = count_platform_ops(j->copy, hc->arg[1]))) {
            if (!(j->pcs = private_alloc(j->npf * sizeof(*j->pcs), err))) {
                release(j);
                return -1;
            }
            v = pf_entries_in(j->copy, hc->arg[1], j->pcs, mem, &j->unreadable, err);
        }
    } else {
        uint32_t cmd;
        memcpy(&cmd, j->copy, sizeof(cmd));
        v = xp_check_cmd(hc->op, cmd);
        if (v == XP_ALLOWED) /* a command inside the command (sysctl livepatch_op) */
            v = xp_check_nested(hc->op, j->copy, j->size);
        /* Its handles (getdomaininfolist's buffer, LIST's arrays) are where Xen writes. */
        if (v == XP_ALLOWED && struct_in_span(j->copy, j->size))
            v = XP_DENY_PRIVATE;
        if (v != XP_ALLOWED)
            v = refuse(err, v, hc->op, cmd, NO_INDEX);
    }
    if (v != XP_ALLOWED) {
        release(j);
        return v;
    }
    hc->arg[0] = (uint64_t)(uintptr_t)j->copy;
    return 0;
}

/* Issues what judge() judged, hands back what Xen wrote, frees the copies. */
static void issue_judged(int fd, struct judged *j, xp_send_fn send,
                         const struct xp_access *mem, long *ret, int *err)
{
    if (j->unreadable) {
        *ret = -1;
        *err = EFAULT;
        release(j);
        return;
    }
    errno = 0;
    *ret = send(fd, &j->hc);
    *err = *ret == -1 ? errno : 0;
    if (j->copy && j->npf && pf_entries_out(j->copy, j->pcs, j->npf, mem)) {
        *ret = -1;
        *err = EFAULT;
    }
    if (!j->copy && j->npf && pf_out(j->pcs, mem)) {
        *ret = -1;
        *err = EFAULT;
    }
    /* Xen writes its answer into the struct (or the entries' results): hand it back. A
     * caller that unmapped its struct meanwhile gets what Xen's copy_to_guest gives. */
    if (j->copy && mem->out(j->user, j->copy, j->size)) {
        *ret = -1;
        *err = EFAULT;
    }
    j->hc.arg[0] = j->user;
    release(j);
}

int xp_issue(int fd, struct privcmd_hypercall *hc, xp_send_fn send,
             const struct xp_access *mem, long *ret, int *err)
{
    struct judged j = {.hc = *hc};
    int v = judge(&j, mem, err);

    if (v)
        return v;
    issue_judged(fd, &j, send, mem, ret, err);
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

/* A batch's ops and args, copied out of the caller's memory once into the span, and
 * every call judged on the copy before the first is issued, its platform_op structs
 * copied and judged there too: what is issued is what was judged, so a judged batch is
 * issued whole and a refused one not at all. */
struct batch {
    uint64_t *ops;        /* count ops, then 5 args per call */
    uint64_t *args;
    size_t bytes;
    struct pf_copy *pcs;  /* the platform_op calls' structs, in call order */
    size_t npf;
};

static void batch_free(struct batch *b)
{
    private_free(b->pcs, b->npf * sizeof(*b->pcs));
    span_free(b->ops, b->bytes);
}

/* 0, XP_REFUSED, or -1 with *err (EFAULT: a bad array; ENOMEM). */
static int batch_in(struct batch *b, unsigned count, const uint64_t *ops, const uint64_t *args,
                    int *err)
{
    size_t k = 0;

    /* Xen never reads these, so they need not be locked; they are in the span so that
     * no call of the batch can write over the calls after it. */
    b->bytes = (size_t)count * 6 * sizeof(uint64_t);
    b->pcs = NULL;
    b->npf = 0;
    if (!(b->ops = span_alloc(b->bytes, 0, err)))
        return -1;
    b->args = b->ops + count;
    if (xp_copy_in(b->ops, (uint64_t)(uintptr_t)ops, (size_t)count * sizeof(uint64_t)) ||
        xp_copy_in(b->args, (uint64_t)(uintptr_t)args, (size_t)count * 5 * sizeof(uint64_t))) {
        batch_free(b);
        *err = EFAULT;
        return -1;
    }
    for (unsigned i = 0; i < count; i++)
        b->npf += b->ops[i] == HYPERVISOR_platform_op;
    if (b->npf && !(b->pcs = private_alloc(b->npf * sizeof(*b->pcs), err))) {
        b->npf = 0;
        batch_free(b);
        return -1;
    }
    for (unsigned i = 0; i < count; i++) {
        xp_multicall_entry e = {.op = b->ops[i]};
        int v;
        memcpy(e.args, &b->args[5 * (size_t)i], 5 * sizeof(uint64_t));
        v = xp_check_entry(&e);
        if (v == XP_ALLOWED && any_in_span(e.args, 5))
            v = XP_DENY_PRIVATE;
        if (v != XP_ALLOWED) {
            batch_free(b);
            return refuse(err, v, e.op, e.args[0], i);
        }
        /* A platform_op's struct: copied and judged once, here; the copy is issued. */
        if (e.op == HYPERVISOR_platform_op &&
            (v = pf_in(&b->pcs[k++], e.args[0], &xp_caller_memory, i, err))) {
            batch_free(b);
            return v;
        }
    }
    return 0;
}

/* Result arrays the batch writes into: not in the span (xp_copy_out, like Xen, stops
 * at a guard, so only a start inside matters). */
static int results_in_span(const void *a, const void *b)
{
    return in_span((uint64_t)(uintptr_t)a) || in_span((uint64_t)(uintptr_t)b);
}

/*
 * Many by-value hypercalls (memory_op queries, xen_version) and platform_ops, one ioctl
 * each: the per-domain ioctl and syscall layers of a sweep. args holds 5 words per call;
 * rets/errs get one slot per call, written when the batch is done.
 */
int xp_hypercall_many(int fd, unsigned count, const uint64_t *ops, const uint64_t *args,
                      int use_syscall, int64_t *rets, int *errs, int *err)
{
    xp_send_fn send = use_syscall ? send_syscall : send_ioctl;
    struct batch b;
    int64_t *r;
    int *e, rc = 0;
    size_t k = 0;

    if (count == 0) {
        *err = 0;
        return 0;
    }
    if (results_in_span(rets, errs)) {
        *err = EFAULT;
        return -1;
    }
    if ((rc = batch_in(&b, count, ops, args, err)))
        return rc;
    r = malloc((size_t)count * (sizeof(*r) + sizeof(*e)));
    if (!r) {
        batch_free(&b);
        *err = ENOMEM;
        return -1;
    }
    e = (int *)(r + count);
    for (unsigned i = 0; i < count; i++) {
        struct privcmd_hypercall hc = {.op = b.ops[i]};
        struct pf_copy *pc = hc.op == HYPERVISOR_platform_op ? &b.pcs[k++] : NULL;
        long v = -1;
        int why = EFAULT;
        memcpy(hc.arg, &b.args[5 * (size_t)i], sizeof(hc.arg));
        if (pc)
            hc.arg[0] = (uint64_t)(uintptr_t)pc->op;
        if (!pc || !pc->unreadable) {
            errno = 0;
            v = send(fd, &hc);
            why = v == -1 ? errno : 0;
            if (pc && pf_out(pc, &xp_caller_memory)) {
                v = -1;
                why = EFAULT;
            }
        }
        /* glibc's ioctl() returned an int; the system call a long. */
        r[i] = use_syscall ? v : (int)v;
        e[i] = why;
    }
    if (xp_copy_out((uint64_t)(uintptr_t)rets, r, (size_t)count * sizeof(*r)) ||
        xp_copy_out((uint64_t)(uintptr_t)errs, e, (size_t)count * sizeof(*e))) {
        *err = EFAULT;
        rc = -1;
    } else {
        *err = 0;
    }
    free(r);
    batch_free(&b);
    return rc;
}

/*
 * The same calls as multicalls of at most XP_MULTICALL_MAX entries each: the raw layer
 * of a sweep. The entries are built in locked memory of the span from the judged copy
 * of the batch (a platform_op entry pointing at its judged struct) and issued as they
 * are. results[i] gets entry i's 64-bit result. A multicall that fails as a whole
 * (*ret != 0; -1/EFAULT: a platform_op struct of it could not be read, and it was not
 * issued) ends the batch: results from it on are left untouched.
 */
int xp_multicall_many(int fd, unsigned count, const uint64_t *ops, const uint64_t *args,
                      int64_t *results, int *ret, int *err)
{
    unsigned most = count < XP_MULTICALL_MAX ? count : XP_MULTICALL_MAX;
    size_t bytes = (size_t)most * sizeof(xp_multicall_entry), k = 0;
    xp_multicall_entry *e;
    int64_t *out;
    struct batch b;
    int rc;

    *ret = 0;
    *err = 0;
    if (count == 0)
        return 0;
    if (results_in_span(results, results)) {
        *err = EFAULT;
        return -1;
    }
    if ((rc = batch_in(&b, count, ops, args, err)))
        return rc;
    e = private_alloc(bytes, err);
    out = malloc((size_t)most * sizeof(*out));
    if (!e || !out) {
        if (!*err)
            *err = ENOMEM;
        free(out);
        private_free(e, bytes);
        batch_free(&b);
        return -1;
    }
    for (unsigned start = 0; start < count; start += most) {
        unsigned n = count - start < most ? count - start : most;
        size_t first = k;
        int unreadable = 0;
        long r;
        memset(e, 0, (size_t)n * sizeof(*e));
        for (unsigned i = 0; i < n; i++) {
            e[i].op = b.ops[start + i];
            memcpy(e[i].args, &b.args[5 * (size_t)(start + i)], 5 * sizeof(uint64_t));
            if (e[i].op == HYPERVISOR_platform_op) {
                unreadable |= b.pcs[k].unreadable;
                e[i].args[0] = (uint64_t)(uintptr_t)b.pcs[k++].op;
            }
        }
        if (unreadable) {
            /* Nothing of it could be checked whole, so none of it is issued. */
            *ret = -1;
            *err = EFAULT;
            break;
        }
        struct privcmd_hypercall hc = {.op = HYPERVISOR_multicall,
                                       .arg = {(uint64_t)(uintptr_t)e, n, 0, 0, 0}};
        errno = 0;
        r = send_ioctl(fd, &hc);
        *ret = (int)r;
        *err = r == -1 ? errno : 0;
        if (*ret != 0)
            break;
        for (unsigned i = 0; i < n; i++)
            out[i] = (int64_t)e[i].result;
        if (xp_copy_out((uint64_t)(uintptr_t)(results + start), out, (size_t)n * sizeof(*out))) {
            *err = EFAULT;
            rc = -1;
            break;
        }
        /* What Xen wrote into this multicall's platform_op structs, handed back. */
        for (size_t p = first; p < k; p++) {
            if (pf_out(&b.pcs[p], &xp_caller_memory)) {
                *ret = -1;
                *err = EFAULT;
            }
        }
        if (*ret != 0)
            break;
    }
    free(out);
    private_free(e, bytes);
    batch_free(&b);
    return rc;
}
